//! Last-will deaths of MQTT sirens, held for a moment, sans-IO.
//!
//! A broker that shuts down cleanly publishes every connected device's last will before it
//! closes the daemon's own connection: hundreds of deaths that are the broker's doing, not the
//! sirens'. So a death takes effect a short grace after it arrives, unless the MQTT link goes
//! down first (then the sirens are `unreachable`, no verdict), or another frame of the same
//! siren arrives first (then the death applies before that frame, in order).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How long a death waits for the link to go down. A broker closes the connections it
/// published wills for within milliseconds; detection stays far under a second.
pub const GRACE: Duration = Duration::from_millis(300);

/// Deaths waiting for their grace to pass.
#[derive(Debug, Default)]
pub struct DeathGrace {
    /// Due time, siren index and what the death said; oldest first.
    pending: VecDeque<(Instant, usize, String)>,
}

impl DeathGrace {
    /// `siren`'s last will arrived at `now`.
    pub fn died(&mut self, siren: usize, detail: String, now: Instant) {
        self.pending.push_back((now + GRACE, siren, detail));
    }

    /// The deaths whose grace has passed by `now`, oldest first.
    pub fn due(&mut self, now: Instant) -> Vec<(usize, String)> {
        let mut due = Vec::new();
        while self.pending.front().is_some_and(|(at, _, _)| *at <= now) {
            if let Some((_, siren, detail)) = self.pending.pop_front() {
                due.push((siren, detail));
            }
        }
        due
    }

    /// Another frame of `siren` arrived: its pending death, if any, applies first.
    pub fn take(&mut self, siren: usize) -> Option<String> {
        let at = self.pending.iter().position(|(_, s, _)| *s == siren)?;
        self.pending.remove(at).map(|(_, _, detail)| detail)
    }

    /// The MQTT link went down: the pending deaths were the broker's doing. Returns how many.
    pub fn link_lost(&mut self) -> usize {
        let n = self.pending.len();
        self.pending.clear();
        n
    }

    pub fn next_due(&self) -> Option<Instant> {
        self.pending.front().map(|(at, _, _)| *at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_death_takes_effect_after_its_grace() {
        let t0 = Instant::now();
        let mut d = DeathGrace::default();
        d.died(3, "boot 1".into(), t0);
        d.died(4, "boot 2".into(), t0 + Duration::from_millis(100));
        assert!(d.due(t0 + GRACE.saturating_sub(Duration::from_millis(1))).is_empty());
        assert_eq!(d.due(t0 + GRACE), [(3, "boot 1".to_owned())]);
        assert_eq!(d.next_due(), Some(t0 + Duration::from_millis(100) + GRACE));
        assert_eq!(d.due(t0 + GRACE * 2), [(4, "boot 2".to_owned())]);
        assert_eq!(d.next_due(), None);
    }

    #[test]
    fn deaths_the_broker_published_as_it_went_away_are_dropped() {
        let t0 = Instant::now();
        let mut d = DeathGrace::default();
        for siren in 0..300 {
            d.died(siren, String::new(), t0);
        }
        assert_eq!(d.link_lost(), 300);
        assert!(d.due(t0 + GRACE * 10).is_empty());
    }

    #[test]
    fn a_frame_after_a_death_lets_the_death_apply_first() {
        let t0 = Instant::now();
        let mut d = DeathGrace::default();
        d.died(7, "boot 9".into(), t0);
        assert_eq!(d.take(8), None);
        assert_eq!(d.take(7), Some("boot 9".to_owned()));
        assert!(d.due(t0 + GRACE).is_empty(), "applied once");
    }
}

//! Heartbeat deadlines of the sirens on the MQTT link, sans-IO.
//!
//! Every frame from a siren moves its deadline to one and a half periods ahead; a deadline
//! that passes is a missed heartbeat, and the next one is a period later. Silence while the
//! broker was away proves nothing, so a link that comes back restarts every clock with a
//! grace of two periods.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::time::{Duration, Instant};

/// The sirens' heartbeat deadlines.
#[derive(Debug)]
pub struct HeartbeatWatch {
    period: Duration,
    /// Deadlines, soonest first; an entry whose deadline is no longer current is skipped.
    due: BinaryHeap<Reverse<(Instant, usize)>>,
    deadline: HashMap<usize, Instant>,
}

impl HeartbeatWatch {
    pub fn new(period: Duration) -> Self {
        Self { period, due: BinaryHeap::new(), deadline: HashMap::new() }
    }

    /// A frame from `siren` arrived at `now`.
    pub fn heard(&mut self, siren: usize, now: Instant) {
        self.arm(siren, now + self.period + self.period / 2);
    }

    /// The link came up: every member's clock starts again, with a grace of two periods.
    pub fn restart(&mut self, members: impl IntoIterator<Item = usize>, now: Instant) {
        self.stop();
        for siren in members {
            self.arm(siren, now + self.period * 2);
        }
    }

    /// The link went down: nobody's silence counts until it is back.
    pub fn stop(&mut self) {
        self.due.clear();
        self.deadline.clear();
    }

    /// The sirens whose deadline has passed by `now`, once for each missed period.
    pub fn expired(&mut self, now: Instant) -> Vec<usize> {
        let mut missed = Vec::new();
        while let Some(Reverse((due, siren))) = self.due.peek().copied() {
            if due > now {
                break;
            }
            self.due.pop();
            if self.deadline.get(&siren) != Some(&due) {
                continue; // superseded by a later frame
            }
            missed.push(siren);
            self.arm(siren, due + self.period);
        }
        missed
    }

    /// The soonest deadline, for the engine's wake-up.
    pub fn next_due(&self) -> Option<Instant> {
        self.due.peek().map(|Reverse((t, _))| *t)
    }

    fn arm(&mut self, siren: usize, deadline: Instant) {
        self.deadline.insert(siren, deadline);
        self.due.push(Reverse((deadline, siren)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn a_silent_siren_misses_after_one_and_a_half_periods_then_every_period() {
        let t0 = Instant::now();
        let mut watch = HeartbeatWatch::new(10 * SECOND);
        watch.heard(3, t0);
        assert!(watch.expired(t0 + 14 * SECOND).is_empty());
        assert_eq!(watch.expired(t0 + 15 * SECOND), [3]);
        assert!(watch.expired(t0 + 24 * SECOND).is_empty());
        assert_eq!(watch.expired(t0 + 45 * SECOND), [3, 3, 3]);
    }

    #[test]
    fn every_frame_moves_the_deadline() {
        let t0 = Instant::now();
        let mut watch = HeartbeatWatch::new(10 * SECOND);
        watch.heard(3, t0);
        watch.heard(3, t0 + 10 * SECOND);
        assert!(watch.expired(t0 + 20 * SECOND).is_empty(), "the first deadline was superseded");
        assert_eq!(watch.expired(t0 + 25 * SECOND), [3]);
        assert_eq!(watch.next_due(), Some(t0 + 35 * SECOND));
    }

    #[test]
    fn silence_while_the_link_is_down_does_not_count_and_a_restart_gives_grace() {
        let t0 = Instant::now();
        let mut watch = HeartbeatWatch::new(10 * SECOND);
        watch.heard(1, t0);
        watch.heard(2, t0);
        watch.stop();
        assert!(watch.expired(t0 + 100 * SECOND).is_empty());
        assert_eq!(watch.next_due(), None);
        watch.restart([1, 2], t0 + 100 * SECOND);
        assert!(watch.expired(t0 + 119 * SECOND).is_empty());
        watch.heard(1, t0 + 110 * SECOND);
        assert_eq!(watch.expired(t0 + 120 * SECOND), [2]);
    }
}

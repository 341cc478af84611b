//! Status requests to MQTT sirens, sans-IO (docs/protocol.md §9): one right after each birth,
//! since a siren is `ok` only once a frame with its fault word has been heard, and every
//! siren in turn at a low rate, which also proves that commands reach it.
//!
//! (Serial sirens are polled by their bus's [`BusPoller`](super::polls::BusPoller).)

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Which MQTT siren to ask for its status next.
#[derive(Debug)]
pub struct StatusRequests {
    /// Sirens that were just born, oldest first.
    born: VecDeque<usize>,
    /// Every MQTT siren, asked in turn.
    rotation: Vec<usize>,
    cursor: usize,
    /// Between two periodic requests: the period over the rotation's length. `None`: no
    /// periodic requests.
    spacing: Option<Duration>,
    next: Instant,
}

impl StatusRequests {
    /// For the MQTT sirens `members`, each asked once per `every` (none if zero), the first
    /// a spacing after `now`.
    pub fn new(members: Vec<usize>, every: Duration, now: Instant) -> Self {
        let n = u32::try_from(members.len()).unwrap_or(u32::MAX);
        let spacing = (!every.is_zero() && n > 0).then(|| every / n);
        Self { born: VecDeque::new(), rotation: members, cursor: 0, spacing, next: now + spacing.unwrap_or_default() }
    }

    /// `siren` sent a BIRTH: it is asked before any periodic request.
    pub fn born(&mut self, siren: usize) {
        if !self.born.contains(&siren) {
            self.born.push_back(siren);
        }
    }

    /// The next siren to ask at `now`, if any is due: births first, then the rotation's next
    /// when its time has come. The engine skips a rotation's siren that is not heard from.
    pub fn next(&mut self, now: Instant) -> Option<usize> {
        if let Some(siren) = self.born.pop_front() {
            return Some(siren);
        }
        let spacing = self.spacing?;
        if now < self.next {
            return None;
        }
        // After a long pause (the link was down) the rotation resumes; it does not catch up.
        let next = self.next + spacing;
        self.next = if next <= now { now + spacing } else { next };
        let siren = self.rotation[self.cursor];
        self.cursor = (self.cursor + 1) % self.rotation.len();
        Some(siren)
    }

    /// When a periodic request is next due (births are asked at once).
    pub fn next_due(&self) -> Option<Instant> {
        if !self.born.is_empty() {
            return Some(self.next.min(Instant::now()));
        }
        self.spacing.map(|_| self.next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn each_siren_is_asked_once_a_period_spread_over_it() {
        let t0 = Instant::now();
        let mut s = StatusRequests::new(vec![4, 7, 9, 12], 600 * SECOND, t0);
        assert_eq!(s.next(t0), None);
        assert_eq!(s.next_due(), Some(t0 + 150 * SECOND));
        let mut asked = Vec::new();
        for k in 1..=8 {
            let now = t0 + 150 * SECOND * k;
            asked.extend(s.next(now));
            assert_eq!(s.next(now), None, "one per spacing");
        }
        assert_eq!(asked, [4, 7, 9, 12, 4, 7, 9, 12]);
    }

    #[test]
    fn a_birth_is_asked_at_once_and_once() {
        let t0 = Instant::now();
        let mut s = StatusRequests::new(vec![1, 2], 600 * SECOND, t0);
        s.born(2);
        s.born(2);
        s.born(1);
        assert_eq!([s.next(t0), s.next(t0), s.next(t0)], [Some(2), Some(1), None]);
    }

    #[test]
    fn a_period_of_zero_asks_only_after_births_and_a_pause_is_not_caught_up() {
        let t0 = Instant::now();
        let mut s = StatusRequests::new(vec![1, 2], Duration::ZERO, t0);
        assert_eq!(s.next(t0 + 3_600 * SECOND), None);
        assert_eq!(s.next_due(), None);
        s.born(1);
        assert_eq!(s.next(t0), Some(1));

        let mut s = StatusRequests::new(vec![1, 2, 3], 30 * SECOND, t0);
        let late = t0 + 3_600 * SECOND;
        assert_eq!(s.next(late), Some(1));
        assert_eq!(s.next(late), None, "an hour missed is not made up in one burst");
        assert_eq!(s.next(late + 10 * SECOND), Some(2));
    }
}

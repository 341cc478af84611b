//! A cadence for work that is cheap to skip but costly to repeat at every input, sans-IO:
//! asking open campaigns for their next commands scans every target, so it is done at most
//! once per period unless a trigger instant is near.

use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct Cadence {
    every: Duration,
    next: Instant,
    /// A call was turned away since the last run: the engine must wake for it.
    skipped: bool,
}

impl Cadence {
    /// Due at once, then at most every `every`.
    pub fn new(every: Duration, now: Instant) -> Self {
        Self { every, next: now, skipped: false }
    }

    /// Whether to run now; `urgent` runs regardless of the period.
    pub fn ready(&mut self, now: Instant, urgent: bool) -> bool {
        if now < self.next && !urgent {
            self.skipped = true;
            return false;
        }
        self.next = now + self.every;
        self.skipped = false;
        true
    }

    /// When a run that was turned away is due.
    pub fn wake(&self) -> Option<Instant> {
        self.skipped.then_some(self.next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn runs_at_most_once_per_period_unless_urgent_and_wakes_for_what_it_turned_away() {
        let t0 = Instant::now();
        let mut c = Cadence::new(10 * MS, t0);
        assert!(c.ready(t0, false));
        assert_eq!(c.wake(), None, "nothing turned away, nothing to wake for");
        assert!(!c.ready(t0 + 3 * MS, false));
        assert_eq!(c.wake(), Some(t0 + 10 * MS));
        assert!(c.ready(t0 + 4 * MS, true), "urgent runs at once");
        assert_eq!(c.wake(), None);
        assert!(!c.ready(t0 + 13 * MS, false));
        assert!(c.ready(t0 + 14 * MS, false));
    }
}

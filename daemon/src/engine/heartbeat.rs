//! Heartbeat deadlines of the sirens on the MQTT link, sans-IO.
//!
//! Every frame from a siren moves its deadline to one and a half periods ahead; a deadline
//! that passes is a missed heartbeat, and the next one is a period later. The period is the
//! one the siren announced in its last BIRTH (docs/protocol.md §9), the configured one until
//! it has announced any. Silence while the
//! broker was away proves nothing, so a link that comes back restarts every clock with a
//! grace of two periods.
//!
//! A frame only moves the deadline recorded for the siren: its entry in the queue stays where
//! it is and, when it comes up, goes back in at the current deadline. So the queue holds one
//! entry per siren, not one per frame.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

/// One siren's deadline, and when its entry in the queue comes up.
#[derive(Debug, Clone, Copy)]
struct Watch {
    deadline: Instant,
    queued: Instant,
}

/// The sirens' heartbeat deadlines.
#[derive(Debug)]
pub struct HeartbeatWatch {
    /// The period of sirens that have not announced one.
    period: Duration,
    /// Announced periods in seconds by siren index, 0 for none.
    announced: Vec<u16>,
    /// Queue entries, soonest first; an entry that is not its siren's `queued` is stale.
    due: BinaryHeap<Reverse<(Instant, usize)>>,
    /// By siren index.
    watches: Vec<Option<Watch>>,
}

impl HeartbeatWatch {
    /// For a fleet of `sirens` (sized up front: grown during the first burst of frames,
    /// its freed smaller copies would be left among longer-lived memory).
    pub fn new(period: Duration, sirens: usize) -> Self {
        Self { period, announced: vec![0; sirens], due: BinaryHeap::with_capacity(sirens), watches: vec![None; sirens] }
    }

    /// `siren` announced a heartbeat every `seconds` (1 to 3600, docs/protocol.md §5.6).
    pub fn announced(&mut self, siren: usize, seconds: u16) {
        if self.announced.len() <= siren {
            self.announced.resize(siren + 1, 0);
        }
        self.announced[siren] = seconds;
    }

    /// The heartbeat period of `siren`.
    pub fn period_of(&self, siren: usize) -> Duration {
        match self.announced.get(siren) {
            Some(&s) if s > 0 => Duration::from_secs(u64::from(s)),
            _ => self.period,
        }
    }

    /// A frame from `siren` arrived at `now`.
    pub fn heard(&mut self, siren: usize, now: Instant) {
        let period = self.period_of(siren);
        self.arm(siren, now + period + period / 2);
    }

    /// The link came up: every member's clock starts again, with a grace of two periods.
    pub fn restart(&mut self, members: impl IntoIterator<Item = usize>, now: Instant) {
        self.stop();
        for siren in members {
            let period = self.period_of(siren);
            self.arm(siren, now + period * 2);
        }
    }

    /// The link went down: nobody's silence counts until it is back.
    pub fn stop(&mut self) {
        self.due.clear();
        self.watches.iter_mut().for_each(|w| *w = None);
    }

    /// The sirens whose deadline has passed by `now`, once for each missed period.
    pub fn expired(&mut self, now: Instant) -> Vec<usize> {
        let mut missed = Vec::new();
        while let Some(Reverse((at, siren))) = self.due.peek().copied() {
            if at > now {
                break;
            }
            self.due.pop();
            let period = self.period_of(siren);
            let Some(watch) = self.watches.get_mut(siren).and_then(Option::as_mut) else { continue };
            if watch.queued != at {
                continue; // a stale entry: the siren has a sooner one
            }
            if watch.deadline > at {
                // Heard since it was queued: back in at the current deadline.
                watch.queued = watch.deadline;
                self.due.push(Reverse((watch.deadline, siren)));
                continue;
            }
            missed.push(siren);
            let next = at + period;
            *watch = Watch { deadline: next, queued: next };
            self.due.push(Reverse((next, siren)));
        }
        missed
    }

    /// When the engine must next look: the soonest queue entry (a deadline, or a moved one
    /// to put back in).
    pub fn next_due(&self) -> Option<Instant> {
        self.due.peek().map(|Reverse((t, _))| *t)
    }

    fn arm(&mut self, siren: usize, deadline: Instant) {
        if self.watches.len() <= siren {
            self.watches.resize(siren + 1, None);
        }
        let watch = &mut self.watches[siren];
        match watch {
            // Its entry comes up first and is put back in then.
            Some(w) if w.queued <= deadline => w.deadline = deadline,
            _ => {
                *watch = Some(Watch { deadline, queued: deadline });
                self.due.push(Reverse((deadline, siren)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn a_silent_siren_misses_after_one_and_a_half_periods_then_every_period() {
        let t0 = Instant::now();
        let mut watch = HeartbeatWatch::new(10 * SECOND, 4);
        watch.heard(3, t0);
        assert!(watch.expired(t0 + 14 * SECOND).is_empty());
        assert_eq!(watch.expired(t0 + 15 * SECOND), [3]);
        assert!(watch.expired(t0 + 24 * SECOND).is_empty());
        assert_eq!(watch.expired(t0 + 45 * SECOND), [3, 3, 3]);
    }

    #[test]
    fn the_period_a_siren_announced_counts_not_the_configured_one() {
        let t0 = Instant::now();
        let mut watch = HeartbeatWatch::new(5 * SECOND, 4);
        watch.announced(1, 2);
        watch.announced(2, 60);
        watch.heard(1, t0);
        watch.heard(2, t0);
        watch.heard(3, t0);
        assert_eq!(watch.expired(t0 + 3 * SECOND), [1], "1.5 of its 2 s");
        assert_eq!(watch.expired(t0 + 7_500 * Duration::from_millis(1)), [1, 1, 3], "at 5 s and 7 s, and 1.5 x 5 s");
        assert!(watch.expired(t0 + 89 * SECOND).iter().all(|&s| s != 2), "1.5 of its 60 s is 90 s");
        assert!(watch.expired(t0 + 90 * SECOND).contains(&2));
        // An announcement of a longer period later moves the next deadline out.
        watch.announced(1, 30);
        watch.heard(1, t0 + 100 * SECOND);
        assert!(!watch.expired(t0 + 144 * SECOND).contains(&1));
        assert_eq!(watch.period_of(1), 30 * SECOND);
        assert_eq!(watch.period_of(9), 5 * SECOND, "a siren beyond the fleet's size has the default");
    }

    #[test]
    fn every_frame_moves_the_deadline() {
        let t0 = Instant::now();
        let mut watch = HeartbeatWatch::new(10 * SECOND, 4);
        watch.heard(3, t0);
        watch.heard(3, t0 + 10 * SECOND);
        assert!(watch.expired(t0 + 20 * SECOND).is_empty(), "the first deadline was superseded");
        assert_eq!(watch.expired(t0 + 25 * SECOND), [3]);
        assert_eq!(watch.next_due(), Some(t0 + 35 * SECOND));
    }

    #[test]
    fn the_queue_holds_one_entry_per_siren_however_many_frames_arrive() {
        let t0 = Instant::now();
        let mut watch = HeartbeatWatch::new(10 * SECOND, 4);
        for ms in 0..1_000 {
            for siren in 0..10 {
                watch.heard(siren, t0 + Duration::from_millis(ms * 30));
            }
        }
        assert_eq!(watch.due.len(), 10);
        // The last frames were at 29.97 s: the deadlines are at 44.97 s.
        assert!(watch.expired(t0 + 44 * SECOND).is_empty());
        assert_eq!(watch.expired(t0 + 45 * SECOND).len(), 10);
    }

    #[test]
    fn a_sooner_deadline_than_the_queued_one_still_counts() {
        let t0 = Instant::now();
        let mut watch = HeartbeatWatch::new(10 * SECOND, 4);
        // Queued at the restart's grace (20 s), then heard: due at 15 s, sooner.
        watch.restart([1], t0);
        watch.heard(1, t0);
        assert_eq!(watch.expired(t0 + 15 * SECOND), [1]);
        assert!(watch.expired(t0 + 20 * SECOND).is_empty(), "the grace's entry is stale");
        assert_eq!(watch.expired(t0 + 25 * SECOND), [1]);
    }

    #[test]
    fn silence_while_the_link_is_down_does_not_count_and_a_restart_gives_grace() {
        let t0 = Instant::now();
        let mut watch = HeartbeatWatch::new(10 * SECOND, 4);
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

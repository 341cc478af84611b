//! Clock synchronisation of MQTT sirens, sans-IO: when a siren that reports an unsynchronised
//! clock may be synchronised again, and the correction a time-sync reply calls for.
//! (Serial buses get a broadcast `TIME_SET` from their [`BusPoller`](super::polls::BusPoller).)

use std::time::{Duration, Instant};

use siren_proto::master::TimeSample;
use siren_proto::message::Message;

/// Least time between two clock synchronisations of one siren.
pub const RESYNC_AFTER: Duration = Duration::from_secs(300);

/// Which sirens' clocks to synchronise, and when: at most once per [`RESYNC_AFTER`] each,
/// and no more at once than the link has room for. A whole fleet reports unsynchronised
/// clocks after a restart; queued all at once, 10,000 requests would wait in the master's
/// queue, each holding a reply slot's bookkeeping, and the time they wait is no better spent
/// there than here (a request's `t1` is stamped as it is sealed).
#[derive(Debug)]
pub struct ClockSync {
    /// When each siren's clock was last synchronised (or an attempt started), by index.
    last: Vec<Option<Instant>>,
    /// Sirens waiting for a request, oldest first.
    waiting: std::collections::VecDeque<usize>,
}

impl ClockSync {
    /// For a fleet of `sirens`.
    pub fn new(sirens: usize) -> Self {
        Self { last: vec![None; sirens], waiting: std::collections::VecDeque::new() }
    }

    /// `siren` reported an unsynchronised clock at `now`: it waits for a request unless one
    /// started less than [`RESYNC_AFTER`] ago.
    pub fn wanted(&mut self, siren: usize, now: Instant) {
        if self.last.len() <= siren {
            self.last.resize(siren + 1, None);
        }
        let last = &mut self.last[siren];
        if last.is_some_and(|t| now.duration_since(t) < RESYNC_AFTER) {
            return;
        }
        *last = Some(now);
        self.waiting.push_back(siren);
    }

    /// The next siren to synchronise, when the link has `queued` requests waiting: none
    /// while that is [`QUEUE_ROOM`] or more.
    pub fn next(&mut self, queued: usize) -> Option<usize> {
        if queued >= QUEUE_ROOM {
            return None;
        }
        let siren = self.waiting.pop_front();
        if self.waiting.is_empty() {
            self.waiting.shrink_to(64);
        }
        siren
    }
}

/// Requests queued on the MQTT link (beyond those in flight) below which another time sync
/// is started.
pub const QUEUE_ROOM: usize = 64;

/// The `CLOCK_ADJUST` that a `TIME_SYNC_REPLY` arriving at `t4_us` calls for, with the sample
/// it was computed from; `None` for any other message.
pub fn correction(reply: &Message, t4_us: i64) -> Option<(Message, TimeSample)> {
    let Message::TimeSyncReply { t1_us, t2_us, t3_us } = *reply else { return None };
    let sample = TimeSample::compute(t1_us, t2_us, t3_us, t4_us);
    Some((Message::ClockAdjust { sync_t1_us: t1_us, offset_us: sample.offset_us }, sample))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_siren_is_synchronised_at_most_every_five_minutes() {
        let t0 = Instant::now();
        let mut sync = ClockSync::new(3);
        sync.wanted(1, t0);
        sync.wanted(1, t0 + RESYNC_AFTER.saturating_sub(Duration::from_millis(1)));
        sync.wanted(2, t0);
        assert_eq!([sync.next(0), sync.next(0), sync.next(0)], [Some(1), Some(2), None]);
        sync.wanted(1, t0 + RESYNC_AFTER);
        assert_eq!(sync.next(0), Some(1));
    }

    #[test]
    fn requests_start_only_while_the_link_has_room() {
        let t0 = Instant::now();
        let mut sync = ClockSync::new(10_000);
        for siren in 0..10_000 {
            sync.wanted(siren, t0);
        }
        assert_eq!(sync.next(QUEUE_ROOM), None, "the link's queue is full");
        let started: Vec<usize> = std::iter::from_fn(|| sync.next(QUEUE_ROOM - 1)).collect();
        assert_eq!(started.len(), 10_000);
        assert!(started.windows(2).all(|w| w[0] < w[1]), "oldest first");
        // A siren beyond the fleet's size (none should be) is still handled.
        sync.wanted(20_000, t0);
        assert_eq!(sync.next(0), Some(20_000));
    }

    #[test]
    fn the_correction_carries_the_measured_offset_and_the_exchange_it_answers() {
        // Device 250 ms ahead, 20 ms each way, 1 ms turnaround: the correction is -250 ms.
        let reply = Message::TimeSyncReply { t1_us: 1_000_000, t2_us: 1_270_000, t3_us: 1_271_000 };
        let (adjust, sample) = correction(&reply, 1_041_000).unwrap();
        assert_eq!(sample.offset_us, -250_000);
        assert_eq!(sample.round_trip_us, 40_000);
        assert_eq!(adjust, Message::ClockAdjust { sync_t1_us: 1_000_000, offset_us: -250_000 });
        assert!(correction(&Message::StatusRequest, 0).is_none());
    }
}

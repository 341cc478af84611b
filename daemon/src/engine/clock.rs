//! Clock synchronisation of MQTT sirens, sans-IO: when a siren that reports an unsynchronised
//! clock may be synchronised again, and the correction a time-sync reply calls for.
//! (Serial buses get a broadcast `TIME_SET` from their [`BusPoller`](super::polls::BusPoller).)

use std::time::{Duration, Instant};

use siren_proto::master::TimeSample;
use siren_proto::message::{FaultBits, Message};

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

/// How long a siren may report an unsynchronised clock before it counts against it: sirend
/// synchronises such a clock itself within seconds (every siren after a restart of the fleet,
/// a controller after a power cut), and a warning it is already fixing would flap every siren
/// to `degraded` and back, and raise and clear a fault, at every boot.
pub const UNSYNCED_GRACE: Duration = Duration::from_secs(60);

/// Which sirens report an unsynchronised clock, since when: the warning is held back from
/// their condition for [`UNSYNCED_GRACE`].
#[derive(Debug, Default)]
pub struct UnsyncedGrace {
    since: Vec<Option<Instant>>,
}

impl UnsyncedGrace {
    /// The faults of a report from `siren` at `now`, with `CLOCK_UNSYNCED` left out while it
    /// is younger than the grace.
    pub fn filter(&mut self, siren: usize, faults: FaultBits, now: Instant) -> FaultBits {
        if self.since.len() <= siren {
            self.since.resize(siren + 1, None);
        }
        let slot = &mut self.since[siren];
        if !faults.contains(FaultBits::CLOCK_UNSYNCED) {
            *slot = None;
            return faults;
        }
        let since = *slot.get_or_insert(now);
        if now.duration_since(since) < UNSYNCED_GRACE {
            FaultBits(faults.0 & !FaultBits::CLOCK_UNSYNCED)
        } else {
            faults
        }
    }
}

/// Requests queued on the MQTT link (beyond those in flight) below which another time sync
/// is started.
pub const QUEUE_ROOM: usize = 64;

/// Exchanges a synchronisation takes at most: the one with the shortest round trip sets the
/// clock, as NTP's clock filter does. A sample whose request waited in a queue one way (a
/// broker's, a busy link's) has a long round trip and an offset off by up to half of it.
pub const SAMPLES: u8 = 4;
/// A round trip this short bounds the offset's error to half of it: no more samples needed.
pub const GOOD_ROUND_TRIP_US: i64 = 5_000;

/// The samples of one synchronisation, and the best so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SampleFilter {
    /// The best sample's `t1` and measurement.
    best: Option<(i64, TimeSample)>,
    taken: u8,
}

/// What a synchronisation does after a sample.
#[derive(Debug, Clone, PartialEq)]
pub enum SyncStep {
    /// Take another sample.
    Again,
    /// Send this `CLOCK_ADJUST`, computed from the best sample (shown).
    Adjust(Message, TimeSample),
    /// Every sample was impossible (a negative round trip: the device stamps wrongly).
    GiveUp,
}

impl SampleFilter {
    /// Adds the sample of a `TIME_SYNC_REPLY` that arrived at `t4_us`; `None` for any other
    /// message.
    pub fn add(&mut self, reply: &Message, t4_us: i64) -> Option<SyncStep> {
        let Message::TimeSyncReply { t1_us, t2_us, t3_us } = *reply else { return None };
        let sample = TimeSample::compute(t1_us, t2_us, t3_us, t4_us);
        self.taken = self.taken.saturating_add(1);
        if sample.round_trip_us >= 0 && self.best.is_none_or(|(_, b)| sample.round_trip_us < b.round_trip_us) {
            self.best = Some((t1_us, sample));
        }
        let Some((t1, best)) = self.best else {
            // Only impossible samples (negative round trips: a device stamping wrongly).
            return Some(if self.taken < SAMPLES { SyncStep::Again } else { SyncStep::GiveUp });
        };
        if best.round_trip_us > GOOD_ROUND_TRIP_US && self.taken < SAMPLES {
            return Some(SyncStep::Again);
        }
        Some(SyncStep::Adjust(Message::ClockAdjust { sync_t1_us: t1, offset_us: best.offset_us }, best))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unsynchronised_clock_counts_only_once_it_outlasts_the_grace() {
        let t0 = Instant::now();
        let unsynced = FaultBits(FaultBits::CLOCK_UNSYNCED | FaultBits::DOOR_OPEN);
        let mut grace = UnsyncedGrace::default();
        assert_eq!(grace.filter(3, unsynced, t0), FaultBits(FaultBits::DOOR_OPEN), "other faults pass at once");
        assert_eq!(
            grace.filter(3, unsynced, t0 + UNSYNCED_GRACE.saturating_sub(Duration::from_millis(1))).0,
            FaultBits::DOOR_OPEN
        );
        assert_eq!(grace.filter(3, unsynced, t0 + UNSYNCED_GRACE), unsynced, "still unsynchronised: it counts");
        // Synchronised, then unsynchronised again: a new grace.
        assert_eq!(grace.filter(3, FaultBits(0), t0 + UNSYNCED_GRACE * 2), FaultBits(0));
        assert_eq!(grace.filter(3, unsynced, t0 + UNSYNCED_GRACE * 3).0, FaultBits::DOOR_OPEN);
    }

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
        // Device 250 ms ahead, 2 ms each way, 1 ms turnaround: the correction is -250 ms.
        let reply = Message::TimeSyncReply { t1_us: 1_000_000, t2_us: 1_252_000, t3_us: 1_253_000 };
        let mut filter = SampleFilter::default();
        let Some(SyncStep::Adjust(adjust, sample)) = filter.add(&reply, 1_005_000) else { panic!() };
        assert_eq!(sample.offset_us, -250_000);
        assert_eq!(sample.round_trip_us, 4_000);
        assert_eq!(adjust, Message::ClockAdjust { sync_t1_us: 1_000_000, offset_us: -250_000 });
        assert!(filter.add(&Message::StatusRequest, 0).is_none());
    }

    #[test]
    fn an_asymmetric_sample_does_not_set_the_clock_the_shortest_round_trip_does() {
        // The device is exactly on time. The first request waited 44 ms on its way out (a
        // broker's Nagle): alone it would say the device is 22 ms ahead.
        let mut filter = SampleFilter::default();
        let lopsided = Message::TimeSyncReply { t1_us: 0, t2_us: 45_000, t3_us: 45_500 };
        assert_eq!(filter.add(&lopsided, 46_500), Some(SyncStep::Again));
        let slow = Message::TimeSyncReply { t1_us: 100_000, t2_us: 110_000, t3_us: 110_500 };
        assert_eq!(filter.add(&slow, 120_500), Some(SyncStep::Again));
        let fair = Message::TimeSyncReply { t1_us: 200_000, t2_us: 203_000, t3_us: 203_500 };
        assert_eq!(filter.add(&fair, 206_500), Some(SyncStep::Again), "6 ms is not yet good enough");
        let also_lopsided = Message::TimeSyncReply { t1_us: 300_000, t2_us: 330_000, t3_us: 330_500 };
        let Some(SyncStep::Adjust(adjust, best)) = filter.add(&also_lopsided, 331_500) else { panic!() };
        assert_eq!(best, TimeSample { offset_us: 0, round_trip_us: 6_000 });
        assert_eq!(adjust, Message::ClockAdjust { sync_t1_us: 200_000, offset_us: 0 }, "for the exchange it came from");
    }

    #[test]
    fn a_device_that_stamps_impossibly_is_given_up_on() {
        let mut filter = SampleFilter::default();
        let backwards = Message::TimeSyncReply { t1_us: 0, t2_us: 10_000, t3_us: 50_000 };
        for _ in 1..SAMPLES {
            assert_eq!(filter.add(&backwards, 1_000), Some(SyncStep::Again));
        }
        assert_eq!(filter.add(&backwards, 1_000), Some(SyncStep::GiveUp));
    }
}

//! Clock synchronisation of MQTT sirens, sans-IO: when a siren that reports an unsynchronised
//! clock may be synchronised again, and the correction a time-sync reply calls for.
//! (Serial buses get a broadcast `TIME_SET` from their [`BusPoller`](super::polls::BusPoller).)

use std::collections::HashMap;
use std::time::{Duration, Instant};

use siren_proto::master::TimeSample;
use siren_proto::message::Message;

/// Least time between two clock synchronisations of one siren.
pub const RESYNC_AFTER: Duration = Duration::from_secs(300);

/// When each siren's clock was last synchronised (or an attempt started).
#[derive(Debug, Default)]
pub struct ResyncGate {
    last: HashMap<usize, Instant>,
}

impl ResyncGate {
    /// Whether a synchronisation of `siren` may start at `now`; if so, it counts as started.
    pub fn try_start(&mut self, siren: usize, now: Instant) -> bool {
        if self.last.get(&siren).is_some_and(|t| now.duration_since(*t) < RESYNC_AFTER) {
            return false;
        }
        self.last.insert(siren, now);
        true
    }
}

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
        let mut gate = ResyncGate::default();
        assert!(gate.try_start(1, t0));
        assert!(!gate.try_start(1, t0 + RESYNC_AFTER.saturating_sub(Duration::from_millis(1))));
        assert!(gate.try_start(2, t0), "another siren is not held back");
        assert!(gate.try_start(1, t0 + RESYNC_AFTER));
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

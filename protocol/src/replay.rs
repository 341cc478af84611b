//! Per-direction counters: the sender's counter lease and the receiver's anti-replay window
//! (docs/protocol.md §4).

use crate::error::{EncodeError, RejectReason};

/// How far below the highest accepted counter a late frame may still be accepted, once.
/// MQTT delivers different topics independently, so a heartbeat (`QoS` 0) can overtake a status
/// report (`QoS` 1) sent just before it; the window absorbs that without accepting replays.
pub const WINDOW: u32 = 64;

/// The receiver's memory of accepted counters under one key: the highest accepted counter and
/// which of the [`WINDOW`] counters below it were accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayWindow {
    highest: u32,
    /// Bit `i` set: counter `highest - i` was accepted (or is presumed so).
    seen: u64,
}

impl Default for ReplayWindow {
    fn default() -> Self {
        // Counter 0 is never valid, so it starts out as "seen".
        Self { highest: 0, seen: 1 }
    }
}

impl ReplayWindow {
    /// A window restored from the persisted highest counter. Everything at or below it is
    /// treated as seen: after a restart the receiver cannot know which late frames it took.
    pub fn restored(highest: u32) -> Self {
        Self { highest, seen: u64::MAX }
    }

    /// The highest accepted counter (what a receiver persists).
    pub fn highest(&self) -> u32 {
        self.highest
    }

    /// Whether `counter` would be accepted. Does not record it: call [`Self::accept`] once the
    /// frame's MAC has verified, so forged frames cannot move the window.
    pub fn check(&self, counter: u32) -> Result<(), RejectReason> {
        if counter > self.highest {
            return Ok(());
        }
        let behind = self.highest - counter;
        if behind >= WINDOW || self.seen & (1u64 << behind) != 0 {
            return Err(RejectReason::Replayed);
        }
        Ok(())
    }

    /// Records `counter` as accepted.
    pub fn accept(&mut self, counter: u32) {
        if counter > self.highest {
            let shift = counter - self.highest;
            self.seen = if shift >= WINDOW { 0 } else { self.seen << shift };
            self.seen |= 1;
            self.highest = counter;
        } else {
            let behind = self.highest - counter;
            if behind < WINDOW {
                self.seen |= 1u64 << behind;
            }
        }
    }
}

/// Counter values a sender reserves at a time. The sender persists the end of each lease
/// before using any counter in it, so that after a reboot it resumes past every value it may
/// have used, with one write per lease rather than one per frame.
pub const DEFAULT_LEASE: u32 = 1024;

/// The sender's counter under one key: the next value to use and the end of the persisted
/// lease (exclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxCounter {
    next: u32,
    lease_end: u32,
}

impl TxCounter {
    /// A counter with a lease `[next, lease_end)` that the application has already persisted.
    pub fn new(next: u32, lease_end: u32) -> Self {
        Self { next: next.max(1), lease_end }
    }

    /// A counter resumed after a restart from the last persisted lease end: nothing may be
    /// sent until a new lease is granted.
    pub fn resumed(persisted_lease_end: u32) -> Self {
        Self::new(persisted_lease_end, persisted_lease_end)
    }

    /// The next counter value that will be used.
    pub fn next(&self) -> u32 {
        self.next
    }

    /// The end of the persisted lease.
    pub fn lease_end(&self) -> u32 {
        self.lease_end
    }

    /// Takes the next counter value.
    pub(crate) fn allocate(&mut self, key_id: u16) -> Result<u32, EncodeError> {
        if self.next == u32::MAX {
            return Err(EncodeError::CounterExhausted(key_id));
        }
        if self.next >= self.lease_end {
            return Err(EncodeError::CounterLeaseExhausted(key_id));
        }
        let c = self.next;
        self.next += 1;
        Ok(c)
    }

    /// The lease end to persist next, when less than a quarter of the current lease is left.
    pub fn lease_wanted(&self) -> Option<u32> {
        let left = self.lease_end.saturating_sub(self.next);
        (left < DEFAULT_LEASE / 4 && self.lease_end < u32::MAX)
            .then(|| self.next.max(self.lease_end).saturating_add(DEFAULT_LEASE))
    }

    /// Extends the lease to `end`, which the application has persisted.
    pub fn grant(&mut self, end: u32) {
        self.lease_end = self.lease_end.max(end);
    }
}

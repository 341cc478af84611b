//! Link tasks: they move bytes between the outside world and the engine and report whether
//! their link works. They know nothing about liveness or schedules.

pub mod broker;
pub mod cap_feed;
pub mod mosquitto;
pub mod mqtt;
pub mod serial;

use std::time::Duration;

/// Back-off between attempts to reopen a failed link: doubling, capped, so a missing port or
/// broker costs a few attempts a minute, not a busy loop.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    pub fn new() -> Self {
        Self { next: Duration::from_millis(250), max: Duration::from_secs(30) }
    }

    /// The delay before the next attempt.
    pub fn delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        d
    }

    pub fn reset(&mut self) {
        *self = Self::new();
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new()
    }
}

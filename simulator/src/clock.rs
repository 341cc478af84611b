//! The simulation's true time, mapped from real time for demos and PTY tests.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::device::TrueMicros;

/// Maps real (monotonic) time to the simulation's true UTC: `origin + elapsed × speed`.
#[derive(Debug, Clone, Copy)]
pub struct SimClock {
    origin: TrueMicros,
    started: Instant,
    speed: f64,
}

impl SimClock {
    /// True time is wall-clock time.
    pub fn real_time() -> Self {
        let origin = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX));
        Self { origin, started: Instant::now(), speed: 1.0 }
    }

    /// True time starts at `origin` now and runs `speed` times faster than real time.
    pub fn starting_at(origin: TrueMicros, speed: f64) -> Self {
        Self { origin, started: Instant::now(), speed }
    }

    /// True time now.
    pub fn now(&self) -> TrueMicros {
        self.at(Instant::now())
    }

    /// True time at a real instant.
    #[allow(clippy::cast_possible_truncation, clippy::cast_precision_loss, reason = "µs over days fit in f64")]
    pub fn at(&self, instant: Instant) -> TrueMicros {
        let elapsed = instant.saturating_duration_since(self.started).as_micros() as f64;
        self.origin + (elapsed * self.speed) as i64
    }

    /// The real instant at which true time reaches `t`.
    #[allow(clippy::cast_possible_truncation, clippy::cast_precision_loss, clippy::cast_sign_loss, reason = "bounded")]
    pub fn instant_of(&self, t: TrueMicros) -> Instant {
        let real_us = ((t - self.origin).max(0) as f64 / self.speed) as u64;
        self.started + std::time::Duration::from_micros(real_us)
    }
}

//! A device clock: true time plus an offset plus drift, corrected by time sync.

/// Microseconds since the Unix epoch on the simulator's true (reference) clock.
pub type TrueMicros = i64;
/// Microseconds since the Unix epoch as the device's own clock reads.
pub type DeviceMicros = i64;

/// The device's clock. It reads `true + offset + drift × (true − reference)`, which models a
/// quartz clock with a constant error as well as a mains-locked clock that slowly falls behind
/// when the grid frequency sags (the 2018 European grid deviation stopped Dutch siren clocks
/// by minutes).
#[derive(Debug, Clone)]
pub struct DeviceClock {
    offset_us: f64,
    drift_ppm: f64,
    reference: TrueMicros,
    last_sync: Option<TrueMicros>,
    /// `sync_t1` of the adjustments already applied, so a retried `CLOCK_ADJUST` applies once.
    applied: Vec<i64>,
}

impl DeviceClock {
    pub fn new(now: TrueMicros, offset_us: i64, drift_ppm: f64) -> Self {
        #[allow(clippy::cast_precision_loss, reason = "offsets are far below 2^52 µs")]
        let offset_us = offset_us as f64;
        Self { offset_us, drift_ppm, reference: now, last_sync: None, applied: Vec::new() }
    }

    /// What the device clock shows at true time `t`.
    #[allow(clippy::cast_possible_truncation, clippy::cast_precision_loss, reason = "µs precision is what we model")]
    pub fn read(&self, t: TrueMicros) -> DeviceMicros {
        let elapsed = (t - self.reference) as f64;
        t + (self.offset_us + self.drift_ppm * 1e-6 * elapsed).round() as i64
    }

    /// The true time at which the device clock shows `d` (the inverse of [`Self::read`]).
    #[allow(clippy::cast_possible_truncation, clippy::cast_precision_loss, reason = "µs precision is what we model")]
    pub fn true_time_of(&self, d: DeviceMicros) -> TrueMicros {
        // d = t + o + k (t - r)  =>  t = (d - o + k r) / (1 + k), solved relative to r.
        let k = self.drift_ppm * 1e-6;
        let rel = (d - self.reference) as f64;
        self.reference + ((rel - self.offset_us) / (1.0 + k)).round() as i64
    }

    /// The clock's error at `t` (device minus true), in µs.
    pub fn error_at(&self, t: TrueMicros) -> i64 {
        self.read(t) - t
    }

    fn rebase(&mut self, now: TrueMicros) {
        #[allow(clippy::cast_precision_loss, reason = "µs precision is what we model")]
        let error = self.error_at(now) as f64;
        self.offset_us = error;
        self.reference = now;
    }

    /// Steps the clock by `delta_us` (a fault, or a correction).
    pub fn step(&mut self, now: TrueMicros, delta_us: i64) {
        self.rebase(now);
        #[allow(clippy::cast_precision_loss, reason = "µs precision is what we model")]
        let delta = delta_us as f64;
        self.offset_us += delta;
    }

    /// Changes the drift from `now` on.
    pub fn set_drift(&mut self, now: TrueMicros, drift_ppm: f64) {
        self.rebase(now);
        self.drift_ppm = drift_ppm;
    }

    pub fn drift_ppm(&self) -> f64 {
        self.drift_ppm
    }

    /// Applies a `CLOCK_ADJUST` once per time-sync exchange. Returns whether it was applied now.
    pub fn adjust(&mut self, now: TrueMicros, sync_t1: i64, offset_us: i64) -> bool {
        if self.applied.contains(&sync_t1) {
            return false;
        }
        if self.applied.len() >= 16 {
            self.applied.remove(0);
        }
        self.applied.push(sync_t1);
        self.step(now, offset_us);
        self.last_sync = Some(now);
        true
    }

    /// Sets the clock so that it reads `device_time` at `now` (`TIME_SET`).
    pub fn set(&mut self, now: TrueMicros, device_time: DeviceMicros) {
        let delta = device_time - self.read(now);
        self.step(now, delta);
        self.last_sync = Some(now);
    }

    /// Seconds since the last synchronisation, if there was one.
    pub fn sync_age_s(&self, now: TrueMicros) -> Option<u32> {
        self.last_sync.map(|s| u32::try_from((now - s).max(0) / 1_000_000).unwrap_or(u32::MAX))
    }
}

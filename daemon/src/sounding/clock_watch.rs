//! An armed siren's clock, watched until the instant, sans-IO.
//!
//! An armed siren starts by its own clock, so a clock that steps or runs fast after it was
//! armed moves the start. Each measurement (a time-sync exchange, see
//! [`ClockSample`]) is added here; the watch keeps the drift rate the measurements agree on
//! and predicts the offset at the instant, which the campaign compares with the offset its
//! arm compensated.
//!
//! A step and a drift look alike between two measurements. They differ over three: a
//! drift's rate is the same over the last interval as over the whole span, a step's is not.
//! A step starts a new span; a drift faster than any healthy oscillator is flagged.

use serde::{Deserialize, Serialize};

use super::campaign::ClockSample;

/// Least span over which a rate is measured, µs: over less, the measurements' own error
/// (half a round trip each) is most of the rate.
pub const MIN_SPAN_US: i64 = 5_000_000;

/// A rate of the device clock against true time, with its uncertainty, in parts per million.
/// Positive: the device clock runs fast.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub ppm: f64,
    pub error_ppm: f64,
}

impl Rate {
    /// The rate between two measurements of one clock (no correction between them), `None`
    /// over less than [`MIN_SPAN_US`].
    pub fn between(a: &ClockSample, b: &ClockSample) -> Option<Self> {
        let span = b.at_us - a.at_us;
        if span < MIN_SPAN_US {
            return None;
        }
        // The offset is what to add to the device clock: a clock that runs fast loses offset.
        #[allow(clippy::cast_precision_loss, reason = "µs spans and offsets are far below 2^52")]
        let (gained, error, span) = (
            (a.offset_us - b.offset_us) as f64,
            (a.round_trip_us.max(0) + b.round_trip_us.max(0)) as f64 / 2.0,
            span as f64,
        );
        Some(Self { ppm: gained / span * 1e6, error_ppm: error / span * 1e6 })
    }

    /// Whether two rates can be the same within their uncertainties.
    fn agrees(self, other: Self) -> bool {
        (self.ppm - other.ppm).abs() <= self.error_ppm + other.error_ppm
    }

    /// Whether the rate is certainly beyond `limit_ppm` either way.
    fn beyond(self, limit_ppm: f64) -> bool {
        self.ppm.abs() - self.error_ppm > limit_ppm
    }
}

/// What one measurement told.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Seen {
    /// The clock stepped since the measurement before (its rate over the last interval
    /// disagrees with its rate over the span): the span starts again here.
    pub stepped: bool,
    /// The drift is beyond the limit, for the first time in this watch: its rate, ppm.
    pub drift_flagged: Option<f64>,
}

/// Measurements kept per span (the first, the reference, always among them).
const KEPT: usize = 16;

/// The measurements of one siren's clock since it was last corrected.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ClockWatch {
    /// The measurements of the current span, oldest first: rates are measured from the first.
    span: Vec<ClockSample>,
    /// The rate the span's measurements agree on, ppm (positive: the device clock runs fast),
    /// once it is larger than its uncertainty.
    drift_ppm: Option<f64>,
    /// The drift was found beyond the limit.
    flagged: bool,
}

impl ClockWatch {
    /// The device clock was corrected: measurements from before describe another reading.
    /// (The oscillator is the same one: the drift found stays.)
    pub fn corrected(&mut self) {
        self.span.clear();
    }

    /// Adds a measurement; `max_drift_ppm` is the fastest drift a healthy clock has.
    pub fn add(&mut self, sample: ClockSample, max_drift_ppm: f64) -> Seen {
        let mut seen = Seen::default();
        let Some(&reference) = self.span.first() else {
            self.span.push(sample);
            return seen;
        };
        if self.span.len() >= KEPT {
            self.span.remove(1);
        }
        self.span.push(sample);
        let Some(whole) = Rate::between(&reference, &sample) else { return seen };
        // Only a span of two intervals tells a drift from a step: the latest measurement that
        // splits it into two long enough to measure.
        let split = self.span[1..self.span.len() - 1]
            .iter()
            .rev()
            .find(|m| sample.at_us - m.at_us >= MIN_SPAN_US && m.at_us - reference.at_us >= MIN_SPAN_US);
        let Some(split) = split.copied() else { return seen };
        match (Rate::between(&reference, &split), Rate::between(&split, &sample)) {
            (Some(earlier), Some(last)) if !earlier.agrees(last) => {
                seen.stepped = true;
                self.span = vec![sample];
            }
            (Some(_), Some(_)) => {
                self.drift_ppm = (whole.ppm.abs() > 2.0 * whole.error_ppm).then_some(whole.ppm);
                if whole.beyond(max_drift_ppm) && !self.flagged {
                    self.flagged = true;
                    seen.drift_flagged = Some(whole.ppm);
                }
            }
            _ => {}
        }
        seen
    }

    /// The offset predicted at `t_us` from the latest measurement and the drift found.
    pub fn predict(&self, t_us: i64) -> Option<i64> {
        let latest = self.span.last()?;
        let Some(ppm) = self.drift_ppm else { return Some(latest.offset_us) };
        #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation, reason = "µs, far below 2^52")]
        let lost = (ppm * 1e-6 * (t_us - latest.at_us) as f64).round() as i64;
        Some(latest.offset_us - lost)
    }

    /// The drift the measurements agree on, ppm (positive: the device clock runs fast).
    pub fn drift_ppm(&self) -> Option<f64> {
        self.drift_ppm
    }

    /// Whether the drift was found beyond the limit.
    pub fn flagged(&self) -> bool {
        self.flagged
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000;

    /// A measurement at `at_s` of a clock that reads `error_us` ahead of true time.
    fn ahead(at_s: i64, error_us: i64) -> ClockSample {
        ClockSample { at_us: at_s * S, offset_us: -error_us, round_trip_us: 10_000 }
    }

    #[test]
    fn a_fast_clock_is_flagged_once_three_measurements_agree_and_its_drift_predicted() {
        let mut w = ClockWatch::default();
        // 5,000 ppm fast: 150 ms every 30 s.
        assert_eq!(w.add(ahead(0, 0), 500.0), Seen::default());
        assert_eq!(w.add(ahead(30, 150_000), 500.0), Seen::default(), "two measurements: a step or a drift");
        assert_eq!(w.predict(90 * S), Some(-150_000), "no drift known yet");
        let seen = w.add(ahead(60, 300_000), 500.0);
        assert!(!seen.stepped);
        let ppm = seen.drift_flagged.unwrap();
        assert!((ppm - 5_000.0).abs() < 1.0, "{ppm}");
        assert_eq!(w.predict(90 * S), Some(-450_000));
        assert_eq!(w.add(ahead(90, 450_000), 500.0).drift_flagged, None, "flagged once");
        assert!(w.flagged());
    }

    #[test]
    fn measurements_a_second_apart_do_not_hide_a_drift() {
        // Rechecks a second apart (a measurement beyond the limit only within its error is
        // repeated): the drift is still measured over spans of five seconds or more.
        let mut w = ClockWatch::default();
        let flagged: Vec<Option<f64>> =
            [0, 10, 11, 12, 13, 20].into_iter().map(|t| w.add(ahead(t, 5_000 * t), 500.0).drift_flagged).collect();
        assert!(flagged[..5].iter().all(Option::is_none), "{flagged:?}");
        assert!(flagged[5].is_some_and(|ppm| (ppm - 5_000.0).abs() < 1.0), "{flagged:?}");
    }

    #[test]
    fn a_step_is_not_a_drift() {
        let mut w = ClockWatch::default();
        w.add(ahead(0, 0), 500.0);
        w.add(ahead(30, 0), 500.0);
        let seen = w.add(ahead(60, 1_500_000), 500.0);
        assert!(seen.stepped && seen.drift_flagged.is_none(), "{seen:?}");
        assert_eq!(w.predict(600 * S), Some(-1_500_000), "the step holds; nothing extrapolated");
        // The span starts again at the step: steady afterwards, nothing is flagged.
        for k in 3..10 {
            assert_eq!(w.add(ahead(30 * k, 1_500_000), 500.0), Seen::default());
        }
        assert!(!w.flagged() && w.drift_ppm().is_none());
    }

    #[test]
    fn a_healthy_drift_is_followed_but_not_flagged() {
        let mut w = ClockWatch::default();
        // 50 ppm slow; round trips of 2 ms.
        for k in 0..10 {
            let s = ClockSample { at_us: k * 60 * S, offset_us: k * 3_000, round_trip_us: 2_000 };
            assert_eq!(w.add(s, 500.0), Seen::default());
        }
        let ppm = w.drift_ppm().unwrap();
        assert!((ppm + 50.0).abs() < 0.1, "{ppm}");
        assert!(!w.flagged());
    }

    #[test]
    fn measurements_too_close_together_or_too_uncertain_say_nothing() {
        let mut w = ClockWatch::default();
        // A second apart: no rate at all.
        w.add(ahead(0, 0), 500.0);
        assert_eq!(w.add(ahead(1, 100_000), 500.0), Seen::default());
        // Round trips of a second over 20 s spans: ±50,000 ppm, nothing can be told.
        let mut w = ClockWatch::default();
        for (k, e) in [0, 20_000, 40_000].into_iter().enumerate() {
            let s = ClockSample { at_us: i64::try_from(k).unwrap() * 20 * S, offset_us: -e, round_trip_us: S };
            assert_eq!(w.add(s, 500.0), Seen::default());
        }
        assert_eq!(w.drift_ppm(), None);
    }

    #[test]
    fn a_correction_starts_a_new_span_and_keeps_the_drift() {
        let mut w = ClockWatch::default();
        for k in 0..3 {
            w.add(ahead(30 * k, 1_000 * 30 * k), 500.0);
        }
        assert!(w.flagged());
        w.corrected();
        assert_eq!(w.predict(100 * S), None);
        w.add(ahead(100, 0), 500.0);
        assert_eq!(w.predict(110 * S), Some(-10_000), "the oscillator's drift is still known");
    }
}

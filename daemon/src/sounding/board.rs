//! What `/metrics` shows of soundings: kept up to date by the runner, encoded at each scrape.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Unit;

use super::campaign::{Campaign, Phase};
use super::verdict::{FailReason, Verdict};

/// Start-skew histogram buckets, s: the default tolerance is 0.25 s.
const SKEW_BUCKETS: [f64; 10] = [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0];

/// A siren's last sounding.
#[derive(Debug, Clone)]
struct SirenResult {
    zone: String,
    result: &'static str,
    at_s: i64,
}

/// The last finished campaign of a schedule.
#[derive(Debug, Clone, Default)]
struct ScheduleResult {
    at_s: i64,
    by_result: BTreeMap<&'static str, usize>,
    by_zone_reason: BTreeMap<(String, &'static str), usize>,
}

/// The sounding state `/metrics` shows.
#[derive(Debug)]
pub struct Board {
    sirens: BTreeMap<String, SirenResult>,
    schedules: BTreeMap<String, ScheduleResult>,
    next: BTreeMap<String, i64>,
    finished: BTreeMap<(String, &'static str), u64>,
    last_missed: BTreeMap<String, i64>,
    skew: Histogram,
}

impl Default for Board {
    fn default() -> Self {
        Self {
            sirens: BTreeMap::new(),
            schedules: BTreeMap::new(),
            next: BTreeMap::new(),
            finished: BTreeMap::new(),
            last_missed: BTreeMap::new(),
            skew: Histogram::new(SKEW_BUCKETS),
        }
    }
}

/// The board shared between the engine and the metrics registry.
pub type SharedBoard = Arc<Mutex<Board>>;

impl Board {
    /// Starts the schedule's campaign counters at zero, so that the first miss after a
    /// restart is an increase Prometheus can see rather than a series born at 1.
    pub fn known(&mut self, schedule: &str) {
        for phase in [Phase::Done, Phase::Missed, Phase::Cancelled] {
            self.finished.entry((schedule.to_owned(), phase.as_str())).or_default();
        }
    }

    /// A campaign reached a final phase.
    pub fn finished(&mut self, c: &Campaign) {
        *self.finished.entry((c.schedule.clone(), c.phase.as_str())).or_default() += 1;
        self.show(c, true);
    }

    /// A campaign that finished before this run of the daemon: its results show again, but it
    /// is not counted (the counters are this run's) and adds nothing to the skew histogram.
    pub fn restored(&mut self, c: &Campaign) {
        self.show(c, false);
    }

    fn show(&mut self, c: &Campaign, observe_skew: bool) {
        let at_s = c.instant.as_second();
        if c.phase == Phase::Missed {
            let last = self.last_missed.entry(c.schedule.clone()).or_insert(at_s);
            *last = (*last).max(at_s);
        }
        if c.phase != Phase::Done {
            return;
        }
        if self.schedules.get(&c.schedule).is_some_and(|r| r.at_s > at_s) {
            return;
        }
        let mut result = ScheduleResult { at_s, ..ScheduleResult::default() };
        for t in &c.targets {
            let Some(v) = t.verdict else { continue };
            *result.by_result.entry(v.as_str()).or_default() += 1;
            if let Verdict::Fail(r) = v {
                *result.by_zone_reason.entry((t.zone.clone(), r.as_str())).or_default() += 1;
            }
            self.sirens.insert(t.siren.clone(), SirenResult { zone: t.zone.clone(), result: v.as_str(), at_s });
            #[allow(clippy::cast_precision_loss, reason = "skews are far below 2^52 µs")]
            if let Some(s) = t.skew_us.filter(|_| observe_skew) {
                self.skew.observe(s.abs() as f64 / 1e6);
            }
        }
        self.schedules.insert(c.schedule.clone(), result);
    }

    /// The next planned occurrence of a schedule.
    pub fn set_next(&mut self, schedule: &str, at_s: Option<i64>) {
        match at_s {
            Some(t) => self.next.insert(schedule.to_owned(), t),
            None => self.next.remove(schedule),
        };
    }
}

/// Encodes the `sirend_sounding*` series (per schedule).
#[derive(Debug)]
pub struct BoardCollector(pub SharedBoard);

/// Encodes the `siren_sounding_*` series (per siren), copied out of the board in batches so
/// that the lock is never held while a scraper is written to.
#[derive(Debug)]
pub struct BoardSirensCollector(pub SharedBoard);

/// Sirens copied out of the board at once.
const BATCH: usize = 512;

impl BoardSirensCollector {
    /// Calls `f` with every batch of sirens' results, in siren order.
    fn for_each_batch(&self, mut f: impl FnMut(&[(String, SirenResult)]) -> std::fmt::Result) -> std::fmt::Result {
        use std::ops::Bound;
        let mut after: Option<String> = None;
        loop {
            let batch: Vec<(String, SirenResult)> = {
                let b = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                let from = after.as_ref().map_or(Bound::Unbounded, Bound::Excluded);
                b.sirens
                    .range::<String, _>((from, Bound::Unbounded))
                    .take(BATCH)
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            };
            let Some((last, _)) = batch.last() else { return Ok(()) };
            after = Some(last.clone());
            f(&batch)?;
        }
    }
}

impl Collector for BoardSirensCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        {
            let help = "1 for the result of the siren's last sounding (pass or the failure reason)";
            let mut m = encoder.encode_descriptor("siren_sounding_last_result", help, None, MetricType::Gauge)?;
            self.for_each_batch(|batch| {
                for (siren, r) in batch {
                    m.encode_family(&[("siren", siren.as_str()), ("zone", r.zone.as_str()), ("result", r.result)])?
                        .encode_gauge(&1)?;
                }
                Ok(())
            })?;
        }
        {
            let help = "When the siren's last sounding was due";
            let unit = Unit::Seconds;
            let mut m =
                encoder.encode_descriptor("siren_sounding_last_timestamp", help, Some(&unit), MetricType::Gauge)?;
            self.for_each_batch(|batch| {
                for (siren, r) in batch {
                    m.encode_family(&[("siren", siren.as_str()), ("zone", r.zone.as_str())])?.encode_gauge(&r.at_s)?;
                }
                Ok(())
            })?;
        }
        Ok(())
    }
}

impl Collector for BoardCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let b = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        {
            let help = "Sirens by result in the schedule's last finished campaign";
            let mut m = encoder.encode_descriptor("sirend_sounding_sirens", help, None, MetricType::Gauge)?;
            for (schedule, r) in &b.schedules {
                for result in std::iter::once("pass").chain(FailReason::ALL.iter().map(|f| f.as_str())) {
                    let n = i64::try_from(r.by_result.get(result).copied().unwrap_or(0)).unwrap_or(i64::MAX);
                    m.encode_family(&[("schedule", schedule.as_str()), ("result", result)])?.encode_gauge(&n)?;
                }
            }
        }
        {
            let help = "Failed sirens by zone and reason in the schedule's last finished campaign";
            let mut m = encoder.encode_descriptor("sirend_sounding_failures", help, None, MetricType::Gauge)?;
            for (schedule, r) in &b.schedules {
                for ((zone, reason), n) in &r.by_zone_reason {
                    let n = i64::try_from(*n).unwrap_or(i64::MAX);
                    m.encode_family(&[("schedule", schedule.as_str()), ("zone", zone.as_str()), ("reason", reason)])?
                        .encode_gauge(&n)?;
                }
            }
        }
        {
            let help = "When the schedule's last finished campaign was due";
            let unit = Unit::Seconds;
            let mut m =
                encoder.encode_descriptor("sirend_sounding_last_timestamp", help, Some(&unit), MetricType::Gauge)?;
            for (schedule, r) in &b.schedules {
                m.encode_family(&[("schedule", schedule.as_str())])?.encode_gauge(&r.at_s)?;
            }
        }
        {
            let help = "The schedule's next planned sounding";
            let unit = Unit::Seconds;
            let mut m =
                encoder.encode_descriptor("sirend_schedule_next_timestamp", help, Some(&unit), MetricType::Gauge)?;
            for (schedule, t) in &b.next {
                m.encode_family(&[("schedule", schedule.as_str())])?.encode_gauge(t)?;
            }
        }
        {
            let help = "Campaigns that ended, by final phase (done, missed, cancelled)";
            let mut m = encoder.encode_descriptor("sirend_soundings", help, None, MetricType::Counter)?;
            for ((schedule, phase), n) in &b.finished {
                m.encode_family(&[("schedule", schedule.as_str()), ("phase", phase)])?
                    .encode_counter::<prometheus_client::encoding::NoLabelSet, u64, f64>(n, None)?;
            }
        }
        {
            let help = "When the schedule's latest missed occurrence was due (the daemon was not running)";
            let unit = Unit::Seconds;
            let mut m = encoder.encode_descriptor(
                "sirend_sounding_last_missed_timestamp",
                help,
                Some(&unit),
                MetricType::Gauge,
            )?;
            for (schedule, t) in &b.last_missed {
                m.encode_family(&[("schedule", schedule.as_str())])?.encode_gauge(t)?;
            }
        }
        {
            let help = "Start error of each siren that reported a start, clock offsets corrected";
            let unit = Unit::Seconds;
            let m =
                encoder.encode_descriptor("sirend_sounding_start_skew", help, Some(&unit), MetricType::Histogram)?;
            prometheus_client::encoding::EncodeMetric::encode(&b.skew, m)?;
        }
        Ok(())
    }
}

//! Prometheus metrics (`prometheus-client`; it adds the `_total` and `_info` suffixes itself).
//! Names follow Prometheus conventions: `siren_` prefix, base units.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use siren_proto::RejectReason;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Unit;

use crate::coverage::metrics::{CoverageCollector, SharedCoverage};
use crate::fleet::FleetState;
use crate::liveness::State;
use crate::sounding::board::{BoardCollector, SharedBoard};

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LinkLabel {
    link: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

/// Every metric the daemon exports. Per-siren and per-zone series are not stored here: a
/// collector encodes them from the fleet state at each scrape, so they cost no memory per
/// siren and can never disagree with the state.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    link_up: Family<LinkLabel, Gauge>,
    polls: Family<LinkLabel, Counter>,
    received: Family<LinkLabel, Counter>,
    poll_failures: Family<LinkLabel, Counter>,
    poll_duration: Family<LinkLabel, Histogram>,
    rejected: Family<ReasonLabel, Counter>,
    events: Counter,
    soundings: SharedBoard,
    /// The length of the last exposition, to size the next one's buffer.
    last_len: AtomicUsize,
}

fn poll_buckets() -> Histogram {
    // 9600 baud polls take ~130 ms; MQTT round trips a few ms; timeouts up to seconds.
    Histogram::new([0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.5, 5.0])
}

impl Metrics {
    /// Registers every metric; per-siren series come from `fleet`, coverage series from
    /// `coverage`, at each scrape.
    pub fn new(fleet: Arc<RwLock<FleetState>>, coverage: Option<SharedCoverage>) -> Self {
        let mut registry = Registry::default();
        let link_up = Family::<LinkLabel, Gauge>::default();
        let polls = Family::<LinkLabel, Counter>::default();
        let received = Family::<LinkLabel, Counter>::default();
        let poll_failures = Family::<LinkLabel, Counter>::default();
        let poll_duration = Family::<LinkLabel, Histogram>::new_with_constructor(poll_buckets as fn() -> Histogram);
        let rejected = Family::<ReasonLabel, Counter>::default();
        let events = Counter::default();
        registry.register_collector(Box::new(FleetCollector(fleet)));
        if let Some(coverage) = coverage {
            registry.register_collector(Box::new(CoverageCollector(coverage)));
        }
        let soundings = SharedBoard::default();
        registry.register_collector(Box::new(BoardCollector(Arc::clone(&soundings))));
        registry.register("siren_link_up", "1 while the link (serial port, MQTT broker) works", link_up.clone());
        registry.register("siren_link_polls", "Polls sent on the link", polls.clone());
        registry.register(
            "siren_link_received",
            "Chunks (serial) or messages (MQTT) received on the link",
            received.clone(),
        );
        registry.register("siren_link_poll_failures", "Polls unanswered after every retry", poll_failures.clone());
        registry.register_with_unit(
            "siren_link_poll_duration",
            "From a poll's transmission to its answer",
            prometheus_client::registry::Unit::Seconds,
            poll_duration.clone(),
        );
        registry.register("siren_frames_rejected", "Frames refused, by reason (docs/protocol.md §7)", rejected.clone());
        registry.register("siren_events_written", "Events committed to the store", events.clone());
        for reason in RejectReason::ALL {
            let _ = rejected.get_or_create(&ReasonLabel { reason: reason.as_str() });
        }
        Self {
            registry,
            link_up,
            polls,
            received,
            poll_failures,
            poll_duration,
            rejected,
            events,
            soundings,
            last_len: AtomicUsize::new(0),
        }
    }

    /// The sounding results `/metrics` shows, for the engine to update.
    pub fn soundings(&self) -> SharedBoard {
        Arc::clone(&self.soundings)
    }

    /// The exposition, in the OpenMetrics text format.
    pub fn encode(&self) -> String {
        // A fleet of 10,000 sirens makes a 5.6 MB exposition: sizing the buffer from the last
        // scrape spares the doubling reallocations, whose freed halves the allocator keeps.
        let hint = self.last_len.load(Ordering::Relaxed);
        let mut out = String::with_capacity(hint + hint / 16);
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        self.last_len.store(out.len(), Ordering::Relaxed);
        out
    }

    /// The exposition in the classic Prometheus text format (version 0.0.4), for scrapers and
    /// tools such as `promtool check metrics` that do not speak OpenMetrics.
    pub fn encode_classic(&self) -> String {
        to_classic(&self.encode())
    }

    pub fn link_up(&self, link: &str, up: bool) {
        self.link_up.get_or_create(&LinkLabel { link: link.to_owned() }).set(i64::from(up));
    }

    /// Starts a polled link's counters at zero, so that rates and failure ratios exist (and
    /// read zero) before the first failure.
    pub fn polled_link(&self, link: &str) {
        let label = LinkLabel { link: link.to_owned() };
        let _ = self.polls.get_or_create(&label);
        let _ = self.received.get_or_create(&label);
        let _ = self.poll_failures.get_or_create(&label);
    }

    pub fn poll(&self, link: &str) {
        self.polls.get_or_create(&LinkLabel { link: link.to_owned() }).inc();
    }

    pub fn received(&self, link: &str) {
        self.received.get_or_create(&LinkLabel { link: link.to_owned() }).inc();
    }

    pub fn poll_failed(&self, link: &str) {
        self.poll_failures.get_or_create(&LinkLabel { link: link.to_owned() }).inc();
    }

    pub fn poll_duration(&self, link: &str, d: Duration) {
        self.poll_duration.get_or_create(&LinkLabel { link: link.to_owned() }).observe(d.as_secs_f64());
    }

    pub fn frame_rejected(&self, reason: RejectReason) {
        self.rejected.get_or_create(&ReasonLabel { reason: reason.as_str() }).inc();
    }

    /// Brings the written-events counter up to the store's count.
    pub fn events_written(&self, total: u64) {
        let now = self.events.get();
        if total > now {
            self.events.inc_by(total - now);
        }
    }
}

/// Converts OpenMetrics text to the classic format: a counter family is named with its
/// `_total` suffix in HELP and TYPE, and the OpenMetrics-only `# UNIT` and `# EOF` lines go.
pub fn to_classic(openmetrics: &str) -> String {
    use std::fmt::Write as _;
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        let meta = line
            .strip_prefix("# HELP ")
            .map(|r| ("# HELP ", r))
            .or_else(|| line.strip_prefix("# TYPE ").map(|r| ("# TYPE ", r)));
        if let Some((kind, rest)) = meta {
            let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
            let suffix = if counters.contains(name) { "_total" } else { "" };
            let _ = writeln!(out, "{kind}{name}{suffix} {tail}");
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// `siren_link_info`: the zone a link serves (the deepest zone holding all its sirens), so that
/// link alerts route to the crew of that zone.
fn encode_link_info(
    encoder: &mut DescriptorEncoder<'_>,
    sirens: &[crate::fleet::Siren],
) -> Result<(), std::fmt::Error> {
    let mut served: std::collections::BTreeMap<&str, &str> = std::collections::BTreeMap::new();
    for s in sirens {
        for link in &s.liveness.links {
            let zone = s.zone.as_str();
            served.entry(link.as_str()).and_modify(|common| *common = common_zone(common, zone)).or_insert(zone);
        }
    }
    let help = "The zone a link serves: the deepest zone holding every siren on it (always 1)";
    let mut m = encoder.encode_descriptor("siren_link_info", help, None, MetricType::Gauge)?;
    for (link, zone) in served {
        m.encode_family(&[("link", link), ("zone", zone)])?.encode_gauge(&1i64)?;
    }
    Ok(())
}

/// `siren_fault_since_timestamp_seconds`: each active fault and when it was raised, so that
/// dashboards show the faults with their age.
#[allow(clippy::cast_precision_loss, reason = "timestamps in seconds fit f64")]
fn encode_fault_since(encoder: &mut DescriptorEncoder<'_>, fleet: &FleetState) -> Result<(), std::fmt::Error> {
    let help = "When each active fault was raised (as first seen by this run of the daemon), Unix time";
    let mut m =
        encoder.encode_descriptor("siren_fault_since_timestamp", help, Some(&Unit::Seconds), MetricType::Gauge)?;
    let sirens = fleet.sirens();
    for (index, fault, at) in fleet.active_faults() {
        let s = &sirens[index];
        let labels = [("siren", s.id.as_str()), ("zone", s.zone.as_str()), ("fault", fault)];
        m.encode_family(&labels)?.encode_gauge(&(at.as_microsecond() as f64 / 1e6))?;
    }
    Ok(())
}

/// The deepest zone path that is `a` or an ancestor of it and `b` or an ancestor of it.
fn common_zone<'a>(a: &'a str, b: &str) -> &'a str {
    let mut end = 0;
    for (x, y) in a.split('/').zip(b.split('/')) {
        if x != y {
            break;
        }
        end += x.len() + 1;
    }
    &a[..end.saturating_sub(1).min(a.len())]
}

/// Encodes the per-siren and per-zone series from the fleet state at each scrape.
#[derive(Debug)]
struct FleetCollector(Arc<RwLock<FleetState>>);

impl Collector for FleetCollector {
    #[allow(clippy::cast_precision_loss, reason = "timestamps and offsets in seconds fit f64")]
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let fleet = self.0.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        let sirens = fleet.sirens();
        {
            let help = "1 for the siren's current liveness state, 0 for the others";
            let mut m = encoder.encode_descriptor("siren_state", help, None, MetricType::Gauge)?;
            for s in sirens {
                for state in State::ALL {
                    let labels = [("siren", s.id.as_str()), ("zone", s.zone.as_str()), ("state", state.as_str())];
                    m.encode_family(&labels)?.encode_gauge(&i64::from(state == s.liveness.state))?;
                }
            }
        }
        {
            // A gauge of 1 rather than an OpenMetrics info type: promtool and the classic text
            // format know gauges, not info.
            let mut m = encoder.encode_descriptor(
                "siren_info",
                "Static facts about a siren (always 1)",
                None,
                MetricType::Gauge,
            )?;
            for s in sirens {
                let (lat, lon, rating) =
                    (format!("{:.6}", s.latitude), format!("{:.6}", s.longitude), format!("{:.1}", s.rating_db));
                // Its links joined with `+`: equal to `siren_link_info`'s `link` for a siren on
                // one link, so that Alertmanager inhibits its alerts while that link is down; a
                // redundant siren stays reachable when one link fails and is never inhibited.
                let links = s.liveness.links.join("+");
                let labels = [
                    ("siren", s.id.as_str()),
                    ("name", s.name.as_str()),
                    ("zone", s.zone.as_str()),
                    ("link", links.as_str()),
                    ("latitude", lat.as_str()),
                    ("longitude", lon.as_str()),
                    ("rating_db", rating.as_str()),
                ];
                m.encode_family(&labels)?.encode_gauge(&1i64)?;
            }
        }
        let telemetry = || sirens.iter().filter_map(|s| s.telemetry.as_ref().map(|t| (s.id.as_str(), t)));
        {
            let mut m =
                encoder.encode_descriptor("siren_battery", "Battery voltage", Some(&Unit::Volts), MetricType::Gauge)?;
            for (id, t) in telemetry() {
                m.encode_family(&[("siren", id)])?.encode_gauge(&t.battery_volts)?;
            }
        }
        {
            let mut m = encoder.encode_descriptor(
                "siren_mains_present",
                "1 while the siren runs on mains power",
                None,
                MetricType::Gauge,
            )?;
            for (id, t) in telemetry() {
                m.encode_family(&[("siren", id)])?.encode_gauge(&i64::from(t.mains_present))?;
            }
        }
        {
            let help = "1 while the siren's cabinet door is open";
            let mut m = encoder.encode_descriptor("siren_door_open", help, None, MetricType::Gauge)?;
            for (id, t) in telemetry() {
                m.encode_family(&[("siren", id)])?.encode_gauge(&i64::from(t.door_open))?;
            }
        }
        encode_link_info(&mut encoder, sirens)?;
        encode_fault_since(&mut encoder, &fleet)?;
        {
            let help = "When the siren last sent a status report, Unix time";
            let mut m = encoder.encode_descriptor(
                "siren_last_seen_timestamp",
                help,
                Some(&Unit::Seconds),
                MetricType::Gauge,
            )?;
            for (id, t) in telemetry() {
                m.encode_family(&[("siren", id)])?.encode_gauge(&(t.at.as_microsecond() as f64 / 1e6))?;
            }
        }
        {
            let help = "Siren clock minus daemon clock at its last status report";
            let mut m =
                encoder.encode_descriptor("siren_clock_offset", help, Some(&Unit::Seconds), MetricType::Gauge)?;
            for (id, t) in telemetry() {
                m.encode_family(&[("siren", id)])?.encode_gauge(&(t.clock_offset_us as f64 / 1e6))?;
            }
        }
        {
            let counts = fleet.counts_by_zone();
            let zones: std::collections::BTreeSet<&str> = counts.keys().map(|(z, _)| z.as_str()).collect();
            let help = "Sirens per zone (every level of the hierarchy) and state";
            let mut m = encoder.encode_descriptor("siren_zone_sirens", help, None, MetricType::Gauge)?;
            for zone in zones {
                for state in State::ALL {
                    let n = counts.get(&(zone.to_owned(), state)).copied().unwrap_or(0);
                    m.encode_family(&[("zone", zone), ("state", state.as_str())])?
                        .encode_gauge(&i64::try_from(n).unwrap_or(i64::MAX))?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::common_zone;

    #[test]
    fn common_zone_is_the_deepest_shared_ancestor() {
        assert_eq!(common_zone("hz/c/t1", "hz/c/t2"), "hz/c");
        assert_eq!(common_zone("hz/c", "hz/c"), "hz/c");
        assert_eq!(common_zone("hz/c", "hz/cx"), "hz");
        assert_eq!(common_zone("hz", "sh"), "");
    }
}

//! Prometheus metrics (`prometheus-client`; it adds the `_total` and `_info` suffixes itself).
//! Names follow Prometheus conventions: `siren_` prefix, base units.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use siren_proto::RejectReason;

use crate::fleet::{FleetState, Telemetry};
use crate::liveness::State;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SirenLabel {
    siren: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SirenState {
    siren: String,
    zone: String,
    state: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SirenInfo {
    siren: String,
    name: String,
    zone: String,
    latitude: String,
    longitude: String,
    rating_db: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ZoneState {
    zone: String,
    state: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LinkLabel {
    link: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

type FloatGauge = Gauge<f64, AtomicU64>;

/// Every metric the daemon exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    state: Family<SirenState, Gauge>,
    battery: Family<SirenLabel, FloatGauge>,
    mains: Family<SirenLabel, Gauge>,
    last_seen: Family<SirenLabel, FloatGauge>,
    clock_offset: Family<SirenLabel, FloatGauge>,
    zone: Family<ZoneState, Gauge>,
    link_up: Family<LinkLabel, Gauge>,
    polls: Family<LinkLabel, Counter>,
    received: Family<LinkLabel, Counter>,
    poll_failures: Family<LinkLabel, Counter>,
    poll_duration: Family<LinkLabel, Histogram>,
    rejected: Family<ReasonLabel, Counter>,
    events: Counter,
    zones: std::sync::Mutex<Vec<String>>,
}

fn poll_buckets() -> Histogram {
    // 9600 baud polls take ~130 ms; MQTT round trips a few ms; timeouts up to seconds.
    Histogram::new([0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.5, 5.0])
}

impl Metrics {
    /// Registers every metric, with the fleet's sirens pre-populated.
    pub fn new(fleet: &FleetState) -> Self {
        let mut registry = Registry::default();
        let state = Family::<SirenState, Gauge>::default();
        let facts: Vec<SirenInfo> = fleet
            .sirens()
            .iter()
            .map(|s| SirenInfo {
                siren: s.id.clone(),
                name: s.name.clone(),
                zone: s.zone.to_string(),
                latitude: format!("{:.6}", s.latitude),
                longitude: format!("{:.6}", s.longitude),
                rating_db: format!("{:.1}", s.rating_db),
            })
            .collect();
        let battery = Family::<SirenLabel, FloatGauge>::default();
        let mains = Family::<SirenLabel, Gauge>::default();
        let last_seen = Family::<SirenLabel, FloatGauge>::default();
        let clock_offset = Family::<SirenLabel, FloatGauge>::default();
        let zone = Family::<ZoneState, Gauge>::default();
        let link_up = Family::<LinkLabel, Gauge>::default();
        let polls = Family::<LinkLabel, Counter>::default();
        let received = Family::<LinkLabel, Counter>::default();
        let poll_failures = Family::<LinkLabel, Counter>::default();
        let poll_duration = Family::<LinkLabel, Histogram>::new_with_constructor(poll_buckets as fn() -> Histogram);
        let rejected = Family::<ReasonLabel, Counter>::default();
        let events = Counter::default();
        registry.register("siren_state", "1 for the siren's current liveness state, 0 for the others", state.clone());
        // A gauge of 1 rather than an OpenMetrics info type: promtool and the classic text
        // format know gauges, not info.
        let info = Family::<SirenInfo, Gauge>::default();
        for f in facts {
            info.get_or_create(&f).set(1);
        }
        registry.register("siren_info", "Static facts about a siren (always 1)", info);
        registry.register_with_unit(
            "siren_battery",
            "Battery voltage",
            prometheus_client::registry::Unit::Volts,
            battery.clone(),
        );
        registry.register("siren_mains_present", "1 while the siren runs on mains power", mains.clone());
        registry.register_with_unit(
            "siren_last_seen_timestamp",
            "When the siren was last heard, Unix time",
            prometheus_client::registry::Unit::Seconds,
            last_seen.clone(),
        );
        registry.register_with_unit(
            "siren_clock_offset",
            "Siren clock minus daemon clock at its last status report",
            prometheus_client::registry::Unit::Seconds,
            clock_offset.clone(),
        );
        registry.register("siren_zone_sirens", "Sirens per zone (every level) and state", zone.clone());
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
        let metrics = Self {
            registry,
            state,
            battery,
            mains,
            last_seen,
            clock_offset,
            zone,
            link_up,
            polls,
            received,
            poll_failures,
            poll_duration,
            rejected,
            events,
            zones: std::sync::Mutex::new(Vec::new()),
        };
        for s in fleet.sirens() {
            metrics.siren_state_in(&s.id, s.zone.as_str(), s.liveness.state);
        }
        metrics.update_zones(fleet);
        metrics
    }

    /// The exposition, in the OpenMetrics text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// The exposition in the classic Prometheus text format (version 0.0.4), for scrapers and
    /// tools such as `promtool check metrics` that do not speak OpenMetrics.
    pub fn encode_classic(&self) -> String {
        to_classic(&self.encode())
    }

    fn siren_state_in(&self, siren: &str, zone: &str, current: State) {
        for s in State::ALL {
            let label = SirenState { siren: siren.to_owned(), zone: zone.to_owned(), state: s.as_str() };
            self.state.get_or_create(&label).set(i64::from(s == current));
        }
    }

    /// A siren's state changed.
    pub fn siren_state(&self, siren: &str, zone: &str, state: State) {
        self.siren_state_in(siren, zone, state);
    }

    /// Per-zone counts, recomputed from the fleet.
    pub fn update_zones(&self, fleet: &FleetState) {
        let counts = fleet.counts_by_zone();
        let mut zones = self.zones.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for (zone, _) in counts.keys() {
            if !zones.contains(zone) {
                zones.push(zone.clone());
            }
        }
        for zone in zones.iter() {
            for s in State::ALL {
                let n = counts.get(&(zone.clone(), s)).copied().unwrap_or(0);
                self.zone
                    .get_or_create(&ZoneState { zone: zone.clone(), state: s.as_str() })
                    .set(i64::try_from(n).unwrap_or(i64::MAX));
            }
        }
    }

    #[allow(clippy::cast_precision_loss, reason = "timestamps and offsets in seconds fit f64")]
    pub fn telemetry(&self, siren: &str, t: &Telemetry) {
        let label = SirenLabel { siren: siren.to_owned() };
        self.battery.get_or_create(&label).set(t.battery_volts);
        self.mains.get_or_create(&label).set(i64::from(t.mains_present));
        self.last_seen.get_or_create(&label).set(t.at.as_microsecond() as f64 / 1e6);
        self.clock_offset.get_or_create(&label).set(t.clock_offset_us as f64 / 1e6);
    }

    pub fn link_up(&self, link: &str, up: bool) {
        self.link_up.get_or_create(&LinkLabel { link: link.to_owned() }).set(i64::from(up));
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

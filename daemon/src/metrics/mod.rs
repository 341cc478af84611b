//! Prometheus metrics (`prometheus-client`; it adds the `_total` and `_info` suffixes itself).
//! Names follow Prometheus conventions: `siren_` prefix, base units.

mod exposition;
mod fleet;

use std::fmt;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use exposition::ChunkWriter;
pub use exposition::{ChunkSink, Format, to_classic};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use siren_proto::RejectReason;

use crate::coverage::metrics::{CoverageCollector, SharedCoverage, SoleCoverageCollector};
use crate::fleet::FleetState;
use crate::sounding::board::{BoardCollector, BoardSirensCollector, SharedBoard};

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LinkLabel {
    link: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SirenLabel {
    siren: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CapLabel {
    source: String,
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LiveLabel {
    activation: String,
    state: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefusedLabel {
    reason: &'static str,
}

/// A NAK reason as a label value (docs/protocol.md §5.1, in snake case).
fn nak_name(code: siren_proto::message::NakCode) -> &'static str {
    use siren_proto::message::NakCode;
    match code {
        NakCode::Unsupported => "unsupported",
        NakCode::BadPayload => "bad_payload",
        NakCode::Busy => "busy",
        NakCode::UnknownCampaign => "unknown_campaign",
        NakCode::Expired => "expired",
        NakCode::CannotSound => "cannot_sound",
        NakCode::BadPattern => "bad_pattern",
        NakCode::LiveDisabled => "live_disabled",
        NakCode::ClockUnsynced => "clock_unsynced",
    }
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
    /// Families with a few series each (links, zones, schedules): formatted at once.
    registry: Registry,
    /// The daemon's own families (leadership, the store's health): exported by a standby too,
    /// which exports nothing of the fleet (its view is the leader's, read back).
    daemon: Registry,
    /// Whether the fleet's families are exported: this daemon leads, or is alone.
    exports_fleet: std::sync::atomic::AtomicBool,
    /// Families with series per siren: copied out of their locks in batches and streamed.
    per_siren: Registry,
    link_up: Family<LinkLabel, Gauge>,
    polls: Family<LinkLabel, Counter>,
    received: Family<LinkLabel, Counter>,
    poll_failures: Family<LinkLabel, Counter>,
    poll_duration: Family<LinkLabel, Histogram>,
    rejected: Family<ReasonLabel, Counter>,
    events: Counter,
    store: StoreMetrics,
    leases_waiting: Gauge,
    api_refused: Family<RefusedLabel, Counter>,
    command_naks: Family<RefusedLabel, Counter>,
    commands_unanswered: Counter,
    uncommanded: Family<SirenLabel, Counter>,
    uncommanded_last: Family<SirenLabel, Gauge>,
    cap_alerts: Family<CapLabel, Counter>,
    cap_feed_polls: Family<CapLabel, Counter>,
    live_sirens: Family<LiveLabel, Gauge>,
    http_refused: Counter,
    soundings: SharedBoard,
    leadership: LeadershipMetrics,
}

/// Who leads among the daemons sharing the store.
#[derive(Debug, Default)]
struct LeadershipMetrics {
    leader: Gauge,
    epoch: Gauge,
    since: Gauge,
    alive: Gauge,
    expected: Gauge,
}

impl LeadershipMetrics {
    fn register(&self, registry: &mut Registry) {
        registry.register("sirend_leader", "1 while this daemon leads (commands the sirens)", self.leader.clone());
        registry.register(
            "sirend_leader_epoch",
            "The leadership term this daemon leads, or the highest it has seen (0: a daemon alone on SQLite)",
            self.epoch.clone(),
        );
        registry.register(
            "sirend_leader_since_seconds",
            "When the leader's term began, as a Unix time (0: no daemon is known to lead)",
            self.since.clone(),
        );
        registry.register(
            "sirend_daemons_alive",
            "Daemons sharing the store seen alive within three renewal periods",
            self.alive.clone(),
        );
        registry.register(
            "sirend_daemons_expected",
            "Daemons that should share the store ([leadership] daemons; 1 alone on SQLite)",
            self.expected.clone(),
        );
    }
}

/// The daemon's own families (a standby exports these alone), registered.
fn daemon_families() -> (Registry, StoreMetrics, LeadershipMetrics) {
    let mut daemon = Registry::default();
    let store = StoreMetrics::default();
    store.register(&mut daemon);
    let leadership = LeadershipMetrics::default();
    leadership.register(&mut daemon);
    (daemon, store, leadership)
}

/// A counter registered under `name`.
fn register_counter(registry: &mut Registry, name: &str, help: &str) -> Counter {
    let counter = Counter::default();
    registry.register(name, help, counter.clone());
    counter
}

/// CAP alerts received and CAP feed polls, by source and outcome.
fn register_cap(registry: &mut Registry) -> (Family<CapLabel, Counter>, Family<CapLabel, Counter>) {
    let alerts = Family::<CapLabel, Counter>::default();
    registry.register(
        "sirend_cap_alerts",
        "CAP alerts received, by source and outcome (requested, updated, cancelled, exercise, recorded, duplicate, refused)",
        alerts.clone(),
    );
    let polls = Family::<CapLabel, Counter>::default();
    registry.register(
        "sirend_cap_feed_polls",
        "Polls of CAP feeds, by feed (`source`) and outcome (ok, failed)",
        polls.clone(),
    );
    (alerts, polls)
}

/// The count of activations nobody ordered and the time of the last, per siren.
fn register_uncommanded(registry: &mut Registry) -> (Family<SirenLabel, Counter>, Family<SirenLabel, Gauge>) {
    let count = Family::<SirenLabel, Counter>::default();
    registry.register(
        "siren_uncommanded_activations",
        "Times a siren was found armed or sounding, or reported a campaign, that no campaign of sirend ordered",
        count.clone(),
    );
    let last = Family::<SirenLabel, Gauge>::default();
    registry.register(
        "siren_last_uncommanded_activation_timestamp_seconds",
        "When a siren was last found armed or sounding, or reported a campaign, that no campaign of sirend ordered (Unix time)",
        last.clone(),
    );
    (count, last)
}

/// `sirend_live_sirens`, registered.
fn register_live(registry: &mut Registry) -> Family<LiveLabel, Gauge> {
    let family = Family::<LiveLabel, Gauge>::default();
    let help = "The sirens of each LIVE activation by state (pending, armed, sounding, sounded, done, failed, stopped)";
    registry.register("sirend_live_sirens", help, family.clone());
    family
}

/// The store's health.
#[derive(Debug, Default)]
struct StoreMetrics {
    failing: Gauge,
    commit_failures: Counter,
    backlog: Gauge,
    dropped: Counter,
    fenced: Counter,
}

impl StoreMetrics {
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "sirend_store_failing",
            "1 while the store's last commit failed (disk full, read-only, I/O error) or a commit is stalled (slow or hung disk)",
            self.failing.clone(),
        );
        registry.register(
            "sirend_store_commit_failures",
            "Store commits that failed; what they held is kept and tried again (sirend_store_backlog)",
            self.commit_failures.clone(),
        );
        registry.register(
            "sirend_store_backlog",
            "Writes kept after a failed commit, waiting to be committed again",
            self.backlog.clone(),
        );
        registry.register(
            "sirend_store_events_dropped",
            "Events dropped because the store could not commit and its backlog was full",
            self.dropped.clone(),
        );
        registry.register(
            "sirend_store_fenced_writes",
            "Writes refused because another daemon leads (what this daemon had queued when it lost the lease)",
            self.fenced.clone(),
        );
    }
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
        let mut per_siren = Registry::default();
        let link_up = Family::<LinkLabel, Gauge>::default();
        let polls = Family::<LinkLabel, Counter>::default();
        let received = Family::<LinkLabel, Counter>::default();
        let poll_failures = Family::<LinkLabel, Counter>::default();
        let poll_duration = Family::<LinkLabel, Histogram>::new_with_constructor(poll_buckets as fn() -> Histogram);
        let rejected = Family::<ReasonLabel, Counter>::default();
        let events = Counter::default();
        let leases_waiting = Gauge::default();
        let api_refused = Family::<RefusedLabel, Counter>::default();
        let command_naks = Family::<RefusedLabel, Counter>::default();
        let commands_unanswered = Counter::default();
        let live_sirens = register_live(&mut registry);
        let (uncommanded, uncommanded_last) = register_uncommanded(&mut registry);
        let (cap_alerts, cap_feed_polls) = register_cap(&mut registry);
        let http_refused = register_counter(
            &mut registry,
            "sirend_http_connections_refused",
            "HTTP connections closed at once: too many open in all, or from one address",
        );
        per_siren.register_collector(Box::new(fleet::FleetCollector(fleet)));
        if let Some(coverage) = coverage {
            registry.register_collector(Box::new(CoverageCollector(Arc::clone(&coverage))));
            per_siren.register_collector(Box::new(SoleCoverageCollector(coverage)));
        }
        let soundings = SharedBoard::default();
        registry.register_collector(Box::new(BoardCollector(Arc::clone(&soundings))));
        per_siren.register_collector(Box::new(BoardSirensCollector(Arc::clone(&soundings))));
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
        let (daemon, store, leadership) = daemon_families();
        registry.register(
            "sirend_replay_leases_waiting",
            "Keys whose next counter lease could not be stored: nothing is sent under them",
            leases_waiting.clone(),
        );
        registry.register(
            "sirend_api_refused",
            "API calls refused: unauthenticated (no or an invalid token) or forbidden (the role)",
            api_refused.clone(),
        );
        registry.register(
            "siren_command_naks",
            "Commands the sirens refused (NAK), by reason (docs/protocol.md §5.1)",
            command_naks.clone(),
        );
        registry.register(
            "siren_commands_unanswered",
            "Commands (not polls) unanswered after every retry",
            commands_unanswered.clone(),
        );
        for reason in ["unauthenticated", "forbidden"] {
            let _ = api_refused.get_or_create(&RefusedLabel { reason });
        }
        for reason in RejectReason::ALL {
            let _ = rejected.get_or_create(&ReasonLabel { reason: reason.as_str() });
        }
        Self {
            registry,
            daemon,
            exports_fleet: std::sync::atomic::AtomicBool::new(true),
            per_siren,
            link_up,
            polls,
            received,
            poll_failures,
            poll_duration,
            rejected,
            events,
            store,
            leases_waiting,
            api_refused,
            command_naks,
            commands_unanswered,
            uncommanded,
            uncommanded_last,
            cap_alerts,
            cap_feed_polls,
            live_sirens,
            http_refused,
            soundings,
            leadership,
        }
    }

    /// The sounding results `/metrics` shows, for the engine to update.
    pub fn soundings(&self) -> SharedBoard {
        Arc::clone(&self.soundings)
    }

    /// Writes the exposition to `sink` in chunks of whole lines, and returns the sink. Nothing
    /// is written while a lock the engine takes is held, so a slow scraper (whose sink blocks)
    /// cannot slow the engine.
    pub fn write_to<S: ChunkSink>(&self, sink: S, format: Format) -> Result<S, fmt::Error> {
        let mut w = ChunkWriter::new(sink, format);
        // The small families are formatted under their locks: into memory first (a few KiB).
        let fleet = self.exports_fleet.load(std::sync::atomic::Ordering::Relaxed);
        let mut small = String::new();
        if fleet {
            prometheus_client::encoding::text::encode_registry(&mut small, &self.registry)?;
        }
        prometheus_client::encoding::text::encode_registry(&mut small, &self.daemon)?;
        fmt::Write::write_str(&mut w, &small)?;
        drop(small);
        if fleet {
            prometheus_client::encoding::text::encode_registry(&mut w, &self.per_siren)?;
        }
        prometheus_client::encoding::text::encode_eof(&mut w)?;
        w.finish()
    }

    /// The whole exposition in the OpenMetrics text format, in memory (tests, tools).
    pub fn encode(&self) -> String {
        // Writing to a String cannot fail.
        self.write_to(String::new(), Format::OpenMetrics).unwrap_or_default()
    }

    /// The whole exposition in the classic Prometheus text format (version 0.0.4), in memory.
    pub fn encode_classic(&self) -> String {
        self.write_to(String::new(), Format::Classic).unwrap_or_default()
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

    /// Shows the store's health.
    pub fn store_health(&self, health: &crate::store::HealthReport) {
        let m = &self.store;
        m.failing.set(i64::from(health.failing || health.stalled));
        let now = m.commit_failures.get();
        if health.failures > now {
            m.commit_failures.inc_by(health.failures - now);
        }
        m.backlog.set(i64::try_from(health.backlog).unwrap_or(i64::MAX));
        let dropped = m.dropped.get();
        if health.dropped > dropped {
            m.dropped.inc_by(health.dropped - dropped);
        }
        let fenced = m.fenced.get();
        if health.fenced > fenced {
            m.fenced.inc_by(health.fenced - fenced);
        }
    }

    /// A siren refused a command.
    pub fn command_nak(&self, code: siren_proto::message::NakCode) {
        self.command_naks.get_or_create(&RefusedLabel { reason: nak_name(code) }).inc();
    }

    /// A command went unanswered after every retry.
    pub fn command_unanswered(&self) {
        self.commands_unanswered.inc();
    }

    /// How many sirens of LIVE activation `activation` are in each state.
    pub fn live_sirens(&self, activation: u32, counts: &std::collections::BTreeMap<&'static str, usize>) {
        for state in ["pending", "armed", "sounding", "sounded", "done", "failed", "stopped"] {
            let n = i64::try_from(counts.get(state).copied().unwrap_or(0)).unwrap_or(i64::MAX);
            self.live_sirens.get_or_create(&LiveLabel { activation: activation.to_string(), state }).set(n);
        }
    }

    /// Siren `siren` was found armed or sounding, or reported a sounding, without a campaign
    /// of ours.
    pub fn uncommanded_activation(&self, siren: &str, at: jiff::Timestamp) {
        let label = SirenLabel { siren: siren.to_owned() };
        self.uncommanded.get_or_create(&label).inc();
        self.uncommanded_last.get_or_create(&label).set(at.as_second());
    }

    /// A CAP alert from `source` was applied (`outcome`), or refused.
    pub fn cap_alert(&self, source: &str, outcome: &'static str) {
        self.cap_alerts.get_or_create(&CapLabel { source: source.to_owned(), outcome }).inc();
    }

    /// A poll of CAP feed `feed` succeeded or failed.
    pub fn cap_feed_poll(&self, feed: &str, ok: bool) {
        let outcome = if ok { "ok" } else { "failed" };
        self.cap_feed_polls.get_or_create(&CapLabel { source: feed.to_owned(), outcome }).inc();
    }

    /// An HTTP connection was closed at once: too many open, in all or from its address.
    pub fn http_connection_refused(&self) {
        self.http_refused.inc();
    }

    /// An API call was refused (`unauthenticated` or `forbidden`).
    pub fn api_refused(&self, reason: &'static str) {
        self.api_refused.get_or_create(&RefusedLabel { reason }).inc();
    }

    /// Shows how many keys wait for a counter lease to be stored.
    pub fn leases_waiting(&self, n: usize) {
        self.leases_waiting.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// Shows who leads; only the leader (or a daemon alone) exports the fleet, so that
    /// Prometheus, scraping every daemon, sees each siren once.
    pub fn leadership(&self, s: &crate::leadership::Status) {
        self.exports_fleet.store(s.leads || !s.shared, std::sync::atomic::Ordering::Relaxed);
        let m = &self.leadership;
        m.leader.set(i64::from(s.leads));
        m.epoch.set(s.epoch);
        m.since.set(s.since.filter(|_| s.leader.is_some()).map_or(0, jiff::Timestamp::as_second));
        m.alive.set(i64::try_from(s.alive()).unwrap_or(i64::MAX));
        m.expected.set(i64::from(s.expected));
    }

    /// Brings the written-events counter up to the store's count.
    pub fn events_written(&self, total: u64) {
        let now = self.events.get();
        if total > now {
            self.events.inc_by(total - now);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use bytes::Bytes;
    use jiff::Timestamp;
    use siren_proto::fleet::{Link, Siren};
    use siren_proto::frame::{Address, KeyId};

    use super::*;
    use crate::liveness::{Observation, Policy};

    fn fleet(n: usize) -> Arc<RwLock<FleetState>> {
        let sirens: Vec<Siren> = (0..n)
            .map(|i| Siren {
                id: format!("HZ-{i:05}"),
                name: format!("Siren {i}"),
                latitude: 30.0,
                longitude: 120.0,
                zone: "hangzhou/c".parse().unwrap(),
                rating_db: 120.0,
                address: Address(u16::try_from(i % 200 + 1).unwrap()),
                key_id: KeyId(u16::try_from(i + 1).unwrap()),
                links: vec![Link::Mqtt],
            })
            .collect();
        let policy = Policy { down_after_misses: 3 };
        Arc::new(RwLock::new(FleetState::new(&sirens, policy, Timestamp::now())))
    }

    /// Passes chunks to a channel of one place that the test reads when it chooses: a scraper
    /// that reads slowly.
    struct Stalled(mpsc::SyncSender<Bytes>);

    impl ChunkSink for Stalled {
        fn send(&mut self, chunk: Bytes) -> fmt::Result {
            self.0.send(chunk).map_err(|_| fmt::Error)
        }
    }

    #[test]
    fn a_stalled_scraper_holds_no_lock_the_engine_takes() {
        let fleet = fleet(5_000);
        let metrics = Arc::new(Metrics::new(Arc::clone(&fleet), None));
        let (tx, rx) = mpsc::sync_channel(0);
        let writer = {
            let metrics = Arc::clone(&metrics);
            std::thread::spawn(move || metrics.write_to(Stalled(tx), Format::OpenMetrics).map(|_| ()))
        };
        // The first chunk taken, the writer is blocked handing on the next one: mid per-siren
        // families, since the fleet's take many chunks.
        let mut text = String::from_utf8(rx.recv().unwrap().to_vec()).unwrap();
        text.push_str(std::str::from_utf8(&rx.recv().unwrap()).unwrap());
        assert!(text.contains("siren_state{"), "the stall is not inside the fleet's families");
        // Meanwhile the engine changes the fleet and the soundings board.
        {
            let mut f = fleet.try_write().expect("a stalled scraper holds the fleet's lock");
            let _ = f.observe(0, &Observation::Heard { link: "mqtt".into(), faults: None }, Timestamp::now());
        }
        assert!(metrics.soundings().try_lock().is_ok(), "a stalled scraper holds the board's lock");
        // The scraper reads on: the rest arrives, the exposition is whole.
        for chunk in rx {
            text.push_str(std::str::from_utf8(&chunk).unwrap());
        }
        writer.join().unwrap().unwrap();
        assert!(text.ends_with("# EOF\n"));
        assert_eq!(text.lines().filter(|l| l.starts_with("siren_info{")).count(), 5_000);
    }

    #[test]
    fn a_standby_exports_its_own_families_and_nothing_of_the_fleet() {
        let metrics = Metrics::new(fleet(3), None);
        let mut status = crate::leadership::Status::alone("b", "http://b", Timestamp::now());
        status.shared = true;
        status.leads = false;
        metrics.leadership(&status);
        let text = metrics.encode();
        assert!(text.contains("sirend_leader 0") && text.contains("sirend_store_failing"), "{text}");
        assert!(!text.contains("siren_state{") && !text.contains("siren_info{"), "{text}");
        assert!(text.ends_with("# EOF\n"));
        status.leads = true;
        metrics.leadership(&status);
        assert!(metrics.encode().contains("siren_state{"));
    }

    #[test]
    fn streamed_and_in_memory_expositions_agree() {
        let fleet = fleet(700);
        let metrics = Metrics::new(fleet, None);
        metrics.polled_link("serial:a");
        metrics.poll("serial:a");
        let classic = metrics.encode_classic();
        assert_eq!(classic, to_classic(&metrics.encode()));
        assert!(
            classic.contains("# TYPE siren_link_polls_total counter\nsiren_link_polls_total{link=\"serial:a\"} 1\n")
        );
        assert_eq!(
            classic.lines().filter(|l| l.starts_with("siren_state{")).count(),
            700 * crate::liveness::State::ALL.len()
        );
    }
}

//! `sirend.toml` and the fleet and key files it names (docs/operations.md).
//!
//! Every error names the file, the field (or line) and the problem. The key file must not be
//! readable by anyone but its owner: the daemon refuses to start otherwise.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use siren_proto::fleet::{Fleet, FleetError, KeyFile, Link};

use crate::sounding::schedule::{Schedule, ScheduleConfig};

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: {source}")]
    Read { file: String, source: std::io::Error },
    #[error("{file}: {message}")]
    Syntax { file: String, message: String },
    #[error("{file}: field `{field}`: {problem}")]
    Field { file: String, field: String, problem: String },
    #[error(transparent)]
    Fleet(#[from] FleetError),
    #[error("{file}: readable by others (mode {mode:o}); it holds secret keys: run `chmod 600 {file}`")]
    KeysExposed { file: String, mode: u32 },
}

/// The daemon's configuration as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The fleet file, relative to the configuration file.
    pub fleet: PathBuf,
    /// The key file, relative to the configuration file.
    pub keys: PathBuf,
    #[serde(default)]
    pub http: Http,
    #[serde(default)]
    pub store: Store,
    #[serde(default)]
    pub mqtt: Mqtt,
    #[serde(default)]
    pub serial: Vec<Serial>,
    #[serde(default)]
    pub liveness: Liveness,
    #[serde(default)]
    pub coverage: Coverage,
    #[serde(default)]
    pub soundings: Soundings,
    /// LIVE warnings: the approval window, hazard signals, waivers of the second person.
    #[serde(default)]
    pub live: crate::live::LiveConfig,
    /// CAP alerts: which rules sound which signal, which geocodes are which zones.
    #[serde(default)]
    pub cap: crate::cap::rules::CapConfig,
    /// Test-sounding schedules; more may come from `soundings.include` files.
    #[serde(default)]
    pub schedule: Vec<ScheduleConfig>,
    /// The web console at `/`.
    #[serde(default)]
    pub console: Console,
    /// Several daemons on one PostgreSQL store.
    #[serde(default)]
    pub leadership: Leadership,
}

/// The web console (`[console]`): it needs nothing from outside; an office that runs its own
/// map tile server may put its tiles under the map.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Console {
    /// A basemap tile URL with `{z}`, `{x}` and `{y}` (Web Mercator, 256-pixel tiles), for
    /// example `https://tiles.example.gov/{z}/{x}/{y}.png`. None: zones and sirens only.
    pub basemap: Option<String>,
    /// The attribution the tiles' licence asks for, shown on the map.
    #[serde(default)]
    pub basemap_attribution: String,
}

/// How test soundings are run (docs/operations.md, "Test soundings").
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Soundings {
    /// The time zone of schedules that name none.
    #[serde(default = "default_timezone")]
    pub timezone: String,
    /// How long before the instant arming starts, s.
    #[serde(default = "default_lead")]
    pub lead_s: u32,
    /// Sirens not armed this long before the instant get a trigger-now at the instant, s.
    #[serde(default = "default_arm_cutoff")]
    pub arm_cutoff_s: u32,
    /// Largest start error that passes, ms.
    #[serde(default = "default_tolerance")]
    pub tolerance_ms: u32,
    /// A clock further off than this after synchronisation is flagged, ms.
    #[serde(default = "default_max_offset")]
    pub max_clock_offset_ms: u32,
    /// Interval between measurements of an armed siren's clock until the instant, s (0: only
    /// when a status report shows it moved, and once at the arm cut-off).
    #[serde(default = "default_clock_watch")]
    pub clock_watch_s: u32,
    /// A clock drifting faster than this (measured while armed) is flagged, ppm.
    #[serde(default = "default_max_drift")]
    pub max_drift_ppm: u32,
    /// How long after the sequence ends reports are awaited, s.
    #[serde(default = "default_verify_grace")]
    pub verify_grace_s: u32,
    /// An audible sounding whose cabinet microphone peaked below this did not sound, dB(C).
    #[serde(default = "default_min_sound")]
    pub min_sound_level_db: f64,
    /// Files of further `[[schedule]]` tables, relative to this file.
    #[serde(default)]
    pub include: Vec<PathBuf>,
    /// Stop (and cancel) at once a siren armed or sounding that no campaign of ours ordered,
    /// unless a crew has it in maintenance. It is an alarm either way.
    #[serde(default = "default_true")]
    pub stop_uncommanded: bool,
}

impl Default for Soundings {
    fn default() -> Self {
        Self {
            timezone: default_timezone(),
            lead_s: default_lead(),
            arm_cutoff_s: default_arm_cutoff(),
            tolerance_ms: default_tolerance(),
            max_clock_offset_ms: default_max_offset(),
            clock_watch_s: default_clock_watch(),
            max_drift_ppm: default_max_drift(),
            verify_grace_s: default_verify_grace(),
            min_sound_level_db: default_min_sound(),
            include: Vec::new(),
            stop_uncommanded: true,
        }
    }
}

fn default_true() -> bool {
    true
}
fn default_timezone() -> String {
    "Asia/Shanghai".to_owned()
}
fn default_lead() -> u32 {
    600
}
fn default_arm_cutoff() -> u32 {
    30
}
fn default_tolerance() -> u32 {
    250
}
fn default_max_offset() -> u32 {
    50
}
fn default_clock_watch() -> u32 {
    60
}
/// Above NTP's 500 ppm slew limit and any healthy quartz oscillator over temperature.
fn default_max_drift() -> u32 {
    500
}
fn default_verify_grace() -> u32 {
    60
}
fn default_min_sound() -> f64 {
    80.0
}

/// A file of schedules named by `soundings.include`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScheduleFile {
    #[serde(default)]
    schedule: Vec<ScheduleConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Http {
    #[serde(default = "default_http_listen")]
    pub listen: SocketAddr,
    /// Bearer tokens allowed to change state, stored as SHA-256 hashes (`sirend token`).
    #[serde(default)]
    pub tokens: Vec<Token>,
    /// Whether reading the API needs a token [default: when `listen` is not a loopback
    /// address]. `/healthz` and `/readyz` never do.
    #[serde(default)]
    pub read_needs_token: Option<bool>,
    /// Whether `/metrics` needs a token with `read` (Prometheus's `authorization`).
    #[serde(default)]
    pub metrics_need_token: bool,
}

impl Http {
    /// Whether reading the API needs a token.
    pub fn reads_need_token(&self) -> bool {
        self.read_needs_token.unwrap_or(!self.listen.ip().is_loopback())
    }
}

impl Default for Http {
    fn default() -> Self {
        Self { listen: default_http_listen(), tokens: Vec::new(), read_needs_token: None, metrics_need_token: false }
    }
}

/// One API token: who holds it, what it may do, and the SHA-256 of the secret.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Token {
    pub name: String,
    pub role: crate::auth::Role,
    pub sha256: String,
    /// What it may do, instead of its role's permissions.
    #[serde(default)]
    pub permissions: Option<Vec<crate::auth::Permission>>,
    /// The zones it acts in (each with the zones inside it); empty: every zone.
    #[serde(default)]
    pub zones: Vec<String>,
}

fn default_http_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9750))
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Store {
    /// The SQLite database, relative to the configuration file.
    #[serde(default = "default_store_path")]
    pub path: PathBuf,
    /// A PostgreSQL database instead (`postgres://user:password@host:port/database`): what
    /// two or more daemons share, one of them leading (`[leadership]`).
    #[serde(default)]
    pub url: Option<String>,
}

impl Default for Store {
    fn default() -> Self {
        Self { path: default_store_path(), url: None }
    }
}

/// Daemons sharing one PostgreSQL store (`[leadership]`; docs/operations.md, "Two control
/// rooms").
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Leadership {
    /// This daemon's name among them (default: the host's name).
    #[serde(default)]
    pub name: Option<String>,
    /// Where the others reach this daemon's API, to forward writes to it while it leads
    /// (`http://host:port`; default: `http://` + `http.listen`).
    #[serde(default)]
    pub url: Option<String>,
    /// Seconds a leader's lease lasts without renewal. A standby takes over at most this
    /// plus a sixth of it after the leader dies; a leader cut off from the database stops
    /// commanding two thirds of it after its last renewal.
    #[serde(default = "default_lease_s")]
    pub lease_s: f64,
    /// How many daemons should share the database: fewer alive is an alert.
    #[serde(default = "default_daemons")]
    pub daemons: u32,
}

impl Default for Leadership {
    fn default() -> Self {
        Self { name: None, url: None, lease_s: default_lease_s(), daemons: default_daemons() }
    }
}

fn default_lease_s() -> f64 {
    6.0
}

fn default_daemons() -> u32 {
    2
}

fn default_store_path() -> PathBuf {
    PathBuf::from("sirend.db")
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mqtt {
    /// Run the daemon's own broker instead of connecting to `url`.
    #[serde(default = "yes")]
    pub embedded: bool,
    /// Where the embedded broker listens.
    #[serde(default = "default_broker_listen")]
    pub listen: SocketAddr,
    /// An external broker, `mqtt://host:port` (when `embedded = false`).
    pub url: Option<String>,
    #[serde(default = "default_topic_root")]
    pub topic_root: String,
    /// Only these zones (and the zones inside them) are this daemon's: several daemons behind
    /// one clustered broker can split a national fleet. Empty: the whole fleet.
    #[serde(default)]
    pub zones: Vec<String>,
    /// The MQTT keep-alive, s: the client pings the broker this often, and a broker silent
    /// for one and a half of it is taken as lost (hung with its TCP connection open).
    #[serde(default = "default_keep_alive")]
    pub keep_alive_s: u16,
    /// Each MQTT siren is asked for its status this often, s (besides right after its
    /// birth); 0: only after births.
    #[serde(default = "default_status_every")]
    pub status_every_s: u32,
    /// sirend's user name on an external broker that authenticates clients.
    #[serde(default)]
    pub username: Option<String>,
    /// A file holding sirend's password on that broker (relative to this file), so that the
    /// secret is not in the configuration.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
}

fn default_status_every() -> u32 {
    600
}

fn default_keep_alive() -> u16 {
    10
}

impl Default for Mqtt {
    fn default() -> Self {
        Self {
            embedded: true,
            listen: default_broker_listen(),
            url: None,
            topic_root: default_topic_root(),
            zones: Vec::new(),
            keep_alive_s: default_keep_alive(),
            status_every_s: default_status_every(),
            username: None,
            password_file: None,
        }
    }
}

fn yes() -> bool {
    true
}

fn default_broker_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 1884))
}

fn default_topic_root() -> String {
    "sirennet/v1".into()
}

/// One serial bus.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Serial {
    /// The bus name the fleet file's `serial:<bus>` links refer to.
    pub bus: String,
    /// The serial device, e.g. `/dev/ttyUSB0`, or a serial device server's TCP port,
    /// `tcp://host:port` (one socket per line).
    pub port: PathBuf,
    #[serde(default = "default_baud")]
    pub baud: u32,
    /// Seconds between polls of each siren on the bus.
    #[serde(default = "default_poll_interval")]
    pub poll_interval_s: f64,
    /// Milliseconds of silence after which an incomplete envelope is dropped as truncated
    /// (docs/protocol.md §3.1). Default: 3.5 byte times, but at least 100 ms; longer for radio
    /// modems that pause inside a frame.
    #[serde(default)]
    pub idle_gap_ms: Option<u32>,
}

/// Where a serial line is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SerialEndpoint {
    /// A local device.
    Device(PathBuf),
    /// A serial device server: `host:port`.
    Tcp(String),
}

impl Serial {
    /// Where the line is: `tcp://host:port` is a device server's socket (no path is
    /// resolved against the configuration's directory); anything else a device.
    pub fn endpoint(&self) -> SerialEndpoint {
        match self.port.to_str().and_then(|p| p.strip_prefix("tcp://")) {
            Some(addr) => SerialEndpoint::Tcp(addr.trim_end_matches('/').to_owned()),
            None => SerialEndpoint::Device(self.port.clone()),
        }
    }

    /// The idle gap this bus's receiver uses.
    pub fn idle_gap(&self) -> std::time::Duration {
        self.idle_gap_ms.map_or_else(
            || siren_proto::decoder::default_idle_gap(self.baud),
            |ms| std::time::Duration::from_millis(u64::from(ms)),
        )
    }
}

fn default_baud() -> u32 {
    9600
}

fn default_poll_interval() -> f64 {
    10.0
}

/// When a silent siren counts as down.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Liveness {
    /// Consecutive unanswered polls (serial) or missed heartbeat periods (MQTT) before `down`.
    #[serde(default = "default_misses")]
    pub down_after_misses: u32,
    /// The heartbeat period MQTT sirens announce unless their birth says otherwise, seconds.
    #[serde(default = "default_heartbeat")]
    pub heartbeat_s: u32,
}

impl Default for Liveness {
    fn default() -> Self {
        Self { down_after_misses: default_misses(), heartbeat_s: default_heartbeat() }
    }
}

fn default_misses() -> u32 {
    3
}

fn default_heartbeat() -> u32 {
    30
}

/// The coverage model (docs/operations.md, "Coverage").
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Coverage {
    /// Side of a grid cell, metres.
    #[serde(default = "default_cell_size")]
    pub cell_size_m: f64,
    /// How overlapping sirens combine: `loudest` (conservative) or `energy` (intensities add).
    #[serde(default)]
    pub overlap: crate::coverage::model::Overlap,
    /// Zone boundaries: a GeoJSON file, one (Multi)Polygon feature per zone with the zone path
    /// in its `zone` property. Without it, a zone's area is the hull of its sirens' audible
    /// circles.
    pub boundaries: Option<PathBuf>,
    /// People per place: an ESRI ASCII grid (`.asc`) or a CSV of `latitude,longitude,population`.
    pub population: Option<PathBuf>,
    /// Defaults for every zone; `zones` overrides them per zone and the zones inside it.
    pub density: Option<Density>,
    pub threshold_db: Option<f64>,
    pub loss_per_doubling_db: Option<f64>,
    pub target_ratio: Option<f64>,
    /// People lost to failures (covered by design, not now) above which a zone alerts.
    pub lost_alert_people: Option<f64>,
    /// Area lost to failures above which a zone alerts when no population is configured, km².
    pub lost_alert_km2: Option<f64>,
    #[serde(default)]
    pub zones: BTreeMap<String, ZoneAcoustics>,
}

impl Default for Coverage {
    fn default() -> Self {
        Self {
            cell_size_m: default_cell_size(),
            overlap: crate::coverage::model::Overlap::default(),
            boundaries: None,
            population: None,
            density: None,
            threshold_db: None,
            loss_per_doubling_db: None,
            target_ratio: None,
            lost_alert_people: None,
            lost_alert_km2: None,
            zones: BTreeMap::new(),
        }
    }
}

impl Coverage {
    /// The settings every zone starts from.
    pub fn defaults(&self) -> ZoneAcoustics {
        ZoneAcoustics {
            density: self.density,
            threshold_db: self.threshold_db,
            loss_per_doubling_db: self.loss_per_doubling_db,
            target_ratio: self.target_ratio,
            lost_alert_people: self.lost_alert_people,
            lost_alert_km2: self.lost_alert_km2,
        }
    }
}

fn default_cell_size() -> f64 {
    100.0
}

/// How sound carries in a zone and how much of it must hear.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZoneAcoustics {
    /// `dense` (threshold 70 dB(C)) or `sparse` (60 dB(C)).
    pub density: Option<Density>,
    /// The level that counts as heard, dB(C); overrides `density`.
    pub threshold_db: Option<f64>,
    /// Loss per doubling of distance, dB: 10 by default, 6 for pure spherical spreading.
    pub loss_per_doubling_db: Option<f64>,
    /// The covered share (by population when known, else by area) below which the zone's
    /// design is short (a planning matter, docs/operations.md "Coverage").
    pub target_ratio: Option<f64>,
    /// People lost to failures above which the zone alerts (leaf zones by default; a parent
    /// zone only when set for it here).
    pub lost_alert_people: Option<f64>,
    /// The same by area when no population is configured, km².
    pub lost_alert_km2: Option<f64>,
}

/// How built-up a zone is, which sets the default coverage threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Density {
    Dense,
    Sparse,
}

/// Whether two listen addresses would take the same port (an unspecified address takes it on
/// every interface).
fn listens_on_same_port(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port() && a.port() != 0 && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

/// Least distance from the middle of the fleet, km, at which a siren far beyond the others
/// is taken for a typo.
const REMOTE_KM: f64 = 20.0;

/// A siren much further from the fleet's middle (the median position) than the others: more
/// than five times the distance within which nine in ten of them stand, and over
/// [`REMOTE_KM`]. Its id and distance.
fn far_from_the_rest(fleet: &Fleet) -> Option<(String, f64)> {
    let n = fleet.sirens.len();
    if n < 10 {
        return None;
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let lat = median(fleet.sirens.iter().map(|s| s.latitude).collect());
    let lon = median(fleet.sirens.iter().map(|s| s.longitude).collect());
    let km = |s: &siren_proto::fleet::Siren| {
        let dy = (s.latitude - lat) * 111.195;
        let dx = (s.longitude - lon) * 111.195 * lat.to_radians().cos();
        dx.hypot(dy)
    };
    let mut distances: Vec<f64> = fleet.sirens.iter().map(km).collect();
    distances.sort_by(f64::total_cmp);
    let p90 = distances[n * 9 / 10];
    fleet
        .sirens
        .iter()
        .map(|s| (s, km(s)))
        .filter(|&(_, d)| d > (5.0 * p90).max(REMOTE_KM))
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(s, d)| (s.id.clone(), d))
}

/// A configuration with its fleet and keys loaded and checked against each other.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub path: PathBuf,
    pub config: Config,
    pub fleet: Fleet,
    pub keys: KeyFile,
    /// Every schedule, checked, from this file and its includes.
    pub schedules: Vec<Schedule>,
}

impl Loaded {
    /// Reads `path`, the fleet and key files it names, and checks them.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { file: file.clone(), source })?;
        let config: Config =
            toml::from_str(&text).map_err(|e| ConfigError::Syntax { file: file.clone(), message: e.to_string() })?;
        let base = path.parent().unwrap_or(Path::new("."));
        let fleet_path = base.join(&config.fleet);
        let keys_path = base.join(&config.keys);
        let fleet = Fleet::load(&fleet_path)?;
        check_private(&keys_path)?;
        let keys = KeyFile::load(&keys_path)?;
        keys.check_against(&fleet, &keys_path.display().to_string())?;
        let mut loaded = Self { path: path.to_owned(), config, fleet, keys, schedules: Vec::new() };
        loaded.validate()?;
        loaded.validate_live()?;
        loaded.validate_cap()?;
        loaded.schedules = loaded.load_schedules()?;
        Ok(loaded)
    }

    /// `[live]`: the approval window, each signal's sequence, each waiver's source and zones.
    fn validate_live(&self) -> Result<(), ConfigError> {
        let live = &self.config.live;
        if !(30..=3600).contains(&live.approval_window_s) {
            return Err(self.field("live.approval_window_s", "must be between 30 and 3600"));
        }
        for (i, s) in live.signals.iter().enumerate() {
            let field = format!("live.signals[{i}] ({})", s.name);
            if ["pre-warning", "air-raid", "all-clear"].contains(&s.name.as_str())
                || live.signals[..i].iter().any(|o| o.name == s.name)
            {
                return Err(self.field(field, "another signal has this name"));
            }
            crate::sounding::sequence::segments(crate::sounding::sequence::Kind::Live, &s.sequence)
                .map_err(|e| self.field(field, format!("sequence {e}")))?;
        }
        for (i, w) in live.waivers.iter().enumerate() {
            let field = format!("live.waivers[{i}]");
            if !self.config.http.tokens.iter().any(|t| t.name == w.source)
                && !self.config.cap.feeds.iter().any(|f| f.name == w.source)
            {
                return Err(self.field(field, format!("no token (http.tokens) or CAP feed is named `{}`", w.source)));
            }
            if w.zones.is_empty() {
                return Err(self.field(field, "name the zones: the second person is never waived for the whole fleet"));
            }
            if let Some(z) = w.zones.iter().find(|z| !self.fleet.sirens.iter().any(|s| s.zone.is_within(z))) {
                return Err(self.field(field, format!("no siren of the fleet is in zone `{z}`")));
            }
        }
        Ok(())
    }

    /// `[cap]`: each rule's name and signal, each geocode's zone.
    fn validate_cap(&self) -> Result<(), ConfigError> {
        let cap = &self.config.cap;
        for (i, r) in cap.rules.iter().enumerate() {
            let field = format!("cap.rules[{i}] ({})", r.name);
            if cap.rules[..i].iter().any(|o| o.name == r.name) {
                return Err(self.field(field, "another rule has this name"));
            }
            if let Some(signal) = &r.signal {
                if self.config.live.signal(signal).is_none() {
                    let known = self.config.live.signal_names().join(", ");
                    return Err(self.field(field, format!("no signal `{signal}` (known: {known})")));
                }
            }
            if r.event_code.as_ref().is_some_and(|c| !c.contains('=')) {
                return Err(self.field(field, "event_code is `valueName=value`"));
            }
        }
        for (i, f) in cap.feeds.iter().enumerate() {
            let field = format!("cap.feeds[{i}] ({})", f.name);
            if f.name.is_empty() || cap.feeds[..i].iter().any(|o| o.name == f.name) {
                return Err(self.field(field, "give each feed a name of its own"));
            }
            if !(f.url.starts_with("http://") || f.url.starts_with("https://")) {
                return Err(self.field(field, format!("url `{}` is not http:// or https://", f.url)));
            }
            if f.interval_s == 0 || f.timeout_s == 0 || f.max_backoff_s < f.interval_s {
                return Err(
                    self.field(field, "interval_s and timeout_s must be at least 1, max_backoff_s at least interval_s")
                );
            }
            if let Some(z) = f.zones.iter().find(|z| !self.fleet.sirens.iter().any(|s| s.zone.is_within(z))) {
                return Err(self.field(field, format!("no siren of the fleet is in zone `{z}`")));
            }
        }
        for (i, g) in cap.geocodes.iter().enumerate() {
            if !self.fleet.sirens.iter().any(|s| s.zone.is_within(&g.zone)) {
                let field = format!("cap.geocodes[{i}]");
                return Err(self.field(field, format!("no siren of the fleet is in zone `{}`", g.zone)));
            }
        }
        Ok(())
    }

    fn field(&self, field: impl Into<String>, problem: impl Into<String>) -> ConfigError {
        ConfigError::Field { file: self.path.display().to_string(), field: field.into(), problem: problem.into() }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let c = &self.config;
        let buses = self.fleet.buses();
        let mut seen = BTreeSet::new();
        let mut ports = BTreeMap::new();
        for (i, s) in c.serial.iter().enumerate() {
            let at = |f: &str| format!("serial[{i}].{f}");
            if !seen.insert(s.bus.as_str()) {
                return Err(self.field(at("bus"), format!("bus `{}` is configured twice", s.bus)));
            }
            if let Some(other) = ports.insert(s.port.as_path(), s.bus.as_str()) {
                return Err(self.field(
                    at("port"),
                    format!("{} is already bus `{other}`'s port: one line cannot be two buses", s.port.display()),
                ));
            }
            if !buses.contains_key(s.bus.as_str()) {
                return Err(self.field(at("bus"), format!("no siren of the fleet hangs on bus `{}`", s.bus)));
            }
            if let SerialEndpoint::Tcp(addr) = s.endpoint() {
                let port = addr.rsplit_once(':').and_then(|(host, port)| (!host.is_empty()).then_some(port));
                if port.and_then(|p| p.parse::<u16>().ok()).is_none_or(|p| p == 0) {
                    return Err(self.field(at("port"), format!("`tcp://{addr}` is not tcp://host:port")));
                }
            }
            if !(300..=1_000_000).contains(&s.baud) {
                return Err(self.field(at("baud"), format!("{} is not a plausible baud rate", s.baud)));
            }
            if !(s.poll_interval_s.is_finite() && s.poll_interval_s >= 0.1) {
                return Err(self.field(at("poll_interval_s"), "must be at least 0.1 s"));
            }
            if let Some(ms) = s.idle_gap_ms {
                let wire = siren_proto::decoder::wire_idle_gap(s.baud);
                if std::time::Duration::from_millis(u64::from(ms)) < wire || ms > 10_000 {
                    return Err(self.field(
                        at("idle_gap_ms"),
                        format!(
                            "must be between 3.5 byte times ({:.1} ms at {} baud) and 10000",
                            wire.as_secs_f64() * 1000.0,
                            s.baud
                        ),
                    ));
                }
            }
        }
        for bus in buses.keys() {
            if !seen.contains(bus) {
                return Err(
                    self.field("serial", format!("the fleet has bus `{bus}` but no [[serial]] section names its port"))
                );
            }
        }
        if !c.mqtt.embedded && c.mqtt.url.is_none() && self.fleet.sirens.iter().any(siren_proto::fleet::Siren::has_mqtt)
        {
            return Err(self.field("mqtt.url", "MQTT sirens need a broker: set `url`, or `embedded = true`"));
        }
        if c.mqtt.embedded && listens_on_same_port(c.mqtt.listen, c.http.listen) {
            return Err(self.field(
                "mqtt.listen",
                format!(
                    "{} is also http.listen: the embedded broker and the HTTP API need ports of their own",
                    c.mqtt.listen
                ),
            ));
        }
        if c.mqtt.topic_root.is_empty() || c.mqtt.topic_root.contains(['+', '#']) {
            return Err(self.field("mqtt.topic_root", "must be a topic without wildcards"));
        }
        for (i, z) in c.mqtt.zones.iter().enumerate() {
            if !self.fleet.sirens.iter().any(|s| s.zone.is_within(z)) {
                return Err(self.field(format!("mqtt.zones[{i}]"), format!("no siren of the fleet is in zone `{z}`")));
            }
        }
        for (i, t) in c.http.tokens.iter().enumerate() {
            if t.sha256.len() != 64 || hex::decode(&t.sha256).is_err() {
                return Err(self
                    .field(format!("http.tokens[{i}].sha256"), "must be 64 hexadecimal digits (see `sirend token`)"));
            }
            if t.name.is_empty() {
                return Err(self.field(format!("http.tokens[{i}].name"), "must not be empty"));
            }
            for (j, z) in t.zones.iter().enumerate() {
                if !self.fleet.sirens.iter().any(|s| s.zone.is_within(z)) {
                    return Err(self.field(
                        format!("http.tokens[{i}].zones[{j}]"),
                        format!("no siren of the fleet is in zone `{z}`"),
                    ));
                }
            }
        }
        if c.liveness.down_after_misses == 0 {
            return Err(self.field("liveness.down_after_misses", "must be at least 1"));
        }
        if c.mqtt.keep_alive_s < 2 {
            return Err(self.field("mqtt.keep_alive_s", "must be at least 2"));
        }
        if c.liveness.heartbeat_s == 0 {
            return Err(self.field("liveness.heartbeat_s", "must be at least 1"));
        }
        self.validate_leadership()?;
        self.validate_coverage()
    }

    fn validate_leadership(&self) -> Result<(), ConfigError> {
        let c = &self.config;
        if let Some(url) = &c.store.url {
            if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                return Err(self.field("store.url", "must be a postgres:// URL"));
            }
            if let Err(e) = url.parse::<postgres::Config>() {
                return Err(self.field("store.url", format!("cannot be read: {e}")));
            }
        }
        let l = &c.leadership;
        if !(l.lease_s.is_finite() && (3.0..=60.0).contains(&l.lease_s)) {
            return Err(self.field("leadership.lease_s", "must be between 3 and 60 seconds"));
        }
        if l.daemons == 0 {
            return Err(self.field("leadership.daemons", "must be at least 1"));
        }
        if let Some(url) = &l.url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(self.field("leadership.url", "must be an http:// or https:// URL"));
            }
        }
        if l.name.as_deref().is_some_and(|n| n.is_empty() || n.contains('#')) {
            return Err(self.field("leadership.name", "must not be empty nor contain `#`"));
        }
        if c.store.url.is_some() && c.mqtt.embedded && self.fleet.sirens.iter().any(siren_proto::fleet::Siren::has_mqtt)
        {
            return Err(self.field(
                "mqtt.embedded",
                "daemons sharing a PostgreSQL store need a broker they all reach: set `embedded = false` and `url`",
            ));
        }
        Ok(())
    }

    /// Where the store is.
    pub fn store_location(&self) -> crate::store::Location {
        match &self.config.store.url {
            Some(url) => crate::store::Location::Postgres(url.clone()),
            None => crate::store::Location::Sqlite(self.resolve(&self.config.store.path)),
        }
    }

    fn validate_coverage(&self) -> Result<(), ConfigError> {
        let c = &self.config.coverage;
        for (at, path) in [("coverage.population", &c.population), ("coverage.boundaries", &c.boundaries)] {
            if let Some(path) = path {
                let full = self.resolve(path);
                if !full.is_file() {
                    return Err(self.field(at, format!("{}: no such file", full.display())));
                }
            }
        }
        let known: BTreeSet<&str> = self.fleet.sirens.iter().flat_map(|s| s.zone.ancestry()).collect();
        for zone in c.zones.keys() {
            // A zone only the boundaries file draws is checked when the boundaries are read.
            if c.boundaries.is_none() && !known.contains(zone.as_str()) {
                return Err(self.field(format!("coverage.zones.\"{zone}\""), "no siren of the fleet is in this zone"));
            }
        }
        if let Some((siren, km)) = far_from_the_rest(&self.fleet) {
            return Err(ConfigError::Field {
                file: self.path.display().to_string(),
                field: format!("fleet: siren {siren}"),
                problem: format!(
                    "it stands {km:.0} km from the middle of the fleet, far beyond the others: a sign or digit typo in \
                     its latitude or longitude would stretch the coverage grid over the gap"
                ),
            });
        }
        if !(c.cell_size_m.is_finite() && c.cell_size_m >= 10.0) {
            return Err(self.field("coverage.cell_size_m", "must be at least 10 m"));
        }
        let zones = c.zones.iter().map(|(z, a)| (format!("coverage.zones.\"{z}\"."), a));
        for (at, a) in std::iter::once(("coverage.".to_owned(), &c.defaults())).chain(zones) {
            if a.threshold_db.is_some_and(|t| !(t.is_finite() && (20.0..=160.0).contains(&t))) {
                return Err(self.field(format!("{at}threshold_db"), "must be between 20 and 160 dB(C)"));
            }
            if a.loss_per_doubling_db.is_some_and(|k| !(k.is_finite() && (1.0..=30.0).contains(&k))) {
                return Err(self.field(format!("{at}loss_per_doubling_db"), "must be between 1 and 30 dB"));
            }
            if a.target_ratio.is_some_and(|r| !(0.0..=1.0).contains(&r)) {
                return Err(self.field(format!("{at}target_ratio"), "must be between 0 and 1"));
            }
            if a.lost_alert_people.is_some_and(|n| !(n.is_finite() && n >= 0.0)) {
                return Err(self.field(format!("{at}lost_alert_people"), "must be a number of people, 0 or more"));
            }
            if a.lost_alert_km2.is_some_and(|n| !(n.is_finite() && n >= 0.0)) {
                return Err(self.field(format!("{at}lost_alert_km2"), "must be an area in km², 0 or more"));
            }
        }
        Ok(())
    }

    /// Checks every schedule of this file and of its includes: names unique, zones known.
    fn load_schedules(&self) -> Result<Vec<Schedule>, ConfigError> {
        let s = &self.config.soundings;
        let mut sources: Vec<(String, Vec<ScheduleConfig>)> =
            vec![(self.path.display().to_string(), self.config.schedule.clone())];
        for (i, include) in s.include.iter().enumerate() {
            let path = self.resolve(include);
            let file = path.display().to_string();
            let text = std::fs::read_to_string(&path)
                .map_err(|e| self.field(format!("soundings.include[{i}]"), format!("{file}: {e}")))?;
            let parsed: ScheduleFile = toml::from_str(&text)
                .map_err(|e| ConfigError::Syntax { file: file.clone(), message: e.to_string() })?;
            sources.push((file, parsed.schedule));
        }
        if let Some(url) = &self.config.console.basemap {
            let templated = ["{z}", "{x}", "{y}"].iter().all(|p| url.contains(p));
            if !(url.starts_with("https://") || url.starts_with("http://")) || !templated {
                return Err(self.field(
                    "console.basemap",
                    "must be an http(s) URL with {z}, {x} and {y} in it (a Web Mercator tile server)",
                ));
            }
        }
        if jiff::tz::TimeZone::get(&s.timezone).is_err() {
            return Err(self.field("soundings.timezone", format!("unknown time zone `{}`", s.timezone)));
        }
        if s.arm_cutoff_s >= s.lead_s {
            return Err(self.field("soundings.arm_cutoff_s", "must be shorter than soundings.lead_s"));
        }
        if s.tolerance_ms == 0 || s.tolerance_ms > 10_000 {
            return Err(self.field("soundings.tolerance_ms", "must be between 1 and 10000"));
        }
        if s.clock_watch_s != 0 && s.clock_watch_s < 10 {
            return Err(self.field("soundings.clock_watch_s", "must be 0 (off) or at least 10"));
        }
        if s.max_drift_ppm == 0 {
            return Err(self.field("soundings.max_drift_ppm", "must be at least 1"));
        }
        let mut schedules: Vec<Schedule> = Vec::new();
        // Where each came from, for the errors that concern it.
        let mut origins: Vec<(String, usize)> = Vec::new();
        for (file, configs) in sources {
            for (i, c) in configs.iter().enumerate() {
                let at = |problem: String| ConfigError::Field {
                    file: file.clone(),
                    field: format!("schedule[{i}] ({})", c.name),
                    problem,
                };
                let schedule = Schedule::from_config(c, &s.timezone, s.lead_s).map_err(|e| at(e.to_string()))?;
                if schedules.iter().any(|o| o.name == schedule.name) {
                    return Err(at("another schedule has this name".into()));
                }
                if schedule.lead.as_secs() <= u64::from(s.arm_cutoff_s) {
                    return Err(at("lead_s must be longer than soundings.arm_cutoff_s".into()));
                }
                for z in &c.zones {
                    if !self.fleet.sirens.iter().any(|x| x.zone.is_within(z)) {
                        return Err(at(format!("no siren of the fleet is in zone `{z}`")));
                    }
                }
                schedules.push(schedule);
                origins.push((file.clone(), i));
            }
        }
        let at = |name: &str, field: &str, problem: String| {
            let k = schedules.iter().position(|s| s.name == name).unwrap_or(0);
            let (file, i) = origins.get(k).cloned().unwrap_or_default();
            ConfigError::Field { file, field: format!("schedule[{i}] ({name}){field}"), problem }
        };
        for s in &schedules {
            let known = |n: &String| schedules.iter().any(|o| &o.name == n && o.name != s.name);
            if let Some(unknown) = s.suppresses.iter().find(|n| !known(n)) {
                return Err(at(&s.name, ".suppresses", format!("no other schedule is named `{unknown}`")));
            }
        }
        if let Some(c) = crate::sounding::conflicts::collisions(&schedules, jiff::Timestamp::now()).first() {
            return Err(at(&c.a, "", c.to_string()));
        }
        Ok(schedules)
    }

    /// The sirens this daemon is responsible for (all, or those in `mqtt.zones`).
    pub fn own_sirens(&self) -> impl Iterator<Item = &siren_proto::fleet::Siren> {
        let zones = &self.config.mqtt.zones;
        self.fleet.sirens.iter().filter(move |s| zones.is_empty() || zones.iter().any(|z| s.zone.is_within(z)))
    }

    /// A path from the configuration, resolved against the configuration file's directory.
    pub fn resolve(&self, relative: &Path) -> PathBuf {
        self.path.parent().unwrap_or(Path::new(".")).join(relative)
    }

    /// sirend's user name and password on an external broker, if configured (`[mqtt]
    /// username` and `password_file`, both or neither).
    pub fn broker_credentials(&self) -> Result<Option<(String, String)>, ConfigError> {
        let m = &self.config.mqtt;
        match (&m.username, &m.password_file) {
            (None, None) => Ok(None),
            (Some(user), Some(file)) => {
                let path = self.resolve(file);
                let password = std::fs::read_to_string(&path).map_err(|e| ConfigError::Field {
                    file: self.path.display().to_string(),
                    field: "mqtt.password_file".into(),
                    problem: format!("cannot read {}: {e}", path.display()),
                })?;
                Ok(Some((user.clone(), password.trim().to_owned())))
            }
            _ => Err(ConfigError::Field {
                file: self.path.display().to_string(),
                field: "mqtt.username".into(),
                problem: "give both `username` and `password_file`, or neither".into(),
            }),
        }
    }

    /// What `sirend check-config` prints: sirens per zone and per link.
    pub fn summary(&self) -> String {
        use std::fmt::Write as _;
        let own: Vec<_> = self.own_sirens().collect();
        let mut zones: BTreeMap<&str, usize> = BTreeMap::new();
        let mut links: BTreeMap<String, usize> = BTreeMap::new();
        for s in &own {
            for z in s.zone.ancestry() {
                *zones.entry(z).or_default() += 1;
            }
            for l in &s.links {
                let name = match l {
                    Link::Serial { bus } => {
                        let port =
                            self.config.serial.iter().find(|x| &x.bus == bus).map(|x| x.port.display().to_string());
                        format!("serial {bus} ({})", port.unwrap_or_default())
                    }
                    Link::Mqtt => "mqtt".to_owned(),
                };
                *links.entry(name).or_default() += 1;
            }
        }
        let mut out = String::new();
        let _ = writeln!(out, "{}: OK", self.path.display());
        let _ = writeln!(out, "{} sirens ({} in the fleet file)", own.len(), self.fleet.sirens.len());
        match self.store_location() {
            crate::store::Location::Sqlite(path) => {
                let _ = writeln!(out, "store: SQLite {} (this daemon alone)", path.display());
            }
            at @ crate::store::Location::Postgres(_) => {
                let l = &self.config.leadership;
                let _ = writeln!(
                    out,
                    "store: PostgreSQL {at}, shared by {} daemons; this one is `{}`, lease {} s (a standby takes over within {:.1} s)",
                    l.daemons,
                    l.name.as_deref().unwrap_or("(the host's name)"),
                    l.lease_s,
                    crate::leadership::Timing { lease: std::time::Duration::from_secs_f64(l.lease_s) }
                        .takeover_within()
                        .as_secs_f64()
                );
            }
        }
        let _ = writeln!(out, "\nsirens per zone:");
        for (z, n) in &zones {
            let depth = z.matches('/').count();
            let _ = writeln!(out, "  {:indent$}{z:<w$} {n:>6}", "", indent = depth * 2, w = 40 - depth * 2);
        }
        let _ = writeln!(out, "\nsirens per link:");
        for (l, n) in &links {
            let _ = writeln!(out, "  {l:<40} {n:>6}");
        }
        out
    }
}

/// Refuses a key file that its group or others can read.
fn check_private(path: &Path) -> Result<(), ConfigError> {
    use std::os::unix::fs::PermissionsExt as _;
    let file = path.display().to_string();
    let meta = std::fs::metadata(path).map_err(|source| ConfigError::Read { file: file.clone(), source })?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(ConfigError::KeysExposed { file, mode });
    }
    Ok(())
}

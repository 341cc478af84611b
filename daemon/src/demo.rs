//! `sirend demo`: a generated fleet of simulated sirens (some on PTY serial buses, the rest on
//! MQTT through the embedded broker), a scenario of faults over the first minutes, and the
//! daemon watching them. One command, nothing to install.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use siren_sim::clock::SimClock;
use siren_sim::fault::Fault;
use siren_sim::fleet::{BuildOptions, SimFleet};
use siren_sim::generate::{self, Options};
use siren_sim::mqtt::MqttConfig;
use siren_sim::scenario::{Event, Scenario, Target};

use jiff::tz::TimeZone;

use crate::auth::{Role, new_token};
use crate::config::Loaded;
use crate::daemon::Daemon;

/// What `sirend demo` runs.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub sirens: usize,
    pub listen: SocketAddr,
    pub broker: SocketAddr,
    /// Where the fleet, keys, configuration and database go.
    pub dir: PathBuf,
    /// When the demo's repeating test chime first sounds, from the start.
    pub first_sounding_in: Duration,
    /// Whether the scenario of faults plays (without it the fleet stays healthy).
    pub faults: bool,
}

impl DemoOptions {
    /// The defaults `sirend demo` uses, with files in `dir`.
    pub fn new(dir: PathBuf) -> Self {
        Self {
            sirens: 120,
            listen: SocketAddr::from(([127, 0, 0, 1], 9750)),
            broker: SocketAddr::from(([127, 0, 0, 1], 1884)),
            dir,
            first_sounding_in: Duration::from_secs(45),
            faults: true,
        }
    }
}

/// What `prepare` wrote beside the fleet.
#[derive(Debug)]
pub struct Prepared {
    pub loaded: Loaded,
    pub generated: generate::Generated,
    /// A bearer token with the operator role, printed so that ad-hoc soundings, cancels and
    /// fault acknowledgements can be tried.
    pub operator_token: String,
    /// A second operator's token: a LIVE warning one requests, the other approves.
    pub second_token: String,
    /// A warning platform's token (`submit_cap`), for the sample CAP alert the demo writes.
    pub cap_token: String,
    /// An administrator's token: the audit log.
    pub admin_token: String,
    /// The first occurrence of the demo's chime schedule.
    pub first_sounding: jiff::Timestamp,
}

/// Heartbeat period in the demo: short, so that a silent siren turns `down` within a minute.
const HEARTBEAT_S: u64 = 5;

/// Name of the demo's repeating sounding schedule.
pub const DEMO_SCHEDULE: &str = "demo-chime";

/// Rating of the sirens the demo adds where its generated fleet leaves a zone short.
const PLANNED_RATING_DB: f64 = 125.0;
/// Name of the zone boundaries file the demo writes.
const ZONES_FILE: &str = "zones.geojson";
/// Name of the sample CAP alert the demo writes.
const CAP_SAMPLE: &str = "typhoon-cap.xml";

/// Writes the demo fleet, its zones, a synthetic population, an operator token and a chime
/// schedule into `dir`.
///
/// The generated fleet leaves every zone short of its coverage target (the hull of a town's
/// sirens has gaps between them). Like an office that reaches "coverage 100 %" by adding
/// sirens, the demo fixes each town's area (the hull of its generated sirens, written as the
/// zone boundaries) and adds the sirens `sirend plan` proposes until every zone meets its
/// target by design: a healthy demo fleet fires no alert.
pub fn prepare(o: &DemoOptions) -> anyhow::Result<Prepared> {
    let options = Options { sirens: o.sirens, seed: 12, serial_share: 0.25, ..Options::default() };
    let mut g = generate::generate(&options)?;
    std::fs::create_dir_all(&o.dir).with_context(|| format!("creating {}", o.dir.display()))?;
    std::fs::write(o.dir.join("people.csv"), synthetic_population(&options))?;
    let (operator_token, first_entry) = new_token("demo-operator", Role::Operator);
    let (second_token, second_entry) = new_token("demo-second-officer", Role::Operator);
    let (cap_token, cap_entry) = new_token("demo-typhoon-platform", Role::Viewer);
    let (admin_token, admin_entry) = new_token("demo-admin", Role::Admin);
    let token_entry =
        format!("{first_entry}\n{second_entry}\n{admin_entry}\n{cap_entry}permissions = [\"submit_cap\"]\n");
    let first_sounding = (jiff::Timestamp::now() + o.first_sounding_in).round(jiff::Unit::Second)?;
    let configure = |g: &generate::Generated| -> anyhow::Result<Loaded> {
        let written = generate::write(g, &o.dir)?;
        let text = demo_config(&std::fs::read_to_string(&written.config)?, o, &token_entry, first_sounding)?;
        std::fs::write(&written.config, text)?;
        Ok(Loaded::load(&written.config)?)
    };
    // The towns' areas, fixed before sirens are added.
    let settings = crate::config::Coverage::default();
    let spots: Vec<crate::coverage::layout::SirenSpot<'_>> =
        g.fleet.sirens.iter().map(crate::coverage::layout::SirenSpot::from).collect();
    let zones = crate::coverage::layout::zone_hulls(&settings, &spots)?;
    std::fs::write(o.dir.join(ZONES_FILE), crate::coverage::boundaries::to_geojson(&zones))?;
    let loaded = configure(&g)?;
    let mut coverage = crate::coverage::Coverage::from_config(&loaded)?;
    for i in 0..coverage.siren_ids().len() {
        coverage.set_able(i, true);
    }
    let plan = crate::coverage::planner::plan(
        coverage.map(),
        &crate::coverage::planner::PlanOptions {
            max_new: 1_000,
            rating_db: PLANNED_RATING_DB,
            target: None,
            candidates: None,
        },
    );
    let zones = &coverage.map().layout().zones;
    let sites: Vec<generate::NewSite> = plan
        .proposals
        .iter()
        .map(|p| {
            let (latitude, longitude) = coverage.projection().unproject(p.x, p.y);
            generate::NewSite { latitude, longitude, zone: zones[p.zone].path.clone(), rating_db: PLANNED_RATING_DB }
        })
        .collect();
    generate::add_sirens(&mut g, &options.code, &sites, options.seed)?;
    let loaded = configure(&g)?;
    std::fs::write(o.dir.join(CAP_SAMPLE), sample_cap_alert(&g.fleet))?;
    Ok(Prepared { loaded, generated: g, operator_token, second_token, cap_token, admin_token, first_sounding })
}

/// The generated sirend.toml made the demo's: its ports, short polls and heartbeats, the
/// zones and population, the operator token and a chime every five minutes.
fn demo_config(
    generated: &str,
    o: &DemoOptions,
    token_entry: &str,
    first_sounding: jiff::Timestamp,
) -> anyhow::Result<String> {
    use std::fmt::Write as _;
    let start = first_sounding.to_zoned(TimeZone::UTC).datetime().strftime("%Y-%m-%dT%H:%M:%S");
    let mut text = generated
        .replace("listen = \"127.0.0.1:9750\"", &format!("listen = \"{}\"", o.listen))
        .replace("listen = \"127.0.0.1:1884\"", &format!("listen = \"{}\"", o.broker))
        .replace("baud = 9600", "baud = 9600\npoll_interval_s = 5");
    write!(text, "\n[liveness]\ndown_after_misses = 3\nheartbeat_s = {HEARTBEAT_S}\n")?;
    write!(text, "\n[coverage]\npopulation = \"people.csv\"\nboundaries = \"{ZONES_FILE}\"\n\n{token_entry}")?;
    // A short lead so that the first sounding comes within a minute of starting.
    write!(
        text,
        "\n[soundings]\ntimezone = \"UTC\"\nlead_s = 15\narm_cutoff_s = 4\nverify_grace_s = 10\n\n\
         [[schedule]]\nname = \"{DEMO_SCHEDULE}\"\nkind = \"chime\"\nstart = \"{start}\"\n\
         rrule = \"FREQ=MINUTELY;INTERVAL=5\"\nsequence = [{{ pattern = \"chime\" }}]\n"
    )?;
    // A typhoon signal, and a rule that sounds it for the platform's severe typhoon alerts.
    write!(
        text,
        "\n[live]\n[[live.signals]]\nname = \"typhoon\"\nsequence = [{{ pattern = \"pre-warning\" }}]\n\n\
         [cap]\nsender = \"sirend-demo@localhost\"\n\n[[cap.rules]]\nname = \"typhoon\"\nevent = \"台风\"\n\
         severity = [\"Severe\", \"Extreme\"]\nsignal = \"typhoon\"\n"
    )?;
    Ok(text)
}

/// A CAP 1.2 typhoon warning whose polygon covers the first town of `fleet`: what a city's
/// warning platform would post (`POST /api/cap`).
fn sample_cap_alert(fleet: &siren_proto::fleet::Fleet) -> String {
    let town = fleet.sirens.first().map(|s| s.zone.to_string()).unwrap_or_default();
    let sirens: Vec<_> = fleet.sirens.iter().filter(|s| s.zone.to_string() == town).collect();
    let fold = |f: fn(&siren_proto::fleet::Siren) -> f64, init: f64, pick: fn(f64, f64) -> f64| {
        sirens.iter().map(|s| f(s)).fold(init, pick)
    };
    let (south, north) = (fold(|s| s.latitude, 90.0, f64::min) - 0.002, fold(|s| s.latitude, -90.0, f64::max) + 0.002);
    let (west, east) =
        (fold(|s| s.longitude, 180.0, f64::min) - 0.002, fold(|s| s.longitude, -180.0, f64::max) + 0.002);
    let sent = jiff::Timestamp::now().to_zoned(TimeZone::fixed(jiff::tz::offset(8))).strftime("%Y-%m-%dT%H:%M:%S%:z");
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">
  <identifier>DEMO-TY-{stamp}</identifier>
  <sender>typhoon-platform@demo.example</sender>
  <sent>{sent}</sent>
  <status>Actual</status>
  <msgType>Alert</msgType>
  <scope>Public</scope>
  <info>
    <language>zh-CN</language>
    <category>Met</category>
    <event>台风</event>
    <urgency>Immediate</urgency>
    <severity>Extreme</severity>
    <certainty>Observed</certainty>
    <headline>台风红色预警 (demo)</headline>
    <area>
      <areaDesc>{town}</areaDesc>
      <polygon>{south:.5},{west:.5} {south:.5},{east:.5} {north:.5},{east:.5} {north:.5},{west:.5} {south:.5},{west:.5}</polygon>
    </area>
  </info>
</alert>
"#,
        stamp = jiff::Timestamp::now().as_second()
    )
}

/// People on a grid of points 0.01 degrees apart over the generated area, densest at the
/// centre (a Gaussian city of 10 km scale over a rural floor), as `latitude,longitude,population`.
#[allow(clippy::cast_possible_truncation, reason = "a few dozen rows and columns")]
fn synthetic_population(o: &Options) -> String {
    use std::fmt::Write as _;
    const STEP: f64 = 0.01;
    let mut csv = String::from("latitude,longitude,population\n");
    let (rows, cols) = ((2.0 * o.half_extent.0 / STEP) as i32, (2.0 * o.half_extent.1 / STEP) as i32);
    for r in 0..=rows {
        for c in 0..=cols {
            let lat = o.centre.0 - o.half_extent.0 + f64::from(r) * STEP;
            let lon = o.centre.1 - o.half_extent.1 + f64::from(c) * STEP;
            let dy = (lat - o.centre.0) * 111.0;
            let dx = (lon - o.centre.1) * 111.0 * o.centre.0.to_radians().cos();
            let people = 300.0 + 12_000.0 * (-(dx * dx + dy * dy) / (2.0 * 10.0 * 10.0)).exp();
            let _ = writeln!(csv, "{lat:.4},{lon:.4},{people:.0}");
        }
    }
    csv
}

/// The faults the demo plays: every kind of state within the first three minutes.
pub fn scenario(fleet: &siren_proto::fleet::Fleet) -> Scenario {
    let serial: Vec<&str> = fleet.sirens.iter().filter(|s| s.serial_bus().is_some()).map(|s| s.id.as_str()).collect();
    let mqtt: Vec<&str> = fleet.sirens.iter().filter(|s| s.serial_bus().is_none()).map(|s| s.id.as_str()).collect();
    let pick = |list: &[&str], i: usize| list.get(i % list.len().max(1)).map(|s| (*s).to_owned());
    let mut events = Vec::new();
    let mut at = |secs: i64, id: Option<String>, fault: Fault| {
        if let Some(id) = id {
            events.push(Event { at_us: secs * 1_000_000, target: Target::Siren(id), fault });
        }
    };
    at(15, pick(&mqtt, 0), Fault::MainsLoss);
    at(20, pick(&serial, 0), Fault::DoorOpen);
    at(30, pick(&mqtt, 1), Fault::AmplifierFailure { channel: None });
    at(40, pick(&serial, 1), Fault::SpeakerOpen);
    at(50, pick(&mqtt, 2), Fault::LinkLoss);
    at(60, pick(&serial, 2), Fault::SilentDeath);
    at(70, pick(&mqtt, 3), Fault::SilentDeath);
    at(90, pick(&mqtt, 4), Fault::ReplayAttack);
    at(120, pick(&mqtt, 0), Fault::MainsReturn);
    at(150, pick(&mqtt, 2), Fault::LinkRestore);
    at(180, pick(&serial, 2), Fault::Revive);
    events.sort_by_key(|e| e.at_us);
    Scenario { events }
}

/// A demo running: the daemon, the simulated fleet, and what serves the fleet to it.
pub struct Running {
    pub daemon: Daemon,
    pub sim: Arc<SimFleet>,
    /// The operator's, the second officer's, the CAP platform's and the administrator's tokens.
    pub tokens: [String; 4],
    pub first_sounding: jiff::Timestamp,
    /// Where the fleet, keys, configuration and database are.
    pub dir: PathBuf,
    devices: siren_sim::mqtt::MqttDevices,
    buses: Vec<siren_sim::serial::SerialBus>,
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running").field("http", &self.daemon.http).field("dir", &self.dir).finish_non_exhaustive()
    }
}

impl Running {
    /// Stops the simulated fleet, then the daemon.
    pub async fn stop(self) {
        self.devices.shutdown().await;
        self.daemon.stop().await;
        drop(self.buses);
    }
}

/// Starts the demo: the daemon, and the simulated fleet on PTYs and MQTT, with the scenario of
/// faults playing where `o.faults` says so.
pub async fn start(o: &DemoOptions) -> anyhow::Result<Running> {
    std::fs::create_dir_all(&o.dir).with_context(|| format!("creating {}", o.dir.display()))?;
    let Prepared { loaded, generated: g, operator_token, second_token, cap_token, admin_token, first_sounding } =
        prepare(o)?;
    let sim = Arc::new(SimFleet::build(g.fleet.clone(), &g.keys, SimClock::real_time(), &BuildOptions::default())?);
    let dir = o.dir.canonicalize()?;
    let mut buses = Vec::new();
    for bus in g.fleet.buses().keys() {
        buses.push(sim.serve_serial(bus, 9600, Some(generate::pty_link(&dir, bus)))?);
    }
    let daemon = Daemon::start(&loaded).await?;
    let mut mqtt = MqttConfig::from_url(&format!("mqtt://{}", o.broker))?;
    mqtt.heartbeat = Duration::from_secs(HEARTBEAT_S);
    mqtt.keep_alive = Duration::from_secs(10);
    let devices = sim.serve_mqtt(&mqtt);
    if o.faults {
        sim.play(scenario(&g.fleet));
    }
    let tokens = [operator_token, second_token, cap_token, admin_token];
    Ok(Running { daemon, sim, tokens, first_sounding, dir, devices, buses })
}

/// Runs the demo until Ctrl-C.
pub async fn run(o: DemoOptions, shutdown: impl std::future::Future<Output = ()>) -> anyhow::Result<()> {
    let running = start(&o).await?;
    let sirens = running.sim.fleet.sirens.len();
    let mqtt = running.devices.len();
    let tokens = running.tokens.each_ref().map(String::as_str);
    print_banner(
        &running.daemon,
        &o,
        &running.dir,
        (sirens, running.buses.len(), mqtt),
        tokens,
        running.first_sounding,
    );
    shutdown.await;
    running.stop().await;
    Ok(())
}

fn print_banner(
    daemon: &Daemon,
    o: &DemoOptions,
    dir: &Path,
    (sirens, buses, mqtt): (usize, usize, usize),
    [operator_token, second_token, cap_token, admin_token]: [&str; 4],
    first_sounding: jiff::Timestamp,
) {
    let http = daemon.http;
    println!();
    println!("sirend demo: {sirens} simulated sirens ({buses} serial buses on PTYs, {mqtt} on MQTT)");
    println!("  console         http://{http}/   (log in with a token below)");
    println!("  metrics         http://{http}/metrics");
    println!("  API document    http://{http}/api/openapi.json");
    println!("  MQTT broker     mqtt://{}", o.broker);
    println!("  files           {}", dir.display());
    println!("  operator token  {operator_token}");
    println!(
        "                  (curl -H 'Authorization: Bearer <token>' for POST /api/soundings, cancels, fault acks)"
    );
    println!("  second officer  {second_token}");
    println!("                  (approves the first's LIVE requests: POST /api/activations, then .../approve)");
    println!("  CAP platform    {cap_token}");
    println!(
        "                  (curl -X POST -H 'Authorization: Bearer <token>' -H 'Content-Type: application/cap+xml' \\"
    );
    println!("                   --data-binary @{} http://{http}/api/cap)", dir.join(CAP_SAMPLE).display());
    println!("  CAP feed        http://{http}/api/cap.atom");
    println!("  administrator   {admin_token}");
    println!("                  (the audit log)");
    if o.faults {
        println!("faults are injected over the first three minutes; a test chime sounds every 5 minutes from");
    } else {
        println!("no faults are injected (--no-faults); a test chime sounds every 5 minutes from");
    }
    println!("{first_sounding}; Ctrl-C stops.");
}

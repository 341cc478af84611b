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
}

/// Heartbeat period in the demo: short, so that a silent siren turns `down` within a minute.
const HEARTBEAT_S: u64 = 5;

/// Writes the demo fleet and its configuration into `dir`.
pub fn prepare(o: &DemoOptions) -> anyhow::Result<(Loaded, generate::Generated)> {
    let g = generate::generate(&Options { sirens: o.sirens, seed: 12, serial_share: 0.25, ..Options::default() })?;
    let written = generate::write(&g, &o.dir)?;
    let mut text = std::fs::read_to_string(&written.config)?;
    text = text
        .replace("listen = \"127.0.0.1:9750\"", &format!("listen = \"{}\"", o.listen))
        .replace("listen = \"127.0.0.1:1884\"", &format!("listen = \"{}\"", o.broker))
        .replace("baud = 9600", "baud = 9600\npoll_interval_s = 5");
    {
        use std::fmt::Write as _;
        let _ = write!(text, "\n[liveness]\ndown_after_misses = 3\nheartbeat_s = {HEARTBEAT_S}\n");
    }
    std::fs::write(&written.config, text)?;
    Ok((Loaded::load(&written.config)?, g))
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

/// Runs the demo until Ctrl-C.
pub async fn run(o: DemoOptions, shutdown: impl std::future::Future<Output = ()>) -> anyhow::Result<()> {
    std::fs::create_dir_all(&o.dir).with_context(|| format!("creating {}", o.dir.display()))?;
    let (loaded, g) = prepare(&o)?;
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
    sim.play(scenario(&g.fleet));
    print_banner(&daemon, &o, &dir, buses.len(), devices.len());
    shutdown.await;
    devices.shutdown().await;
    daemon.stop().await;
    drop(buses);
    Ok(())
}

fn print_banner(daemon: &Daemon, o: &DemoOptions, dir: &Path, buses: usize, mqtt: usize) {
    let http = daemon.http;
    println!();
    println!("sirend demo: {} simulated sirens ({buses} serial buses on PTYs, {mqtt} on MQTT)", o.sirens);
    println!("  landing page    http://{http}/");
    println!("  metrics         http://{http}/metrics");
    println!("  sirens (JSON)   http://{http}/api/sirens");
    println!("  events (JSON)   http://{http}/api/events");
    println!("  MQTT broker     mqtt://{}", o.broker);
    println!("  files           {}", dir.display());
    println!("faults are injected over the first three minutes; Ctrl-C stops.");
}

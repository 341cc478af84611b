//! `siren-sim`: simulated siren controllers on real PTYs and real MQTT connections.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use siren_proto::fleet::{Fleet, KeyFile};
use siren_sim::clock::SimClock;
use siren_sim::fleet::{BuildOptions, SimFleet};
use siren_sim::generate::{self, Options};
use siren_sim::mqtt::MqttConfig;
use siren_sim::scenario::Scenario;

#[derive(Debug, Parser)]
#[command(name = "siren-sim", version, about = "Simulated siren controllers for sirennet")]
struct Cli {
    /// Log as JSON lines instead of human-readable text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Fleet files.
    Fleet {
        #[command(subcommand)]
        command: FleetCommand,
    },
    /// Serve the sirens of one serial bus on a new pseudo-terminal until stopped.
    Serial {
        #[command(flatten)]
        fleet: FleetArgs,
        /// The bus to serve (a `serial:<bus>` link in the fleet file).
        #[arg(long)]
        bus: String,
        #[arg(long, default_value_t = 9600)]
        baud: u32,
        /// Where to link the PTY [default: <fleet dir>/pty/<bus>, where the generated sirend.toml looks].
        #[arg(long, conflicts_with = "tcp")]
        link: Option<PathBuf>,
        /// Serve the line on this TCP address instead, as a serial device server does
        /// (sirend's `[[serial]] port = "tcp://host:port"`).
        #[arg(long)]
        tcp: Option<std::net::SocketAddr>,
    },
    /// Serve every serial bus (each on a PTY linked where the generated sirend.toml looks)
    /// and every MQTT siren, in one process, until stopped: a siren with a serial line and
    /// MQTT is one controller with one set of counters, as in the field. (Run `serial` and
    /// `mqtt` as separate processes and such a siren is simulated twice, each with its own
    /// counters, which the daemon sees as replays.)
    Run {
        #[command(flatten)]
        fleet: FleetArgs,
        #[arg(long, default_value_t = 9600)]
        baud: u32,
        /// Broker URL.
        #[arg(long, default_value = "mqtt://127.0.0.1:1884")]
        broker: String,
        /// Seconds between heartbeats.
        #[arg(long, default_value_t = 30)]
        heartbeat: u64,
    },
    /// Run every siren with an MQTT link as its own client of the broker until stopped.
    Mqtt {
        #[command(flatten)]
        fleet: FleetArgs,
        /// Broker URL.
        #[arg(long, default_value = "mqtt://127.0.0.1:1884")]
        broker: String,
        /// Seconds between heartbeats.
        #[arg(long, default_value_t = 30)]
        heartbeat: u64,
        /// MQTT keep-alive in seconds.
        #[arg(long, default_value_t = 30)]
        keep_alive: u64,
    },
}

#[derive(Debug, Subcommand)]
enum FleetCommand {
    /// Generate a fleet file, a key file and a matching sirend.toml.
    Generate {
        #[arg(long, default_value_t = 100)]
        sirens: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
        /// Share of sirens on serial buses, 0 to 1.
        #[arg(long, default_value_t = 0.3)]
        serial_share: f64,
    },
}

#[derive(Debug, clap::Args)]
struct FleetArgs {
    /// The fleet file.
    #[arg(long)]
    fleet: PathBuf,
    /// The key file [default: keys.csv beside the fleet file].
    #[arg(long)]
    keys: Option<PathBuf>,
    /// A scenario of faults to play from the start.
    #[arg(long)]
    scenario: Option<PathBuf>,
    /// Seed for clock errors and line noise.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Keep the controllers' counters in this file across restarts (read at start, written
    /// every second and at stop), as real controllers keep them in flash. Without it every
    /// start is a factory-fresh controller, whose frames a daemon that saw it before refuses
    /// as replays.
    #[arg(long)]
    state: Option<PathBuf>,
}

impl FleetArgs {
    fn load(&self) -> anyhow::Result<(Arc<SimFleet>, Option<Scenario>)> {
        let fleet = Fleet::load(&self.fleet)?;
        let keys_path = self.keys.clone().unwrap_or_else(|| beside(&self.fleet, "keys.csv"));
        let keys = KeyFile::load(&keys_path)?;
        let scenario = self.scenario.as_ref().map(|p| Scenario::load(p, &fleet)).transpose()?;
        let options = BuildOptions { seed: self.seed, ..BuildOptions::default() };
        let sim = Arc::new(SimFleet::build(fleet, &keys, SimClock::real_time(), &options)?);
        if let Some(state) = &self.state {
            let n = sim.load_state(state)?;
            tracing::info!(sirens = n, file = %state.display(), "counters restored");
        }
        Ok((sim, scenario))
    }

    /// Saves the counters every second until `stop`, and once more then.
    async fn keep_state(
        &self,
        sim: &SimFleet,
        stop: impl std::future::Future<Output = anyhow::Result<()>>,
    ) -> anyhow::Result<()> {
        let Some(path) = &self.state else { return stop.await };
        tokio::pin!(stop);
        let mut every = tokio::time::interval(Duration::from_secs(1));
        let result = loop {
            tokio::select! {
                r = &mut stop => break r,
                _ = every.tick() => {
                    if let Err(e) = sim.save_state(path) {
                        tracing::warn!(error = %e, "cannot save the counters");
                    }
                }
            }
        };
        sim.save_state(path)?;
        result
    }
}

fn beside(file: &Path, name: &str) -> PathBuf {
    file.parent().map_or_else(|| PathBuf::from(name), |d| d.join(name))
}

/// `siren-sim serial`: one bus on a PTY (linked at `link`, or where the generated sirend.toml
/// looks) or, with `tcp`, on a TCP port as a serial device server (`--link` and `--tcp`
/// exclude each other).
fn serve_serial(
    fleet: &FleetArgs,
    bus: &str,
    baud: u32,
    link: Option<PathBuf>,
    tcp: Option<std::net::SocketAddr>,
) -> anyhow::Result<()> {
    let link = match (link, tcp) {
        (_, Some(_)) => None,
        (Some(l), None) => Some(l),
        (None, None) => {
            let fleet_file = fleet.fleet.canonicalize().with_context(|| format!("{}", fleet.fleet.display()))?;
            Some(generate::pty_link(fleet_file.parent().unwrap_or(Path::new("/")), bus))
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let (sim, scenario) = fleet.load()?;
        let served = match tcp {
            Some(addr) => sim.serve_serial_tcp(bus, baud, addr)?,
            None => sim.serve_serial(bus, baud, link)?,
        };
        println!("bus {bus}: {} at {baud} baud", served.path().display());
        if let Some(l) = served.link() {
            println!("linked as {}", l.display());
        }
        if let Some(s) = scenario {
            sim.play(s);
        }
        fleet.keep_state(&sim, shutdown_signal()).await?;
        drop(served);
        Ok(())
    })
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    if cli.json {
        tracing_subscriber::fmt().json().with_env_filter(filter).init();
    } else {
        tracing_subscriber::fmt().with_env_filter(filter).init();
    }
    match cli.command {
        Command::Fleet { command: FleetCommand::Generate { sirens, seed, out, serial_share } } => {
            let generated = generate::generate(&Options { sirens, seed, serial_share, ..Options::default() })?;
            let written = generate::write(&generated, &out)?;
            let buses = generated.fleet.buses();
            println!(
                "{} sirens ({} on {} serial buses)",
                generated.fleet.sirens.len(),
                buses.values().map(Vec::len).sum::<usize>(),
                buses.len()
            );
            println!("fleet   {}", written.fleet.display());
            println!("keys    {}", written.keys.display());
            println!("config  {}", written.config.display());
            Ok(())
        }
        Command::Serial { fleet, bus, baud, link, tcp } => serve_serial(&fleet, &bus, baud, link, tcp),
        Command::Mqtt { fleet, broker, heartbeat, keep_alive } => {
            raise_open_file_limit();
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            runtime.block_on(async {
                let (sim, scenario) = fleet.load()?;
                let mut config = MqttConfig::from_url(&broker)?;
                config.heartbeat = Duration::from_secs(heartbeat.max(1));
                config.keep_alive = Duration::from_secs(keep_alive.max(5));
                let devices = sim.serve_mqtt(&config);
                println!("{} MQTT sirens on {broker}", devices.len());
                if let Some(s) = scenario {
                    sim.play(s);
                }
                fleet.keep_state(&sim, shutdown_signal()).await?;
                devices.shutdown().await;
                Ok(())
            })
        }
        Command::Run { fleet, baud, broker, heartbeat } => {
            raise_open_file_limit();
            let fleet_file = fleet.fleet.canonicalize().with_context(|| format!("{}", fleet.fleet.display()))?;
            let dir = fleet_file.parent().unwrap_or(Path::new("/")).to_owned();
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            runtime.block_on(async {
                let (sim, scenario) = fleet.load()?;
                let buses: Vec<String> = sim.fleet.buses().keys().map(|b| (*b).to_owned()).collect();
                let mut served = Vec::new();
                for bus in &buses {
                    let bus_served = sim.serve_serial(bus, baud, Some(generate::pty_link(&dir, bus)))?;
                    println!("bus {bus}: {} at {baud} baud", bus_served.path().display());
                    served.push(bus_served);
                }
                let mut config = MqttConfig::from_url(&broker)?;
                config.heartbeat = Duration::from_secs(heartbeat.max(1));
                let devices = sim.serve_mqtt(&config);
                println!("{} MQTT sirens on {broker}", devices.len());
                if let Some(s) = scenario {
                    sim.play(s);
                }
                fleet.keep_state(&sim, shutdown_signal()).await?;
                devices.shutdown().await;
                drop(served);
                Ok(())
            })
        }
    }
}

/// Waits for Ctrl-C or SIGTERM, so that a service manager's stop also cleans up (PTY links).
async fn shutdown_signal() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("waiting for Ctrl-C")?,
        _ = term.recv() => {}
    }
    Ok(())
}

/// Every MQTT siren holds a socket: raise the soft open-file limit to the hard limit, so that
/// ten thousand sirens fit in one process without the operator tuning `ulimit`.
fn raise_open_file_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => {
            if let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
                tracing::warn!(error = %e, soft, "could not raise the open-file limit");
            }
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "could not read the open-file limit"),
    }
}

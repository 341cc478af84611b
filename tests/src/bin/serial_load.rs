//! Load harness: 32 simulated sirens on one 9600 baud PTY bus, polled as fast as the line
//! allows. Reports answered polls per second against the line-rate limit of BENCHMARKS.md,
//! and how long a silent siren takes to turn `down`.
//!
//! `cargo run --release -p sirennet-e2e --bin serial_load [SECONDS]`

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use siren_proto::Key;
use siren_proto::fleet::{Fleet, KeyEntry, KeyFile};
use siren_proto::frame::KeyId;
use siren_sim::clock::SimClock;
use siren_sim::fault::Fault;
use siren_sim::fleet::{BuildOptions, SimFleet};
use sirend::config::Loaded;
use sirend::daemon::Daemon;
use sirend::liveness::State;

const DROPS: u16 = 32;
const BAUD: u32 = 9600;

/// Answered polls so far: the poll-duration histogram's count.
fn answered(daemon: &Daemon) -> f64 {
    daemon
        .metrics
        .encode()
        .lines()
        .find_map(|l| l.strip_prefix("siren_link_poll_duration_seconds_count{link=\"serial:load\"} "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let seconds: u64 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(30);
    let dir = tempfile::tempdir()?;
    let mut csv = String::from("id,name,latitude,longitude,zone,rating_db,address,key_id,links\n");
    let mut keys = Vec::new();
    for n in 1..=DROPS {
        writeln!(csv, "L-{n:02},load {n},30.2,120.1,load/a/b,118,{},{n},serial:load", 16 + n)?;
        keys.push(KeyEntry {
            key_id: KeyId(n),
            holder: format!("siren:L-{n:02}").parse().map_err(anyhow::Error::msg)?,
            key: Key::new([u8::try_from(n)?; 32]),
        });
    }
    keys.push(KeyEntry {
        key_id: KeyId(0x8000),
        holder: "bus:load".parse().map_err(anyhow::Error::msg)?,
        key: Key::new([0xEE; 32]),
    });
    let fleet = Fleet::parse("load", &csv)?;
    let keys = KeyFile { entries: keys };
    std::fs::write(dir.path().join("fleet.csv"), &csv)?;
    let mut key_csv = Vec::new();
    keys.write_csv(&mut key_csv)?;
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        let mut f =
            std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(dir.path().join("keys.csv"))?;
        std::io::Write::write_all(&mut f, &key_csv)?;
    }
    let port = dir.path().join("bus");
    std::fs::write(
        dir.path().join("sirend.toml"),
        format!(
            "fleet = \"fleet.csv\"\nkeys = \"keys.csv\"\n[http]\nlisten = \"127.0.0.1:0\"\n[[serial]]\nbus = \"load\"\nport = \"{}\"\nbaud = {BAUD}\npoll_interval_s = 0.1\n",
            port.display()
        ),
    )?;
    let loaded = Loaded::load(&dir.path().join("sirend.toml"))?;
    let sim = Arc::new(SimFleet::build(fleet, &keys, SimClock::real_time(), &BuildOptions::default())?);
    let _bus = sim.serve_serial("load", BAUD, Some(port))?;
    let daemon = Daemon::start(&loaded).await?;

    tokio::time::sleep(Duration::from_secs(5)).await; // warm up: every siren heard once
    let (a0, t0) = (answered(&daemon), Instant::now());
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let rate = (answered(&daemon) - a0) / t0.elapsed().as_secs_f64();
    // docs/protocol.md §3 and BENCHMARKS.md: 35 + 87 bytes and two 3.5-byte gaps per poll.
    let limit = f64::from(BAUD) / 10.0 / (35.0 + 87.0 + 7.0);
    println!("answered polls: {rate:.2}/s on one {BAUD} baud bus of {DROPS} sirens");
    println!("line-rate limit: {limit:.2}/s -> {:.1} % of the limit", 100.0 * rate / limit);

    // Silent death: down after 3 misses; each siren is polled every DROPS / rate seconds.
    let interval = f64::from(DROPS) / rate;
    let cut = Instant::now();
    sim.inject("L-07", &Fault::SilentDeath)?;
    loop {
        let state = daemon.fleet.read().map_err(|_| anyhow::anyhow!("poisoned"))?.get("L-07").map(|s| s.liveness.state);
        if state == Some(State::Down) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let took = cut.elapsed().as_secs_f64();
    println!(
        "silent death -> down: {took:.1} s (3 misses + 1 interval = {:.1} s at {interval:.1} s per round)",
        4.0 * interval
    );
    daemon.stop().await;
    Ok(())
}

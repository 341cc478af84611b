//! Load harness: the daemon's resident memory during and after a junk flood on its embedded
//! broker. `sirend run` (the release binary, built first) watches 300 simulated MQTT sirens;
//! once the simulated ones are `ok`, four clients publish 100,000 junk messages at full rate,
//! half to sirens' topics (random bytes of 16 B to 4 KiB, which the engine must reject), half
//! to random topics. The embedded broker admits only the fleet's sirens, so the flooders are
//! four sirens whose keys were stolen (the simulator does not run them); the broker lets each
//! publish only on its own topics and drops the rest. RSS is sampled every 100 ms from `/proc`.
//!
//! `cargo build --release -p sirend && cargo run --release -p sirennet-e2e --bin mqtt_flood`

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rumqttc::{AsyncClient, MqttOptions, QoS};
use siren_sim::clock::SimClock;
use siren_sim::fleet::{BuildOptions, SimFleet};
use siren_sim::generate::{self, Options};
use siren_sim::mqtt::MqttConfig;
use sirennet_e2e::broker::free_port;

const MESSAGES: usize = 100_000;
const CLIENTS: usize = 4;

/// KiB as MiB for printing (RSS fits an f64 exactly).
#[allow(clippy::cast_precision_loss, reason = "RSS in KiB is far below 2^52")]
fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| l.strip_prefix("VmRSS:").map(|v| v.trim().trim_end_matches(" kB").to_owned()))
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let binary = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/sirend");
    anyhow::ensure!(binary.exists(), "build the daemon first: cargo build --release -p sirend");
    let dir = tempfile::tempdir()?;
    // SIRENS=n: another fleet size (how a reconnect storm of n sirens fares).
    let sirens: usize = std::env::var("SIRENS").ok().and_then(|v| v.parse().ok()).unwrap_or(300);
    let g = generate::generate(&Options { sirens, seed: 9, serial_share: 0.0, ..Options::default() })?;
    let written = generate::write(&g, dir.path())?;
    let (broker, http) = (free_port()?, free_port()?);
    let config = std::fs::read_to_string(&written.config)?
        .replace("listen = \"127.0.0.1:9750\"", &format!("listen = \"{http}\""))
        .replace("listen = \"127.0.0.1:1884\"", &format!("listen = \"{broker}\""));
    std::fs::write(&written.config, config)?;
    let mut daemon = Command::new(&binary)
        .args(["run", "--config"])
        .arg(&written.config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let pid = daemon.id();
    let mut simulated = g.fleet.clone();
    let stolen: Vec<siren_proto::fleet::Siren> = simulated.sirens.drain(..CLIENTS).collect();
    let sim = Arc::new(SimFleet::build(simulated, &g.keys, SimClock::real_time(), &BuildOptions::default())?);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let devices = sim.serve_mqtt(&MqttConfig::from_url(&format!("mqtt://{broker}"))?);
    let started = Instant::now();

    while sirennet_e2e::http::get(http, "/api/sirens").body.matches("\"state\":\"ok\"").count() < sirens - CLIENTS {
        anyhow::ensure!(started.elapsed() < Duration::from_secs(120), "the fleet never became ok");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!("{sirens} sirens connected at once: all ok after {:.1} s", started.elapsed().as_secs_f64());
    tokio::time::sleep(Duration::from_secs(5)).await;
    let before = rss_kib(pid);

    let topics: Vec<String> =
        g.fleet.sirens.iter().map(|s| format!("sirennet/v1/{}/{}/status", s.zone, s.id)).collect();
    let topics = Arc::new(topics);
    // FLOOD=junk: only random topics (what the broker alone costs).
    let junk_only = std::env::var("FLOOD").is_ok_and(|v| v == "junk");
    let flood_started = Instant::now();
    let mut tasks = Vec::new();
    for (c, thief) in stolen.iter().enumerate() {
        let topics = Arc::clone(&topics);
        let key = g.keys.entries.iter().find(|e| e.key_id == thief.key_id).map(|e| e.key.mqtt_password());
        let id = thief.id.clone();
        let own = format!("sirennet/v1/{}/{}/status", thief.zone, thief.id);
        tasks.push(tokio::spawn(async move {
            let mut options = MqttOptions::new(id.clone(), "127.0.0.1", broker.port());
            options.set_credentials(id, key.unwrap_or_default());
            options.set_max_packet_size(8 * 1024, 8 * 1024);
            let (client, mut event_loop) = AsyncClient::new(options, 1024);
            let pump = tokio::spawn(async move { while event_loop.poll().await.is_ok() {} });
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(c as u64);
            for i in 0..MESSAGES / CLIENTS {
                let len = rng.random_range(16..4000);
                let payload: Vec<u8> = (0..len).map(|_| rng.random()).collect();
                let topic = if i % 4 == 0 && !junk_only {
                    own.clone()
                } else if i % 2 == 0 && !junk_only {
                    topics[rng.random_range(0..topics.len())].clone()
                } else {
                    format!("junk/{}/{}", rng.random::<u32>(), rng.random::<u16>())
                };
                if client.publish(topic, QoS::AtMostOnce, false, payload).await.is_err() {
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
            pump.abort();
        }));
    }
    let mut peak = before;
    while !tasks.iter().all(tokio::task::JoinHandle::is_finished) {
        peak = peak.max(rss_kib(pid));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let flood = flood_started.elapsed();
    for _ in 0..100 {
        peak = peak.max(rss_kib(pid));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let after = rss_kib(pid);
    let ok = sirennet_e2e::http::get(http, "/api/sirens").body.matches("\"state\":\"ok\"").count();
    println!(
        "{MESSAGES} junk messages from {CLIENTS} clients in {:.1} s: daemon RSS before {:.1} MiB, peak {:.1} MiB, 10 s after {:.1} MiB; sirens ok after: {ok}/{sirens}",
        flood.as_secs_f64(),
        mib(before),
        mib(peak),
        mib(after)
    );
    devices.shutdown().await;
    let _ = Command::new("kill").arg(pid.to_string()).status();
    let _ = daemon.wait();
    Ok(())
}

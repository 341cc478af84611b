//! Load harness: how long an MQTT siren's death takes to become `down` in the daemon.
//! 200 simulated MQTT sirens on the daemon's embedded broker; 20 of them lose their link one
//! after another; for each, the time from the broker publishing the will (the device's socket
//! closing) to the daemon's state being `down`.
//!
//! With `API_CLIENTS` > 0, that many clients fetch `/api/sirens` over and over meanwhile, each
//! on its own thread, to show whether API load slows monitoring.
//!
//! `cargo run --release -p sirennet-e2e --bin mqtt_latency [API_CLIENTS]`

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use siren_sim::clock::SimClock;
use siren_sim::fault::Fault;
use siren_sim::fleet::{BuildOptions, SimFleet};
use siren_sim::generate::{self, Options};
use siren_sim::mqtt::MqttConfig;
use sirend::config::Loaded;
use sirend::daemon::Daemon;
use sirend::liveness::State;
use sirennet_e2e::broker::free_port;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let g = generate::generate(&Options { sirens: 200, seed: 8, serial_share: 0.0, ..Options::default() })?;
    let written = generate::write(&g, dir.path())?;
    let broker = free_port()?;
    let config = std::fs::read_to_string(&written.config)?
        .replace("listen = \"127.0.0.1:9750\"", "listen = \"127.0.0.1:0\"")
        .replace("listen = \"127.0.0.1:1884\"", &format!("listen = \"{broker}\""));
    std::fs::write(&written.config, config)?;
    let loaded = Loaded::load(&written.config)?;
    let daemon = Daemon::start(&loaded).await?;
    let sim = Arc::new(SimFleet::build(g.fleet.clone(), &g.keys, SimClock::real_time(), &BuildOptions::default())?);
    let mut mqtt = MqttConfig::from_url(&format!("mqtt://{broker}"))?;
    // The device notices its cut link within a millisecond, as a real socket error would.
    mqtt.check_every = Duration::from_millis(1);
    let devices = sim.serve_mqtt(&mqtt);
    let state = |id: &str| daemon.fleet.read().ok().and_then(|f| f.get(id).map(|s| s.liveness.state));
    let ids: Vec<String> = g.fleet.sirens.iter().map(|s| s.id.clone()).collect();
    while !ids.iter().all(|id| state(id) == Some(State::Ok)) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let clients: usize = std::env::args().nth(1).map_or(Ok(0), |a| a.parse())?;
    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicU64::new(0));
    let load: Vec<_> = (0..clients)
        .map(|i| {
            let (stop, served, http) = (Arc::clone(&stop), Arc::clone(&served), daemon.http);
            // 32 clients per loopback address: the daemon serves at most 64 from one.
            let from = std::net::Ipv4Addr::new(
                127,
                1,
                u8::try_from(i / 32 / 250).unwrap_or(0),
                u8::try_from(i / 32 % 250 + 1).unwrap_or(1),
            );
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if sirennet_e2e::http::get_from(from, http, "/api/sirens").is_ok_and(|r| r.status == 200) {
                        served.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    let loaded_at = Instant::now();
    if clients > 0 {
        // Let the load build up first.
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let mut latencies = Vec::new();
    for id in ids.iter().take(20) {
        let cut = Instant::now();
        sim.inject(id, &Fault::LinkLoss)?;
        while state(id) != Some(State::Down) {
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        latencies.push(cut.elapsed());
    }
    stop.store(true, Ordering::Relaxed);
    for t in load {
        let _ = t.join();
    }
    if clients > 0 {
        #[allow(clippy::cast_precision_loss, reason = "a request count")]
        let rate = served.load(Ordering::Relaxed) as f64 / loaded_at.elapsed().as_secs_f64();
        println!("API load: {clients} clients, {rate:.0} GET /api/sirens answered per second meanwhile");
    }
    latencies.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "MQTT death -> down over {} deaths: median {:.1} ms, max {:.1} ms (target under 1000 ms)",
        latencies.len(),
        ms(latencies[latencies.len() / 2]),
        ms(latencies[latencies.len() - 1])
    );
    devices.shutdown().await;
    daemon.stop().await;
    Ok(())
}

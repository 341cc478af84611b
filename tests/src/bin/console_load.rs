//! Page benchmark of the console: the overview of a fleet of N simulated MQTT sirens (10,000 by
//! default) in a real headless Chromium, loaded several times (time to the fleet drawn, bytes
//! transferred), then kept open while the fleet changes state R times a second (a cabinet
//! door opened or closed on a random siren, each a state change): how late the page shows the
//! changes, and whether its main thread stays free (long tasks, timer lateness).
//!
//! `cargo run --release -p sirennet-e2e --bin console_load -- [SIRENS] [CHANGES_PER_S] [SECONDS]`

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::{Rng as _, SeedableRng as _};
use siren_sim::clock::SimClock;
use siren_sim::fault::Fault;
use siren_sim::fleet::{BuildOptions, SimFleet};
use siren_sim::generate::{self, Options};
use siren_sim::mqtt::MqttConfig;
use sirend::auth::{Role, new_token};
use sirend::config::Loaded;
use sirend::daemon::Daemon;
use sirend::liveness::State;
use sirennet_e2e::broker::TestBroker;
use sirennet_e2e::browser::{Chromium, log_in};

const LOADS: usize = 5;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let arg = |i: usize, default: u64| std::env::args().nth(i).and_then(|a| a.parse().ok()).unwrap_or(default);
    let sirens = usize::try_from(arg(1, 10_000))?;
    let rate = arg(2, 100);
    let seconds = arg(3, 30);
    let chromium = Chromium::launch().await?.ok_or_else(|| anyhow::anyhow!("Chromium is not installed"))?;
    // Two sockets per simulated siren (the device's and the broker's end).
    let (_, hard) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)?;
    nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, hard, hard)?;
    // A private Mosquitto, as in daemon/bench/fleet.sh: the broker is not what is measured.
    let broker = TestBroker::mosquitto_with("max_connections -1\nmax_queued_messages 100000\n")?
        .ok_or_else(|| anyhow::anyhow!("Mosquitto is not installed"))?;
    let dir = tempfile::tempdir()?;
    let Fleet { daemon, sim, devices, token, ids } = start_fleet(sirens, &broker, dir.path()).await?;

    let tab = chromium.open(&format!("http://{}/", daemon.http), 1920, 1080).await?;
    log_in(&tab, &token, "zh-CN").await?;
    let (loads, bytes) = load_times(&tab, sirens).await?;

    // The page watches itself while the fleet changes.
    tab.run(
        "window.bench = { longTasks: [], late: [] };\
         new PerformanceObserver(l => { for (const e of l.getEntries()) window.bench.longTasks.push(e.duration); })\
           .observe({ type: 'longtask', buffered: false });\
         let last = performance.now();\
         setInterval(() => { const now = performance.now(); window.bench.late.push(now - last - 100); last = now; }, 100);\
         window.sirendStats.shownLagMs.length = 0; window.sirendStats.events = 0",
    )
    .await?;
    let mut sent = 0u64;
    let changes = async {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut open = std::collections::HashSet::new();
        let period = Duration::from_secs_f64(1.0 / f64::from(u32::try_from(rate)?));
        let until = Instant::now() + Duration::from_secs(seconds);
        let mut next = Instant::now();
        while Instant::now() < until {
            let id = &ids[rng.random_range(0..ids.len())];
            let fault = if open.remove(id) {
                Fault::DoorClosed
            } else {
                open.insert(id.clone());
                Fault::DoorOpen
            };
            sim.inject(id, &fault)?;
            sent += 1;
            next += period;
            tokio::time::sleep_until(next.into()).await;
        }
        // What was sent has its moment to arrive.
        tokio::time::sleep(Duration::from_secs(3)).await;
        Ok(())
    };
    // SIRENNET_PROFILE=1: where the page's time went, too.
    if std::env::var_os("SIRENNET_PROFILE").is_some() {
        let top = tab.profile(changes).await?;
        for (name, ms) in top.iter().take(25) {
            eprintln!("{ms:9.1} ms  {name}");
        }
    } else {
        changes.await?;
    }
    let report: serde_json::Value = tab
        .eval(
            "(() => { const q = (a, p) => { const s = [...a].sort((x, y) => x - y); \
             return s.length ? s[Math.min(s.length - 1, Math.floor(p * s.length))] : null; };\
             const lag = window.sirendStats.shownLagMs, b = window.bench;\
             return { events: window.sirendStats.events, shown: lag.length,\
               lag: [q(lag, 0.5), q(lag, 0.99), q(lag, 1)],\
               long_tasks: b.longTasks.length, longest_task: b.longTasks.length ? Math.max(...b.longTasks) : 0,\
               timer_late: [q(b.late, 0.5), q(b.late, 0.99), q(b.late, 1)],\
               heap_mb: performance.memory ? performance.memory.usedJSHeapSize / 1048576 : null }; })()",
        )
        .await?;
    #[allow(clippy::cast_precision_loss, reason = "a display value")]
    let per_s = sent as f64 / seconds as f64;
    println!("console overview, {sirens} sirens, Chromium headless, 1920x1080");
    println!(
        "  load to fleet drawn, ms ({LOADS} loads): median {:.0}, worst {:.0}; {:.0} kB transferred",
        loads[LOADS / 2],
        loads[LOADS - 1],
        bytes / 1024.0
    );
    println!("  while {per_s:.0} state changes/s for {seconds} s: {report}");
    tab.close().await?;
    devices.shutdown().await;
    daemon.stop().await;
    Ok(())
}

/// Loads the overview `LOADS` times: the times to the fleet drawn (ms from navigation, sorted)
/// and the bytes the page transferred.
async fn load_times(tab: &sirennet_e2e::browser::Tab, sirens: usize) -> anyhow::Result<(Vec<f64>, f64)> {
    let mut loads = Vec::new();
    let mut bytes = 0.0;
    for _ in 0..LOADS {
        tab.reload().await?;
        tab.wait_for("the overview", "document.body.dataset.ready === 'true'", Duration::from_secs(120)).await?;
        // The map is drawn in the frame after the data: wait two frames.
        let drawn: f64 = tab
            .eval("new Promise(r => requestAnimationFrame(() => requestAnimationFrame(() => r(performance.now()))))")
            .await?;
        let total: String = tab.eval("document.querySelector('[data-state=total]').textContent").await?;
        anyhow::ensure!(total.replace(',', "") == sirens.to_string(), "the overview shows {total} sirens");
        bytes = tab
            .eval(
                "performance.getEntriesByType('navigation').concat(performance.getEntriesByType('resource'))\
                 .reduce((n, e) => n + (e.encodedBodySize || 0), 0)",
            )
            .await?;
        loads.push(drawn);
    }
    loads.sort_by(f64::total_cmp);
    Ok((loads, bytes))
}

/// The daemon and its simulated fleet, every siren ok.
struct Fleet {
    daemon: Daemon,
    sim: Arc<SimFleet>,
    devices: siren_sim::mqtt::MqttDevices,
    token: String,
    ids: Vec<String>,
}

async fn start_fleet(sirens: usize, broker: &TestBroker, dir: &std::path::Path) -> anyhow::Result<Fleet> {
    let options = Options { sirens, seed: 5, serial_share: 0.0, redundant_share: 0.0, ..Options::default() };
    let g = generate::generate(&options)?;
    let written = generate::write(&g, dir)?;
    let mut text = std::fs::read_to_string(&written.config)?;
    text = text.replace("listen = \"127.0.0.1:9750\"", "listen = \"127.0.0.1:0\"");
    text = text.replace("embedded = true", &format!("embedded = false\nurl = \"{}\"", broker.url()));
    let (token, entry) = new_token("bench", Role::Operator);
    writeln!(text, "\n{entry}")?;
    std::fs::write(&written.config, text)?;
    let loaded = Loaded::load(&written.config)?;
    let sim = Arc::new(SimFleet::build(g.fleet, &g.keys, SimClock::real_time(), &BuildOptions::default())?);
    let daemon = Daemon::start(&loaded).await?;
    let mut mqtt = MqttConfig::from_url(&broker.url())?;
    mqtt.heartbeat = Duration::from_secs(30);
    let devices = sim.serve_mqtt(&mqtt);
    let ids: Vec<String> = loaded.fleet.sirens.iter().map(|s| s.id.clone()).collect();
    let started = Instant::now();
    while !ids.iter().all(|id| {
        daemon
            .fleet
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(id)
            .is_some_and(|s| s.liveness.state == State::Ok)
    }) {
        anyhow::ensure!(started.elapsed() < Duration::from_secs(600), "the fleet did not come up");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!("{sirens} sirens ok after {:.1} s", started.elapsed().as_secs_f64());
    Ok(Fleet { daemon, sim, devices, token, ids })
}

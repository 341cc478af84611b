//! sirend against simulated sirens on a real PTY serial bus: faults injected in the simulator
//! appear as the right states, silence becomes `down` after the configured misses, and an
//! unplugged port makes its sirens `unreachable`.
#![allow(clippy::unwrap_used, reason = "test helpers may panic on impossible states")]

use std::path::Path;
use std::sync::Arc;

use siren_sim::clock::SimClock;
use siren_sim::fault::Fault;
use siren_sim::fleet::{BuildOptions, SimFleet};
use siren_sim::generate::{self, Options};
use sirend::config::Loaded;
use sirend::daemon::Daemon;
use sirend::liveness::State;
use sirennet_e2e::wait::wait_for;

/// A serial-only fleet with its configuration, tuned for a quick test: fast polls.
fn setup(dir: &Path, sirens: usize) -> (Loaded, Arc<SimFleet>) {
    let g =
        generate::generate(&Options { sirens, seed: 2, serial_share: 1.0, redundant_share: 0.0, ..Options::default() })
            .unwrap();
    let written = generate::write(&g, dir).unwrap();
    let mut text = std::fs::read_to_string(&written.config).unwrap();
    text = text
        .replace("listen = \"127.0.0.1:9750\"", "listen = \"127.0.0.1:0\"")
        .replace("baud = 9600", "baud = 9600\npoll_interval_s = 0.5");
    text.push_str("\n[liveness]\ndown_after_misses = 3\n");
    std::fs::write(&written.config, text).unwrap();
    let loaded = Loaded::load(&written.config).unwrap();
    let sim = SimFleet::build(g.fleet, &g.keys, SimClock::real_time(), &BuildOptions::default()).unwrap();
    (loaded, Arc::new(sim))
}

fn state(daemon: &Daemon, id: &str) -> State {
    daemon.fleet.read().unwrap().get(id).unwrap().liveness.state
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_silence_and_a_lost_port_on_a_serial_bus() {
    let dir = tempfile::tempdir().unwrap();
    let (loaded, sim) = setup(dir.path(), 6);
    let buses: Vec<String> = loaded.fleet.buses().keys().map(|b| (*b).to_owned()).collect();
    let mut served: Vec<_> = buses
        .iter()
        .map(|b| sim.serve_serial(b, 9600, Some(generate::pty_link(&dir.path().canonicalize().unwrap(), b))).unwrap())
        .collect();
    let daemon = Daemon::start(&loaded).await.unwrap();
    let ids: Vec<String> = loaded.fleet.sirens.iter().map(|s| s.id.clone()).collect();
    wait_for("every siren ok", || ids.iter().all(|id| state(&daemon, id) == State::Ok)).await;

    // A warning fault: degraded, with the fault named.
    sim.inject(&ids[0], &Fault::MainsLoss).unwrap();
    wait_for("degraded on mains loss", || state(&daemon, &ids[0]) == State::Degraded).await;
    // A blocking fault: faulty.
    sim.inject(&ids[1], &Fault::AmplifierFailure { channel: None }).unwrap();
    wait_for("faulty on amplifier failure", || state(&daemon, &ids[1]) == State::Faulty).await;
    // Silence: down after the misses, and the others on the bus keep being polled.
    sim.inject(&ids[2], &Fault::SilentDeath).unwrap();
    wait_for("down after silence", || state(&daemon, &ids[2]) == State::Down).await;
    assert!(daemon.fleet.read().unwrap().get(&ids[2]).unwrap().liveness.misses >= 3);
    assert_eq!(state(&daemon, &ids[3]), State::Ok);

    // The events were recorded.
    daemon.store.flush().unwrap();
    let events = daemon
        .store
        .events(&sirend::store::EventQuery { siren: Some(ids[0].clone()), limit: 100, ..Default::default() })
        .unwrap();
    assert!(events.iter().any(|e| e.event.kind == "fault_raised" && e.event.detail == "mains_lost"), "{events:?}");

    // The port disappears: every siren on it is unreachable, none is down for it.
    served.clear();
    let healthy: Vec<&String> = ids.iter().filter(|id| *id != &ids[2]).collect();
    wait_for("unreachable when the port is gone", || healthy.iter().all(|id| state(&daemon, id) == State::Unreachable))
        .await;
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sirens_on_a_port_that_never_opens_are_unreachable() {
    let dir = tempfile::tempdir().unwrap();
    let (loaded, _sim) = setup(dir.path(), 4);
    // No bus is served: every configured port is missing from the start.
    let daemon = Daemon::start(&loaded).await.unwrap();
    let ids: Vec<String> = loaded.fleet.sirens.iter().map(|s| s.id.clone()).collect();
    wait_for("unreachable without a port", || ids.iter().all(|id| state(&daemon, id) == State::Unreachable)).await;
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fragment_followed_by_silence_is_counted_truncated_at_the_idle_gap() {
    use std::io::Write as _;
    use std::os::fd::AsFd as _;
    let dir = tempfile::tempdir().unwrap();
    let (loaded, _sim) = setup(dir.path(), 1);
    let bus = loaded.fleet.buses().keys().next().map(|b| (*b).to_owned()).unwrap();
    // A line of our own instead of the simulator's: nothing on it answers.
    let pty = nix::pty::openpty(None, None).unwrap();
    let mut termios = nix::sys::termios::tcgetattr(pty.slave.as_fd()).unwrap();
    nix::sys::termios::cfmakeraw(&mut termios);
    nix::sys::termios::tcsetattr(pty.slave.as_fd(), nix::sys::termios::SetArg::TCSANOW, &termios).unwrap();
    let port = siren_sim::generate::pty_link(&dir.path().canonicalize().unwrap(), &bus);
    std::fs::create_dir_all(port.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(nix::unistd::ttyname(pty.slave.as_fd()).unwrap(), &port).unwrap();
    let mut line = std::fs::File::from(pty.master);

    let daemon = Daemon::start(&loaded).await.unwrap();
    let truncated = |daemon: &Daemon| {
        daemon.metrics.encode().lines().any(|l| l.starts_with("siren_frames_rejected_total{reason=\"truncated\"} 1"))
    };
    wait_for("the port open", || {
        daemon.metrics.encode().lines().any(|l| l.starts_with("siren_link_up{link=\"serial:") && l.ends_with(" 1"))
    })
    .await;
    // The first 30 bytes of an envelope (SYNC and a header announcing 48 payload bytes),
    // then nothing more: the daemon must give up on it at the gap, not keep it buffered
    // until the next reply.
    let mut fragment = vec![0xA5, 0xC3, 0x01, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01, 0, 0, 0, 9, 0x82, 0, 48];
    fragment.resize(30, 0x11);
    line.write_all(&fragment).unwrap();
    wait_for("the fragment counted as truncated", || truncated(&daemon)).await;
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bus_that_comes_back_is_polled_at_once_and_its_settling_line_makes_nobody_down() {
    let dir = tempfile::tempdir().unwrap();
    let (loaded, sim) = setup(dir.path(), 3);
    let root = dir.path().canonicalize().unwrap();
    let buses: Vec<String> = loaded.fleet.buses().keys().map(|b| (*b).to_owned()).collect();
    let serve = || -> Vec<_> {
        buses.iter().map(|b| sim.serve_serial(b, 9600, Some(generate::pty_link(&root, b))).unwrap()).collect()
    };
    let mut served = serve();
    let daemon = Daemon::start(&loaded).await.unwrap();
    let ids: Vec<String> = loaded.fleet.sirens.iter().map(|s| s.id.clone()).collect();
    wait_for("every siren ok", || ids.iter().all(|id| state(&daemon, id) == State::Ok)).await;

    // The bus server goes away and comes back; its line carries nothing for 7 s after the
    // port reopens (a modem or a bus server still starting).
    served.clear();
    wait_for("unreachable", || ids.iter().all(|id| state(&daemon, id) == State::Unreachable)).await;
    for id in &ids {
        sim.inject(id, &Fault::LinkLoss).unwrap();
    }
    served = serve();
    wait_for("the port reopened", || ids.iter().all(|id| state(&daemon, id) == State::Unknown)).await;
    tokio::time::sleep(std::time::Duration::from_secs(7)).await;
    for id in &ids {
        sim.inject(id, &Fault::LinkRestore).unwrap();
    }
    wait_for("every siren ok again", || ids.iter().all(|id| state(&daemon, id) == State::Ok)).await;
    daemon.store.flush().unwrap();
    for id in &ids {
        let events = daemon
            .store
            .events(&sirend::store::EventQuery { siren: Some(id.clone()), limit: 100, ..Default::default() })
            .unwrap();
        assert!(!events.iter().any(|e| e.event.detail.contains("-> down")), "{id}: {events:?}");
        // A line that stayed silent after its port reopened is the line's fault: unreachable.
        assert!(events.iter().any(|e| e.event.detail == "unknown -> unreachable (links_down)"), "{id}: {events:?}");
    }
    drop(served);
    daemon.stop().await;
}

/// The configuration of `setup` with each bus on a serial device server's TCP port instead
/// of a PTY; the buses served there.
fn on_device_servers(loaded: &Loaded, sim: &SimFleet) -> (Loaded, Vec<siren_sim::serial::SerialBus>) {
    let mut text = std::fs::read_to_string(&loaded.path).unwrap();
    let mut served = Vec::new();
    for s in &loaded.config.serial {
        let bus = sim.serve_serial_tcp(&s.bus, s.baud, "127.0.0.1:0".parse().unwrap()).unwrap();
        let port = format!("port = \"{}\"", s.port.display());
        assert!(text.contains(&port), "{text}");
        text = text.replace(&port, &format!("port = \"tcp://{}\"", bus.tcp().unwrap()));
        served.push(bus);
    }
    std::fs::write(&loaded.path, text).unwrap();
    (Loaded::load(&loaded.path).unwrap(), served)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sirens_behind_a_serial_device_server_are_polled_over_tcp_and_unreachable_when_it_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let (loaded, sim) = setup(dir.path(), 4);
    let (loaded, mut served) = on_device_servers(&loaded, &sim);
    let daemon = Daemon::start(&loaded).await.unwrap();
    let ids: Vec<String> = loaded.fleet.sirens.iter().map(|s| s.id.clone()).collect();
    wait_for("every siren ok over TCP", || ids.iter().all(|id| state(&daemon, id) == State::Ok)).await;
    sim.inject(&ids[0], &Fault::MainsLoss).unwrap();
    wait_for("degraded on mains loss", || state(&daemon, &ids[0]) == State::Degraded).await;
    let polled = sirend::store::EventQuery { kind: Some("link_up".into()), limit: 100, ..Default::default() };
    daemon.store.flush().unwrap();
    assert!(daemon.store.events(&polled).unwrap().iter().any(|e| e.event.detail.starts_with("serial:")));
    // The device servers go away: every siren behind them is unreachable, none down.
    served.clear();
    wait_for("unreachable when the device server is gone", || {
        ids.iter().all(|id| state(&daemon, id) == State::Unreachable)
    })
    .await;
    daemon.stop().await;
}

//! `sirend run` stopped by SIGTERM (a service manager's stop) or SIGINT (Ctrl-C) saves its
//! counters and campaigns, says so, and exits cleanly.
#![allow(clippy::unwrap_used, reason = "test helpers may panic on impossible states")]

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use siren_sim::clock::SimClock;
use siren_sim::fleet::{BuildOptions, SimFleet};
use siren_sim::generate::{self, Options};
use siren_sim::mqtt::MqttConfig;
use sirend::store::Store;

fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

fn get(addr: SocketAddr, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes()).ok()?;
    let mut response = String::new();
    s.read_to_string(&mut response).ok()?;
    response.split("\r\n\r\n").nth(1).map(ToOwned::to_owned)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_daemon_saves_its_counters_says_so_and_exits_cleanly() {
    for signal in ["-TERM", "-INT"] {
        let dir = tempfile::tempdir().unwrap();
        let g = generate::generate(&Options { sirens: 3, seed: 21, serial_share: 0.0, ..Options::default() }).unwrap();
        let written = generate::write(&g, dir.path()).unwrap();
        let (http, broker) = (free_port(), free_port());
        let config = std::fs::read_to_string(&written.config)
            .unwrap()
            .replace("listen = \"127.0.0.1:9750\"", &format!("listen = \"{http}\""))
            .replace("listen = \"127.0.0.1:1884\"", &format!("listen = \"{broker}\""));
        std::fs::write(&written.config, format!("{config}\n[liveness]\nheartbeat_s = 1\n")).unwrap();
        let log = std::fs::File::create(dir.path().join("sirend.log")).unwrap();
        let mut daemon = Command::new(env!("CARGO_BIN_EXE_sirend"))
            .args(["run", "--config"])
            .arg(&written.config)
            // Logs go to standard error, without colour codes when it is not a terminal.
            .stderr(log)
            .spawn()
            .unwrap();
        let sim = SimFleet::build(g.fleet.clone(), &g.keys, SimClock::real_time(), &BuildOptions::default()).unwrap();
        let mut mqtt = MqttConfig::from_url(&format!("mqtt://{broker}")).unwrap();
        mqtt.heartbeat = Duration::from_secs(1);
        let devices = sim.serve_mqtt(&mqtt);
        let guard = Instant::now() + Duration::from_secs(60);
        while get(http, "/api/sirens").is_none_or(|b| b.matches("\"state\":\"ok\"").count() < 3) {
            assert!(Instant::now() < guard, "the sirens never became ok");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // A reload request is answered with a log line; the daemon keeps running.
        for ignored in ["-HUP", "-USR1"] {
            assert!(Command::new("kill").arg(ignored).arg(daemon.id().to_string()).status().unwrap().success());
        }
        let log_says = |what: &str| std::fs::read_to_string(dir.path().join("sirend.log")).unwrap().contains(what);
        while !(log_says("SIGHUP") && log_says("SIGUSR1")) {
            assert!(Instant::now() < guard, "nothing logged of SIGHUP and SIGUSR1");
            assert!(daemon.try_wait().unwrap().is_none(), "{signal}: a reload signal stopped the daemon");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(get(http, "/healthz").is_some(), "still serving after SIGHUP and SIGUSR1");
        // Frames keep arriving up to the signal: their counters are saved only at the stop.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let status = Command::new("kill").arg(signal).arg(daemon.id().to_string()).status().unwrap();
        assert!(status.success());
        let exit = tokio::task::spawn_blocking(move || daemon.wait().unwrap()).await.unwrap();
        devices.shutdown().await;
        let text = std::fs::read_to_string(dir.path().join("sirend.log")).unwrap();
        assert!(exit.success(), "{signal}: {exit:?}\n{text}");
        assert!(text.contains("counters and campaigns saved"), "{signal}: nothing said of the final save:\n{text}");
        assert!(!text.contains('\u{1b}'), "{signal}: colour codes in a log file:\n{text}");
        let store = Store::open(&dir.path().join("sirend.db")).unwrap();
        for s in &g.fleet.sirens {
            let row = store.counters(s.key_id.0).unwrap().unwrap();
            assert!(row.rx_highest > 0, "{signal}: {}'s receive counter was not saved", s.id);
        }
    }
}

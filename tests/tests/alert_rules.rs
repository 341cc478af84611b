//! The Prometheus alert rules under dashboards/: promtool accepts them, their unit tests pass,
//! and every metric they use is one the daemon really exports.
#![allow(clippy::unwrap_used, reason = "test helpers may panic on impossible states")]

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use siren_sim::clock::SimClock;
use siren_sim::fleet::{BuildOptions, SimFleet};
use siren_sim::generate::{self, Options};
use siren_sim::mqtt::MqttConfig;
use sirend::config::Loaded;
use sirend::daemon::Daemon;
use sirend::liveness::State;
use sirennet_e2e::broker::free_port;
use sirennet_e2e::wait::wait_for;

fn rules_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../dashboards/prometheus/rules")
}

/// Runs promtool, or returns `None` where it is not installed (CI installs and requires it).
fn promtool(args: &[&str]) -> Option<std::process::Output> {
    let out = Command::new("promtool").args(args).current_dir(rules_dir()).output();
    if out.is_err() {
        assert!(std::env::var_os("SIRENNET_REQUIRE_PROMTOOL").is_none(), "promtool is required but not installed");
        eprintln!("promtool is not installed here: skipped");
    }
    out.ok()
}

#[test]
fn promtool_checks_the_rules_and_their_unit_tests_pass() {
    for args in [&["check", "rules", "sirennet.rules.yml"][..], &["test", "rules", "sirennet.rules.test.yml"][..]] {
        let Some(out) = promtool(args) else { return };
        assert!(
            out.status.success(),
            "promtool {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The `siren_*` names an expression text mentions.
fn metric_names(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("siren_"))
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_rules_use_is_exported_by_a_running_daemon() {
    let rules = std::fs::read_to_string(rules_dir().join("sirennet.rules.yml")).unwrap();
    let exprs: String = rules.lines().filter(|l| l.trim_start().starts_with("expr:")).collect::<Vec<_>>().join("\n");
    let wanted = metric_names(&exprs);
    assert!(wanted.len() >= 8, "{wanted:?}");

    let dir = tempfile::tempdir().unwrap();
    let g = generate::generate(&Options { sirens: 3, seed: 5, serial_share: 0.0, ..Options::default() }).unwrap();
    let written = generate::write(&g, dir.path()).unwrap();
    let port = free_port().unwrap();
    let text = std::fs::read_to_string(&written.config)
        .unwrap()
        .replace("listen = \"127.0.0.1:9750\"", "listen = \"127.0.0.1:0\"")
        .replace("listen = \"127.0.0.1:1884\"", &format!("listen = \"{port}\""));
    std::fs::write(&written.config, text).unwrap();
    let loaded = Loaded::load(&written.config).unwrap();
    let daemon = Daemon::start(&loaded).await.unwrap();
    let sim = SimFleet::build(g.fleet, &g.keys, SimClock::real_time(), &BuildOptions::default()).unwrap();
    let mut config = MqttConfig::from_url(&format!("mqtt://{port}")).unwrap();
    config.check_every = Duration::from_millis(100);
    let mqtt = sim.serve_mqtt(&config);
    let ids: Vec<String> = loaded.fleet.sirens.iter().map(|s| s.id.clone()).collect();
    wait_for("every siren ok", || {
        let fleet = daemon.fleet.read().unwrap();
        ids.iter().all(|id| fleet.get(id).unwrap().liveness.state == State::Ok)
    })
    .await;

    let exposition = daemon.metrics.encode_classic();
    let exported: BTreeSet<String> = exposition
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect();
    let missing: Vec<&String> = wanted.iter().filter(|m| !exported.contains(*m)).collect();
    assert!(missing.is_empty(), "the rules use metrics the daemon does not export: {missing:?}");
    mqtt.shutdown().await;
    daemon.stop().await;
}

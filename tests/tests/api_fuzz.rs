//! The API against its own OpenAPI document: Schemathesis (from PyPI) drives a running daemon
//! with a simulated fleet, generating requests from `/api/openapi.json` (valid and invalid,
//! with an administrator's token and without), and checks that none is answered with a 5xx
//! and that every answer matches the document (status, content type, body schema), that a
//! request the document says is invalid is refused, and that writes without a token are.
//!
//! Left out is the check that every request the document allows is accepted: the API refuses
//! with 422 values no schema can express (an expiry in the past, a sounding sooner than the
//! arming lead, a siren or zone that does not exist).
//!
//! CI installs Schemathesis and sets `SIRENNET_REQUIRE_SCHEMATHESIS`; elsewhere the test is
//! skipped when it is not installed.
#![allow(clippy::unwrap_used, reason = "test helpers may panic on impossible states")]

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use siren_sim::clock::SimClock;
use siren_sim::fleet::{BuildOptions, SimFleet};
use siren_sim::generate::{self, Options};
use siren_sim::mqtt::MqttConfig;
use sirend::auth::{Role, new_token};
use sirend::config::Loaded;
use sirend::daemon::Daemon;
use sirennet_e2e::broker::free_port;
use sirennet_e2e::tools;
use sirennet_e2e::wait::wait_for;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_keeps_to_its_openapi_document_under_generated_requests() {
    let Some(schemathesis) = tools::find_required_by(&["schemathesis", "st"], "SIRENNET_REQUIRE_SCHEMATHESIS") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let g = generate::generate(&Options { sirens: 8, seed: 5, serial_share: 0.0, ..Options::default() }).unwrap();
    let written = generate::write(&g, dir.path()).unwrap();
    let port = free_port().unwrap();
    let (admin, entry) = new_token("fuzz-admin", Role::Admin);
    let mut text = std::fs::read_to_string(&written.config)
        .unwrap()
        .replace("listen = \"127.0.0.1:9750\"", "listen = \"127.0.0.1:0\"")
        .replace("listen = \"127.0.0.1:1884\"", &format!("listen = \"{port}\""));
    // A campaign to report on: a chime a minute from now.
    let start = (jiff::Timestamp::now() + jiff::SignedDuration::from_secs(60))
        .to_zoned(jiff::tz::TimeZone::UTC)
        .datetime()
        .strftime("%Y-%m-%dT%H:%M:%S")
        .to_string();
    write!(
        text,
        "\n{entry}\n[soundings]\ntimezone = \"UTC\"\n\n[[schedule]]\nname = \"hourly\"\nkind = \"chime\"\n\
         start = \"{start}\"\nrrule = \"FREQ=HOURLY\"\nsequence = [{{ pattern = \"chime\" }}]\n"
    )
    .unwrap();
    std::fs::write(&written.config, text).unwrap();
    let loaded = Loaded::load(&written.config).unwrap();
    let sim = Arc::new(SimFleet::build(g.fleet, &g.keys, SimClock::real_time(), &BuildOptions::default()).unwrap());
    let daemon = Daemon::start(&loaded).await.unwrap();
    let mut config = MqttConfig::from_url(&format!("mqtt://{port}")).unwrap();
    config.heartbeat = Duration::from_secs(2);
    let devices = sim.serve_mqtt(&config);
    let ids: Vec<String> = loaded.fleet.sirens.iter().map(|s| s.id.clone()).collect();
    wait_for("every siren heard", || {
        ids.iter()
            .all(|id| daemon.fleet.read().unwrap().get(id).unwrap().liveness.state != sirend::liveness::State::Unknown)
    })
    .await;

    let url = format!("http://{}/api/openapi.json", daemon.http);
    // Its cache of findings goes to the scratch directory, not the repository.
    let scratch = dir.path().to_owned();
    let run = tokio::task::spawn_blocking(move || {
        std::process::Command::new(schemathesis)
            .current_dir(scratch)
            .args(["run", &url, "--checks", "all", "--exclude-checks", "positive_data_acceptance"])
            .args(["--max-examples", "25", "--seed", "20261206", "--no-color"])
            // An endless event stream (tests/tests/daemon_mqtt.rs follows it).
            .args(["--exclude-path", "/api/stream"])
            .args(["--header", &format!("Authorization: Bearer {admin}")])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let report = format!("{}{}", String::from_utf8_lossy(&run.stdout), String::from_utf8_lossy(&run.stderr));
    assert!(run.status.success(), "schemathesis found the API at odds with its document:\n{report}");
    assert!(report.contains("Tested: 34"), "every operation tested:\n{report}");
    eprintln!("{report}");
    // The daemon is still up and well after all of it.
    assert_eq!(sirennet_e2e::http::request(daemon.http, "GET", "/readyz", None, "").status, 200);
    devices.shutdown().await;
    daemon.stop().await;
}

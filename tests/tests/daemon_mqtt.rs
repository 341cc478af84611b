//! sirend with simulated MQTT sirens on a real broker: a death is `down` at once, a broker
//! restart causes no `down`, replayed and forged frames are rejected and counted, and a
//! restart of the daemon loses no event.
#![allow(clippy::unwrap_used, reason = "test helpers may panic on impossible states")]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use siren_sim::clock::SimClock;
use siren_sim::fault::Fault;
use siren_sim::fleet::{BuildOptions, SimFleet};
use siren_sim::generate::{self, Options};
use siren_sim::mqtt::{MqttConfig, MqttDevices};
use sirend::config::Loaded;
use sirend::daemon::Daemon;
use sirend::liveness::State;
use sirennet_e2e::broker::{TestBroker, free_port};
use sirennet_e2e::wait::wait_for;

/// An MQTT-only fleet. `broker`: an external broker's URL, or `None` for the daemon's own.
fn setup(dir: &Path, sirens: usize, broker: Option<&str>, heartbeat_s: u32) -> (Loaded, Arc<SimFleet>, String) {
    let g = generate::generate(&Options { sirens, seed: 3, serial_share: 0.0, ..Options::default() }).unwrap();
    let written = generate::write(&g, dir).unwrap();
    let mut text = std::fs::read_to_string(&written.config).unwrap();
    text = text.replace("listen = \"127.0.0.1:9750\"", "listen = \"127.0.0.1:0\"");
    let url = if let Some(url) = broker {
        text = text.replace("embedded = true", &format!("embedded = false\nurl = \"{url}\""));
        url.to_owned()
    } else {
        let port = free_port().unwrap();
        text = text.replace("listen = \"127.0.0.1:1884\"", &format!("listen = \"{port}\""));
        format!("mqtt://{port}")
    };
    {
        use std::fmt::Write as _;
        write!(text, "\n[liveness]\ndown_after_misses = 3\nheartbeat_s = {heartbeat_s}\n").unwrap();
    }
    std::fs::write(&written.config, text).unwrap();
    let loaded = Loaded::load(&written.config).unwrap();
    let sim = SimFleet::build(g.fleet, &g.keys, SimClock::real_time(), &BuildOptions::default()).unwrap();
    (loaded, Arc::new(sim), url)
}

fn devices(sim: &SimFleet, url: &str, heartbeat_s: u64) -> MqttDevices {
    let mut config = MqttConfig::from_url(url).unwrap();
    config.heartbeat = Duration::from_secs(heartbeat_s);
    config.keep_alive = Duration::from_secs(5);
    config.check_every = Duration::from_millis(100);
    sim.serve_mqtt(&config)
}

fn state(daemon: &Daemon, id: &str) -> State {
    daemon.fleet.read().unwrap().get(id).unwrap().liveness.state
}

fn ids(loaded: &Loaded) -> Vec<String> {
    loaded.fleet.sirens.iter().map(|s| s.id.clone()).collect()
}

/// Reads one sample of the daemon's metrics.
fn metric(daemon: &Daemon, series: &str) -> f64 {
    let text = daemon.metrics.encode();
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
        .unwrap_or_else(|| panic!("no {series} in the metrics"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_death_is_down_at_once_and_replays_and_forgeries_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    // Heartbeats every 30 s with 3 misses: only a death can make a siren down within the
    // test's guard.
    let (loaded, sim, url) = setup(dir.path(), 5, None, 30);
    let daemon = Daemon::start(&loaded).await.unwrap();
    let mqtt = devices(&sim, &url, 30);
    let ids = ids(&loaded);
    wait_for("every siren ok", || ids.iter().all(|id| state(&daemon, id) == State::Ok)).await;

    let cut = Instant::now();
    sim.inject(&ids[0], &Fault::LinkLoss).unwrap();
    wait_for("down on death", || state(&daemon, &ids[0]) == State::Down).await;
    assert!(cut.elapsed() < Duration::from_secs(30), "down by its death, not by missed heartbeats");

    let replayed = metric(&daemon, "siren_frames_rejected_total{reason=\"replayed\"}");
    sim.inject(&ids[1], &Fault::ReplayAttack).unwrap();
    wait_for("replays counted", || metric(&daemon, "siren_frames_rejected_total{reason=\"replayed\"}") > replayed)
        .await;
    assert_eq!(state(&daemon, &ids[1]), State::Ok, "replays change nothing");

    let bad_mac = metric(&daemon, "siren_frames_rejected_total{reason=\"bad_mac\"}");
    sim.inject(&ids[2], &Fault::WrongKey).unwrap();
    wait_for("forgeries counted", || metric(&daemon, "siren_frames_rejected_total{reason=\"bad_mac\"}") > bad_mac)
        .await;
    mqtt.shutdown().await;
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restart_makes_sirens_unreachable_never_down() {
    let Some(mut broker) = TestBroker::mosquitto().unwrap() else {
        eprintln!("mosquitto is not installed here: skipped (CI installs it and requires it)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (loaded, sim, url) = setup(dir.path(), 4, Some(&broker.url()), 1);
    let daemon = Daemon::start(&loaded).await.unwrap();
    let mqtt = devices(&sim, &url, 1);
    let ids = ids(&loaded);
    wait_for("every siren ok", || ids.iter().all(|id| state(&daemon, id) == State::Ok)).await;

    broker.kill();
    wait_for("unreachable while the broker is gone", || ids.iter().all(|id| state(&daemon, id) == State::Unreachable))
        .await;
    // Far longer than three heartbeat periods without a broker: still no verdict.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(ids.iter().all(|id| state(&daemon, id) == State::Unreachable));
    broker.restart().unwrap();
    wait_for("ok again after the broker returns", || ids.iter().all(|id| state(&daemon, id) == State::Ok)).await;
    daemon.store.flush().unwrap();
    let downs = daemon
        .store
        .events(&sirend::store::EventQuery { limit: 10_000, ..Default::default() })
        .unwrap()
        .into_iter()
        .filter(|e| e.event.kind == "state" && e.event.detail.contains("-> down"))
        .count();
    assert_eq!(downs, 0, "the broker's restart put no siren down");
    mqtt.shutdown().await;
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_stopped_cleanly_publishes_every_will_and_no_siren_goes_down() {
    let Some(mut broker) = TestBroker::mosquitto().unwrap() else {
        eprintln!("mosquitto is not installed here: skipped (CI installs it and requires it)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (loaded, sim, url) = setup(dir.path(), 12, Some(&broker.url()), 30);
    let daemon = Daemon::start(&loaded).await.unwrap();
    let mqtt = devices(&sim, &url, 30);
    let ids = ids(&loaded);
    wait_for("every siren ok", || ids.iter().all(|id| state(&daemon, id) == State::Ok)).await;

    broker.stop();
    wait_for("unreachable while the broker is gone", || ids.iter().all(|id| state(&daemon, id) == State::Unreachable))
        .await;
    broker.restart().unwrap();
    wait_for("ok again after the broker returns", || ids.iter().all(|id| state(&daemon, id) == State::Ok)).await;
    daemon.store.flush().unwrap();
    let events = daemon.store.events(&sirend::store::EventQuery { limit: 10_000, ..Default::default() }).unwrap();
    let downs: Vec<_> =
        events.iter().filter(|e| e.event.kind == "state" && e.event.detail.contains("-> down")).collect();
    assert!(downs.is_empty(), "the broker's clean stop put sirens down: {downs:?}");
    mqtt.shutdown().await;
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_broker_makes_sirens_unreachable_before_their_silence_makes_them_down() {
    let Some(broker) = TestBroker::mosquitto().unwrap() else {
        eprintln!("mosquitto is not installed here: skipped (CI installs it and requires it)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (loaded, sim, url) = setup(dir.path(), 4, Some(&broker.url()), 1);
    // Heartbeats every second, down after six missed: 6.5 s of silence. A keep-alive of 2 s
    // must find the hung broker first (it used to take up to 30 s).
    let config =
        std::fs::read_to_string(&loaded.path).unwrap().replace("down_after_misses = 3", "down_after_misses = 6");
    let config = config.replace("[mqtt]\n", "[mqtt]\nkeep_alive_s = 2\n");
    std::fs::write(&loaded.path, config).unwrap();
    let loaded = Loaded::load(&loaded.path).unwrap();
    assert_eq!(loaded.config.mqtt.keep_alive_s, 2);
    let daemon = Daemon::start(&loaded).await.unwrap();
    let mqtt = devices(&sim, &url, 1);
    let ids = ids(&loaded);
    wait_for("every siren ok", || ids.iter().all(|id| state(&daemon, id) == State::Ok)).await;

    broker.pause();
    wait_for("unreachable while the broker hangs", || ids.iter().any(|id| state(&daemon, id) != State::Ok)).await;
    wait_for("every siren unreachable", || ids.iter().all(|id| state(&daemon, id) == State::Unreachable)).await;
    broker.resume();
    wait_for("ok again", || ids.iter().all(|id| state(&daemon, id) == State::Ok)).await;
    daemon.store.flush().unwrap();
    let events = daemon.store.events(&sirend::store::EventQuery { limit: 10_000, ..Default::default() }).unwrap();
    let downs: Vec<_> =
        events.iter().filter(|e| e.event.kind == "state" && e.event.detail.contains("-> down")).collect();
    assert!(downs.is_empty(), "sirens went down before the hung broker was noticed: {downs:?}");
    mqtt.shutdown().await;
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_of_the_daemon_loses_no_event_and_accepts_no_replay() {
    let dir = tempfile::tempdir().unwrap();
    let (loaded, sim, url) = setup(dir.path(), 3, None, 1);
    let daemon = Daemon::start(&loaded).await.unwrap();
    let mqtt = devices(&sim, &url, 1);
    let ids = ids(&loaded);
    wait_for("every siren ok", || ids.iter().all(|id| state(&daemon, id) == State::Ok)).await;
    sim.inject(&ids[0], &Fault::DoorOpen).unwrap();
    wait_for("degraded", || state(&daemon, &ids[0]) == State::Degraded).await;
    mqtt.shutdown().await;
    daemon.stop().await;
    let first: Vec<_> = {
        let store = sirend::store::Store::open(&dir.path().join("sirend.db")).unwrap();
        store.events(&sirend::store::EventQuery { limit: 10_000, ..Default::default() }).unwrap()
    };
    assert!(first.iter().any(|e| e.event.detail == "door_open"), "{first:?}");

    // The embedded broker of the first run still holds the port: the second run uses a new one.
    let port = free_port().unwrap();
    let config = std::fs::read_to_string(&loaded.path).unwrap();
    let old =
        config.lines().find(|l| l.starts_with("listen = \"127.0.0.1:") && !l.ends_with(":0\"")).unwrap().to_owned();
    std::fs::write(&loaded.path, config.replace(&old, &format!("listen = \"{port}\""))).unwrap();
    let loaded = Loaded::load(&loaded.path).unwrap();
    let daemon = Daemon::start(&loaded).await.unwrap();
    {
        let fleet = daemon.fleet.read().unwrap();
        let s = fleet.get(&ids[0]).unwrap();
        assert_eq!(s.liveness.state, State::Unknown, "not heard since this start");
        assert_eq!(s.last_known.as_ref().unwrap().state, State::Degraded, "the last known state is kept");
    }
    let mqtt = devices(&sim, &format!("mqtt://{port}"), 1);
    wait_for("heard again", || state(&daemon, &ids[0]) == State::Degraded).await;
    // Every frame after the restart was accepted: counters were restored, not reset.
    assert!(metric(&daemon, "siren_frames_rejected_total{reason=\"replayed\"}") < 0.5, "no frame refused as a replay");
    daemon.store.flush().unwrap();
    let after = daemon.store.events(&sirend::store::EventQuery { limit: 10_000, ..Default::default() }).unwrap();
    for e in &first {
        assert!(after.contains(e), "event {} lost across the restart", e.id);
    }
    mqtt.shutdown().await;
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sirens_behind_a_broker_that_never_answers_are_unreachable() {
    let dir = tempfile::tempdir().unwrap();
    // A port nobody listens on.
    let nobody = free_port().unwrap();
    let (loaded, _sim, _) = setup(dir.path(), 3, Some(&format!("mqtt://{nobody}")), 1);
    let daemon = Daemon::start(&loaded).await.unwrap();
    let ids = ids(&loaded);
    wait_for("unreachable without a broker", || ids.iter().all(|id| state(&daemon, id) == State::Unreachable)).await;
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_siren_that_cannot_sound_lowers_coverage_until_repaired() {
    let dir = tempfile::tempdir().unwrap();
    let (mut loaded, sim, url) = setup(dir.path(), 6, None, 30);
    // A hundred people at every siren: each siren covers its own.
    let csv: String = std::iter::once("latitude,longitude,population\n".to_owned())
        .chain(loaded.fleet.sirens.iter().map(|s| format!("{},{},100\n", s.latitude, s.longitude)))
        .collect();
    std::fs::write(dir.path().join("people.csv"), csv).unwrap();
    loaded.config.coverage.population = Some("people.csv".into());
    let daemon = Daemon::start(&loaded).await.unwrap();
    let ids = ids(&loaded);
    let area = "siren_coverage_ratio{zone=\"hangzhou\",basis=\"area\"}";
    let people = "siren_coverage_ratio{zone=\"hangzhou\",basis=\"population\"}";
    assert!(metric(&daemon, area).abs() < f64::EPSILON, "nothing is covered before any siren is heard");
    let mqtt = devices(&sim, &url, 30);
    wait_for("every siren ok", || ids.iter().all(|id| state(&daemon, id) == State::Ok)).await;
    let (all_area, all_people) = (metric(&daemon, area), metric(&daemon, people));
    assert!((all_people - 1.0).abs() < 1e-9, "every siren covers its own people: {all_people}");
    let design = metric(&daemon, "siren_design_coverage_ratio{zone=\"hangzhou\",basis=\"area\"}");
    assert!((all_area - design).abs() < 1e-9, "all able is the design coverage");
    let sole = metric(&daemon, &format!("siren_sole_coverage_population{{siren=\"{}\"}}", ids[0]));
    assert!(sole >= 100.0, "the siren alone covers the people at its foot: {sole}");

    sim.inject(&ids[0], &Fault::AmplifierFailure { channel: None }).unwrap();
    wait_for("faulty", || state(&daemon, &ids[0]) == State::Faulty).await;
    wait_for("coverage lowered", || metric(&daemon, area) < all_area).await;
    let expected = 1.0 - sole / 600.0;
    assert!((metric(&daemon, people) - expected).abs() < 1e-9, "the people only it covered are uncovered");
    assert!((metric(&daemon, "siren_uncovered_population{zone=\"hangzhou\"}") - sole).abs() < 1e-9);

    sim.inject(&ids[0], &Fault::AmplifierRepaired).unwrap();
    wait_for("ok again", || state(&daemon, &ids[0]) == State::Ok).await;
    wait_for("coverage restored", || (metric(&daemon, area) - all_area).abs() < 1e-12).await;
    assert!((metric(&daemon, people) - 1.0).abs() < 1e-9);
    mqtt.shutdown().await;
    daemon.stop().await;
}

/// Publishes `payloads` (topic, size in bytes) as a client of its own; returns once each was
/// handed to the broker or the broker dropped the client (the embedded broker refuses large
/// payloads).
async fn publish_junk(url: &str, payloads: &[(String, usize)]) {
    let (host, port) = sirend::link::mqtt::parse_url(url).unwrap();
    let mut options = rumqttc::MqttOptions::new("junk-publisher", host, port);
    options.set_max_packet_size(4 << 20, 4 << 20);
    let (client, mut events) = rumqttc::AsyncClient::new(options, 64);
    for (topic, size) in payloads {
        client.publish(topic.clone(), rumqttc::QoS::AtLeastOnce, false, vec![0xA5; *size]).await.unwrap();
    }
    let mut acked = 0;
    while acked < payloads.len() {
        match tokio::time::timeout(Duration::from_secs(10), events.poll()).await {
            Ok(Ok(rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_)))) => acked += 1,
            Ok(Ok(_)) => {}
            Ok(Err(_)) | Err(_) => break,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_messages_are_dropped_and_counted_and_the_link_stays_up() {
    // Mosquitto with its default limits, and configured as docs/operations.md says.
    let mosquitto = TestBroker::mosquitto().unwrap();
    let limited = TestBroker::mosquitto_with("max_packet_size 4096\n").unwrap();
    if mosquitto.is_none() {
        eprintln!("mosquitto is not installed here: only the embedded broker is tried");
    }
    // (the broker, `None` for the embedded one; whether it delivers oversized messages)
    let mut cases = vec![(None, false)];
    cases.extend(mosquitto.as_ref().map(|b| (Some(b), true)));
    cases.extend(limited.as_ref().map(|b| (Some(b), false)));
    for (broker, delivers) in cases {
        let dir = tempfile::tempdir().unwrap();
        let external = broker.map(TestBroker::url);
        let (loaded, sim, url) = setup(dir.path(), 3, external.as_deref(), 30);
        let daemon = Daemon::start(&loaded).await.unwrap();
        let mqtt = devices(&sim, &url, 30);
        let ids = ids(&loaded);
        wait_for("every siren ok", || ids.iter().all(|id| state(&daemon, id) == State::Ok)).await;

        // The sizes that cut the daemon off before: 64 KiB and more, on a siren's topic and
        // elsewhere under the root.
        let s = &loaded.fleet.sirens[0];
        let root = &loaded.config.mqtt.topic_root;
        let siren_topic = format!("{root}/{}/{}/status", s.zone, s.id);
        let junk: Vec<(String, usize)> = [64 * 1024, 100 * 1024, 512 * 1024]
            .into_iter()
            .flat_map(|n| [(siren_topic.clone(), n), (format!("{root}/junk/{n}"), n)])
            .collect();
        let oversize = "siren_frames_rejected_total{reason=\"oversize\"}";
        let before = metric(&daemon, oversize);
        publish_junk(&url, &junk).await;
        if delivers {
            // Mosquitto with its default limits delivers them: each is dropped and counted.
            wait_for("every oversized message counted", || metric(&daemon, oversize) - before >= 6.0).await;
        }
        // The link carries on: a fault after the flood arrives.
        sim.inject(&ids[1], &Fault::DoorOpen).unwrap();
        wait_for("degraded after the flood", || state(&daemon, &ids[1]) == State::Degraded).await;
        assert!((metric(&daemon, "siren_link_up{link=\"mqtt\"}") - 1.0).abs() < f64::EPSILON);
        daemon.store.flush().unwrap();
        let events = daemon.store.events(&sirend::store::EventQuery { limit: 10_000, ..Default::default() }).unwrap();
        let kind = broker.map_or("embedded", TestBroker::kind);
        eprintln!(
            "{kind} (delivers oversized messages: {delivers}): link up, {} dropped",
            metric(&daemon, oversize) - before
        );
        assert!(!events.iter().any(|e| e.event.kind == "link_down"), "{kind}: the MQTT link went down");
        assert!(!events.iter().any(|e| e.event.detail.contains("-> unreachable")), "{kind}: sirens went unreachable");
        mqtt.shutdown().await;
        daemon.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_siren_whose_counter_is_ahead_is_a_command_path_fault_until_resynchronised() {
    use sirend::auth::{Role, new_token};
    let dir = tempfile::tempdir().unwrap();
    let (loaded, sim, url) = setup(dir.path(), 2, None, 30);
    let (operator, op_entry) = new_token("ops", Role::Operator);
    let (admin, admin_entry) = new_token("root", Role::Admin);
    let config = std::fs::read_to_string(&loaded.path).unwrap();
    std::fs::write(&loaded.path, format!("{config}\n{op_entry}\n{admin_entry}\n")).unwrap();
    let loaded = Loaded::load(&loaded.path).unwrap();
    let daemon = Daemon::start(&loaded).await.unwrap();
    let mqtt = devices(&sim, &url, 30);
    let ids = ids(&loaded);
    wait_for("every siren ok", || ids.iter().all(|id| state(&daemon, id) == State::Ok)).await;
    let fault = |id: &str| daemon.fleet.read().unwrap().get(id).unwrap().command_fault.is_some();

    // A restored backup: the device has seen counters far beyond ours and drops every
    // command as a replay, while its heartbeats still arrive.
    sim.inject(&ids[0], &Fault::CounterAhead { by: 1_000_000 }).unwrap();
    let at = (jiff::Timestamp::now() + jiff::SignedDuration::from_secs(90)).to_string();
    let body = format!(r#"{{"at":"{at}","kind":"test","sequence":[{{"pattern":"air-raid"}}]}}"#);
    let http = daemon.http;
    let created = tokio::task::spawn_blocking(move || {
        sirennet_e2e::http::request(http, "POST", "/api/soundings", Some(&operator), &body)
    })
    .await
    .unwrap();
    assert_eq!(created.status, 201, "{}", created.body);
    wait_for("a command-path fault", || fault(&ids[0])).await;
    assert_eq!(state(&daemon, &ids[0]), State::Ok, "still heard: liveness is not what failed");
    assert!(!fault(&ids[1]), "the other siren answers");
    let series = format!("siren_command_path_failing{{siren=\"{}\"", ids[0]);
    assert!(daemon.metrics.encode().contains(&series));

    let path = format!("/api/sirens/{}/resync", ids[0]);
    let resynced = tokio::task::spawn_blocking(move || {
        let refused = sirennet_e2e::http::request(http, "POST", &path, None, "").status;
        (refused, sirennet_e2e::http::request(http, "POST", &path, Some(&admin), ""))
    })
    .await
    .unwrap();
    assert_eq!(resynced.0, 401, "resync needs an administrator");
    assert_eq!(resynced.1.status, 200, "{}", resynced.1.body);
    wait_for("commands answered again", || !fault(&ids[0])).await;
    // The sounding it could not be armed for is armed now.
    let campaign = format!("/api/soundings/{}", created.json()["id"]);
    let mut armed = false;
    for _ in 0..300 {
        let path = campaign.clone();
        let report = tokio::task::spawn_blocking(move || sirennet_e2e::http::request(http, "GET", &path, None, ""))
            .await
            .unwrap()
            .json();
        armed = report["sirens"].as_array().is_some_and(|s| s.iter().all(|t| t["armed"] == true));
        if armed {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(armed, "both sirens armed after the resync");
    daemon.store.flush().unwrap();
    let events = daemon.store.events(&sirend::store::EventQuery { limit: 10_000, ..Default::default() }).unwrap();
    for kind in ["command_path_failing", "counters_resynced", "command_path_ok"] {
        assert!(events.iter().any(|e| e.event.kind == kind && e.event.siren.as_ref() == Some(&ids[0])), "{kind}");
    }
    mqtt.shutdown().await;
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_birth_is_followed_by_a_status_request_and_the_announced_heartbeat_period_counts() {
    let dir = tempfile::tempdir().unwrap();
    // The daemon's own period is 30 s; the devices announce 2 s in their births.
    let (loaded, sim, url) = setup(dir.path(), 3, None, 30);
    let daemon = Daemon::start(&loaded).await.unwrap();
    let mut config = MqttConfig::from_url(&url).unwrap();
    config.heartbeat = Duration::from_secs(2);
    // The broker would notice a hung device only after 90 s: silence must do it first.
    config.keep_alive = Duration::from_secs(60);
    config.check_every = Duration::from_millis(100);
    let mqtt = sim.serve_mqtt(&config);
    let ids = ids(&loaded);
    wait_for("every siren ok", || ids.iter().all(|id| state(&daemon, id) == State::Ok)).await;

    // Every siren is asked for its status after its birth. (Its heartbeat may make it `ok`
    // first: the request waits while the siren's clock is measured, one request at a time.)
    let asked = |id: &str| {
        let controller = sim.controller(id).unwrap();
        siren_sim::fleet::lock(controller).received().iter().any(|r| r.message == siren_proto::Message::StatusRequest)
    };
    wait_for("every siren asked for its status", || ids.iter().all(|id| asked(id))).await;
    // Its births' period is recorded, for the next start of the daemon.
    daemon.store.flush().unwrap();
    let births = daemon.store.births().unwrap();
    assert_eq!(births.len(), 3, "{births:?}");
    assert!(births.iter().all(|b| b.heartbeat_s == 2), "{births:?}");

    // Silent: down after three of its 2 s periods, long before three of the daemon's 30 s.
    sim.inject(&ids[0], &Fault::SilentDeath).unwrap();
    sirennet_e2e::wait::wait_within("down by the announced period", Duration::from_secs(45), || {
        state(&daemon, &ids[0]) == State::Down
    })
    .await;
    // The event is queued with the change of state; committed by the next flush at the latest.
    daemon.store.flush().unwrap();
    let events = daemon
        .store
        .events(&sirend::store::EventQuery { siren: Some(ids[0].clone()), limit: 50, ..Default::default() })
        .unwrap();
    assert!(
        events.iter().any(|e| e.event.kind == "state" && e.event.detail.contains("-> down (missed)")),
        "down by missed heartbeats, not by a death: {events:?}"
    );
    // Boot: unknown -> degraded (its clock is not yet synchronised) -> ok, never the flap of
    // a birth counted as ok before the status said otherwise (unknown -> ok -> degraded).
    assert!(
        !events.iter().any(|e| e.event.kind == "state" && e.event.detail.starts_with("ok -> degraded")),
        "{events:?}"
    );
    mqtt.shutdown().await;
    daemon.stop().await;
}

/// How long the first time-sync requests after the births take from their `t1` to the devices,
/// on the embedded broker and (when installed) Mosquitto. A measurement for BENCHMARKS.md,
/// not a check: `cargo test -p sirennet-e2e --test daemon_mqtt time_sync_request_delay --
/// --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement; run by hand"]
async fn time_sync_request_delay() {
    let mosquitto = TestBroker::mosquitto().unwrap();
    for broker in [None, mosquitto.as_ref().map(TestBroker::url)] {
        let dir = tempfile::tempdir().unwrap();
        let (loaded, sim, url) = setup(dir.path(), 20, broker.as_deref(), 30);
        let daemon = Daemon::start(&loaded).await.unwrap();
        let mqtt = devices(&sim, &url, 30);
        let synced = || {
            sim.controllers().all(|(_, c)| {
                let c = siren_sim::fleet::lock(c);
                c.received().iter().any(|r| matches!(r.message, siren_proto::Message::ClockAdjust { .. }))
            })
        };
        wait_for("every clock corrected", synced).await;
        let mut delays_ms: Vec<i64> = sim
            .controllers()
            .filter_map(|(_, c)| {
                let c = siren_sim::fleet::lock(c);
                c.received().iter().find_map(|r| match r.message {
                    siren_proto::Message::TimeSyncRequest { t1_us } => Some((r.at - t1_us) / 1000),
                    _ => None,
                })
            })
            .collect();
        delays_ms.sort_unstable();
        println!("broker {}: t1 to device, ms: {delays_ms:?}", broker.as_deref().unwrap_or("embedded"));
        mqtt.shutdown().await;
        daemon.stop().await;
    }
}

/// Connects to `url` as `client_id` with `password`: whether the broker accepted.
async fn accepted(url: &str, client_id: &str, password: Option<&str>) -> bool {
    let addr = url.trim_start_matches("mqtt://");
    let (host, port) = addr.rsplit_once(':').unwrap();
    let mut options = rumqttc::MqttOptions::new(client_id, host, port.parse().unwrap());
    if let Some(p) = password {
        options.set_credentials(client_id, p);
    }
    let (_client, mut event_loop) = rumqttc::AsyncClient::new(options, 16);
    let event = tokio::time::timeout(Duration::from_secs(10), event_loop.poll()).await.expect("no answer at all");
    matches!(event, Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(ack))) if ack.code == rumqttc::ConnectReturnCode::Success)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_the_embedded_broker_a_siren_can_be_only_itself() {
    let dir = tempfile::tempdir().unwrap();
    let (loaded, sim, url) = setup(dir.path(), 3, None, 30);
    let daemon = Daemon::start(&loaded).await.unwrap();
    let mqtt = devices(&sim, &url, 30);
    let ids = ids(&loaded);
    wait_for("every siren ok", || ids.iter().all(|id| state(&daemon, id) == State::Ok)).await;

    // Someone connects as a siren without its key: refused; the siren stays connected.
    for password in [None, Some("guess")] {
        assert!(!accepted(&url, &ids[0], password).await, "a takeover with {password:?} was accepted");
    }
    // A client that is nobody: refused.
    assert!(!accepted(&url, "someone", Some("x")).await);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(state(&daemon, &ids[0]), State::Ok, "the real siren was not knocked off");

    // A siren's own key lets it use only its own topics: with siren 1's credentials, another
    // client publishing on siren 2's topic reaches nobody, and cannot read siren 2's commands.
    let key = loaded.keys.entries.iter().find(|e| e.key_id == loaded.fleet.sirens[1].key_id).unwrap();
    let s2 = &loaded.fleet.sirens[2];
    let addr = url.trim_start_matches("mqtt://");
    let (host, port) = addr.rsplit_once(':').unwrap();
    let mut options = rumqttc::MqttOptions::new(ids[1].clone(), host, port.parse().unwrap());
    options.set_credentials(ids[1].clone(), key.key.mqtt_password());
    // The real siren 1 is paused so that this connection does not knock it off either way.
    sim.inject(&ids[1], &Fault::LinkLoss).unwrap();
    let (client, mut event_loop) = rumqttc::AsyncClient::new(options, 16);
    let rejected_before = daemon.metrics.encode();
    client.subscribe(format!("sirennet/v1/{}/{}/cmd", s2.zone, s2.id), rumqttc::QoS::AtLeastOnce).await.unwrap();
    client
        .publish(format!("sirennet/v1/{}/{}/status", s2.zone, s2.id), rumqttc::QoS::AtLeastOnce, false, vec![1u8; 40])
        .await
        .unwrap();
    let mut suback = None;
    let guard = std::time::Instant::now() + Duration::from_secs(10);
    while suback.is_none() && std::time::Instant::now() < guard {
        if let Ok(Ok(rumqttc::Event::Incoming(rumqttc::Packet::SubAck(ack)))) =
            tokio::time::timeout(Duration::from_secs(1), event_loop.poll()).await
        {
            suback = Some(ack);
        }
    }
    let suback = suback.expect("no SUBACK");
    assert_eq!(suback.return_codes, [rumqttc::SubscribeReasonCode::Failure], "another siren's commands");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rejected = |text: &str| {
        text.lines().filter(|l| l.starts_with("siren_frames_rejected_total")).map(ToOwned::to_owned).collect::<Vec<_>>()
    };
    assert_eq!(
        rejected(&daemon.metrics.encode()),
        rejected(&rejected_before),
        "the forged publication reached the daemon"
    );
    mqtt.shutdown().await;
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mosquitto_configured_with_the_generated_files_admits_each_siren_only_as_itself() {
    let passwd_tool = ["/usr/bin/mosquitto_passwd", "/usr/local/bin/mosquitto_passwd"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists());
    let Some(passwd_tool) = passwd_tool else {
        assert!(std::env::var_os("SIRENNET_REQUIRE_MOSQUITTO").is_none(), "mosquitto_passwd is missing");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // The daemon's configuration first (its user and password file), then the broker's files.
    let (loaded, sim, _) = setup(dir.path(), 3, Some("mqtt://127.0.0.1:1"), 30);
    std::fs::write(dir.path().join("broker.password"), "s3cret-for-sirend\n").unwrap();
    let config = loaded.path.clone();
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "embedded = false\n",
        "embedded = false\nusername = \"sirend\"\npassword_file = \"broker.password\"\n",
    );
    std::fs::write(&config, text).unwrap();
    let loaded = Loaded::load(&config).unwrap();
    let (user, password) = loaded.broker_credentials().unwrap().unwrap();
    let (passwd, acl) = sirend::link::mosquitto::files(&loaded, &user, &password);
    let files = dir.path().join("mosquitto");
    std::fs::create_dir_all(&files).unwrap();
    std::fs::write(files.join("passwd"), passwd).unwrap();
    std::fs::write(files.join("acl"), acl).unwrap();
    let hashed = std::process::Command::new(passwd_tool).arg("-U").arg(files.join("passwd")).status().unwrap();
    assert!(hashed.success());
    let broker = TestBroker::mosquitto_with(&format!(
        "allow_anonymous false\npassword_file {}\nacl_file {}\n",
        files.join("passwd").display(),
        files.join("acl").display()
    ))
    .unwrap()
    .expect("mosquitto is installed: mosquitto_passwd is");
    let text = std::fs::read_to_string(&config).unwrap().replace("mqtt://127.0.0.1:1", &broker.url());
    std::fs::write(&config, text).unwrap();
    let loaded = Loaded::load(&config).unwrap();
    let daemon = Daemon::start(&loaded).await.unwrap();
    let mqtt = devices(&sim, &broker.url(), 30);
    let ids = ids(&loaded);
    wait_for("every siren ok through the authenticating Mosquitto", || {
        ids.iter().all(|id| state(&daemon, id) == State::Ok)
    })
    .await;
    for password in [None, Some("guess")] {
        assert!(!accepted(&broker.url(), &ids[0], password).await, "a takeover with {password:?} was accepted");
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(state(&daemon, &ids[0]), State::Ok, "the real siren was not knocked off");
    mqtt.shutdown().await;
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_siren_active_that_nobody_ordered_is_an_alarm_and_is_stopped_unless_in_maintenance() {
    let dir = tempfile::tempdir().unwrap();
    let (loaded, sim, url) = setup(dir.path(), 4, None, 30);
    let daemon = Daemon::start(&loaded).await.unwrap();
    let mqtt = devices(&sim, &url, 2);
    let ids = ids(&loaded);
    wait_for("every siren ok", || ids.iter().all(|id| state(&daemon, id) == State::Ok)).await;
    let (rogue_sounding, rogue_armed, crew_sounding, unseen) = (&ids[0], &ids[1], &ids[2], &ids[3]);
    // The fourth sounds by itself while its link is lost and is power-cycled before the link
    // returns: nobody saw it active; its status then names a campaign nobody ordered.
    sim.inject(unseen, &Fault::LinkLoss).unwrap();
    sim.inject(unseen, &Fault::SelfTrigger { campaign: 5151 }).unwrap();
    sim.inject(unseen, &Fault::Reboot).unwrap();
    sim.inject(unseen, &Fault::LinkRestore).unwrap();
    let now = jiff::Timestamp::now();
    let scope = sirend::maintenance::Scope::Siren(crew_sounding.clone());
    let until = now + jiff::SignedDuration::from_hours(1);
    daemon.fleet.write().unwrap().maintenance_mut().start(scope, "crew", "testing on site", until, now).unwrap();

    // A controller sounds by itself; someone with a stolen key arms another for later; the
    // crew sounds the third on site.
    sim.inject(rogue_sounding, &Fault::SelfTrigger { campaign: 0 }).unwrap();
    sim.inject(rogue_armed, &Fault::RogueArm { campaign: 4242, in_s: 600 }).unwrap();
    sim.inject(crew_sounding, &Fault::SelfTrigger { campaign: 99 }).unwrap();
    let device = |id: &str| {
        let c = siren_sim::fleet::lock(sim.controller(id).unwrap());
        (c.device.sounding_campaign(), c.device.armed_campaign(), c.device.soundings().to_vec())
    };
    wait_for("the siren that sounded by itself stopped", || device(rogue_sounding).0.is_none()).await;
    wait_for("the rogue arm cancelled", || device(rogue_armed).1.is_none()).await;
    let truth = device(rogue_sounding).2;
    let stopped = &truth[0];
    assert_eq!(stopped.outcome, siren_proto::message::Outcome::Aborted, "{truth:?}");
    assert!(stopped.ended.unwrap() - stopped.started.unwrap() < 30_000_000, "stopped within its 3-minute signal");
    assert!(device(rogue_armed).2.iter().all(|s| s.started.is_none()), "the rogue arm never sounded");
    let series = |id: &str| format!("siren_uncommanded_activation{{siren=\"{id}\"}}");
    wait_for("the alarms over for the stopped sirens", || {
        metric(&daemon, &series(rogue_sounding)) == 0.0 && metric(&daemon, &series(rogue_armed)) == 0.0
    })
    .await;
    // The crew's sounding is an alarm too, but is left alone.
    assert!((metric(&daemon, &series(crew_sounding)) - 1.0).abs() < f64::EPSILON);
    assert_eq!(device(crew_sounding).0, Some(99));
    // At least one each: a heartbeat sent before a stop and read after it begins the alarm again.
    for id in [rogue_sounding, rogue_armed, crew_sounding] {
        assert!(metric(&daemon, &format!("siren_uncommanded_activations_total{{siren=\"{id}\"}}")) >= 1.0, "{id}");
    }

    let events = |id: &str, kind: &str| {
        daemon
            .store
            .events(&sirend::store::EventQuery {
                siren: Some(id.to_owned()),
                kind: Some(kind.into()),
                limit: 10,
                ..Default::default()
            })
            .unwrap()
            .into_iter()
            .map(|e| e.event.detail)
            .collect::<Vec<_>>()
    };
    daemon.store.flush().unwrap();
    let began = events(rogue_sounding, "uncommanded_activation");
    assert!(began.iter().any(|e| e.contains("sounding") && e.contains("sent Stop")), "{began:?}");
    assert!(!events(rogue_sounding, "uncommanded_ended").is_empty());
    let began = events(rogue_armed, "uncommanded_activation");
    assert!(began.iter().any(|e| e.starts_with("armed")), "{began:?}");
    let began = events(crew_sounding, "uncommanded_activation");
    assert!(began.len() == 1 && began[0].contains("in maintenance: not stopped"), "{began:?}");
    wait_for("the campaign nobody saw reported", || {
        daemon.store.flush().unwrap();
        !events(unseen, "uncommanded_activation").is_empty()
    })
    .await;
    let began = events(unseen, "uncommanded_activation");
    assert!(began.len() == 1 && began[0].starts_with("reported campaign 5151"), "{began:?}");
    let last = metric(&daemon, &format!("siren_last_uncommanded_activation_timestamp_seconds{{siren=\"{unseen}\"}}"));
    assert!(last > 1.7e9, "{last}");
    mqtt.shutdown().await;
    daemon.stop().await;
}

/// Opens `GET path` as a server-sent event stream (with `Last-Event-ID` when given) and
/// returns once its headers arrived: the daemon follows the log from then on.
async fn open_stream(addr: std::net::SocketAddr, path: &str, last: Option<i64>) -> (tokio::net::TcpStream, String) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    let resume = last.map(|id| format!("Last-Event-ID: {id}\r\n")).unwrap_or_default();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n{resume}\r\n");
    conn.write_all(request.as_bytes()).await.unwrap();
    let mut text = String::new();
    let mut buf = [0u8; 4096];
    while !text.contains("\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(60), conn.read(&mut buf)).await.unwrap().unwrap();
        assert!(n > 0, "closed: {text}");
        text.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(text.starts_with("HTTP/1.1 200") && text.contains("text/event-stream"), "{text}");
    (conn, text)
}

/// Reads events from a stream `open_stream` opened until `enough` holds of the `(id, data)`
/// pairs read so far (60 s guard).
async fn read_events(
    (mut conn, mut text): (tokio::net::TcpStream, String),
    enough: impl Fn(&[(i64, String)]) -> bool,
) -> Vec<(i64, String)> {
    use tokio::io::AsyncReadExt as _;
    let read = async {
        let mut buf = [0u8; 4096];
        loop {
            let events: Vec<(i64, String)> = text
                .split("\n\n")
                .filter_map(|block| {
                    let id = block.lines().find_map(|l| l.strip_prefix("id: "))?.trim().parse().ok()?;
                    let data = block.lines().find_map(|l| l.strip_prefix("data: "))?.to_owned();
                    Some((id, data))
                })
                .collect();
            if enough(&events) {
                return events;
            }
            let n = conn.read(&mut buf).await.unwrap();
            assert!(n > 0, "the stream ended: {text}");
            text.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    };
    tokio::time::timeout(Duration::from_secs(60), read).await.expect("gave up waiting for the stream")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_stream_follows_the_log_live_and_resumes_after_the_last_event_seen() {
    let dir = tempfile::tempdir().unwrap();
    let (loaded, sim, url) = setup(dir.path(), 3, None, 2);
    let daemon = Daemon::start(&loaded).await.unwrap();
    let ids = ids(&loaded);
    // Followed before the sirens connect: each one's first state change comes live.
    let stream = open_stream(daemon.http, "/api/stream?kind=state", None).await;
    let mqtt = devices(&sim, &url, 2);
    let heard = |e: &[(i64, String)]| ids.iter().all(|id| e.iter().any(|(_, d)| d.contains(id.as_str())));
    let events = read_events(stream, heard).await;
    for (_, data) in &events {
        let v: serde_json::Value = serde_json::from_str(data).unwrap();
        assert_eq!(v["kind"], "state", "{v}");
    }
    // A client that reconnects after the first event gets the rest from the log first.
    let (first, _) = events[0];
    let resumed = open_stream(daemon.http, "/api/stream?kind=state", Some(first)).await;
    let rest = read_events(resumed, |e| e.len() >= events.len() - 1).await;
    let later: Vec<i64> = events[1..].iter().map(|(id, _)| *id).collect();
    assert_eq!(rest.iter().map(|(id, _)| *id).take(later.len()).collect::<Vec<_>>(), later);
    // A siren that dies afterwards: its fall comes on a stream opened before it.
    let stream = open_stream(daemon.http, &format!("/api/stream?siren={}", ids[0]), None).await;
    sim.inject(&ids[0], &Fault::SilentDeath).unwrap();
    let down = read_events(stream, |e| e.iter().any(|(_, d)| d.contains("down"))).await;
    assert!(down.iter().all(|(_, d)| d.contains(ids[0].as_str())), "{down:?}");
    mqtt.shutdown().await;
    daemon.stop().await;
}

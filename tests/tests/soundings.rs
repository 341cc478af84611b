//! Test soundings end to end: sirend plans a scheduled occurrence, synchronises the clocks of
//! simulated MQTT sirens that are up to 2 s off, arms them over a real broker, and verifies
//! what they report: sirens start within tolerance, the daemon's skew matches the simulator's
//! ground truth, a failed amplifier is classified, and the report is served as JSON, CSV and
//! HTML with the results in /metrics. Operators schedule and cancel ad-hoc soundings through
//! the API.
#![allow(clippy::unwrap_used, reason = "test helpers may panic on impossible states")]

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use siren_proto::fleet::Link;
use siren_proto::frame::Address;
use siren_sim::clock::SimClock;
use siren_sim::fault::Fault;
use siren_sim::fleet::{BuildOptions, SimFleet, lock};
use siren_sim::generate::{self, Options};
use siren_sim::mqtt::MqttConfig;
use sirend::auth::{Role, new_token};
use sirend::config::Loaded;
use sirend::daemon::Daemon;
use sirend::liveness::State;
use sirennet_e2e::broker::free_port;
use sirennet_e2e::http;
use sirennet_e2e::wait::{wait_for, wait_within};

fn request(addr: SocketAddr, method: &str, path: &str, token: Option<&str>, body: &str) -> (u16, String) {
    let r = http::request(addr, method, path, token, body);
    (r.status, r.body)
}

struct Setup {
    loaded: Loaded,
    sim: Arc<SimFleet>,
    url: String,
    operator: String,
    viewer: String,
}

/// Six MQTT sirens on the embedded broker, clocks within ±2 s, and a chime schedule whose
/// first occurrence is `in_s` seconds away.
fn setup(dir: &Path, in_s: i64) -> Setup {
    setup_with(dir, in_s, 0.0)
}

/// As `setup`, with `serial_share` of the sirens on serial buses.
fn setup_with(dir: &Path, in_s: i64, serial_share: f64) -> Setup {
    let options = Options { sirens: 6, seed: 11, serial_share, redundant_share: 0.0, ..Options::default() };
    setup_fleet(dir, in_s, generate::generate(&options).unwrap())
}

/// As `setup`, for a generated fleet.
fn setup_fleet(dir: &Path, in_s: i64, g: generate::Generated) -> Setup {
    let (config, mut text, port) = sirennet_e2e::config::written(&g, dir).unwrap();
    let (operator, op_entry) = new_token("ops", Role::Operator);
    let (viewer, view_entry) = new_token("watch", Role::Viewer);
    let start = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(in_s);
    let start = start.to_zoned(jiff::tz::TimeZone::UTC).datetime().strftime("%Y-%m-%dT%H:%M:%S").to_string();
    write!(
        text,
        "\n{op_entry}\n{view_entry}\n[liveness]\nheartbeat_s = 2\n\n[soundings]\ntimezone = \"UTC\"\nlead_s = 8\n\
         arm_cutoff_s = 2\nverify_grace_s = 8\n\n[[schedule]]\nname = \"e2e-chime\"\nkind = \"chime\"\n\
         start = \"{start}\"\nrrule = \"FREQ=DAILY\"\nsequence = [{{ pattern = \"chime\" }}]\n"
    )
    .unwrap();
    std::fs::write(&config, text).unwrap();
    let loaded = Loaded::load(&config).unwrap();
    let options = BuildOptions { clock_offset_ms: 2_000, ..BuildOptions::default() };
    let sim = Arc::new(SimFleet::build(g.fleet, &g.keys, SimClock::real_time(), &options).unwrap());
    Setup { loaded, sim, url: format!("mqtt://{port}"), operator, viewer }
}

/// Waits until the daemon has heard every siren of `ids` since it started.
async fn every_siren_heard(daemon: &Daemon, ids: &[String]) {
    wait_for("every siren heard", || {
        ids.iter().all(|id| daemon.fleet.read().unwrap().get(id).unwrap().liveness.state != State::Unknown)
    })
    .await;
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_sounding_is_synchronised_armed_verified_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let s = setup(dir.path(), 14);
    let daemon = Daemon::start(&s.loaded).await.unwrap();
    let mut config = MqttConfig::from_url(&s.url).unwrap();
    config.heartbeat = Duration::from_secs(2);
    config.check_every = Duration::from_millis(50);
    let devices = s.sim.serve_mqtt(&config);
    let ids: Vec<String> = s.loaded.fleet.sirens.iter().map(|x| x.id.clone()).collect();
    wait_for("every siren heard", || {
        ids.iter().all(|id| {
            let st = daemon.fleet.read().unwrap().get(id).unwrap().liveness.state;
            matches!(st, State::Ok | State::Degraded)
        })
    })
    .await;
    // One siren loses every amplifier channel before the sounding.
    let broken = &ids[2];
    s.sim.inject(broken, &Fault::AmplifierFailure { channel: None }).unwrap();

    let (status, body) = request(daemon.http, "GET", "/api/soundings", None, "");
    assert_eq!(status, 200);
    let list = json(&body);
    let planned = list.as_array().unwrap().iter().find(|c| c["schedule"] == "e2e-chime").unwrap();
    let id = planned["id"].as_u64().unwrap();
    assert!(matches!(planned["phase"].as_str(), Some("planned" | "arming")), "{planned}");

    ad_hoc_requests_are_answered_with_the_status_that_says_why(&daemon, &s);

    let path = format!("/api/soundings/{id}");
    let mut report = serde_json::Value::Null;
    wait_for("the scheduled campaign done", || {
        report = json(&request(daemon.http, "GET", &path, None, "").1);
        report["phase"] == "done"
    })
    .await;
    let sirens = report["sirens"].as_array().unwrap();
    assert_eq!(sirens.len(), 6);
    for siren in sirens {
        let sid = siren["siren"].as_str().unwrap();
        let truth = lock(s.sim.controller(sid).unwrap()).device.soundings().to_vec();
        if sid == broken {
            assert_eq!(siren["result"], "amplifier_fault", "{siren}");
            continue;
        }
        assert_eq!(siren["result"], "pass", "{siren}");
        let instant = report["instant"].as_str().unwrap().parse::<jiff::Timestamp>().unwrap().as_microsecond();
        let t = truth.iter().find(|t| u64::from(t.campaign) == id).unwrap();
        let true_skew_ms = f64::from(i32::try_from(t.started.unwrap() - instant).unwrap()) / 1000.0;
        let ours = siren["skew_ms"].as_f64().unwrap();
        assert!(true_skew_ms.abs() < 250.0, "{sid} started {true_skew_ms} ms off");
        // A time-sync exchange bounds the offset error by half its round trip (plus the
        // simulator's 5 ms reply turnaround, stamped ahead of the send). On an idle machine
        // that is a few ms (10 ms is allowed); a loaded CI machine delays the daemon's and the
        // devices' tasks, and the bound widens with the round trip the daemon measured. A
        // clock left uncorrected would be off by up to 2 s.
        let rtt = siren["clock_round_trip_ms"].as_f64().unwrap();
        let bound = (rtt / 2.0 + 5.0).max(10.0);
        assert!(
            (ours - true_skew_ms).abs() <= bound,
            "{sid}: daemon {ours} ms, truth {true_skew_ms} ms, round trip {rtt} ms"
        );
    }
    assert_eq!(report["passed"], 5);
    assert_eq!(report["failures_by_zone"].as_object().unwrap().len(), 1, "{report}");
    // Each siren's report is recorded once, though devices repeat it until it is acknowledged
    // and answer report requests with it too.
    daemon.store.flush().unwrap();
    let events = daemon.store.events(&sirend::store::EventQuery { limit: 10_000, ..Default::default() }).unwrap();
    let tag = format!("campaign {id} ");
    for sid in &ids {
        let n = events
            .iter()
            .filter(|e| e.event.kind == "sounding_report" && e.event.siren.as_ref() == Some(sid))
            .filter(|e| e.event.detail.starts_with(&tag))
            .count();
        assert!(n <= 1, "{sid}: {n} report events for campaign {id}");
    }

    let (status, csv) = request(daemon.http, "GET", &format!("{path}.csv"), None, "");
    assert_eq!(status, 200);
    assert_eq!(csv.lines().count(), 7, "{csv}");
    assert!(csv.contains(&format!("{broken},")) && csv.contains("amplifier_fault"), "{csv}");
    let (status, html) = request(daemon.http, "GET", &format!("{path}.html"), None, "");
    assert_eq!(status, 200);
    assert!(html.contains("5 of 6 sirens passed") && html.contains("amplifier_fault"), "{html}");

    let metrics = daemon.metrics.encode();
    assert!(metrics.contains("sirend_sounding_sirens{schedule=\"e2e-chime\",result=\"pass\"} 5"), "{metrics}");
    assert!(metrics.contains(&format!("siren_sounding_last_result{{siren=\"{broken}\"")));
    assert!(metrics.contains("sirend_schedule_next_timestamp_seconds{schedule=\"e2e-chime\"}"));
    assert!(metrics.contains("sirend_soundings_total{schedule=\"ad-hoc\",phase=\"cancelled\"} 1"), "{metrics}");
    devices.shutdown().await;
    daemon.stop().await;
}

/// Operators may schedule an ad-hoc test and cancel it, viewers may not; refusals say why
/// with their status: 422 for a wrong value (with the field), 400 for malformed input, 409 for
/// a conflict with the campaign's state, 404 for a campaign that never existed.
fn ad_hoc_requests_are_answered_with_the_status_that_says_why(daemon: &Daemon, s: &Setup) {
    let at = (jiff::Timestamp::now() + jiff::SignedDuration::from_secs(600)).to_string();
    let adhoc = format!(r#"{{"at":"{at}","kind":"test","sequence":[{{"pattern":"air-raid"}}]}}"#);
    assert_eq!(request(daemon.http, "POST", "/api/soundings", Some(&s.viewer), &adhoc).0, 403);
    let (status, body) = request(daemon.http, "POST", "/api/soundings", Some(&s.operator), &adhoc);
    assert_eq!(status, 201, "{body}");
    let adhoc_id = json(&body)["id"].as_u64().unwrap();
    // No siren in two soundings at once: one that would overlap it is refused, naming it.
    let at2 = (jiff::Timestamp::now() + jiff::SignedDuration::from_secs(660)).to_string();
    let overlapping = format!(r#"{{"at":"{at2}","kind":"test","sequence":[{{"pattern":"air-raid"}}]}}"#);
    let (status, body) = request(daemon.http, "POST", "/api/soundings", Some(&s.operator), &overlapping);
    assert_eq!(status, 409, "{body}");
    assert!(json(&body)["error"].as_str().unwrap().contains(&format!("campaign {adhoc_id}")), "{body}");
    let soon = (jiff::Timestamp::now() + jiff::SignedDuration::from_secs(1)).to_string();
    let too_soon = format!(r#"{{"at":"{soon}","sequence":[{{"pattern":"air-raid"}}]}}"#);
    let (status, body) = request(daemon.http, "POST", "/api/soundings", Some(&s.operator), &too_soon);
    assert_eq!(status, 422, "a value wrong whenever it is sent: {body}");
    assert_eq!(json(&body)["field"], "at", "{body}");
    let empty = format!(r#"{{"at":"{at}","sequence":[]}}"#);
    let (status, body) = request(daemon.http, "POST", "/api/soundings", Some(&s.operator), &empty);
    assert_eq!((status, json(&body)["field"].as_str()), (422, Some("sequence")), "{body}");
    let (status, body) = request(daemon.http, "POST", "/api/soundings", Some(&s.operator), "{not json");
    assert_eq!(status, 400, "malformed: {body}");
    let cancel = format!("/api/soundings/{adhoc_id}/cancel");
    let (status, body) = request(daemon.http, "POST", &cancel, Some(&s.operator), "");
    assert_eq!((status, json(&body)["field"].as_str()), (422, Some("reason")), "a cancel says why: {body}");
    let why = r#"{"reason": "exercise moved to Friday"}"#;
    let (status, body) = request(daemon.http, "POST", &cancel, Some(&s.operator), why);
    assert_eq!(status, 200, "{body}");
    let (status, body) = request(daemon.http, "POST", &cancel, Some(&s.operator), why);
    assert_eq!(status, 409, "a conflict with its state: {body}");
    assert!(json(&body)["error"].as_str().unwrap().contains("already over"), "{body}");
    let (status, body) = request(daemon.http, "POST", "/api/soundings/999999/cancel", Some(&s.operator), why);
    assert_eq!(status, 404, "{body}");
    let (status, body) = request(daemon.http, "POST", "/api/soundings/abc/cancel", Some(&s.operator), "");
    assert_eq!(status, 400, "{body}");
    assert!(json(&body)["error"].is_string(), "JSON even for the framework's refusals: {body}");
}

/// The configuration with the embedded broker on a new port: a stopped daemon's broker keeps
/// its port until the process ends, so a restarted daemon in the same test needs another.
fn on_a_new_broker(loaded: &Loaded) -> (Loaded, String) {
    let port = free_port().unwrap();
    let config = std::fs::read_to_string(&loaded.path).unwrap();
    let old =
        config.lines().find(|l| l.starts_with("listen = \"127.0.0.1:") && !l.ends_with(":0\"")).unwrap().to_owned();
    std::fs::write(&loaded.path, config.replace(&old, &format!("listen = \"{port}\""))).unwrap();
    (Loaded::load(&loaded.path).unwrap(), format!("mqtt://{port}"))
}

fn mqtt_config(url: &str) -> MqttConfig {
    let mut config = MqttConfig::from_url(url).unwrap();
    config.heartbeat = Duration::from_secs(2);
    config.check_every = Duration::from_millis(50);
    config
}

/// The first campaign of the e2e schedule as the API shows it (once it ends, the next day's
/// is planned at once: the list shows that one first).
fn e2e_campaign(daemon: &Daemon) -> Option<serde_json::Value> {
    let list = json(&request(daemon.http, "GET", "/api/soundings", None, "").1);
    let id = list.as_array()?.iter().rev().find(|c| c["schedule"] == "e2e-chime")?["id"].as_u64()?;
    Some(json(&request(daemon.http, "GET", &format!("/api/soundings/{id}"), None, "").1))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_restarted_mid_campaign_resumes_it_and_verifies_every_siren() {
    let dir = tempfile::tempdir().unwrap();
    let s = setup(dir.path(), 16);
    let daemon = Daemon::start(&s.loaded).await.unwrap();
    let devices = s.sim.serve_mqtt(&mqtt_config(&s.url));
    // Stop once every siren is armed: the rest of the campaign is the next run's.
    let mut campaign = serde_json::Value::Null;
    wait_for("every siren armed", || {
        campaign = e2e_campaign(&daemon).unwrap_or_default();
        campaign["sirens"].as_array().is_some_and(|a| a.iter().all(|t| t["armed"] == true))
    })
    .await;
    let id = campaign["id"].as_u64().unwrap();
    assert_eq!(campaign["phase"], "arming", "{campaign}");
    devices.shutdown().await;
    daemon.stop().await;

    let (loaded, url) = on_a_new_broker(&s.loaded);
    let daemon = Daemon::start(&loaded).await.unwrap();
    let devices = s.sim.serve_mqtt(&mqtt_config(&url));
    let mut report = serde_json::Value::Null;
    wait_for("the resumed campaign done", || {
        report = e2e_campaign(&daemon).unwrap_or_default();
        report["phase"] == "done"
    })
    .await;
    assert_eq!(report["id"].as_u64(), Some(id), "the same campaign, resumed");
    assert_eq!(report["passed"], 6, "{report:#}");
    let instant = report["instant"].as_str().unwrap().parse::<jiff::Timestamp>().unwrap().as_microsecond();
    for t in report["sirens"].as_array().unwrap() {
        let sid = t["siren"].as_str().unwrap();
        assert_eq!(t["triggered"], false, "armed by the first run, not triggered by the second: {t}");
        let truth = lock(s.sim.controller(sid).unwrap()).device.soundings().to_vec();
        assert_eq!(truth.len(), 1, "{sid} sounded once");
        let started = truth[0].started.unwrap();
        assert!((started - instant).abs() < 250_000, "{sid} started {} µs off", started - instant);
    }
    devices.shutdown().await;
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_occurrence_that_passed_while_the_daemon_was_down_is_missed_never_sounded_late() {
    let dir = tempfile::tempdir().unwrap();
    let s = setup(dir.path(), 12);
    // Arming would start 5 s before the instant; the daemon is down from well before that.
    let config = std::fs::read_to_string(&s.loaded.path).unwrap().replace("lead_s = 8", "lead_s = 5");
    std::fs::write(&s.loaded.path, config).unwrap();
    let loaded = Loaded::load(&s.loaded.path).unwrap();
    let daemon = Daemon::start(&loaded).await.unwrap();
    let devices = s.sim.serve_mqtt(&mqtt_config(&s.url));
    let mut planned = serde_json::Value::Null;
    wait_for("the occurrence planned", || {
        planned = e2e_campaign(&daemon).unwrap_or_default();
        !planned.is_null()
    })
    .await;
    assert_eq!(planned["phase"], "planned", "{planned}");
    let instant = planned["instant"].as_str().unwrap().parse::<jiff::Timestamp>().unwrap();
    daemon.stop().await;

    while jiff::Timestamp::now() < instant + jiff::SignedDuration::from_secs(1) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    devices.shutdown().await;
    let (loaded, url) = on_a_new_broker(&loaded);
    let daemon = Daemon::start(&loaded).await.unwrap();
    let devices = s.sim.serve_mqtt(&mqtt_config(&url));
    let mut missed = serde_json::Value::Null;
    wait_for("the occurrence recorded as missed", || {
        missed = e2e_campaign(&daemon).unwrap_or_default();
        missed["phase"] == "missed"
    })
    .await;
    assert_eq!(missed["id"], planned["id"], "{missed}");
    // The alert's series: the missed instant, and the counter that started at zero.
    let metrics = daemon.metrics.encode();
    let line =
        format!("sirend_sounding_last_missed_timestamp_seconds{{schedule=\"e2e-chime\"}} {}", instant.as_second());
    assert!(metrics.contains(&line), "{metrics}");
    assert!(metrics.contains("sirend_soundings_total{schedule=\"e2e-chime\",phase=\"missed\"} 1"), "{metrics}");
    daemon.store.flush().unwrap();
    let events = daemon.store.events(&sirend::store::EventQuery { limit: 1_000, ..Default::default() }).unwrap();
    assert!(events.iter().any(|e| e.event.kind == "sounding_missed"), "{events:?}");
    // Never sounded late: a second later no siren has sounded or been armed.
    tokio::time::sleep(Duration::from_secs(1)).await;
    for t in &loaded.fleet.sirens {
        let c = lock(s.sim.controller(&t.id).unwrap());
        assert!(c.device.soundings().is_empty(), "{} sounded", t.id);
    }
    devices.shutdown().await;
    daemon.stop().await;

    // Another restart still shows the miss (read back from the store), while this run's
    // counter starts from zero.
    let (loaded, _) = on_a_new_broker(&loaded);
    let daemon = Daemon::start(&loaded).await.unwrap();
    let metrics = daemon.metrics.encode();
    assert!(metrics.contains(&line), "{metrics}");
    assert!(metrics.contains("sirend_soundings_total{schedule=\"e2e-chime\",phase=\"missed\"} 0"), "{metrics}");
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sirens_on_a_pty_serial_bus_are_synchronised_armed_and_verified_while_polls_go_on() {
    let dir = tempfile::tempdir().unwrap();
    // Six sirens on one bus polled as fast as the line allows, so that arming them has to
    // share the line with their polls.
    let options = Options { sirens: 6, seed: 11, serial_share: 1.0, redundant_share: 0.0, ..Options::default() };
    let mut g = generate::generate(&options).unwrap();
    for (n, siren) in (0u16..).zip(g.fleet.sirens.iter_mut()) {
        siren.links = vec![Link::Serial { bus: "bus-c-1".into() }];
        siren.address = Address(17 + n);
    }
    let mut s = setup_fleet(dir.path(), 18, g);
    let config =
        std::fs::read_to_string(&s.loaded.path).unwrap().replace("baud = 9600", "baud = 9600\npoll_interval_s = 0.1");
    std::fs::write(&s.loaded.path, config).unwrap();
    s.loaded = Loaded::load(&s.loaded.path).unwrap();
    let buses: Vec<String> = s.loaded.fleet.buses().keys().map(|b| (*b).to_owned()).collect();
    assert_eq!(buses.len(), 1);
    assert!(!buses.is_empty() && s.loaded.fleet.sirens.iter().all(|x| x.serial_bus().is_some()));
    let root = dir.path().canonicalize().unwrap();
    let _serial: Vec<_> =
        buses.iter().map(|bus| s.sim.serve_serial(bus, 9600, Some(generate::pty_link(&root, bus))).unwrap()).collect();
    let daemon = Daemon::start(&s.loaded).await.unwrap();
    let answered = || -> f64 {
        let text = daemon.metrics.encode();
        text.lines()
            .filter(|l| l.starts_with("siren_link_poll_duration_seconds_count{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    wait_for("arming begun", || e2e_campaign(&daemon).is_some_and(|c| c["phase"] == "arming")).await;
    let before = answered();
    wait_for("every siren armed", || {
        e2e_campaign(&daemon).is_some_and(|c| c["sirens"].as_array().unwrap().iter().all(|t| t["armed"] == true))
    })
    .await;
    // Each sounding exchange is followed by a due poll: at least one poll per siren armed
    // (soundings that took the line whenever they wanted left one or two in all).
    let during = answered() - before;
    assert!(during >= 6.0, "only {during} polls answered while arming");
    let mut report = serde_json::Value::Null;
    wait_for("the campaign done", || {
        report = e2e_campaign(&daemon).unwrap_or_default();
        report["phase"] == "done"
    })
    .await;
    assert_eq!(report["passed"], 6, "{report:#}");
    let id = report["id"].as_u64().unwrap();
    let instant = report["instant"].as_str().unwrap().parse::<jiff::Timestamp>().unwrap().as_microsecond();
    for t in report["sirens"].as_array().unwrap() {
        let sid = t["siren"].as_str().unwrap();
        assert_eq!((t["armed"].as_bool(), t["triggered"].as_bool()), (Some(true), Some(false)), "{t}");
        let truth = lock(s.sim.controller(sid).unwrap()).device.soundings().to_vec();
        let started = truth.iter().find(|x| u64::from(x.campaign) == id).unwrap().started.unwrap();
        let true_skew_ms = f64::from(i32::try_from(started - instant).unwrap()) / 1000.0;
        assert!(true_skew_ms.abs() < 250.0, "{sid} started {true_skew_ms} ms off");
        // A 9600 baud exchange takes tens of milliseconds each way; the sync is good to half
        // its round trip, as over MQTT.
        let rtt = t["clock_round_trip_ms"].as_f64().unwrap();
        let ours = t["skew_ms"].as_f64().unwrap();
        assert!(
            (ours - true_skew_ms).abs() <= rtt / 2.0 + 5.0,
            "{sid}: daemon {ours} ms, truth {true_skew_ms} ms, rtt {rtt}"
        );
    }
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bus_that_reopens_while_its_sirens_are_armed_gets_no_time_set_until_they_sounded() {
    use siren_proto::message::MessageType;
    let dir = tempfile::tempdir().unwrap();
    let options = Options { sirens: 2, seed: 12, serial_share: 1.0, redundant_share: 0.0, ..Options::default() };
    let mut g = generate::generate(&options).unwrap();
    for (n, siren) in (0u16..).zip(g.fleet.sirens.iter_mut()) {
        siren.links = vec![Link::Serial { bus: "bus-c-1".into() }];
        siren.address = Address(17 + n);
    }
    // Armed long before the instant, so the bus can be replugged while they wait.
    let mut s = setup_fleet(dir.path(), 40, g);
    let config = std::fs::read_to_string(&s.loaded.path)
        .unwrap()
        .replace("baud = 9600", "baud = 9600\npoll_interval_s = 0.2")
        .replace("lead_s = 8", "lead_s = 35");
    std::fs::write(&s.loaded.path, config).unwrap();
    s.loaded = Loaded::load(&s.loaded.path).unwrap();
    let root = dir.path().canonicalize().unwrap();
    let link = generate::pty_link(&root, "bus-c-1");
    let serial = s.sim.serve_serial("bus-c-1", 9600, Some(link.clone())).unwrap();
    let daemon = Daemon::start(&s.loaded).await.unwrap();
    let ids: Vec<String> = s.loaded.fleet.sirens.iter().map(|x| x.id.clone()).collect();
    let time_sets = |id: &str| -> Vec<i64> {
        let c = lock(s.sim.controller(id).unwrap());
        c.received()
            .iter()
            .filter(|r| r.broadcast && r.message.message_type() == MessageType::TimeSet)
            .map(|r| r.at)
            .collect()
    };
    // The port's first opening sets the bus's clocks: the bus has a group key.
    wait_for("the first time set", || ids.iter().all(|id| !time_sets(id).is_empty())).await;
    wait_for("every siren armed", || {
        e2e_campaign(&daemon).is_some_and(|c| c["sirens"].as_array().unwrap().iter().all(|t| t["armed"] == true))
    })
    .await;

    // Unplugged and plugged back while they wait for the instant: a reopened port would get a
    // time set at once.
    let up = "siren_link_up{link=\"serial:bus-c-1\"}";
    let link_up = || daemon.metrics.encode().lines().any(|l| l.strip_prefix(up).is_some_and(|v| v.trim() == "1"));
    drop(serial);
    wait_for("the bus down", || !link_up()).await;
    let _serial = s.sim.serve_serial("bus-c-1", 9600, Some(link)).unwrap();
    wait_for("the bus up again", link_up).await;
    let phase = e2e_campaign(&daemon).unwrap()["phase"].clone();
    assert_eq!(phase, "arming", "the bus came back too late for the test to mean anything");

    let mut report = serde_json::Value::Null;
    wait_for("the campaign done", || {
        report = e2e_campaign(&daemon).unwrap_or_default();
        report["phase"] == "done"
    })
    .await;
    assert_eq!(report["passed"], 2, "{report:#}");
    let id = report["id"].as_u64().unwrap();
    for sid in &ids {
        let c = lock(s.sim.controller(sid).unwrap());
        let armed =
            c.received().iter().filter(|r| r.message.message_type() == MessageType::ArmTest).map(|r| r.at).max();
        let started = c.device.soundings().iter().find(|x| u64::from(x.campaign) == id).and_then(|x| x.started);
        drop(c);
        let (armed, started) = (armed.unwrap(), started.unwrap());
        let moved: Vec<i64> = time_sets(sid).into_iter().filter(|&at| at > armed && at < started).collect();
        assert!(moved.is_empty(), "{sid}: time set while armed, at {moved:?} (armed {armed}, started {started})");
    }
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sirens_with_a_dead_serial_line_are_armed_over_their_mqtt_link() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options { sirens: 2, seed: 13, serial_share: 1.0, redundant_share: 0.0, ..Options::default() };
    let mut g = generate::generate(&options).unwrap();
    // Serial first: the preferred link, MQTT the fallback.
    for (n, siren) in (0u16..).zip(g.fleet.sirens.iter_mut()) {
        siren.links = vec![Link::Serial { bus: "bus-c-1".into() }, Link::Mqtt];
        siren.address = Address(17 + n);
    }
    let s = setup_fleet(dir.path(), 30, g);
    let root = dir.path().canonicalize().unwrap();
    let serial = s.sim.serve_serial("bus-c-1", 9600, Some(generate::pty_link(&root, "bus-c-1"))).unwrap();
    let daemon = Daemon::start(&s.loaded).await.unwrap();
    let devices = s.sim.serve_mqtt(&mqtt_config(&s.url));
    let ids: Vec<String> = s.loaded.fleet.sirens.iter().map(|x| x.id.clone()).collect();
    let up = |link: &str| {
        let series = format!("siren_link_up{{link=\"{link}\"}}");
        daemon.metrics.encode().lines().any(|l| l.strip_prefix(series.as_str()).is_some_and(|v| v.trim() == "1"))
    };
    wait_for("both links up", || up("serial:bus-c-1") && up("mqtt")).await;
    wait_for("every siren heard", || {
        ids.iter().all(|id| matches!(daemon.fleet.read().unwrap().get(id).unwrap().liveness.state, State::Ok))
    })
    .await;
    // The serial line dies before the sounding is armed.
    drop(serial);
    wait_for("the bus down", || !up("serial:bus-c-1")).await;
    assert_eq!(e2e_campaign(&daemon).unwrap()["phase"], "planned", "the line died too late for the test");

    let mut report = serde_json::Value::Null;
    wait_for("the campaign done", || {
        report = e2e_campaign(&daemon).unwrap_or_default();
        report["phase"] == "done"
    })
    .await;
    assert_eq!(report["passed"], 2, "{report:#}");
    let id = report["id"].as_u64().unwrap();
    for t in report["sirens"].as_array().unwrap() {
        assert_eq!(t["armed"], true, "armed over MQTT: {t}");
        let sid = t["siren"].as_str().unwrap();
        let truth = lock(s.sim.controller(sid).unwrap()).device.soundings().to_vec();
        assert!(truth.iter().any(|x| u64::from(x.campaign) == id && x.started.is_some()), "{sid} sounded");
    }
    devices.shutdown().await;
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bus_past_its_arm_cut_off_is_triggered_by_one_broadcast_and_starts_together() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options { sirens: 6, seed: 14, serial_share: 1.0, redundant_share: 0.0, ..Options::default() };
    let mut g = generate::generate(&options).unwrap();
    for (n, siren) in (0u16..).zip(g.fleet.sirens.iter_mut()) {
        siren.links = vec![Link::Serial { bus: "bus-c-1".into() }];
        siren.address = Address(17 + n);
    }
    // The instant is 4-5 s away and arming stops 8 s before it: the daemon starts past its
    // cut-off, so every siren must be triggered (as after a restart that came too late).
    let mut s = setup_fleet(dir.path(), 5, g);
    let config = std::fs::read_to_string(&s.loaded.path)
        .unwrap()
        .replace("lead_s = 8", "lead_s = 20")
        .replace("arm_cutoff_s = 2", "arm_cutoff_s = 8");
    std::fs::write(&s.loaded.path, config).unwrap();
    s.loaded = Loaded::load(&s.loaded.path).unwrap();
    let root = dir.path().canonicalize().unwrap();
    let _serial = s.sim.serve_serial("bus-c-1", 9600, Some(generate::pty_link(&root, "bus-c-1"))).unwrap();
    let daemon = Daemon::start(&s.loaded).await.unwrap();
    let mut report = serde_json::Value::Null;
    wait_for("the campaign done", || {
        report = e2e_campaign(&daemon).unwrap_or_default();
        report["phase"] == "done"
    })
    .await;
    assert_eq!(report["passed"], 6, "{report:#}");
    let id = report["id"].as_u64().unwrap();
    let instant = report["instant"].as_str().unwrap().parse::<jiff::Timestamp>().unwrap().as_microsecond();
    for t in report["sirens"].as_array().unwrap() {
        assert_eq!((t["armed"].as_bool(), t["triggered"].as_bool()), (Some(false), Some(true)), "{t}");
        let sid = t["siren"].as_str().unwrap();
        let truth = lock(s.sim.controller(sid).unwrap()).device.soundings().to_vec();
        let started = truth.iter().find(|x| u64::from(x.campaign) == id).and_then(|x| x.started).unwrap();
        let late_ms = (started - instant) / 1000;
        assert!(late_ms.abs() < 250, "{sid} started {late_ms} ms from the instant");
    }
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clocks_that_step_or_drift_after_arming_are_caught_and_the_sirens_start_on_time() {
    let dir = tempfile::tempdir().unwrap();
    let s = setup(dir.path(), 3_600);
    // Arming 40 s ahead, each armed clock measured every 10 s and at the cut-off.
    let text = std::fs::read_to_string(&s.loaded.path)
        .unwrap()
        .replace("lead_s = 8\narm_cutoff_s = 2\n", "lead_s = 40\narm_cutoff_s = 10\nclock_watch_s = 10\n");
    std::fs::write(&s.loaded.path, text).unwrap();
    let loaded = Loaded::load(&s.loaded.path).unwrap();
    assert_eq!(loaded.config.soundings.clock_watch_s, 10);
    let daemon = Daemon::start(&loaded).await.unwrap();
    let devices = s.sim.serve_mqtt(&mqtt_config(&s.url));
    let ids: Vec<String> = loaded.fleet.sirens.iter().map(|x| x.id.clone()).collect();
    wait_for("every siren heard", || {
        ids.iter().all(|id| {
            let st = daemon.fleet.read().unwrap().get(id).unwrap().liveness.state;
            matches!(st, State::Ok | State::Degraded)
        })
    })
    .await;
    // One clock runs 5,000 ppm fast: corrected when arming begins, it drifts on.
    s.sim.inject(&ids[2], &Fault::ClockDrift { ppm: 5_000.0 }).unwrap();
    let at = (jiff::Timestamp::now() + jiff::SignedDuration::from_secs(46)).to_string();
    let body = format!(r#"{{"at":"{at}","kind":"chime","sequence":[{{"pattern":"chime"}}]}}"#);
    let (status, body) = request(daemon.http, "POST", "/api/soundings", Some(&s.operator), &body);
    assert_eq!(status, 201, "{body}");
    let path = format!("/api/soundings/{}", json(&body)["id"].as_u64().unwrap());
    wait_for("every siren armed", || {
        let c = json(&request(daemon.http, "GET", &path, None, "").1);
        c["sirens"].as_array().is_some_and(|a| a.iter().all(|t| t["armed"] == true))
    })
    .await;
    // After arming, one clock jumps 1.5 s ahead and one 1.5 s back. Unwatched, they would
    // start 1.5 s early and 1.5 s late, and the drifting one 200 ms early.
    s.sim.inject(&ids[0], &Fault::ClockStep { ms: 1_500 }).unwrap();
    s.sim.inject(&ids[1], &Fault::ClockStep { ms: -1_500 }).unwrap();
    let mut report = serde_json::Value::Null;
    wait_for("the sounding done", || {
        report = json(&request(daemon.http, "GET", &path, None, "").1);
        report["phase"] == "done"
    })
    .await;
    assert_eq!(report["passed"], 6, "{report:#}");
    let instant = report["instant"].as_str().unwrap().parse::<jiff::Timestamp>().unwrap().as_microsecond();
    for (i, t) in report["sirens"].as_array().unwrap().iter().enumerate() {
        let sid = t["siren"].as_str().unwrap();
        assert_eq!(sid, ids[i]);
        let truth = lock(s.sim.controller(sid).unwrap()).device.soundings().to_vec();
        let started: Vec<i64> = truth.iter().filter_map(|t| t.started).collect();
        assert_eq!(started.len(), 1, "{sid} sounded once: {truth:?}");
        assert!((started[0] - instant).abs() < 250_000, "{sid} started {} µs off", started[0] - instant);
        match i {
            0 | 1 => {
                assert!(t["rearmed"].as_u64() >= Some(1), "{t}");
                let moved = t["clock_moved_ms"].as_f64().unwrap();
                let expected = if i == 0 { -1_500.0 } else { 1_500.0 };
                assert!((moved - expected).abs() < 100.0, "{t}");
            }
            2 => {
                let ppm = t["clock_drift_ppm"].as_f64().unwrap_or_else(|| panic!("drift not flagged: {t}"));
                assert!((ppm - 5_000.0).abs() < 1_000.0, "{t}");
            }
            _ => assert!(t["rearmed"] == 0 && t["clock_drift_ppm"].is_null(), "a healthy clock: {t}"),
        }
    }
    daemon.store.flush().unwrap();
    let events = daemon.store.events(&sirend::store::EventQuery { limit: 10_000, ..Default::default() }).unwrap();
    let of = |kind: &str| -> Vec<String> {
        let mut v: Vec<String> =
            events.iter().filter(|e| e.event.kind == kind).filter_map(|e| e.event.siren.clone()).collect();
        v.sort();
        v.dedup();
        v
    };
    let moved = of("clock_moved");
    assert!(moved.contains(&ids[0]) && moved.contains(&ids[1]), "{moved:?}");
    assert_eq!(of("clock_drift"), [ids[2].clone()]);
    devices.shutdown().await;
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_siren_in_maintenance_is_left_out_of_a_sounding_and_windows_and_acknowledgements_outlive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let s = setup(dir.path(), 25);
    let daemon = Daemon::start(&s.loaded).await.unwrap();
    let devices = s.sim.serve_mqtt(&mqtt_config(&s.url));
    let ids: Vec<String> = s.loaded.fleet.sirens.iter().map(|x| x.id.clone()).collect();
    every_siren_heard(&daemon, &ids).await;

    // A crew takes one siren out of service for an hour.
    let (held, faulty) = (&ids[1], &ids[2]);
    let until = (jiff::Timestamp::now() + jiff::SignedDuration::from_hours(1)).to_string();
    let window = format!(r#"{{"siren":"{held}","reason":"mast repair","until":"{until}"}}"#);
    assert_eq!(request(daemon.http, "POST", "/api/maintenance", Some(&s.viewer), &window).0, 403);
    let (status, body) = request(daemon.http, "POST", "/api/maintenance", Some(&s.operator), &window);
    assert_eq!(status, 201, "{body}");
    let window_id = json(&body)["id"].as_u64().unwrap();
    let too_long = (jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24 * 40)).to_string();
    let refused = format!(r#"{{"siren":"{held}","reason":"gone","until":"{too_long}"}}"#);
    let (status, body) = request(daemon.http, "POST", "/api/maintenance", Some(&s.operator), &refused);
    assert_eq!((status, json(&body)["field"].as_str()), (422, Some("until")), "{body}");
    let both = format!(r#"{{"siren":"{held}","zone":"x","reason":"r","until":"{until}"}}"#);
    assert_eq!(request(daemon.http, "POST", "/api/maintenance", Some(&s.operator), &both).0, 422);

    // Another siren fails, and is acknowledged.
    s.sim.inject(faulty, &Fault::AmplifierFailure { channel: None }).unwrap();
    let state_of = |daemon: &Daemon, id: &str| daemon.fleet.read().unwrap().get(id).unwrap().liveness.state;
    wait_for("the broken siren faulty", || state_of(&daemon, faulty) == State::Faulty).await;
    let ack = format!("/api/sirens/{faulty}/ack");
    let (status, body) = request(daemon.http, "POST", &ack, Some(&s.operator), r#"{"note":"crew dispatched"}"#);
    assert_eq!(status, 200, "{body}");
    let metrics = daemon.metrics.encode();
    assert!(metrics.contains(&format!("siren_in_maintenance{{siren=\"{held}\"}} 1")), "{metrics}");
    assert!(metrics.contains(&format!("siren_in_maintenance{{siren=\"{faulty}\"}} 0")));
    assert!(metrics.contains(&format!("siren_acknowledged{{siren=\"{faulty}\"}} 1")));

    let mut report = serde_json::Value::Null;
    wait_for("the sounding done", || {
        report = e2e_campaign(&daemon).unwrap_or_default();
        report["phase"] == "done"
    })
    .await;
    assert_eq!((report["passed"].as_u64(), report["failed"].as_u64()), (Some(4), Some(1)), "{report:#}");
    assert_eq!(report["in_maintenance"], 1, "{report:#}");
    for t in report["sirens"].as_array().unwrap() {
        let sid = t["siren"].as_str().unwrap();
        let expected = if sid == held {
            "in_maintenance"
        } else if sid == faulty {
            "amplifier_fault"
        } else {
            "pass"
        };
        assert_eq!(t["result"], expected, "{t}");
    }
    let line = report["sirens"].as_array().unwrap().iter().find(|t| t["siren"] == held.as_str()).unwrap().clone();
    assert!(line["maintenance"].as_str().unwrap().contains("mast repair"), "{line}");
    {
        let controller = lock(s.sim.controller(held).unwrap());
        assert!(controller.device.soundings().is_empty(), "a siren in maintenance never sounds");
        assert!(
            !controller.received().iter().any(|r| matches!(r.message, siren_proto::Message::ArmTest(_))),
            "nor is it armed"
        );
    }

    devices.shutdown().await;
    daemon.stop().await;
    let (loaded, url) = on_a_new_broker(&s.loaded);
    let daemon = Daemon::start(&loaded).await.unwrap();
    let devices = s.sim.serve_mqtt(&mqtt_config(&url));
    every_siren_heard(&daemon, &ids).await;
    let siren = json(&request(daemon.http, "GET", &format!("/api/sirens/{held}"), Some(&s.viewer), "").1);
    assert_eq!(siren["maintenance"]["id"].as_u64(), Some(window_id), "{siren}");
    wait_for("the broken siren faulty again", || state_of(&daemon, faulty) == State::Faulty).await;
    let siren = json(&request(daemon.http, "GET", &format!("/api/sirens/{faulty}"), Some(&s.viewer), "").1);
    assert_eq!(siren["acknowledged"]["note"], "crew dispatched", "held across the restart: {siren}");

    // The crew is done early.
    let end = format!("/api/maintenance/{window_id}/end");
    let (status, body) = request(daemon.http, "POST", &end, Some(&s.operator), r#"{"note":"new cable"}"#);
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body)["ended"]["note"], "new cable", "{body}");
    assert_eq!(request(daemon.http, "POST", &end, Some(&s.operator), "").0, 409, "ended already");
    assert_eq!(json(&request(daemon.http, "GET", "/api/maintenance", None, "").1), serde_json::json!([]));
    let all = json(&request(daemon.http, "GET", "/api/maintenance?all=true", None, "").1);
    assert_eq!(all[0]["ended"]["by"], "ops", "{all}");
    // The end and its event are committed before the answer.
    let events = json(&request(daemon.http, "GET", "/api/events?kind=maintenance_ended", None, "").1);
    assert_eq!(events[0]["siren"], held.as_str(), "{events}");

    // The crews' histories: the outage with its acknowledgement, the window, the soundings.
    let history = json(&request(daemon.http, "GET", &format!("/api/sirens/{faulty}/history"), None, "").1);
    let outage = &history["outages"][0];
    assert_eq!((outage["worst"].as_str(), outage["end"].as_str()), (Some("faulty"), None), "{history:#}");
    assert!(outage["acknowledged"]["detail"].as_str().unwrap().contains("crew dispatched"), "{history:#}");
    assert!(!outage["faults"].as_array().unwrap().is_empty(), "{history:#}");
    assert_eq!(history["soundings"][0]["result"], "amplifier_fault", "{history:#}");
    let history = json(&request(daemon.http, "GET", &format!("/api/sirens/{held}/history"), None, "").1);
    assert_eq!(history["maintenance"][0]["id"].as_u64(), Some(window_id), "{history:#}");
    assert_eq!(history["soundings"][0]["result"], "in_maintenance", "{history:#}");
    assert_eq!(history["summary"]["outages"], 0, "{history:#}");
    let (status, body) = request(daemon.http, "GET", "/api/sirens/nope/history", None, "");
    assert_eq!(status, 404, "{body}");
    devices.shutdown().await;
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_step_stops_every_siren_and_disarms_the_sounding_being_armed() {
    let dir = tempfile::tempdir().unwrap();
    let s = setup(dir.path(), 20);
    // The siren that sounds by itself is left to the operator here.
    let text = std::fs::read_to_string(&s.loaded.path)
        .unwrap()
        .replace("[soundings]\n", "[soundings]\nstop_uncommanded = false\n");
    std::fs::write(&s.loaded.path, text).unwrap();
    let loaded = Loaded::load(&s.loaded.path).unwrap();
    let daemon = Daemon::start(&loaded).await.unwrap();
    let devices = s.sim.serve_mqtt(&mqtt_config(&s.url));
    let ids: Vec<String> = loaded.fleet.sirens.iter().map(|x| x.id.clone()).collect();
    every_siren_heard(&daemon, &ids).await;
    s.sim.inject(&ids[0], &Fault::SelfTrigger { campaign: 0 }).unwrap();
    let device = |id: &str| {
        let c = lock(s.sim.controller(id).unwrap());
        (c.device.sounding_campaign(), c.device.armed_campaign(), c.device.soundings().to_vec())
    };
    wait_for("the others armed for the chime", || ids[1..].iter().all(|id| device(id).1.is_some())).await;
    assert!(device(&ids[0]).0.is_some(), "sounding by itself");

    assert_eq!(request(daemon.http, "POST", "/api/stop", Some(&s.viewer), "").0, 403, "a viewer may not");
    let (status, body) = request(daemon.http, "POST", "/api/stop", Some(&s.operator), "");
    assert_eq!(status, 202, "{body}");
    let sweep = json(&body);
    assert_eq!(sweep["sirens"].as_array().unwrap().len(), 6, "{sweep}");
    let path = format!("/api/stop/{}", sweep["id"]);
    let mut view = serde_json::Value::Null;
    wait_for("every siren confirmed silent", || {
        view = json(&request(daemon.http, "GET", &path, None, "").1);
        view["pending"] == 0
    })
    .await;
    assert!(view["all_silent_after_ms"].as_i64().is_some(), "{view}");
    assert_eq!(device(&ids[0]).0, None, "the sounding siren stopped");
    assert_eq!(device(&ids[0]).2[0].outcome, siren_proto::message::Outcome::Aborted);
    wait_for("every arm cancelled", || ids.iter().all(|id| device(id).1.is_none())).await;

    // The chime's instant passes: nothing sounds, and its report says why.
    let mut report = serde_json::Value::Null;
    wait_for("the stopped campaign done", || {
        report = e2e_campaign(&daemon).unwrap_or_default();
        report["phase"] == "done"
    })
    .await;
    for t in report["sirens"].as_array().unwrap() {
        assert_eq!(t["result"], "stopped", "{t}");
    }
    for id in &ids[1..] {
        assert!(device(id).2.iter().all(|t| t.started.is_none()), "{id} never sounded");
    }
    let events = json(&request(daemon.http, "GET", "/api/events?kind=stop_complete", None, "").1);
    assert!(events[0]["detail"].as_str().unwrap().contains("6 sirens silent"), "{events}");
    devices.shutdown().await;
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_warning_needs_a_second_person_pre_empts_a_test_and_sounds_with_live_frames() {
    let dir = tempfile::tempdir().unwrap();
    let s = setup(dir.path(), 3600);
    let (second, loaded) =
        with_second_officer(&s.loaded.path, &LIVE_BURST.replace("[live]\n", "[live]\napproval_window_s = 60\n"));
    let daemon = Daemon::start(&loaded).await.unwrap();
    let devices = s.sim.serve_mqtt(&mqtt_config(&s.url));
    let ids: Vec<String> = loaded.fleet.sirens.iter().map(|x| x.id.clone()).collect();
    every_siren_heard(&daemon, &ids).await;
    // A test is planned on the same sirens.
    let at = (jiff::Timestamp::now() + jiff::SignedDuration::from_secs(40)).to_string();
    let planned_test = format!(r#"{{"at":"{at}","kind":"test","sequence":[{{"pattern":"chime"}}]}}"#);
    let (status, body) = request(daemon.http, "POST", "/api/soundings", Some(&s.operator), &planned_test);
    assert_eq!(status, 201, "{body}");
    let test_id = json(&body)["id"].as_u64().unwrap();

    // LIVE is its own path: never through the soundings API.
    let live_test = format!(r#"{{"at":"{at}","kind":"live","sequence":[{{"pattern":"chime"}}]}}"#);
    let (status, body) = request(daemon.http, "POST", "/api/soundings", Some(&s.operator), &live_test);
    assert_eq!((status, json(&body)["field"].as_str()), (422, Some("kind")), "{body}");

    // One person requests; the same person, and a viewer, cannot approve; another can.
    let ask = r#"{"signal":"burst","reason":"typhoon landfall within the hour"}"#;
    let (status, body) = request(daemon.http, "POST", "/api/activations", Some(&s.operator), ask);
    assert_eq!(status, 201, "{body}");
    let activation = json(&body);
    assert_eq!(activation["state"], "requested", "{activation}");
    let approve = format!("/api/activations/{}/approve", activation["id"]);
    let (status, body) = request(daemon.http, "POST", &approve, Some(&s.operator), "");
    assert_eq!(status, 403, "the requester may not approve: {body}");
    assert_eq!(request(daemon.http, "POST", &approve, Some(&s.viewer), "").0, 403);
    let (status, body) = request(daemon.http, "POST", &approve, Some(&second), "");
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body)["state"], "approved");
    assert_eq!(json(&body)["by"], "second-officer");
    assert_eq!(request(daemon.http, "POST", &approve, Some(&second), "").0, 409, "approved once");

    let view_path = format!("/api/activations/{}", activation["id"]);
    let mut view = serde_json::Value::Null;
    wait_for("every siren done", || {
        view = json(&request(daemon.http, "GET", &view_path, None, "").1);
        view["counts"]["done"] == 6
    })
    .await;
    let mut latencies: Vec<i64> =
        view["sirens"].as_array().unwrap().iter().map(|s| s["latency_ms"].as_i64().unwrap()).collect();
    latencies.sort_unstable();
    assert!(latencies[0] >= 0, "{view:#}");
    eprintln!("approval to start of sound, ms: {latencies:?}");
    let series = format!("sirend_live_sirens{{activation=\"{}\",state=\"done\"}} 6", activation["id"]);
    wait_for("the LIVE state in the metrics", || daemon.metrics.encode().contains(&series)).await;
    for id in &ids {
        let c = lock(s.sim.controller(id).unwrap());
        let truth = c.device.soundings().to_vec();
        assert!(truth.iter().any(|t| t.live && t.started.is_some()), "{id} sounded LIVE: {truth:?}");
        assert!(truth.iter().all(|t| t.live || t.started.is_none()), "{id} sounded no test");
        assert!(
            c.received().iter().any(|r| matches!(r.message, siren_proto::Message::TriggerLive(_))),
            "LIVE frames on the wire"
        );
    }
    // The test was pre-empted, and says so.
    let events = json(&request(daemon.http, "GET", "/api/events?kind=sounding_preempted", None, "").1);
    assert!(events[0]["detail"].as_str().unwrap().contains(&format!("campaign {test_id}")), "{events}");

    // Another request, rejected; and the first marked a false alarm.
    let (_, body) = request(daemon.http, "POST", "/api/activations", Some(&s.operator), ask);
    let reject = format!("/api/activations/{}/reject", json(&body)["id"]);
    let (status, body) = request(daemon.http, "POST", &reject, Some(&second), r#"{"reason":"wrong district"}"#);
    assert_eq!((status, json(&body)["state"].as_str()), (200, Some("rejected")), "{body}");
    let false_alarm = format!("/api/activations/{}/false-alarm", activation["id"]);
    let (status, body) = request(daemon.http, "POST", &false_alarm, Some(&s.operator), r#"{"reason":"drill"}"#);
    assert_eq!(status, 200, "{body}");
    assert!(json(&body)["false_alarm"].as_str().unwrap().contains("drill"), "{body}");
    for kind in ["live_requested", "live_approved", "live_started", "live_rejected", "live_false_alarm"] {
        let events = json(&request(daemon.http, "GET", &format!("/api/events?kind={kind}"), None, "").1);
        assert!(!events.as_array().unwrap().is_empty(), "no {kind} event");
    }
    devices.shutdown().await;
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_warning_on_a_pty_serial_bus_is_one_broadcast_and_one_step_stops_it() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options { sirens: 6, seed: 15, serial_share: 1.0, redundant_share: 0.0, ..Options::default() };
    let mut g = generate::generate(&options).unwrap();
    for (n, siren) in (0u16..).zip(g.fleet.sirens.iter_mut()) {
        siren.links = vec![Link::Serial { bus: "bus-c-1".into() }];
        siren.address = Address(17 + n);
    }
    let s = setup_fleet(dir.path(), 3600, g);
    let (second, loaded) = with_second_officer(&s.loaded.path, LIVE_BURST);
    let root = dir.path().canonicalize().unwrap();
    let _serial = s.sim.serve_serial("bus-c-1", 9600, Some(generate::pty_link(&root, "bus-c-1"))).unwrap();
    let daemon = Daemon::start(&loaded).await.unwrap();
    let ids: Vec<String> = loaded.fleet.sirens.iter().map(|x| x.id.clone()).collect();
    every_siren_heard(&daemon, &ids).await;
    let truth = |id: &str| lock(s.sim.controller(id).unwrap()).device.soundings().to_vec();
    let live = |signal: &str| {
        let ask = format!(r#"{{"signal":"{signal}","reason":"flood warning"}}"#);
        let (status, body) = request(daemon.http, "POST", "/api/activations", Some(&s.operator), &ask);
        assert_eq!(status, 201, "{body}");
        let id = json(&body)["id"].as_u64().unwrap();
        let (status, body) = request(daemon.http, "POST", &format!("/api/activations/{id}/approve"), Some(&second), "");
        assert_eq!(status, 200, "{body}");
        id
    };

    // A short warning: every siren sounds it, triggered by one broadcast TRIGGER_LIVE.
    let first = live("burst");
    let mut view = serde_json::Value::Null;
    wait_for("every siren done", || {
        view = json(&request(daemon.http, "GET", &format!("/api/activations/{first}"), None, "").1);
        view["counts"]["done"] == 6
    })
    .await;
    for id in &ids {
        let c = lock(s.sim.controller(id).unwrap());
        let triggers: Vec<_> =
            c.received().iter().filter(|r| matches!(r.message, siren_proto::Message::TriggerLive(_))).collect();
        assert!(triggers.len() == 1 && triggers[0].broadcast, "{id}: {triggers:?}");
        drop(c);
        assert!(truth(id).iter().any(|t| t.live && t.started.is_some()), "{id} sounded");
    }
    assert!(view["sirens"].as_array().unwrap().iter().all(|x| x["latency_ms"].as_i64() >= Some(0)), "{view:#}");

    // The air-raid signal, stopped in one step while it sounds: one broadcast STOP silences
    // the bus, then each siren confirms.
    let second_warning = live("air-raid");
    let sounding = |id: &str| lock(s.sim.controller(id).unwrap()).device.sounding_campaign();
    wait_for("every siren sounding", || ids.iter().all(|id| sounding(id).is_some())).await;
    let (status, body) = request(daemon.http, "POST", "/api/stop", Some(&s.operator), r#"{"zones":["hangzhou"]}"#);
    assert_eq!(status, 202, "{body}");
    let path = format!("/api/stop/{}", json(&body)["id"]);
    let mut sweep = serde_json::Value::Null;
    wait_for("every siren confirmed silent", || {
        sweep = json(&request(daemon.http, "GET", &path, None, "").1);
        sweep["pending"] == 0
    })
    .await;
    for id in &ids {
        assert_eq!(sounding(id), None, "{id} silent");
        let stopped = truth(id);
        assert!(stopped.iter().any(|t| t.live && t.outcome == siren_proto::message::Outcome::Aborted), "{stopped:?}");
        let c = lock(s.sim.controller(id).unwrap());
        assert!(
            c.received().iter().any(|r| r.broadcast && matches!(r.message, siren_proto::Message::Stop { .. })),
            "{id} got the broadcast STOP"
        );
    }
    let view = json(&request(daemon.http, "GET", &format!("/api/activations/{second_warning}"), None, "").1);
    assert_eq!(view["counts"]["stopped"], 6, "{view:#}");
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_warning_drawn_as_an_area_sounds_the_sirens_inside_it_only() {
    let dir = tempfile::tempdir().unwrap();
    let s = setup(dir.path(), 3600);
    let (second, loaded) = with_second_officer(&s.loaded.path, LIVE_BURST);
    let daemon = Daemon::start(&loaded).await.unwrap();
    let devices = s.sim.serve_mqtt(&mqtt_config(&s.url));
    let ids: Vec<String> = loaded.fleet.sirens.iter().map(|x| x.id.clone()).collect();
    every_siren_heard(&daemon, &ids).await;
    // Two small squares drawn around the first two sirens.
    let square = |i: usize| {
        let x = &loaded.fleet.sirens[i];
        let (lon, lat, d) = (x.longitude, x.latitude, 0.0005);
        serde_json::json!([[
            [lon - d, lat - d],
            [lon + d, lat - d],
            [lon + d, lat + d],
            [lon - d, lat + d],
            [lon - d, lat - d]
        ]])
    };
    let area = serde_json::json!({"type": "MultiPolygon", "coordinates": [square(0), square(1)]});
    let ask = |area: &serde_json::Value| {
        let body = serde_json::json!({"signal": "burst", "reason": "flash flood", "area": area}).to_string();
        request(daemon.http, "POST", "/api/activations", Some(&s.operator), &body)
    };
    // What is not an area, or holds no siren, is refused and requests nothing.
    let point = serde_json::json!({"type": "Point", "coordinates": [120.0, 30.0]});
    let (status, body) = ask(&point);
    assert_eq!((status, json(&body)["field"].as_str()), (422, Some("area")), "{body}");
    let empty =
        serde_json::json!({"type": "Polygon", "coordinates": [[[0.0, 0.0], [0.1, 0.0], [0.1, 0.1], [0.0, 0.0]]]});
    let (status, body) = ask(&empty);
    assert!(status == 422 && body.contains("no siren"), "{status} {body}");
    assert_eq!(json(&request(daemon.http, "GET", "/api/activations", None, "").1), serde_json::json!([]));

    let (status, body) = ask(&area);
    assert_eq!(status, 201, "{body}");
    let activation = json(&body);
    let mut targeted: Vec<String> =
        activation["sirens"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_owned()).collect();
    targeted.sort();
    let mut expected = ids[..2].to_vec();
    expected.sort();
    assert_eq!(targeted, expected, "{activation}");
    assert_eq!(activation["area"], area, "the drawn area is kept with the request");
    let id = activation["id"].as_u64().unwrap();
    let (status, body) = request(daemon.http, "POST", &format!("/api/activations/{id}/approve"), Some(&second), "");
    assert_eq!(status, 200, "{body}");
    let mut view = serde_json::Value::Null;
    wait_for("both sirens done", || {
        view = json(&request(daemon.http, "GET", &format!("/api/activations/{id}"), None, "").1);
        view["counts"]["done"] == 2
    })
    .await;
    assert_eq!(view["sirens"].as_array().unwrap().len(), 2, "{view:#}");
    for (i, id) in ids.iter().enumerate() {
        let truth = lock(s.sim.controller(id).unwrap()).device.soundings().to_vec();
        assert_eq!(truth.iter().any(|t| t.live && t.started.is_some()), i < 2, "{id}: {truth:?}");
    }
    devices.shutdown().await;
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_request_not_approved_within_its_window_expires_and_cannot_be_approved() {
    let dir = tempfile::tempdir().unwrap();
    let s = setup(dir.path(), 3600);
    let (second, loaded) = with_second_officer(&s.loaded.path, "[live]\napproval_window_s = 30\n");
    let daemon = Daemon::start(&loaded).await.unwrap();
    let ask = r#"{"zones":["hangzhou"],"signal":"pre-warning","reason":"storm surge"}"#;
    let (status, body) = request(daemon.http, "POST", "/api/activations", Some(&s.operator), ask);
    assert_eq!(status, 201, "{body}");
    let id = json(&body)["id"].as_u64().unwrap();
    let path = format!("/api/activations/{id}");
    // Nobody approves it: the daemon itself marks it expired once its window has passed.
    let expired = || json(&request(daemon.http, "GET", &path, None, "").1)["state"] == "expired";
    wait_within("the request expired", Duration::from_secs(120), expired).await;
    let (status, body) = request(daemon.http, "POST", &format!("{path}/approve"), Some(&second), "");
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("expired"), "{body}");
    let events = json(&request(daemon.http, "GET", "/api/events?kind=live_expired", None, "").1);
    assert_eq!(events.as_array().unwrap().len(), 1, "{events}");
    assert!(json(&request(daemon.http, "GET", &path, None, "").1)["campaign"].is_null(), "nothing sounded");
    daemon.stop().await;
}

/// A CAP 1.2 alert of the typhoon platform: `status`, `msg_type`, `identifier`, the polygon
/// (CAP's `lat,lon` pairs) and `references`.
fn cap_alert(status: &str, msg_type: &str, identifier: &str, polygon: &str, references: Option<&str>) -> String {
    let references = references.map(|r| format!("\n  <references>{r}</references>")).unwrap_or_default();
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">
  <identifier>{identifier}</identifier>
  <sender>typhoon@hz.example</sender>
  <sent>2026-09-17T08:00:00+08:00</sent>
  <status>{status}</status>
  <msgType>{msg_type}</msgType>
  <scope>Public</scope>{references}
  <info>
    <language>zh-CN</language>
    <category>Met</category>
    <event>台风</event>
    <urgency>Immediate</urgency>
    <severity>Extreme</severity>
    <certainty>Observed</certainty>
    <headline>台风红色预警</headline>
    <area>
      <areaDesc>沿海</areaDesc>
      <polygon>{polygon}</polygon>
    </area>
  </info>
</alert>"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cap_alerts_request_update_and_cancel_one_warning_and_exercises_and_bad_documents_never_sound_live() {
    let dir = tempfile::tempdir().unwrap();
    let s = setup(dir.path(), 3600);
    let [second, platform, mirror] = cap_config(&s.loaded.path);
    let loaded = Loaded::load(&s.loaded.path).unwrap();
    let daemon = Daemon::start(&loaded).await.unwrap();
    let devices = s.sim.serve_mqtt(&mqtt_config(&s.url));
    let ids: Vec<String> = loaded.fleet.sirens.iter().map(|x| x.id.clone()).collect();
    every_siren_heard(&daemon, &ids).await;
    let around = |which: &[usize]| box_around(&loaded.fleet, which);
    let inside = |polygon: &str| sirens_in_box(&loaded.fleet, polygon);
    let post = |token: &str, doc: &str| {
        let r = http::send(daemon.http, "POST", "/api/cap", Some(token), "application/cap+xml", doc).unwrap();
        (r.status, r.body)
    };
    let first_area = around(&[0]);
    let expected_first = inside(&first_area);
    assert!(!expected_first.is_empty() && expected_first.len() < ids.len(), "{expected_first:?}");

    refuses_bad_cap(&daemon, &platform, &s.operator, &first_area);

    // The typhoon warning: a LIVE request for the sirens inside its polygon.
    let alert = cap_alert("Actual", "Alert", "TY-1", &first_area, None);
    let (status, body) = post(&platform, &alert);
    assert_eq!(status, 200, "{body}");
    let received = json(&body);
    let first = received["activation"].as_u64().unwrap();
    assert!(received["outcome"].as_str().unwrap().contains("requested"), "{received}");
    assert_eq!(received["rule"], "typhoon");
    // The same alert from another feed: applied once.
    let (status, body) = post(&mirror, &alert);
    assert_eq!((status, json(&body)["activation"].as_u64()), (200, Some(first)), "{body}");
    let activations = json(&request(daemon.http, "GET", "/api/activations", None, "").1);
    assert_eq!(activations.as_array().unwrap().len(), 1, "{activations}");
    let mut targeted: Vec<String> =
        activations[0]["sirens"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_owned()).collect();
    targeted.sort();
    assert_eq!(targeted, expected_first);
    assert_eq!(activations[0]["requested_by"], "typhoon-platform");

    // Its update, before approval, over a larger area: the request is superseded by one for
    // the new area; the second person approves that one.
    let reference = "typhoon@hz.example,TY-1,2026-09-17T08:00:00+08:00";
    let second_area = around(&[0, 1]);
    let expected_second = inside(&second_area);
    assert!(expected_second.len() > expected_first.len(), "{expected_second:?}");
    let (status, body) = post(&platform, &cap_alert("Actual", "Update", "TY-2", &second_area, Some(reference)));
    assert_eq!(status, 200, "{body}");
    let updated = json(&body)["activation"].as_u64().unwrap();
    assert_ne!(updated, first);
    let old = json(&request(daemon.http, "GET", &format!("/api/activations/{first}"), None, "").1);
    assert_eq!(old["state"], "rejected", "{old}");
    let new = json(&request(daemon.http, "GET", &format!("/api/activations/{updated}"), None, "").1);
    assert_eq!(new["cap_alert"], "typhoon@hz.example,TY-2,2026-09-17T08:00:00+08:00", "linked to its alert: {new}");
    assert_eq!(new["updates"].as_u64(), Some(first), "{new}");
    let (status, body) =
        request(daemon.http, "POST", &format!("/api/activations/{updated}/approve"), Some(&second), "");
    assert_eq!(status, 200, "{body}");
    let mut view = serde_json::Value::Null;
    wait_for("the updated warning sounding or done", || {
        view = json(&request(daemon.http, "GET", &format!("/api/activations/{updated}"), None, "").1);
        view["sirens"].as_array().is_some_and(|v| v.len() == expected_second.len())
            && view["counts"]["pending"].is_null()
    })
    .await;

    // Its cancel stops that warning in one step, though it names only the first alert.
    let reference = "typhoon@hz.example,TY-1,2026-09-17T08:00:00+08:00";
    let (status, body) = post(&platform, &cap_alert("Actual", "Cancel", "TY-3", &second_area, Some(reference)));
    assert_eq!(status, 200, "{body}");
    let cancelled = json(&body);
    assert_eq!(cancelled["activation"].as_u64(), Some(updated), "{cancelled}");
    assert!(cancelled["outcome"].as_str().unwrap().contains("stopped"), "{cancelled}");
    let events = json(&request(daemon.http, "GET", "/api/events?kind=stop_requested", None, "").1);
    assert!(events[0]["detail"].as_str().unwrap().contains("cancelled by CAP"), "{events}");

    // An exercise never sounds LIVE (this rule records it only).
    let (status, body) = post(&platform, &cap_alert("Exercise", "Alert", "EX-1", &first_area, None));
    assert_eq!(status, 200, "{body}");
    assert!(
        json(&body)["activation"].is_null() && json(&body)["outcome"].as_str().unwrap().contains("Exercise"),
        "{body}"
    );
    assert_eq!(json(&body)["rule"], "typhoon", "the rule that matched is recorded: {body}");
    // A flood drill whose rule says so becomes a TEST sounding of the same sirens' zones.
    // (Over a siren in none of the warning's zones: a test never shares a siren with it.)
    let zone_of = |id: &str| loaded.fleet.sirens.iter().find(|x| x.id == id).unwrap().zone.to_string();
    let warned: Vec<String> = expected_second.iter().map(|id| zone_of(id)).collect();
    let apart = (0..ids.len())
        .find(|&i| !warned.iter().any(|z| zone_of(&ids[i]).starts_with(z.as_str()) || z.starts_with(&zone_of(&ids[i]))))
        .unwrap();
    let drill = cap_alert("Exercise", "Alert", "EX-2", &around(&[apart]), None).replace("台风", "洪水");
    let (status, body) = post(&platform, &drill);
    assert_eq!(status, 200, "{body}");
    let sounding = json(&body)["sounding"].as_u64().unwrap_or_else(|| panic!("{body}"));
    let campaign = json(&request(daemon.http, "GET", &format!("/api/soundings/{sounding}"), None, "").1);
    assert_eq!(campaign["kind"], "test", "{campaign}");
    let activations = json(&request(daemon.http, "GET", "/api/activations", None, "").1);
    assert_eq!(activations.as_array().unwrap().len(), 2, "no activation for the exercises: {activations}");

    // The feed: the warning that sounded as an Alert, its stop as a Cancel referencing it.
    check_feed(&daemon, dir.path(), updated, expected_second.len());

    let listed = json(&request(daemon.http, "GET", "/api/cap/alerts", None, "").1);
    assert_eq!(listed.as_array().unwrap().len(), 5, "{listed:#}");
    let counted = daemon.metrics.encode();
    assert!(
        counted.contains("sirend_cap_alerts_total{source=\"typhoon-platform\",outcome=\"refused\"} 2"),
        "{counted}"
    );
    assert!(counted.contains("sirend_cap_alerts_total{source=\"typhoon-mirror\",outcome=\"duplicate\"} 1"));
    devices.shutdown().await;
    daemon.stop().await;
}

/// Checks the Atom feed is well-formed and each CAP document valid against the CAP 1.2 schema
/// at `SIRENNET_CAP_XSD` (OASIS's CAP-v1.2.xsd; `.ci/run` fetches it), with xmllint. Skipped
/// where either is missing, unless `SIRENNET_REQUIRE_CAP_XSD` is set.
fn valid_cap(dir: &Path, feed: &str, documents: &[&str]) {
    const REQUIRE: &str = "SIRENNET_REQUIRE_CAP_XSD";
    let Some(xmllint) = sirennet_e2e::tools::find_required_by(&["xmllint"], REQUIRE) else { return };
    let Some(schema) = std::env::var_os("SIRENNET_CAP_XSD") else {
        assert!(std::env::var_os(REQUIRE).is_none(), "SIRENNET_CAP_XSD is not set ({REQUIRE} is)");
        eprintln!("SIRENNET_CAP_XSD is not set: the CAP schema check is skipped");
        return;
    };
    let lint = |name: &str, text: &str, schema: Option<&std::ffi::OsStr>| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        let mut command = std::process::Command::new(&xmllint);
        command.arg("--noout");
        if let Some(schema) = schema {
            command.arg("--schema").arg(schema);
        }
        let out = command.arg(&path).output().unwrap();
        assert!(out.status.success(), "{name}: {}\n{text}", String::from_utf8_lossy(&out.stderr));
    };
    lint("feed.atom", feed, None);
    for (i, doc) in documents.iter().enumerate() {
        let text = format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n{doc}");
        lint(&format!("alert-{i}.xml"), &text, Some(&schema));
    }
}

/// Adds a second officer, two CAP platforms' tokens (`submit_cap`), a typhoon signal and the
/// rules to the configuration at `path`; returns the three tokens.
fn cap_config(path: &Path) -> [String; 3] {
    let (second, entry) = new_token("second-officer", Role::Operator);
    let (platform, platform_entry) = new_token("typhoon-platform", Role::Viewer);
    let (mirror, mirror_entry) = new_token("typhoon-mirror", Role::Viewer);
    let mut text = std::fs::read_to_string(path).unwrap();
    write!(
        text,
        "\n{entry}\n{platform_entry}permissions = [\"submit_cap\"]\n\n{mirror_entry}permissions = [\"submit_cap\"]\n\n\
         [live]\n[[live.signals]]\nname = \"typhoon\"\nsequence = [{{ pattern = \"chime\" }}]\n\n\
         [[cap.rules]]\nname = \"typhoon\"\nevent = \"台风\"\nseverity = [\"Severe\", \"Extreme\"]\nsignal = \"typhoon\"\n\n\
         [[cap.rules]]\nname = \"flood drill\"\nevent = \"洪水\"\nsignal = \"typhoon\"\nexercise = \"test\"\n"
    )
    .unwrap();
    std::fs::write(path, text).unwrap();
    [second, platform, mirror]
}

/// A CAP polygon (`lat,lon` pairs) around the bounding box of sirens `which`, 0.0005° wider.
fn box_around(fleet: &siren_proto::fleet::Fleet, which: &[usize]) -> String {
    let sirens: Vec<_> = which.iter().map(|&i| &fleet.sirens[i]).collect();
    let south = sirens.iter().map(|x| x.latitude).fold(90.0, f64::min) - 0.0005;
    let north = sirens.iter().map(|x| x.latitude).fold(-90.0, f64::max) + 0.0005;
    let west = sirens.iter().map(|x| x.longitude).fold(180.0, f64::min) - 0.0005;
    let east = sirens.iter().map(|x| x.longitude).fold(-180.0, f64::max) + 0.0005;
    format!("{south},{west} {south},{east} {north},{east} {north},{west} {south},{west}")
}

/// The sirens inside a polygon made by [`box_around`], sorted.
fn sirens_in_box(fleet: &siren_proto::fleet::Fleet, polygon: &str) -> Vec<String> {
    let corners: Vec<(f64, f64)> = polygon
        .split(' ')
        .map(|p| {
            let (lat, lon) = p.split_once(',').unwrap();
            (lat.parse().unwrap(), lon.parse().unwrap())
        })
        .collect();
    let ((south, west), (north, east)) = (corners[0], corners[2]);
    let mut inside: Vec<String> = fleet
        .sirens
        .iter()
        .filter(|x| (south..=north).contains(&x.latitude) && (west..=east).contains(&x.longitude))
        .map(|x| x.id.clone())
        .collect();
    inside.sort();
    inside
}

/// The CAP feed holds the warning that sounded (`activation`, over `sirens` sirens) as an
/// Alert with one circle per siren, and its stop as a Cancel referencing it; each document
/// is valid against the CAP 1.2 schema.
fn check_feed(daemon: &Daemon, dir: &Path, activation: u64, sirens: usize) {
    let feed = request(daemon.http, "GET", "/api/cap.atom", None, "").1;
    let documents: Vec<&str> = feed
        .split("<content type=\"application/cap+xml\">")
        .skip(1)
        .map(|c| c.split("</content>").next().unwrap())
        .collect();
    assert_eq!(documents.len(), 2, "{feed}");
    assert!(documents[0].contains("<msgType>Cancel</msgType>"), "{feed}");
    assert!(documents[0].contains(&format!("sirend-activation-{activation},")), "references the alert: {feed}");
    assert!(documents[1].contains("<msgType>Alert</msgType>"), "{feed}");
    assert_eq!(documents[1].matches("<circle>").count(), sirens, "one circle per siren: {feed}");
    valid_cap(dir, &feed, &documents);
}

/// What a test feed server answers on a path: after `delay`, `status` and `body`.
type Routes = std::collections::HashMap<String, (Duration, u16, String)>;

/// A plain HTTP server for CAP feeds, on a port of its own; one request per connection.
async fn serve_feeds(routes: Routes) -> SocketAddr {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let routes = Arc::new(routes);
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let routes = Arc::clone(&routes);
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let text = String::from_utf8_lossy(&request);
                let path = text.split_whitespace().nth(1).unwrap_or("/").to_owned();
                let (delay, status, body) = routes.get(&path).cloned().unwrap_or((Duration::ZERO, 404, String::new()));
                tokio::time::sleep(delay).await;
                let head =
                    format!("HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
                let _ = conn.write_all(head.as_bytes()).await;
                let _ = conn.write_all(body.as_bytes()).await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cap_feeds_are_polled_the_same_alert_from_two_applies_once_and_slow_or_failing_feeds_do_no_harm() {
    let dir = tempfile::tempdir().unwrap();
    let s = setup(dir.path(), 3600);
    let [_, _, _] = cap_config(&s.loaded.path);
    let fleet = Loaded::load(&s.loaded.path).unwrap().fleet;
    let alert = cap_alert("Actual", "Alert", "TY-9", &box_around(&fleet, &[0]), None);
    let atom = "<feed xmlns=\"http://www.w3.org/2005/Atom\"><title>a</title><entry><id>1</id>\
        <link rel=\"alternate\" href=\"/a/page\"/><link type=\"application/cap+xml\" href=\"/a/ty.xml\"/></entry></feed>";
    let rss = "<rss version=\"2.0\"><channel><title>b</title><item><link>/b/ty.xml</link></item></channel></rss>";
    let second = Duration::from_secs(1);
    let routes: Routes = [
        ("/a/index.atom", (Duration::ZERO, 200, atom.to_owned())),
        ("/a/ty.xml", (Duration::ZERO, 200, alert.clone())),
        ("/b/index.rss", (Duration::ZERO, 200, rss.to_owned())),
        ("/b/ty.xml", (Duration::ZERO, 200, alert)),
        ("/slow/index.atom", (5 * second, 200, atom.to_owned())),
        ("/broken/index.atom", (Duration::ZERO, 500, "oops".to_owned())),
    ]
    .into_iter()
    .map(|(p, r)| (p.to_owned(), r))
    .collect();
    let server = serve_feeds(routes).await;
    let mut text = std::fs::read_to_string(&s.loaded.path).unwrap();
    for (name, path) in [
        ("feed-a", "a/index.atom"),
        ("feed-b", "b/index.rss"),
        ("slow", "slow/index.atom"),
        ("broken", "broken/index.atom"),
    ] {
        write!(
            text,
            "\n[[cap.feeds]]\nname = \"{name}\"\nurl = \"http://{server}/{path}\"\ninterval_s = 1\ntimeout_s = 1\nmax_backoff_s = 4\n"
        )
        .unwrap();
    }
    std::fs::write(&s.loaded.path, text).unwrap();
    let loaded = Loaded::load(&s.loaded.path).unwrap();
    let daemon = Daemon::start(&loaded).await.unwrap();
    let metric = |series: &str| {
        daemon.metrics.encode().lines().find_map(|l| l.strip_prefix(series)?.trim().parse::<f64>().ok()).unwrap_or(0.0)
    };
    let polls = |feed: &str, outcome: &str| {
        metric(&format!("sirend_cap_feed_polls_total{{source=\"{feed}\",outcome=\"{outcome}\"}}"))
    };
    wait_for("both feeds read, the slow and the broken one failed", || {
        polls("feed-a", "ok") >= 1.0
            && polls("feed-b", "ok") >= 1.0
            && polls("slow", "failed") >= 1.0
            && polls("broken", "failed") >= 1.0
    })
    .await;
    let listed = json(&request(daemon.http, "GET", "/api/cap/alerts", None, "").1);
    assert_eq!(listed.as_array().unwrap().len(), 1, "applied once: {listed:#}");
    assert!(listed[0]["outcome"].as_str().unwrap().contains("requested"), "{listed:#}");
    let activations = json(&request(daemon.http, "GET", "/api/activations", None, "").1);
    assert_eq!(activations.as_array().unwrap().len(), 1, "{activations}");
    let first = listed[0]["source"].as_str().unwrap().to_owned();
    let other = if first == "feed-a" { "feed-b" } else { "feed-a" };
    assert!(metric(&format!("sirend_cap_alerts_total{{source=\"{other}\",outcome=\"duplicate\"}}")) >= 1.0);
    assert_eq!(request(daemon.http, "GET", "/readyz", None, "").0, 200, "the daemon is unharmed");
    daemon.stop().await;
}

/// Invalid CAP documents are refused with the reason, a token without `submit_cap` is refused,
/// and nothing is requested.
fn refuses_bad_cap(daemon: &Daemon, platform: &str, operator: &str, area: &str) {
    let post = |token: &str, doc: &str| {
        let r = http::send(daemon.http, "POST", "/api/cap", Some(token), "application/cap+xml", doc).unwrap();
        (r.status, r.body)
    };
    let invalid = cap_alert("Actual", "Alert", "TY-1", area, None).replace("<urgency>Immediate</urgency>", "");
    let (status, body) = post(platform, &invalid);
    assert!(status == 422 && body.contains("urgency"), "{status} {body}");
    let (status, body) = post(platform, "<alert>not CAP</alert>");
    assert_eq!(status, 422, "{body}");
    assert_eq!(post(operator, &invalid).0, 403, "no submit_cap");
    assert_eq!(json(&request(daemon.http, "GET", "/api/activations", None, "").1), serde_json::json!([]));
}

/// `[live]` with a short signal, `burst` (one chime).
const LIVE_BURST: &str = "[live]\n[[live.signals]]\nname = \"burst\"\nsequence = [{ pattern = \"chime\" }]\n";

/// Adds a second officer's token (an operator) and `live` (TOML text) to the configuration
/// at `path`; returns the token and the configuration loaded.
fn with_second_officer(path: &Path, live: &str) -> (String, Loaded) {
    let (second, entry) = new_token("second-officer", Role::Operator);
    let mut text = std::fs::read_to_string(path).unwrap();
    write!(text, "\n{entry}\n{live}").unwrap();
    std::fs::write(path, text).unwrap();
    (second, Loaded::load(path).unwrap())
}

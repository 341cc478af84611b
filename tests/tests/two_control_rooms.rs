//! Two control rooms: two sirend processes on one real PostgreSQL database (where
//! `SIRENNET_POSTGRES_URL` names a server; CI starts one), simulated sirens on an MQTT broker
//! both reach and on serial lines served by device servers (TCP). One daemon leads; the tests
//! kill it (SIGKILL) while a sounding is being armed, or cut it off from the database (the
//! connections closed, or held open and silent), and check against the simulated devices' own
//! records that the standby took over in time, that the sounding started on time everywhere,
//! that no device saw a replayed counter, and that no device was commanded by both daemons at
//! any moment.
#![allow(clippy::unwrap_used, reason = "test helpers may panic on impossible states")]

use std::path::Path;
use std::time::{Duration, Instant};

use siren_sim::fleet::lock;
use sirend::store::{Location, Store};
use sirennet_e2e::http;
use sirennet_e2e::proxy::Proxy;
use sirennet_e2e::rooms::setup;
use sirennet_e2e::wait::{wait_explaining, wait_for, wait_within};

/// The daemon's process, built with these tests.
fn node() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_sirend_node"))
}

fn json(r: &http::Response) -> serde_json::Value {
    r.json()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_killed_while_arming_is_replaced_in_time_and_every_siren_sounds_on_time() {
    let Some((mut s, _)) = setup(node(), 36, 22, false) else { return };
    s.a_leads_b_stands_by().await;
    let a = s.rooms[0].http;
    let id = {
        let list = json(&http::get(a, "/api/soundings"));
        list.as_array().unwrap().iter().find(|c| c["schedule"] == "e2e-chime").unwrap()["id"].as_u64().unwrap()
    };
    let path = format!("/api/soundings/{id}");
    wait_within("some siren armed by room A", Duration::from_secs(90), || {
        let c = json(&http::get(a, &path));
        c["phase"] == "arming" && c["sirens"].as_array().unwrap().iter().any(|t| t["armed"] == true)
    })
    .await;
    let before = {
        let store = Store::open_at(&Location::Postgres(s.db.url.clone())).unwrap();
        store.events(&sirend::store::EventQuery { limit: 100_000, ..Default::default() }).unwrap()
    };
    s.rooms[0].kill();
    let killed = Instant::now();
    let leases = s.stored_leases();
    let b = &s.rooms[1];
    wait_for("room B leads", || b.leads()).await;
    let takeover = killed.elapsed();
    println!("takeover after SIGKILL: {} ms", takeover.as_millis());
    assert!(takeover <= Duration::from_secs(10), "took over {takeover:?} after the leader died\n{}", b.log());
    let epoch = b.leadership().unwrap()["epoch"].as_i64().unwrap();
    assert!(epoch >= 2, "a new term: epoch {epoch}");

    let mut report = serde_json::Value::Null;
    wait_within("the sounding verified by room B", Duration::from_secs(90), || {
        report = json(&http::get(b.http, &path));
        report["phase"] == "done"
    })
    .await;
    assert_eq!(report["passed"], 6, "{report:#}\n{}", b.log());
    let instant = report["instant"].as_str().unwrap().parse::<jiff::Timestamp>().unwrap().as_microsecond();
    for (sid, _) in &s.sirens {
        let truth = lock(s.sim.controller(sid).unwrap()).device.soundings().to_vec();
        assert_eq!(truth.len(), 1, "{sid} sounded once: {truth:?}");
        let started = truth[0].started.unwrap();
        assert!((started - instant).abs() < 250_000, "{sid} started {} µs off", started - instant);
    }
    let (last_old, first_new, old, new) = s.commands_by_leader(&leases);
    assert!(old > 0 && new > 0, "both daemons commanded in turn: {old} then {new}");
    assert!(last_old < first_new, "room A's last frame arrived after room B's first");
    // Nothing room A had committed is lost: room B serves every event of it.
    let after = json(&http::get(b.http, "/api/events?limit=10000"));
    let served: std::collections::HashSet<i64> =
        after.as_array().unwrap().iter().filter_map(|e| e["id"].as_i64()).collect();
    assert!(before.iter().all(|e| served.contains(&e.id)), "events committed before the kill are all there");

    // The dead leader comes back as a standby, and writes sent to it are the leader's.
    s.rooms[0].start();
    let a_room = &s.rooms[0];
    wait_for("room A back, standing by for B", || a_room.leader().as_deref() == Some("room-b")).await;
    assert!(!a_room.leads());
    let at = (jiff::Timestamp::now() + jiff::SignedDuration::from_secs(3600)).to_string();
    let body = format!(r#"{{"at":"{at}","kind":"test","sequence":[{{"pattern":"chime"}}]}}"#);
    let r = http::request(a_room.http, "POST", "/api/soundings", Some(&s.operator), &body);
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.header("x-sirennet-leader"), Some("room-b"), "answered by the leader");
    // The leader's audit log says the write came through room A, and from where.
    let audit = json(&http::request(s.rooms[1].http, "GET", "/api/audit", Some(&s.admin), ""));
    let entry = audit.as_array().unwrap().iter().rev().find(|e| e["action"] == "schedule-sounding").cloned();
    let client = entry.as_ref().and_then(|e| e["client"].as_str()).unwrap_or_default();
    assert_eq!(client, "127.0.0.1 (room-a, for 127.0.0.1)", "{audit:#}");
    // What only the leader's engine holds is read from it too (the console's warning banner).
    let r = http::get(a_room.http, "/api/activations");
    assert_eq!((r.status, r.header("x-sirennet-leader")), (200, Some("room-b")), "{}", r.body);
    let planned = json(&http::get(s.rooms[1].http, "/api/soundings"));
    assert!(
        planned.as_array().unwrap().iter().any(|c| c["instant"].as_str().is_some_and(|i| i.starts_with(&at[..16])))
    );
    if let Some(d) = s.devices.take() {
        d.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_cut_off_from_the_database_stops_commanding_before_the_standby_starts() {
    leader_partitioned_from_the_database(Proxy::cut).await;
}

/// The partition WANs mostly have: nothing answers, and nothing says so (no reset, no FIN; the
/// bytes sent are held, and delivered late when the partition heals).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_database_falls_silent_stops_commanding_before_the_standby_starts() {
    leader_partitioned_from_the_database(Proxy::stall).await;
}

/// Room A leads, then `partition` separates it from the database: it stands down before room B
/// takes over, the devices never hear both, and once the database is back A stays a standby.
async fn leader_partitioned_from_the_database(partition: fn(&Proxy)) {
    let Some((mut s, proxy)) = setup(node(), 3600, 10, true) else { return };
    let proxy = proxy.unwrap();
    s.a_leads_b_stands_by().await;
    partition(&proxy);
    let cut = Instant::now();
    let leases = s.stored_leases();
    let (a, b) = (&s.rooms[0], &s.rooms[1]);
    wait_for("room A stops leading", || a.leadership().is_some_and(|l| l["leads"] == false)).await;
    let stepped_down = cut.elapsed();
    wait_for("room B leads", || b.leads()).await;
    let took_over = cut.elapsed();
    println!("cut off: A stood down after {stepped_down:?}, B led after {took_over:?}");
    assert!(stepped_down < took_over, "A stood down ({stepped_down:?}) before B took over ({took_over:?})");
    // Room B commands every siren (polls, status requests) before the devices are read.
    let ids: Vec<&(String, u32)> = leases.iter().collect();
    let commanded = |(id, end): &&(String, u32)| {
        lock(s.sim.controller(id).unwrap()).received().iter().any(|r| !r.broadcast && r.counter >= *end)
    };
    wait_explaining(
        "room B has commanded every siren",
        || ids.iter().all(commanded),
        || {
            let missing: Vec<_> = ids
                .iter()
                .filter(|x| !commanded(x))
                .map(|(id, _)| {
                    let c = lock(s.sim.controller(id).unwrap());
                    (id, c.rejected().to_vec(), c.received().iter().map(|r| r.counter).collect::<Vec<_>>())
                })
                .collect();
            format!("not commanded: {missing:?}\nB:\n{}", b.log())
        },
    )
    .await;
    let (last_old, first_new, old, new) = s.commands_by_leader(&leases);
    assert!(old > 0 && new > 0, "both daemons commanded in turn: {old} then {new}");
    assert!(
        last_old < first_new,
        "room A's last frame arrived {} ms after room B's first",
        (last_old - first_new) / 1000
    );
    // The database back, room A stays a standby of B's.
    proxy.restore();
    wait_for("room A sees room B lead", || a.leader().as_deref() == Some("room-b")).await;
    assert!(!a.leads(), "{}", a.log());
    assert!(b.leads());
    if let Some(d) = s.devices.take() {
        d.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_warning_sounding_when_the_leader_dies_is_carried_on_and_stopped_in_one_step() {
    let Some((mut s, _)) = setup(node(), 3600, 10, false) else { return };
    s.a_leads_b_stands_by().await;
    let a = s.rooms[0].http;
    let ask = r#"{"signal":"air-raid","reason":"air raid expected: failover test"}"#;
    let r = http::request(a, "POST", "/api/activations", Some(&s.operator), ask);
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.json()["id"].as_u64().unwrap();
    let r = http::request(a, "POST", &format!("/api/activations/{id}/approve"), Some(&s.second), "");
    assert_eq!(r.status, 200, "{}", r.body);
    let sounding = |s: &sirennet_e2e::rooms::Setup| {
        s.sirens
            .iter()
            .filter(|(id, _)| lock(s.sim.controller(id).unwrap()).device.sounding_campaign().is_some())
            .count()
    };
    wait_for("every siren sounding the warning", || sounding(&s) == s.sirens.len()).await;

    s.rooms[0].kill();
    let b = &s.rooms[1];
    wait_for("room B leads", || b.leads()).await;
    // Room B knows the warning it inherited: it shows it, lets it sound, and does not take
    // the sirens for ones nobody ordered (it would stop them).
    let view = json(&http::get(b.http, &format!("/api/activations/{id}")));
    assert_eq!(view["state"], "approved", "{view:#}");
    let heard_since = Instant::now();
    wait_for("room B has heard every siren's status", || {
        heard_since.elapsed() > Duration::from_secs(6)
            && json(&http::get(b.http, "/api/sirens")).as_array().unwrap().iter().all(|x| x["state"] == "ok")
    })
    .await;
    assert_eq!(sounding(&s), s.sirens.len(), "the warning still sounds on every siren\n{}", b.log());
    let uncommanded = json(&http::get(b.http, "/api/events?kind=uncommanded_activation"));
    assert!(uncommanded.as_array().unwrap().is_empty(), "taken for uncommanded: {uncommanded}");

    // One step stops it, from the new leader.
    let r = http::request(b.http, "POST", "/api/stop", Some(&s.operator), r#"{"reason":"failover test over"}"#);
    assert!(matches!(r.status, 200 | 202), "{}", r.body);
    let sweep = r.json()["id"].as_u64().unwrap();
    wait_explaining(
        "every siren silent",
        || sounding(&s) == 0,
        || {
            let still: Vec<&String> = s
                .sirens
                .iter()
                .filter(|(id, _)| lock(s.sim.controller(id).unwrap()).device.sounding_campaign().is_some())
                .map(|(id, _)| id)
                .collect();
            let sweep = http::get(b.http, &format!("/api/stop/{sweep}")).body;
            format!("still sounding: {still:?}\nsweep: {sweep}\n{}", b.log())
        },
    )
    .await;
    // Carried on, not started again: one LIVE sounding per siren, which the stop ended.
    for (sid, _) in &s.sirens {
        let truth = lock(s.sim.controller(sid).unwrap()).device.soundings().to_vec();
        assert!(truth.len() == 1 && truth[0].live && truth[0].ended.is_some(), "{sid}: {truth:?}");
    }
    if let Some(d) = s.devices.take() {
        d.shutdown().await;
    }
}

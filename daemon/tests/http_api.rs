//! The HTTP API over a real socket: reads, errors for bad input, and writes that need a token
//! of the right role and are audited whether accepted or refused.
#![allow(clippy::unwrap_used, reason = "test helpers may panic on impossible states")]

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex, RwLock};

use jiff::Timestamp;
use siren_proto::message::FaultBits;
use siren_sim::generate::{self, Options};
use sirend::auth::{Role, Tokens, new_token};
use sirend::config::Token;
use sirend::coverage::Coverage;
use sirend::coverage::layout::{self, SirenSpot};
use sirend::fleet::FleetState;
use sirend::http::{AppState, router};
use sirend::liveness::{Observation, Policy};
use sirend::metrics::Metrics;
use sirend::store::Store;

/// Sends one request and returns the status code and body.
/// One request as HTTP/1.0, so that a streamed body (`/metrics`) comes whole, not chunked.
fn request(addr: SocketAddr, method: &str, path: &str, token: Option<&str>, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: x\r\nConnection: close\r\n{auth}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).unwrap();
    let status = response.split(' ').nth(1).unwrap().parse().unwrap();
    let body = response.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
    (status, body)
}

/// Sends a GET and returns the raw head and body.
fn get_raw(addr: SocketAddr, path: &str) -> (String, Vec<u8>) {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut response = Vec::new();
    s.read_to_end(&mut response).unwrap();
    let split = response.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    (String::from_utf8_lossy(&response[..split]).into_owned(), response[split + 4..].to_vec())
}

struct Api {
    addr: SocketAddr,
    store: Arc<Store>,
    operator: String,
    viewer: String,
    admin: String,
    /// An operator of one district (the first siren's), and a token that may only read.
    district: String,
    reader: String,
    /// The first siren's district, and a siren outside it.
    district_zone: String,
    outsider: String,
    _dir: tempfile::TempDir,
}

async fn api() -> Api {
    api_with(sirend::http::Access::default()).await
}

async fn api_with(access: sirend::http::Access) -> Api {
    let dir = tempfile::tempdir().unwrap();
    let g = generate::generate(&Options { sirens: 5, seed: 9, ..Options::default() }).unwrap();
    let mut fleet = FleetState::new(&g.fleet.sirens, Policy { down_after_misses: 3 }, Timestamp::now());
    let first_link = g.fleet.sirens[0].links[0].to_string();
    let _ = fleet.observe(
        0,
        &Observation::Heard { link: first_link, faults: Some(FaultBits(FaultBits::DOOR_OPEN)) },
        Timestamp::now(),
    );
    let fleet = Arc::new(RwLock::new(fleet));
    let spots: Vec<SirenSpot<'_>> = g.fleet.sirens.iter().map(SirenSpot::from).collect();
    let built = layout::build(&sirend::config::Coverage::default(), &spots, None, None).unwrap();
    let mut coverage = Coverage::new(built, g.fleet.sirens.iter().map(|s| s.id.clone()).collect());
    coverage.set_able(0, true);
    let coverage = Arc::new(Mutex::new(coverage));
    let metrics = Arc::new(Metrics::new(Arc::clone(&fleet), Some(Arc::clone(&coverage))));
    let mut tokens = Vec::new();
    let mut secrets = Vec::new();
    let district_zone = g.fleet.sirens[0].zone.levels().take(2).collect::<Vec<_>>().join("/");
    let outsider = g.fleet.sirens.iter().find(|s| !s.zone.is_within(&district_zone)).unwrap().id.clone();
    for (name, role, permissions, zones) in [
        ("ops", Role::Operator, None, vec![]),
        ("watch", Role::Viewer, None, vec![]),
        ("root", Role::Admin, None, vec![]),
        ("district-office", Role::Operator, None, vec![district_zone.clone()]),
        ("reader", Role::Operator, Some(vec![sirend::auth::Permission::Read]), vec![]),
    ] {
        let (secret, entry) = new_token(name, role);
        let hash = entry.lines().find_map(|l| l.strip_prefix("sha256 = \"")).unwrap().trim_end_matches('"').to_owned();
        tokens.push(Token { name: name.into(), role, sha256: hash, permissions, zones });
        secrets.push(secret);
    }
    let store = Arc::new(Store::open(&dir.path().join("sirend.db")).unwrap());
    let state = AppState {
        fleet,
        store: Arc::clone(&store),
        metrics,
        tokens: Arc::new(Tokens::new(&tokens)),
        refusals: Arc::default(),
        coverage: Some(coverage),
        engine: None,
        cluster: sirend::http::cluster::Cluster::alone(),
        views: Arc::default(),
        access,
        console: Arc::default(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let limits = sirend::http::server::Limits::default();
    tokio::spawn(sirend::http::server::serve(listener, router(state), limits, || {}));
    let [operator, viewer, admin, district, reader] = <[String; 5]>::try_from(secrets).unwrap();
    Api { addr, store, operator, viewer, admin, district, reader, district_zone, outsider, _dir: dir }
}

/// `promtool check metrics` must accept the exposition. Runs where promtool is installed; CI
/// installs it and sets `SIRENNET_REQUIRE_PROMETHEUS` so that it cannot be skipped there.
fn promtool_accepts(metrics: &str) {
    let Ok(mut child) = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
    else {
        assert!(std::env::var_os("SIRENNET_REQUIRE_PROMETHEUS").is_none(), "promtool is required but not installed");
        eprintln!("promtool is not installed here: check skipped");
        return;
    };
    child.stdin.take().unwrap().write_all(metrics.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_work_without_a_token_and_bad_input_gets_a_clear_error() {
    let api = api().await;
    let addr = api.addr;
    tokio::task::spawn_blocking(move || {
        let (status, body) = request(addr, "GET", "/api/sirens", None, "");
        assert_eq!(status, 200);
        let sirens: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(sirens.as_array().unwrap().len(), 5);
        assert_eq!(sirens[0]["state"], "degraded");
        assert_eq!(sirens[0]["faults"][0], "door_open");
        let id = sirens[0]["id"].as_str().unwrap().to_owned();
        assert_eq!(request(addr, "GET", &format!("/api/sirens/{id}"), None, "").0, 200);
        let (status, body) = request(addr, "GET", "/api/sirens/NOPE", None, "");
        assert_eq!(status, 404);
        assert!(body.contains("no siren `NOPE`"));
        let (status, body) = request(addr, "GET", "/api/events?since=yesterday", None, "");
        assert_eq!(status, 400);
        assert!(body.contains("RFC 3339"), "{body}");
        assert_eq!(request(addr, "GET", "/healthz", None, "").0, 200);
        assert_eq!(request(addr, "GET", "/readyz", None, "").0, 200);
        let (status, metrics) = request(addr, "GET", "/metrics", None, "");
        assert_eq!(status, 200);
        assert!(metrics.contains("siren_state{siren=\""));
        assert!(metrics.contains("# TYPE siren_frames_rejected_total counter"), "classic format by default");
        promtool_accepts(&metrics);
        assert!(metrics.contains("# TYPE siren_info gauge") && metrics.contains("siren_info{siren=\""), "info metric");
        assert!(metrics.contains("siren_coverage_ratio{zone=\"hangzhou\",basis=\"area\"}"), "{metrics}");
        assert!(metrics.contains("siren_sole_coverage_area_square_meters{siren=\""));
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_need_a_token_of_the_right_role_and_are_audited() {
    let api = api().await;
    let (addr, operator, viewer, admin) = (api.addr, api.operator.clone(), api.viewer.clone(), api.admin.clone());
    tokio::task::spawn_blocking(move || {
        let sirens: serde_json::Value = serde_json::from_str(&request(addr, "GET", "/api/sirens", None, "").1).unwrap();
        let id = sirens[0]["id"].as_str().unwrap().to_owned();
        let path = format!("/api/sirens/{id}/ack");
        assert_eq!(request(addr, "POST", &path, None, "").0, 401);
        assert_eq!(request(addr, "POST", &path, Some("not-a-token"), "").0, 401);
        let (status, body) = request(addr, "POST", &path, Some(&viewer), "");
        assert_eq!(status, 403);
        assert!(body.contains("needs the `acknowledge` permission"), "{body}");
        assert_eq!(request(addr, "POST", &path, Some(&operator), "{\"nope\": 1}").0, 400, "unknown fields refused");
        let overlong_note = format!("{{\"note\": \"{}\"}}", "x".repeat(1001));
        let (status, body) = request(addr, "POST", &path, Some(&operator), &overlong_note);
        assert_eq!(status, 422, "a note over 1000 characters: {body}");
        assert!(body.contains("\"field\":\"note\""), "{body}");
        let (status, body) = request(addr, "POST", &path, Some(&operator), "{\"note\": \"crew sent\"}");
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("door_open"));
        let after: serde_json::Value =
            serde_json::from_str(&request(addr, "GET", &format!("/api/sirens/{id}"), None, "").1).unwrap();
        assert_eq!(after["acknowledged"]["by"], "ops");
        assert_eq!(after["acknowledged"]["note"], "crew sent");
        // Answered means in the event log: a read right after shows it.
        let events: serde_json::Value =
            serde_json::from_str(&request(addr, "GET", "/api/events?kind=acknowledged", None, "").1).unwrap();
        assert!(events[0]["detail"].as_str().is_some_and(|d| d.contains("by ops: crew sent")), "{events}");
        // The audit log is for admins, and it has every attempt.
        assert_eq!(request(addr, "GET", "/api/audit", Some(&operator), "").0, 403);
        let (status, body) = request(addr, "GET", "/api/audit", Some(&admin), "");
        assert_eq!(status, 200);
        let log: serde_json::Value = serde_json::from_str(&body).unwrap();
        let entries: Vec<(String, bool)> = log
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["action"] == "acknowledge")
            .map(|e| (e["actor"].as_str().unwrap().to_owned(), e["allowed"].as_bool().unwrap()))
            .collect();
        assert_eq!(
            entries,
            [
                ("anonymous".to_owned(), false),
                ("invalid-token".to_owned(), false),
                ("watch".to_owned(), false),
                // The malformed body and the overlong note were refused before any authority
                // was used; the acknowledgement is recorded.
                ("ops".to_owned(), true),
            ]
        );
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_refused_writes_is_counted_but_not_written_row_by_row() {
    let api = api().await;
    let (addr, admin) = (api.addr, api.admin.clone());
    tokio::task::spawn_blocking(move || {
        let sirens: serde_json::Value = serde_json::from_str(&request(addr, "GET", "/api/sirens", None, "").1).unwrap();
        let path = format!("/api/sirens/{}/ack", sirens[0]["id"].as_str().unwrap());
        for _ in 0..300 {
            assert_eq!(request(addr, "POST", &path, None, "").0, 401);
        }
        let log: serde_json::Value =
            serde_json::from_str(&request(addr, "GET", "/api/audit", Some(&admin), "").1).unwrap();
        let anonymous = log.as_array().unwrap().iter().filter(|e| e["actor"] == "anonymous").count();
        assert_eq!(anonymous, 1, "one row for the burst: {log}");
        let (_, metrics) = request(addr, "GET", "/metrics", None, "");
        assert!(metrics.contains("sirend_api_refused_total{reason=\"unauthenticated\"} 300"), "{metrics}");
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coverage_is_served_as_json_geojson_and_png() {
    let api = api().await;
    let addr = api.addr;
    tokio::task::spawn_blocking(move || {
        let (status, body) = request(addr, "GET", "/api/coverage", None, "");
        assert_eq!(status, 200);
        let c: serde_json::Value = serde_json::from_str(&body).unwrap();
        let city = c["zones"].as_array().unwrap().iter().find(|z| z["zone"] == "hangzhou").unwrap();
        let (now, design) =
            (city["now"]["area_ratio"].as_f64().unwrap(), city["design"]["area_ratio"].as_f64().unwrap());
        // One siren of five can sound.
        assert!(now > 0.0 && now < design && design <= 1.0, "now {now}, design {design}");
        assert_eq!(city["below_target"], true);
        assert_eq!(c["priority"].as_array().unwrap().len(), 5);

        let (head, body) = get_raw(addr, "/api/coverage.geojson");
        assert!(head.to_ascii_lowercase().contains("access-control-allow-origin: *"), "{head}");
        let fc: geojson::FeatureCollection = String::from_utf8(body).unwrap().parse().unwrap();
        assert!(!fc.features.is_empty());

        let (head, body) = get_raw(addr, "/api/coverage.png");
        assert!(head.contains("image/png"), "{head}");
        assert_eq!(&body[..8], b"\x89PNG\r\n\x1a\n");

        // Lost (four sirens cannot sound) apart from the design gap, and the failed sirens
        // ranked by the people or area only they would cover.
        let lost = city["lost"]["area_m2"].as_f64().unwrap();
        let design_m2 = city["design"]["covered_area_m2"].as_f64().unwrap();
        let now_m2 = city["now"]["covered_area_m2"].as_f64().unwrap();
        assert!((lost - (design_m2 - now_m2)).abs() < 1e-6 && lost > 0.0, "{city}");
        let failed = c["failed_sirens"].as_array().unwrap();
        assert_eq!(failed.len(), 4, "{c}");
        let areas: Vec<f64> = failed.iter().map(|f| f["area_m2"].as_f64().unwrap()).collect();
        assert!(areas.windows(2).all(|w| w[0] >= w[1]), "most lost first: {areas:?}");
        let kinds: std::collections::BTreeSet<String> =
            fc.features.iter().map(|f| f.properties.as_ref().unwrap()["kind"].as_str().unwrap().to_owned()).collect();
        assert!(kinds.contains("lost"), "{kinds:?}");

        // Limited to a zone: only it and the zones inside it.
        let zone = failed[0]["zone"].as_str().unwrap().to_owned();
        let (status, body) = request(addr, "GET", &format!("/api/coverage?zone={zone}"), None, "");
        assert_eq!(status, 200, "{body}");
        let z: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert!(z["zones"].as_array().unwrap().iter().all(|x| x["zone"].as_str().unwrap().starts_with(&zone)));
        assert!(z["failed_sirens"].as_array().unwrap().iter().all(|x| x["zone"] == zone.as_str()));
        let (_, body) = get_raw(addr, &format!("/api/coverage.geojson?zone={zone}"));
        let fc: geojson::FeatureCollection = String::from_utf8(body).unwrap().parse().unwrap();
        assert!(
            fc.features.iter().all(|f| f.properties.as_ref().unwrap()["zone"].as_str().unwrap().starts_with(&zone))
        );
        let (status, body) = request(addr, "GET", "/api/coverage.png?zone=nowhere", None, "");
        assert_eq!(status, 404, "{body}");
        assert!(body.contains("no zone `nowhere`"), "{body}");
        let (status, body) = request(addr, "GET", "/api/coverage.png?width=20", None, "");
        assert_eq!(status, 400, "{body}");
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_json_with_the_right_status_and_filters_work_as_documented() {
    let api = api().await;
    let addr = api.addr;
    let t0 = Timestamp::now();
    for (i, kind) in ["state", "fault_raised", "state", "acknowledged", "state"].into_iter().enumerate() {
        let at = t0 + jiff::SignedDuration::from_secs(i64::try_from(i).unwrap());
        let event =
            sirend::store::Event { at, siren: Some(format!("S-{i}")), kind: kind.into(), detail: String::new() };
        api.store.record(event).unwrap();
    }
    api.store.flush().unwrap();
    tokio::task::spawn_blocking(move || {
        let json =
            |body: &str| serde_json::from_str::<serde_json::Value>(body).unwrap_or_else(|e| panic!("{e}: {body}"));
        // Errors, including the framework's own, are JSON with the right status.
        for (method, path, status) in [
            ("GET", "/api/nothing-here", 404),
            ("DELETE", "/api/sirens", 405),
            ("GET", "/api/events?limit=-1", 400),
            ("GET", "/api/events?limit=20000", 400),
            ("GET", "/api/events?since=yesterday", 400),
            ("GET", "/api/sirens?state=sleepy", 400),
            ("POST", "/api/soundings/abc/cancel", 400),
            ("GET", "/api/sirens/NOPE", 404),
        ] {
            let (got, body) = request(addr, method, path, None, "");
            assert_eq!(got, status, "{method} {path}: {body}");
            assert!(json(&body)["error"].is_string(), "{method} {path}: {body}");
        }
        let big = "x".repeat(3 << 20);
        let (got, body) = request(addr, "POST", "/api/sirens/HZ-1/ack", None, &big);
        assert!(got == 413 || got == 401, "{got}");
        assert!(json(&body)["error"].is_string(), "{body}");

        // Events: newest first, by kind, limit 0 is none.
        let (_, body) = request(addr, "GET", "/api/events", None, "");
        let ids: Vec<i64> = json(&body).as_array().unwrap().iter().map(|e| e["id"].as_i64().unwrap()).collect();
        assert!(ids.len() == 5 && ids.windows(2).all(|w| w[0] > w[1]), "newest first: {ids:?}");
        let (_, body) = request(addr, "GET", "/api/events?kind=state&limit=2", None, "");
        let kinds: Vec<String> =
            json(&body).as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap().to_owned()).collect();
        assert_eq!(kinds, ["state", "state"], "{body}");
        let (_, body) = request(addr, "GET", "/api/events?limit=0", None, "");
        assert_eq!(json(&body), serde_json::json!([]));
        let (_, body) = request(addr, "GET", &format!("/api/events?after={}", ids[4]), None, "");
        let tail: Vec<i64> = json(&body).as_array().unwrap().iter().map(|e| e["id"].as_i64().unwrap()).collect();
        assert_eq!(tail, [ids[3], ids[2], ids[1], ids[0]], "tailing from `after`: oldest first");

        // Sirens by state and zone.
        let (_, body) = request(addr, "GET", "/api/sirens?state=degraded", None, "");
        let degraded = json(&body);
        assert_eq!(degraded.as_array().unwrap().len(), 1, "the one with its door open: {body}");
        let (_, body) = request(addr, "GET", "/api/sirens?state=down", None, "");
        assert_eq!(json(&body), serde_json::json!([]));
        let zone = degraded[0]["zone"].as_str().unwrap().to_owned();
        let (_, body) = request(addr, "GET", &format!("/api/sirens?zone={zone}"), None, "");
        assert!(json(&body).as_array().unwrap().iter().all(|s| s["zone"] == zone.as_str()), "{body}");
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_district_token_acts_in_its_district_only_and_the_audit_says_who_from_where() {
    let api = api().await;
    let addr = api.addr;
    tokio::task::spawn_blocking(move || {
        let (_, body) = request(addr, "GET", "/api/sirens", None, "");
        let sirens: serde_json::Value = serde_json::from_str(&body).unwrap();
        let inside = sirens
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["zone"].as_str().unwrap().starts_with(&api.district_zone))
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let ack = |id: &str, token: &str| {
            request(addr, "POST", &format!("/api/sirens/{id}/ack"), Some(token), r#"{"note":"crew 7 on its way"}"#)
        };
        assert_eq!(ack(&inside, &api.district).0, 200);
        let (status, body) = ack(&api.outsider, &api.district);
        assert_eq!(status, 403, "{body}");
        assert!(body.contains(&format!("acts in {} only", api.district_zone)), "{body}");
        // A permission list narrower than the role's: this operator token may only read.
        let (status, body) = ack(&inside, &api.reader);
        assert_eq!(status, 403, "{body}");
        assert!(body.contains("`acknowledge` permission"), "{body}");
        // The whole fleet's sounding needs a token for every zone.
        let at = (Timestamp::now() + jiff::SignedDuration::from_secs(600)).to_string();
        let fleet_wide = format!(r#"{{"at":"{at}","sequence":[{{"pattern":"chime"}}]}}"#);
        let (status, body) = request(addr, "POST", "/api/soundings", Some(&api.district), &fleet_wide);
        assert_eq!(status, 403, "{body}");
        assert!(body.contains("whole fleet"), "{body}");
        // The audit log: who, from where, with the note, allowed or not.
        let (_, body) = request(addr, "GET", "/api/audit", Some(&api.admin), "");
        let log: serde_json::Value = serde_json::from_str(&body).unwrap();
        let rows = log.as_array().unwrap();
        let allowed = rows.iter().find(|r| r["actor"] == "district-office" && r["allowed"] == true).unwrap();
        assert_eq!(
            (allowed["client"].as_str(), allowed["detail"].as_str()),
            (Some("127.0.0.1"), Some("crew 7 on its way")),
            "{allowed}"
        );
        assert!(
            rows.iter().any(|r| r["actor"] == "district-office"
                && r["allowed"] == false
                && r["target"] == api.outsider.as_str())
        );
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_need_a_token_where_configured_and_health_never_does() {
    let api = api_with(sirend::http::Access { reads: true, metrics: false }).await;
    let addr = api.addr;
    tokio::task::spawn_blocking(move || {
        for path in ["/api/sirens", "/api/events", "/api/coverage", "/api/me"] {
            let (status, body) = request(addr, "GET", path, None, "");
            assert_eq!(status, 401, "{path}: {body}");
            assert_eq!(request(addr, "GET", path, Some("not-a-token"), "").0, 401, "{path}");
            assert_eq!(request(addr, "GET", path, Some(&api.viewer), "").0, 200, "{path}");
        }
        // The console's page and scripts hold no data: it asks for a token itself.
        for path in ["/healthz", "/readyz", "/metrics", "/", "/console/console.js"] {
            assert_eq!(request(addr, "GET", path, None, "").0, 200, "{path}");
        }
        let (_, metrics) = request(addr, "GET", "/metrics", None, "");
        assert!(metrics.contains("sirend_api_refused_total{reason=\"unauthenticated\"} 8"), "{metrics}");
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acknowledgement_is_of_a_condition_with_an_expiry_and_is_exported() {
    let api = api().await;
    let addr = api.addr;
    tokio::task::spawn_blocking(move || {
        let json =
            |body: &str| serde_json::from_str::<serde_json::Value>(body).unwrap_or_else(|e| panic!("{e}: {body}"));
        let sirens = json(&request(addr, "GET", "/api/sirens", None, "").1);
        let degraded = sirens.as_array().unwrap().iter().find(|s| s["state"] == "degraded").unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let unknown = sirens.as_array().unwrap().iter().find(|s| s["state"] == "unknown").unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let until = (Timestamp::now() + jiff::SignedDuration::from_hours(4)).to_string();
        let body = format!(r#"{{"note": "door latch broken, crew tomorrow", "until": "{until}"}}"#);
        let (status, answer) =
            request(addr, "POST", &format!("/api/sirens/{degraded}/ack"), Some(&api.operator), &body);
        assert_eq!(status, 200, "{answer}");
        let answer = json(&answer);
        assert_eq!((answer["state"].as_str(), answer["faults"][0].as_str()), (Some("degraded"), Some("door_open")));
        let shown = json(&request(addr, "GET", &format!("/api/sirens/{degraded}"), None, "").1);
        assert_eq!(
            shown["acknowledged"]["until"].as_str().map(|u| u.parse::<Timestamp>().unwrap()),
            Some(until.parse().unwrap())
        );
        let (_, metrics) = request(addr, "GET", "/metrics", None, "");
        assert!(metrics.contains(&format!("siren_acknowledged{{siren=\"{degraded}\"}} 1")), "{metrics}");
        assert!(metrics.contains(&format!("siren_acknowledged{{siren=\"{unknown}\"}} 0")), "{metrics}");
        // Nothing known to acknowledge, and an expiry in the past.
        let (status, answer) = request(addr, "POST", &format!("/api/sirens/{unknown}/ack"), Some(&api.operator), "");
        assert_eq!(status, 409, "{answer}");
        let past = r#"{"until": "2020-01-01T00:00:00Z"}"#;
        let (status, answer) = request(addr, "POST", &format!("/api/sirens/{degraded}/ack"), Some(&api.operator), past);
        assert_eq!((status, json(&answer)["field"].as_str()), (422, Some("until")), "{answer}");
    })
    .await
    .unwrap();
}

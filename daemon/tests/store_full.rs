//! A store whose disk fills: a commit that fails is an error to whoever waits for it (a counter
//! lease is never granted on a failed commit), the store says it is failing, and it recovers
//! by itself once there is room again. Runs on a real, small tmpfs; needs root to mount it
//! (CI runs as root and sets `SIRENNET_REQUIRE_TMPFS`, so there it cannot skip).

#![allow(clippy::unwrap_used, reason = "a test: a failed set-up should panic")]

use std::path::{Path, PathBuf};
use std::process::Command;

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, RwLock};

use jiff::Timestamp;
use sirend::fleet::FleetState;
use sirend::http::{AppState, router};
use sirend::liveness::Policy;
use sirend::metrics::Metrics;
use sirend::store::{CounterRow, Event, Store, StoreError};

/// A tmpfs mounted for one test, unmounted when dropped.
struct Tmpfs {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl Tmpfs {
    fn mount(size: &str) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_owned();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&path)
            .output()
            .is_ok_and(|o| o.status.success());
        if !ok {
            assert!(
                std::env::var_os("SIRENNET_REQUIRE_TMPFS").is_none(),
                "cannot mount a tmpfs, and SIRENNET_REQUIRE_TMPFS is set"
            );
            eprintln!("skipped: cannot mount a tmpfs (not root?)");
            return None;
        }
        Some(Self { _dir: dir, path })
    }

    fn resize(&self, size: &str) {
        let status = Command::new("mount").args(["-o", &format!("remount,size={size}")]).arg(&self.path).status();
        assert!(status.is_ok_and(|s| s.success()), "remounting the tmpfs");
    }

    fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// Serves the read API over `store` on a port of its own; the runtime must outlive the test.
fn serve(store: Arc<Store>) -> (tokio::runtime::Runtime, SocketAddr) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let fleet = Arc::new(RwLock::new(FleetState::new(&[], Policy { down_after_misses: 3 }, Timestamp::now())));
    let state = AppState {
        metrics: Arc::new(Metrics::new(Arc::clone(&fleet), None)),
        fleet,
        store,
        tokens: Arc::new(sirend::auth::Tokens::new(&[])),
        refusals: Arc::default(),
        coverage: None,
        engine: None,
        cluster: sirend::http::cluster::Cluster::alone(),
        views: Arc::default(),
        access: sirend::http::Access::default(),
        console: Arc::default(),
    };
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap();
    rt.spawn(async move { axum::serve(listener, router(state)).await });
    (rt, addr)
}

/// `GET /readyz`: the status code and the body.
fn readyz(addr: SocketAddr) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(b"GET /readyz HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).unwrap();
    let status = response.split(' ').nth(1).unwrap().parse().unwrap();
    (status, response.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned())
}

fn event(i: usize) -> Event {
    Event { at: Timestamp::now(), siren: Some(format!("HZ-{i:05}")), kind: "state".into(), detail: "x".repeat(200) }
}

#[test]
fn a_full_disk_fails_the_flush_and_the_store_recovers_when_room_returns() {
    let Some(fs) = Tmpfs::mount("1m") else { return };
    let store = Arc::new(Store::open(&fs.path().join("sirend.db")).unwrap());
    let (_rt, api) = serve(Arc::clone(&store));
    store.save_counters(CounterRow { key_id: 1, tx_lease_end: 1_024, rx_highest: 0, birth: None }).unwrap();
    store.flush().unwrap();
    assert!(!store.health().failing);
    assert_eq!(readyz(api).0, 200);

    // Fill the disk to the last byte.
    {
        use std::io::Write as _;
        let mut filler = std::fs::File::create(fs.path().join("filler")).unwrap();
        let block = vec![0u8; 4096];
        while filler.write_all(&block).is_ok() {}
    }
    // A lease that rides in a batch of events: the commit does not fit, and whoever waits for
    // it is told so.
    for i in 0..2_000 {
        store.record(event(i)).unwrap();
    }
    store.save_counters(CounterRow { key_id: 1, tx_lease_end: 2_048, rx_highest: 0, birth: None }).unwrap();
    let error = store.flush().expect_err("a commit on a full disk was reported stored");
    assert!(matches!(error, StoreError::Commit(_)), "{error}");
    let health = store.health();
    assert!(health.failing);
    assert!(health.failures >= 1, "the events may have gone in several commits, each failing");
    assert!(health.last_error.is_some_and(|e| e.contains("full")), "the error names the cause");
    assert_eq!(store.counters(1).unwrap().unwrap().tx_lease_end, 1_024, "the failed lease is not in the store");
    assert!(store.health().backlog >= 2_000, "the events are kept to try again: {:?}", store.health());
    let (status, body) = readyz(api);
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("cannot commit") && body.contains("full"), "{body}");

    // Room again: the events kept are written, the same lease is stored, the store is healthy.
    fs.resize("64m");
    let guard = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while store.health().backlog > 0 {
        assert!(std::time::Instant::now() < guard, "the backlog was never written");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let written = store.events(&sirend::store::EventQuery { limit: 5_000, ..Default::default() }).unwrap();
    assert_eq!(written.len(), 2_000, "every event recorded while the disk was full is stored");
    store.save_counters(CounterRow { key_id: 1, tx_lease_end: 2_048, rx_highest: 0, birth: None }).unwrap();
    store.flush().unwrap();
    assert!(!store.health().failing);
    assert_eq!(store.counters(1).unwrap().unwrap().tx_lease_end, 2_048);
    assert_eq!(readyz(api).0, 200);
}

/// The counters in the frames the engine handed to its serial link since the last call.
fn counters_sent(out: &mut tokio::sync::mpsc::Receiver<sirend::engine::Output>) -> Vec<u32> {
    let mut decoder = siren_proto::decoder::SerialDecoder::new();
    while let Ok(output) = out.try_recv() {
        let sirend::engine::Output::Serial(bytes) = output else { panic!("an MQTT output on a serial link") };
        decoder.push(&bytes);
    }
    let mut counters = Vec::new();
    while let Some(frame) = decoder.next_frame() {
        counters.push(siren_proto::frame::FrameRef::parse(frame.unwrap()).unwrap().header.counter);
    }
    counters
}

#[test]
fn when_a_lease_cannot_be_stored_no_counter_beyond_the_stored_one_reaches_the_wire() {
    use siren_proto::fleet::{Link, Siren};
    use siren_proto::frame::{Address, KeyId};
    use siren_proto::master::LinkId;
    use sirend::engine::{Engine, Input, Plan, SerialPlan};
    use std::time::{Duration, Instant};

    let Some(fs) = Tmpfs::mount("1m") else { return };
    let store = Arc::new(Store::open(&fs.path().join("sirend.db")).unwrap());
    let siren = Siren {
        id: "HZ-00001".into(),
        name: "one".into(),
        latitude: 30.0,
        longitude: 120.0,
        zone: "hangzhou".parse().unwrap(),
        rating_db: 120.0,
        address: Address(1),
        key_id: KeyId(1),
        links: vec![Link::Serial { bus: "b1".into() }],
    };
    let fleet = Arc::new(RwLock::new(FleetState::new([&siren], Policy { down_after_misses: 3 }, Timestamp::now())));
    let metrics = Arc::new(Metrics::new(Arc::clone(&fleet), None));
    let link = LinkId(1);
    let plan = Plan {
        serial: vec![SerialPlan {
            link,
            bus: "b1".into(),
            baud: 9600,
            poll_interval: Duration::from_secs(1),
            idle_gap: Duration::from_millis(100),
            group: None,
        }],
        mqtt: None,
        topic_root: "sirens".into(),
        heartbeat: Duration::from_secs(5),
        status_every: Duration::ZERO,
        down_after_misses: 3,
        keys: [(KeyId(1), siren_proto::Key::new([1; 32]))].into(),
        peers: vec![(KeyId(1), Address(1), vec!["serial:b1".into()])],
    };
    let (tx, mut out) = tokio::sync::mpsc::channel(64);
    let mut engine =
        Engine::new(plan, Arc::clone(&fleet), Arc::clone(&store), Arc::clone(&metrics), [(link, tx)].into()).unwrap();
    engine.handle(Input::LinkUp(link));
    let stored_end = || store.counters(1).unwrap().unwrap().tx_lease_end;
    assert_eq!(stored_end(), 1 + siren_proto::replay::DEFAULT_LEASE);

    // Polls nobody answers, on a virtual clock: each takes a counter.
    let mut now = Instant::now();
    let mut step = |engine: &mut Engine| {
        now += Duration::from_secs(10);
        engine.tick(now);
        counters_sent(&mut out)
    };
    let mut highest = 0;
    while highest < 600 {
        highest = step(&mut engine).into_iter().fold(highest, u32::max);
    }

    // The disk fills before the lease runs low; the lease asked for cannot be stored.
    let mut filler = std::fs::File::create(fs.path().join("filler")).unwrap();
    let block = vec![0u8; 4096];
    while filler.write_all(&block).is_ok() {}
    let on_disk = stored_end();
    let mut idle_steps = 0;
    while idle_steps < 200 {
        let sent = step(&mut engine);
        if sent.is_empty() {
            idle_steps += 1;
        }
        for c in sent {
            assert!(
                c < on_disk,
                "counter {c} sent, but the stored lease ends at {on_disk} (now {}, health {:?})",
                stored_end(),
                store.health()
            );
            highest = highest.max(c);
        }
    }
    assert_eq!(highest, on_disk - 1, "every counter of the stored lease is used, and none beyond it");
    assert!(store.health().failing);
    let exposition = metrics.encode();
    assert!(exposition.contains("sirend_replay_leases_waiting 1"), "{exposition}");

    // Room again: the lease is stored first, then its counters are used.
    drop(filler);
    fs.resize("64m");
    let mut resumed = Vec::new();
    for _ in 0..50 {
        let sent = step(&mut engine);
        if !sent.is_empty() {
            let on_disk = stored_end();
            assert!(sent.iter().all(|&c| c < on_disk), "{sent:?} sent, but the stored lease ends at {on_disk}");
            resumed.extend(sent);
        }
    }
    assert_eq!(resumed.first(), Some(&highest.saturating_add(1)), "counting resumes where it stopped");
    assert!(!store.health().failing);
    assert!(metrics.encode().contains("sirend_replay_leases_waiting 0"));
}

#[test]
fn a_stalled_store_answers_at_once_that_it_is_stalled_and_writes_its_backlog_when_it_returns() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sirend.db");
    let store = Arc::new(Store::open(&path).unwrap());
    let (_rt, api) = serve(Arc::clone(&store));
    store.record(event(0)).unwrap();
    store.flush().unwrap();

    // Another process holds the database's write lock: every commit waits (the disk "hangs").
    let holder = rusqlite::Connection::open(&path).unwrap();
    holder.execute_batch("BEGIN EXCLUSIVE").unwrap();
    for i in 1..=50 {
        store.record(event(i)).unwrap();
    }
    let asked = std::time::Instant::now();
    let lease = store.store_counters(vec![CounterRow { key_id: 9, tx_lease_end: 2_048, rx_highest: 0, birth: None }]);
    assert!(matches!(lease, Err(StoreError::Stalled)), "{lease:?}");
    assert!(asked.elapsed() < std::time::Duration::from_secs(30), "the caller was held by the disk");
    while !store.health().stalled {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // Known stalled: the next caller is told at once, and /readyz says so.
    assert!(matches!(store.flush(), Err(StoreError::Stalled)));
    let (status, body) = readyz(api);
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("disk slow or hung"), "{body}");

    // The disk returns: what was recorded meanwhile is written.
    holder.execute_batch("ROLLBACK").unwrap();
    drop(holder);
    let guard = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while store.events(&sirend::store::EventQuery { limit: 100, ..Default::default() }).unwrap().len() < 51
        || store.health().backlog > 0
    {
        assert!(std::time::Instant::now() < guard, "the backlog was never written");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let health = store.health();
    assert!(!health.stalled && !health.failing, "{health:?}");
    assert_eq!(health.backlog, 0);
    assert_eq!(readyz(api).0, 200);
}

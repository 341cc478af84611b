//! The HTTP API under clients that are slow on purpose: slow headers and slow bodies are cut
//! off, connections beyond the limits are closed at once and counted, and an operator's
//! request from another address still succeeds meanwhile.
#![allow(clippy::unwrap_used, reason = "a test: a failed set-up should panic")]

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use jiff::Timestamp;
use sirend::fleet::FleetState;
use sirend::http::server::{Limits, serve};
use sirend::http::{AppState, router};
use sirend::liveness::Policy;
use sirend::metrics::Metrics;
use sirend::store::Store;

const LIMITS: Limits = Limits {
    header_timeout: Duration::from_millis(500),
    request_timeout: Duration::from_millis(800),
    connection_timeout: Duration::from_secs(60),
    max_connections: 100,
    max_per_client: 8,
};

/// The API with [`LIMITS`] on a port of its own, and how many connections it refused.
fn start(dir: &std::path::Path) -> (tokio::runtime::Runtime, SocketAddr, Arc<AtomicUsize>) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let fleet = Arc::new(RwLock::new(FleetState::new(&[], Policy { down_after_misses: 3 }, Timestamp::now())));
    let state = AppState {
        metrics: Arc::new(Metrics::new(Arc::clone(&fleet), None)),
        fleet,
        store: Arc::new(Store::open(&dir.join("s.db")).unwrap()),
        tokens: Arc::new(sirend::auth::Tokens::new(&[])),
        refusals: Arc::default(),
        coverage: None,
        engine: None,
        cluster: sirend::http::cluster::Cluster::alone(),
        views: Arc::default(),
        access: sirend::http::Access::default(),
        console: Arc::default(),
    };
    let listener = rt.block_on(tokio::net::TcpListener::bind("0.0.0.0:0")).unwrap();
    let port = listener.local_addr().unwrap().port();
    let refused = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&refused);
    rt.spawn(serve(listener, router(state), LIMITS, move || {
        counted.fetch_add(1, Ordering::Relaxed);
    }));
    (rt, SocketAddr::from(([127, 0, 0, 1], port)), refused)
}

/// A connection to `addr` from the loopback address `from`.
fn connect_from(from: [u8; 4], addr: SocketAddr) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.bind(&SocketAddr::from((from, 0)).into()).unwrap();
    socket.connect(&addr.into()).unwrap();
    socket.into()
}

/// Reads until the server closes the connection; `None` if it is still open after 10 s.
fn read_to_close(s: &mut TcpStream) -> Option<String> {
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut out = Vec::new();
    match s.read_to_end(&mut out) {
        Ok(_) => Some(String::from_utf8_lossy(&out).into_owned()),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => Some(String::from_utf8_lossy(&out).into_owned()),
        Err(_) => None,
    }
}

#[test]
fn slow_clients_are_cut_off_and_an_operator_still_gets_an_answer() {
    let dir = tempfile::tempdir().unwrap();
    let (_rt, addr, refused) = start(dir.path());

    // Headers that never end: the connection is closed.
    let mut slow = connect_from([127, 0, 0, 1], addr);
    slow.write_all(b"GET /api/sirens HTTP/1.1\r\nHost: x\r\n").unwrap();
    assert!(read_to_close(&mut slow).is_some(), "a request whose headers never end holds its connection");

    // A body sent a byte at a time: 408.
    let mut dribble = connect_from([127, 0, 0, 1], addr);
    dribble
        .write_all(b"POST /api/sirens/X/ack HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
        .unwrap();
    let answer = read_to_close(&mut dribble).unwrap_or_default();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");

    // One address holds its share of connections with headers it never finishes; the next
    // one from it is closed at once, and counted.
    let held: Vec<TcpStream> = (0..LIMITS.max_per_client)
        .map(|_| {
            let mut s = connect_from([127, 0, 0, 1], addr);
            s.write_all(b"GET / HTTP/1.1\r\n").unwrap();
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(100));
    let mut extra = connect_from([127, 0, 0, 1], addr);
    let _ = extra.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    let answer = read_to_close(&mut extra).expect("the connection over the limit stays open");
    assert!(answer.is_empty(), "served over the limit: {answer}");
    assert!(refused.load(Ordering::Relaxed) >= 1);

    // Meanwhile an operator elsewhere is served.
    let mut operator = connect_from([127, 0, 0, 2], addr);
    operator.write_all(b"GET /api/sirens HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let answer = read_to_close(&mut operator).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    drop(held);
}

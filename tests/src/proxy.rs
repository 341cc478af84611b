//! A TCP proxy a test can cut: it stands between a daemon and its database (or any server)
//! and, on [`Proxy::cut`], drops every connection through it and refuses new ones until
//! [`Proxy::restore`]; on [`Proxy::stall`], it keeps the connections open but passes nothing
//! (a peer that hangs rather than fails).

use std::io::{Read as _, Write as _};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

const OPEN: u8 = 0;
const CUT: u8 = 1;
const STALLED: u8 = 2;

/// A running proxy (it runs until the test process ends).
#[derive(Debug, Clone)]
pub struct Proxy {
    /// Where clients connect.
    pub addr: SocketAddr,
    mode: Arc<AtomicU8>,
    streams: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    /// A proxy on a port of its own, forwarding to `target`.
    pub fn start(target: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let proxy =
            Self { addr: listener.local_addr()?, mode: Arc::default(), streams: Arc::new(Mutex::new(Vec::new())) };
        let p = proxy.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if p.mode.load(Ordering::SeqCst) == CUT {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(server) = TcpStream::connect(target) else {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                p.pipe(&client, &server);
                p.pipe(&server, &client);
            }
        });
        Ok(proxy)
    }

    /// Copies `from` to `to` on a thread of its own while the proxy is open; holds the bytes
    /// while it is stalled.
    fn pipe(&self, from: &TcpStream, to: &TcpStream) {
        let (Ok(mut from), Ok(mut to)) = (from.try_clone(), to.try_clone()) else { return };
        if let Ok(s) = from.try_clone() {
            self.streams.lock().unwrap_or_else(PoisonError::into_inner).push(s);
        }
        let mode = Arc::clone(&self.mode);
        std::thread::spawn(move || {
            let mut buf = [0u8; 16 * 1024];
            loop {
                let n = match from.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                while mode.load(Ordering::SeqCst) == STALLED {
                    std::thread::sleep(Duration::from_millis(10));
                }
                if mode.load(Ordering::SeqCst) == CUT || to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            let _ = from.shutdown(Shutdown::Both);
            let _ = to.shutdown(Shutdown::Both);
        });
    }

    /// Drops every connection and refuses new ones.
    pub fn cut(&self) {
        self.mode.store(CUT, Ordering::SeqCst);
        for s in self.streams.lock().unwrap_or_else(PoisonError::into_inner).drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    /// Keeps connections open but passes nothing through them.
    pub fn stall(&self) {
        self.mode.store(STALLED, Ordering::SeqCst);
    }

    /// Passes connections and bytes again.
    pub fn restore(&self) {
        self.mode.store(OPEN, Ordering::SeqCst);
    }
}

/// A `postgres://` `url` with its host and port replaced by `addr` (a proxy's); `None` for a
/// URL of another form.
pub fn postgres_through(url: &str, addr: SocketAddr) -> Option<String> {
    let rest = url.strip_prefix("postgres://")?;
    let (authority, path) = rest.split_once('/')?;
    let user = authority.rsplit_once('@').map_or(String::new(), |(u, _)| format!("{u}@"));
    Some(format!("postgres://{user}{addr}/{path}"))
}

/// The server's address in a `postgres://` `url` (port 5432 when it names none).
pub fn postgres_server(url: &str) -> Option<SocketAddr> {
    let rest = url.strip_prefix("postgres://")?;
    let authority = rest.split_once('/')?.0;
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if host.contains(':') { host.to_owned() } else { format!("{host}:5432") };
    host.replace("localhost", "127.0.0.1").parse().ok()
}

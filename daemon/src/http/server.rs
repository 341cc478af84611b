//! The HTTP listener: connections served with limits, so that clients that are slow on
//! purpose (or just broken) cannot hold the API, and with it the duty officer, hostage.
//!
//! - a request's headers must arrive within 10 s, its body and the answer within 30 s;
//! - a connection is closed after 60 s (gracefully: the request under way is answered);
//! - at most 1,024 connections at once, and 64 from one address; beyond them a connection is
//!   closed at once (counted).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;

/// The limits a connection is served within.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Time for a request's headers to arrive.
    pub header_timeout: Duration,
    /// Time for a request's body to arrive and its answer to be made.
    pub request_timeout: Duration,
    /// A connection is closed after this long (the request under way is answered first).
    pub connection_timeout: Duration,
    /// Connections served at once.
    pub max_connections: usize,
    /// Connections served at once from one address.
    pub max_per_client: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            connection_timeout: Duration::from_secs(60),
            max_connections: 1_024,
            max_per_client: 64,
        }
    }
}

/// Connections open, by client address.
#[derive(Debug, Default)]
struct Open {
    total: usize,
    by_client: HashMap<IpAddr, usize>,
}

/// A place among the open connections, given back when the connection ends.
struct Slot {
    open: Arc<Mutex<Open>>,
    client: IpAddr,
}

impl Slot {
    /// Takes a place for `client`, if the limits allow.
    fn take(open: &Arc<Mutex<Open>>, client: IpAddr, limits: &Limits) -> Option<Self> {
        let mut o = open.lock().unwrap_or_else(PoisonError::into_inner);
        let mine = o.by_client.get(&client).copied().unwrap_or(0);
        if o.total >= limits.max_connections || mine >= limits.max_per_client {
            return None;
        }
        o.total += 1;
        o.by_client.insert(client, mine + 1);
        Some(Self { open: Arc::clone(open), client })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut o = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        o.total = o.total.saturating_sub(1);
        if let Some(n) = o.by_client.get_mut(&self.client) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                o.by_client.remove(&self.client);
            }
        }
    }
}

/// Answers `408` to a request whose body and answer take longer than `limit` (a client
/// sending its body a byte at a time).
async fn within(
    limit: Duration,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    if let Ok(response) = tokio::time::timeout(limit, next.run(request)).await {
        return response;
    }
    let error = format!("the request took longer than {} s", limit.as_secs_f64());
    (axum::http::StatusCode::REQUEST_TIMEOUT, axum::Json(serde_json::json!({ "error": error }))).into_response()
}

/// Serves `app` on `listener` until the task is dropped; `refused` is told of every
/// connection closed for the limits.
pub async fn serve(
    listener: TcpListener,
    app: axum::Router,
    limits: Limits,
    refused: impl Fn() + Send + Sync + 'static,
) {
    let request_timeout = limits.request_timeout;
    let app = app.layer(axum::middleware::from_fn(move |request, next| within(request_timeout, request, next)));
    let open = Arc::new(Mutex::new(Open::default()));
    let refused = Arc::new(refused);
    loop {
        let (stream, peer): (_, SocketAddr) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors, most likely: wait rather than spin.
                tracing::warn!(error = %e, "HTTP accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Some(slot) = Slot::take(&open, peer.ip(), &limits) else {
            refused();
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone().layer(axum::Extension(super::Peer(peer))));
        tokio::spawn(async move {
            let _slot = slot;
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder.timer(TokioTimer::new()).header_read_timeout(limits.header_timeout).keep_alive(true);
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            // The header timeout covers each request's start; this bounds how long any client
            // holds a connection (keep-alive included).
            let mut connection = std::pin::pin!(connection);
            let deadline = tokio::time::sleep(limits.connection_timeout);
            let mut deadline = std::pin::pin!(deadline);
            let mut closing = false;
            loop {
                tokio::select! {
                    result = connection.as_mut() => {
                        if let Err(e) = result {
                            tracing::debug!(error = %e, %peer, "HTTP connection ended");
                        }
                        break;
                    }
                    () = deadline.as_mut(), if !closing => {
                        closing = true;
                        connection.as_mut().graceful_shutdown();
                    }
                }
            }
        });
    }
}

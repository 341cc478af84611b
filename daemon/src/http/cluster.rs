//! Several daemons on one database: who leads (`GET /api/leadership`), and a standby's
//! writes forwarded to the leader, so that a console open on either daemon works the same
//! (STOP included) and the leader alone checks, audits and carries out every write.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::watch;

use super::AppState;
use super::views::ApiError;
use crate::leadership::Status;

/// Set on a forwarded request: its receiver forwards it no further.
pub const FORWARDED_BY: HeaderName = HeaderName::from_static("x-sirennet-forwarded-by");
/// Set on a forwarded request: the address the standby received it from, for the leader's
/// audit log.
pub const FORWARDED_FOR: HeaderName = HeaderName::from_static("x-sirennet-forwarded-for");
/// Set on the API's answers: the daemon that answered (the leader's name on a forwarded one).
pub const ANSWERED_BY: HeaderName = HeaderName::from_static("x-sirennet-leader");
/// The largest request body forwarded (the API's own limit is lower).
const MAX_FORWARDED_BODY: usize = 4 * 1024 * 1024;
/// How long the leader may take to answer a forwarded write.
const FORWARD_WITHIN: Duration = Duration::from_secs(15);

/// This daemon among the others, and its way to the leader.
#[derive(Debug, Clone)]
pub struct Cluster {
    pub status: watch::Receiver<Status>,
    client: reqwest::Client,
}

impl Cluster {
    pub fn new(status: watch::Receiver<Status>) -> Self {
        let client = reqwest::Client::builder()
            .timeout(FORWARD_WITHIN)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        Self { status, client }
    }

    /// A daemon alone on its store (tests of the API).
    pub fn alone() -> Arc<Self> {
        let (_, status) = watch::channel(Status::alone("sirend", "", jiff::Timestamp::now()));
        Arc::new(Self::new(status))
    }
}

/// Who leads the daemons sharing this one's database, since when and in which epoch; every
/// daemon seen, alive or not.
#[utoipa::path(get, path = "/api/leadership", tag = "sirens", responses(
    (status = 200, description = "Who leads", body = Status),
))]
pub(super) async fn leadership(State(state): State<AppState>) -> Json<Status> {
    Json(state.cluster.status.borrow().clone())
}

/// Reads of what only the leader's engine holds: LIVE activations, stop sweeps, CAP alerts
/// received and the CAP feed.
fn held_by_the_leader(path: &str) -> bool {
    path.starts_with("/api/activations") || path.starts_with("/api/stop/") || path.starts_with("/api/cap")
}

/// On a standby, sends every write (and every read of what only the leader's engine holds)
/// to the leader and hands back its answer; the other reads are answered here, from the
/// store.
pub(super) async fn forward_writes(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let write = !matches!(*request.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    let path = request.uri().path();
    if !path.starts_with("/api/") || !(write || held_by_the_leader(path)) {
        return next.run(request).await;
    }
    let status = state.cluster.status.borrow().clone();
    if !status.shared || status.leads {
        return next.run(request).await;
    }
    if request.headers().contains_key(&FORWARDED_BY) {
        return not_leading("this daemon does not lead either: the leader has just changed; try again");
    }
    let Some(leader) = status.leader.filter(|l| !l.url.is_empty()) else {
        return not_leading(&format!(
            "no daemon leads at the moment: a standby takes over within {:.0} s; try again",
            takeover_within(status.lease_s).as_secs_f64().ceil()
        ));
    };
    match forward(&state.cluster.client, &leader.url, &status.name, request).await {
        Ok(answer) => answer,
        Err(e) => {
            tracing::warn!(leader = %leader.name, url = %leader.url, error = %e, "a write could not be forwarded");
            not_leading(&format!("this daemon is a standby and the leader ({}) could not be reached: {e}", leader.name))
        }
    }
}

/// How long a takeover takes at most with a lease of `lease_s` seconds.
fn takeover_within(lease_s: f64) -> Duration {
    crate::leadership::Timing { lease: Duration::from_secs_f64(lease_s.max(0.0)) }.takeover_within()
}

fn not_leading(message: &str) -> Response {
    let mut r =
        (StatusCode::SERVICE_UNAVAILABLE, Json(ApiError { error: message.to_owned(), field: None })).into_response();
    r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("2"));
    r
}

/// Sends `request` to the leader at `base`; its answer.
async fn forward(client: &reqwest::Client, base: &str, me: &str, request: Request) -> Result<Response, String> {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let url = format!("{}{path}", base.trim_end_matches('/'));
    let body = axum::body::to_bytes(body, MAX_FORWARDED_BODY).await.map_err(|e| e.to_string())?;
    let method = reqwest::Method::from_bytes(parts.method.as_str().as_bytes()).map_err(|e| e.to_string())?;
    let mut out = client.request(method, &url).body(body);
    for name in [header::AUTHORIZATION, header::CONTENT_TYPE, header::ACCEPT, header::ACCEPT_LANGUAGE] {
        if let Some(v) = parts.headers.get(&name) {
            out = out.header(name.as_str(), v.as_bytes());
        }
    }
    out = out.header(FORWARDED_BY.as_str(), me);
    if let Some(super::Peer(from)) = parts.extensions.get::<super::Peer>() {
        out = out.header(FORWARDED_FOR.as_str(), from.ip().to_string());
    }
    let answer = out.send().await.map_err(|e| e.to_string())?;
    let status = StatusCode::from_u16(answer.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let content_type = answer.headers().get(reqwest::header::CONTENT_TYPE).map(|v| v.as_bytes().to_vec());
    let leader = answer.headers().get(ANSWERED_BY.as_str()).map(|v| v.as_bytes().to_vec());
    let bytes = answer.bytes().await.map_err(|e| e.to_string())?;
    let mut r = (status, bytes).into_response();
    if let Some(v) = content_type.and_then(|v| HeaderValue::from_bytes(&v).ok()) {
        r.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    if let Some(v) = leader.and_then(|v| HeaderValue::from_bytes(&v).ok()) {
        r.headers_mut().insert(ANSWERED_BY, v);
    }
    Ok(r)
}

/// Names the answering daemon on every answer of the API (a standby passes on the leader's).
pub(super) async fn answered_by(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let api = request.uri().path().starts_with("/api/");
    let mut r = next.run(request).await;
    if api && !r.headers().contains_key(&ANSWERED_BY) {
        let name = state.cluster.status.borrow().name.clone();
        if let Ok(v) = HeaderValue::from_str(&name) {
            r.headers_mut().insert(ANSWERED_BY, v);
        }
    }
    r
}

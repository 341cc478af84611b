//! The HTTP interface (default 127.0.0.1:9750): metrics, health, and a read-only JSON API
//! (docs/operations.md).

use std::sync::{Arc, RwLock};

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use jiff::Timestamp;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::{Caller, Permission, Tokens};
use crate::fleet::FleetState;
use crate::metrics::{Format, Metrics};
use crate::store::{AuditEntry, Event, EventQuery, Store};
use views::{ApiError, SirenView};

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct AppState {
    pub fleet: Arc<RwLock<FleetState>>,
    pub store: Arc<Store>,
    pub metrics: Arc<Metrics>,
    pub tokens: Arc<Tokens>,
    /// Which refused calls reach the audit log.
    pub refusals: Arc<RefusalLog>,
    pub coverage: Option<crate::coverage::metrics::SharedCoverage>,
    /// Requests for the engine (soundings); `None` in tests of the read-only API.
    pub engine: Option<tokio::sync::mpsc::Sender<crate::engine::Input>>,
    pub views: Arc<Views>,
    pub access: Access,
    /// What the console is set up with.
    pub console: Arc<console::ConsoleSettings>,
    /// Who leads among the daemons sharing the store (this one, alone on SQLite).
    pub cluster: Arc<cluster::Cluster>,
}

/// Which reads need a token (`[http] read_needs_token`, `metrics_need_token`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Access {
    /// The API (the console's page and scripts hold no data and never need one).
    pub reads: bool,
    pub metrics: bool,
}

/// Answers kept until the fleet changes: a thousand clients asking for the fleet between two
/// changes cost one serialisation, not a thousand.
#[derive(Debug, Default)]
pub struct Views {
    /// `/api/sirens`, with the fleet version it shows.
    sirens: std::sync::Mutex<Option<(u64, axum::body::Bytes)>>,
}

mod cap;
pub mod cluster;
pub mod console;
mod coverage;
mod live;
mod maintenance;
pub mod openapi;
mod refusals;
pub mod server;
mod soundings;
mod stop;
mod stream;
pub mod views;

pub use maintenance::{EndedView, WindowView};
pub use refusals::RefusalLog;

/// The router.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(console::index))
        .route("/console/{file}", get(console::asset))
        .route("/api/me", get(console::me))
        .route("/api/console", get(console::settings))
        .route("/api/zones.geojson", get(console::zones))
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .route("/api/sirens", get(sirens))
        .route("/api/sirens/{id}", get(siren))
        .route("/api/events", get(events))
        .route("/api/sirens/{id}/ack", post(acknowledge))
        .route("/api/sirens/{id}/resync", post(resync))
        .route("/api/sirens/{id}/history", get(history))
        .route("/api/maintenance", get(maintenance::list).post(maintenance::start))
        .route("/api/maintenance/{id}/end", post(maintenance::end))
        .route("/api/audit", get(audit))
        .route("/api/coverage", get(coverage::summary))
        .route("/api/coverage.geojson", get(coverage::geojson))
        .route("/api/coverage.png", get(coverage::png))
        .route("/api/soundings", get(soundings::list).post(soundings::create))
        .route("/api/soundings/{id}", get(soundings::one))
        .route("/api/soundings/{id}/cancel", post(soundings::cancel))
        .route("/api/openapi.json", get(openapi::document))
        .route("/api/stop", post(stop::stop))
        .route("/api/activations", get(live::list).post(live::request))
        .route("/api/activations/{id}", get(live::one))
        .route("/api/activations/{id}/approve", post(live::approve))
        .route("/api/activations/{id}/reject", post(live::reject))
        .route("/api/activations/{id}/false-alarm", post(live::false_alarm))
        .route("/api/stop/{id}", get(stop::status))
        .route("/api/cap", post(cap::submit))
        .route("/api/cap/alerts", get(cap::alerts))
        .route("/api/cap.atom", get(cap::feed))
        .route("/api/stream", get(stream::stream))
        .route("/api/leadership", get(cluster::leadership))
        .fallback(|| async { (StatusCode::NOT_FOUND, Json(json!({"error": "no such path"}))) })
        .layer(axum::middleware::from_fn_with_state(state.clone(), reads_need_a_token))
        .layer(axum::middleware::from_fn(json_errors))
        // A standby's writes go to the leader before anything here looks at them: the
        // leader checks the token, audits and acts.
        .layer(axum::middleware::from_fn_with_state(state.clone(), cluster::answered_by))
        .layer(axum::middleware::from_fn_with_state(state.clone(), cluster::forward_writes))
        // Outermost, so that the JSON errors are made of plain bodies; the event stream and
        // images are never compressed (tower-http's default predicate).
        .layer(tower_http::compression::CompressionLayer::new())
        .with_state(state)
}

/// Refuses reads without a valid token (with the `read` permission) where the configuration
/// says they need one: siren positions and outages are sensitive in air defence. `/healthz`
/// and `/readyz` never need one, nor the console's page and scripts (`/`, `/console/*`: they
/// hold no data); `/metrics` when `metrics_need_token`.
async fn reads_need_a_token(
    State(state): State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let path = request.uri().path();
    let needs = match path {
        "/healthz" | "/readyz" | "/" => false,
        _ if path.starts_with("/console/") => false,
        "/metrics" => state.access.metrics,
        _ => state.access.reads && request.method() == axum::http::Method::GET,
    };
    if needs {
        let caller = state.tokens.identify(request.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()));
        let refusal = match caller {
            Caller::Known(grant) if grant.may(Permission::Read) => None,
            Caller::Known(grant) => Some((
                StatusCode::FORBIDDEN,
                format!("token `{}` may not read: that needs the `read` permission", grant.name),
            )),
            Caller::Anonymous => {
                Some((StatusCode::UNAUTHORIZED, "reading needs an `Authorization: Bearer <token>` header".to_owned()))
            }
            Caller::Unknown => Some((StatusCode::UNAUTHORIZED, "the token is not valid".to_owned())),
        };
        if let Some((status, why)) = refusal {
            state.metrics.api_refused(if status == StatusCode::FORBIDDEN { "forbidden" } else { "unauthenticated" });
            return refused_response(Some((status, why)));
        }
    }
    next.run(request).await
}

/// Every error the API answers is JSON, `{"error": "..."}`: the framework's own refusals
/// (a malformed query or path parameter, a wrong method, a body too large) are plain text,
/// and are wrapped here.
async fn json_errors(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let api = request.uri().path().starts_with("/api/");
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !api || is_json || !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let allow = response.headers().get(header::ALLOW).cloned();
    // The framework's refusals are a line of text; anything longer is not read whole.
    let text = match axum::body::to_bytes(response.into_body(), 64 * 1024).await {
        Ok(bytes) => String::from_utf8_lossy(&bytes).trim().to_owned(),
        Err(_) => String::new(),
    };
    let message = if text.is_empty() { status.canonical_reason().unwrap_or("error").to_lowercase() } else { text };
    let mut wrapped = (status, Json(json!({"error": message}))).into_response();
    if let Some(allow) = allow {
        wrapped.headers_mut().insert(header::ALLOW, allow);
    }
    wrapped
}

fn fleet(state: &AppState) -> std::sync::RwLockReadGuard<'_, FleetState> {
    state.fleet.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Prometheus metrics (OpenMetrics when the `Accept` header asks for it).
#[utoipa::path(get, path = "/metrics", tag = "monitoring", responses(
    (status = 200, description = "The metrics", content_type = "text/plain", body = String),
    (status = 401, description = "`metrics_need_token` and no valid token", body = ApiError),
))]
async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    // Prometheus asks for OpenMetrics in its Accept header; everyone else gets the classic
    // text format.
    let openmetrics = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("application/openmetrics-text"));
    let (format, content_type) = if openmetrics {
        (Format::OpenMetrics, "application/openmetrics-text; version=1.0.0; charset=utf-8")
    } else {
        (Format::Classic, "text/plain; version=0.0.4; charset=utf-8")
    };
    // Streamed in chunks from a blocking thread, which waits while the scraper is two chunks
    // behind: the exposition is never held whole in memory.
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(2);
    let metrics = Arc::clone(&state.metrics);
    tokio::task::spawn_blocking(move || {
        if metrics.write_to(tx, format).is_err() {
            tracing::debug!("a scraper went away before the end of /metrics");
        }
    });
    // Fused: the gzip layer polls a body once more after its end, which a bare `unfold`
    // forbids.
    let chunks = futures_util::StreamExt::fuse(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (Ok::<_, std::convert::Infallible>(chunk), rx))
    }));
    ([(header::CONTENT_TYPE, content_type)], axum::body::Body::from_stream(chunks)).into_response()
}

/// Ready while the store answers reads and its commits succeed.
#[utoipa::path(get, path = "/readyz", tag = "monitoring", responses(
    (status = 200, description = "Ready", content_type = "text/plain", body = String),
    (status = 503, description = "The store cannot commit or answer: the reason", content_type = "text/plain", body = String),
))]
async fn ready(State(state): State<AppState>) -> Response {
    // Ready while the store answers reads and its commits succeed: a store that cannot commit
    // keeps what it must write in memory and stops new counter leases, so no command can be
    // relied on.
    let health = state.store.health();
    if health.stalled {
        let body = format!(
            "store: a commit has been running for over 2 s (disk slow or hung); {} writes waiting\n",
            health.backlog
        );
        return (StatusCode::SERVICE_UNAVAILABLE, body).into_response();
    }
    if health.failing {
        let error = health.last_error.unwrap_or_default();
        let body = format!("store: cannot commit: {error}; {} writes kept to try again\n", health.backlog);
        return (StatusCode::SERVICE_UNAVAILABLE, body).into_response();
    }
    match read_store(&state, |store| store.events(&EventQuery { limit: 1, ..EventQuery::default() })).await {
        Ok(_) => (StatusCode::OK, "ready\n").into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("store: {e}\n")).into_response(),
    }
}

/// Runs a read of the store off the async threads and gives up after
/// [`crate::store::ANSWER_WITHIN`]: a hung disk must not take the API (and `/healthz`) with
/// it.
pub(crate) async fn read_store<T: Send + 'static>(
    state: &AppState,
    read: impl FnOnce(&crate::store::Store) -> Result<T, crate::store::StoreError> + Send + 'static,
) -> Result<T, crate::store::StoreError> {
    let store = Arc::clone(&state.store);
    match tokio::time::timeout(crate::store::ANSWER_WITHIN, tokio::task::spawn_blocking(move || read(&store))).await {
        Ok(Ok(result)) => result,
        Ok(Err(_)) => Err(crate::store::StoreError::WriterGone),
        Err(_) => Err(crate::store::StoreError::Stalled),
    }
}

/// [`read_store`] after the writes queued so far are committed, so that a read shows what the
/// API has already answered (an acknowledgement, an ended window, its event, its audit entry).
/// A store that cannot commit is still read: what is committed is shown.
pub(crate) async fn read_committed<T: Send + 'static>(
    state: &AppState,
    read: impl FnOnce(&crate::store::Store) -> Result<T, crate::store::StoreError> + Send + 'static,
) -> Result<T, crate::store::StoreError> {
    if let Err(e) = read_store(state, crate::store::Store::flush).await {
        tracing::debug!("read without the writes still queued: {e}");
    }
    read_store(state, read).await
}

/// The address a request came from (set per connection by [`server::serve`]).
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub std::net::SocketAddr);

/// The client's address, when the server knows it.
#[derive(Debug, Clone, Copy)]
pub struct Client(pub Option<std::net::SocketAddr>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Client {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Client(parts.extensions.get::<Peer>().map(|p| p.0)))
    }
}

/// The client as the audit log records it: the address the request came from and, for a
/// write a standby forwarded, the standby's name and the address it had the write from
/// (`10.0.0.2 (site-b, for 192.168.1.20)`). The part in parentheses is what the sender
/// says; the address before it is what this daemon saw.
fn audited_client(client: Client, headers: &HeaderMap) -> String {
    let peer = client.0.map(|a| a.ip().to_string()).unwrap_or_default();
    let said = |name: &axum::http::HeaderName| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.chars().filter(|c| !c.is_control()).take(64).collect::<String>())
    };
    match (said(&cluster::FORWARDED_BY), said(&cluster::FORWARDED_FOR)) {
        (Some(by), Some(from)) => format!("{peer} ({by}, for {from})"),
        (Some(by), None) => format!("{peer} ({by})"),
        _ => peer,
    }
}

/// What a write asks of its caller.
#[derive(Debug)]
pub(crate) struct Ask<'a> {
    pub permission: Permission,
    pub action: &'a str,
    pub target: &'a str,
    /// The zones it touches; `None`: the whole fleet (only a token for every zone may).
    pub zones: Option<&'a [String]>,
    /// The note or reason the caller gave, for the audit log.
    pub note: &'a str,
}

/// Checks the caller's permission and zones for a write and audits the attempt either way,
/// with the client's address. `Err` is the refusal to send back.
fn authorize(state: &AppState, headers: &HeaderMap, client: Client, ask: &Ask<'_>) -> Result<String, Box<Response>> {
    let caller = state.tokens.identify(headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()));
    let action = ask.action;
    let refusal = match &caller {
        Caller::Known(grant) if !grant.may(ask.permission) => Some((
            StatusCode::FORBIDDEN,
            format!("token `{}` may not {action}: that needs the `{}` permission", grant.name, ask.permission.as_str()),
        )),
        Caller::Known(grant) => match ask.zones {
            None if !grant.everywhere() => Some((
                StatusCode::FORBIDDEN,
                format!(
                    "token `{}` acts in {} only; {action} would touch the whole fleet (name the zones)",
                    grant.name,
                    grant.zones.join(", ")
                ),
            )),
            Some(zones) => zones.iter().find(|z| !grant.covers(z)).map(|z| {
                (
                    StatusCode::FORBIDDEN,
                    format!("token `{}` acts in {} only; {action} touches `{z}`", grant.name, grant.zones.join(", ")),
                )
            }),
            None => None,
        },
        Caller::Anonymous => {
            Some((StatusCode::UNAUTHORIZED, "an `Authorization: Bearer <token>` header is needed".to_owned()))
        }
        Caller::Unknown => Some((StatusCode::UNAUTHORIZED, "the token is not valid".to_owned())),
    };
    // Every permitted call is recorded; refusals are summarised (see `refusals`).
    let record = match &refusal {
        None => Some(ask.note.to_owned()),
        Some((status, why)) => {
            let reason = if *status == StatusCode::FORBIDDEN { "forbidden" } else { "unauthenticated" };
            state.metrics.api_refused(reason);
            state.refusals.admit(caller.name(), action, std::time::Instant::now()).map(|left_out| match left_out {
                0 => why.clone(),
                n => format!("{why} ({n} more refusals of this actor and action were not recorded before this one)"),
            })
        }
    };
    let Some(detail) = record else { return Err(Box::new(refused_response(refusal))) };
    let entry = AuditEntry {
        at: Timestamp::now(),
        actor: caller.name().to_owned(),
        action: action.to_owned(),
        target: ask.target.to_owned(),
        allowed: refusal.is_none(),
        detail,
        client: audited_client(client, headers),
    };
    if let Err(e) = state.store.audit(&entry) {
        // No write without its audit record.
        let response = (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"error": format!("audit log: {e}")})));
        return Err(Box::new(response.into_response()));
    }
    match refusal {
        None => Ok(caller.name().to_owned()),
        refused => Err(Box::new(refused_response(refused))),
    }
}

/// Refuses a write without a valid token before its body is looked at (a 401, audited like
/// every refusal): what a request is made of is nobody's business who may not make it.
/// [`authorize`] checks the permission and zones once the body says what it touches.
fn authenticated(state: &AppState, headers: &HeaderMap, client: Client, action: &str) -> Result<(), Box<Response>> {
    match state.tokens.identify(headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok())) {
        Caller::Known(_) => Ok(()),
        Caller::Anonymous | Caller::Unknown => {
            let ask = Ask { permission: Permission::Read, action, target: "", zones: Some(&[]), note: "" };
            authorize(state, headers, client, &ask).map(drop)
        }
    }
}

/// The answer to a refused call (`Some`), with the challenge a 401 carries.
fn refused_response(refusal: Option<(StatusCode, String)>) -> Response {
    let (status, why) = refusal.unwrap_or((StatusCode::FORBIDDEN, String::new()));
    let mut response = (status, Json(json!({"error": why}))).into_response();
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
    }
    response
}

/// Sends the engine the request `make` builds around a reply channel, and waits for the
/// answer; a 503 when the engine is not running or has stopped.
pub(crate) async fn ask_engine<T>(
    state: &AppState,
    make: impl FnOnce(tokio::sync::oneshot::Sender<T>) -> crate::engine::Input,
) -> Result<T, Response> {
    let unavailable = |why: &str| (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"error": why}))).into_response();
    let Some(engine) = &state.engine else { return Err(unavailable("the engine is not running")) };
    let (tx, rx) = tokio::sync::oneshot::channel();
    if engine.send(make(tx)).await.is_err() {
        return Err(unavailable("the engine has stopped"));
    }
    rx.await.map_err(|_| unavailable("the engine has stopped"))
}

/// A request body as `T`, which must be a JSON object: serde would also take an array for a
/// struct (`[]` for one whose fields all have defaults), which no client means.
pub(crate) fn json_object<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, serde_json::Error> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if first.is_some_and(|&b| b != b'{') {
        return Err(<serde_json::Error as serde::de::Error>::custom("the body must be a JSON object"));
    }
    serde_json::from_slice(body)
}

/// The longest note an operator may attach (it is stored with every acknowledgement).
const NOTE_MAX_CHARS: usize = 1000;

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct AckBody {
    #[serde(default)]
    #[schema(max_length = 1000)]
    note: String,
    /// When the acknowledgement lapses by itself (RFC 3339), in the future.
    #[serde(default)]
    #[schema(value_type = Option<String>, format = DateTime)]
    until: Option<Timestamp>,
}

/// An operator acknowledges the siren's condition (any but `ok`), with a note and an expiry:
/// its alerts stop paging while it stays in that condition or a milder one.
#[utoipa::path(post, path = "/api/sirens/{id}/ack", tag = "sirens", security(("bearer" = [])),
    params(("id" = String, Path, description = "The siren")),
    request_body(content = Option<AckBody>, description = "Optional: an empty body acknowledges without a note"),
    responses(
        (status = 200, description = "Acknowledged", body = views::AcknowledgedView),
        (status = 400, description = "A malformed body", body = ApiError),
        (status = 401, description = "No valid token", body = ApiError),
        (status = 403, description = "The token may not acknowledge, or not in this zone", body = ApiError),
        (status = 404, description = "No such siren", body = ApiError),
        (status = 409, description = "Nothing to acknowledge: the siren is ok or not heard yet", body = ApiError),
        (status = 413, description = "The body is too large", body = ApiError),
        (status = 422, description = "A field is invalid", body = ApiError),
    ))]
async fn acknowledge(
    State(state): State<AppState>,
    Path(id): Path<String>,
    client: Client,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(refused) = authenticated(&state, &headers, client, "acknowledge") {
        return *refused;
    }
    let body: AckBody = if body.is_empty() {
        AckBody::default()
    } else {
        match json_object(&body) {
            Ok(b) => b,
            Err(e) => return (StatusCode::BAD_REQUEST, Json(json!({"error": format!("body: {e}")}))).into_response(),
        }
    };
    if body.note.chars().count() > NOTE_MAX_CHARS {
        let error = format!("note: at most {NOTE_MAX_CHARS} characters");
        return (StatusCode::UNPROCESSABLE_ENTITY, Json(json!({"error": error, "field": "note"}))).into_response();
    }
    if body.until.is_some_and(|u| u <= Timestamp::now()) {
        let error = "until: must be in the future";
        return (StatusCode::UNPROCESSABLE_ENTITY, Json(json!({"error": error, "field": "until"}))).into_response();
    }
    let zones: Vec<String> = fleet(&state).get(&id).map(|s| s.zone.to_string()).into_iter().collect();
    let ask = Ask {
        permission: Permission::Acknowledge,
        action: "acknowledge",
        target: &id,
        zones: Some(&zones),
        note: &body.note,
    };
    let by = match authorize(&state, &headers, client, &ask) {
        Ok(by) => by,
        Err(refused) => return *refused,
    };
    let now = Timestamp::now();
    let acknowledged = {
        let mut fleet = state.fleet.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(index) = fleet.index(&id) else {
            return (StatusCode::NOT_FOUND, Json(json!({"error": format!("no siren `{id}`")}))).into_response();
        };
        fleet.acknowledge(index, &by, &body.note, body.until, now)
    };
    let ack = match acknowledged {
        Ok(ack) => ack,
        Err(refused) => return (StatusCode::CONFLICT, Json(json!({"error": refused.to_string()}))).into_response(),
    };
    let _ = state.store.save_acknowledgement(&id, Some(&ack));
    let names = views::fault_names(ack.faults);
    let note = if body.note.is_empty() { String::new() } else { format!(": {}", body.note) };
    let until = ack.until.map(|u| format!(" until {u}")).unwrap_or_default();
    let detail = format!("{} {} by {by}{until}{note}", ack.state.as_str(), names.join(","));
    let _ = state.store.record(Event { at: now, siren: Some(id.clone()), kind: "acknowledged".into(), detail });
    Json(views::AcknowledgedView { siren: id, acknowledgement: views::AcknowledgementView::new(&ack) }).into_response()
}

/// Moves the siren's transmit counter far ahead, for a device whose receive counter is ahead
/// of the daemon's (admin; docs/operations.md).
#[utoipa::path(post, path = "/api/sirens/{id}/resync", tag = "sirens", security(("bearer" = [])),
    params(("id" = String, Path, description = "The siren")),
    responses(
        (status = 200, description = "The first counter of the new lease", body = views::ResyncView),
        (status = 401, description = "No valid token", body = ApiError),
        (status = 403, description = "Not an administrator of the siren's zone", body = ApiError),
        (status = 404, description = "No such siren", body = ApiError),
        (status = 503, description = "The engine or the store cannot do it now", body = ApiError),
    ))]
async fn resync(State(state): State<AppState>, Path(id): Path<String>, client: Client, headers: HeaderMap) -> Response {
    let zones: Vec<String> = fleet(&state).get(&id).map(|s| s.zone.to_string()).into_iter().collect();
    let ask =
        Ask { permission: Permission::Admin, action: "resync-counters", target: &id, zones: Some(&zones), note: "" };
    let by = match authorize(&state, &headers, client, &ask) {
        Ok(by) => by,
        Err(refused) => return *refused,
    };
    let siren = id.clone();
    match ask_engine(&state, |reply| crate::engine::Input::Resync { siren, by, reply }).await {
        Ok(Ok(counter)) => Json(views::ResyncView { siren: id, counter }).into_response(),
        Ok(Err(why)) if why.starts_with("no siren") => {
            (StatusCode::NOT_FOUND, Json(json!({"error": why}))).into_response()
        }
        Ok(Err(why)) => (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"error": why}))).into_response(),
        Err(unavailable) => unavailable,
    }
}

/// The audit log, the latest 1,000 entries, oldest first (admin): every attempt made before
/// it was asked for, this read included.
#[utoipa::path(get, path = "/api/audit", tag = "audit", security(("bearer" = [])),
    responses(
        (status = 200, description = "The entries", body = [views::AuditView]),
        (status = 401, description = "No valid token", body = ApiError),
        (status = 403, description = "Not an administrator", body = ApiError),
        (status = 500, description = "The store failed", body = ApiError),
    ))]
async fn audit(State(state): State<AppState>, client: Client, headers: HeaderMap) -> Response {
    let ask = Ask { permission: Permission::Admin, action: "read-audit", target: "audit", zones: Some(&[]), note: "" };
    if let Err(refused) = authorize(&state, &headers, client, &ask) {
        return *refused;
    }
    match read_committed(&state, |store| store.audit_log(1000)).await {
        Ok(rows) => Json(
            rows.into_iter()
                .map(|a| views::AuditView {
                    at: a.at.to_string(),
                    actor: a.actor,
                    action: a.action,
                    target: a.target,
                    allowed: a.allowed,
                    detail: a.detail,
                    client: a.client,
                })
                .collect::<Vec<_>>(),
        )
        .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, Json(json!({"error": e.to_string()}))).into_response(),
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct SirenParams {
    /// Only sirens in this state.
    #[param(value_type = Option<crate::liveness::State>)]
    state: Option<String>,
    /// Only sirens in this zone or the zones inside it.
    zone: Option<String>,
    /// `true`: only sirens in maintenance; `false`: only those not.
    maintenance: Option<bool>,
}

fn bad_request(field: &str, message: impl Into<String>) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({"error": message.into(), "field": field}))).into_response()
}

/// Every siren, or those the filters choose.
#[utoipa::path(get, path = "/api/sirens", tag = "sirens", params(SirenParams), responses(
    (status = 200, description = "The sirens", body = [SirenView]),
    (status = 400, description = "A malformed parameter", body = ApiError),
))]
async fn sirens(State(state): State<AppState>, Query(p): Query<SirenParams>) -> Response {
    let now = Timestamp::now();
    if p.state.is_some() || p.zone.is_some() || p.maintenance.is_some() {
        let wanted = match p.state.as_deref().map(|s| crate::liveness::State::from_name(s).ok_or(s)).transpose() {
            Ok(w) => w,
            Err(s) => {
                return bad_request(
                    "state",
                    format!("`{s}` is not a state: ok, degraded, faulty, down, unreachable or unknown"),
                );
            }
        };
        let fleet = fleet(&state);
        let zone = p.zone.as_deref();
        let chosen: Vec<Value> = (0..fleet.sirens().len())
            .map(|i| (fleet.siren(i), fleet.in_maintenance(i, now)))
            .filter(|(s, _)| wanted.is_none_or(|w| s.liveness.state == w) && zone.is_none_or(|z| s.zone.is_within(z)))
            .filter(|(_, m)| p.maintenance.is_none_or(|wanted| m.is_some() == wanted))
            .map(|(s, m)| serde_json::to_value(SirenView::new(s, m, now)).unwrap_or_default())
            .collect();
        return Json(Value::Array(chosen)).into_response();
    }
    let body = {
        let fleet = fleet(&state);
        let version = fleet.version();
        let mut cached = state.views.sirens.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match &*cached {
            Some((shown, body)) if *shown == version => body.clone(),
            _ => {
                let all = Value::Array(
                    (0..fleet.sirens().len())
                        .map(|i| SirenView::new(fleet.siren(i), fleet.in_maintenance(i, now), now))
                        .map(|v| serde_json::to_value(v).unwrap_or_default())
                        .collect(),
                );
                let body = axum::body::Bytes::from(all.to_string());
                *cached = Some((version, body.clone()));
                body
            }
        }
    };
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// One siren.
#[utoipa::path(get, path = "/api/sirens/{id}", tag = "sirens",
    params(("id" = String, Path, description = "The siren")),
    responses(
        (status = 200, description = "The siren", body = SirenView),
        (status = 404, description = "No such siren", body = ApiError),
    ))]
async fn siren(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    let fleet = fleet(&state);
    let now = Timestamp::now();
    match fleet.index(&id) {
        Some(i) => Json(SirenView::new(fleet.siren(i), fleet.in_maintenance(i, now), now)).into_response(),
        None => (StatusCode::NOT_FOUND, Json(json!({"error": format!("no siren `{id}`")}))).into_response(),
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct HistoryParams {
    /// RFC 3339; default 90 days ago.
    #[param(value_type = Option<String>, format = DateTime)]
    since: Option<String>,
    /// RFC 3339; default now.
    #[param(value_type = Option<String>, format = DateTime)]
    until: Option<String>,
}

/// How far back a siren's history goes unless `since` says otherwise.
const HISTORY_DAYS: i64 = 90;
/// The latest campaigns a history looks through for the siren's soundings.
const HISTORY_CAMPAIGNS: usize = 100;

/// The siren's history for its crew: outages (with acknowledgement and time to repair), state
/// changes, maintenance windows and soundings (of the latest 100 campaigns), the latest first.
#[utoipa::path(get, path = "/api/sirens/{id}/history", tag = "sirens",
    params(("id" = String, Path, description = "The siren"), HistoryParams),
    responses(
        (status = 200, description = "Its history", body = crate::history::History),
        (status = 400, description = "A malformed parameter", body = ApiError),
        (status = 404, description = "No such siren", body = ApiError),
        (status = 503, description = "The store did not answer", body = ApiError),
    ))]
async fn history(State(state): State<AppState>, Path(id): Path<String>, Query(p): Query<HistoryParams>) -> Response {
    let now = Timestamp::now();
    let Some(zone) = fleet(&state).get(&id).map(|s| s.zone.to_string()) else {
        return (StatusCode::NOT_FOUND, Json(json!({"error": format!("no siren `{id}`")}))).into_response();
    };
    let (since, until) = match (instant("since", p.since.as_deref()), instant("until", p.until.as_deref())) {
        (Ok(since), Ok(until)) => {
            (since.unwrap_or_else(|| now - jiff::SignedDuration::from_hours(24 * HISTORY_DAYS)), until.unwrap_or(now))
        }
        (Err(refused), _) | (_, Err(refused)) => return *refused,
    };
    let siren = id.clone();
    let read = read_committed(&state, move |store| {
        let query = EventQuery {
            siren: Some(siren.clone()),
            since: Some(since),
            until: Some(until),
            newest_first: true,
            limit: EVENTS_MAX,
            ..EventQuery::default()
        };
        let events = store.events(&query)?;
        let windows: Vec<crate::maintenance::Window> = store
            .maintenance_windows(false, 1000)?
            .into_iter()
            .filter(|w| {
                w.scope.covers(&siren, &zone) && w.from < until && w.ended.as_ref().map_or(w.until, |e| e.at) > since
            })
            .collect();
        let soundings = store
            .campaigns(false, HISTORY_CAMPAIGNS)?
            .into_iter()
            .filter(|c| c.instant >= since && c.instant < until)
            .filter_map(|c| {
                let t = c.targets.iter().find(|t| t.siren == siren)?;
                Some(crate::history::SoundingLine {
                    campaign: c.id,
                    schedule: c.schedule.clone(),
                    kind: c.kind.as_str(),
                    instant: c.instant.to_string(),
                    result: t.verdict.map(crate::sounding::verdict::Verdict::as_str),
                })
            })
            .collect();
        Ok((events, windows, soundings))
    })
    .await;
    match read {
        Ok((events, windows, soundings)) => {
            Json(crate::history::build(&id, events, &windows, soundings, (since, until), now)).into_response()
        }
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"error": e.to_string()}))).into_response(),
    }
}

/// An optional RFC 3339 query parameter, or the 400 that says what is wrong with it.
fn instant(field: &'static str, v: Option<&str>) -> Result<Option<Timestamp>, Box<Response>> {
    v.map(str::parse::<Timestamp>).transpose().map_err(|e| {
        Box::new(bad_request(field, format!("`{field}` must be an RFC 3339 instant such as 2026-05-12T02:00:00Z: {e}")))
    })
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct EventParams {
    /// RFC 3339: events at or after.
    #[param(value_type = Option<String>, format = DateTime)]
    since: Option<String>,
    /// RFC 3339: events before.
    #[param(value_type = Option<String>, format = DateTime)]
    until: Option<String>,
    /// Only this siren's.
    siren: Option<String>,
    /// Only events of this kind.
    kind: Option<String>,
    /// Only events after this id, oldest first.
    after: Option<i64>,
    /// At most this many (default 1,000, at most 10,000).
    #[param(minimum = 0, maximum = 10000)]
    limit: Option<usize>,
}

/// The most events one request returns.
const EVENTS_MAX: usize = 10_000;

/// Stored events, the latest first (oldest first from `after`, for tailing).
#[utoipa::path(get, path = "/api/events", tag = "events", params(EventParams), responses(
    (status = 200, description = "The events", body = [views::EventView]),
    (status = 400, description = "A malformed parameter", body = ApiError),
    (status = 500, description = "The store failed", body = ApiError),
))]
async fn events(State(state): State<AppState>, Query(p): Query<EventParams>) -> Response {
    let (since, until) = match (instant("since", p.since.as_deref()), instant("until", p.until.as_deref())) {
        (Ok(since), Ok(until)) => (since, until),
        (Err(refused), _) | (_, Err(refused)) => return *refused,
    };
    let limit = p.limit.unwrap_or(1000);
    if limit > EVENTS_MAX {
        return bad_request("limit", format!("`limit` is at most {EVENTS_MAX}"));
    }
    // The latest first, as people look for them; oldest first when tailing from `after`.
    let query = EventQuery {
        after_id: p.after,
        since,
        until,
        siren: p.siren,
        kind: p.kind.filter(|k| !k.is_empty()),
        newest_first: p.after.is_none(),
        limit,
    };
    match read_committed(&state, move |store| store.events(&query)).await {
        Ok(rows) => Json(
            rows.into_iter()
                .map(|r| views::EventView {
                    id: r.id,
                    at: r.event.at.to_string(),
                    siren: r.event.siren,
                    kind: r.event.kind,
                    detail: r.event.detail,
                })
                .collect::<Vec<_>>(),
        )
        .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, Json(json!({"error": e.to_string()}))).into_response(),
    }
}

//! `/api/activations`: LIVE warnings. One person requests (`request_live`), a different person
//! approves or rejects (`approve_live`) within the approval window; each step is audited and
//! stored before it is answered. Nothing here shares a path, a message type or an event kind
//! with test soundings.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::oneshot;

use super::views::ApiError;
use super::{AppState, Ask, Client, authorize};
use crate::auth::Permission;
use crate::engine::Input;
use crate::engine::live::{LiveError, LiveInput, LiveView};
use crate::live::{Activation, Refused};

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({"error": message.into()}))).into_response()
}

fn invalid(field: &str, message: &str) -> Response {
    (StatusCode::UNPROCESSABLE_ENTITY, Json(json!({"error": message, "field": field}))).into_response()
}

pub(super) fn refusal(e: &LiveError) -> Response {
    let message = e.to_string();
    match e {
        LiveError::Refused(Refused::Unknown(_)) => error(StatusCode::NOT_FOUND, message),
        LiveError::Refused(Refused::SamePerson(..)) | LiveError::Forbidden(_) => error(StatusCode::FORBIDDEN, message),
        LiveError::Refused(Refused::Expired(..) | Refused::NotPending(..)) | LiveError::Campaign(_) => {
            error(StatusCode::CONFLICT, message)
        }
        LiveError::Invalid { field, .. } => {
            (StatusCode::UNPROCESSABLE_ENTITY, Json(json!({"error": message, "field": field}))).into_response()
        }
        LiveError::Store(_) => error(StatusCode::SERVICE_UNAVAILABLE, message),
    }
}

/// Asks the engine and waits for its answer.
async fn ask_engine<T>(state: &AppState, make: impl FnOnce(oneshot::Sender<T>) -> LiveInput) -> Result<T, Response> {
    super::ask_engine(state, |tx| Input::Live(make(tx))).await
}

/// A LIVE request.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RequestBody {
    /// Target zones (each with the zones inside it).
    #[serde(default)]
    zones: Vec<String>,
    /// Target sirens. No zones, sirens or area: the whole fleet.
    #[serde(default)]
    sirens: Vec<String>,
    /// A target area: a GeoJSON `Polygon` or `MultiPolygon` geometry (`[longitude, latitude]`,
    /// WGS 84); the sirens standing inside it or on its edge when requested are targeted.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    area: Option<serde_json::Value>,
    /// `pre-warning`, `air-raid`, `all-clear`, or a configured hazard signal (`[[live.signals]]`).
    signal: String,
    /// When to sound (RFC 3339); absent: at once on approval.
    #[serde(default)]
    #[schema(value_type = Option<String>, format = DateTime)]
    at: Option<Timestamp>,
    /// Why: what the warning is about.
    #[schema(min_length = 1, max_length = 1000)]
    reason: String,
}

/// Requests a LIVE warning: a different person must approve it within the approval window
/// (unless a `[[live.waivers]]` entry waives that for this token in these zones).
#[utoipa::path(post, path = "/api/activations", tag = "warnings", security(("bearer" = [])),
    request_body = RequestBody,
    responses(
        (status = 201, description = "Requested (or, waived, approved and sounding)", body = Activation),
        (status = 400, description = "A malformed body", body = ApiError),
        (status = 401, description = "No valid token", body = ApiError),
        (status = 403, description = "The token may not request, or not in these zones", body = ApiError),
        (status = 409, description = "It could not be started", body = ApiError),
        (status = 413, description = "The body is too large", body = ApiError),
        (status = 422, description = "A field is invalid", body = ApiError),
        (status = 503, description = "The engine or the store cannot do it now", body = ApiError),
    ))]
pub(super) async fn request(
    State(state): State<AppState>,
    client: Client,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(refused) = super::authenticated(&state, &headers, client, "request-live") {
        return *refused;
    }
    let body: RequestBody = match super::json_object(&body) {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("body: {e}")),
    };
    let reason = body.reason.trim().to_owned();
    if reason.is_empty() || reason.chars().count() > 1000 {
        return invalid("reason", "reason: say what the warning is about (at most 1,000 characters)");
    }
    let mut sirens = body.sirens;
    let zones: Option<Vec<String>> = {
        let fleet = super::fleet(&state);
        if let Some(value) = &body.area {
            // The sirens inside are fixed now: what the second person approves is what sounds.
            let inside = match crate::area::Area::from_geojson(value) {
                Ok(area) => area.sirens_inside(&fleet),
                Err(e) => return invalid("area", &format!("area: {e}")),
            };
            if inside.is_empty() {
                return invalid("area", "area: no siren stands inside it");
            }
            let named: std::collections::HashSet<String> = sirens.iter().cloned().collect();
            sirens.extend(inside.into_iter().filter(|id| !named.contains(id)));
        }
        let mut zones = body.zones.clone();
        zones.extend(sirens.iter().filter_map(|id| fleet.get(id).map(|s| s.zone.to_string())));
        zones.sort_unstable();
        zones.dedup();
        (!zones.is_empty()).then_some(zones)
    };
    let target =
        format!("LIVE {} on {}", body.signal, zones.as_ref().map_or("every siren".to_owned(), |z| z.join(", ")));
    let ask = Ask {
        permission: Permission::RequestLive,
        action: "request-live",
        target: &target,
        zones: zones.as_deref(),
        note: &reason,
    };
    let by = match authorize(&state, &headers, client, &ask) {
        Ok(by) => by,
        Err(refused) => return *refused,
    };
    let ask = crate::live::Ask { zones: body.zones, sirens, area: body.area, signal: body.signal, at: body.at, reason };
    match ask_engine(&state, |reply| LiveInput::Request { ask, by, reply }).await {
        Ok(Ok(a)) => (StatusCode::CREATED, Json(a)).into_response(),
        Ok(Err(e)) => refusal(&e),
        Err(r) => r,
    }
}

/// The zones an activation touches, for the permission check (none for an unknown one: the
/// engine answers 404).
async fn zones_of(state: &AppState, id: u32) -> Result<Option<Vec<String>>, Response> {
    let view = ask_engine(state, |reply| LiveInput::Get { id, reply }).await?;
    let Some(v) = view else { return Ok(Some(Vec::new())) };
    let a = v.activation;
    if a.zones.is_empty() && a.sirens.is_empty() {
        return Ok(None);
    }
    let fleet = super::fleet(state);
    let mut zones = a.zones.clone();
    zones.extend(a.sirens.iter().filter_map(|id| fleet.get(id).map(|s| s.zone.to_string())));
    zones.sort_unstable();
    zones.dedup();
    Ok(Some(zones))
}

/// A reason, for rejections and false alarms.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReasonBody {
    #[serde(default)]
    #[schema(max_length = 1000)]
    reason: String,
}

/// Approves another person's pending request: its warning sounds at once (or at its instant).
#[utoipa::path(post, path = "/api/activations/{id}/approve", tag = "warnings", security(("bearer" = [])),
    params(("id" = u32, Path, description = "The activation")),
    responses(
        (status = 200, description = "Approved and started", body = Activation),
        (status = 400, description = "A malformed id", body = ApiError),
        (status = 401, description = "No valid token", body = ApiError),
        (status = 403, description = "The token may not approve, not in these zones, or it is the requester's own", body = ApiError),
        (status = 404, description = "No such activation", body = ApiError),
        (status = 409, description = "Expired, or not waiting for approval", body = ApiError),
        (status = 503, description = "The engine or the store cannot do it now", body = ApiError),
    ))]
pub(super) async fn approve(
    State(state): State<AppState>,
    Path(id): Path<u32>,
    client: Client,
    headers: HeaderMap,
) -> Response {
    step(&state, id, client, &headers, Permission::ApproveLive, "approve-live", String::new()).await
}

/// Rejects a pending request.
#[utoipa::path(post, path = "/api/activations/{id}/reject", tag = "warnings", security(("bearer" = [])),
    params(("id" = u32, Path, description = "The activation")),
    request_body(content = Option<ReasonBody>, description = "Optional"),
    responses(
        (status = 200, description = "Rejected", body = Activation),
        (status = 400, description = "A malformed body or id", body = ApiError),
        (status = 401, description = "No valid token", body = ApiError),
        (status = 403, description = "The token may not, or not in these zones", body = ApiError),
        (status = 404, description = "No such activation", body = ApiError),
        (status = 409, description = "Expired, or not waiting for approval", body = ApiError),
        (status = 413, description = "The body is too large", body = ApiError),
        (status = 422, description = "The reason is too long", body = ApiError),
        (status = 503, description = "The engine or the store cannot do it now", body = ApiError),
    ))]
pub(super) async fn reject(
    State(state): State<AppState>,
    Path(id): Path<u32>,
    client: Client,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    reasoned_step(&state, id, client, &headers, Permission::ApproveLive, "reject-live", &body).await
}

/// Marks an activation a false alarm: recorded and audited, and whatever of it still sounds
/// is stopped.
#[utoipa::path(post, path = "/api/activations/{id}/false-alarm", tag = "warnings", security(("bearer" = [])),
    params(("id" = u32, Path, description = "The activation")),
    request_body(content = Option<ReasonBody>, description = "Optional"),
    responses(
        (status = 200, description = "Marked", body = Activation),
        (status = 400, description = "A malformed body or id", body = ApiError),
        (status = 401, description = "No valid token", body = ApiError),
        (status = 403, description = "The token may not, or not in these zones", body = ApiError),
        (status = 404, description = "No such activation", body = ApiError),
        (status = 413, description = "The body is too large", body = ApiError),
        (status = 422, description = "The reason is too long", body = ApiError),
        (status = 503, description = "The engine or the store cannot do it now", body = ApiError),
    ))]
pub(super) async fn false_alarm(
    State(state): State<AppState>,
    Path(id): Path<u32>,
    client: Client,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    reasoned_step(&state, id, client, &headers, Permission::RequestLive, "false-alarm-live", &body).await
}

/// A step that takes an optional reason: the token is checked before the body is read.
async fn reasoned_step(
    state: &AppState,
    id: u32,
    client: Client,
    headers: &HeaderMap,
    permission: Permission,
    action: &'static str,
    body: &Bytes,
) -> Response {
    if let Err(refused) = super::authenticated(state, headers, client, action) {
        return *refused;
    }
    let reason = match reason_of(body) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    step(state, id, client, headers, permission, action, reason).await
}

fn reason_of(body: &Bytes) -> Result<String, Box<Response>> {
    if body.is_empty() {
        return Ok(String::new());
    }
    let b: ReasonBody =
        super::json_object(body).map_err(|e| Box::new(error(StatusCode::BAD_REQUEST, format!("body: {e}"))))?;
    if b.reason.chars().count() > 1000 {
        let body = Json(json!({"error": "reason: at most 1,000 characters", "field": "reason"}));
        return Err(Box::new((StatusCode::UNPROCESSABLE_ENTITY, body).into_response()));
    }
    Ok(b.reason.trim().to_owned())
}

/// Approve, reject or false alarm: authorised in the activation's zones, then done.
async fn step(
    state: &AppState,
    id: u32,
    client: Client,
    headers: &HeaderMap,
    permission: Permission,
    action: &str,
    reason: String,
) -> Response {
    if let Err(refused) = super::authenticated(state, headers, client, action) {
        return *refused;
    }
    let zones = match zones_of(state, id).await {
        Ok(z) => z,
        Err(r) => return r,
    };
    let target = format!("activation {id}");
    let ask = Ask { permission, action, target: &target, zones: zones.as_deref(), note: &reason };
    let by = match authorize(state, headers, client, &ask) {
        Ok(by) => by,
        Err(refused) => return *refused,
    };
    let answer = match permission {
        Permission::ApproveLive if action == "approve-live" => {
            ask_engine(state, |reply| LiveInput::Approve { id, by, reply }).await
        }
        Permission::ApproveLive => ask_engine(state, |reply| LiveInput::Reject { id, by, reason, reply }).await,
        _ => ask_engine(state, |reply| LiveInput::FalseAlarm { id, by, reason, reply }).await,
    };
    match answer {
        Ok(Ok(a)) => Json(a).into_response(),
        Ok(Err(e)) => refusal(&e),
        Err(r) => r,
    }
}

/// The latest 100 activations, newest first.
#[utoipa::path(get, path = "/api/activations", tag = "warnings", responses(
    (status = 200, description = "The activations", body = [Activation]),
    (status = 503, description = "The engine is not running", body = ApiError),
))]
pub(super) async fn list(State(state): State<AppState>) -> Response {
    match ask_engine(&state, |reply| LiveInput::List { reply }).await {
        Ok(all) => Json(all).into_response(),
        Err(r) => r,
    }
}

/// One activation with each of its sirens: pending, armed, sounding, done, failed or stopped,
/// and the latency from approval to its start of sound.
#[utoipa::path(get, path = "/api/activations/{id}", tag = "warnings",
    params(("id" = u32, Path, description = "The activation")),
    responses(
        (status = 200, description = "The activation", body = LiveView),
        (status = 400, description = "A malformed id", body = ApiError),
        (status = 404, description = "No such activation", body = ApiError),
        (status = 503, description = "The engine is not running", body = ApiError),
    ))]
pub(super) async fn one(State(state): State<AppState>, Path(id): Path<u32>) -> Response {
    match ask_engine(&state, |reply| LiveInput::Get { id, reply }).await {
        Ok(Some(v)) => Json(v).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, format!("no activation {id}")),
        Err(r) => r,
    }
}

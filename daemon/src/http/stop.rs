//! `POST /api/stop`: one step stops every siren in a scope (the `stop` permission, which every
//! operator has; no second person, no reason required: stopping must never wait), and
//! `GET /api/stop/{id}` follows it until the last siren is confirmed silent.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::views::ApiError;
use super::{AppState, Ask, Client, authorize};
use crate::auth::Permission;
use crate::engine::Input;
use crate::engine::stops::StopScope;
use crate::sounding::stop::SweepView;

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({"error": message.into()}))).into_response()
}

/// What to stop: sirens in these zones and these sirens; an empty body stops every siren.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct StopBody {
    #[serde(default)]
    zones: Vec<String>,
    #[serde(default)]
    sirens: Vec<String>,
    /// Why, for the record (optional: a stop never waits for words).
    #[serde(default)]
    #[schema(max_length = 1000)]
    reason: String,
}

/// Stops every siren in scope now: a broadcast `STOP` on each serial bus the scope covers
/// whole, then `STOP` to every siren until each answers; the campaigns' targets in scope are
/// stopped too (armed ones disarmed). Answers the sweep; follow it at `/api/stop/{id}`.
#[utoipa::path(post, path = "/api/stop", tag = "soundings", security(("bearer" = [])),
    request_body(content = Option<StopBody>, description = "Optional: an empty body stops every siren"),
    responses(
        (status = 202, description = "Stopping; the sweep as it began", body = SweepView),
        (status = 400, description = "A malformed body", body = ApiError),
        (status = 401, description = "No valid token", body = ApiError),
        (status = 403, description = "The token may not stop, or not in these zones", body = ApiError),
        (status = 413, description = "The body is too large", body = ApiError),
        (status = 422, description = "A field is invalid (no such siren or zone)", body = ApiError),
        (status = 503, description = "The engine is not running", body = ApiError),
    ))]
pub(super) async fn stop(State(state): State<AppState>, client: Client, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(refused) = super::authenticated(&state, &headers, client, "stop") {
        return *refused;
    }
    let body: StopBody = match super::json_object(&body) {
        Ok(b) => b,
        Err(_) if body.is_empty() => StopBody::default(),
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("body: {e}")),
    };
    if body.reason.chars().count() > 1000 {
        let error = "reason: at most 1000 characters";
        return (StatusCode::UNPROCESSABLE_ENTITY, Json(json!({"error": error, "field": "reason"}))).into_response();
    }
    // The zones it touches: those named, and each named siren's.
    let zones: Option<Vec<String>> = {
        let fleet = super::fleet(&state);
        if body.zones.is_empty() && body.sirens.is_empty() {
            None
        } else {
            let mut zones = Vec::new();
            for z in &body.zones {
                if !fleet.sirens().iter().any(|s| s.zone.is_within(z)) {
                    let error = format!("no siren is in zone `{z}`");
                    return (StatusCode::UNPROCESSABLE_ENTITY, Json(json!({"error": error, "field": "zones"})))
                        .into_response();
                }
                zones.push(z.clone());
            }
            for id in &body.sirens {
                let Some(siren) = fleet.get(id) else {
                    let error = format!("no siren `{id}`");
                    return (StatusCode::UNPROCESSABLE_ENTITY, Json(json!({"error": error, "field": "sirens"})))
                        .into_response();
                };
                zones.push(siren.zone.to_string());
            }
            Some(zones)
        }
    };
    let scope = StopScope { zones: body.zones, sirens: body.sirens };
    let target = scope.describe();
    let ask = Ask {
        permission: Permission::Stop,
        action: "stop",
        target: &target,
        zones: zones.as_deref(),
        note: &body.reason,
    };
    let by = match authorize(&state, &headers, client, &ask) {
        Ok(by) => by,
        Err(refused) => return *refused,
    };
    let reason =
        if body.reason.trim().is_empty() { "no reason given".to_owned() } else { body.reason.trim().to_owned() };
    match super::ask_engine(&state, |reply| Input::Stop { scope, by, reason, reply }).await {
        Ok(view) => (StatusCode::ACCEPTED, Json(view)).into_response(),
        Err(unavailable) => unavailable,
    }
}

/// A stop sweep: which sirens are confirmed silent, and when the last one was.
#[utoipa::path(get, path = "/api/stop/{id}", tag = "soundings",
    params(("id" = u32, Path, description = "The sweep")),
    responses(
        (status = 200, description = "The sweep", body = SweepView),
        (status = 400, description = "Not a sweep id", body = ApiError),
        (status = 404, description = "No such sweep (the latest 20 are kept)", body = ApiError),
        (status = 503, description = "The engine is not running", body = ApiError),
    ))]
pub(super) async fn status(State(state): State<AppState>, Path(id): Path<u32>) -> Response {
    match super::ask_engine(&state, |reply| Input::StopStatus { id, reply }).await {
        Ok(Some(view)) => Json(view).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, format!("no stop {id}")),
        Err(unavailable) => unavailable,
    }
}

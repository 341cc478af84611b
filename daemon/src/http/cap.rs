//! `/api/cap`: CAP 1.2 alerts from warning platforms. A platform posts one `<alert>` document
//! with its own token (the `submit_cap` permission; its zones limit where its alerts may
//! reach); what the alert does is decided by `[[cap.rules]]` and answered, and every alert
//! received is listed at `/api/cap/alerts`.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::views::ApiError;
use super::{AppState, Ask, Client, authorize};
use crate::auth::{Caller, Permission};
use crate::cap::Alert;
use crate::cap::intake::Received;
use crate::engine::Input;
use crate::engine::cap::CapInput;

/// Takes a CAP 1.2 alert: an `Actual` alert a rule matches requests a LIVE warning (a second
/// person approves it unless `[[live.waivers]]` waives that for this source), an `Update` or
/// `Cancel` acts on the warning of the alert it references, an `Exercise` never sounds LIVE,
/// the same alert twice is applied once. An invalid document is refused and nothing of it is
/// applied.
#[utoipa::path(post, path = "/api/cap", tag = "warnings", security(("bearer" = [])),
    request_body(content = String, content_type = "application/cap+xml", description = "One CAP 1.2 `<alert>` document"),
    responses(
        (status = 200, description = "What the alert did (`outcome`), or did the first time it came", body = Received),
        (status = 401, description = "No valid token", body = ApiError),
        (status = 403, description = "The token may not submit alerts, or not for this area", body = ApiError),
        (status = 413, description = "The body is too large", body = ApiError),
        (status = 422, description = "Not a valid CAP 1.2 alert; the reason", body = ApiError),
        (status = 503, description = "The engine or the store cannot do it now", body = ApiError),
    ))]
pub(super) async fn submit(State(state): State<AppState>, client: Client, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(refused) = super::authenticated(&state, &headers, client, "submit-cap") {
        return *refused;
    }
    let ask = Ask {
        permission: Permission::SubmitCap,
        action: "submit-cap",
        target: "CAP alert",
        zones: Some(&[]),
        note: "",
    };
    let source = match authorize(&state, &headers, client, &ask) {
        Ok(name) => name,
        Err(refused) => return *refused,
    };
    let zones = match state.tokens.identify(headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok())) {
        Caller::Known(grant) => grant.zones,
        Caller::Anonymous | Caller::Unknown => Vec::new(),
    };
    let parsed = std::str::from_utf8(&body)
        .map_err(|_| "not a CAP 1.2 alert: the body is not UTF-8 text".to_owned())
        .and_then(|text| Alert::parse(text).map_err(|e| e.to_string()));
    let alert = match parsed {
        Ok(a) => a,
        Err(why) => {
            tracing::warn!(source, error = %why, "CAP alert refused");
            state.metrics.cap_alert(&source, "refused");
            let body = json!({"error": why, "field": "alert"});
            return (StatusCode::UNPROCESSABLE_ENTITY, Json(body)).into_response();
        }
    };
    let alert = Box::new(alert);
    match super::ask_engine(&state, |reply| Input::Cap(CapInput::Submit { alert, source, zones, reply })).await {
        Ok(Ok(received)) => Json(received).into_response(),
        Ok(Err(e)) => super::live::refusal(&e),
        Err(r) => r,
    }
}

/// The latest 100 CAP alerts received, newest first, each with its source, the rule that
/// matched and what it did.
#[utoipa::path(get, path = "/api/cap/alerts", tag = "warnings",
    responses(
        (status = 200, description = "Alerts received", body = Vec<Received>),
        (status = 503, description = "The engine is not running", body = ApiError),
    ))]
pub(super) async fn alerts(State(state): State<AppState>) -> Response {
    match super::ask_engine(&state, |reply| Input::Cap(CapInput::List { reply })).await {
        Ok(all) => Json(all).into_response(),
        Err(r) => r,
    }
}

/// This daemon's LIVE warnings as CAP 1.2 messages in an Atom feed, newest first: each
/// approved warning an `Alert` (an `Update` when it updates another), each stopped warning or
/// false alarm a `Cancel` referencing it; the area is the sirens' audible circles.
#[utoipa::path(get, path = "/api/cap.atom", tag = "warnings",
    responses(
        (status = 200, description = "The Atom feed", body = String, content_type = "application/atom+xml"),
        (status = 503, description = "The engine is not running", body = ApiError),
    ))]
pub(super) async fn feed(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost");
    let url = format!("http://{host}/api/cap.atom");
    match super::ask_engine(&state, |reply| Input::Cap(CapInput::Feed { url, reply })).await {
        Ok(text) => ([(header::CONTENT_TYPE, "application/atom+xml; charset=utf-8")], text).into_response(),
        Err(r) => r,
    }
}

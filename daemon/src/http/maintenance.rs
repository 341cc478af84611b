//! `/api/maintenance`: crews take a siren, or a zone's sirens, out of service for a while and
//! back (the `maintenance` permission, audited); the windows open now, or all of them.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::views::ApiError;
use super::{AppState, Ask, Client, authorize};
use crate::auth::Permission;
use crate::maintenance::{Refused, Scope, Window};
use crate::store::Event;

/// The longest reason or note a crew may give.
const TEXT_MAX_CHARS: usize = 1000;

fn invalid(field: &str, message: impl Into<String>) -> Response {
    (StatusCode::UNPROCESSABLE_ENTITY, Json(json!({"error": message.into(), "field": field}))).into_response()
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({"error": message.into()}))).into_response()
}

/// A maintenance window as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct WindowView {
    pub id: u32,
    /// `siren` or `zone`.
    pub scope: &'static str,
    /// The siren id or the zone path.
    pub target: String,
    pub by: String,
    pub reason: String,
    pub from: String,
    pub until: String,
    /// Whether it holds now.
    pub in_force: bool,
    pub ended: Option<EndedView>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct EndedView {
    pub at: String,
    /// Who ended it; empty when it lapsed at `until`.
    pub by: String,
    pub note: String,
}

impl WindowView {
    pub fn new(w: &Window, now: Timestamp) -> Self {
        Self {
            id: w.id,
            scope: w.scope.kind(),
            target: w.scope.target().to_owned(),
            by: w.by.clone(),
            reason: w.reason.clone(),
            from: w.from.to_string(),
            until: w.until.to_string(),
            in_force: w.in_force(now),
            ended: w.ended.as_ref().map(|e| EndedView { at: e.at.to_string(), by: e.by.clone(), note: e.note.clone() }),
        }
    }
}

/// `POST /api/maintenance`: one of `siren` or `zone`, why, and until when.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct StartBody {
    #[serde(default)]
    siren: Option<String>,
    #[serde(default)]
    zone: Option<String>,
    /// Why it is out of service.
    #[schema(min_length = 1, max_length = 1000)]
    reason: String,
    /// RFC 3339; at most 31 days ahead.
    #[schema(value_type = String, format = DateTime)]
    until: Timestamp,
}

/// Takes a siren, or every siren of a zone, out of service until `until` (the `maintenance`
/// permission, in that zone): it does not page, is left out of test soundings, and the
/// coverage it costs is shown apart.
#[utoipa::path(post, path = "/api/maintenance", tag = "maintenance", security(("bearer" = [])),
    request_body = StartBody,
    responses(
        (status = 201, description = "The window opened", body = WindowView),
        (status = 400, description = "A malformed body", body = ApiError),
        (status = 401, description = "No valid token", body = ApiError),
        (status = 403, description = "The token may not, or not in this zone", body = ApiError),
        (status = 413, description = "The body is too large", body = ApiError),
        (status = 422, description = "A field is invalid (no such siren or zone, `until` past or too far)", body = ApiError),
    ))]
pub(super) async fn start(State(state): State<AppState>, client: Client, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(refused) = super::authenticated(&state, &headers, client, "start-maintenance") {
        return *refused;
    }
    let body: StartBody = match super::json_object(&body) {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("body: {e}")),
    };
    if body.reason.chars().count() > TEXT_MAX_CHARS {
        return invalid("reason", format!("reason: at most {TEXT_MAX_CHARS} characters"));
    }
    let (scope, zone) = {
        let fleet = super::fleet(&state);
        match (body.siren, body.zone) {
            (Some(id), None) => match fleet.get(&id) {
                Some(s) => {
                    let zone = s.zone.to_string();
                    (Scope::Siren(id), zone)
                }
                None => return invalid("siren", format!("no siren `{id}`")),
            },
            (None, Some(zone)) => {
                let zone = zone.trim_end_matches('/').to_owned();
                if !fleet.sirens().iter().any(|s| s.zone.is_within(&zone)) {
                    return invalid("zone", format!("no siren is in zone `{zone}`"));
                }
                (Scope::Zone(zone.clone()), zone)
            }
            _ => return invalid("siren", "name one of `siren` or `zone`"),
        }
    };
    let target = format!("{} {}", scope.kind(), scope.target());
    let ask = Ask {
        permission: Permission::Maintenance,
        action: "start-maintenance",
        target: &target,
        zones: Some(std::slice::from_ref(&zone)),
        note: &body.reason,
    };
    let by = match authorize(&state, &headers, client, &ask) {
        Ok(by) => by,
        Err(refused) => return *refused,
    };
    let now = Timestamp::now();
    let opened = state.fleet.write().unwrap_or_else(std::sync::PoisonError::into_inner).maintenance_mut().start(
        scope,
        &by,
        body.reason.trim(),
        body.until,
        now,
    );
    let window = match opened {
        Ok(w) => w,
        Err(refused) => return refusal(&refused),
    };
    let _ = state.store.save_maintenance(&window);
    let _ = state.store.record(Event {
        at: now,
        siren: siren_of(&window),
        kind: "maintenance_started".into(),
        detail: format!("window {}: {}", window.id, window.summary()),
    });
    committed(&state).await;
    (StatusCode::CREATED, Json(WindowView::new(&window, now))).into_response()
}

/// Waits until the window and its event are committed, so that a crew answered 201 or 200
/// finds the change in `?all=true` and in the events, and it outlives a crash. The window is in
/// force from the moment it is opened or ended, stored or not: a store that does not answer is
/// logged, its writes stay queued and are retried, and the answer is not withheld.
async fn committed(state: &AppState) {
    if let Err(e) = super::read_store(state, crate::store::Store::flush).await {
        tracing::warn!("a maintenance window is in force but not yet stored: {e}");
    }
}

fn siren_of(w: &Window) -> Option<String> {
    match &w.scope {
        Scope::Siren(id) => Some(id.clone()),
        Scope::Zone(_) => None,
    }
}

fn refusal(why: &Refused) -> Response {
    let message = why.to_string();
    match why {
        Refused::UntilPast | Refused::TooLong => invalid("until", message),
        Refused::NoReason => invalid("reason", message),
        Refused::Unknown(_) => error(StatusCode::NOT_FOUND, message),
        Refused::AlreadyEnded(_) => error(StatusCode::CONFLICT, message),
    }
}

/// `POST /api/maintenance/{id}/end`: the crew is done before `until`.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct EndBody {
    #[serde(default)]
    #[schema(max_length = 1000)]
    note: String,
}

/// Ends a window before its `until`: the crew is done.
#[utoipa::path(post, path = "/api/maintenance/{id}/end", tag = "maintenance", security(("bearer" = [])),
    params(("id" = u32, Path, description = "The window")),
    request_body(content = Option<EndBody>, description = "Optional"),
    responses(
        (status = 200, description = "The window ended", body = WindowView),
        (status = 400, description = "A malformed body or id", body = ApiError),
        (status = 401, description = "No valid token", body = ApiError),
        (status = 403, description = "The token may not, or not in this zone", body = ApiError),
        (status = 404, description = "No such window", body = ApiError),
        (status = 409, description = "It has ended already", body = ApiError),
        (status = 413, description = "The body is too large", body = ApiError),
        (status = 422, description = "A field is invalid", body = ApiError),
    ))]
pub(super) async fn end(
    State(state): State<AppState>,
    Path(id): Path<u32>,
    client: Client,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(refused) = super::authenticated(&state, &headers, client, "end-maintenance") {
        return *refused;
    }
    let body: EndBody = match super::json_object(&body) {
        Ok(b) => b,
        Err(_) if body.is_empty() => EndBody::default(),
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("body: {e}")),
    };
    if body.note.chars().count() > TEXT_MAX_CHARS {
        return invalid("note", format!("note: at most {TEXT_MAX_CHARS} characters"));
    }
    // The zone it covers decides who may end it; an unknown window touches none (a 404).
    let zone = {
        let fleet = super::fleet(&state);
        fleet.maintenance().open().iter().find(|w| w.id == id).map(|w| match &w.scope {
            Scope::Siren(s) => fleet.get(s).map(|s| s.zone.to_string()).unwrap_or_default(),
            Scope::Zone(z) => z.clone(),
        })
    };
    let zones: Vec<String> = zone.into_iter().collect();
    let target = format!("maintenance {id}");
    let ask = Ask {
        permission: Permission::Maintenance,
        action: "end-maintenance",
        target: &target,
        zones: Some(&zones),
        note: &body.note,
    };
    let by = match authorize(&state, &headers, client, &ask) {
        Ok(by) => by,
        Err(refused) => return *refused,
    };
    let now = Timestamp::now();
    let ended = state.fleet.write().unwrap_or_else(std::sync::PoisonError::into_inner).maintenance_mut().end(
        id,
        &by,
        body.note.trim(),
        now,
    );
    let window = match ended {
        Ok(w) => w,
        Err(refused) => return refusal(&refused),
    };
    let _ = state.store.save_maintenance(&window);
    let note = if body.note.trim().is_empty() { String::new() } else { format!(": {}", body.note.trim()) };
    let _ = state.store.record(Event {
        at: now,
        siren: siren_of(&window),
        kind: "maintenance_ended".into(),
        detail: format!("window {}: {}: ended by {by}{note}", window.id, window.summary()),
    });
    committed(&state).await;
    Json(WindowView::new(&window, now)).into_response()
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    /// Past windows too (the latest 1,000), not only those open.
    #[serde(default)]
    all: bool,
    /// Only windows that cover this siren.
    siren: Option<String>,
    /// Only windows that cover sirens in this zone.
    zone: Option<String>,
}

/// The windows open now (or all, `?all=true`), the latest first.
#[utoipa::path(get, path = "/api/maintenance", tag = "maintenance", params(ListQuery), responses(
    (status = 200, description = "The windows", body = [WindowView]),
    (status = 400, description = "A malformed parameter", body = ApiError),
    (status = 404, description = "No such siren", body = ApiError),
    (status = 503, description = "The store did not answer", body = ApiError),
))]
pub(super) async fn list(State(state): State<AppState>, Query(q): Query<ListQuery>) -> Response {
    let now = Timestamp::now();
    let windows = if q.all {
        match super::read_committed(&state, |store| store.maintenance_windows(false, 1000)).await {
            Ok(w) => w,
            Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        }
    } else {
        let mut open = super::fleet(&state).maintenance().open().to_vec();
        open.reverse();
        open
    };
    let siren_zone = match &q.siren {
        Some(id) => match super::fleet(&state).get(id) {
            Some(s) => Some((id.clone(), s.zone.to_string())),
            None => return error(StatusCode::NOT_FOUND, format!("no siren `{id}`")),
        },
        None => None,
    };
    let shown: Vec<WindowView> = windows
        .iter()
        .filter(|w| siren_zone.as_ref().is_none_or(|(id, zone)| w.scope.covers(id, zone)))
        .filter(|w| {
            q.zone.as_deref().is_none_or(|z| match &w.scope {
                // A window over a zone that holds `z`, or over a zone or siren inside it.
                Scope::Zone(wz) => crate::coverage::within(z, wz) || crate::coverage::within(wz, z),
                Scope::Siren(id) => super::fleet(&state).get(id).is_some_and(|s| s.zone.is_within(z)),
            })
        })
        .map(|w| WindowView::new(w, now))
        .collect();
    Json(shown).into_response()
}

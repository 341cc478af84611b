//! `GET /api/stream`: the event log as it grows, as server-sent events, for pages that follow
//! the daemon without reloading (the console). Each committed event is one SSE event: `id`
//! its id in the log, `event: event`, `data` the JSON of `/api/events`. A client that
//! reconnects with `Last-Event-ID` (or `?after=`) first gets what it missed from the store.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;

use super::AppState;
use super::views::EventView;
use crate::store::{EventQuery, Stored};

/// What missed events a reconnecting client is sent at most; beyond, it reloads.
const CATCH_UP: usize = 10_000;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct StreamParams {
    /// Only this siren's events.
    siren: Option<String>,
    /// Only events of this kind.
    kind: Option<String>,
    /// Start after this event id (as `Last-Event-ID`): the events since are sent first.
    after: Option<i64>,
}

/// Follows the event log live (`text/event-stream`).
#[utoipa::path(get, path = "/api/stream", tag = "events", params(StreamParams),
    responses((status = 200, description = "Server-sent events, one per event committed", content_type = "text/event-stream", body = String)))]
pub(super) async fn stream(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(p): Query<StreamParams>,
) -> Response {
    // Subscribed before the catch-up is read, so that nothing falls between them.
    let live = state.store.follow();
    let last_event_id = headers.get("last-event-id").and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse().ok());
    let after = p.after.or(last_event_id);
    let filter = Filter { siren: p.siren, kind: p.kind.filter(|k| !k.is_empty()) };
    let follower = Follower {
        store: std::sync::Arc::clone(&state.store),
        live,
        filter,
        last: after,
        pending: Vec::new(),
        behind: after.is_some(),
    };
    let events = futures_util::stream::unfold(follower, |mut f| async move {
        let item = f.next().await?;
        Some((Ok::<_, Infallible>(item), f))
    });
    Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))).into_response()
}

struct Filter {
    siren: Option<String>,
    kind: Option<String>,
}

impl Filter {
    fn passes(&self, s: &Stored) -> bool {
        self.siren.as_ref().is_none_or(|x| s.event.siren.as_ref() == Some(x))
            && self.kind.as_ref().is_none_or(|k| &s.event.kind == k)
    }
}

struct Follower {
    store: std::sync::Arc<crate::store::Store>,
    live: tokio::sync::broadcast::Receiver<Stored>,
    filter: Filter,
    /// The last id sent (or the client had).
    last: Option<i64>,
    /// Read from the store, still to send, oldest last.
    pending: Vec<Stored>,
    /// Events after `last` are to be read from the store first.
    behind: bool,
}

impl Follower {
    /// The next SSE event; `None` when the daemon stops.
    async fn next(&mut self) -> Option<SseEvent> {
        loop {
            if self.pending.is_empty() && self.behind {
                self.catch_up().await;
            }
            if let Some(s) = self.pending.pop() {
                return Some(self.send(s));
            }
            match self.live.recv().await {
                Ok(s) if self.last.is_some_and(|l| s.id <= l) => {}
                Ok(s) => {
                    self.last = Some(s.id);
                    if self.filter.passes(&s) {
                        return Some(self.send(s));
                    }
                }
                // Fell behind the live channel: read what was missed from the store.
                Err(RecvError::Lagged(_)) => self.behind = self.last.is_some(),
                Err(RecvError::Closed) => return None,
            }
        }
    }

    async fn catch_up(&mut self) {
        let query = EventQuery {
            after_id: self.last,
            siren: self.filter.siren.clone(),
            kind: self.filter.kind.clone(),
            limit: CATCH_UP,
            ..EventQuery::default()
        };
        let store = std::sync::Arc::clone(&self.store);
        let rows = tokio::task::spawn_blocking(move || store.events(&query)).await.ok().and_then(Result::ok);
        let mut rows = rows.unwrap_or_default();
        // A full page: there may be more after it.
        self.behind = rows.len() == CATCH_UP;
        rows.reverse();
        self.pending = rows;
    }

    fn send(&mut self, s: Stored) -> SseEvent {
        self.last = Some(self.last.map_or(s.id, |l| l.max(s.id)));
        let view = EventView {
            id: s.id,
            at: s.event.at.to_string(),
            siren: s.event.siren,
            kind: s.event.kind,
            detail: s.event.detail,
        };
        SseEvent::default().id(view.id.to_string()).event("event").json_data(&view).unwrap_or_default()
    }
}

//! The console: the page duty officers, test engineers and crews work in, served by sirend
//! itself. Every asset is compiled into the binary (control rooms are often cut off from the
//! internet); the page reads the same API as any client, with the token its user logs in with.
//!
//! - `/` the page, `/console/*` its script, styles and words (en, zh-CN);
//! - `GET /api/me`: who a token is and what it may do, so that the page offers no action the
//!   token may not take;
//! - `GET /api/console`: the page's settings (basemap, the soundings' time zone);
//! - `GET /api/zones.geojson`: each zone's area, for the map.

use std::sync::{Arc, OnceLock};

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use sha2::{Digest as _, Sha256};
use utoipa::ToSchema;

use super::AppState;
use super::views::ApiError;
use crate::auth::{Caller, Permission};

/// One file of the page.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static str,
}

/// An asset of `daemon/console/`, compiled in.
macro_rules! asset {
    ($name:literal, $content_type:literal) => {
        Asset { name: $name, content_type: $content_type, body: include_str!(concat!("../../console/", $name)) }
    };
}

const INDEX: Asset = asset!("index.html", "text/html; charset=utf-8");

const ASSETS: [Asset; 6] = [
    asset!("console.js", "text/javascript; charset=utf-8"),
    asset!("map.js", "text/javascript; charset=utf-8"),
    asset!("i18n.js", "text/javascript; charset=utf-8"),
    asset!("dom.js", "text/javascript; charset=utf-8"),
    asset!("words.js", "text/javascript; charset=utf-8"),
    asset!("console.css", "text/css; charset=utf-8"),
];

/// The entity tag of each asset (index first), computed once: browsers revalidate with it
/// and get `304` until sirend is upgraded.
fn tags() -> &'static [String] {
    static TAGS: OnceLock<Vec<String>> = OnceLock::new();
    TAGS.get_or_init(|| {
        std::iter::once(&INDEX)
            .chain(ASSETS.iter())
            .map(|a| format!("\"{}\"", hex::encode(&Sha256::digest(a.body.as_bytes())[..12])))
            .collect()
    })
}

fn serve(asset: &Asset, tag: &str, headers: &HeaderMap) -> Response {
    let fresh = headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()).is_some_and(|v| v == tag);
    let common = [
        (header::ETAG, tag.to_owned()),
        (header::CACHE_CONTROL, "no-cache".to_owned()),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_owned()),
    ];
    if fresh {
        return (StatusCode::NOT_MODIFIED, common).into_response();
    }
    // The page loads nothing from elsewhere but the configured basemap's tiles.
    let policy = "default-src 'self'; img-src 'self' http: https: data:; style-src 'self'; \
                  script-src 'self'; connect-src 'self'; frame-ancestors 'none'";
    (common, [(header::CONTENT_TYPE, asset.content_type), (header::CONTENT_SECURITY_POLICY, policy)], asset.body)
        .into_response()
}

/// The page (`/`).
pub(super) async fn index(headers: HeaderMap) -> Response {
    serve(&INDEX, &tags()[0], &headers)
}

/// A file of the page (`/console/{file}`).
pub(super) async fn asset(Path(file): Path<String>, headers: HeaderMap) -> Response {
    match ASSETS.iter().position(|a| a.name == file) {
        Some(i) => serve(&ASSETS[i], &tags()[i + 1], &headers),
        None => {
            (StatusCode::NOT_FOUND, Json(serde_json::json!({"error": "no such file of the console"}))).into_response()
        }
    }
}

/// Who the caller is and what it may do.
#[derive(Debug, Serialize, ToSchema)]
pub struct MeView {
    /// The token's name (`anonymous` without one).
    pub name: String,
    /// What it may do: `read`, `acknowledge`, `maintenance`, `schedule_test`, `cancel_test`,
    /// `stop`, `request_live`, `approve_live`, `submit_cap`, `admin`.
    pub permissions: Vec<&'static str>,
    /// The zones it acts in; empty: every zone.
    pub zones: Vec<String>,
    /// Whether reading the API needs a token.
    pub reads_need_token: bool,
}

/// Who a token is and what it may do (without a token: what anybody may).
#[utoipa::path(get, path = "/api/me", tag = "console", responses(
    (status = 200, description = "The caller", body = MeView),
    (status = 401, description = "The token is not valid", body = ApiError),
))]
pub(super) async fn me(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let caller = state.tokens.identify(headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()));
    let view = match caller {
        Caller::Known(grant) => MeView {
            name: grant.name,
            permissions: grant.permissions.iter().map(|p| p.as_str()).collect(),
            zones: grant.zones,
            reads_need_token: state.access.reads,
        },
        Caller::Anonymous => MeView {
            name: "anonymous".to_owned(),
            permissions: if state.access.reads { Vec::new() } else { vec![Permission::Read.as_str()] },
            zones: Vec::new(),
            reads_need_token: state.access.reads,
        },
        Caller::Unknown => {
            state.metrics.api_refused("unauthenticated");
            return (StatusCode::UNAUTHORIZED, Json(serde_json::json!({"error": "the token is not valid"})))
                .into_response();
        }
    };
    Json(view).into_response()
}

/// What the page is set up with.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConsoleSettings {
    /// A Web Mercator tile URL with `{z}`, `{x}`, `{y}` to draw under the map; none: no basemap.
    pub basemap: Option<String>,
    pub basemap_attribution: String,
    /// The time zone soundings are planned in (shown beside UTC).
    pub timezone: String,
    /// The signals a LIVE warning may sound: the air-defence ones, then `[[live.signals]]`.
    pub live_signals: Vec<String>,
    /// The catalogue's patterns, which a test sounding may play (docs/protocol.md).
    pub patterns: Vec<&'static str>,
    /// How long a LIVE request waits for its second person, s.
    pub approval_window_s: u32,
    /// sirend's version.
    pub version: &'static str,
    /// The zones' areas (GeoJSON), served at `/api/zones.geojson`.
    #[serde(skip)]
    pub zones: Arc<str>,
}

/// Without a configuration: no basemap, UTC, the air-defence signals, no zone areas.
impl Default for ConsoleSettings {
    fn default() -> Self {
        Self {
            basemap: None,
            basemap_attribution: String::new(),
            timezone: "UTC".to_owned(),
            live_signals: crate::live::LiveConfig::default().signal_names(),
            patterns: siren_proto::pattern::catalogue::NAMES.to_vec(),
            approval_window_s: crate::live::LiveConfig::default().approval_window_s,
            version: env!("CARGO_PKG_VERSION"),
            zones: crate::coverage::boundaries::to_geojson(&[]).into(),
        }
    }
}

/// The console's settings.
#[utoipa::path(get, path = "/api/console", tag = "console", responses(
    (status = 200, description = "The settings", body = ConsoleSettings),
))]
pub(super) async fn settings(State(state): State<AppState>) -> Response {
    Json(&*state.console).into_response()
}

/// Each zone's area: one MultiPolygon feature per zone, `zone` its path.
#[utoipa::path(get, path = "/api/zones.geojson", tag = "console", responses(
    (status = 200, description = "A GeoJSON FeatureCollection", content_type = "application/geo+json", body = Object),
))]
pub(super) async fn zones(State(state): State<AppState>) -> Response {
    ([(header::CONTENT_TYPE, "application/geo+json")], state.console.zones.to_string()).into_response()
}

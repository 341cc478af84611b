//! `/api/coverage`, `/api/coverage.geojson` and `/api/coverage.png`, each limited to a zone
//! and the zones inside it with `?zone=`.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::views::{CoverageView, PriorityView};

use super::AppState;
use super::views::ApiError;
use crate::coverage::metrics::SharedCoverage;
use crate::coverage::{Coverage, SirenLoss, ZoneFigures, export, render, within};

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({"error": message.into()}))).into_response()
}

fn unconfigured() -> Response {
    error(StatusCode::NOT_FOUND, "coverage is not set up: the daemon owns no siren")
}

/// The query of `/api/coverage` and `/api/coverage.geojson`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct CoverageQuery {
    /// Only this zone and the zones inside it.
    zone: Option<String>,
}

/// The query of `/api/coverage.png`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct MapQuery {
    /// Only this zone and the zones inside it.
    zone: Option<String>,
    /// The map's width in pixels.
    #[param(minimum = 640, maximum = 4096)]
    width: Option<u32>,
}

/// Why a coverage request was not answered.
#[derive(Debug)]
enum Refusal {
    NoZone(String),
    Failed,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::NoZone(z) => error(StatusCode::NOT_FOUND, format!("no zone `{z}` in the coverage")),
            Refusal::Failed => error(StatusCode::INTERNAL_SERVER_ERROR, "the coverage computation failed"),
        }
    }
}

/// Runs `f` on the coverage off the async threads: outlines and images of a large grid take
/// tens of milliseconds. Refused when the zone asked for is not one of the coverage's.
async fn with_coverage<T: Send + 'static>(
    coverage: SharedCoverage,
    zone: Option<String>,
    f: impl FnOnce(&mut Coverage, Option<&str>) -> T + Send + 'static,
) -> Result<T, Refusal> {
    tokio::task::spawn_blocking(move || {
        let mut c = coverage.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(z) = zone.as_deref().filter(|z| !c.has_zone(z)) {
            return Err(Refusal::NoZone(z.to_owned()));
        }
        Ok(f(&mut c, zone.as_deref()))
    })
    .await
    .unwrap_or(Err(Refusal::Failed))
}

/// Per zone: coverage by design, now and lost; the sirens that cannot sound ranked by the
/// people their failure leaves unwarned; the sirens whose failure would uncover the most.
#[utoipa::path(get, path = "/api/coverage", tag = "coverage", params(CoverageQuery), responses(
    (status = 200, description = "Coverage by design, now and lost, per zone", body = CoverageView),
    (status = 400, description = "A malformed parameter", body = ApiError),
    (status = 404, description = "No such zone, or coverage is not set up", body = ApiError),
    (status = 500, description = "The computation failed", body = ApiError),
))]
pub(super) async fn summary(State(state): State<AppState>, Query(q): Query<CoverageQuery>) -> Response {
    let Some(coverage) = state.coverage else { return unconfigured() };
    let body = with_coverage(coverage, q.zone, |c, zone| {
        let zones: Vec<ZoneFigures> =
            c.figures().into_iter().filter(|z| zone.is_none_or(|q| within(&z.zone, q))).collect();
        let failed_sirens: Vec<SirenLoss> =
            c.lost_by_siren().into_iter().filter(|s| zone.is_none_or(|q| within(&s.zone, q))).collect();
        let layout = c.map().layout();
        let (cell_size_m, overlap, population) = (layout.grid.cell_m, layout.overlap, layout.population.is_some());
        let cell_m2 = layout.grid.cell_area_m2();
        let site_zone: Vec<String> =
            c.map().sites().iter().map(|s| c.map().layout().zones[s.zone].path.clone()).collect();
        #[allow(clippy::cast_precision_loss)]
        let priority: Vec<PriorityView> = c
            .priority(usize::MAX)
            .into_iter()
            .filter(|(i, _, _)| zone.is_none_or(|q| within(&site_zone[*i], q)))
            .take(crate::coverage::table::PRIORITY_SIRENS)
            .map(|(i, id, s)| PriorityView {
                siren: id,
                zone: site_zone[i].clone(),
                sole_area_m2: s.cells as f64 * cell_m2,
                sole_population: population.then_some(s.population_milli as f64 / 1000.0),
            })
            .collect();
        CoverageView {
            at: jiff::Timestamp::now().to_string(),
            zone: zone.map(ToOwned::to_owned),
            cell_size_m,
            overlap,
            population,
            zones,
            failed_sirens,
            priority,
        }
    })
    .await;
    match body {
        Ok(body) => Json(body).into_response(),
        Err(refusal) => refusal.into_response(),
    }
}

/// Ground lost to failures and ground never covered, as merged polygons, loadable
/// cross-origin by a Grafana Geomap layer.
/// The ground not covered (lost to failures, and never covered by design) as a GeoJSON
/// FeatureCollection.
#[utoipa::path(get, path = "/api/coverage.geojson", tag = "coverage", params(CoverageQuery), responses(
    (status = 200, description = "A GeoJSON FeatureCollection", content_type = "application/geo+json", body = Object),
    (status = 400, description = "A malformed parameter", body = ApiError),
    (status = 404, description = "No such zone, or coverage is not set up", body = ApiError),
    (status = 500, description = "The computation failed", body = ApiError),
))]
pub(super) async fn geojson(State(state): State<AppState>, Query(q): Query<CoverageQuery>) -> Response {
    let Some(coverage) = state.coverage else { return unconfigured() };
    let body = with_coverage(coverage, q.zone, |c, zone| {
        let explained = c.explained_by_maintenance();
        export::uncovered_geojson_apart(c.map(), c.projection(), zone, explained.as_deref()).to_string()
    })
    .await;
    match body {
        Ok(body) => {
            ([(header::CONTENT_TYPE, "application/geo+json"), (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*")], body)
                .into_response()
        }
        Err(refusal) => refusal.into_response(),
    }
}

/// The rendered map.
/// The coverage map with its legend, as a PNG.
#[utoipa::path(get, path = "/api/coverage.png", tag = "coverage", params(MapQuery), responses(
    (status = 200, description = "The map", content_type = "image/png", body = Vec<u8>),
    (status = 400, description = "A malformed parameter", body = ApiError),
    (status = 404, description = "No such zone, or coverage is not set up", body = ApiError),
    (status = 500, description = "The computation failed", body = ApiError),
))]
pub(super) async fn png(State(state): State<AppState>, Query(q): Query<MapQuery>) -> Response {
    let Some(coverage) = state.coverage.clone() else { return unconfigured() };
    if q.width.is_some_and(|w| !(render::MIN_WIDTH..=render::MAX_WIDTH).contains(&w)) {
        return error(
            StatusCode::BAD_REQUEST,
            format!("`width` must be between {} and {} pixels", render::MIN_WIDTH, render::MAX_WIDTH),
        );
    }
    let states: Vec<crate::liveness::State> = super::fleet(&state).sirens().iter().map(|s| s.liveness.state).collect();
    let width = q.width;
    let body = with_coverage(coverage, q.zone, move |c, zone| {
        let figures = legend_figures(c, zone);
        let view = render::View { zone, width, at: jiff::Timestamp::now(), ids: c.siren_ids(), figures };
        render::render_png(c.map(), &states, &view)
    })
    .await;
    match body {
        Ok(body) => ([(header::CONTENT_TYPE, "image/png"), (header::CACHE_CONTROL, "no-store")], body).into_response(),
        Err(refusal) => refusal.into_response(),
    }
}

/// The figures the map's legend shows for the zone drawn (or every top-level zone).
fn legend_figures(c: &mut Coverage, zone: Option<&str>) -> Vec<String> {
    let shown: Vec<crate::coverage::ZoneFigures> =
        c.figures().into_iter().filter(|z| zone.map_or(!z.zone.contains('/'), |q| z.zone == q)).collect();
    let sum = |f: &dyn Fn(&crate::coverage::ZoneFigures) -> Option<f64>| shown.iter().filter_map(f).sum::<f64>();
    let people = |n: f64| {
        #[allow(clippy::cast_possible_truncation, reason = "people, far below 2^53")]
        let n = n.round() as i64;
        let digits = n.to_string();
        let mut out = String::new();
        for (i, ch) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(ch);
        }
        out
    };
    let (sirens, able) =
        (shown.iter().map(|z| z.now.sirens).sum::<usize>(), shown.iter().map(|z| z.now.sirens_able).sum::<usize>());
    let mut lines = vec![format!("Sirens able to sound: {able} of {sirens}")];
    if c.has_population() {
        lines.push(format!("Unwarned by failures: {} people", people(sum(&|z| z.lost.population))));
        let gap = sum(&|z| z.design.uncovered_population);
        lines.push(format!("Never covered (design): {} people", people(gap)));
    }
    lines.push(format!("Lost ground: {:.2} km2", sum(&|z| Some(z.lost.area_m2)) / 1e6));
    lines
}

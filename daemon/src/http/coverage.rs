//! `/api/coverage`, `/api/coverage.geojson` and `/api/coverage.png`.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::AppState;
use crate::coverage::export;
use crate::coverage::metrics::SharedCoverage;

fn unconfigured() -> Response {
    (StatusCode::NOT_FOUND, "coverage is not set up: the daemon owns no siren\n").into_response()
}

/// Runs `f` on the coverage off the async threads: outlines and images of a large grid take
/// tens of milliseconds.
async fn with_coverage<T: Send + 'static>(
    coverage: SharedCoverage,
    f: impl FnOnce(&mut crate::coverage::Coverage) -> T + Send + 'static,
) -> Option<T> {
    tokio::task::spawn_blocking(move || {
        let mut c = coverage.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut c)
    })
    .await
    .ok()
}

/// Per zone: coverage now and by design; the sirens whose failure uncovers the most.
pub(super) async fn summary(State(state): State<AppState>) -> Response {
    let Some(coverage) = state.coverage else { return unconfigured() };
    let body = with_coverage(coverage, |c| {
        let design = c.design().to_vec();
        let zones: Vec<Value> = c
            .current()
            .into_iter()
            .zip(design)
            .map(|(now, design)| {
                json!({
                    "zone": now.zone,
                    "below_target": now.below_target(),
                    "now": now,
                    "design": design,
                })
            })
            .collect();
        let layout = c.map().layout();
        let (cell_m, overlap, population) = (layout.grid.cell_m, layout.overlap, layout.population.is_some());
        let cell_m2 = layout.grid.cell_area_m2();
        #[allow(clippy::cast_precision_loss)]
        let priority: Vec<Value> = c
            .priority(crate::coverage::table::PRIORITY_SIRENS)
            .into_iter()
            .map(|(_, id, s)| {
                json!({
                    "siren": id,
                    "sole_area_m2": s.cells as f64 * cell_m2,
                    "sole_population": population.then_some(s.population_milli as f64 / 1000.0),
                })
            })
            .collect();
        json!({
            "cell_size_m": cell_m,
            "overlap": overlap,
            "population": population,
            "zones": zones,
            "priority": priority,
        })
    })
    .await;
    match body {
        Some(body) => axum::Json(body).into_response(),
        None => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// Uncovered areas as merged polygons, loadable cross-origin by a Grafana Geomap layer.
pub(super) async fn geojson(State(state): State<AppState>) -> Response {
    let Some(coverage) = state.coverage else { return unconfigured() };
    let body = with_coverage(coverage, |c| export::uncovered_geojson(c.map(), c.projection()).to_string()).await;
    match body {
        Some(body) => {
            ([(header::CONTENT_TYPE, "application/geo+json"), (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*")], body)
                .into_response()
        }
        None => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// The rendered map.
pub(super) async fn png(State(state): State<AppState>) -> Response {
    let Some(coverage) = state.coverage.clone() else { return unconfigured() };
    let states: Vec<crate::liveness::State> = super::fleet(&state).sirens().iter().map(|s| s.liveness.state).collect();
    let body = with_coverage(coverage, move |c| export::render_png(c.map(), &states)).await;
    match body {
        Some(body) => {
            ([(header::CONTENT_TYPE, "image/png"), (header::CACHE_CONTROL, "no-store")], body).into_response()
        }
        None => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

//! The OpenAPI document of the API, generated from the handlers' annotations and the types
//! they answer with (`GET /api/openapi.json`).

use axum::Json;
use axum::response::{IntoResponse, Response};
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "sirend",
        description = "The sirennet daemon's HTTP API (docs/operations.md). Writes need an \
            `Authorization: Bearer <token>` header; reads do too where `[http] read_needs_token` \
            says so (by default when the daemon listens beyond loopback). Every error is JSON: \
            `{\"error\": \"...\", \"field\": \"...\"}`."
    ),
    paths(
        super::metrics,
        super::console::me,
        super::console::settings,
        super::console::zones,
        super::ready,
        super::sirens,
        super::siren,
        super::history,
        super::acknowledge,
        super::resync,
        super::events,
        super::audit,
        super::coverage::summary,
        super::coverage::geojson,
        super::coverage::png,
        super::soundings::list,
        super::soundings::one,
        super::soundings::create,
        super::soundings::cancel,
        super::maintenance::list,
        super::maintenance::start,
        super::maintenance::end,
        super::stop::stop,
        super::stop::status,
        super::live::request,
        super::live::approve,
        super::live::reject,
        super::live::false_alarm,
        super::live::list,
        super::live::one,
        super::cap::submit,
        super::cap::alerts,
        super::cap::feed,
        super::stream::stream,
        super::cluster::leadership,
    ),
    components(schemas(crate::liveness::State)),
    modifiers(&Bearer),
    tags(
        (name = "sirens", description = "The fleet, each siren's condition and history, acknowledgements"),
        (name = "maintenance", description = "Sirens a crew has taken out of service"),
        (name = "warnings", description = "LIVE warnings: request, approval by a second person, false alarm"),
        (name = "soundings", description = "Test soundings: campaigns, reports, ad-hoc soundings and cancels"),
        (name = "coverage", description = "Who would hear a warning now"),
        (name = "events", description = "What happened"),
        (name = "audit", description = "Who did what through the API"),
        (name = "monitoring", description = "Prometheus and health"),
        (name = "console", description = "What the web console at / reads: the caller, its settings, the zones' areas"),
    )
)]
struct ApiDoc;

/// Declares the bearer-token scheme the writes name.
struct Bearer;

impl utoipa::Modify for Bearer {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The document.
pub fn document_value() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// `GET /api/openapi.json`.
pub(super) async fn document() -> Response {
    Json(document_value()).into_response()
}

//! `/api/soundings`: campaigns and their reports (JSON, CSV, printable HTML), ad-hoc soundings
//! and cancels (operator role, audited).

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::oneshot;

use super::views::{
    AchievedView, ApiError, CancelledView, CreatedView, SkewView, SoundingReportView, SoundingSummary, TargetView,
};
use super::{AppState, Ask, Client, authorize};
use crate::auth::Permission;
use crate::engine::{Input, SoundingRequest};
use crate::sounding::campaign::{Campaign, Phase, Target};
use crate::sounding::runner::{AdHoc, RequestError};
use crate::sounding::verdict::Verdict;

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({"error": message.into()}))).into_response()
}

/// A refused request with the status that says why: 404 for a campaign that does not exist,
/// 422 for a value that is wrong whenever it is sent (with the field), 409 for a conflict
/// with the campaign's state, 503 when the engine or the store cannot answer.
fn refusal(why: &RequestError) -> Response {
    let message = why.to_string();
    match why {
        RequestError::Unknown(_) => error(StatusCode::NOT_FOUND, message),
        RequestError::Invalid { field, .. } => {
            (StatusCode::UNPROCESSABLE_ENTITY, Json(json!({"error": message, "field": field}))).into_response()
        }
        RequestError::Conflict(_) => error(StatusCode::CONFLICT, message),
        RequestError::NotRunning | RequestError::Store(_) => error(StatusCode::SERVICE_UNAVAILABLE, message),
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct ListQuery {
    /// At most this many (default 50).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
}

fn summary(c: &Campaign) -> SoundingSummary {
    let tally = c.tally();
    SoundingSummary {
        id: c.id,
        schedule: c.schedule.clone(),
        kind: c.kind.as_str(),
        instant: c.instant.to_string(),
        phase: c.phase.as_str(),
        sequence: c.sequence.clone(),
        note: c.note.clone(),
        targets: c.targets.len(),
        armed: c.targets.iter().filter(|t| t.armed_start_us.is_some()).count(),
        arming_began: c.arming_began.map(|t| t.to_string()),
        all_armed: c.all_armed.map(|t| t.to_string()),
        passed: tally.passed,
        failed: tally.failed,
        in_maintenance: tally.in_maintenance,
        failures: tally.by_reason.iter().map(|(r, n)| (r.as_str(), *n)).collect(),
        skew_ms: c.skew_stats().map(|s| SkewView {
            count: s.count,
            p50: ms(s.p50_us),
            p99: ms(s.p99_us),
            max: ms(s.max_us),
        }),
    }
}

#[allow(clippy::cast_precision_loss, reason = "µs to ms for display")]
fn ms(us: i64) -> f64 {
    us as f64 / 1000.0
}

/// Campaigns, the latest instant first.
#[utoipa::path(get, path = "/api/soundings", tag = "soundings", params(ListQuery), responses(
    (status = 200, description = "The campaigns", body = [SoundingSummary]),
    (status = 400, description = "A malformed parameter", body = ApiError),
    (status = 503, description = "The store did not answer", body = ApiError),
))]
pub(super) async fn list(State(state): State<AppState>, Query(q): Query<ListQuery>) -> Response {
    let limit = q.limit.unwrap_or(50);
    if !(1..=1000).contains(&limit) {
        let body = Json(json!({"error": "`limit` is between 1 and 1000", "field": "limit"}));
        return (StatusCode::BAD_REQUEST, body).into_response();
    }
    match super::read_committed(&state, move |store| store.campaigns(false, limit)).await {
        Ok(all) => Json(all.iter().map(summary).collect::<Vec<_>>()).into_response(),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

/// The full report of a campaign.
fn report(state: &AppState, c: &Campaign) -> SoundingReportView {
    let mut failures_by_zone: BTreeMap<String, BTreeMap<&'static str, Vec<String>>> = BTreeMap::new();
    for t in &c.targets {
        if let Some(Verdict::Fail(r)) = t.verdict {
            failures_by_zone.entry(t.zone.clone()).or_default().entry(r.as_str()).or_default().push(t.siren.clone());
        }
    }
    let achieved_coverage =
        (c.phase == Phase::Done && c.kind.audible()).then_some(state.coverage.as_ref()).flatten().map(|cov| {
            let passed: HashSet<&str> =
                c.targets.iter().filter(|t| t.verdict == Some(Verdict::Pass)).map(|t| t.siren.as_str()).collect();
            let mut cov = cov.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            cov.with_only(&passed)
                .into_iter()
                .map(|z| AchievedView { zone: z.zone, area_ratio: z.area_ratio, population_ratio: z.population_ratio })
                .collect::<Vec<_>>()
        });
    SoundingReportView {
        summary: summary(c),
        failures_by_zone,
        achieved_coverage,
        sirens: c.targets.iter().map(target).collect(),
    }
}

/// A campaign's report: JSON, or `{id}.csv` per siren, or `{id}.html` to print.
#[utoipa::path(get, path = "/api/soundings/{id}", tag = "soundings",
    params(("id" = String, Path, pattern = r"^[0-9]+(\.(csv|html))?$",
        description = "The campaign's id, optionally with `.csv` or `.html`")),
    responses(
        (status = 200, description = "The report", content(
            (SoundingReportView = "application/json"),
            (String = "text/csv"),
            (String = "text/html"),
        )),
        (status = 400, description = "Not a campaign id", body = ApiError),
        (status = 404, description = "No such campaign or form", body = ApiError),
        (status = 503, description = "The store did not answer", body = ApiError),
    ))]
pub(super) async fn one(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    let (number, format) = match id.split_once('.') {
        Some((n, f)) => (n, f),
        None => (id.as_str(), "json"),
    };
    let Ok(number) = number.parse::<u32>() else {
        return error(
            StatusCode::BAD_REQUEST,
            format!("`{id}` is not a campaign id (a number, optionally .csv or .html)"),
        );
    };
    let c = match super::read_committed(&state, move |store| store.campaign(number)).await {
        Ok(Some(c)) => c,
        Ok(None) => return error(StatusCode::NOT_FOUND, format!("no campaign {number}")),
        Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    };
    // The CSV is per siren only: it needs no achieved-coverage computation.
    match format {
        "json" => Json(report(&state, &c)).into_response(),
        "csv" => ([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], csv(&c)).into_response(),
        "html" => ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html(&c, &report(&state, &c))).into_response(),
        other => error(StatusCode::NOT_FOUND, format!("no `{other}` form: use .csv or .html, or none for JSON")),
    }
}

/// One siren's line of a sounding report.
fn target(t: &Target) -> TargetView {
    TargetView {
        siren: t.siren.clone(),
        zone: t.zone.clone(),
        result: t.verdict.map(Verdict::as_str),
        skew_ms: t.skew_us.map(ms),
        armed: t.armed_start_us.is_some(),
        triggered: t.triggered,
        clock_flagged: t.clock_flagged,
        rearmed: t.rearms,
        clock_moved_ms: t.moved_us.map(ms),
        clock_drift_ppm: drift(t).map(f64::round),
        start_uncertain: t.start_uncertain,
        // Device clock minus daemon clock, as everywhere in the API and the metrics (the
        // sample holds the correction, its opposite).
        clock_offset_ms: t.before.map(|s| ms(s.offset_us.saturating_neg())),
        // The skew's uncertainty is half the longest round trip of the clock samples.
        clock_round_trip_ms: t.before.iter().chain(t.after.iter()).map(|s| s.round_trip_us).max().map(ms),
        refused: t.nak.clone(),
        maintenance: t.maintenance.clone(),
        outcome: t.report.as_ref().map(|r| format!("{:?}", r.outcome)),
        sound_level_db: t
            .report
            .as_ref()
            .filter(|r| r.sound_level_ddb != siren_proto::message::NOT_MEASURED)
            .map(|r| f64::from(r.sound_level_ddb) / 10.0),
    }
}

/// A drift flagged while the siren was armed, ppm.
fn drift(t: &Target) -> Option<f64> {
    t.watch.flagged().then(|| t.watch.drift_ppm()).flatten()
}

fn csv(c: &Campaign) -> String {
    let mut w = csv::Writer::from_writer(Vec::new());
    let _ = w.write_record([
        "campaign",
        "schedule",
        "instant",
        "siren",
        "zone",
        "result",
        "skew_ms",
        "armed",
        "triggered",
        "clock_flagged",
        "refused",
        "rearmed",
        "clock_drift_ppm",
        "start_uncertain",
        "maintenance",
    ]);
    for t in &c.targets {
        let _ = w.write_record([
            c.id.to_string(),
            c.schedule.clone(),
            c.instant.to_string(),
            t.siren.clone(),
            t.zone.clone(),
            t.verdict.map_or("pending", Verdict::as_str).to_owned(),
            t.skew_us.map(|s| format!("{:.1}", ms(s))).unwrap_or_default(),
            t.armed_start_us.is_some().to_string(),
            t.triggered.to_string(),
            t.clock_flagged.to_string(),
            t.nak.clone().unwrap_or_default(),
            t.rearms.to_string(),
            drift(t).map(|p| format!("{p:.0}")).unwrap_or_default(),
            t.start_uncertain.to_string(),
            t.maintenance.clone().unwrap_or_default(),
        ]);
    }
    String::from_utf8(w.into_inner().unwrap_or_default()).unwrap_or_default()
}

/// What the printable report says of a siren beside its result.
fn notes(t: &Target) -> Vec<String> {
    let mut note = Vec::new();
    if t.triggered {
        note.push("triggered (not armed)".to_owned());
    }
    if t.clock_flagged {
        note.push("clock flagged".to_owned());
    }
    if let Some(moved) = t.moved_us {
        note.push(format!("clock moved after arming ({:+.0} ms): armed again", ms(moved)));
    }
    if let Some(ppm) = drift(t) {
        note.push(format!("clock drifts {ppm:+.0} ppm"));
    }
    if t.start_uncertain {
        note.push("clock stepped around the start: the worse reading counts".to_owned());
    }
    if let Some(n) = &t.nak {
        note.push(format!("refused: {n}"));
    }
    if let Some(m) = &t.maintenance {
        note.push(format!("in maintenance: {m}"));
    }
    note
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn html(c: &Campaign, report: &SoundingReportView) -> String {
    let tally = c.tally();
    let mut out = String::new();
    let _ = write!(
        out,
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Sounding {id}</title>\
         <style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}\
         td,th{{border:1px solid #999;padding:2px 8px;text-align:left}}.fail{{color:#b00}}\
         @media print{{a{{display:none}}}}</style></head><body>\
         <h1>Sounding {id}: {schedule}</h1><p>{kind} at {instant}, {phase}. \
         {passed} of {n} sirens passed, {failed} failed{maintenance}.</p>",
        id = c.id,
        schedule = escape(&c.schedule),
        kind = c.kind.as_str(),
        instant = c.instant,
        phase = c.phase.as_str(),
        passed = tally.passed,
        failed = tally.failed,
        n = c.targets.len(),
        maintenance = match tally.in_maintenance {
            0 => String::new(),
            m => format!(", {m} in maintenance (not sounded: not counted as failed)"),
        }
    );
    if let Some(s) = c.skew_stats() {
        let _ = write!(
            out,
            "<p>Start skew (clock offsets corrected): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms over {} sirens.</p>",
            ms(s.p50_us),
            ms(s.p99_us),
            ms(s.max_us),
            s.count
        );
    }
    if let Some(zones) = &report.achieved_coverage {
        out.push_str(
            "<h2>Coverage the sounding achieved</h2><table><tr><th>zone</th><th>area</th><th>population</th></tr>",
        );
        for z in zones {
            let pct = |v: Option<f64>| v.map_or("–".to_owned(), |r| format!("{:.1} %", r * 100.0));
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&z.zone),
                pct(Some(z.area_ratio)),
                pct(z.population_ratio)
            );
        }
        out.push_str("</table>");
    }
    out.push_str("<h2>Failures by zone</h2><table><tr><th>zone</th><th>reason</th><th>sirens</th></tr>");
    for (zone, reasons) in &report.failures_by_zone {
        for (reason, sirens) in reasons {
            let _ = write!(
                out,
                "<tr class=\"fail\"><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(zone),
                escape(reason),
                escape(&sirens.join(", "))
            );
        }
    }
    out.push_str("</table><h2>Every siren</h2><table><tr><th>siren</th><th>zone</th><th>result</th><th>skew</th><th>note</th></tr>");
    for t in &c.targets {
        let result = t.verdict.map_or("pending", Verdict::as_str);
        let note = notes(t);
        let _ = write!(
            out,
            "<tr{}><td>{}</td><td>{}</td><td>{result}</td><td>{}</td><td>{}</td></tr>",
            if result == "pass" { "" } else { " class=\"fail\"" },
            escape(&t.siren),
            escape(&t.zone),
            t.skew_us.map(|s| format!("{:.1} ms", ms(s))).unwrap_or_default(),
            escape(&note.join("; "))
        );
    }
    out.push_str("</table></body></html>\n");
    out
}

async fn ask_engine<T>(
    state: &AppState,
    make: impl FnOnce(oneshot::Sender<Result<T, RequestError>>) -> SoundingRequest,
) -> Result<T, Response> {
    match super::ask_engine(state, |tx| Input::Soundings(make(tx))).await? {
        Ok(v) => Ok(v),
        Err(why) => Err(refusal(&why)),
    }
}

/// An ad-hoc test sounding (the `schedule_test` permission, in every zone it targets).
#[utoipa::path(post, path = "/api/soundings", tag = "soundings", security(("bearer" = [])),
    request_body = AdHoc,
    responses(
        (status = 201, description = "Planned", body = CreatedView),
        (status = 400, description = "A malformed body", body = ApiError),
        (status = 401, description = "No valid token", body = ApiError),
        (status = 403, description = "The token may not, or not in these zones", body = ApiError),
        (status = 409, description = "A conflict with the soundings planned", body = ApiError),
        (status = 413, description = "The body is too large", body = ApiError),
        (status = 422, description = "A field is invalid", body = ApiError),
        (status = 503, description = "The engine or the store cannot do it now", body = ApiError),
    ))]
pub(super) async fn create(State(state): State<AppState>, client: Client, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(refused) = super::authenticated(&state, &headers, client, "schedule-sounding") {
        return *refused;
    }
    let request: AdHoc = match super::json_object(&body) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("body: {e}")),
    };
    // No zones named: the whole fleet, which only a token for every zone may sound.
    let zones = (!request.zones.is_empty()).then_some(request.zones.as_slice());
    let asked =
        Ask { permission: Permission::ScheduleTest, action: "schedule-sounding", target: "ad-hoc", zones, note: "" };
    let by = match authorize(&state, &headers, client, &asked) {
        Ok(by) => by,
        Err(refused) => return *refused,
    };
    match ask_engine(&state, |reply| SoundingRequest::AdHoc { request, by, reply }).await {
        Ok(id) => (StatusCode::CREATED, Json(CreatedView { id })).into_response(),
        Err(r) => r,
    }
}

/// `POST /api/soundings/{id}/cancel`'s body.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct CancelBody {
    /// Why: recorded in the campaign and the audit log.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 1000)]
    reason: String,
}

/// Cancels a planned sounding before its instant, with a reason (the `cancel_test` permission,
/// in every zone it targets); armed sirens are disarmed.
#[utoipa::path(post, path = "/api/soundings/{id}/cancel", tag = "soundings", security(("bearer" = [])),
    params(("id" = u32, Path, description = "The campaign")),
    request_body = CancelBody,
    responses(
        (status = 200, description = "Cancelled", body = CancelledView),
        (status = 400, description = "A malformed body or id", body = ApiError),
        (status = 401, description = "No valid token", body = ApiError),
        (status = 403, description = "The token may not, or not in these zones", body = ApiError),
        (status = 404, description = "No such campaign", body = ApiError),
        (status = 409, description = "Over already, or under way", body = ApiError),
        (status = 413, description = "The body is too large", body = ApiError),
        (status = 422, description = "No reason given", body = ApiError),
        (status = 503, description = "The engine or the store cannot do it now", body = ApiError),
    ))]
pub(super) async fn cancel(
    State(state): State<AppState>,
    Path(id): Path<u32>,
    client: Client,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(refused) = super::authenticated(&state, &headers, client, "cancel-sounding") {
        return *refused;
    }
    let body: CancelBody = match super::json_object(&body) {
        Ok(b) => b,
        Err(_) if body.is_empty() => CancelBody::default(),
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("body: {e}")),
    };
    let reason = body.reason.trim();
    if reason.is_empty() || reason.chars().count() > 1000 {
        let message = "a reason is needed to cancel a sounding: {\"reason\": \"...\"} (at most 1,000 characters)";
        return (StatusCode::UNPROCESSABLE_ENTITY, Json(json!({"error": message, "field": "reason"}))).into_response();
    }
    // The zones it would cancel the sounding of: every target's (a district office cannot
    // cancel the city's test). A campaign the store does not have touches none, and is a 404.
    let zones: Vec<String> = match super::read_store(&state, move |store| store.campaign(id)).await {
        Ok(Some(c)) => {
            c.targets.iter().map(|t| t.zone.clone()).collect::<std::collections::BTreeSet<_>>().into_iter().collect()
        }
        Ok(None) => Vec::new(),
        Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    };
    let target = id.to_string();
    let asked = Ask {
        permission: Permission::CancelTest,
        action: "cancel-sounding",
        target: &target,
        zones: Some(&zones),
        note: reason,
    };
    let by = match authorize(&state, &headers, client, &asked) {
        Ok(by) => format!("{by} ({reason})"),
        Err(refused) => return *refused,
    };
    match ask_engine(&state, |reply| SoundingRequest::Cancel { campaign: id, by, reply }).await {
        Ok(()) => Json(CancelledView { id, phase: "cancelled" }).into_response(),
        Err(r) => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sounding::campaign::ClockSample;

    #[test]
    fn the_clock_offset_is_the_device_clock_minus_the_daemon_clock() {
        let mut t = Target::new("S-1".into(), "z".into());
        // Measured: add -250 ms to the device clock, i.e. it runs 250 ms ahead.
        t.before = Some(ClockSample { at_us: 0, offset_us: -250_000, round_trip_us: 4_000 });
        let line = target(&t);
        assert_eq!((line.clock_offset_ms, line.clock_round_trip_ms), (Some(250.0), Some(4.0)), "{line:?}");
    }
}

//! What the API answers, as types: the handlers serialise these, and the OpenAPI document
//! (`/api/openapi.json`) is generated from the same types, so the two cannot disagree.

use jiff::Timestamp;
use serde::Serialize;
use utoipa::ToSchema;

use crate::fleet::{Acknowledgement, Siren};
use crate::maintenance::Window;

/// Every refusal: what is wrong, and the field at fault when one is.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiError {
    pub error: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// A link of a siren and whether it works.
#[derive(Debug, Serialize, ToSchema)]
pub struct LinkView {
    /// `serial:<bus>` or `mqtt`.
    pub link: String,
    pub up: bool,
}

/// What the siren last reported about itself.
#[derive(Debug, Serialize, ToSchema)]
pub struct TelemetryView {
    pub at: String,
    pub mains_present: bool,
    pub battery_volts: f64,
    pub battery_soc: Option<u8>,
    pub door_open: bool,
    pub cabinet_temp_c: Option<f64>,
    /// Device clock minus daemon clock, µs.
    pub clock_offset_us: i64,
    pub firmware: String,
    pub boot_seq: u32,
}

/// The state a previous run of the daemon last recorded.
#[derive(Debug, Serialize, ToSchema)]
pub struct LastKnownView {
    pub state: &'static str,
    pub since: String,
}

/// Commands go unanswered although the siren is heard.
#[derive(Debug, Serialize, ToSchema)]
pub struct CommandFaultView {
    pub since: String,
    pub unanswered: u32,
}

/// An operator's acknowledgement of the siren's condition.
#[derive(Debug, Serialize, ToSchema)]
pub struct AcknowledgementView {
    /// The state acknowledged.
    pub state: &'static str,
    pub faults: Vec<&'static str>,
    pub by: String,
    pub at: String,
    pub until: Option<String>,
    pub note: String,
}

impl AcknowledgementView {
    pub fn new(a: &Acknowledgement) -> Self {
        Self {
            state: a.state.as_str(),
            faults: fault_names(a.faults),
            by: a.by.clone(),
            at: a.at.to_string(),
            until: a.until.map(|u| u.to_string()),
            note: a.note.clone(),
        }
    }
}

/// One siren as the daemon sees it.
#[derive(Debug, Serialize, ToSchema)]
pub struct SirenView {
    pub id: String,
    pub name: String,
    pub zone: String,
    pub latitude: f64,
    pub longitude: f64,
    pub rating_db: f64,
    /// `ok`, `degraded`, `faulty`, `down`, `unreachable` or `unknown`.
    pub state: &'static str,
    pub since: String,
    pub faults: Vec<&'static str>,
    pub misses: u32,
    pub flaps: u32,
    pub links: Vec<LinkView>,
    pub last_seen: Option<String>,
    pub telemetry: Option<TelemetryView>,
    pub last_known: Option<LastKnownView>,
    pub command_fault: Option<CommandFaultView>,
    /// The maintenance window it is in, if any.
    pub maintenance: Option<super::WindowView>,
    /// The acknowledgement in force, if any.
    pub acknowledged: Option<AcknowledgementView>,
}

impl SirenView {
    pub fn new(s: &Siren, maintenance: Option<&Window>, now: Timestamp) -> Self {
        let l = &s.liveness;
        Self {
            id: s.id.clone(),
            name: s.name.clone(),
            zone: s.zone.to_string(),
            latitude: s.latitude,
            longitude: s.longitude,
            rating_db: s.rating_db,
            state: l.state.as_str(),
            since: l.since.to_string(),
            faults: fault_names(l.faults),
            misses: l.misses,
            flaps: l.flaps,
            links: l.links.iter().map(|name| LinkView { link: name.to_string(), up: !l.link_down(name) }).collect(),
            last_seen: l.last_seen.map(|t| t.to_string()),
            telemetry: s.telemetry.as_ref().map(|t| TelemetryView {
                at: t.at.to_string(),
                mains_present: t.mains_present,
                battery_volts: t.battery_volts,
                battery_soc: t.battery_soc,
                door_open: t.door_open,
                cabinet_temp_c: t.cabinet_temp_c,
                clock_offset_us: t.clock_offset_us,
                firmware: t.firmware.to_string(),
                boot_seq: t.boot_seq,
            }),
            last_known: s
                .last_known
                .as_ref()
                .map(|r| LastKnownView { state: r.state.as_str(), since: r.since.to_string() }),
            command_fault: s
                .command_fault
                .as_ref()
                .map(|f| CommandFaultView { since: f.since.to_string(), unanswered: f.unanswered }),
            maintenance: maintenance.map(|w| super::WindowView::new(w, now)),
            acknowledged: s.acknowledged.as_deref().filter(|a| a.in_force(now)).map(AcknowledgementView::new),
        }
    }
}

pub fn fault_names(faults: siren_proto::message::FaultBits) -> Vec<&'static str> {
    siren_proto::message::FaultBits::NAMES.iter().filter(|(bit, _)| faults.contains(*bit)).map(|(_, n)| *n).collect()
}

/// `POST /api/sirens/{id}/ack`'s answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct AcknowledgedView {
    pub siren: String,
    #[serde(flatten)]
    pub acknowledgement: AcknowledgementView,
}

/// `POST /api/sirens/{id}/resync`'s answer: the first counter of the new lease.
#[derive(Debug, Serialize, ToSchema)]
pub struct ResyncView {
    pub siren: String,
    pub counter: u32,
}

/// A stored event.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventView {
    pub id: i64,
    pub at: String,
    pub siren: Option<String>,
    /// `state`, `fault_raised`, `acknowledged`, `maintenance_started`, `sounding_done`, ...
    pub kind: String,
    pub detail: String,
}

/// An entry of the audit log.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditView {
    pub at: String,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub allowed: bool,
    pub detail: String,
    /// The address the request came from; for a write a standby forwarded, followed by the
    /// standby's name and the address it had the write from: `10.1.0.2 (site-b, for 192.168.20.14)`.
    pub client: String,
}

/// `POST /api/soundings`'s answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedView {
    pub id: u32,
}

/// `POST /api/soundings/{id}/cancel`'s answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct CancelledView {
    pub id: u32,
    /// Always `cancelled`.
    pub phase: &'static str,
}

/// `GET /api/coverage`.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct CoverageView {
    pub at: String,
    /// The zone asked for, if any.
    pub zone: Option<String>,
    pub cell_size_m: f64,
    pub overlap: crate::coverage::model::Overlap,
    /// Whether a population file is configured (people figures are given).
    pub population: bool,
    pub zones: Vec<crate::coverage::ZoneFigures>,
    /// The sirens that cannot sound, most people lost first.
    pub failed_sirens: Vec<crate::coverage::SirenLoss>,
    /// The sirens whose failure would uncover the most people.
    pub priority: Vec<PriorityView>,
}

/// A siren and what only it covers.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct PriorityView {
    pub siren: String,
    pub zone: String,
    pub sole_area_m2: f64,
    pub sole_population: Option<f64>,
}

/// Start errors of the sirens that reported a start, ms (nearest-rank percentiles).
#[derive(Debug, Serialize, ToSchema)]
pub struct SkewView {
    pub count: usize,
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

/// A campaign in the list of soundings.
#[derive(Debug, Serialize, ToSchema)]
pub struct SoundingSummary {
    pub id: u32,
    /// The schedule it is an occurrence of, or `ad-hoc`.
    pub schedule: String,
    pub kind: &'static str,
    pub instant: String,
    /// `planned`, `arming`, `running`, `verifying`, `done`, `missed` or `cancelled`.
    pub phase: &'static str,
    /// What sounds: patterns and pauses in order.
    pub sequence: Vec<crate::sounding::sequence::Step>,
    pub note: Option<String>,
    pub targets: usize,
    pub armed: usize,
    pub arming_began: Option<String>,
    pub all_armed: Option<String>,
    pub passed: usize,
    pub failed: usize,
    /// Left out (or failed) while a crew had them in maintenance: neither passed nor failed.
    pub in_maintenance: usize,
    /// Failed sirens by reason.
    pub failures: std::collections::BTreeMap<&'static str, usize>,
    pub skew_ms: Option<SkewView>,
}

/// The coverage a sounding achieved: as if only the sirens that passed could sound.
#[derive(Debug, Serialize, ToSchema)]
pub struct AchievedView {
    pub zone: String,
    pub area_ratio: f64,
    pub population_ratio: Option<f64>,
}

/// One siren's line of a sounding report.
#[derive(Debug, Serialize, ToSchema)]
#[allow(clippy::struct_excessive_bools, reason = "independent facts the report shows one by one")]
pub struct TargetView {
    pub siren: String,
    pub zone: String,
    /// `pass`, a failure reason, `in_maintenance`; `null` until judged.
    pub result: Option<&'static str>,
    pub skew_ms: Option<f64>,
    pub armed: bool,
    pub triggered: bool,
    pub clock_flagged: bool,
    /// Times armed again because its clock moved after arming.
    pub rearmed: u8,
    pub clock_moved_ms: Option<f64>,
    /// A drift faster than any healthy clock, flagged while armed (positive: runs fast).
    pub clock_drift_ppm: Option<f64>,
    /// Its clock stepped around the start: the skew is the worse of two readings.
    pub start_uncertain: bool,
    pub clock_offset_ms: Option<f64>,
    pub clock_round_trip_ms: Option<f64>,
    pub refused: Option<String>,
    /// The maintenance window it was in (not sounded).
    pub maintenance: Option<String>,
    pub outcome: Option<String>,
    pub sound_level_db: Option<f64>,
}

/// A campaign's full report: failures first (by zone and reason), the coverage achieved,
/// then every siren.
#[derive(Debug, Serialize, ToSchema)]
pub struct SoundingReportView {
    #[serde(flatten)]
    pub summary: SoundingSummary,
    pub failures_by_zone: std::collections::BTreeMap<String, std::collections::BTreeMap<&'static str, Vec<String>>>,
    pub achieved_coverage: Option<Vec<AchievedView>>,
    pub sirens: Vec<TargetView>,
}

//! Whether one siren passed a sounding, and why not: a pure function of what the daemon did
//! with it and what the device reported.

use serde::{Deserialize, Serialize};
use siren_proto::message::{NOT_MEASURED, Outcome, SoundingReport};

/// Why a siren failed a sounding. Each calls for a different crew action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailReason {
    /// Neither armed nor triggered (refused, or never answered before the instant).
    NotArmed,
    /// Armed or triggered, but no sounding report came.
    NoReport,
    /// Started outside the tolerance of the instant (or the device let the instant pass).
    LateStart,
    /// Stopped part-way.
    Aborted,
    /// Played, but its microphone heard nothing (or too little).
    NoSound,
    /// Could not drive the horn or speakers.
    AmplifierFault,
    /// Every link it has was down: no verdict on the siren itself.
    Unreachable,
}

impl FailReason {
    pub const ALL: [FailReason; 7] = [
        FailReason::NotArmed,
        FailReason::NoReport,
        FailReason::LateStart,
        FailReason::Aborted,
        FailReason::NoSound,
        FailReason::AmplifierFault,
        FailReason::Unreachable,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FailReason::NotArmed => "not_armed",
            FailReason::NoReport => "no_report",
            FailReason::LateStart => "late_start",
            FailReason::Aborted => "aborted",
            FailReason::NoSound => "no_sound",
            FailReason::AmplifierFault => "amplifier_fault",
            FailReason::Unreachable => "unreachable",
        }
    }
}

/// A siren's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", content = "reason", rename_all = "snake_case")]
pub enum Verdict {
    Pass,
    Fail(FailReason),
    /// Did not pass while a crew had it in maintenance: neither a pass nor a failure.
    InMaintenance,
    /// Stopped by an operator (`POST /api/stop`) before it could pass: not a failure.
    Stopped,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail(r) => r.as_str(),
            Verdict::InMaintenance => "in_maintenance",
            Verdict::Stopped => "stopped",
        }
    }
}

/// What verification needs to know of one siren.
#[derive(Debug, Clone, Copy)]
pub struct Evidence<'a> {
    /// Armed, or triggered at the instant.
    pub commanded: bool,
    /// Every link of the siren was down when verification ended.
    pub unreachable: bool,
    /// The device refused to arm or trigger because a blocking fault prevents sounding.
    pub refused_cannot_sound: bool,
    pub report: Option<&'a SoundingReport>,
    /// The start error, true time, µs: the report's start corrected by the measured clock offset.
    pub skew_us: Option<i64>,
}

/// Pass criteria.
#[derive(Debug, Clone, Copy)]
pub struct Criteria {
    pub tolerance_us: i64,
    /// Whether the sequence is meant to be heard.
    pub audible: bool,
    pub min_sound_level_db: f64,
}

/// The verdict on one siren.
pub fn judge(e: &Evidence<'_>, c: &Criteria) -> Verdict {
    let Some(report) = e.report else {
        return Verdict::Fail(if e.unreachable {
            FailReason::Unreachable
        } else if e.refused_cannot_sound && !e.commanded {
            FailReason::AmplifierFault
        } else if e.commanded {
            FailReason::NoReport
        } else {
            FailReason::NotArmed
        });
    };
    let fail = |r| Verdict::Fail(r);
    match report.outcome {
        Outcome::AmplifierFault => return fail(FailReason::AmplifierFault),
        Outcome::NoSound => return fail(FailReason::NoSound),
        Outcome::Aborted => return fail(FailReason::Aborted),
        // The device kept its promise never to sound late.
        Outcome::MissedStart => return fail(FailReason::LateStart),
        Outcome::Cancelled => return fail(FailReason::NotArmed),
        Outcome::None => return fail(FailReason::NoReport),
        Outcome::Completed => {}
    }
    if e.skew_us.is_none_or(|s| s.abs() > c.tolerance_us) {
        return fail(FailReason::LateStart);
    }
    if c.audible
        && report.sound_level_ddb != NOT_MEASURED
        && f64::from(report.sound_level_ddb) / 10.0 < c.min_sound_level_db
    {
        return fail(FailReason::NoSound);
    }
    Verdict::Pass
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(outcome: Outcome, level_ddb: u16) -> SoundingReport {
        SoundingReport {
            campaign: 1,
            outcome,
            live: false,
            started_us: 1,
            ended_us: 2,
            sound_level_ddb: level_ddb,
            amplifier_current_ma: NOT_MEASURED,
        }
    }

    const C: Criteria = Criteria { tolerance_us: 250_000, audible: true, min_sound_level_db: 80.0 };

    fn judge_report(r: &SoundingReport, skew_us: i64) -> Verdict {
        judge(
            &Evidence {
                commanded: true,
                unreachable: false,
                refused_cannot_sound: false,
                report: Some(r),
                skew_us: Some(skew_us),
            },
            &C,
        )
    }

    #[test]
    fn every_reason_is_told_apart() {
        let fail = Verdict::Fail;
        assert_eq!(judge_report(&report(Outcome::Completed, 1150), 10_000), Verdict::Pass);
        assert_eq!(judge_report(&report(Outcome::Completed, NOT_MEASURED), -249_000), Verdict::Pass);
        assert_eq!(judge_report(&report(Outcome::Completed, 1150), 251_000), fail(FailReason::LateStart));
        assert_eq!(judge_report(&report(Outcome::Completed, 1150), -300_000), fail(FailReason::LateStart));
        assert_eq!(judge_report(&report(Outcome::MissedStart, NOT_MEASURED), 0), fail(FailReason::LateStart));
        assert_eq!(judge_report(&report(Outcome::Completed, 450), 0), fail(FailReason::NoSound));
        assert_eq!(judge_report(&report(Outcome::NoSound, 450), 0), fail(FailReason::NoSound));
        assert_eq!(judge_report(&report(Outcome::Aborted, 1150), 0), fail(FailReason::Aborted));
        assert_eq!(judge_report(&report(Outcome::AmplifierFault, 450), 0), fail(FailReason::AmplifierFault));
        let none = |commanded, unreachable| {
            judge(&Evidence { commanded, unreachable, refused_cannot_sound: false, report: None, skew_us: None }, &C)
        };
        let refused =
            Evidence { commanded: false, unreachable: false, refused_cannot_sound: true, report: None, skew_us: None };
        assert_eq!(judge(&refused, &C), fail(FailReason::AmplifierFault));
        assert_eq!(none(true, false), fail(FailReason::NoReport));
        assert_eq!(none(false, false), fail(FailReason::NotArmed));
        assert_eq!(none(true, true), fail(FailReason::Unreachable));
    }

    #[test]
    fn a_silent_test_needs_no_sound() {
        let silent = Criteria { audible: false, ..C };
        let r = report(Outcome::Completed, 450);
        let e = Evidence {
            commanded: true,
            unreachable: false,
            refused_cannot_sound: false,
            report: Some(&r),
            skew_us: Some(0),
        };
        assert_eq!(judge(&e, &silent), Verdict::Pass);
    }
}

//! Schedules: RFC 5545 recurrence rules (with EXDATE exceptions) in a named time zone, each
//! with the sequence it plays, the zones it targets and its kind.
//!
//! The recurrence is computed by the `rrule` crate in the schedule's zone, so a 10:00 schedule
//! stays at 10:00 local time across daylight-saving changes; instants leave as [`Timestamp`]s.

use std::fmt::Write as _;
use std::str::FromStr;
use std::time::Duration;

use jiff::civil::DateTime;
use jiff::tz::TimeZone;
use jiff::{Timestamp, Zoned};
use rrule::RRuleSet;
use serde::Deserialize;
use siren_proto::message::Segment;

use super::sequence::{self, Kind, SequenceError, Step};

/// A schedule as written in the configuration (`[[schedule]]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConfig {
    /// Unique; labels metrics and reports.
    pub name: String,
    pub kind: Kind,
    /// The first occurrence, local time in `timezone` (`DTSTART`).
    pub start: DateTime,
    /// The recurrence rule, e.g. `FREQ=YEARLY;BYMONTH=9;BYMONTHDAY=18`.
    pub rrule: String,
    /// Occurrences not to sound, local time (`EXDATE`).
    #[serde(default)]
    pub exdates: Vec<DateTime>,
    /// IANA time zone name; `[soundings] timezone` when absent.
    pub timezone: Option<String>,
    /// Target zones (a zone includes the zones inside it); the whole owned fleet when empty.
    #[serde(default)]
    pub zones: Vec<String>,
    pub sequence: Vec<Step>,
    /// Arming lead; `[soundings] lead_s` when absent.
    pub lead_s: Option<u32>,
    /// Schedules whose occurrences this one's occurrences replace where they would hold the
    /// same sirens at once (the 9·18 test suppresses the hourly chime at 10:00).
    #[serde(default)]
    pub suppresses: Vec<String>,
}

/// Why a schedule cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error("name must be non-empty letters, digits, `-`, `_` or `.`")]
    BadName,
    #[error("unknown time zone `{0}`")]
    UnknownZone(String),
    #[error("rule: {0}")]
    Rule(String),
    #[error("sequence {0}")]
    Sequence(#[from] SequenceError),
    #[error("`{0}` is not a time of this schedule's rule, so excluding it would do nothing")]
    StrayExdate(DateTime),
    #[error("rule: it never occurs (no date matches it from `start` on)")]
    NeverOccurs,
    #[error("kind: a schedule never sounds a LIVE warning (those are requested and approved at /api/activations)")]
    Live,
}

/// A checked schedule, ready to give its occurrences.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub name: String,
    pub kind: Kind,
    pub zones: Vec<String>,
    pub sequence: Vec<Step>,
    pub segments: Vec<Segment>,
    pub lead: Duration,
    pub timezone: TimeZone,
    /// The schedules it takes precedence over.
    pub suppresses: Vec<String>,
    rules: RRuleSet,
}

/// The rule of `text` (DTSTART and RRULE lines) without its EXDATE line.
fn without_exdates(text: &str) -> Result<RRuleSet, ()> {
    RRuleSet::from_str(&text.lines().take(2).collect::<Vec<_>>().join("\n")).map_err(|_| ())
}

impl Schedule {
    /// Checks `c`, filling in the defaults of `[soundings]`.
    pub fn from_config(c: &ScheduleConfig, default_zone: &str, default_lead_s: u32) -> Result<Self, ScheduleError> {
        if c.name.is_empty() || !c.name.chars().all(|ch| ch.is_ascii_alphanumeric() || "-_.".contains(ch)) {
            return Err(ScheduleError::BadName);
        }
        if c.kind == Kind::Live {
            return Err(ScheduleError::Live);
        }
        let zone_name = c.timezone.as_deref().unwrap_or(default_zone);
        let timezone = TimeZone::get(zone_name).map_err(|_| ScheduleError::UnknownZone(zone_name.to_owned()))?;
        let segments = sequence::segments(c.kind, &c.sequence)?;
        if c.rrule.contains(['\n', '\r']) || c.rrule.to_ascii_uppercase().contains("DTSTART") {
            return Err(ScheduleError::Rule("give the rule's parts only; the first occurrence is `start`".into()));
        }
        let local = |d: &DateTime| d.strftime("%Y%m%dT%H%M%S").to_string();
        let mut text = format!("DTSTART;TZID={zone_name}:{}\nRRULE:{}", local(&c.start), c.rrule.trim());
        if !c.exdates.is_empty() {
            let list: Vec<String> = c.exdates.iter().map(local).collect();
            let _ = write!(text, "\nEXDATE;TZID={zone_name}:{}", list.join(","));
        }
        let rules = RRuleSet::from_str(&text).map_err(|e| ScheduleError::Rule(e.to_string()))?;
        let schedule = Self {
            name: c.name.clone(),
            kind: c.kind,
            zones: c.zones.clone(),
            sequence: c.sequence.clone(),
            segments,
            lead: Duration::from_secs(u64::from(c.lead_s.unwrap_or(default_lead_s))),
            timezone,
            suppresses: c.suppresses.clone(),
            rules,
        };
        // A rule with no occurrence at all (the 30th of February) would plan nothing, silently.
        if without_exdates(&text).and_then(|r| r.into_iter().next().ok_or(())).is_err() {
            return Err(ScheduleError::NeverOccurs);
        }
        // An EXDATE that matches nothing is almost always a typo (wrong hour, wrong year); say so
        // rather than sound on a day the operator meant to skip.
        let without = RRuleSet::from_str(&text.lines().take(2).collect::<Vec<_>>().join("\n"))
            .map_err(|e| ScheduleError::Rule(e.to_string()))?;
        for ex in &c.exdates {
            let at = ex.to_zoned(schedule.timezone.clone()).map_err(|e| ScheduleError::Rule(e.to_string()))?;
            let hit = without
                .clone()
                .into_iter()
                .map(|d| d.timestamp())
                .take_while(|&s| s <= at.timestamp().as_second())
                .any(|s| s == at.timestamp().as_second());
            if !hit {
                return Err(ScheduleError::StrayExdate(*ex));
            }
        }
        Ok(schedule)
    }

    /// Occurrences strictly after `t`, in order (endless for a rule without COUNT or UNTIL).
    pub fn after(&self, t: Timestamp) -> impl Iterator<Item = Timestamp> + '_ {
        self.rules
            .clone()
            .into_iter()
            .filter_map(|d| Timestamp::from_second(d.timestamp()).ok())
            .skip_while(move |&o| o <= t)
    }

    /// `t` as local time in the schedule's zone.
    pub fn local(&self, t: Timestamp) -> Zoned {
        t.to_zoned(self.timezone.clone())
    }

    /// How long the sequence plays.
    pub fn duration(&self) -> Duration {
        Duration::from_millis(sequence::duration_ms(&self.segments))
    }
}

/// The next `count` occurrences of all `schedules` after `t`, soonest first (ties by name).
pub fn next(schedules: &[Schedule], t: Timestamp, count: usize) -> Vec<(&Schedule, Timestamp)> {
    let mut all: Vec<(&Schedule, Timestamp)> =
        schedules.iter().flat_map(|s| s.after(t).take(count).map(move |o| (s, o))).collect();
    all.sort_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.name.cmp(&b.0.name)));
    all.truncate(count);
    all
}

/// RFC 3339 with the zone's offset, e.g. `2027-09-18T10:00:00+08:00`.
pub fn rfc3339(z: &Zoned) -> String {
    z.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(rrule: &str, start: &str, zone: &str) -> ScheduleConfig {
        ScheduleConfig {
            name: "t".into(),
            kind: Kind::Test,
            start: start.parse().unwrap(),
            rrule: rrule.into(),
            exdates: vec![],
            timezone: Some(zone.into()),
            zones: vec![],
            sequence: vec![Step::Pattern { pattern: "air-raid".into() }],
            lead_s: None,
            suppresses: vec![],
        }
    }

    fn strings(s: &Schedule, after: &str, n: usize) -> Vec<String> {
        s.after(after.parse().unwrap()).take(n).map(|t| rfc3339(&s.local(t))).collect()
    }

    #[test]
    fn nine_eighteen_at_ten_shanghai_time() {
        let s = Schedule::from_config(
            &config("FREQ=YEARLY;BYMONTH=9;BYMONTHDAY=18", "2026-09-18T10:00:00", "Asia/Shanghai"),
            "UTC",
            600,
        )
        .unwrap();
        assert_eq!(strings(&s, "2026-11-22T00:00:00Z", 2), ["2027-09-18T10:00:00+08:00", "2028-09-18T10:00:00+08:00"]);
        assert_eq!(s.lead, Duration::from_secs(600));
    }

    #[test]
    fn local_time_holds_across_daylight_saving() {
        let s =
            Schedule::from_config(&config("FREQ=WEEKLY;BYDAY=SA", "2026-03-21T10:00:00", "Europe/Berlin"), "UTC", 600)
                .unwrap();
        // Summer time starts on 29 March 2026: same wall-clock time, one hour earlier in UTC.
        assert_eq!(strings(&s, "2026-03-20T00:00:00Z", 2), ["2026-03-21T10:00:00+01:00", "2026-03-28T10:00:00+01:00"]);
        assert_eq!(strings(&s, "2026-03-29T00:00:00Z", 1), ["2026-04-04T10:00:00+02:00"]);
        let utc: Vec<Timestamp> = s.after("2026-03-27T00:00:00Z".parse().unwrap()).take(2).collect();
        assert_eq!(utc[1].duration_since(utc[0]).as_secs(), 7 * 86_400 - 3_600);
    }

    #[test]
    fn exdates_skip_and_stray_ones_are_refused() {
        let mut c = config("FREQ=DAILY", "2026-12-01T09:00:00", "Asia/Shanghai");
        c.exdates = vec!["2026-12-02T09:00:00".parse().unwrap()];
        let s = Schedule::from_config(&c, "UTC", 600).unwrap();
        assert_eq!(strings(&s, "2026-11-30T00:00:00Z", 2), ["2026-12-01T09:00:00+08:00", "2026-12-03T09:00:00+08:00"]);
        c.exdates = vec!["2026-12-02T10:00:00".parse().unwrap()];
        assert!(matches!(Schedule::from_config(&c, "UTC", 600), Err(ScheduleError::StrayExdate(_))));
    }

    #[test]
    fn bad_input_is_named() {
        let c = config("FREQ=SOMETIMES", "2026-12-01T09:00:00", "Asia/Shanghai");
        assert!(matches!(Schedule::from_config(&c, "UTC", 600), Err(ScheduleError::Rule(_))));
        let c = config("FREQ=DAILY", "2026-12-01T09:00:00", "Mars/Olympus_Mons");
        assert!(matches!(Schedule::from_config(&c, "UTC", 600), Err(ScheduleError::UnknownZone(_))));
        let c = config("FREQ=DAILY\nDTSTART:20200101T000000Z", "2026-12-01T09:00:00", "UTC");
        assert!(matches!(Schedule::from_config(&c, "UTC", 600), Err(ScheduleError::Rule(_))));
    }

    #[test]
    fn next_merges_schedules_in_order() {
        let mut hourly = config("FREQ=HOURLY", "2026-01-01T00:00:00", "Asia/Shanghai");
        hourly.name = "chime".into();
        hourly.kind = Kind::Chime;
        hourly.sequence = vec![Step::Pattern { pattern: "chime".into() }];
        let daily = config("FREQ=DAILY", "2026-01-01T10:00:00", "Asia/Shanghai");
        let all =
            [Schedule::from_config(&hourly, "UTC", 60).unwrap(), Schedule::from_config(&daily, "UTC", 60).unwrap()];
        let n = next(&all, "2026-11-22T01:30:00Z".parse().unwrap(), 3);
        let got: Vec<(String, String)> = n.iter().map(|(s, t)| (s.name.clone(), rfc3339(&s.local(*t)))).collect();
        assert_eq!(
            got,
            [
                ("chime".to_owned(), "2026-11-22T10:00:00+08:00".to_owned()),
                ("t".to_owned(), "2026-11-22T10:00:00+08:00".to_owned()),
                ("chime".to_owned(), "2026-11-22T11:00:00+08:00".to_owned()),
            ]
        );
    }
}

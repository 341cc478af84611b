//! No siren is ever in two campaigns at once. A sounding holds its sirens from the start of
//! arming to a minute after its sequence ends; two soundings whose spans overlap on a shared
//! siren collide. Schedules resolve their collisions by precedence (`suppresses`: the 9·18 test
//! suppresses the hourly chime at 10:00), which the configuration must give for every collision
//! in the next two years; an ad-hoc sounding that would collide is refused.
//!
//! Sans-IO: spans, overlaps and the occurrences that collide.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use super::schedule::Schedule;

/// How long after its sequence a sounding still holds its sirens: reports and the clock
/// measurement after it.
pub const AFTER: SignedDuration = SignedDuration::from_secs(60);
/// How far ahead `check-config` looks for collisions between schedules.
pub const HORIZON: SignedDuration = SignedDuration::from_hours(2 * 366 * 24);
/// Most occurrences of one schedule looked at within the horizon (an hourly chime has 17,568).
const MAX_OCCURRENCES: usize = 20_000;

/// The time a sounding holds its sirens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub from: Timestamp,
    pub to: Timestamp,
}

impl Span {
    /// The span of a sounding at `instant` with arming `lead` and a sequence of `duration`.
    pub fn of(instant: Timestamp, lead: Duration, duration: Duration) -> Self {
        let lead = SignedDuration::try_from(lead).unwrap_or(SignedDuration::ZERO);
        let duration = SignedDuration::try_from(duration).unwrap_or(SignedDuration::ZERO);
        Self { from: instant - lead, to: instant + duration + AFTER }
    }

    pub fn overlaps(&self, other: &Span) -> bool {
        self.from < other.to && other.from < self.to
    }
}

/// Whether two target lists (zone paths; empty: the whole fleet) share a siren's zone: one
/// zone holds the other.
pub fn targets_meet(a: &[String], b: &[String]) -> bool {
    a.is_empty()
        || b.is_empty()
        || a.iter().any(|x| b.iter().any(|y| crate::coverage::within(x, y) || crate::coverage::within(y, x)))
}

/// The span of `s`'s occurrence at `t`.
pub fn span(s: &Schedule, t: Timestamp) -> Span {
    Span::of(t, s.lead, s.duration())
}

/// The occurrence of another schedule that suppresses `s` at `t`, if any.
pub fn suppressed_by<'a>(schedules: &'a [Schedule], s: &Schedule, t: Timestamp) -> Option<(&'a Schedule, Timestamp)> {
    let mine = span(s, t);
    schedules
        .iter()
        .filter(|x| x.name != s.name && x.suppresses.contains(&s.name) && targets_meet(&x.zones, &s.zones))
        .find_map(|x| {
            // Its first occurrence whose span could reach ours.
            let reach = SignedDuration::try_from(x.lead + x.duration()).unwrap_or(SignedDuration::ZERO) + AFTER;
            let o = x.after(mine.from - reach - SignedDuration::from_secs(1)).next()?;
            span(x, o).overlaps(&mine).then_some((x, o))
        })
}

/// Two schedules whose occurrences collide with no precedence between them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Collision {
    pub a: String,
    /// Its occurrence, local time in its zone (RFC 3339).
    pub a_at: String,
    pub b: String,
    pub b_at: String,
}

impl std::fmt::Display for Collision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "schedules `{}` ({}) and `{}` ({}) would hold the same sirens at once: add `suppresses = [\"{}\"]` \
             to `{}` (or the other way round), or move one",
            self.a, self.a_at, self.b, self.b_at, self.b, self.a
        )
    }
}

/// The first collision of each pair of `schedules` from `from` to `from + HORIZON` that no
/// `suppresses` resolves.
pub fn collisions(schedules: &[Schedule], from: Timestamp) -> Vec<Collision> {
    let until = from + HORIZON;
    let spans: Vec<Vec<(Timestamp, Span)>> = schedules
        .iter()
        .map(|s| s.after(from).take_while(|&t| t <= until).take(MAX_OCCURRENCES).map(|t| (t, span(s, t))).collect())
        .collect();
    let mut out = Vec::new();
    for i in 0..schedules.len() {
        for j in i + 1..schedules.len() {
            let (a, b) = (&schedules[i], &schedules[j]);
            if a.suppresses.contains(&b.name) || b.suppresses.contains(&a.name) || !targets_meet(&a.zones, &b.zones) {
                continue;
            }
            if let Some((a_at, b_at)) = first_overlap(&spans[i], &spans[j]) {
                let local = |s: &Schedule, t: Timestamp| super::schedule::rfc3339(&s.local(t));
                out.push(Collision {
                    a: a.name.clone(),
                    a_at: local(a, a_at),
                    b: b.name.clone(),
                    b_at: local(b, b_at),
                });
            }
        }
    }
    out
}

/// The first pair of overlapping spans of two lists sorted by start.
fn first_overlap(a: &[(Timestamp, Span)], b: &[(Timestamp, Span)]) -> Option<(Timestamp, Timestamp)> {
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        if a[i].1.overlaps(&b[j].1) {
            return Some((a[i].0, b[j].0));
        }
        // The one that ends first cannot meet anything later of the other.
        if a[i].1.to <= b[j].1.to {
            i += 1;
        } else {
            j += 1;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sounding::schedule::ScheduleConfig;
    use crate::sounding::sequence::{Kind, Step};

    fn schedule(name: &str, kind: Kind, rrule: &str, start: &str, pattern: &str, suppresses: &[&str]) -> Schedule {
        let c = ScheduleConfig {
            name: name.into(),
            kind,
            start: start.parse().unwrap(),
            rrule: rrule.into(),
            exdates: vec![],
            timezone: Some("Asia/Shanghai".into()),
            zones: vec![],
            sequence: vec![Step::Pattern { pattern: pattern.into() }],
            lead_s: Some(120),
            suppresses: suppresses.iter().map(|s| (*s).to_owned()).collect(),
        };
        Schedule::from_config(&c, "UTC", 600).unwrap()
    }

    fn chime() -> Schedule {
        schedule(
            "chime",
            Kind::Chime,
            "FREQ=DAILY;BYHOUR=8,9,10,11;BYMINUTE=0;BYSECOND=0",
            "2026-11-22T08:00:00",
            "chime",
            &[],
        )
    }

    #[test]
    fn a_yearly_test_at_ten_collides_with_the_chime_at_ten_unless_it_suppresses_it() {
        let from: Timestamp = "2026-12-01T00:00:00Z".parse().unwrap();
        let test =
            schedule("9-18", Kind::Test, "FREQ=YEARLY;BYMONTH=9;BYMONTHDAY=18", "2027-09-18T10:00:00", "air-raid", &[]);
        let all = [test, chime()];
        let found = collisions(&all, from);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].a_at, "2027-09-18T10:00:00+08:00");
        assert!(found[0].to_string().contains("suppresses = [\"chime\"]"), "{}", found[0]);

        let test = schedule(
            "9-18",
            Kind::Test,
            "FREQ=YEARLY;BYMONTH=9;BYMONTHDAY=18",
            "2027-09-18T10:00:00",
            "air-raid",
            &["chime"],
        );
        let all = [test, chime()];
        assert!(collisions(&all, from).is_empty());
        // The 10:00 chime of that day is suppressed (its span meets the test's); 11:00 is not:
        // the three-minute air-raid signal is over by 10:04.
        let ten: Timestamp = "2027-09-18T02:00:00Z".parse().unwrap();
        assert_eq!(suppressed_by(&all, &all[1], ten).map(|(s, _)| s.name.as_str()), Some("9-18"));
        assert!(suppressed_by(&all, &all[1], ten + SignedDuration::from_hours(1)).is_none());
        assert!(suppressed_by(&all, &all[1], ten - SignedDuration::from_hours(24)).is_none(), "the day before");
    }

    #[test]
    fn spans_run_from_arming_to_a_minute_after_the_sequence() {
        let t: Timestamp = "2027-01-01T00:00:00Z".parse().unwrap();
        let s = Span::of(t, Duration::from_secs(600), Duration::from_secs(180));
        assert_eq!(s.from, t - SignedDuration::from_secs(600));
        assert_eq!(s.to, t + SignedDuration::from_secs(240));
        let next = Span::of(t + SignedDuration::from_secs(840), Duration::from_secs(600), Duration::from_secs(1));
        assert!(!s.overlaps(&next), "touching is not overlapping");
        assert!(targets_meet(&["hz/c".into()], &["hz/c/t1".into()]));
        assert!(!targets_meet(&["hz/c".into()], &["hz/e".into()]));
        assert!(targets_meet(&[], &["hz/e".into()]));
    }
}

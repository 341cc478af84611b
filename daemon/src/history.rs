//! A siren's history for its crew: each time it was out of order (from leaving `ok` to being
//! back, with the worst state, the faults, the acknowledgement and the time to repair), its
//! state changes, maintenance windows and soundings. Sans-IO: built from what the store keeps.

use jiff::Timestamp;
use serde::Serialize;

use crate::liveness::State;
use crate::maintenance::Window;
use crate::store::Stored;

/// One time the siren was out of order.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Outage {
    pub start: String,
    /// When it was `ok` again; `None` while it lasts.
    pub end: Option<String>,
    /// From start to end (or to now while it lasts), s: the time to repair.
    pub duration_s: i64,
    /// The worst state it reached.
    pub worst: &'static str,
    /// The faults raised during it.
    pub faults: Vec<String>,
    /// The first acknowledgement during it (its record), and how long after the start it came.
    pub acknowledged: Option<Acknowledged>,
    /// It overlapped a maintenance window (which ones).
    pub maintenance: Vec<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Acknowledged {
    pub at: String,
    pub after_s: i64,
    pub detail: String,
}

/// A state change.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Change {
    pub at: String,
    pub from: String,
    pub to: String,
    pub cause: String,
}

/// The siren's part in one sounding.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct SoundingLine {
    pub campaign: u32,
    pub schedule: String,
    pub kind: &'static str,
    pub instant: String,
    /// `pass`, a failure reason, `in_maintenance`, or `None` while it is not judged yet.
    pub result: Option<&'static str>,
}

/// Outages summed up.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Summary {
    pub outages: usize,
    /// Outages still going on.
    pub open: usize,
    /// Mean time to repair of the outages that ended, s.
    pub mean_time_to_repair_s: Option<i64>,
    /// Passed soundings out of those judged.
    pub soundings_passed: usize,
    pub soundings_judged: usize,
}

/// Everything the crew reads about one siren, the latest first.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct History {
    pub siren: String,
    pub since: String,
    pub until: String,
    pub summary: Summary,
    pub outages: Vec<Outage>,
    pub changes: Vec<Change>,
    pub maintenance: Vec<crate::http::WindowView>,
    pub soundings: Vec<SoundingLine>,
}

/// A `state` event's detail, `down -> ok (status)`.
fn parse_change(detail: &str) -> Option<(State, State, &str)> {
    let (from, rest) = detail.split_once(" -> ")?;
    let (to, cause) = rest.split_once(' ').map_or((rest, ""), |(t, c)| (t, c));
    let cause = cause.trim_start_matches('(').trim_end_matches(')');
    Some((State::from_name(from)?, State::from_name(to)?, cause))
}

fn worse(a: State, b: State) -> State {
    let rank = |s: State| match s {
        State::Ok | State::Unknown => 0,
        State::Degraded => 1,
        State::Unreachable => 2,
        State::Faulty => 3,
        State::Down => 4,
    };
    if rank(b) > rank(a) { b } else { a }
}

struct Open {
    start: Timestamp,
    worst: State,
    faults: Vec<String>,
    acknowledged: Option<(Timestamp, String)>,
}

/// The history of `siren` from its events (any order), the maintenance windows that covered it
/// and its soundings, between `since` and `until` (`now` for outages that last).
pub fn build(
    siren: &str,
    mut events: Vec<Stored>,
    windows: &[Window],
    soundings: Vec<SoundingLine>,
    (since, until): (Timestamp, Timestamp),
    now: Timestamp,
) -> History {
    events.sort_by_key(|e| e.id);
    let mut outages = Vec::new();
    let mut changes = Vec::new();
    let mut open: Option<Open> = None;
    let seconds = |from: Timestamp, to: Timestamp| to.duration_since(from).as_secs();
    let close = |o: Open, end: Option<Timestamp>| {
        let to = end.unwrap_or(now);
        let overlapping =
            windows.iter().filter(|w| w.from < to && w.ended.as_ref().map_or(w.until, |e| e.at) > o.start);
        Outage {
            start: o.start.to_string(),
            end: end.map(|e| e.to_string()),
            duration_s: seconds(o.start, to),
            worst: o.worst.as_str(),
            faults: o.faults,
            acknowledged: o.acknowledged.map(|(at, detail)| Acknowledged {
                at: at.to_string(),
                after_s: seconds(o.start, at),
                detail,
            }),
            maintenance: overlapping.map(|w| w.id).collect(),
        }
    };
    for e in &events {
        let at = e.event.at;
        match e.event.kind.as_str() {
            "state" => {
                let Some((from, to, cause)) = parse_change(&e.event.detail) else { continue };
                changes.push(Change {
                    at: at.to_string(),
                    from: from.as_str().into(),
                    to: to.as_str().into(),
                    cause: cause.into(),
                });
                match (to, open.take()) {
                    (State::Ok, Some(o)) => outages.push(close(o, Some(at))),
                    (State::Ok, None) => {}
                    // A restart of the daemon: unknown until heard, the outage goes on.
                    (State::Unknown, o) => open = o,
                    (to, Some(mut o)) => {
                        o.worst = worse(o.worst, to);
                        open = Some(o);
                    }
                    (to, None) => open = Some(Open { start: at, worst: to, faults: Vec::new(), acknowledged: None }),
                }
            }
            "fault_raised" => {
                if let Some(o) = &mut open {
                    if !o.faults.contains(&e.event.detail) {
                        o.faults.push(e.event.detail.clone());
                    }
                }
            }
            "acknowledged" => {
                if let Some(o) = open.as_mut().filter(|o| o.acknowledged.is_none()) {
                    o.acknowledged = Some((at, e.event.detail.clone()));
                }
            }
            _ => {}
        }
    }
    if let Some(o) = open {
        outages.push(close(o, None));
    }
    let ended: Vec<i64> = outages.iter().filter(|o| o.end.is_some()).map(|o| o.duration_s).collect();
    let judged: Vec<&SoundingLine> = soundings.iter().filter(|s| s.result.is_some()).collect();
    let summary = Summary {
        outages: outages.len(),
        open: outages.len() - ended.len(),
        mean_time_to_repair_s: (!ended.is_empty())
            .then(|| ended.iter().sum::<i64>() / i64::try_from(ended.len()).unwrap_or(i64::MAX)),
        soundings_passed: judged.iter().filter(|s| s.result == Some("pass")).count(),
        soundings_judged: judged.len(),
    };
    outages.reverse();
    changes.reverse();
    History {
        siren: siren.to_owned(),
        since: since.to_string(),
        until: until.to_string(),
        summary,
        outages,
        changes,
        maintenance: windows.iter().map(|w| crate::http::WindowView::new(w, now)).collect(),
        soundings,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Event;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    fn event(id: i64, s: i64, kind: &str, detail: &str) -> Stored {
        Stored { id, event: Event { at: at(s), siren: Some("A".into()), kind: kind.into(), detail: detail.into() } }
    }

    #[test]
    fn outages_run_from_leaving_ok_to_being_ok_again_across_restarts() {
        let events = vec![
            event(1, 0, "state", "unknown -> ok (status)"),
            event(2, 100, "state", "ok -> degraded (status)"),
            event(3, 100, "fault_raised", "mains_lost"),
            event(4, 160, "state", "degraded -> faulty (status)"),
            event(5, 160, "fault_raised", "amplifier"),
            event(6, 400, "acknowledged", "faulty amplifier by crew-n: on our way"),
            // The daemon restarts during the outage.
            event(7, 500, "state", "unknown -> faulty (status)"),
            event(8, 1000, "state", "faulty -> ok (status)"),
            event(9, 2000, "state", "ok -> down (missed)"),
        ];
        let h = build("A", events, &[], Vec::new(), (at(0), at(3000)), at(3000));
        assert_eq!(h.outages.len(), 2);
        let open = &h.outages[0];
        assert_eq!((open.end.as_deref(), open.duration_s, open.worst), (None, 1000, "down"), "latest first");
        let done = &h.outages[1];
        assert_eq!(done.duration_s, 900);
        assert_eq!(done.worst, "faulty");
        assert_eq!(done.faults, ["mains_lost", "amplifier"]);
        assert_eq!(done.acknowledged.as_ref().map(|a| a.after_s), Some(300));
        assert_eq!((h.summary.outages, h.summary.open, h.summary.mean_time_to_repair_s), (2, 1, Some(900)));
        assert_eq!(h.changes.len(), 6);
        assert_eq!(h.changes[0].to, "down");
        assert_eq!(h.changes[0].cause, "missed");
    }

    #[test]
    fn an_outage_names_the_maintenance_windows_it_overlapped() {
        let window = |id, from, until| Window {
            id,
            scope: crate::maintenance::Scope::Siren("A".into()),
            by: "crew".into(),
            reason: "r".into(),
            from: at(from),
            until: at(until),
            ended: None,
        };
        let events = vec![event(1, 100, "state", "ok -> down (missed)"), event(2, 500, "state", "down -> ok (status)")];
        let windows = [window(1, 0, 50), window(2, 90, 200), window(3, 600, 700)];
        let soundings = vec![
            SoundingLine {
                campaign: 4,
                schedule: "w".into(),
                kind: "silent-test",
                instant: String::new(),
                result: Some("pass"),
            },
            SoundingLine {
                campaign: 5,
                schedule: "w".into(),
                kind: "silent-test",
                instant: String::new(),
                result: None,
            },
        ];
        let h = build("A", events, &windows, soundings, (at(0), at(800)), at(800));
        assert_eq!(h.outages[0].maintenance, [2]);
        assert_eq!((h.summary.soundings_passed, h.summary.soundings_judged), (1, 1));
    }
}

//! The one-step stop (`POST /api/stop`): every siren in scope is sent `STOP` until it
//! answers it (a device acknowledges `STOP` whether or not it was sounding) or reports itself
//! idle. Stopping never waits for anyone's approval and never gives up by itself: a siren that
//! cannot be reached is sent `STOP` again every [`RETRY_EVERY`] until it is silent, for
//! [`GIVE_UP_AFTER`], so that it stops the moment its link returns.
//!
//! Sans-IO: which siren to send `STOP` to now, what each answered, and the sweep's record.

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use serde::Serialize;

/// How long after a `STOP` that went unanswered it is sent again.
pub const RETRY_EVERY: SignedDuration = SignedDuration::from_secs(2);
/// How long a sweep keeps trying sirens that never answer.
pub const GIVE_UP_AFTER: SignedDuration = SignedDuration::from_mins(30);

/// One siren's part in a sweep.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    /// Not yet confirmed silent: `busy` while a `STOP` is under way.
    Pending { tries: u32, next: Timestamp, busy: bool },
    /// Answered the `STOP` (or reported itself idle) at this instant.
    Silent { at: Timestamp, tries: u32 },
}

/// A stop of the sirens in a scope.
#[derive(Debug, Clone)]
pub struct Sweep {
    pub id: u32,
    pub by: String,
    pub reason: String,
    /// What was asked to stop, as the request named it.
    pub scope: String,
    pub began: Timestamp,
    /// Fleet index → its part, with its id.
    parts: BTreeMap<usize, (String, Part)>,
    /// The pending sirens to send `STOP` to next, with when: the engine asks at every tick,
    /// and a sweep of 10,000 sirens must not look at each of them every time.
    queue: Vec<(Timestamp, usize)>,
    /// When the last siren was confirmed silent.
    pub done: Option<Timestamp>,
}

impl Sweep {
    /// A sweep of the sirens `sirens` (fleet index, id), begun at `now`.
    pub fn new(id: u32, by: &str, reason: &str, scope: &str, sirens: Vec<(usize, String)>, now: Timestamp) -> Self {
        let queue = sirens.iter().map(|(i, _)| (now, *i)).collect();
        let parts =
            sirens.into_iter().map(|(i, s)| (i, (s, Part::Pending { tries: 0, next: now, busy: false }))).collect();
        let mut sweep = Self {
            id,
            by: by.to_owned(),
            reason: reason.to_owned(),
            scope: scope.to_owned(),
            began: now,
            parts,
            queue,
            done: None,
        };
        sweep.check_done(now);
        sweep
    }

    /// The sirens to send `STOP` now (each is then under way until answered or failed).
    pub fn due(&mut self, now: Timestamp) -> Vec<usize> {
        if self.done.is_some() || now.duration_since(self.began) > GIVE_UP_AFTER {
            return Vec::new();
        }
        let mut out = Vec::new();
        let parts = &mut self.parts;
        self.queue.retain(|&(next, index)| {
            if next > now {
                return true;
            }
            if let Some((_, Part::Pending { tries, busy, .. })) = parts.get_mut(&index) {
                if !*busy {
                    *busy = true;
                    *tries += 1;
                    out.push(index);
                }
            }
            false
        });
        out
    }

    /// Siren `index` answered the `STOP`, or said it is idle, at `now`.
    pub fn silent(&mut self, index: usize, now: Timestamp) {
        if let Some((_, part)) = self.parts.get_mut(&index) {
            if let Part::Pending { tries, .. } = *part {
                *part = Part::Silent { at: now, tries };
            }
        }
        self.check_done(now);
    }

    /// A `STOP` to siren `index` went unanswered: it is sent again later.
    pub fn failed(&mut self, index: usize, now: Timestamp) {
        if let Some((_, Part::Pending { next, busy, .. })) = self.parts.get_mut(&index) {
            *busy = false;
            *next = now + RETRY_EVERY;
            self.queue.push((*next, index));
        }
    }

    /// Whether siren `index` is still to be confirmed silent.
    pub fn waits_for(&self, index: usize) -> bool {
        matches!(self.parts.get(&index), Some((_, Part::Pending { .. })))
    }

    fn check_done(&mut self, now: Timestamp) {
        if self.done.is_none() && self.parts.values().all(|(_, p)| matches!(p, Part::Silent { .. })) {
            self.done = Some(now);
        }
    }

    /// Whether it is over: every siren silent, or given up.
    pub fn over(&self, now: Timestamp) -> bool {
        self.done.is_some() || now.duration_since(self.began) > GIVE_UP_AFTER
    }

    /// The sweep as the API shows it.
    pub fn view(&self) -> SweepView {
        let ms = |from: Timestamp, to: Timestamp| to.duration_since(from).as_millis();
        let sirens: Vec<SirenStopView> = self
            .parts
            .values()
            .map(|(siren, part)| match *part {
                Part::Pending { tries, .. } => {
                    SirenStopView { siren: siren.clone(), silent: false, silent_after_ms: None, stops_sent: tries }
                }
                Part::Silent { at, tries } => SirenStopView {
                    siren: siren.clone(),
                    silent: true,
                    silent_after_ms: Some(ms(self.began, at)),
                    stops_sent: tries,
                },
            })
            .collect();
        SweepView {
            id: self.id,
            by: self.by.clone(),
            reason: self.reason.clone(),
            scope: self.scope.clone(),
            began: self.began.to_string(),
            done: self.done.map(|d| d.to_string()),
            all_silent_after_ms: self.done.map(|d| ms(self.began, d)),
            pending: sirens.iter().filter(|s| !s.silent).count(),
            sirens,
        }
    }
}

/// A sweep as the API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SweepView {
    pub id: u32,
    pub by: String,
    pub reason: String,
    pub scope: String,
    pub began: String,
    /// When the last siren was confirmed silent.
    pub done: Option<String>,
    /// From the request to the last siren confirmed silent, ms.
    pub all_silent_after_ms: Option<i128>,
    /// Sirens not yet confirmed silent.
    pub pending: usize,
    pub sirens: Vec<SirenStopView>,
}

/// One siren's part in a sweep.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SirenStopView {
    pub siren: String,
    pub silent: bool,
    pub silent_after_ms: Option<i128>,
    pub stops_sent: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: i64) -> Timestamp {
        Timestamp::from_millisecond(1_800_000_000_000 + ms).unwrap()
    }

    #[test]
    fn every_siren_is_sent_stop_until_it_answers() {
        let mut s = Sweep::new(1, "duty", "false alarm", "all", vec![(0, "A".into()), (1, "B".into())], at(0));
        assert_eq!(s.due(at(0)), [0, 1]);
        assert!(s.due(at(1)).is_empty(), "under way");
        s.silent(0, at(40));
        s.failed(1, at(3000));
        assert!(s.due(at(4000)).is_empty(), "not before the retry interval");
        assert_eq!(s.due(at(5000)), [1]);
        assert!(!s.over(at(5000)));
        s.silent(1, at(5100));
        assert_eq!(s.done, Some(at(5100)));
        let v = s.view();
        assert_eq!((v.all_silent_after_ms, v.pending), (Some(5100), 0));
        assert_eq!(v.sirens[1].stops_sent, 2);
        assert!(s.due(at(9000)).is_empty());
    }

    #[test]
    fn an_empty_scope_is_done_at_once_and_a_dead_siren_is_given_up_late() {
        assert!(Sweep::new(2, "d", "r", "zone x", Vec::new(), at(0)).over(at(0)));
        let mut s = Sweep::new(3, "d", "r", "all", vec![(0, "A".into())], at(0));
        let mut t = 0;
        while !s.due(at(t)).is_empty() {
            s.failed(0, at(t));
            t += i64::try_from(RETRY_EVERY.as_millis()).unwrap();
        }
        assert!(at(t).duration_since(at(0)) > GIVE_UP_AFTER);
        assert!(s.over(at(t)) && s.done.is_none() && s.waits_for(0));
    }
}

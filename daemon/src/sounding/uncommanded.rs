//! Sirens armed or sounding that no campaign of this daemon ordered: a faulty controller that
//! sounds by itself (Chengdu, 2018), or someone with a stolen key or a radio replay arming it
//! (Dallas, 2017). Every such siren is an alarm (event, metric, alert) and, unless a crew has
//! it in maintenance, is stopped at once and again until it reports idle.
//!
//! Sans-IO: told what each siren says of itself and whether an open campaign claims it, it
//! says what to record and what to send, and when to send it again.

use std::collections::HashMap;

use jiff::Timestamp;
use siren_proto::message::{DeviceState, Message};

/// How long after a stop or cancel a siren still armed or sounding is sent another.
pub const STOP_AGAIN_AFTER: jiff::SignedDuration = jiff::SignedDuration::from_secs(5);

/// How long after an alarm a report of the same sounding is not news.
pub const REPORT_EXPLAINED_FOR: jiff::SignedDuration = jiff::SignedDuration::from_hours(1);

/// What a siren said of itself that is not ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    pub state: DeviceState,
    /// The campaign it names, when the message tells (a status report does, a heartbeat not).
    pub campaign: Option<u32>,
    /// Learnt from its report of a sounding that is over (it sounded between two of its
    /// heartbeats), not from what it says it is doing now.
    pub reported: bool,
}

impl Seen {
    /// One line for events and logs: `sounding campaign 3735879680`.
    pub fn describe(&self) -> String {
        let state = match self.state {
            DeviceState::Armed => "armed",
            DeviceState::Sounding => "sounding",
            DeviceState::Idle => "idle",
        };
        match (self.reported, self.campaign) {
            (true, c) => format!(
                "reported campaign {} (armed or sounded, now over), which no campaign of this daemon ordered",
                c.unwrap_or_default()
            ),
            (false, Some(0) | None) => format!("{state} (no campaign named)"),
            (false, Some(c)) => format!("{state} for campaign {c}, which no open campaign of this daemon explains"),
        }
    }

    /// What stops it: STOP for a sounding, CANCEL for an armed campaign whose id is known,
    /// a status request to learn the id of one that is not.
    pub fn remedy(&self) -> Message {
        if self.reported {
            // Over by its report; if it sounds again, its status says so.
            return Message::StatusRequest;
        }
        match (self.state, self.campaign) {
            (DeviceState::Sounding, c) => Message::Stop { campaign: c.unwrap_or(0) },
            (DeviceState::Armed, Some(c)) if c != 0 => Message::Cancel { campaign: c },
            _ => Message::StatusRequest,
        }
    }
}

/// What the watch asks of the engine.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// First seen: record, alert, and send `remedy` if it is to be stopped.
    Began { seen: Seen, stop: Option<Message> },
    /// Still at it: send `remedy` again.
    StopAgain(Message),
    /// It reports idle (or a campaign of ours claims it now): the alarm is over.
    Ended { seen: Seen, stops: u32 },
}

#[derive(Debug, Clone)]
struct Suspect {
    seen: Seen,
    /// Whether it is being stopped (a siren in maintenance is not: its crew may be testing).
    stopping: bool,
    last_stop: Option<Timestamp>,
    stops: u32,
}

/// The sirens currently armed or sounding without a campaign of ours, by fleet index.
#[derive(Debug, Default)]
pub struct UncommandedWatch {
    suspects: HashMap<usize, Suspect>,
    /// The campaign each siren was last alarmed for (`None`: not named) and when: its report
    /// of that sounding is then not news.
    alarmed: HashMap<usize, (Option<u32>, Timestamp)>,
    /// The `last_campaign` each siren's status last named.
    last_campaign: HashMap<usize, u32>,
}

impl UncommandedWatch {
    /// Siren `index` said it is in `seen` at `now`; `claimed` whether an open campaign of ours
    /// explains it, `stop` whether to stop it (the configuration allows, and no crew has it in
    /// maintenance).
    pub fn observe(&mut self, index: usize, seen: Seen, claimed: bool, stop: bool, now: Timestamp) -> Option<Step> {
        let active = matches!(seen.state, DeviceState::Armed | DeviceState::Sounding);
        if !active || claimed {
            return self.suspects.remove(&index).map(|s| Step::Ended { seen: s.seen, stops: s.stops });
        }
        match self.suspects.get_mut(&index) {
            None => {
                let remedy = stop.then(|| seen.remedy());
                let stops = u32::from(remedy.is_some());
                let last_stop = remedy.as_ref().map(|_| now);
                self.suspects.insert(index, Suspect { seen, stopping: stop, last_stop, stops });
                self.alarmed.insert(index, (seen.campaign, now));
                Some(Step::Began { seen, stop: remedy })
            }
            Some(s) => {
                // A status report names the campaign a heartbeat did not: the remedy can now be
                // the right one.
                if seen.campaign.is_some() {
                    s.seen = seen;
                    self.alarmed.insert(index, (seen.campaign, now));
                }
                s.stopping = stop;
                let due = s.last_stop.is_none_or(|t| now.duration_since(t) >= STOP_AGAIN_AFTER);
                if !s.stopping || !due {
                    return None;
                }
                s.last_stop = Some(now);
                s.stops += 1;
                Some(Step::StopAgain(s.seen.remedy()))
            }
        }
    }

    /// Whether siren `index`'s report of a sounding of `campaign`, which no campaign of ours
    /// ordered, is news: not a sounding it is already alarmed for (one whose campaign was not
    /// named counts as any campaign) within [`REPORT_EXPLAINED_FOR`].
    pub fn report_is_news(&self, index: usize, campaign: u32, now: Timestamp) -> bool {
        if self.suspects.contains_key(&index) {
            return false;
        }
        !self
            .alarmed
            .get(&index)
            .is_some_and(|&(c, at)| c.is_none_or(|c| c == campaign) && now.duration_since(at) < REPORT_EXPLAINED_FOR)
    }

    /// Siren `index`'s status names `last_campaign`, the most recent campaign it ended: that
    /// campaign when it changed since its previous status (the first status after sirend
    /// starts is the baseline: the campaigns before are not this run's business).
    pub fn campaign_ended(&mut self, index: usize, last_campaign: u32) -> Option<u32> {
        let before = self.last_campaign.insert(index, last_campaign)?;
        (before != last_campaign && last_campaign != 0).then_some(last_campaign)
    }

    /// Whether siren `index` is armed or sounding without a campaign of ours.
    pub fn is_suspect(&self, index: usize) -> bool {
        self.suspects.contains_key(&index)
    }

    /// The sirens that are.
    pub fn suspects(&self) -> impl Iterator<Item = usize> + '_ {
        self.suspects.keys().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    const SOUNDING: Seen = Seen { state: DeviceState::Sounding, campaign: Some(77), reported: false };
    const IDLE: Seen = Seen { state: DeviceState::Idle, campaign: None, reported: false };

    #[test]
    fn a_sounding_nobody_ordered_is_stopped_again_until_it_is_idle() {
        let mut w = UncommandedWatch::default();
        assert_eq!(
            w.observe(3, SOUNDING, false, true, at(0)),
            Some(Step::Began { seen: SOUNDING, stop: Some(Message::Stop { campaign: 77 }) })
        );
        assert!(w.is_suspect(3));
        assert_eq!(w.observe(3, SOUNDING, false, true, at(2)), None, "not before the retry interval");
        assert_eq!(w.observe(3, SOUNDING, false, true, at(5)), Some(Step::StopAgain(Message::Stop { campaign: 77 })));
        assert_eq!(w.observe(3, IDLE, false, true, at(6)), Some(Step::Ended { seen: SOUNDING, stops: 2 }));
        assert!(!w.is_suspect(3));
        assert_eq!(w.observe(3, IDLE, false, true, at(7)), None);
    }

    #[test]
    fn ours_is_not_an_alarm_and_maintenance_is_not_stopped() {
        let mut w = UncommandedWatch::default();
        assert_eq!(w.observe(1, SOUNDING, true, true, at(0)), None, "a campaign of ours");
        assert_eq!(
            w.observe(2, SOUNDING, false, false, at(0)),
            Some(Step::Began { seen: SOUNDING, stop: None }),
            "in maintenance: an alarm, not stopped"
        );
        assert_eq!(w.observe(2, SOUNDING, false, false, at(60)), None);
    }

    #[test]
    fn an_armed_siren_is_cancelled_once_its_campaign_is_known() {
        let mut w = UncommandedWatch::default();
        let heartbeat = Seen { state: DeviceState::Armed, campaign: None, reported: false };
        assert_eq!(
            w.observe(4, heartbeat, false, true, at(0)),
            Some(Step::Began { seen: heartbeat, stop: Some(Message::StatusRequest) })
        );
        let status = Seen { state: DeviceState::Armed, campaign: Some(9), reported: false };
        assert_eq!(w.observe(4, status, false, true, at(5)), Some(Step::StopAgain(Message::Cancel { campaign: 9 })));
    }

    #[test]
    fn a_reported_sounding_is_news_unless_that_sounding_was_alarmed_already() {
        let mut w = UncommandedWatch::default();
        assert!(w.report_is_news(5, 77, at(0)), "nothing seen of it before");
        w.observe(3, SOUNDING, false, true, at(0));
        assert!(!w.report_is_news(3, 77, at(1)), "alarmed while it sounded");
        w.observe(3, IDLE, false, true, at(10));
        assert!(!w.report_is_news(3, 77, at(20)), "its report after the stop");
        assert!(w.report_is_news(3, 78, at(20)), "another campaign");
        assert!(w.report_is_news(3, 77, at(4000)), "an hour later, another sounding");
        let heartbeat = Seen { state: DeviceState::Sounding, campaign: None, reported: false };
        w.observe(4, heartbeat, false, true, at(0));
        w.observe(4, IDLE, false, true, at(5));
        assert!(!w.report_is_news(4, 12, at(6)), "a heartbeat names no campaign: any is explained");
        let reported = Seen { state: DeviceState::Sounding, campaign: Some(12), reported: true };
        assert_eq!(reported.remedy(), Message::StatusRequest, "over: only asked how it is");
        assert!(reported.describe().starts_with("reported campaign 12 "));
    }

    #[test]
    fn a_campaign_ended_is_told_when_the_status_names_a_new_one_after_the_first() {
        let mut w = UncommandedWatch::default();
        assert_eq!(w.campaign_ended(1, 40), None, "the first status is the baseline");
        assert_eq!(w.campaign_ended(1, 40), None);
        assert_eq!(w.campaign_ended(1, 41), Some(41));
        assert_eq!(w.campaign_ended(1, 41), None);
        assert_eq!(w.campaign_ended(2, 0), None);
        assert_eq!(w.campaign_ended(2, 0), None);
    }
}

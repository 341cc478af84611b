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

/// What a siren said of itself that is not ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    pub state: DeviceState,
    /// The campaign it names, when the message tells (a status report does, a heartbeat not).
    pub campaign: Option<u32>,
}

impl Seen {
    /// One line for events and logs: `sounding campaign 3735879680`.
    pub fn describe(&self) -> String {
        let state = match self.state {
            DeviceState::Armed => "armed",
            DeviceState::Sounding => "sounding",
            DeviceState::Idle => "idle",
        };
        match self.campaign {
            Some(0) | None => format!("{state} (no campaign named)"),
            Some(c) => format!("{state} for campaign {c}, which no open campaign of this daemon explains"),
        }
    }

    /// What stops it: STOP for a sounding, CANCEL for an armed campaign whose id is known,
    /// a status request to learn the id of one that is not.
    pub fn remedy(&self) -> Message {
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
                Some(Step::Began { seen, stop: remedy })
            }
            Some(s) => {
                // A status report names the campaign a heartbeat did not: the remedy can now be
                // the right one.
                if seen.campaign.is_some() {
                    s.seen = seen;
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

    const SOUNDING: Seen = Seen { state: DeviceState::Sounding, campaign: Some(77) };
    const IDLE: Seen = Seen { state: DeviceState::Idle, campaign: None };

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
        let heartbeat = Seen { state: DeviceState::Armed, campaign: None };
        assert_eq!(
            w.observe(4, heartbeat, false, true, at(0)),
            Some(Step::Began { seen: heartbeat, stop: Some(Message::StatusRequest) })
        );
        let status = Seen { state: DeviceState::Armed, campaign: Some(9) };
        assert_eq!(w.observe(4, status, false, true, at(5)), Some(Step::StopAgain(Message::Cancel { campaign: 9 })));
    }
}

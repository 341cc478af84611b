//! Each siren's liveness: a pure function of (state, observation, now), so tests drive it
//! with a virtual clock (DESIGN.md, "Sirens, links and states").
//!
//! - An answer sets the state from the fault bits: `ok`, `degraded` (warnings) or `faulty`
//!   (a blocking fault).
//! - Silence counts as a miss only while a link to the siren is up; `down` needs
//!   `down_after_misses` consecutive misses (debounce), or an MQTT death.
//! - When every link of a siren is down the siren is `unreachable`: no verdict, one link
//!   alert instead of one per siren. When a link returns the siren is `unknown` until heard.

use jiff::Timestamp;
use siren_proto::message::FaultBits;

/// The public liveness states (metrics, API and dashboards use these names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, utoipa::ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum State {
    Unknown,
    Ok,
    Degraded,
    Faulty,
    Down,
    Unreachable,
}

impl State {
    pub const ALL: [State; 6] =
        [State::Unknown, State::Ok, State::Degraded, State::Faulty, State::Down, State::Unreachable];

    pub const fn as_str(self) -> &'static str {
        match self {
            State::Unknown => "unknown",
            State::Ok => "ok",
            State::Degraded => "degraded",
            State::Faulty => "faulty",
            State::Down => "down",
            State::Unreachable => "unreachable",
        }
    }

    /// Parses a state name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// Whether a siren in this state would sound if triggered now (counts for coverage).
    pub const fn can_sound(self) -> bool {
        matches!(self, State::Ok | State::Degraded)
    }

    fn from_faults(faults: FaultBits) -> Self {
        if faults.is_blocking() {
            State::Faulty
        } else if faults.has_warning() {
            State::Degraded
        } else {
            State::Ok
        }
    }
}

/// What a transport saw of one siren. `link` names the link: `serial:<bus>` or `mqtt`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observation {
    /// The siren answered a poll or published (status, heartbeat, birth, report). `faults`
    /// is `None` for messages that carry none (a birth): the last known faults stand, and a
    /// siren not known to be able to sound does not become `ok` by it.
    Heard { link: String, faults: Option<FaultBits> },
    /// A poll went unanswered after its retries, or a heartbeat period passed in silence.
    Missed { link: String },
    /// An MQTT death: the device's session ended.
    Died { link: String },
    /// The link itself failed (serial port gone, broker lost).
    LinkDown { link: String },
    /// The link works again.
    LinkUp { link: String },
}

/// Settings of the state machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub down_after_misses: u32,
}

/// Why a state changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    Heard,
    Missed,
    Died,
    LinksDown,
    LinkUp,
}

impl Cause {
    pub const fn as_str(self) -> &'static str {
        match self {
            Cause::Heard => "heard",
            Cause::Missed => "missed",
            Cause::Died => "died",
            Cause::LinksDown => "links_down",
            Cause::LinkUp => "link_up",
        }
    }
}

/// Something that changed, to be recorded as an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    State {
        from: State,
        to: State,
        cause: Cause,
    },
    FaultRaised {
        fault: &'static str,
    },
    FaultCleared {
        fault: &'static str,
    },
    /// The siren's acknowledgement ended (the fleet's, not the state machine's): it recovered
    /// or something new went wrong.
    AcknowledgementEnded {
        why: &'static str,
    },
}

/// One siren's liveness.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SirenState {
    pub state: State,
    /// When `state` was entered.
    pub since: Timestamp,
    /// Consecutive misses since the siren was last heard.
    pub misses: u32,
    /// The last fault bits it reported.
    pub faults: FaultBits,
    /// Its links, by name, sorted: shared, since [`step`](Self::step) copies the state at
    /// every observation and most sirens have the same links (see [`Links`]).
    pub links: Links,
    /// Which of its links are down (a siren has one or two: a small vector is a fraction of a
    /// set's size, and empty it costs no allocation).
    pub links_down: Vec<String>,
    /// How many times it has gone `down`.
    pub flaps: u32,
    pub last_seen: Option<Timestamp>,
}

/// A siren's link names, sorted and without repeats; one allocation shared by every siren
/// with the same links (`FleetState` hands out one per distinct set).
pub type Links = std::sync::Arc<[std::sync::Arc<str>]>;

/// The [`Links`] of `names`.
pub fn links(names: impl IntoIterator<Item = String>) -> Links {
    let mut l: Vec<String> = names.into_iter().collect();
    l.sort();
    l.dedup();
    l.into_iter().map(std::sync::Arc::from).collect()
}

impl SirenState {
    /// A siren not heard since the daemon started.
    pub fn new(links: impl IntoIterator<Item = String>, now: Timestamp) -> Self {
        Self::with_links(self::links(links), now)
    }

    /// A siren not heard since the daemon started, with links made by [`links`].
    pub fn with_links(links: Links, now: Timestamp) -> Self {
        Self {
            state: State::Unknown,
            since: now,
            misses: 0,
            faults: FaultBits::default(),
            links,
            links_down: Vec::new(),
            flaps: 0,
            last_seen: None,
        }
    }

    /// Whether the siren has the link named `name`.
    pub fn has_link(&self, name: &str) -> bool {
        self.links.iter().any(|l| **l == *name)
    }

    /// Whether its link named `name` is down.
    pub fn link_down(&self, name: &str) -> bool {
        self.links_down.iter().any(|l| l == name)
    }

    /// Whether some link to the siren is up.
    pub fn reachable(&self) -> bool {
        self.links.iter().any(|l| !self.link_down(l))
    }

    /// The state after `observation` at `now`, and what changed.
    #[must_use]
    pub fn step(&self, observation: &Observation, now: Timestamp, policy: Policy) -> (Self, Vec<Change>) {
        let mut next = self.clone();
        let mut changes = Vec::new();
        let target = match observation {
            Observation::Heard { link, faults } => {
                next.links_down.retain(|l| l != link);
                next.misses = 0;
                next.last_seen = Some(now);
                match faults {
                    Some(f) => {
                        fault_changes(self.faults, *f, &mut changes);
                        next.faults = *f;
                        Some((State::from_faults(next.faults), Cause::Heard))
                    }
                    // A frame without the fault word (a birth) proves the siren is there, not
                    // that it can sound: `ok` waits for a status (the engine asks for one).
                    None => match self.state {
                        State::Ok | State::Degraded | State::Faulty => {
                            Some((State::from_faults(next.faults), Cause::Heard))
                        }
                        State::Unreachable => Some((State::Unknown, Cause::Heard)),
                        State::Unknown | State::Down => None,
                    },
                }
            }
            // Silence while no link is up is the daemon's own doing: no verdict.
            Observation::Missed { .. } | Observation::Died { .. } if !self.reachable() => None,
            Observation::Missed { .. } => {
                next.misses = self.misses.saturating_add(1);
                (next.misses >= policy.down_after_misses).then_some((State::Down, Cause::Missed))
            }
            Observation::Died { .. } => {
                next.misses = next.misses.max(policy.down_after_misses);
                Some((State::Down, Cause::Died))
            }
            Observation::LinkDown { link } => {
                if self.has_link(link) && !next.link_down(link) {
                    next.links_down.push(link.clone());
                }
                (!next.reachable()).then_some((State::Unreachable, Cause::LinksDown))
            }
            Observation::LinkUp { link } => {
                next.links_down.retain(|l| l != link);
                // Silence while we could not listen proves nothing.
                if self.state == State::Unreachable && next.reachable() {
                    next.misses = 0;
                    Some((State::Unknown, Cause::LinkUp))
                } else {
                    None
                }
            }
        };
        if let Some((to, cause)) = target {
            if to != self.state {
                next.state = to;
                next.since = now;
                if to == State::Down {
                    next.flaps = next.flaps.saturating_add(1);
                }
                changes.insert(0, Change::State { from: self.state, to, cause });
            }
        }
        (next, changes)
    }
}

fn fault_changes(before: FaultBits, after: FaultBits, changes: &mut Vec<Change>) {
    for (bit, name) in FaultBits::NAMES {
        match (before.contains(bit), after.contains(bit)) {
            (false, true) => changes.push(Change::FaultRaised { fault: name }),
            (true, false) => changes.push(Change::FaultCleared { fault: name }),
            _ => {}
        }
    }
}

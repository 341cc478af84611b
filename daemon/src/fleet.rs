//! The fleet's state: every siren this daemon owns, its liveness and its latest telemetry.
//! Transports report observations here; what changes is returned for the store and metrics.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use jiff::Timestamp;
use siren_proto::fleet::ZonePath;
use siren_proto::frame::KeyId;
use siren_proto::message::{DeviceState, StatusReport};

use crate::liveness::{Change, Links, Observation, Policy, SirenState, State, links};
use crate::store::StateRow;

/// What the siren last told about itself.
#[derive(Debug, Clone, PartialEq)]
pub struct Telemetry {
    pub at: Timestamp,
    pub boot_seq: u32,
    pub device_state: DeviceState,
    pub mains_present: bool,
    pub battery_volts: f64,
    pub battery_soc: Option<u8>,
    pub door_open: bool,
    pub cabinet_temp_c: Option<f64>,
    /// Device clock minus daemon clock at the report's arrival, µs (within one-way latency).
    pub clock_offset_us: i64,
    pub firmware: siren_proto::message::Firmware,
    pub link_quality: Option<u8>,
}

impl Telemetry {
    /// Telemetry from a status report that arrived at `received`.
    pub fn from_report(s: &StatusReport, received: Timestamp) -> Self {
        Self {
            at: received,
            boot_seq: s.boot_seq,
            device_state: s.state,
            mains_present: s.mains_present,
            battery_volts: f64::from(s.battery_mv) / 1000.0,
            battery_soc: (s.battery_soc != siren_proto::message::UNKNOWN_PERCENT).then_some(s.battery_soc),
            door_open: s.door_open,
            cabinet_temp_c: (s.cabinet_temp_dc != siren_proto::message::UNKNOWN_TEMPERATURE)
                .then(|| f64::from(s.cabinet_temp_dc) / 10.0),
            clock_offset_us: s.device_time_us.saturating_sub(received.as_microsecond()),
            firmware: s.firmware,
            link_quality: (s.link_quality != siren_proto::message::UNKNOWN_PERCENT).then_some(s.link_quality),
        }
    }
}

/// One siren as the daemon sees it.
#[derive(Debug, Clone)]
pub struct Siren {
    pub id: String,
    pub name: String,
    /// Shared by every siren of the zone.
    pub zone: Arc<ZonePath>,
    pub latitude: f64,
    pub longitude: f64,
    pub rating_db: f64,
    pub key_id: KeyId,
    pub liveness: SirenState,
    pub telemetry: Option<Telemetry>,
    /// What the previous run of the daemon last knew (the siren itself starts `unknown`).
    pub last_known: Option<LastKnown>,
    /// The faults an operator has acknowledged, by whom and when: boxed, since few sirens
    /// have one and every siren would carry its size.
    pub acknowledged: Option<Box<Acknowledgement>>,
    /// Set while commands to the siren go unanswered although it is heard: a command-path
    /// fault, apart from liveness (boxed for the same reason).
    pub command_fault: Option<Box<CommandFault>>,
    /// Armed or sounding while no campaign of ours ordered it (an alarm).
    pub uncommanded: bool,
}

/// Commands a siren that is otherwise heard does not answer (its receive counter ahead of the
/// daemon's, a wrong key on one side, a half-broken link).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandFault {
    /// When its first unanswered command gave up.
    pub since: Timestamp,
    /// Commands unanswered after every retry since then.
    pub unanswered: u32,
}

/// The state a previous run of the daemon last recorded for a siren.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LastKnown {
    pub state: State,
    pub since: Timestamp,
}

/// An operator's acknowledgement of a siren's condition: its state and faults when
/// acknowledged. It holds while the siren stays in that condition or a milder one that is not
/// `ok` (down then faulty, faulty then degraded), and ends when it recovers, when it gets worse
/// or a new fault appears, or at `until`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acknowledgement {
    pub state: State,
    pub faults: siren_proto::message::FaultBits,
    pub by: String,
    pub at: Timestamp,
    pub note: String,
    pub until: Option<Timestamp>,
}

impl Acknowledgement {
    /// How bad a state is, for "worse than acknowledged".
    fn severity(state: State) -> u8 {
        match state {
            State::Ok | State::Unknown => 0,
            State::Degraded => 1,
            State::Faulty | State::Unreachable => 2,
            State::Down => 3,
        }
    }

    /// Why it ends for a siren now in `state` with `faults`, if it does.
    fn ends(&self, state: State, faults: siren_proto::message::FaultBits) -> Option<&'static str> {
        if state == State::Ok {
            Some("recovered")
        } else if Self::severity(state) > Self::severity(self.state) {
            Some("worse than when acknowledged")
        } else if faults.0 & !self.faults.0 != 0 {
            Some("a new fault")
        } else {
            None
        }
    }

    /// Whether it is still in force at `now` (not past `until`).
    pub fn in_force(&self, now: Timestamp) -> bool {
        self.until.is_none_or(|u| now < u)
    }
}

/// Why an acknowledgement was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AckRefused {
    #[error("the siren is ok: there is nothing to acknowledge")]
    NothingWrong,
    #[error("the siren has not been heard since sirend started: there is nothing known to acknowledge")]
    NotHeard,
}

/// Every siren this daemon owns.
#[derive(Debug, Clone)]
pub struct FleetState {
    sirens: Vec<Siren>,
    /// Siren indices sorted by id, searched by bisection: a second copy of every id as a
    /// map's key cost more memory than the sirens' own strings.
    by_id: Vec<u32>,
    by_key: HashMap<KeyId, usize>,
    policy: Policy,
    /// When each active fault was raised, by siren index and fault name. Kept beside the
    /// sirens rather than in them: most sirens have no fault, and they cost nothing here.
    fault_since: BTreeMap<(usize, &'static str), Timestamp>,
    /// Moves at every change, so that views of the fleet can be kept until it moves.
    version: u64,
    /// Maintenance windows open now (few: a search per siren costs nothing).
    maintenance: crate::maintenance::Book,
}

impl FleetState {
    /// A number that changes whenever anything in the fleet changes.
    pub fn version(&self) -> u64 {
        self.version
    }

    pub fn new<'a>(
        sirens: impl IntoIterator<Item = &'a siren_proto::fleet::Siren>,
        policy: Policy,
        now: Timestamp,
    ) -> Self {
        // One allocation per distinct set of links, not one per siren.
        let mut shared: HashMap<Vec<String>, Links> = HashMap::new();
        let mut zones: HashMap<&ZonePath, Arc<ZonePath>> = HashMap::new();
        let mut sirens: Vec<Siren> = sirens
            .into_iter()
            .map(|s| Siren {
                id: s.id.clone(),
                name: s.name.clone(),
                zone: Arc::clone(zones.entry(&s.zone).or_insert_with(|| Arc::new(s.zone.clone()))),
                latitude: s.latitude,
                longitude: s.longitude,
                rating_db: s.rating_db,
                key_id: s.key_id,
                liveness: {
                    let mut names: Vec<String> = s.links.iter().map(ToString::to_string).collect();
                    names.sort();
                    names.dedup();
                    let links = shared.entry(names).or_insert_with_key(|n| links(n.iter().cloned())).clone();
                    SirenState::with_links(links, now)
                },
                telemetry: None,
                last_known: None,
                acknowledged: None,
                command_fault: None,
                uncommanded: false,
            })
            .collect();
        // Collected from a filter, the vector doubled as it grew: up to half of it empty.
        sirens.shrink_to_fit();
        let mut by_id: Vec<u32> = (0..u32::try_from(sirens.len()).unwrap_or(u32::MAX)).collect();
        by_id.sort_by(|&a, &b| sirens[a as usize].id.cmp(&sirens[b as usize].id));
        let by_key = sirens.iter().enumerate().map(|(i, s)| (s.key_id, i)).collect();
        Self {
            sirens,
            by_id,
            by_key,
            policy,
            fault_since: BTreeMap::new(),
            version: 0,
            maintenance: crate::maintenance::Book::default(),
        }
    }

    /// Attaches what the previous run last knew.
    pub fn restore(&mut self, rows: Vec<StateRow>) {
        self.version = self.version.wrapping_add(1);
        for row in rows {
            if let Some(i) = self.index(&row.siren) {
                self.sirens[i].liveness.flaps = row.flaps;
                // A state name this version does not know (a newer store) is shown as unknown.
                let state = State::ALL.into_iter().find(|s| s.as_str() == row.state).unwrap_or(State::Unknown);
                self.sirens[i].last_known = Some(LastKnown { state, since: row.since });
            }
        }
    }

    /// Takes the states another daemon (the leader) stored as this fleet's own: a standby's
    /// view. Returns each siren whose ability to sound changed, with its new ability.
    pub fn mirror(&mut self, rows: &[StateRow]) -> Vec<(usize, bool)> {
        let mut changed = Vec::new();
        for row in rows {
            let Some(i) = self.index(&row.siren) else { continue };
            let state = State::ALL.into_iter().find(|s| s.as_str() == row.state).unwrap_or(State::Unknown);
            let l = &mut self.sirens[i].liveness;
            let faults = siren_proto::message::FaultBits(row.faults);
            if l.state == state && l.since == row.since && l.faults == faults && l.last_seen == row.last_seen {
                continue;
            }
            if l.state.can_sound() != state.can_sound() {
                changed.push((i, state.can_sound()));
            }
            l.state = state;
            l.since = row.since;
            l.faults = faults;
            l.last_seen = row.last_seen;
            l.flaps = row.flaps;
            self.sirens[i].last_known = None;
            self.version = self.version.wrapping_add(1);
        }
        changed
    }

    /// The acknowledgements stored now, in place of those held (a standby's view).
    pub fn mirror_acknowledgements(&mut self, rows: Vec<(String, Acknowledgement)>, now: Timestamp) {
        let held: Vec<(usize, Acknowledgement)> = (0..self.sirens.len())
            .filter_map(|i| self.sirens[i].acknowledged.as_deref().map(|a| (i, a.clone())))
            .collect();
        let stored: Vec<(usize, Acknowledgement)> = rows
            .into_iter()
            .filter(|(_, a)| a.in_force(now))
            .filter_map(|(siren, a)| self.index(&siren).map(|i| (i, a)))
            .collect();
        let mut sorted = stored.clone();
        sorted.sort_by_key(|(i, _)| *i);
        if sorted == held {
            return;
        }
        for s in &mut self.sirens {
            s.acknowledged = None;
        }
        for (i, a) in stored {
            self.sirens[i].acknowledged = Some(Box::new(a));
        }
        self.version = self.version.wrapping_add(1);
    }

    /// Attaches the acknowledgements the previous run left in force; one that has lapsed is
    /// left out. Each holds until the siren is heard again in a condition that ends it.
    pub fn restore_acknowledgements(&mut self, rows: Vec<(String, Acknowledgement)>, now: Timestamp) {
        self.version = self.version.wrapping_add(1);
        for (siren, ack) in rows {
            if let Some(i) = self.index(&siren).filter(|_| ack.in_force(now)) {
                self.sirens[i].acknowledged = Some(Box::new(ack));
            }
        }
    }

    /// The maintenance windows.
    pub fn maintenance(&self) -> &crate::maintenance::Book {
        &self.maintenance
    }

    /// Changes the maintenance windows (and the version views are kept by).
    pub fn maintenance_mut(&mut self) -> &mut crate::maintenance::Book {
        self.version = self.version.wrapping_add(1);
        &mut self.maintenance
    }

    /// The maintenance window siren `index` is in at `now`, if any.
    pub fn in_maintenance(&self, index: usize, now: Timestamp) -> Option<&crate::maintenance::Window> {
        let s = &self.sirens[index];
        self.maintenance.covering(&s.id, s.zone.as_str(), now)
    }

    pub fn sirens(&self) -> &[Siren] {
        &self.sirens
    }

    pub fn get(&self, id: &str) -> Option<&Siren> {
        self.index(id).map(|i| &self.sirens[i])
    }

    /// The index of the siren holding `key_id`.
    pub fn by_key(&self, key_id: KeyId) -> Option<usize> {
        self.by_key.get(&key_id).copied()
    }

    pub fn index(&self, id: &str) -> Option<usize> {
        let found = self.by_id.binary_search_by(|&i| self.sirens[i as usize].id.as_str().cmp(id)).ok()?;
        Some(self.by_id[found] as usize)
    }

    pub fn siren(&self, index: usize) -> &Siren {
        &self.sirens[index]
    }

    /// Applies an observation of siren `index`.
    pub fn observe(&mut self, index: usize, observation: &Observation, now: Timestamp) -> Vec<Change> {
        self.version = self.version.wrapping_add(1);
        let siren = &mut self.sirens[index];
        let (next, mut changes) = siren.liveness.step(observation, now, self.policy);
        siren.liveness = next;
        if let Some(why) = siren.acknowledged.as_ref().and_then(|a| a.ends(siren.liveness.state, siren.liveness.faults))
        {
            siren.acknowledged = None;
            changes.push(Change::AcknowledgementEnded { why });
        }
        for change in &changes {
            match change {
                Change::FaultRaised { fault } => {
                    self.fault_since.insert((index, fault), now);
                }
                Change::FaultCleared { fault } => {
                    self.fault_since.remove(&(index, *fault));
                }
                Change::State { .. } | Change::AcknowledgementEnded { .. } => {}
            }
        }
        changes
    }

    /// The active faults with when this run of the daemon first saw each, by siren index.
    pub fn active_faults(&self) -> impl Iterator<Item = (usize, &'static str, Timestamp)> + '_ {
        self.fault_since.iter().map(|(&(index, fault), &at)| (index, fault, at))
    }

    /// The active faults of the sirens whose indices are in `range`, by siren index.
    pub fn faults_of(
        &self,
        range: std::ops::Range<usize>,
    ) -> impl Iterator<Item = (usize, &'static str, Timestamp)> + '_ {
        self.fault_since.range((range.start, "")..(range.end, "")).map(|(&(index, fault), &at)| (index, fault, at))
    }

    /// Acknowledges siren `index`'s condition (any but `ok` and `unknown`) until `until`, if
    /// given; returns the acknowledgement.
    pub fn acknowledge(
        &mut self,
        index: usize,
        by: &str,
        note: &str,
        until: Option<Timestamp>,
        now: Timestamp,
    ) -> Result<Acknowledgement, AckRefused> {
        let s = &mut self.sirens[index];
        match s.liveness.state {
            State::Ok => return Err(AckRefused::NothingWrong),
            State::Unknown => return Err(AckRefused::NotHeard),
            State::Degraded | State::Faulty | State::Down | State::Unreachable => {}
        }
        self.version = self.version.wrapping_add(1);
        let ack = Acknowledgement {
            state: s.liveness.state,
            faults: s.liveness.faults,
            by: by.to_owned(),
            at: now,
            note: note.to_owned(),
            until,
        };
        s.acknowledged = Some(Box::new(ack.clone()));
        Ok(ack)
    }

    /// Siren `index`'s acknowledgement, if one is in force at `now`.
    pub fn acknowledgement(&self, index: usize, now: Timestamp) -> Option<&Acknowledgement> {
        self.sirens[index].acknowledged.as_deref().filter(|a| a.in_force(now))
    }

    /// Marks siren `index` armed or sounding without a campaign of ours, or no longer.
    pub fn set_uncommanded(&mut self, index: usize, uncommanded: bool) {
        self.version = self.version.wrapping_add(1);
        self.sirens[index].uncommanded = uncommanded;
    }

    /// Siren `index` answered a command: any command-path fault is over; returns whether
    /// there was one.
    pub fn command_answered(&mut self, index: usize) -> bool {
        self.version = self.version.wrapping_add(1);
        self.sirens[index].command_fault.take().is_some()
    }

    /// A command to siren `index` went unanswered after every retry at `now`. While the siren
    /// is heard (its state says it answers), that is a command-path fault; returns whether it
    /// is a new one. A siren that is not heard is liveness's business.
    pub fn command_unanswered(&mut self, index: usize, now: Timestamp) -> bool {
        self.version = self.version.wrapping_add(1);
        let s = &mut self.sirens[index];
        if let Some(f) = &mut s.command_fault {
            f.unanswered = f.unanswered.saturating_add(1);
            return false;
        }
        if !matches!(s.liveness.state, State::Ok | State::Degraded | State::Faulty) {
            return false;
        }
        s.command_fault = Some(Box::new(CommandFault { since: now, unanswered: 1 }));
        true
    }

    /// Records telemetry of siren `index`.
    pub fn set_telemetry(&mut self, index: usize, telemetry: Telemetry) {
        self.version = self.version.wrapping_add(1);
        self.sirens[index].telemetry = Some(telemetry);
    }

    /// The row to persist for siren `index`.
    pub fn state_row(&self, index: usize) -> StateRow {
        let s = &self.sirens[index];
        StateRow {
            siren: s.id.clone(),
            state: s.liveness.state.as_str().to_owned(),
            since: s.liveness.since,
            faults: s.liveness.faults.0,
            last_seen: s.liveness.last_seen,
            flaps: s.liveness.flaps,
        }
    }

    /// Sirens per zone (every level of the hierarchy) and state.
    pub fn counts_by_zone(&self) -> BTreeMap<(String, State), usize> {
        let mut counts = BTreeMap::new();
        for s in &self.sirens {
            for zone in s.zone.ancestry() {
                *counts.entry((zone.to_owned(), s.liveness.state)).or_default() += 1;
            }
        }
        counts
    }
}

#[cfg(test)]
mod tests {
    use siren_proto::fleet::{Link, Siren as FleetSiren};
    use siren_proto::frame::{Address, KeyId};

    use super::*;

    fn siren(id: &str, key: u16, links: Vec<Link>) -> FleetSiren {
        FleetSiren {
            id: id.into(),
            name: id.into(),
            latitude: 30.0,
            longitude: 120.0,
            zone: "hz/c".parse().unwrap(),
            rating_db: 120.0,
            address: Address(key),
            key_id: KeyId(key),
            links,
        }
    }

    #[test]
    fn sirens_are_found_by_id_whatever_the_fleet_order() {
        let ids = ["HZ-C-0007", "HZ-A-0001", "HZ-C-0002", "HZ-B-0100", "HZ-A-0010"];
        let sirens: Vec<FleetSiren> = ids.iter().zip(1..).map(|(id, k)| siren(id, k, vec![Link::Mqtt])).collect();
        let fleet = FleetState::new(&sirens, Policy { down_after_misses: 3 }, Timestamp::now());
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(fleet.index(id), Some(i), "{id}");
            assert_eq!(fleet.get(id).map(|s| s.key_id), Some(KeyId(u16::try_from(i + 1).unwrap())));
        }
        assert_eq!(fleet.index("HZ-A-0002"), None);
        assert_eq!(fleet.index(""), None);
        assert_eq!(fleet.index("ZZ"), None);
    }

    #[test]
    fn a_heard_siren_that_does_not_answer_a_command_has_a_command_fault_until_it_answers() {
        let sirens = vec![siren("A", 1, vec![Link::Mqtt])];
        let mut fleet = FleetState::new(&sirens, Policy { down_after_misses: 3 }, Timestamp::now());
        let now = Timestamp::now();
        assert!(!fleet.command_unanswered(0, now), "unknown: not heard, liveness's business");
        assert!(fleet.siren(0).command_fault.is_none());
        let _ = fleet.observe(
            0,
            &Observation::Heard { link: "mqtt".into(), faults: Some(siren_proto::message::FaultBits::default()) },
            now,
        );
        assert!(fleet.command_unanswered(0, now));
        assert!(!fleet.command_unanswered(0, now), "not news twice");
        assert_eq!(fleet.siren(0).command_fault.as_ref().map(|f| f.unanswered), Some(2));
        assert!(fleet.command_answered(0));
        assert!(!fleet.command_answered(0));
        assert!(fleet.siren(0).command_fault.is_none());
    }

    #[test]
    fn sirens_with_the_same_links_share_one_allocation() {
        let bus = Link::Serial { bus: "bus-1".into() };
        let sirens = vec![
            siren("A", 1, vec![Link::Mqtt]),
            siren("B", 2, vec![Link::Mqtt]),
            siren("C", 3, vec![bus.clone(), Link::Mqtt]),
            siren("D", 4, vec![Link::Mqtt, bus]),
        ];
        let fleet = FleetState::new(&sirens, Policy { down_after_misses: 3 }, Timestamp::now());
        let links = |i: usize| &fleet.siren(i).liveness.links;
        assert!(std::sync::Arc::ptr_eq(links(0), links(1)));
        assert!(std::sync::Arc::ptr_eq(links(2), links(3)), "the same set in another order");
        assert!(!std::sync::Arc::ptr_eq(links(0), links(2)));
        assert_eq!(links(3).iter().map(|l| &**l).collect::<Vec<_>>(), ["mqtt", "serial:bus-1"]);
        assert!(std::sync::Arc::ptr_eq(&fleet.siren(0).zone, &fleet.siren(3).zone), "one zone, one path");
    }
}

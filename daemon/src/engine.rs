//! The thin async shell around the sans-IO protocol master and the fleet state.
//!
//! Link tasks (one per serial port, one MQTT client) hand received bytes and link up/down
//! events in; the engine feeds the master, schedules polls within each bus's airtime, watches
//! MQTT heartbeat deadlines, turns the master's events into observations, telemetry, stored
//! events and metrics, and hands the master's frames back to the link tasks.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use siren_proto::frame::{FrameRef, KeyId};
use siren_proto::master::{
    BirthRecord, LinkId, Master, MasterConfig, MasterEvent, PeerConfig, Priority, RequestId, TimeSample,
};
use siren_proto::message::{FaultBits, Message};
use siren_proto::replay::{DEFAULT_LEASE, ReplayWindow, TxCounter};
use siren_proto::{Key, RejectReason};
use tokio::sync::{mpsc, oneshot};

use crate::coverage::metrics::SharedCoverage;
use crate::fleet::{FleetState, Telemetry};
use crate::liveness::{Change, Observation};
use crate::metrics::Metrics;
use crate::sounding::campaign::Command as SoundingCommand;
use crate::sounding::runner::{AdHoc, Outgoing, Runner};
use crate::store::{CounterRow, Event, Store, StoreError};

/// How often serial buses get a broadcast time set.
const TIME_SET_EVERY: Duration = Duration::from_secs(600);
/// How often changed replay counters are written.
const COUNTERS_EVERY: Duration = Duration::from_secs(1);
/// How often open campaigns are asked for their next commands at most, outside the last
/// seconds before a trigger. A campaign scans every target when asked; asking at every reply
/// of a 10,000-siren arming made that scan the daemon's bottleneck.
const SOUNDINGS_EVERY: Duration = Duration::from_millis(10);
/// Requests awaiting their answers at once on the MQTT link.
const MQTT_IN_FLIGHT: usize = 256;
/// Longest back-off between polls of a siren that does not answer, in poll intervals.
const MAX_BACKOFF_INTERVALS: u32 = 8;

/// Bytes or news from a link task.
#[derive(Debug)]
pub enum Input {
    /// A chunk of a serial stream, read at `at`.
    Serial {
        link: LinkId,
        bytes: Vec<u8>,
        at: Timestamp,
    },
    /// One MQTT publication from a siren's topic, received at `at`.
    Mqtt {
        siren: String,
        channel: String,
        payload: Vec<u8>,
        at: Timestamp,
    },
    LinkUp(LinkId),
    LinkDown(LinkId),
    /// An operator's request about soundings, answered on `reply`.
    Soundings(SoundingRequest),
}

/// What the HTTP API asks of the soundings runner.
#[derive(Debug)]
pub enum SoundingRequest {
    AdHoc { request: AdHoc, by: String, reply: oneshot::Sender<Result<u32, String>> },
    Cancel { campaign: u32, by: String, reply: oneshot::Sender<Result<(), String>> },
}

/// Bytes for a link task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    Serial(Vec<u8>),
    Mqtt { topic: String, payload: Vec<u8> },
}

/// A serial bus the engine polls.
#[derive(Debug, Clone)]
pub struct SerialPlan {
    pub link: LinkId,
    pub bus: String,
    pub baud: u32,
    pub poll_interval: Duration,
    /// The bus's broadcast group key.
    pub group: Option<(KeyId, Key)>,
}

/// Everything the engine needs to start.
#[derive(Debug)]
pub struct Plan {
    pub serial: Vec<SerialPlan>,
    /// The MQTT link, if the fleet has MQTT sirens.
    pub mqtt: Option<LinkId>,
    pub topic_root: String,
    pub heartbeat: Duration,
    /// Misses before `down`: polls keep their interval until then, and back off after.
    pub down_after_misses: u32,
    /// Every owned siren's key.
    pub keys: HashMap<KeyId, Key>,
    /// Every owned siren's links, by fleet-file name (`serial:<bus>`, `mqtt`), and address.
    pub peers: Vec<(KeyId, siren_proto::frame::Address, Vec<String>)>,
}

struct PollSchedule {
    plan: SerialPlan,
    due: BinaryHeap<Reverse<(Instant, usize)>>,
    failures: HashMap<usize, u32>,
    next_time_set: Instant,
}

enum Pending {
    Poll { siren: usize, link: LinkId, sent: Option<Instant> },
    TimeSync { siren: usize },
    Command,
    Sounding { campaign: u32, target: usize, command: SoundingCommand, link: Option<LinkId> },
}

/// Least time between two clock synchronisations of one siren.
const RESYNC_AFTER: Duration = Duration::from_secs(300);

/// The engine's state.
pub struct Engine {
    master: Master,
    fleet: Arc<RwLock<FleetState>>,
    store: Arc<Store>,
    metrics: Arc<Metrics>,
    link_names: HashMap<LinkId, String>,
    link_up: HashMap<LinkId, bool>,
    outputs: HashMap<LinkId, mpsc::Sender<Output>>,
    schedules: HashMap<LinkId, PollSchedule>,
    mqtt: Option<LinkId>,
    topic_root: String,
    heartbeat: Duration,
    down_after_misses: u32,
    /// MQTT sirens' next heartbeat deadline, soonest first; stale entries are skipped.
    hb_due: BinaryHeap<Reverse<(Instant, usize)>>,
    hb_deadline: HashMap<usize, Instant>,
    pending: HashMap<RequestId, Pending>,
    dirty_counters: HashSet<KeyId>,
    next_counters: Instant,
    /// When open campaigns may next be asked for commands, and whether a tick skipped them.
    next_soundings: Instant,
    soundings_skipped: bool,
    /// When each MQTT siren's clock was last synchronised (or attempted).
    last_sync: HashMap<usize, Instant>,
    /// Told of every siren that starts or stops being able to sound.
    coverage: Option<SharedCoverage>,
    soundings: Option<Runner>,
    /// Sounding requests awaiting answers per serial bus: one at a time, so polls go on.
    sounding_in_flight: HashMap<LinkId, usize>,
    /// Serial links whose last finished exchange was a sounding's: the next goes to a due poll,
    /// so that arming a bus shares the line with polling instead of starving it.
    owes_poll: HashSet<LinkId>,
    /// The arrival time of the input being handled.
    arrived: Option<Timestamp>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("links", &self.link_names).finish_non_exhaustive()
    }
}

impl Engine {
    /// Builds the master with every link and peer, restoring counters from the store and
    /// persisting fresh leases before any frame is sent (docs/protocol.md §4.2).
    #[allow(clippy::too_many_lines, reason = "one linear set-up; splitting it would scatter the lease rule")]
    pub fn new(
        plan: Plan,
        fleet: Arc<RwLock<FleetState>>,
        store: Arc<Store>,
        metrics: Arc<Metrics>,
        outputs: HashMap<LinkId, mpsc::Sender<Output>>,
    ) -> Result<Self, StoreError> {
        let now = Instant::now();
        let mut master = Master::without_links();
        master.stamp_time_syncs(|| Timestamp::now().as_microsecond());
        let mut link_names = HashMap::new();
        let mut schedules = HashMap::new();
        for s in &plan.serial {
            let mut config = MasterConfig::serial(s.baud);
            // The device may take 50 ms to start answering (docs/protocol.md §8.2), and its
            // answer (a status report of up to 16 channels) takes its own wire time.
            config.reply_timeout = Duration::from_millis(60) + config.byte_time * 110;
            master.add_link(s.link, config);
            let name = format!("serial:{}", s.bus);
            metrics.polled_link(&name);
            link_names.insert(s.link, name);
            schedules.insert(
                s.link,
                PollSchedule { plan: s.clone(), due: BinaryHeap::new(), failures: HashMap::new(), next_time_set: now },
            );
        }
        if let Some(m) = plan.mqtt {
            // Requests awaiting answers at once over MQTT: enough to keep thousands of sirens
            // busy, few enough that a burst (time sync of a whole fleet after a restart) is
            // paced instead of overflowing the client's queue.
            let config = MasterConfig { max_in_flight: MQTT_IN_FLIGHT, ..MasterConfig::mqtt() };
            master.add_link(m, config);
            link_names.insert(m, "mqtt".to_owned());
        }
        let by_name: HashMap<&str, LinkId> = link_names.iter().map(|(id, n)| (n.as_str(), *id)).collect();
        // Counters: resume every key past its persisted lease, and persist the next lease
        // before anything is sent, in one commit.
        let mut rows = Vec::new();
        for (key_id, address, links) in &plan.peers {
            let stored = store.counters(key_id.0)?;
            let lease_start = stored.map_or(1, |c| c.tx_lease_end.max(1));
            let lease_end = lease_start.saturating_add(DEFAULT_LEASE);
            let rx = match stored {
                Some(c) if c.rx_highest > 0 => ReplayWindow::restored(c.rx_highest),
                _ => ReplayWindow::default(),
            };
            let birth = stored.and_then(|c| c.birth).map(|(boot_seq, counter, death_seen)| BirthRecord {
                boot_seq,
                counter,
                death_seen,
            });
            let Some(key) = plan.keys.get(key_id) else { continue };
            master.add_peer(PeerConfig {
                key_id: *key_id,
                key: key.clone(),
                address: *address,
                tx: TxCounter::new(lease_start, lease_end),
                rx,
                birth,
                links: links.iter().filter_map(|l| by_name.get(l.as_str()).copied()).collect(),
            });
            rows.push(CounterRow {
                key_id: key_id.0,
                tx_lease_end: lease_end,
                rx_highest: rx.highest(),
                birth: birth.map(|b| (b.boot_seq, b.counter, b.death_seen)),
            });
        }
        for s in &plan.serial {
            if let Some((key_id, key)) = &s.group {
                let stored = store.counters(key_id.0)?;
                let lease_start = stored.map_or(1, |c| c.tx_lease_end.max(1));
                let lease_end = lease_start.saturating_add(DEFAULT_LEASE);
                master.add_group_on(s.link, *key_id, key.clone(), TxCounter::new(lease_start, lease_end));
                rows.push(CounterRow { key_id: key_id.0, tx_lease_end: lease_end, rx_highest: 0, birth: None });
            }
        }
        for row in rows {
            store.save_counters(row)?;
        }
        store.flush()?;
        // Serial sirens are polled from the start, spread over one interval.
        {
            let fleet_guard = fleet.read().unwrap_or_else(std::sync::PoisonError::into_inner);
            for sched in schedules.values_mut() {
                let name = format!("serial:{}", sched.plan.bus);
                let members: Vec<usize> = (0..fleet_guard.sirens().len())
                    .filter(|&i| fleet_guard.siren(i).liveness.links.contains(&name))
                    .collect();
                let n = u32::try_from(members.len().max(1)).unwrap_or(u32::MAX);
                for (k, i) in members.into_iter().enumerate() {
                    let offset = sched.plan.poll_interval / n * u32::try_from(k).unwrap_or(0);
                    sched.due.push(Reverse((now + offset, i)));
                }
            }
        }
        // Unknown until each link task first reports: a port that never opens must still
        // turn its sirens `unreachable`, so its first report is always a change.
        let link_up = HashMap::new();
        Ok(Self {
            master,
            fleet,
            store,
            metrics,
            link_names,
            link_up,
            outputs,
            schedules,
            mqtt: plan.mqtt,
            topic_root: plan.topic_root,
            heartbeat: plan.heartbeat,
            down_after_misses: plan.down_after_misses,
            hb_due: BinaryHeap::new(),
            hb_deadline: HashMap::new(),
            pending: HashMap::new(),
            dirty_counters: HashSet::new(),
            next_counters: now + COUNTERS_EVERY,
            next_soundings: now,
            soundings_skipped: false,
            last_sync: HashMap::new(),
            coverage: None,
            soundings: None,
            sounding_in_flight: HashMap::default(),
            owes_poll: HashSet::default(),
            arrived: None,
        })
    }

    /// Keeps `coverage` up to date with every siren's ability to sound.
    pub fn set_coverage(&mut self, coverage: SharedCoverage) {
        self.coverage = Some(coverage);
    }

    /// Runs `runner`'s campaigns.
    pub fn set_soundings(&mut self, runner: Runner) {
        self.soundings = Some(runner);
    }

    /// Runs until the input channel closes.
    pub async fn run(mut self, mut inputs: mpsc::Receiver<Input>) {
        loop {
            let wake = self.next_wake();
            let input = tokio::select! {
                input = inputs.recv() => match input {
                    Some(i) => Some(i),
                    None => break,
                },
                () = tokio::time::sleep_until(wake.into()) => None,
            };
            if let Some(input) = input {
                self.handle(input);
            }
            self.tick(Instant::now());
        }
        self.save_counters(true);
        if let Some(r) = &mut self.soundings {
            r.persist(&self.store, true);
        }
        let _ = self.store.flush();
    }

    fn next_wake(&self) -> Instant {
        let mut wake = Instant::now() + Duration::from_secs(1);
        if let Some(t) = self.master.poll_timeout() {
            wake = wake.min(t);
        }
        for (link, s) in &self.schedules {
            if self.link_up.get(link).copied().unwrap_or(false) && self.master.queued_on(*link) == 0 {
                if let Some(Reverse((t, _))) = s.due.peek() {
                    wake = wake.min(*t);
                }
            }
        }
        if let Some(Reverse((t, _))) = self.hb_due.peek() {
            wake = wake.min(*t);
        }
        if self.soundings.as_ref().is_some_and(|r| r.urgent(Timestamp::now())) {
            wake = wake.min(Instant::now() + Duration::from_millis(2));
        }
        if self.soundings_skipped {
            wake = wake.min(self.next_soundings);
        }
        wake.min(self.next_counters)
    }

    /// Handles one input at once; what it causes is drained by [`Engine::tick`].
    pub fn handle(&mut self, input: Input) {
        let now = Instant::now();
        match input {
            Input::Serial { link, bytes, at } => {
                self.metrics.received(&self.link_names[&link]);
                self.arrived = Some(at);
                self.master.handle_link_input(now, link, &bytes);
                self.drain_events(Some(link), now);
            }
            Input::Mqtt { siren, channel, payload, at } => {
                self.arrived = Some(at);
                self.handle_mqtt(&siren, &channel, &payload, now);
            }
            Input::LinkUp(link) => self.set_link(link, true, now),
            Input::LinkDown(link) => self.set_link(link, false, now),
            Input::Soundings(request) => self.handle_sounding_request(request),
        }
        self.arrived = None;
    }

    /// When what is being handled arrived: a time-sync reply's t4 is its arrival at the link
    /// task, not when the engine got to it (under load, input waits in the channel).
    fn arrival(&self) -> Timestamp {
        self.arrived.unwrap_or_else(Timestamp::now)
    }

    fn handle_sounding_request(&mut self, request: SoundingRequest) {
        let fleet = Arc::clone(&self.fleet);
        let fleet = fleet.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Timestamp::now();
        match request {
            SoundingRequest::AdHoc { request, by, reply } => {
                let result = match &mut self.soundings {
                    Some(r) => r.schedule_ad_hoc(&request, &by, now, &self.store, &fleet).map_err(|e| e.to_string()),
                    None => Err("soundings are not running".to_owned()),
                };
                let _ = reply.send(result);
            }
            SoundingRequest::Cancel { campaign, by, reply } => {
                let result = match &mut self.soundings {
                    Some(r) => r.cancel(campaign, &by, now, &self.store, &fleet).map_err(|e| e.to_string()),
                    None => Err("soundings are not running".to_owned()),
                };
                let result = result.map(|outgoing| {
                    drop(fleet);
                    for o in outgoing {
                        self.send_sounding(o, false);
                    }
                });
                let _ = reply.send(result);
            }
        }
    }

    /// Sends a campaign's request; `paced` holds it back while the siren's serial bus already
    /// carries one (the campaign asks again on its next poll).
    fn send_sounding(&mut self, o: Outgoing, paced: bool) {
        let link = {
            let fleet = self.read_fleet();
            fleet.by_key(o.key_id).and_then(|i| {
                let first = fleet.siren(i).liveness.links.first()?.clone();
                self.link_names.iter().find(|(_, n)| **n == first).map(|(id, _)| *id)
            })
        };
        let serial = link.filter(|l| self.schedules.contains_key(l));
        if paced {
            if let Some(l) = serial {
                // A trigger-now is due at an instant: it never waits for a poll.
                let polls_first = !matches!(o.action.command, SoundingCommand::Trigger)
                    && self.owes_poll.contains(&l)
                    && self.polls_due(l, Instant::now());
                if polls_first || self.sounding_in_flight.get(&l).copied().unwrap_or(0) >= 1 {
                    if let Some(r) = &mut self.soundings {
                        r.defer(o.campaign, o.action.target);
                    }
                    return;
                }
            }
        }
        match self.master.request(o.key_id, o.message, Priority::Command) {
            Ok(id) => {
                if let Some(l) = serial {
                    *self.sounding_in_flight.entry(l).or_default() += 1;
                }
                let pending = Pending::Sounding {
                    campaign: o.campaign,
                    target: o.action.target,
                    command: o.action.command,
                    link: serial,
                };
                self.pending.insert(id, pending);
            }
            Err(_) => {
                if let Some(r) = &mut self.soundings {
                    r.on_failed(o.campaign, o.action.target, Timestamp::now());
                }
            }
        }
    }

    fn sounding_done(&mut self, link: Option<LinkId>) {
        if let Some(l) = link {
            if let Some(n) = self.sounding_in_flight.get_mut(&l) {
                *n = n.saturating_sub(1);
            }
            self.owes_poll.insert(l);
        }
    }

    /// Whether a siren on serial `link` is due for its poll.
    fn polls_due(&self, link: LinkId, now: Instant) -> bool {
        self.schedules.get(&link).and_then(|s| s.due.peek()).is_some_and(|Reverse((due, _))| *due <= now)
    }

    fn poll_soundings(&mut self, now: Instant) {
        let Some(runner) = &mut self.soundings else { return };
        if now < self.next_soundings && !runner.urgent(Timestamp::now()) {
            self.soundings_skipped = true;
            return;
        }
        self.next_soundings = now + SOUNDINGS_EVERY;
        self.soundings_skipped = false;
        let fleet = Arc::clone(&self.fleet);
        let outgoing = {
            let fleet = fleet.read().unwrap_or_else(std::sync::PoisonError::into_inner);
            runner.poll(Timestamp::now(), &self.store, &fleet)
        };
        for o in outgoing {
            self.send_sounding(o, true);
        }
    }

    fn handle_mqtt(&mut self, siren: &str, channel: &str, payload: &[u8], now: Instant) {
        let Some(link) = self.mqtt else { return };
        if channel == "cmd" {
            return; // our own commands, echoed by the subscription
        }
        self.metrics.received("mqtt");
        let expected = {
            let fleet = self.read_fleet();
            fleet.index(siren).map(|i| fleet.siren(i).key_id)
        };
        let Some(expected) = expected else {
            self.metrics.frame_rejected(RejectReason::UnknownKeyId);
            return;
        };
        // The topic names the siren; the frame must be sealed under that siren's key.
        if FrameRef::parse(payload).is_ok_and(|f| f.header.key_id != expected) {
            self.metrics.frame_rejected(RejectReason::AddressMismatch);
            return;
        }
        self.master.handle_link_input(now, link, payload);
        self.drain_events(Some(link), now);
    }

    fn set_link(&mut self, link: LinkId, up: bool, now: Instant) {
        if self.link_up.insert(link, up) == Some(up) {
            return;
        }
        let Some(name) = self.link_names.get(&link).cloned() else { return };
        self.metrics.link_up(&name, up);
        self.record(None, if up { "link_up" } else { "link_down" }, name.clone());
        let observation =
            if up { Observation::LinkUp { link: name.clone() } } else { Observation::LinkDown { link: name.clone() } };
        let members: Vec<usize> = {
            let fleet = self.read_fleet();
            (0..fleet.sirens().len()).filter(|&i| fleet.siren(i).liveness.links.contains(&name)).collect()
        };
        for i in &members {
            self.observe(*i, &observation);
        }
        if Some(link) == self.mqtt {
            // Silence while the broker was away proves nothing: start the clocks again, with
            // a period of grace for the devices to reconnect.
            self.hb_deadline.clear();
            self.hb_due.clear();
            if up {
                for i in members {
                    self.arm_heartbeat(i, now + self.heartbeat * 2);
                }
            }
        }
        if let Some(s) = self.schedules.get_mut(&link) {
            s.next_time_set = now;
        }
    }

    fn arm_heartbeat(&mut self, index: usize, deadline: Instant) {
        self.hb_deadline.insert(index, deadline);
        self.hb_due.push(Reverse((deadline, index)));
    }

    /// Timers, scheduling and draining: called after every input and wake-up.
    pub fn tick(&mut self, now: Instant) {
        self.master.handle_timeout(now);
        self.drain_events(None, now);
        self.poll_soundings(now);
        self.schedule_polls(now);
        self.check_heartbeats(now);
        while let Some(t) = self.master.poll_transmit(now) {
            if let Some(id) = t.request {
                if let Some(Pending::Poll { sent, .. }) = self.pending.get_mut(&id) {
                    *sent = Some(now);
                }
            }
            let output = if Some(t.link) == self.mqtt {
                let fleet = self.read_fleet();
                let Some(i) = fleet.by_key(t.key_id) else { continue };
                let s = fleet.siren(i);
                Output::Mqtt { topic: format!("{}/{}/{}/cmd", self.topic_root, s.zone, s.id), payload: t.bytes }
            } else {
                Output::Serial(t.bytes)
            };
            if let Some(tx) = self.outputs.get(&t.link) {
                // A full queue means the link task is stuck; the request times out and retries.
                let _ = tx.try_send(output);
            }
        }
        if now >= self.next_counters {
            self.save_counters(false);
            self.next_counters = now + COUNTERS_EVERY;
            self.metrics.events_written(self.store.events_written());
        }
    }

    fn schedule_polls(&mut self, now: Instant) {
        let links: Vec<LinkId> = self.schedules.keys().copied().collect();
        for link in links {
            if !self.link_up.get(&link).copied().unwrap_or(false) || self.master.queued_on(link) > 0 {
                continue;
            }
            let Some(s) = self.schedules.get_mut(&link) else { continue };
            if now >= s.next_time_set {
                s.next_time_set = now + TIME_SET_EVERY;
                if let Some((group, _)) = &s.plan.group {
                    let master_time_us = Timestamp::now().as_microsecond();
                    let _ = self.master.broadcast(*group, Message::TimeSet { master_time_us });
                    continue;
                }
            }
            let Some(Reverse((due, siren))) = s.due.peek().copied() else { continue };
            if due > now {
                continue;
            }
            s.due.pop();
            let key = self.read_fleet().siren(siren).key_id;
            if let Ok(id) = self.master.request(key, Message::StatusRequest, Priority::Poll) {
                self.pending.insert(id, Pending::Poll { siren, link, sent: None });
                self.metrics.poll(&self.link_names[&link]);
            }
        }
    }

    fn reschedule(&mut self, link: LinkId, siren: usize, answered: bool, now: Instant) {
        let Some(s) = self.schedules.get_mut(&link) else { return };
        let failures = s.failures.entry(siren).or_default();
        *failures = if answered { 0 } else { failures.saturating_add(1) };
        // Until it is down, a silent siren keeps its interval (detection stays within the
        // misses plus one interval); after, a dead drop is polled less and less often so it
        // does not eat the line.
        let beyond = failures.saturating_sub(self.down_after_misses.saturating_sub(1));
        let factor = 1u32 << beyond.min(MAX_BACKOFF_INTERVALS.trailing_zeros());
        s.due.push(Reverse((now + s.plan.poll_interval * factor, siren)));
    }

    fn check_heartbeats(&mut self, now: Instant) {
        let Some(link) = self.mqtt else { return };
        let name = self.link_names[&link].clone();
        while let Some(Reverse((due, siren))) = self.hb_due.peek().copied() {
            if due > now {
                break;
            }
            self.hb_due.pop();
            if self.hb_deadline.get(&siren) != Some(&due) {
                continue; // superseded by a later message
            }
            self.observe(siren, &Observation::Missed { link: name.clone() });
            let next = due + self.heartbeat;
            self.arm_heartbeat(siren, next);
        }
    }

    fn drain_events(&mut self, link: Option<LinkId>, now: Instant) {
        while let Some(event) = self.master.poll_event() {
            match event {
                MasterEvent::Reply { request, key_id, message, .. } => {
                    match self.pending.remove(&request) {
                        Some(Pending::Poll { siren, link: poll_link, sent }) => {
                            self.owes_poll.remove(&poll_link);
                            if let Some(sent) = sent {
                                self.metrics.poll_duration(&self.link_names[&poll_link], now.duration_since(sent));
                            }
                            self.reschedule(poll_link, siren, true, now);
                        }
                        Some(Pending::TimeSync { siren }) => self.adjust_clock(siren, key_id, &message),
                        Some(Pending::Sounding { campaign, target, command, link: bus }) => {
                            self.sounding_done(bus);
                            let arrived = self.arrival();
                            let follow = self.soundings.as_mut().and_then(|r| {
                                let fleet = self.fleet.read().unwrap_or_else(std::sync::PoisonError::into_inner);
                                r.on_reply(campaign, target, command, &message, &fleet, arrived)
                            });
                            if let Some(o) = follow {
                                self.send_sounding(o, false);
                            }
                        }
                        Some(Pending::Command) | None => {}
                    }
                    self.heard(key_id, link, &message, now);
                }
                MasterEvent::Unsolicited { key_id, message } => self.heard(key_id, link, &message, now),
                MasterEvent::Timeout { .. } => {}
                MasterEvent::Failed { request, .. } => {
                    let pending = self.pending.remove(&request);
                    if let Some(Pending::Sounding { campaign, target, link: bus, .. }) = pending {
                        self.sounding_done(bus);
                        if let Some(r) = &mut self.soundings {
                            r.on_failed(campaign, target, Timestamp::now());
                        }
                    } else if let Some(Pending::Poll { siren, link: poll_link, .. }) = pending {
                        self.owes_poll.remove(&poll_link);
                        self.metrics.poll_failed(&self.link_names[&poll_link]);
                        let name = self.link_names[&poll_link].clone();
                        self.observe(siren, &Observation::Missed { link: name });
                        self.reschedule(poll_link, siren, false, now);
                    }
                }
                MasterEvent::Rejected { reason, .. } => self.metrics.frame_rejected(reason),
                MasterEvent::LeaseWanted { key_id, up_to } => {
                    let row = self.counter_row(key_id, Some(up_to));
                    // The lease must be durable before a counter of it is used.
                    if self.store.save_counters(row).and_then(|()| self.store.flush()).is_ok() {
                        self.master.grant_lease(key_id, up_to);
                    }
                }
            }
        }
    }

    fn heard(&mut self, key_id: KeyId, link: Option<LinkId>, message: &Message, now: Instant) {
        self.dirty_counters.insert(key_id);
        let Some(index) = self.read_fleet().by_key(key_id) else { return };
        let link_name = link.and_then(|l| self.link_names.get(&l).cloned()).unwrap_or_default();
        if link.is_some() && link == self.mqtt {
            self.arm_heartbeat(index, now + self.heartbeat + self.heartbeat / 2);
        }
        let faults = match message {
            Message::StatusReport(s) => {
                let telemetry = Telemetry::from_report(s, Timestamp::now());
                self.write_fleet().set_telemetry(index, telemetry);
                Some(s.faults)
            }
            Message::Heartbeat(h) => Some(h.faults),
            Message::Birth(_) => None,
            Message::Death(d) => {
                self.record_siren(index, "death", format!("boot {} cause {:?}", d.boot_seq, d.cause));
                self.observe(index, &Observation::Died { link: link_name });
                return;
            }
            Message::SoundingReport(r) => {
                self.record_siren(index, "sounding_report", format!("campaign {} {:?}", r.campaign, r.outcome));
                if let Some(runner) = &mut self.soundings {
                    runner.on_report(index, r);
                }
                return;
            }
            _ => return,
        };
        if link.is_some() && link == self.mqtt && faults.is_some_and(|f| f.contains(FaultBits::CLOCK_UNSYNCED)) {
            self.sync_clock(index, key_id, now);
        }
        self.observe(index, &Observation::Heard { link: link_name, faults });
    }

    /// Starts a time-sync exchange with an MQTT siren whose clock is not synchronised
    /// (serial buses get a broadcast `TIME_SET` instead).
    fn sync_clock(&mut self, index: usize, key_id: KeyId, now: Instant) {
        if self.last_sync.get(&index).is_some_and(|t| now.duration_since(*t) < RESYNC_AFTER) {
            return;
        }
        self.last_sync.insert(index, now);
        let t1_us = Timestamp::now().as_microsecond();
        if let Ok(id) = self.master.request(key_id, Message::TimeSyncRequest { t1_us }, Priority::Command) {
            self.pending.insert(id, Pending::TimeSync { siren: index });
        }
    }

    /// Completes a time-sync exchange: the offset measured, the correction sent.
    fn adjust_clock(&mut self, index: usize, key_id: KeyId, reply: &Message) {
        let Message::TimeSyncReply { t1_us, t2_us, t3_us } = *reply else { return };
        let t4_us = self.arrival().as_microsecond();
        let sample = TimeSample::compute(t1_us, t2_us, t3_us, t4_us);
        tracing::debug!(siren = index, offset_us = sample.offset_us, round_trip_us = sample.round_trip_us, "time sync");
        let adjust = Message::ClockAdjust { sync_t1_us: t1_us, offset_us: sample.offset_us };
        if let Ok(id) = self.master.request(key_id, adjust, Priority::Command) {
            self.pending.insert(id, Pending::Command);
        }
    }

    fn observe(&mut self, index: usize, observation: &Observation) {
        let changes = self.write_fleet().observe(index, observation, Timestamp::now());
        if changes.is_empty() {
            return;
        }
        let (id, row) = {
            let fleet = self.read_fleet();
            (fleet.siren(index).id.clone(), fleet.state_row(index))
        };
        for change in changes {
            let (kind, detail) = match change {
                Change::State { from, to, cause } => {
                    if let Some(c) = &self.coverage {
                        c.lock().unwrap_or_else(std::sync::PoisonError::into_inner).set_able(index, to.can_sound());
                    }
                    tracing::info!(siren = %id, from = from.as_str(), to = to.as_str(), cause = cause.as_str(), "state");
                    ("state", format!("{} -> {} ({})", from.as_str(), to.as_str(), cause.as_str()))
                }
                Change::FaultRaised { fault } => ("fault_raised", fault.to_owned()),
                Change::FaultCleared { fault } => ("fault_cleared", fault.to_owned()),
            };
            self.record(Some(id.clone()), kind, detail);
        }
        let _ = self.store.save_state(row);
    }

    fn record_siren(&self, index: usize, kind: &str, detail: String) {
        let id = self.read_fleet().siren(index).id.clone();
        self.record(Some(id), kind, detail);
    }

    fn record(&self, siren: Option<String>, kind: &str, detail: String) {
        let event = Event { at: Timestamp::now(), siren, kind: kind.to_owned(), detail };
        if let Err(e) = self.store.record(event) {
            tracing::error!(error = %e, "cannot record an event");
        }
    }

    fn counter_row(&self, key_id: KeyId, lease: Option<u32>) -> CounterRow {
        match self.master.peer(key_id) {
            Some(p) => CounterRow {
                key_id: key_id.0,
                tx_lease_end: lease.unwrap_or(p.tx.lease_end()),
                rx_highest: p.rx.highest(),
                birth: p.birth.map(|b| (b.boot_seq, b.counter, b.death_seen)),
            },
            None => CounterRow {
                key_id: key_id.0,
                tx_lease_end: lease.unwrap_or_else(|| self.master.group_counter(key_id).map_or(0, |t| t.lease_end())),
                rx_highest: 0,
                birth: None,
            },
        }
    }

    fn save_counters(&mut self, flush: bool) {
        let dirty: Vec<KeyId> = self.dirty_counters.drain().collect();
        for key_id in dirty {
            let _ = self.store.save_counters(self.counter_row(key_id, None));
        }
        if flush {
            let _ = self.store.flush();
        }
    }

    fn read_fleet(&self) -> std::sync::RwLockReadGuard<'_, FleetState> {
        self.fleet.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write_fleet(&self) -> std::sync::RwLockWriteGuard<'_, FleetState> {
        self.fleet.write().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

//! The engine: a router between the link tasks and the daemon's parts.
//!
//! Link tasks (one per serial port, one MQTT client) hand received bytes and link up/down
//! events in; the engine feeds the sans-IO protocol master, turns its events into
//! observations, telemetry, stored events and metrics, and hands its frames back to the link
//! tasks. The decisions about *when* to send live in sans-IO parts of their own, each tested
//! alone on virtual time:
//!
//! - [`polls::BusPoller`]: which siren a serial bus polls next within its airtime (back-off,
//!   broadcast time sets, campaign requests paced against polls);
//! - [`heartbeat::HeartbeatWatch`]: MQTT sirens' heartbeat deadlines;
//! - [`deaths::DeathGrace`]: last-will deaths held until it is clear the broker is not going
//!   away with them;
//! - [`clock`]: when an MQTT siren's clock may be synchronised again, and the correction;
//! - [`counters`]: replay-counter leases restored and persisted before use, and the pace of
//!   writing counters that moved;
//! - [`status::StatusRequests`]: which MQTT siren to ask for its status next (after each
//!   birth, and all in turn at a low rate);
//! - [`cadence::Cadence`]: how often open campaigns are asked for their next commands;
//! - [`stops`]: the one-step stop of every siren in a scope;
//! - [`live`]: LIVE warnings, from request and approval to their campaign.

pub mod cadence;
pub mod cap;
pub mod clock;
pub mod counters;
pub mod deaths;
pub mod heartbeat;
pub mod live;
pub mod polls;
pub mod status;
pub mod stops;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use siren_proto::frame::{FrameRef, KeyId};
use siren_proto::master::{LinkId, Master, MasterConfig, MasterEvent, Priority, RequestId};
use siren_proto::message::{DeviceState, FaultBits, Message};

use siren_proto::{Key, RejectReason};
use tokio::sync::{mpsc, oneshot};

use self::cadence::Cadence;
use self::clock::ClockSync;
use self::counters::DirtyCounters;
use self::deaths::DeathGrace;
use self::heartbeat::HeartbeatWatch;
use self::polls::{BusAction, BusPoller};
use self::status::StatusRequests;

use crate::coverage::metrics::SharedCoverage;
use crate::fleet::{FleetState, Telemetry};
use crate::liveness::{Change, Observation};
use crate::metrics::Metrics;
use crate::sounding::campaign::{Command as SoundingCommand, DeviceView};
use crate::sounding::runner::{AdHoc, Outgoing, RequestError, Runner};
use crate::sounding::uncommanded::Seen;
use crate::store::{Event, Store, StoreError};

/// How often open campaigns are asked for their next commands at most, outside the last
/// seconds before a trigger. A campaign scans every target when asked; asking at every reply
/// of a 10,000-siren arming made that scan the daemon's bottleneck.
const SOUNDINGS_EVERY: Duration = Duration::from_millis(10);
/// Stored campaigns whose targets are remembered (see `Engine::stored_targets`).
const STORED_TARGETS_KEPT: usize = 8;
/// Inputs handled at most between two ticks when they queue up.
const INPUTS_PER_TICK: usize = 256;
/// Capacity the table of requests awaiting answers keeps after a burst.
const PENDING_KEPT: usize = 512;
/// Requests awaiting their answers at once on the MQTT link.
const MQTT_IN_FLIGHT: usize = 256;

/// Bytes or news from a link task.
#[derive(Debug)]
pub enum Input {
    /// A chunk of a serial stream, read at `at` (`read` on the monotonic clock, against
    /// which the line's idle gap is measured).
    Serial {
        link: LinkId,
        bytes: Vec<u8>,
        at: Timestamp,
        read: Instant,
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
    /// A link task refused what it received before it became a frame (an MQTT message too
    /// large to be one).
    Rejected(RejectReason),
    /// An operator's request about soundings, answered on `reply`.
    Soundings(SoundingRequest),
    /// An operator stops every siren in a scope (`POST /api/stop`); answered with the sweep.
    Stop {
        scope: stops::StopScope,
        by: String,
        reason: String,
        reply: oneshot::Sender<crate::sounding::stop::SweepView>,
    },
    /// A LIVE warning's request, approval, rejection, false alarm, or a look at them.
    Live(live::LiveInput),
    Cap(cap::CapInput),
    /// The state of stop sweep `id`.
    StopStatus {
        id: u32,
        reply: oneshot::Sender<Option<crate::sounding::stop::SweepView>>,
    },
    /// An administrator moves a siren's transmit counter ahead (docs/operations.md, "When a
    /// siren does not answer commands"); answered with the first new counter.
    Resync {
        siren: String,
        by: String,
        reply: oneshot::Sender<Result<u32, String>>,
    },
}

/// What the HTTP API asks of the soundings runner.
#[derive(Debug)]
pub enum SoundingRequest {
    AdHoc { request: AdHoc, by: String, reply: oneshot::Sender<Result<u32, RequestError>> },
    Cancel { campaign: u32, by: String, reply: oneshot::Sender<Result<(), RequestError>> },
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
    /// Silence after which an incomplete envelope is dropped as truncated.
    pub idle_gap: Duration,
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
    /// The heartbeat period of MQTT sirens that have not announced theirs.
    pub heartbeat: Duration,
    /// How often each MQTT siren is asked for its status (zero: only after its birth).
    pub status_every: Duration,
    /// Misses before `down`: polls keep their interval until then, and back off after.
    pub down_after_misses: u32,
    /// Every owned siren's key.
    pub keys: HashMap<KeyId, Key>,
    /// Every owned siren's links, by fleet-file name (`serial:<bus>`, `mqtt`), and address.
    pub peers: Vec<(KeyId, siren_proto::frame::Address, Vec<String>)>,
}

/// A serial bus: its broadcast group key and its poller.
struct Bus {
    group: Option<KeyId>,
    poller: BusPoller,
}

enum Pending {
    Poll { siren: usize, link: LinkId, sent: Option<Instant> },
    TimeSync { siren: usize, samples: clock::SampleFilter },
    Command,
    Sounding { campaign: u32, target: usize, command: SoundingCommand, link: Option<LinkId> },
    Stop { sweep: u32, siren: usize },
}

/// The engine's state.
pub struct Engine {
    master: Master,
    fleet: Arc<RwLock<FleetState>>,
    store: Arc<Store>,
    metrics: Arc<Metrics>,
    link_names: HashMap<LinkId, String>,
    link_up: HashMap<LinkId, bool>,
    outputs: HashMap<LinkId, mpsc::Sender<Output>>,
    buses: HashMap<LinkId, Bus>,
    mqtt: Option<LinkId>,
    topic_root: String,
    heartbeats: HeartbeatWatch,
    status_requests: StatusRequests,
    deaths: DeathGrace,
    pending: HashMap<RequestId, Pending>,
    counters: DirtyCounters,
    /// How often open campaigns are asked for their next commands.
    soundings_cadence: Cadence,
    clock_sync: ClockSync,
    /// Unsynchronised clocks held back from the sirens' condition while sirend fixes them.
    unsynced_grace: clock::UnsyncedGrace,
    /// Sirens heard since the start (out of `unknown`).
    first_heard: usize,
    /// Told of every siren that starts or stops being able to sound.
    coverage: Option<SharedCoverage>,
    soundings: Option<Runner>,
    /// The version of the maintenance windows coverage was last told of.
    maintenance_seen: u64,
    /// Sirens armed or sounding that no campaign of ours ordered.
    uncommanded: crate::sounding::uncommanded::UncommandedWatch,
    /// Whether to stop them (`[soundings] stop_uncommanded`).
    stop_uncommanded: bool,
    /// Stop sweeps under way, and the latest that are over.
    sweeps: Vec<crate::sounding::stop::Sweep>,
    next_sweep: u32,
    /// LIVE requests and what became of them.
    desk: crate::live::Desk,
    live_config: crate::live::LiveConfig,
    intake: crate::cap::intake::Intake,
    cap_config: crate::cap::rules::CapConfig,
    publishing: Option<cap::Publishing>,
    stored_targets: HashMap<u32, Arc<HashSet<String>>>,
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
        for s in &plan.serial {
            let mut config = MasterConfig::serial(s.baud);
            // The device may take 50 ms to start answering (docs/protocol.md §8.2), and its
            // answer (a status report of up to 16 channels) takes its own wire time.
            config.reply_timeout = Duration::from_millis(60) + config.byte_time * 110;
            config.idle_gap = Some(s.idle_gap);
            master.add_link(s.link, config);
            let name = format!("serial:{}", s.bus);
            metrics.polled_link(&name);
            link_names.insert(s.link, name);
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
        let peers: Vec<counters::Peer> = plan
            .peers
            .iter()
            .map(|(key_id, address, links)| {
                (*key_id, *address, links.iter().filter_map(|l| by_name.get(l.as_str()).copied()).collect())
            })
            .collect();
        let groups: Vec<(LinkId, KeyId, Key)> =
            plan.serial.iter().filter_map(|s| s.group.clone().map(|(id, key)| (s.link, id, key))).collect();
        counters::restore(&mut master, &store, &peers, &plan.keys, &groups)?;
        // Serial sirens are polled from the start, spread over one interval.
        let sirens = fleet.read().map_or(0, |f| f.sirens().len());
        let buses = {
            let fleet_guard = fleet.read().unwrap_or_else(std::sync::PoisonError::into_inner);
            plan.serial
                .iter()
                .map(|s| {
                    let name = format!("serial:{}", s.bus);
                    let members: Vec<usize> = (0..fleet_guard.sirens().len())
                        .filter(|&i| fleet_guard.siren(i).liveness.has_link(&name))
                        .collect();
                    let group = s.group.as_ref().map(|(id, _)| *id);
                    let poller =
                        BusPoller::new(s.poll_interval, plan.down_after_misses, group.is_some(), &members, now);
                    (s.link, Bus { group, poller })
                })
                .collect()
        };
        let mut heartbeats = HeartbeatWatch::new(plan.heartbeat, sirens);
        let mqtt_members = {
            let fleet_guard = fleet.read().unwrap_or_else(std::sync::PoisonError::into_inner);
            for b in store.births()? {
                if let Some(i) = fleet_guard.index(&b.siren) {
                    heartbeats.announced(i, b.heartbeat_s);
                }
            }
            (0..fleet_guard.sirens().len()).filter(|&i| fleet_guard.siren(i).liveness.has_link("mqtt")).collect()
        };
        Ok(Self {
            status_requests: StatusRequests::new(mqtt_members, plan.status_every, now),
            heartbeats,
            master,
            fleet,
            store,
            metrics,
            link_names,
            // Unknown until each link task first reports: a port that never opens must still
            // turn its sirens `unreachable`, so its first report is always a change.
            link_up: HashMap::new(),
            outputs,
            buses,
            mqtt: plan.mqtt,
            topic_root: plan.topic_root,
            deaths: DeathGrace::default(),
            pending: HashMap::new(),
            counters: DirtyCounters::new(now),
            soundings_cadence: Cadence::new(SOUNDINGS_EVERY, now),
            clock_sync: ClockSync::new(sirens),
            unsynced_grace: clock::UnsyncedGrace::default(),
            first_heard: 0,
            coverage: None,
            soundings: None,
            maintenance_seen: 0,
            uncommanded: crate::sounding::uncommanded::UncommandedWatch::default(),
            stop_uncommanded: true,
            sweeps: Vec::new(),
            next_sweep: 0,
            desk: crate::live::Desk::default(),
            live_config: crate::live::LiveConfig::default(),
            intake: crate::cap::intake::Intake::default(),
            cap_config: crate::cap::rules::CapConfig::default(),
            publishing: None,
            stored_targets: HashMap::new(),
            arrived: None,
        })
    }

    /// Keeps `coverage` up to date with every siren's ability to sound.
    pub fn set_coverage(&mut self, coverage: SharedCoverage) {
        self.coverage = Some(coverage);
        self.maintenance_seen = 0;
    }

    /// Runs `runner`'s campaigns.
    pub fn set_soundings(&mut self, runner: Runner) {
        self.soundings = Some(runner);
    }

    /// LIVE warnings: their configuration, and the activations a previous run stored.
    /// CAP rules, and the alerts received before.
    pub fn set_cap(
        &mut self,
        config: crate::cap::rules::CapConfig,
        intake: crate::cap::intake::Intake,
        publishing: cap::Publishing,
    ) {
        self.cap_config = config;
        self.intake = intake;
        self.publishing = Some(publishing);
    }

    pub fn set_live(&mut self, config: crate::live::LiveConfig, desk: crate::live::Desk) {
        self.live_config = config;
        self.desk = desk;
    }

    /// Whether a siren armed or sounding without a campaign of ours is stopped (it is an alarm
    /// either way).
    pub fn set_stop_uncommanded(&mut self, stop: bool) {
        self.stop_uncommanded = stop;
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
                // What else has arrived is handled before the tick: a tick and the next wake
                // look at every open campaign, and a whole fleet's replies arrive together.
                for _ in 1..INPUTS_PER_TICK {
                    let Ok(input) = inputs.try_recv() else { break };
                    self.handle(input);
                }
            }
            self.tick(Instant::now());
        }
        let keys = self.counters.take_all();
        self.save_counters(keys);
        if let Some(r) = &mut self.soundings {
            r.persist(&self.store, true);
        }
        match self.store.flush() {
            Ok(()) => tracing::info!("counters and campaigns saved"),
            Err(e) => tracing::error!(error = %e, "the final save of counters and campaigns failed"),
        }
    }

    fn next_wake(&self) -> Instant {
        let now = Instant::now();
        let mut wake = now + Duration::from_secs(1);
        if let Some(t) = self.master.poll_timeout() {
            wake = wake.min(t);
        }
        for (link, bus) in &self.buses {
            if self.line_idle(*link) {
                if let Some(t) = bus.poller.next_due() {
                    wake = wake.min(t);
                }
            }
        }
        if let Some(t) = self.heartbeats.next_due() {
            wake = wake.min(t);
        }
        // A status request waits for room in the queue, which only a reply (an input) makes:
        // waking for it before then would spin.
        if let Some(t) = self.status_requests.next_due().filter(|_| self.status_room()) {
            wake = wake.min(t);
        }
        if let Some(t) = self.deaths.next_due() {
            wake = wake.min(t);
        }
        if self.soundings.as_ref().is_some_and(|r| r.urgent(Timestamp::now())) {
            wake = wake.min(now + Duration::from_millis(2));
        }
        if let Some(t) = self.soundings_cadence.wake() {
            wake = wake.min(t);
        }
        wake.min(self.counters.next_due())
    }

    /// Whether serial `link` is up with nothing queued on it.
    fn line_idle(&self, link: LinkId) -> bool {
        self.link_up.get(&link).copied().unwrap_or(false) && self.master.queued_on(link) == 0
    }

    /// Handles one input at once; what it causes is drained by [`Engine::tick`].
    pub fn handle(&mut self, input: Input) {
        let now = Instant::now();
        match input {
            Input::Serial { link, bytes, at, read } => {
                self.metrics.received(&self.link_names[&link]);
                self.arrived = Some(at);
                self.master.handle_link_input(read, link, &bytes);
                self.drain_events(Some(link), now);
            }
            Input::Mqtt { siren, channel, payload, at } => {
                self.arrived = Some(at);
                self.handle_mqtt(&siren, &channel, &payload, now);
            }
            Input::Rejected(reason) => self.metrics.frame_rejected(reason),
            Input::LinkUp(link) => self.set_link(link, true, now),
            Input::LinkDown(link) => self.set_link(link, false, now),
            Input::Soundings(request) => self.handle_sounding_request(request),
            Input::Stop { scope, by, reason, reply } => {
                let _ = reply.send(self.start_stop(&scope, &by, &reason));
            }
            Input::Live(input) => self.handle_live(input),
            Input::Cap(input) => self.handle_cap(input),
            Input::StopStatus { id, reply } => {
                let _ = reply.send(self.sweep_view(id));
            }
            Input::Resync { siren, by, reply } => {
                let _ = reply.send(self.resync_counters(&siren, &by));
            }
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
                    Some(r) => r.schedule_ad_hoc(&request, &by, now, &self.store, &fleet),
                    None => Err(RequestError::NotRunning),
                };
                let _ = reply.send(result);
            }
            SoundingRequest::Cancel { campaign, by, reply } => {
                let result = match &mut self.soundings {
                    Some(r) => r.cancel(campaign, &by, now, &self.store, &fleet),
                    None => Err(RequestError::NotRunning),
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

    /// Sends a campaign's request; `paced` holds it back while the siren's serial bus is not
    /// free for it (the campaign asks again on its next poll).
    fn send_sounding(&mut self, o: Outgoing, paced: bool) {
        // The link the request will go on: a redundant siren's may have failed over.
        let serial = self.master.link_of(o.key_id).filter(|l| self.buses.contains_key(l));
        if paced {
            let trigger = matches!(o.action.command, SoundingCommand::Trigger);
            if serial
                .and_then(|l| self.buses.get(&l))
                .is_some_and(|b| !b.poller.may_send_sounding(trigger, Instant::now()))
            {
                if let Some(r) = &mut self.soundings {
                    r.defer(o.campaign, o.action.target);
                }
                return;
            }
        }
        match self.master.request(o.key_id, o.message, Priority::Command) {
            Ok(id) => {
                if let Some(bus) = serial.and_then(|l| self.buses.get_mut(&l)) {
                    bus.poller.sounding_sent();
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
        if let Some(bus) = link.and_then(|l| self.buses.get_mut(&l)) {
            bus.poller.sounding_done();
        }
    }

    fn poll_soundings(&mut self, now: Instant) {
        let Some(runner) = &mut self.soundings else { return };
        if !self.soundings_cadence.ready(now, runner.urgent(Timestamp::now())) {
            return;
        }
        let fleet = Arc::clone(&self.fleet);
        let outgoing = {
            let fleet = fleet.read().unwrap_or_else(std::sync::PoisonError::into_inner);
            runner.poll(Timestamp::now(), &self.store, &fleet)
        };
        // A trigger-now is due at an instant: one by one a 9600 baud bus starts about one siren
        // within the tolerance. A bus whose sirens all wait for it gets one broadcast.
        let mut broadcast: HashMap<(LinkId, u32), bool> = HashMap::new();
        for o in outgoing {
            if matches!(o.action.command, SoundingCommand::Trigger) {
                let bus =
                    self.master.link_of(o.key_id).filter(|l| self.buses.get(l).is_some_and(|b| b.group.is_some()));
                if let Some(link) = bus {
                    let sent = *broadcast
                        .entry((link, o.campaign))
                        .or_insert_with(|| self.broadcast_trigger(link, o.campaign));
                    if sent {
                        continue;
                    }
                }
            }
            self.send_sounding(o, true);
        }
    }

    /// Triggers `campaign` on serial `link` with one broadcast if every siren on the bus waits
    /// for its trigger; returns whether it did.
    fn broadcast_trigger(&mut self, link: LinkId, campaign: u32) -> bool {
        let (Some(group), Some(name)) = (self.buses.get(&link).and_then(|b| b.group), self.link_names.get(&link))
        else {
            return false;
        };
        let members: Vec<usize> = {
            let fleet = self.read_fleet();
            (0..fleet.sirens().len()).filter(|&i| fleet.siren(i).liveness.has_link(name)).collect()
        };
        let Some(message) = self.soundings.as_mut().and_then(|r| r.trigger_bus(campaign, &members)) else {
            return false;
        };
        match self.master.broadcast(group, message) {
            Ok(_) => {
                tracing::info!(campaign, link = %name, sirens = members.len(), "triggered by broadcast");
                true
            }
            Err(e) => {
                tracing::error!(campaign, link = %name, error = %e, "cannot broadcast a trigger");
                false
            }
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
            (0..fleet.sirens().len()).filter(|&i| fleet.siren(i).liveness.has_link(&name)).collect()
        };
        for i in &members {
            self.observe(*i, &observation);
        }
        if Some(link) == self.mqtt {
            if up {
                self.heartbeats.restart(members.iter().copied(), now);
            } else {
                self.heartbeats.stop();
                let dropped = self.deaths.link_lost();
                if dropped > 0 {
                    tracing::info!(
                        deaths = dropped,
                        "deaths published as the broker went away: not counted as failures"
                    );
                }
            }
        }
        if let Some(bus) = self.buses.get_mut(&link) {
            bus.poller.link_changed(up, now);
        }
        self.reroute(&members);
    }

    /// Serial `link`'s port is open but nothing on it answered since it opened (`silent`), or
    /// something answers again: its sirens are `unreachable` meanwhile, as behind a lost port,
    /// with one link alert rather than one per siren.
    fn line_silent(&mut self, link: LinkId, silent: bool) {
        let Some(name) = self.link_names.get(&link).cloned() else { return };
        self.metrics.link_up(&name, !silent);
        if silent {
            tracing::warn!(link = %name, "the port is open but nothing on the line answers: its sirens are unreachable");
        } else {
            tracing::info!(link = %name, "the line answers again");
        }
        self.record(None, if silent { "link_silent" } else { "link_up" }, name.clone());
        let members: Vec<usize> = {
            let fleet = self.read_fleet();
            (0..fleet.sirens().len()).filter(|&i| fleet.siren(i).liveness.has_link(&name)).collect()
        };
        let observation =
            if silent { Observation::LinkDown { link: name.clone() } } else { Observation::LinkUp { link: name } };
        for i in members {
            self.observe(i, &observation);
        }
    }

    /// Points each of `sirens`' requests at its first link (in fleet-file order) that is up: a
    /// siren with a serial line and MQTT is commanded over whichever works.
    fn reroute(&mut self, sirens: &[usize]) {
        for &index in sirens {
            let (key_id, id) = {
                let fleet = self.read_fleet();
                let s = fleet.siren(index);
                (s.key_id, s.id.clone())
            };
            let Some(links) = self.master.peer(key_id).map(|p| p.links.clone()) else { continue };
            if links.len() < 2 {
                continue;
            }
            let Some(up) = links.iter().copied().find(|l| self.link_up.get(l).copied().unwrap_or(false)) else {
                continue; // none works: requests wait on the current one and fail as before
            };
            if self.master.link_of(key_id) != Some(up) && self.master.set_link(key_id, up).is_ok() {
                tracing::info!(siren = %id, link = %self.link_names[&up], "commands go over this link now");
            }
        }
    }

    /// Timers, scheduling and draining: called after every input and wake-up.
    pub fn tick(&mut self, now: Instant) {
        self.master.handle_timeout(now);
        self.drain_events(None, now);
        self.follow_maintenance();
        self.expire_live();
        self.run_sweeps();
        self.poll_soundings(now);
        self.schedule_polls(now);
        self.check_heartbeats(now);
        for (index, detail) in self.deaths.due(now) {
            self.apply_death(index, detail);
        }
        self.start_clock_syncs();
        self.request_statuses(now);
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
        if let Some(due) = self.counters.take_due(now) {
            self.save_counters(due);
            let waiting = self.counters.leases_waiting();
            self.store_leases(&waiting);
            self.metrics.events_written(self.store.events_written());
            self.live_metrics();
            self.metrics.store_health(&self.store.health());
            // A burst of requests (a whole fleet's time sync) must not keep its capacity.
            if self.pending.capacity() > 4 * self.pending.len().max(PENDING_KEPT) {
                self.pending.shrink_to(2 * self.pending.len().max(PENDING_KEPT));
            }
        }
    }

    /// Ends the maintenance windows that lapsed, and tells coverage which sirens are in
    /// maintenance whenever the windows changed (campaigns look for themselves).
    fn follow_maintenance(&mut self) {
        let now = Timestamp::now();
        let (lapsing, version) = {
            let fleet = self.read_fleet();
            let book = fleet.maintenance();
            (book.open().iter().any(|w| now >= w.until), book.version())
        };
        if lapsing {
            let lapsed = self.write_fleet().maintenance_mut().expire(now);
            for w in lapsed {
                tracing::info!(window = w.id, scope = w.scope.kind(), target = w.scope.target(), "maintenance lapsed");
                let _ = self.store.save_maintenance(&w);
                let siren = match &w.scope {
                    crate::maintenance::Scope::Siren(id) => Some(id.clone()),
                    crate::maintenance::Scope::Zone(_) => None,
                };
                self.record(siren, "maintenance_ended", format!("window {}: {}: lapsed", w.id, w.summary()));
            }
        }
        let version = if lapsing { self.read_fleet().maintenance().version() } else { version };
        if version == self.maintenance_seen {
            return;
        }
        self.maintenance_seen = version;
        if let Some(c) = &self.coverage {
            let fleet = self.read_fleet();
            let mut coverage = c.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            for i in 0..fleet.sirens().len() {
                coverage.set_in_maintenance(i, fleet.in_maintenance(i, now).is_some());
            }
        }
    }

    /// Gives each idle serial line what its poller says is due.
    fn schedule_polls(&mut self, now: Instant) {
        let links: Vec<LinkId> = self.buses.keys().copied().collect();
        for link in links {
            if !self.line_idle(link) {
                continue;
            }
            let Some(bus) = self.buses.get_mut(&link) else { continue };
            match bus.poller.next(now) {
                None => {}
                Some(BusAction::TimeSet) => {
                    let group = bus.group;
                    if self.clocks_held_on(link) {
                        // A step of an armed siren's clock moves its start.
                        tracing::debug!(link = %self.link_names[&link], "time set held: sirens on the bus are armed");
                        if let Some(bus) = self.buses.get_mut(&link) {
                            bus.poller.time_set_held(now);
                        }
                    } else if let Some(group) = group {
                        // Stamped as it is sealed for the wire (`Master::stamp_time_syncs`).
                        let master_time_us = Timestamp::now().as_microsecond();
                        if self.master.broadcast(group, Message::TimeSet { master_time_us }).is_ok() {
                            self.clocks_set_on(link);
                        }
                    }
                }
                Some(BusAction::Poll(siren)) => {
                    let key = self.read_fleet().siren(siren).key_id;
                    match self.master.request(key, Message::StatusRequest, Priority::Poll) {
                        Ok(id) => {
                            self.pending.insert(id, Pending::Poll { siren, link, sent: None });
                            self.metrics.poll(&self.link_names[&link]);
                        }
                        Err(_) => {
                            if let Some(bus) = self.buses.get_mut(&link) {
                                bus.poller.not_sent(siren, now);
                            }
                        }
                    }
                }
            }
        }
    }

    /// Asks MQTT sirens for their status: those just born, and the next in turn when due, as
    /// long as the link's queue has room.
    /// Whether the MQTT link is up with room in its queue for status requests.
    fn status_room(&self) -> bool {
        self.mqtt.is_some_and(|link| {
            self.link_up.get(&link).copied().unwrap_or(false) && self.master.queued_on(link) < clock::QUEUE_ROOM
        })
    }

    fn request_statuses(&mut self, now: Instant) {
        while self.status_room() {
            let Some(index) = self.status_requests.next(now) else { break };
            let (key_id, heard) = {
                let fleet = self.read_fleet();
                let s = fleet.siren(index);
                // Only sirens heard from since they were last silent: asking a dead one would
                // only flag its command path as failing.
                (s.key_id, s.liveness.misses == 0 && s.liveness.last_seen.is_some() && s.liveness.reachable())
            };
            if heard {
                if let Ok(id) = self.master.request(key_id, Message::StatusRequest, Priority::Poll) {
                    self.pending.insert(id, Pending::Command);
                }
            }
        }
    }

    /// Tells the campaigns that the clocks of the sirens on serial `link` were set.
    fn clocks_set_on(&mut self, link: LinkId) {
        let Some(name) = self.link_names.get(&link).cloned() else { return };
        let sirens: Vec<usize> = {
            let fleet = self.read_fleet();
            (0..fleet.sirens().len()).filter(|&i| fleet.siren(i).liveness.has_link(&name)).collect()
        };
        if let Some(runner) = self.soundings.as_mut() {
            runner.clocks_set(&sirens, Timestamp::now());
        }
    }

    /// Whether a siren on serial `link` is armed or sounding (its clock must not be stepped).
    fn clocks_held_on(&self, link: LinkId) -> bool {
        let Some(runner) = &self.soundings else { return false };
        let name = &self.link_names[&link];
        let fleet = self.read_fleet();
        runner.clocks_held().any(|i| fleet.siren(i).liveness.has_link(name))
    }

    /// A death whose grace has passed (or that another frame of the siren followed).
    fn apply_death(&mut self, index: usize, detail: String) {
        let Some(link) = self.mqtt.and_then(|l| self.link_names.get(&l)).cloned() else { return };
        self.record_siren(index, "death", detail);
        self.observe(index, &Observation::Died { link });
    }

    fn check_heartbeats(&mut self, now: Instant) {
        let Some(link) = self.mqtt else { return };
        let name = self.link_names[&link].clone();
        for siren in self.heartbeats.expired(now) {
            self.observe(siren, &Observation::Missed { link: name.clone() });
        }
    }

    fn drain_events(&mut self, link: Option<LinkId>, now: Instant) {
        while let Some(event) = self.master.poll_event() {
            match event {
                MasterEvent::Reply { request, key_id, message, .. } => {
                    self.command_answered(key_id, &message);
                    match self.pending.remove(&request) {
                        Some(Pending::Poll { siren, link: poll_link, sent }) => {
                            if let Some(sent) = sent {
                                self.metrics.poll_duration(&self.link_names[&poll_link], now.duration_since(sent));
                            }
                            let line_back =
                                self.buses.get_mut(&poll_link).is_some_and(|b| b.poller.answered(siren, now));
                            if line_back {
                                self.line_silent(poll_link, false);
                            }
                        }
                        Some(Pending::TimeSync { siren, samples }) => {
                            self.adjust_clock(siren, key_id, samples, &message);
                        }
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
                        Some(Pending::Stop { sweep, siren }) => match message {
                            Message::Ack { .. } => self.stop_answered(sweep, siren),
                            _ => self.stop_failed(sweep, siren),
                        },
                        Some(Pending::Command) | None => {}
                    }
                    self.heard(key_id, link, &message, now);
                }
                MasterEvent::Unsolicited { key_id, message } => self.heard(key_id, link, &message, now),
                MasterEvent::Timeout { .. } => {}
                MasterEvent::Failed { request, key_id, .. } => {
                    let pending = self.pending.remove(&request);
                    if !matches!(pending, Some(Pending::Poll { .. })) {
                        self.command_unanswered(key_id);
                    }
                    if let Some(Pending::Stop { sweep, siren }) = pending {
                        self.stop_failed(sweep, siren);
                    } else if let Some(Pending::Sounding { campaign, target, link: bus, .. }) = pending {
                        self.sounding_done(bus);
                        if let Some(r) = &mut self.soundings {
                            r.on_failed(campaign, target, Timestamp::now());
                        }
                    } else if let Some(Pending::Poll { siren, link: poll_link, .. }) = pending {
                        self.metrics.poll_failed(&self.link_names[&poll_link]);
                        let verdict = self.buses.get_mut(&poll_link).map(|b| b.poller.unanswered(siren, now));
                        let name = self.link_names[&poll_link].clone();
                        match verdict {
                            Some(polls::Unanswered::Miss) | None => {
                                self.observe(siren, &Observation::Missed { link: name });
                            }
                            Some(polls::Unanswered::NotCounted) => {}
                            Some(polls::Unanswered::LineSilent) => self.line_silent(poll_link, true),
                        }
                    }
                }
                MasterEvent::Rejected { reason, .. } => self.metrics.frame_rejected(reason),
                MasterEvent::LeaseWanted { key_id, up_to } => self.store_leases(&[(key_id, up_to)]),
            }
        }
    }

    /// A reply from the siren under `key_id`: its command path works; a NAK is counted.
    fn command_answered(&mut self, key_id: KeyId, message: &Message) {
        if let Message::Nak { code, .. } = message {
            self.metrics.command_nak(*code);
        }
        let Some(index) = self.read_fleet().by_key(key_id) else { return };
        if self.write_fleet().command_answered(index) {
            let id = self.read_fleet().siren(index).id.clone();
            tracing::info!(siren = %id, "commands are answered again");
            self.record(Some(id), "command_path_ok", String::new());
        }
    }

    /// A command (not a poll) to the siren under `key_id` went unanswered after every retry.
    fn command_unanswered(&mut self, key_id: KeyId) {
        self.metrics.command_unanswered();
        let Some(index) = self.read_fleet().by_key(key_id) else { return };
        if self.write_fleet().command_unanswered(index, Timestamp::now()) {
            let id = self.read_fleet().siren(index).id.clone();
            tracing::warn!(
                siren = %id,
                "heard, but does not answer commands: its counter may be ahead of ours (see `resync` in docs/operations.md)"
            );
            self.record(Some(id), "command_path_failing", "a command went unanswered after every retry".into());
        }
    }

    /// Moves the transmit counter of siren `id` far past anything it can have seen, for a
    /// device whose receive counter is ahead of ours (a restored backup, a second
    /// controller): the new lease is stored before it is used. Returns the first counter.
    fn resync_counters(&mut self, id: &str, by: &str) -> Result<u32, String> {
        let (index, key_id) = {
            let fleet = self.read_fleet();
            let index = fleet.index(id).ok_or_else(|| format!("no siren `{id}`"))?;
            (index, fleet.siren(index).key_id)
        };
        let mut config = self.master.peer(key_id).ok_or_else(|| format!("siren `{id}` has no session"))?.clone();
        let start = config.tx.lease_end().max(config.tx.next()).saturating_add(counters::RESYNC_JUMP);
        let end = start.saturating_add(siren_proto::replay::DEFAULT_LEASE);
        let mut row = counters::row(&self.master, key_id, Some(end));
        row.tx_lease_end = end;
        self.store.store_counters(vec![row]).map_err(|e| format!("store: {e}"))?;
        config.tx = siren_proto::replay::TxCounter::new(start, end);
        self.master.add_peer(config);
        self.reroute(&[index]);
        tracing::warn!(siren = %id, by, counter = start, "transmit counter moved ahead");
        self.record(Some(id.to_owned()), "counters_resynced", format!("by {by}: transmit counter from {start}"));
        Ok(start)
    }

    /// Grants the leases once they are durably stored, in one commit: never before, or a
    /// restart could reuse their counters. Until then nothing is sent under their keys; they
    /// are tried again at every counter write.
    fn store_leases(&mut self, leases: &[(KeyId, u32)]) {
        if leases.is_empty() {
            return;
        }
        let stored = self.store.store_counters(
            leases.iter().map(|&(key_id, up_to)| counters::row(&self.master, key_id, Some(up_to))).collect(),
        );
        for &(key_id, up_to) in leases {
            match &stored {
                Ok(()) => {
                    self.master.grant_lease(key_id, up_to);
                    self.counters.lease_stored(key_id);
                }
                Err(e) => {
                    if self.counters.lease_not_stored(key_id, up_to) {
                        let siren = {
                            let fleet = self.read_fleet();
                            fleet.by_key(key_id).map(|i| fleet.siren(i).id.clone())
                        };
                        tracing::error!(
                            key_id = key_id.0,
                            siren = siren.as_deref().unwrap_or("(bus group)"),
                            error = %e,
                            "a counter lease could not be stored: nothing is sent under this key until it is"
                        );
                    }
                }
            }
        }
        self.metrics.leases_waiting(self.counters.waiting_count());
    }

    fn heard(&mut self, key_id: KeyId, link: Option<LinkId>, message: &Message, now: Instant) {
        self.counters.touched(key_id);
        let Some(index) = self.read_fleet().by_key(key_id) else { return };
        let link_name = link.and_then(|l| self.link_names.get(&l).cloned()).unwrap_or_default();
        if link.is_some() && link == self.mqtt {
            if let Message::Birth(b) = message {
                self.born(index, b);
            }
            self.heartbeats.heard(index, now);
        }
        if let Some(detail) = self.deaths.take(index) {
            self.apply_death(index, detail);
        }
        let faults = match message {
            Message::StatusReport(s) => {
                let received = Timestamp::now();
                let telemetry = Telemetry::from_report(s, received);
                self.write_fleet().set_telemetry(index, telemetry);
                if let Some(runner) = self.soundings.as_mut() {
                    let view = DeviceView {
                        state: s.state,
                        campaign: Some(s.active_campaign),
                        clock: Some((s.device_time_us, received.as_microsecond())),
                    };
                    runner.on_status(index, &view, received);
                }
                let seen = Seen { state: s.state, campaign: Some(s.active_campaign), reported: false };
                self.watch_uncommanded(index, seen);
                if let Some(ended) = self.uncommanded.campaign_ended(index, s.last_campaign) {
                    self.check_reported_campaign(index, ended);
                }
                if s.state == siren_proto::message::DeviceState::Idle {
                    self.stop_answered(0, index);
                }
                Some(s.faults)
            }
            Message::Heartbeat(h) => {
                if let Some(runner) = self.soundings.as_mut() {
                    runner.on_status(
                        index,
                        &DeviceView { state: h.state, campaign: None, clock: None },
                        Timestamp::now(),
                    );
                }
                self.watch_uncommanded(index, Seen { state: h.state, campaign: None, reported: false });
                if h.state == siren_proto::message::DeviceState::Idle {
                    self.stop_answered(0, index);
                }
                Some(h.faults)
            }
            Message::Birth(_) => None,
            Message::Death(d) => {
                self.deaths.died(index, format!("boot {} cause {:?}", d.boot_seq, d.cause), now);
                return;
            }
            Message::SoundingReport(r) => {
                // Recorded once per siren and campaign: the device repeats its report until
                // it is acknowledged, and answers report requests with it too.
                let ours = self.soundings.as_mut().and_then(|runner| runner.on_report(index, r));
                if ours.is_none_or(|first| first) {
                    self.record_siren(index, "sounding_report", format!("campaign {} {:?}", r.campaign, r.outcome));
                }
                if ours.is_none() && r.started_us != 0 {
                    self.check_reported_campaign(index, r.campaign);
                }
                return;
            }
            _ => return,
        };
        if link.is_some() && link == self.mqtt && faults.is_some_and(|f| f.contains(FaultBits::CLOCK_UNSYNCED)) {
            self.sync_clock(index, now);
        }
        let faults = faults.map(|f| self.unsynced_grace.filter(index, f, now));
        self.observe(index, &Observation::Heard { link: link_name, faults });
    }

    /// Siren `index` reports that it ran `campaign`, which is over (a sounding report, or its
    /// status's `last_campaign` moving on): unless a campaign of ours has it (still open, or
    /// closed and stored) or it was alarmed already (seen armed or sounding), it was armed or
    /// sounded between two of the siren's heartbeats without an order.
    fn check_reported_campaign(&mut self, index: usize, campaign: u32) {
        let now = Timestamp::now();
        if !self.uncommanded.report_is_news(index, campaign, now)
            || self.soundings.as_ref().is_some_and(|r| r.claims(index, Some(campaign)))
        {
            return;
        }
        let id = self.read_fleet().siren(index).id.clone();
        let ordered = campaign != 0 && self.stored_targets(campaign).is_some_and(|targets| targets.contains(&id));
        if !ordered {
            self.watch_uncommanded(
                index,
                Seen { state: DeviceState::Sounding, campaign: Some(campaign), reported: true },
            );
        }
    }

    /// The sirens stored campaign `campaign` targeted (`None`: no such campaign), remembered
    /// for a few campaigns: after a whole-fleet sounding every late status asks about the same
    /// one, and reading it means reading every target.
    fn stored_targets(&mut self, campaign: u32) -> Option<Arc<HashSet<String>>> {
        if let Some(t) = self.stored_targets.get(&campaign) {
            return Some(Arc::clone(t));
        }
        let c = self.store.campaign(campaign).ok().flatten()?;
        let targets: Arc<HashSet<String>> = Arc::new(c.targets.into_iter().map(|t| t.siren).collect());
        if self.stored_targets.len() >= STORED_TARGETS_KEPT {
            self.stored_targets.clear();
        }
        self.stored_targets.insert(campaign, Arc::clone(&targets));
        Some(targets)
    }

    /// Siren `index` says it is as `seen`: armed or sounding with no open campaign of ours
    /// behind it is an alarm, and it is stopped unless a crew has it in maintenance.
    fn watch_uncommanded(&mut self, index: usize, seen: Seen) {
        use crate::sounding::uncommanded::Step;
        let now = Timestamp::now();
        let claimed = !seen.reported && self.soundings.as_ref().is_some_and(|r| r.claims(index, seen.campaign));
        let (id, in_maintenance) = {
            let fleet = self.read_fleet();
            (fleet.siren(index).id.clone(), fleet.in_maintenance(index, now).is_some())
        };
        let to_stop = self.stop_uncommanded && !in_maintenance;
        let Some(step) = self.uncommanded.observe(index, seen, claimed, to_stop, now) else {
            return;
        };
        let remedy = match step {
            Step::Began { seen, stop: remedy } => {
                let action = match (&remedy, in_maintenance) {
                    (Some(m), _) => format!("; sent {:?}", m.message_type()),
                    (None, true) => "; in maintenance: not stopped".to_owned(),
                    (None, false) => "; stop_uncommanded is off: not stopped".to_owned(),
                };
                tracing::error!(siren = %id, what = seen.describe(), "a siren is active that nobody ordered");
                self.metrics.uncommanded_activation(&id, now);
                self.write_fleet().set_uncommanded(index, true);
                self.record(Some(id), "uncommanded_activation", format!("{}{action}", seen.describe()));
                remedy
            }
            Step::StopAgain(m) => Some(m),
            Step::Ended { seen, stops } => {
                tracing::warn!(siren = %id, stops, "the siren nobody ordered is idle again");
                self.write_fleet().set_uncommanded(index, false);
                self.record(
                    Some(id),
                    "uncommanded_ended",
                    format!("idle again after {}; {stops} stop(s) sent", seen.describe()),
                );
                None
            }
        };
        if let Some(message) = remedy {
            let key_id = self.read_fleet().siren(index).key_id;
            if let Ok(rid) = self.master.request(key_id, message, Priority::Command) {
                self.pending.insert(rid, Pending::Command);
            }
        }
    }

    /// A BIRTH from siren `index`: its heartbeat period counts from now on (and across
    /// restarts of the daemon), and its status is asked for at once.
    fn born(&mut self, index: usize, birth: &siren_proto::message::Birth) {
        self.heartbeats.announced(index, birth.heartbeat_period_s);
        self.status_requests.born(index);
        let row = crate::store::BirthRow {
            siren: self.read_fleet().siren(index).id.clone(),
            at: Timestamp::now(),
            boot_seq: birth.boot_seq,
            firmware: birth.firmware.to_string(),
            capabilities: birth.capabilities,
            heartbeat_s: birth.heartbeat_period_s,
        };
        if let Err(e) = self.store.save_birth(row) {
            tracing::error!(error = %e, "cannot record a birth");
        }
    }

    /// Starts a time-sync exchange with an MQTT siren whose clock is not synchronised
    /// (serial buses get a broadcast `TIME_SET` instead).
    fn sync_clock(&mut self, index: usize, now: Instant) {
        self.clock_sync.wanted(index, now);
        self.start_clock_syncs();
    }

    /// Starts the time syncs waiting for room on the MQTT link.
    fn start_clock_syncs(&mut self) {
        let Some(link) = self.mqtt else { return };
        while let Some(index) = self.clock_sync.next(self.master.queued_on(link)) {
            self.time_sync_request(index, clock::SampleFilter::default());
        }
    }

    /// Sends siren `index` a time-sync request, one of the samples in `samples`.
    fn time_sync_request(&mut self, index: usize, samples: clock::SampleFilter) {
        let key_id = self.read_fleet().siren(index).key_id;
        // Stamped again as the frame is sealed (`Master::stamp_time_syncs`).
        let t1_us = Timestamp::now().as_microsecond();
        if let Ok(id) = self.master.request(key_id, Message::TimeSyncRequest { t1_us }, Priority::Command) {
            self.pending.insert(id, Pending::TimeSync { siren: index, samples });
        }
    }

    /// Takes a time-sync sample: another exchange, or the correction from the best one.
    fn adjust_clock(&mut self, index: usize, key_id: KeyId, mut samples: clock::SampleFilter, reply: &Message) {
        match samples.add(reply, self.arrival().as_microsecond()) {
            None => {}
            Some(clock::SyncStep::Again) => self.time_sync_request(index, samples),
            Some(clock::SyncStep::Adjust(adjust, sample)) => {
                tracing::debug!(
                    siren = index,
                    offset_us = sample.offset_us,
                    round_trip_us = sample.round_trip_us,
                    "time sync"
                );
                // An armed siren starts by its clock: its campaign watches it and moves the
                // start instead (docs/protocol.md §5.4). Its next unsynchronised status after
                // `clock::RESYNC_AFTER` asks again.
                if self.soundings.as_ref().is_some_and(|r| r.clock_held(index)) {
                    tracing::debug!(siren = index, "time sync: not corrected while armed");
                    return;
                }
                if let Ok(id) = self.master.request(key_id, adjust, Priority::Command) {
                    self.pending.insert(id, Pending::Command);
                }
            }
            Some(clock::SyncStep::GiveUp) => {
                let id = self.read_fleet().siren(index).id.clone();
                tracing::warn!(siren = %id, "time sync: every round trip was negative; the device stamps t2/t3 wrongly");
            }
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
                    // A siren first heard healthy is not news (a boot would log every siren);
                    // the line that says they all answered is.
                    if from == crate::liveness::State::Unknown && to == crate::liveness::State::Ok {
                        tracing::debug!(siren = %id, from = from.as_str(), to = to.as_str(), cause = cause.as_str(), "state");
                    } else {
                        tracing::info!(siren = %id, from = from.as_str(), to = to.as_str(), cause = cause.as_str(), "state");
                    }
                    if from == crate::liveness::State::Unknown {
                        self.first_heard += 1;
                        if self.first_heard == self.read_fleet().sirens().len() {
                            tracing::info!(sirens = self.first_heard, "every siren has been heard since the start");
                        }
                    }
                    ("state", format!("{} -> {} ({})", from.as_str(), to.as_str(), cause.as_str()))
                }
                Change::FaultRaised { fault } => ("fault_raised", fault.to_owned()),
                Change::FaultCleared { fault } => ("fault_cleared", fault.to_owned()),
                Change::AcknowledgementEnded { why } => {
                    tracing::info!(siren = %id, why, "acknowledgement ended");
                    let _ = self.store.save_acknowledgement(&id, None);
                    ("acknowledgement_ended", why.to_owned())
                }
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

    /// Queues the counters of `keys` for the next commit.
    fn save_counters(&self, keys: Vec<KeyId>) {
        for key_id in keys {
            let _ = self.store.save_counters(counters::row(&self.master, key_id, None));
        }
    }

    fn read_fleet(&self) -> std::sync::RwLockReadGuard<'_, FleetState> {
        self.fleet.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write_fleet(&self) -> std::sync::RwLockWriteGuard<'_, FleetState> {
        self.fleet.write().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

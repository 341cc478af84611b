//! Runs the campaigns: plans each schedule's next occurrence, records the ones missed while
//! the daemon was down, polls the open campaigns and persists them at every step.
//!
//! The engine owns the runner and the protocol master: it sends what [`Runner::poll`] returns
//! and feeds the answers back.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use siren_proto::frame::KeyId;
use siren_proto::message::{Message, SoundingReport};

use super::board::SharedBoard;
use super::campaign::{Action, Campaign, Command, DeviceView, Notice, Phase, Settings, Target};
use super::conflicts;
use super::schedule::Schedule;
use super::sequence::{Kind, Step};
use crate::config::Soundings;
use crate::fleet::FleetState;
use crate::store::{Event, Store};

/// Schedule name of campaigns an operator asked for.
pub const AD_HOC: &str = "ad-hoc";
/// Most occurrences recorded as missed per schedule after one outage; an hourly chime down
/// for a month is one line in the log, not seven hundred.
const MAX_MISSED: usize = 48;
/// How often schedules are looked at for occurrences to plan.
const PLAN_EVERY: Duration = Duration::from_secs(10);
/// Most occurrences of a schedule skipped in a row as suppressed before planning gives up on it
/// (a schedule that another suppresses always is a configuration mistake).
const MAX_SUPPRESSED_IN_A_ROW: usize = 1000;
/// Least interval between two saves of a campaign whose phase did not change.
const SAVE_EVERY: Duration = Duration::from_secs(1);

/// A request for the engine to send.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub campaign: u32,
    pub action: Action,
    pub key_id: KeyId,
    pub message: Message,
}

struct Live {
    campaign: Campaign,
    /// Each target's index in the fleet state (`None`: no longer in the fleet).
    fleet_index: Vec<Option<usize>>,
    /// The other way: the target of each fleet index (a status from one of 10,000 sirens must
    /// not scan every target).
    target_of: HashMap<usize, usize>,
    saved_phase: Phase,
    saved_at: Instant,
}

/// Why an operator's request was refused.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("no campaign {0}")]
    Unknown(u32),
    /// The request itself is wrong (a field's value): it would be refused at any time.
    #[error("{message}")]
    Invalid { field: &'static str, message: String },
    /// The request conflicts with the campaign's current state.
    #[error("{0}")]
    Conflict(String),
    #[error("soundings are not running")]
    NotRunning,
    #[error("the store failed: {0}")]
    Store(#[from] crate::store::StoreError),
}

/// The soundings part of the engine.
pub struct Runner {
    schedules: Vec<Schedule>,
    config: Soundings,
    open: Vec<Live>,
    board: SharedBoard,
    next_plan: Instant,
    /// The version of the maintenance windows the open campaigns were last told of (0: never).
    maintenance_seen: u64,
    /// LIVE campaigns that ended since last asked (their final state goes to the metrics).
    ended_live: Vec<Campaign>,
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner")
            .field("schedules", &self.schedules.len())
            .field("open", &self.open.len())
            .finish_non_exhaustive()
    }
}

impl Runner {
    /// Resumes the campaigns the store holds open.
    pub fn new(
        schedules: Vec<Schedule>,
        config: Soundings,
        store: &Store,
        fleet: &FleetState,
        board: SharedBoard,
    ) -> Result<Self, crate::store::StoreError> {
        {
            let mut b = board.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            // The results of earlier runs show again after a restart: each schedule's last
            // sounding (which holds the last result of every siren it targets) and last miss.
            // Only those are read: a year of hourly chimes of a national fleet is gigabytes.
            let names = schedules.iter().map(|s| s.name.as_str()).chain(std::iter::once(AD_HOC));
            for name in names {
                b.known(name);
                for phase in [Phase::Missed, Phase::Done] {
                    if let Some(c) = store.latest_campaign(name, phase.as_str())? {
                        b.restored(&c);
                    }
                }
            }
        }
        let mut runner = Self {
            schedules,
            config,
            open: Vec::new(),
            board,
            next_plan: Instant::now(),
            maintenance_seen: 0,
            ended_live: Vec::new(),
        };
        for c in store.campaigns(true, 10_000)? {
            tracing::info!(campaign = c.id, schedule = %c.schedule, phase = c.phase.as_str(), "resuming campaign");
            runner.adopt(c, fleet);
        }
        Ok(runner)
    }

    fn adopt(&mut self, campaign: Campaign, fleet: &FleetState) {
        let fleet_index: Vec<Option<usize>> = campaign.targets.iter().map(|t| fleet.index(&t.siren)).collect();
        let target_of = fleet_index.iter().enumerate().filter_map(|(t, f)| f.map(|f| (f, t))).collect();
        let saved_phase = campaign.phase;
        self.open.push(Live { campaign, fleet_index, target_of, saved_phase, saved_at: Instant::now() });
        // A new campaign learns which of its sirens are in maintenance at the next poll.
        self.maintenance_seen = 0;
    }

    /// Tells every open campaign which of its sirens are in maintenance, when the windows
    /// changed since it was last told.
    fn follow_maintenance(&mut self, now: Timestamp, fleet: &FleetState) {
        let version = fleet.maintenance().version();
        if version == self.maintenance_seen {
            return;
        }
        self.maintenance_seen = version;
        for live in &mut self.open {
            for (target, index) in live.fleet_index.iter().enumerate() {
                let window = index.and_then(|i| fleet.in_maintenance(i, now)).map(crate::maintenance::Window::summary);
                if live.campaign.set_maintenance(target, window.as_deref(), now) {
                    let siren = &live.campaign.targets[target].siren;
                    if let Some(w) = &window {
                        tracing::info!(campaign = live.campaign.id, siren, window = w, "left out: in maintenance");
                    } else {
                        tracing::info!(campaign = live.campaign.id, siren, "back from maintenance: armed after all");
                    }
                }
            }
        }
    }

    /// The LIVE campaigns that ended since last asked.
    pub fn take_ended_live(&mut self) -> Vec<Campaign> {
        std::mem::take(&mut self.ended_live)
    }

    /// The campaigns under way or planned.
    pub fn open(&self) -> impl Iterator<Item = &Campaign> {
        self.open.iter().map(|l| &l.campaign)
    }

    fn targets(fleet: &FleetState, zones: &[String]) -> Vec<Target> {
        fleet
            .sirens()
            .iter()
            .filter(|s| zones.is_empty() || zones.iter().any(|z| s.zone.is_within(z)))
            .map(|s| Target::new(s.id.clone(), s.zone.to_string()))
            .collect()
    }

    /// Records occurrences that passed while nobody ran them, and plans each schedule's next.
    fn plan(&mut self, now: Timestamp, store: &Store, fleet: &FleetState) {
        for i in 0..self.schedules.len() {
            // A schedule with a campaign open has nothing to plan, and nothing can have been
            // missed before it (a resumed campaign whose instant passed is judged or missed by
            // itself):
            // skipping it keeps the rule walk to once per occurrence.
            if self.open.iter().any(|l| l.campaign.schedule == self.schedules[i].name) {
                continue;
            }
            let s = self.schedules[i].clone();
            let last = match store.last_instant(&s.name) {
                Ok(l) => l,
                Err(e) => {
                    tracing::error!(error = %e, "cannot read campaigns");
                    return;
                }
            };
            if let Some(last) = last {
                let due = s.after(last).take_while(|&o| o <= now);
                let not_suppressed = due.filter(|&o| conflicts::suppressed_by(&self.schedules, &s, o).is_none());
                for instant in not_suppressed.take(MAX_MISSED) {
                    let settings = Settings::from_config(&self.config, u32::try_from(s.lead.as_secs()).unwrap_or(0));
                    let Ok(Some(id)) = store.create_campaign(&s.name, instant) else { continue };
                    let sequence = Self::sequence_of(&s);
                    let Ok(mut c) = Campaign::new(id, s.name.clone(), s.kind, instant, sequence, settings, Vec::new())
                    else {
                        continue;
                    };
                    c.miss("the daemon was not running at the instant");
                    let _ = store.save_campaign(&c);
                    self.record_final(&c, store);
                }
            }
            let from = last.map_or(now, |l| l.max(now));
            let Some(instant) = self.next_not_suppressed(&s, from, store) else {
                self.board_next(&s.name, None);
                continue;
            };
            let settings = Settings::from_config(&self.config, u32::try_from(s.lead.as_secs()).unwrap_or(0));
            match store.create_campaign(&s.name, instant) {
                Ok(Some(id)) => {
                    let targets = Self::targets(fleet, &s.zones);
                    match Campaign::new(id, s.name.clone(), s.kind, instant, Self::sequence_of(&s), settings, targets) {
                        Ok(c) => {
                            tracing::info!(campaign = id, schedule = %s.name, instant = %instant, "planned");
                            let _ = store.save_campaign(&c);
                            self.adopt(c, fleet);
                        }
                        Err(e) => tracing::error!(schedule = %s.name, error = %e, "cannot plan"),
                    }
                }
                Ok(None) => {}
                Err(e) => tracing::error!(error = %e, "cannot plan a campaign"),
            }
        }
        for s in &self.schedules {
            let next = self.open.iter().filter(|l| l.campaign.schedule == s.name).map(|l| l.campaign.instant).min();
            self.board_next(&s.name, next.map(Timestamp::as_second));
        }
    }

    /// The first occurrence of `s` after `from` that no other schedule suppresses; each one
    /// suppressed on the way is recorded (once: the next plan starts after the occurrence
    /// chosen here).
    fn next_not_suppressed(&self, s: &Schedule, from: Timestamp, store: &Store) -> Option<Timestamp> {
        for instant in s.after(from).take(MAX_SUPPRESSED_IN_A_ROW) {
            let Some((by, at)) = conflicts::suppressed_by(&self.schedules, s, instant) else { return Some(instant) };
            tracing::info!(schedule = %s.name, %instant, by = %by.name, "suppressed");
            let detail = format!("{} at {instant}: suppressed by {} at {at}", s.name, by.name);
            let _ =
                store.record(Event { at: Timestamp::now(), siren: None, kind: "sounding_suppressed".into(), detail });
        }
        None
    }

    fn board_next(&self, schedule: &str, at_s: Option<i64>) {
        self.board.lock().unwrap_or_else(std::sync::PoisonError::into_inner).set_next(schedule, at_s);
    }

    /// The configured sequence of a schedule, as steps a campaign stores.
    fn sequence_of(s: &Schedule) -> Vec<Step> {
        s.sequence.clone()
    }

    /// Advances every open campaign; returns what to send.
    pub fn poll(&mut self, now: Timestamp, store: &Store, fleet: &FleetState) -> Vec<Outgoing> {
        let at = Instant::now();
        if at >= self.next_plan {
            self.next_plan = at + PLAN_EVERY;
            self.plan(now, store, fleet);
        }
        self.follow_maintenance(now, fleet);
        let mut out = Vec::new();
        for live in &mut self.open {
            let index = &live.fleet_index;
            let reachable = |i: usize| index[i].is_some_and(|f| fleet.siren(f).liveness.reachable());
            for action in live.campaign.poll(now, &reachable) {
                if let Some(o) = outgoing(&live.campaign, index, fleet, action, now) {
                    out.push(o);
                }
            }
            for notice in live.campaign.take_notices() {
                record_notice(&live.campaign, notice, store);
            }
        }
        self.persist(store, false);
        out
    }

    /// Saves changed campaigns (a phase change at once, progress at most once a second) and
    /// retires finished ones.
    pub fn persist(&mut self, store: &Store, force: bool) {
        let now = Instant::now();
        let mut finished = Vec::new();
        for (i, live) in self.open.iter_mut().enumerate() {
            let phase_changed = live.campaign.phase != live.saved_phase;
            if !(force || phase_changed || now.duration_since(live.saved_at) >= SAVE_EVERY) {
                continue;
            }
            if !live.campaign.take_dirty() && !phase_changed {
                continue;
            }
            if let Err(e) = store.save_campaign(&live.campaign) {
                tracing::error!(campaign = live.campaign.id, error = %e, "cannot save campaign");
            }
            if phase_changed {
                tracing::info!(
                    campaign = live.campaign.id,
                    schedule = %live.campaign.schedule,
                    phase = live.campaign.phase.as_str(),
                    "campaign"
                );
            }
            live.saved_phase = live.campaign.phase;
            live.saved_at = now;
            if live.campaign.phase.is_final() {
                finished.push(i);
            }
        }
        for i in finished.into_iter().rev() {
            let live = self.open.remove(i);
            self.record_final(&live.campaign, store);
            if live.campaign.kind == Kind::Live {
                self.ended_live.push(live.campaign.clone());
            }
            self.next_plan = Instant::now();
        }
    }

    /// Logs, records the event and updates metrics for a campaign that ended (already saved).
    fn record_final(&self, c: &Campaign, store: &Store) {
        let tally = c.tally();
        let detail = match c.phase {
            Phase::Done => format!(
                "campaign {} ({}) at {}: {} passed, {} failed",
                c.id, c.schedule, c.instant, tally.passed, tally.failed
            ),
            _ => format!(
                "campaign {} ({}) at {}: {} ({})",
                c.id,
                c.schedule,
                c.instant,
                c.phase.as_str(),
                c.note.as_deref().unwrap_or("")
            ),
        };
        if c.phase == Phase::Missed {
            tracing::warn!(campaign = c.id, schedule = %c.schedule, instant = %c.instant, "missed");
        }
        let _ = store.record(Event {
            at: Timestamp::now(),
            siren: None,
            kind: format!("sounding_{}", c.phase.as_str()),
            detail,
        });
        self.board.lock().unwrap_or_else(std::sync::PoisonError::into_inner).finished(c);
    }

    fn live(&mut self, campaign: u32) -> Option<&mut Live> {
        self.open.iter_mut().find(|l| l.campaign.id == campaign)
    }

    /// A device's answer; returns a follow-up to send.
    pub fn on_reply(
        &mut self,
        campaign: u32,
        target: usize,
        command: Command,
        reply: &Message,
        fleet: &FleetState,
        now: Timestamp,
    ) -> Option<Outgoing> {
        let live = self.live(campaign)?;
        let follow = live.campaign.on_reply(target, command, reply, now)?;
        outgoing(&live.campaign, &live.fleet_index, fleet, follow, now)
    }

    /// Stops the targets among `sirens` (fleet indices) of every open campaign: their arms are
    /// cancelled, nothing more is sent to them. Returns the cancels to send.
    /// The open campaigns with any of `sirens` (fleet indices) among their targets.
    pub fn campaigns_of(&self, sirens: &[usize]) -> Vec<u32> {
        self.open.iter().filter(|l| sirens.iter().any(|f| l.target_of.contains_key(f))).map(|l| l.campaign.id).collect()
    }

    pub fn stop(&mut self, sirens: &[usize], why: &str, now: Timestamp, fleet: &FleetState) -> Vec<Outgoing> {
        let mut out = Vec::new();
        for live in &mut self.open {
            let targets: Vec<usize> = sirens.iter().filter_map(|f| live.target_of.get(f).copied()).collect();
            for target in targets {
                if live.campaign.stop_target(target, why, now) {
                    tracing::info!(campaign = live.campaign.id, siren = %live.campaign.targets[target].siren, "stopped");
                }
            }
            // The cancels of armed targets go at once, not at the next poll.
            let index = &live.fleet_index;
            let reachable = |i: usize| index[i].is_some_and(|f| fleet.siren(f).liveness.reachable());
            for action in live.campaign.poll(now, &reachable) {
                if let Some(o) = outgoing(&live.campaign, index, fleet, action, now) {
                    out.push(o);
                }
            }
        }
        out
    }

    /// Whether an open campaign explains siren `fleet_index` being armed or sounding: one past
    /// planning that targets it (and is the campaign the device names, when it names one).
    pub fn claims(&self, fleet_index: usize, campaign: Option<u32>) -> bool {
        let campaign = campaign.filter(|&c| c != 0);
        self.open.iter().any(|l| {
            l.campaign.phase != Phase::Planned
                && campaign.is_none_or(|c| c == l.campaign.id)
                && l.target_of.contains_key(&fleet_index)
        })
    }

    /// What siren `fleet_index` said about itself, for the campaigns that have it armed.
    pub fn on_status(&mut self, fleet_index: usize, view: &DeviceView, now: Timestamp) {
        for live in &mut self.open {
            if live.campaign.phase != Phase::Arming {
                continue;
            }
            if let Some(&t) = live.target_of.get(&fleet_index) {
                live.campaign.on_status(t, view, now);
            }
        }
    }

    /// The daemon set the clocks of `sirens` (fleet indices) at `now`.
    pub fn clocks_set(&mut self, sirens: &[usize], now: Timestamp) {
        for live in &mut self.open {
            for &f in sirens {
                if let Some(&t) = live.target_of.get(&f) {
                    live.campaign.clock_set(t, now);
                }
            }
        }
    }

    /// Whether some campaign needs the engine awake within milliseconds.
    pub fn urgent(&self, now: Timestamp) -> bool {
        self.open.iter().any(|l| l.campaign.urgent(now))
    }

    /// The sirens (fleet indices) whose clocks must not be stepped now ([`Campaign::clocks_held`]).
    pub fn clocks_held(&self) -> impl Iterator<Item = usize> + '_ {
        self.open.iter().flat_map(|l| l.campaign.clocks_held().filter_map(|t| l.fleet_index.get(t).copied().flatten()))
    }

    /// Whether siren `index` (fleet index) is among [`Runner::clocks_held`].
    pub fn clock_held(&self, index: usize) -> bool {
        self.open.iter().any(|l| l.target_of.get(&index).is_some_and(|&t| l.campaign.clock_held(t)))
    }

    /// The broadcast trigger of `campaign` for a serial bus whose sirens are `members` (fleet
    /// indices), if every one of them is a target of the campaign waiting for a trigger; they
    /// are then marked triggered. `None` otherwise: a broadcast would also start sirens that
    /// are not targets, or that are armed, so the triggers go one by one.
    pub fn trigger_bus(&mut self, campaign: u32, members: &[usize]) -> Option<Message> {
        let live = self.live(campaign)?;
        let targets: Option<Vec<usize>> = members.iter().map(|&m| live.target_of.get(&m).copied()).collect();
        live.campaign.broadcast_trigger(&targets?)
    }

    /// A request not sent now (its bus is busy): asked again on the next poll.
    pub fn defer(&mut self, campaign: u32, target: usize) {
        if let Some(live) = self.live(campaign) {
            live.campaign.defer(target);
        }
    }

    /// A request given up after the master's retries.
    pub fn on_failed(&mut self, campaign: u32, target: usize, now: Timestamp) {
        if let Some(live) = self.live(campaign) {
            live.campaign.on_failed(target, now);
        }
    }

    /// A sounding report from a siren. `None`: no open campaign has the siren in the report's
    /// campaign (a sounding nobody here ordered, or a campaign that is over); otherwise whether
    /// it is that target's first report.
    pub fn on_report(&mut self, fleet_index: usize, report: &SoundingReport) -> Option<bool> {
        let mut ours = None;
        for live in &mut self.open {
            if live.campaign.id != report.campaign {
                continue;
            }
            if let Some(&t) = live.target_of.get(&fleet_index) {
                let first = live.campaign.on_report(t, report);
                ours = Some(ours.unwrap_or(false) || first);
            }
        }
        ours
    }

    /// The earliest instant an ad-hoc sounding requested at `now` may have: time to
    /// synchronise and arm.
    pub fn earliest_ad_hoc(&self, now: Timestamp) -> Timestamp {
        now + Duration::from_secs(u64::from(self.config.arm_cutoff_s) + 10)
    }

    /// An operator's ad-hoc sounding. Returns the campaign id.
    pub fn schedule_ad_hoc(
        &mut self,
        request: &AdHoc,
        by: &str,
        now: Timestamp,
        store: &Store,
        fleet: &FleetState,
    ) -> Result<u32, RequestError> {
        if request.kind == Kind::Live {
            return Err(RequestError::Invalid {
                field: "kind",
                message: "a LIVE warning is requested and approved at /api/activations, never here".into(),
            });
        }
        let earliest = self.earliest_ad_hoc(now);
        if request.at < earliest {
            return Err(RequestError::Invalid {
                field: "at",
                message: format!("`at` must leave time to synchronise and arm: {earliest} at the earliest"),
            });
        }
        for z in &request.zones {
            if !fleet.sirens().iter().any(|s| s.zone.is_within(z)) {
                return Err(RequestError::Invalid { field: "zones", message: format!("no siren is in zone `{z}`") });
            }
        }
        let segments = super::sequence::segments(request.kind, &request.sequence)
            .map_err(|e| RequestError::Invalid { field: "sequence", message: format!("sequence {e}") })?;
        let duration = Duration::from_millis(super::sequence::duration_ms(&segments));
        let span = conflicts::Span::of(request.at, Duration::from_secs(u64::from(self.config.lead_s)), duration);
        if let Some(why) = self.collides(&span, &request.zones) {
            return Err(RequestError::Conflict(why));
        }
        let id = store
            .create_campaign(AD_HOC, request.at)?
            .ok_or_else(|| RequestError::Conflict("an ad-hoc sounding is already planned at that instant".into()))?;
        let settings = Settings::from_config(&self.config, self.config.lead_s);
        let targets = Self::targets(fleet, &request.zones);
        let mut c =
            Campaign::new(id, AD_HOC.into(), request.kind, request.at, request.sequence.clone(), settings, targets)
                .map_err(|e| RequestError::Invalid { field: "sequence", message: e.to_string() })?;
        c.note = Some(format!("requested by {by}"));
        store.save_campaign(&c)?;
        store.flush()?;
        self.adopt(c, fleet);
        Ok(id)
    }

    /// Starts the campaign of an approved LIVE activation: `sequence` on the sirens of `zones`
    /// and `sirens` (neither: every siren), at `at` or at once. It pre-empts every other
    /// campaign on those sirens (their targets are stopped, recorded as pre-empted); nothing
    /// pre-empts it. Returns the campaign's id and the cancels of pre-empted arms to send.
    #[allow(clippy::too_many_arguments, reason = "an activation is all of these")]
    pub fn start_live(
        &mut self,
        activation: u32,
        (zones, sirens): (&[String], &[String]),
        sequence: &[Step],
        at: Option<Timestamp>,
        approved_at: Timestamp,
        store: &Store,
        fleet: &FleetState,
    ) -> Result<(u32, Vec<Outgoing>), RequestError> {
        let now = Timestamp::now();
        // "Now" is now: the triggers leave at once (the campaign triggers what is not armed
        // by its instant).
        let (instant, lead_s) = match at {
            Some(t) if t > now + jiff::SignedDuration::from_secs(i64::from(self.config.arm_cutoff_s) + 10) => {
                (t, self.config.lead_s)
            }
            _ => (now, 0),
        };
        // A drawn area can name thousands of sirens.
        let named: std::collections::HashSet<&str> = sirens.iter().map(String::as_str).collect();
        let targets: Vec<Target> = fleet
            .sirens()
            .iter()
            .filter(|s| {
                (zones.is_empty() && sirens.is_empty())
                    || named.contains(s.id.as_str())
                    || zones.iter().any(|z| s.zone.is_within(z))
            })
            .map(|s| Target::new(s.id.clone(), s.zone.to_string()))
            .collect();
        let id = store
            .create_campaign(&format!("live-{activation}"), instant)?
            .ok_or_else(|| RequestError::Conflict(format!("activation {activation} already has a campaign")))?;
        let mut settings = Settings::from_config(&self.config, lead_s);
        settings.lead_s = lead_s;
        let mut c =
            Campaign::new(id, format!("live-{activation}"), Kind::Live, instant, sequence.to_vec(), settings, targets)
                .map_err(|e| RequestError::Invalid { field: "signal", message: e.to_string() })?;
        c.approved_at = Some(approved_at);
        c.note = Some(format!("LIVE activation {activation}"));
        // Pre-empt every other campaign on these sirens.
        let indices: Vec<usize> = c.targets.iter().filter_map(|t| fleet.index(&t.siren)).collect();
        let why = format!("pre-empted by LIVE activation {activation}");
        let mut out = Vec::new();
        for live in &mut self.open {
            let mut pre_empted = 0;
            let targets: Vec<usize> = indices.iter().filter_map(|f| live.target_of.get(f).copied()).collect();
            for target in targets {
                if live.campaign.stop_target(target, &why, now) {
                    pre_empted += 1;
                }
            }
            if pre_empted > 0 {
                tracing::warn!(
                    campaign = live.campaign.id,
                    sirens = pre_empted,
                    activation,
                    "pre-empted by a LIVE warning"
                );
                let detail = format!(
                    "campaign {} ({}): {pre_empted} sirens pre-empted by LIVE activation {activation}",
                    live.campaign.id, live.campaign.schedule
                );
                let _ = store.record(Event { at: now, siren: None, kind: "sounding_preempted".into(), detail });
                let index = &live.fleet_index;
                let reachable = |i: usize| index[i].is_some_and(|f| fleet.siren(f).liveness.reachable());
                for action in live.campaign.poll(now, &reachable) {
                    if let Some(o) = outgoing(&live.campaign, index, fleet, action, now) {
                        out.push(o);
                    }
                }
            }
        }
        store.save_campaign(&c)?;
        self.adopt(c, fleet);
        Ok((id, out))
    }

    /// What a sounding holding the sirens of `zones` for `span` would collide with: an open
    /// campaign, or an occurrence of a schedule.
    fn collides(&self, span: &conflicts::Span, zones: &[String]) -> Option<String> {
        for c in self.open() {
            let targets: Vec<String> = c.targets.iter().map(|t| t.zone.clone()).collect();
            let theirs = conflicts::Span::of(
                c.instant,
                Duration::from_secs(u64::from(c.settings.lead_s)),
                Duration::from_millis(super::sequence::duration_ms(c.segments())),
            );
            if !c.phase.is_final() && theirs.overlaps(span) && conflicts::targets_meet(zones, &targets) {
                return Some(format!(
                    "it would hold sirens that campaign {} ({} at {}) holds from {} to {}",
                    c.id, c.schedule, c.instant, theirs.from, theirs.to
                ));
            }
        }
        for s in &self.schedules {
            if !conflicts::targets_meet(zones, &s.zones) {
                continue;
            }
            let reach = jiff::SignedDuration::try_from(s.lead + s.duration()).unwrap_or_default() + conflicts::AFTER;
            let Some(t) = s.after(span.from - reach).next() else { continue };
            if conflicts::span(s, t).overlaps(span) {
                return Some(format!("it would hold sirens that the `{}` sounding at {t} holds", s.name));
            }
        }
        None
    }

    /// Cancels a planned or arming campaign; returns the disarm messages to send.
    pub fn cancel(
        &mut self,
        campaign: u32,
        by: &str,
        now: Timestamp,
        store: &Store,
        fleet: &FleetState,
    ) -> Result<Vec<Outgoing>, RequestError> {
        let Some(live) = self.live(campaign) else {
            return Err(match store.campaign(campaign)? {
                Some(c) => {
                    RequestError::Conflict(format!("campaign {campaign} is already over ({})", c.phase.as_str()))
                }
                None => RequestError::Unknown(campaign),
            });
        };
        let actions = live.campaign.cancel(by, now).map_err(|e| RequestError::Conflict(e.to_owned()))?;
        let out =
            actions.into_iter().filter_map(|a| outgoing(&live.campaign, &live.fleet_index, fleet, a, now)).collect();
        self.persist(store, true);
        store.flush()?;
        Ok(out)
    }
}

/// An operator's request for a sounding outside the schedules.
#[derive(Debug, Clone, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdHoc {
    /// When it sounds (RFC 3339), at least the arming lead ahead.
    #[schema(value_type = String, format = DateTime)]
    pub at: Timestamp,
    #[serde(default = "test_kind")]
    pub kind: Kind,
    #[serde(default)]
    pub zones: Vec<String>,
    pub sequence: Vec<Step>,
}

fn test_kind() -> Kind {
    Kind::Test
}

/// Logs and records what a campaign noticed about a siren.
fn record_notice(c: &Campaign, notice: Notice, store: &Store) {
    let (target, kind, detail) = match notice {
        Notice::ClockMoved { target, moved_us } => {
            #[allow(clippy::cast_precision_loss, reason = "a display value")]
            let ms = moved_us as f64 / 1000.0;
            let siren = c.targets.get(target).map_or("", |t| t.siren.as_str());
            tracing::warn!(campaign = c.id, siren, moved_ms = ms, "a clock moved after arming: armed again");
            (
                target,
                "clock_moved",
                format!(
                    "campaign {}: the clock moved after arming, the start would be {ms:+.1} ms off: armed again",
                    c.id
                ),
            )
        }
        Notice::ClockDrift { target, ppm } => {
            let siren = c.targets.get(target).map_or("", |t| t.siren.as_str());
            tracing::warn!(campaign = c.id, siren, ppm, "a clock drifts faster than a healthy clock");
            (
                target,
                "clock_drift",
                format!(
                    "campaign {}: the clock drifts {ppm:+.0} ppm (positive: runs fast); its start is compensated",
                    c.id
                ),
            )
        }
    };
    let Some(t) = c.targets.get(target) else { return };
    let _ = store.record(Event { at: Timestamp::now(), siren: Some(t.siren.clone()), kind: kind.to_owned(), detail });
}

fn outgoing(
    c: &Campaign,
    index: &[Option<usize>],
    fleet: &FleetState,
    action: Action,
    now: Timestamp,
) -> Option<Outgoing> {
    let f = index.get(action.target).copied().flatten()?;
    Some(Outgoing { campaign: c.id, action, key_id: fleet.siren(f).key_id, message: c.message(&action, now) })
}

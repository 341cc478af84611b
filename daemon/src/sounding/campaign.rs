//! One occurrence of a schedule (or an ad-hoc sounding) as a sans-IO state machine:
//! planned → arming → running → verifying → done, or missed, or cancelled.
//!
//! The campaign says what to send to which target and when ([`Campaign::poll`]); the engine
//! sends it through the protocol master and feeds answers back ([`Campaign::on_reply`],
//! [`Campaign::on_failed`], [`Campaign::on_report`]). Time is always an argument, so tests run
//! whole campaigns on virtual time. Everything that must survive a restart is serialisable;
//! what is in flight is not, and is simply asked again after a restart (every command is
//! idempotent at the device).

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use siren_proto::master::TimeSample;
use siren_proto::message::{Arm, Message, NakCode, Segment, SoundingReport, Trigger};

use super::clock_watch::ClockWatch;
use super::sequence::{self, Kind, SequenceError, Step};
use super::verdict::{Criteria, Evidence, FailReason, Verdict, judge};

/// Where a campaign is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Planned,
    Arming,
    Running,
    Verifying,
    Done,
    Missed,
    Cancelled,
}

impl Phase {
    pub const ALL: [Phase; 7] =
        [Phase::Planned, Phase::Arming, Phase::Running, Phase::Verifying, Phase::Done, Phase::Missed, Phase::Cancelled];

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Planned => "planned",
            Phase::Arming => "arming",
            Phase::Running => "running",
            Phase::Verifying => "verifying",
            Phase::Done => "done",
            Phase::Missed => "missed",
            Phase::Cancelled => "cancelled",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Phase::ALL.into_iter().find(|p| p.as_str() == name)
    }

    /// Whether nothing more will happen.
    pub fn is_final(self) -> bool {
        matches!(self, Phase::Done | Phase::Missed | Phase::Cancelled)
    }
}

/// How campaigns are run (`[soundings]`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    pub lead_s: u32,
    pub arm_cutoff_s: u32,
    pub tolerance_ms: u32,
    pub max_clock_offset_ms: u32,
    pub verify_grace_s: u32,
    pub min_sound_level_db: f64,
    /// Interval between measurements of an armed siren's clock until the instant, s (0: none).
    #[serde(default = "default_clock_watch")]
    pub clock_watch_s: u32,
    /// A clock drifting faster than this is flagged, ppm.
    #[serde(default = "default_max_drift")]
    pub max_drift_ppm: u32,
}

/// Campaigns stored before the clock watch existed are watched as the defaults say.
fn default_clock_watch() -> u32 {
    crate::config::Soundings::default().clock_watch_s
}
fn default_max_drift() -> u32 {
    crate::config::Soundings::default().max_drift_ppm
}

impl Settings {
    /// From the configuration, with a schedule's own lead.
    pub fn from_config(c: &crate::config::Soundings, lead_s: u32) -> Self {
        Self {
            lead_s,
            arm_cutoff_s: c.arm_cutoff_s,
            tolerance_ms: c.tolerance_ms,
            max_clock_offset_ms: c.max_clock_offset_ms,
            verify_grace_s: c.verify_grace_s,
            min_sound_level_db: c.min_sound_level_db,
            clock_watch_s: c.clock_watch_s,
            max_drift_ppm: c.max_drift_ppm,
        }
    }
}

/// Synchronisation attempts before a clock that stays off is flagged and armed compensated.
/// How long after its instant a LIVE warning's trigger is still sent and sounded, µs.
pub const LIVE_TRIGGER_WINDOW_US: i64 = 60_000_000;
const SYNC_ATTEMPTS: u8 = 3;
/// Wait before asking again after a NAK or a request that went unanswered, µs.
const RETRY_US: i64 = 5_000_000;
/// Interval between report requests while verifying, µs.
const REPORT_EVERY_US: i64 = 10_000_000;
/// After the sounding, clock measurements are repeated (a second apart, at most this many)
/// until one has a round trip no longer than twice the one before the sounding (or than
/// `GOOD_ROUND_TRIP_US`): right after a sounding every siren reports at once, and an exchange
/// caught in that queue is lopsided, its offset off by up to half its round trip.
const AFTER_SAMPLES: u8 = 4;
const AFTER_RETRY_US: i64 = 1_000_000;
const GOOD_ROUND_TRIP_US: i64 = 20_000;
/// Exchanges taken at most before a clock correction when their round trips are longer than
/// [`GOOD_ROUND_TRIP_US`]: the correction uses the shortest.
const ADJUST_SAMPLES: u8 = 3;
/// An armed clock is not measured in the last seconds before the instant: a correction
/// (a cancel, then a trigger) would not arrive in time.
const WATCH_STOP_US: i64 = 2_000_000;
/// Least interval between two measurements of an armed clock that status reports ask for.
const WATCH_RECHECK_US: i64 = 5_000_000;
/// Least one-way latency allowed for a status report's clock reading (a serial report's
/// wire time at 9600 baud, a broker's queue).
const STATUS_LATENCY_US: i64 = 100_000;

/// A clock measurement: the offset to add to the device clock to get true time, at an instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClockSample {
    pub at_us: i64,
    pub offset_us: i64,
    pub round_trip_us: i64,
}

/// What is next for a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetStep {
    /// Measure the clock (and correct it).
    Sync,
    /// Send the arm message.
    Arm,
    /// Armed; its clock is watched until the instant.
    Armed,
    /// Armed with a start its clock no longer keeps (it stepped or drifted): cancel, then
    /// arm again (past the cut-off, trigger at the instant).
    Disarm,
    /// Not armed by the cut-off: trigger at the instant.
    Trigger,
    /// Trigger acknowledged.
    Triggered,
    /// Given up before the instant (refused to the end, or unreachable), or left out while in
    /// maintenance.
    Idle,
    /// Armed, and taken into maintenance since: its arm is cancelled, and it is left out.
    Withdraw,
}

/// One siren's part in a campaign.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[allow(clippy::struct_excessive_bools, reason = "independent facts the report shows one by one")]
pub struct Target {
    pub siren: String,
    pub zone: String,
    pub step: TargetStep,
    pub sync_attempts: u8,
    /// The last clock measurement before the instant.
    pub before: Option<ClockSample>,
    /// A clock measurement after the sounding, to correct for drift.
    pub after: Option<ClockSample>,
    /// The device clock stayed off by more than the limit after resynchronisation.
    pub clock_flagged: bool,
    /// The device refused to arm as never synchronised: the next measurement is corrected
    /// however small it is.
    #[serde(default)]
    pub needs_adjust: bool,
    /// Clock measurements taken after the sounding (`after` keeps the shortest round trip).
    #[serde(default)]
    pub after_samples: u8,
    /// The start instant sent, by the device's clock.
    pub armed_start_us: Option<i64>,
    /// The measurements of its clock since its last correction, watched while armed.
    #[serde(default)]
    pub watch: ClockWatch,
    /// Times it was cancelled and armed again because its clock moved after arming.
    #[serde(default)]
    pub rearms: u8,
    /// The largest start error a measurement after arming found (before it was re-armed), µs.
    #[serde(default)]
    pub moved_us: Option<i64>,
    /// Its clock stepped between the last measurement before the instant and the first after
    /// the sounding: the start skew is the worse of the two readings.
    #[serde(default)]
    pub start_uncertain: bool,
    /// When the daemon last set its clock (a serial bus's `TIME_SET`), µs: a measurement
    /// before that describes another reading.
    #[serde(default)]
    pub clock_set_us: Option<i64>,
    /// The maintenance window it was in while the campaign armed or ran (its summary): it is
    /// not sounded, and is reported `in_maintenance` unless it passes anyway.
    #[serde(default)]
    pub maintenance: Option<String>,
    /// Who stopped it and why (`POST /api/stop`): nothing more is sent to it.
    #[serde(default)]
    pub stopped: Option<String>,
    /// Got a trigger-now instead of arming.
    pub triggered: bool,
    /// The last refusal, if any.
    pub nak: Option<String>,
    #[serde(with = "stored_report")]
    pub report: Option<SoundingReport>,
    /// Whether every link was down when verification ended.
    pub unreachable: bool,
    pub verdict: Option<Verdict>,
    /// Start error, true time, µs.
    pub skew_us: Option<i64>,
    #[serde(skip)]
    busy: bool,
    #[serde(skip)]
    retry_at_us: i64,
    /// The best sample (and its `t1`) of the exchanges taken before a correction.
    #[serde(skip)]
    sync_best: Option<(i64, ClockSample)>,
    #[serde(skip)]
    sync_samples: u8,
    /// When its armed clock is measured next (0 after a restart: at once).
    #[serde(skip)]
    watch_at_us: i64,
    /// A measurement was under way when the daemon set its clock: its answer may describe
    /// the clock before the set, and is not used.
    #[serde(skip)]
    stale_sample: bool,
}

impl Target {
    /// NTP-style: a clock is set from the shortest round trip of a few exchanges, never from
    /// one lopsided exchange (a request that waited in a queue on its way out reads as a
    /// device ahead by half the wait). Returns the sample (and its `t1`) to act on, or `None`
    /// to take another.
    fn best_before(&mut self, t1_us: i64, sample: ClockSample, max_offset_us: i64) -> Option<(i64, ClockSample)> {
        let best = match self.sync_best {
            Some((t1, b)) if b.round_trip_us <= sample.round_trip_us || sample.round_trip_us < 0 => (t1, b),
            _ => (t1_us, sample),
        };
        self.sync_samples = self.sync_samples.saturating_add(1);
        let would_adjust = best.1.offset_us.abs() > max_offset_us || self.needs_adjust;
        if would_adjust && best.1.round_trip_us > GOOD_ROUND_TRIP_US && self.sync_samples < ADJUST_SAMPLES {
            self.sync_best = Some(best);
            return None;
        }
        (self.sync_best, self.sync_samples) = (None, 0);
        Some(best)
    }

    pub fn new(siren: String, zone: String) -> Self {
        Self {
            siren,
            zone,
            step: TargetStep::Sync,
            sync_attempts: 0,
            before: None,
            after: None,
            clock_flagged: false,
            needs_adjust: false,
            after_samples: 0,
            armed_start_us: None,
            watch: ClockWatch::default(),
            rearms: 0,
            moved_us: None,
            start_uncertain: false,
            clock_set_us: None,
            maintenance: None,
            stopped: None,
            triggered: false,
            nak: None,
            report: None,
            unreachable: false,
            verdict: None,
            skew_us: None,
            busy: false,
            retry_at_us: 0,
            sync_best: None,
            sync_samples: 0,
            watch_at_us: 0,
            stale_sample: false,
        }
    }

    /// A measurement of its armed clock at `now_us`: when the start it would make is off by
    /// more than `max_offset_us` beyond the measurement's error, it is to be disarmed and armed
    /// again, and the start error is returned; when only within the error, it is measured again
    /// a second later; otherwise at `next_us`.
    fn watched(
        &mut self,
        sample: &ClockSample,
        instant_us: i64,
        max_offset_us: i64,
        now_us: i64,
        next_us: i64,
    ) -> Option<i64> {
        let compensated = instant_us - self.armed_start_us.unwrap_or(instant_us);
        let moved = self.expected_offset_us(instant_us) - compensated;
        if moved.abs() - sample.round_trip_us.max(0) / 2 > max_offset_us {
            self.moved_us = Some(self.moved_us.map_or(moved, |m| if m.abs() >= moved.abs() { m } else { moved }));
            self.rearms = self.rearms.saturating_add(1);
            self.step = TargetStep::Disarm;
            self.retry_at_us = 0;
            return Some(moved);
        }
        self.watch_at_us = if moved.abs() > max_offset_us { now_us + AFTER_RETRY_US } else { next_us };
        None
    }

    /// The offset its clock is expected to have at `instant_us`: the latest measurement,
    /// carried forward by the drift the watch found.
    pub fn expected_offset_us(&self, instant_us: i64) -> i64 {
        self.watch.predict(instant_us).or(self.before.map(|s| s.offset_us)).unwrap_or(0)
    }

    /// The device clock's offset at true instant `t_us`: interpolated between the samples
    /// taken before and after, so drift between them is accounted for.
    /// Whether the measurement after the sounding is good enough, or no better one will come.
    pub fn after_settled(&self) -> bool {
        let good = |a: &ClockSample| {
            let limit = self.before.map_or(GOOD_ROUND_TRIP_US, |b| (2 * b.round_trip_us).max(GOOD_ROUND_TRIP_US));
            a.round_trip_us <= limit
        };
        self.after.as_ref().is_some_and(good) || self.after_samples >= AFTER_SAMPLES
    }

    /// The offsets at `t_us` that the measurements before and after it give (each carried
    /// to `t_us` by the drift found), when they disagree by more than `limit_us` and by more
    /// than their error: the clock stepped between them, and interpolating would place the
    /// step at an arbitrary moment.
    pub fn offsets_apart(&self, t_us: i64, limit_us: i64) -> Option<(i64, i64)> {
        let (b, a) = (self.before?, self.after?);
        // A clock the daemon set between them: it is known which one holds at `t_us`.
        if self.clock_set_us.is_some_and(|set| set > b.at_us && set < a.at_us) {
            return None;
        }
        let from_before = self.expected_offset_us(t_us);
        #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation, reason = "µs, far below 2^52")]
        let from_after =
            a.offset_us + self.watch.drift_ppm().map_or(0, |ppm| (ppm * 1e-6 * (a.at_us - t_us) as f64).round() as i64);
        let error = (b.round_trip_us.max(0) + a.round_trip_us.max(0)) / 2;
        ((from_before - from_after).abs() > limit_us.max(error)).then_some((from_before, from_after))
    }

    pub fn offset_at(&self, t_us: i64) -> Option<i64> {
        if let (Some(b), Some(a), Some(set)) = (self.before, self.after, self.clock_set_us) {
            if set > b.at_us && set < a.at_us {
                return Some(if set <= t_us { a.offset_us } else { self.expected_offset_us(t_us) });
            }
        }
        match (self.before, self.after) {
            (Some(b), Some(a)) if a.at_us > b.at_us => {
                let span = i128::from(a.at_us - b.at_us);
                let part = i128::from(t_us - b.at_us).clamp(0, span);
                let delta = i128::from(a.offset_us - b.offset_us) * part / span;
                Some(b.offset_us + i64::try_from(delta).unwrap_or(0))
            }
            (Some(b), _) => Some(b.offset_us),
            (None, Some(a)) => Some(a.offset_us),
            (None, None) => None,
        }
    }
}

/// Something about a target that people should hear of (the runner records it as an event).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Notice {
    /// Its clock moved after it was armed: it would have started `moved_us` off, so it is
    /// cancelled and armed again (or triggered at the instant, past the cut-off).
    ClockMoved { target: usize, moved_us: i64 },
    /// Its clock drifts faster than any healthy clock, `ppm` (positive: runs fast).
    ClockDrift { target: usize, ppm: f64 },
}

/// What the device said about itself in a status report or heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceView {
    pub state: siren_proto::message::DeviceState,
    /// The campaign armed or sounding, when the message tells (status reports).
    pub campaign: Option<u32>,
    /// Its clock when the report was made, and the daemon's clock when it arrived, µs.
    pub clock: Option<(i64, i64)>,
}

/// What the campaign asks the engine to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// `TIME_SYNC_REQUEST` stamped now.
    Sync,
    /// `CLOCK_ADJUST` for the exchange started at `sync_t1_us`.
    Adjust {
        sync_t1_us: i64,
        offset_us: i64,
    },
    Arm,
    Trigger,
    Report,
    Cancel,
}

/// One thing to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Action {
    pub target: usize,
    pub command: Command,
}

/// A campaign: one sounding of many sirens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Campaign {
    /// The protocol's campaign id (non-zero).
    pub id: u32,
    /// The schedule it is an occurrence of, or `ad-hoc`.
    pub schedule: String,
    pub kind: Kind,
    pub instant: Timestamp,
    pub sequence: Vec<Step>,
    pub settings: Settings,
    pub phase: Phase,
    /// Who asked for it (ad-hoc) or cancelled it.
    pub note: Option<String>,
    pub targets: Vec<Target>,
    /// When arming began, and when the last target acknowledged its arm (never, if some
    /// target was not armed): how long arming the fleet took.
    #[serde(default)]
    pub arming_began: Option<Timestamp>,
    #[serde(default)]
    pub all_armed: Option<Timestamp>,
    /// A LIVE warning's approval: its sirens' latency counts from here.
    #[serde(default)]
    pub approved_at: Option<Timestamp>,
    #[serde(skip)]
    segments: Vec<Segment>,
    #[serde(skip)]
    notices: Vec<Notice>,
    /// Something changed since the last [`Campaign::take_dirty`].
    #[serde(skip)]
    dirty: bool,
}

impl Campaign {
    /// A planned campaign.
    #[allow(clippy::too_many_arguments, reason = "a campaign is all of these")]
    pub fn new(
        id: u32,
        schedule: String,
        kind: Kind,
        instant: Timestamp,
        sequence: Vec<Step>,
        settings: Settings,
        targets: Vec<Target>,
    ) -> Result<Self, SequenceError> {
        let segments = sequence::segments(kind, &sequence)?;
        Ok(Self {
            id,
            schedule,
            kind,
            instant,
            sequence,
            settings,
            phase: Phase::Planned,
            note: None,
            targets,
            arming_began: None,
            all_armed: None,
            approved_at: None,
            segments,
            notices: Vec::new(),
            dirty: true,
        })
    }

    /// A campaign read back from the store.
    pub fn restore(json: &str) -> Result<Self, String> {
        let mut c: Self = serde_json::from_str(json).map_err(|e| e.to_string())?;
        c.segments = sequence::segments(c.kind, &c.sequence).map_err(|e| e.to_string())?;
        Ok(c)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    fn instant_us(&self) -> i64 {
        self.instant.as_microsecond()
    }

    fn end_us(&self) -> i64 {
        let ms = i64::try_from(sequence::duration_ms(&self.segments)).unwrap_or(i64::MAX / 1000);
        self.instant_us() + ms * 1000
    }

    /// How long after the instant a trigger may still leave and sound: for a test, half the
    /// tolerance (never late); for a LIVE warning, [`LIVE_TRIGGER_WINDOW_US`] (late is better
    /// than never, and its latency is measured).
    fn trigger_window_us(&self) -> i64 {
        if self.kind == Kind::Live { LIVE_TRIGGER_WINDOW_US } else { self.tolerance_us() / 2 }
    }

    fn tolerance_us(&self) -> i64 {
        i64::from(self.settings.tolerance_ms) * 1000
    }

    /// What happened since last asked that people should hear of.
    pub fn take_notices(&mut self) -> Vec<Notice> {
        std::mem::take(&mut self.notices)
    }

    /// When an armed target's clock is measured next, after a measurement at `now_us` (and
    /// its first at the cut-off, whatever the interval: a clock that moved is then still
    /// caught in time for a trigger).
    fn next_watch(&self, now_us: i64) -> i64 {
        let cutoff_us = self.instant_us() - i64::from(self.settings.arm_cutoff_s) * 1_000_000;
        let every = match self.settings.clock_watch_s {
            0 => i64::MAX,
            s => now_us.saturating_add(i64::from(s) * 1_000_000),
        };
        if now_us < cutoff_us { every.min(cutoff_us) } else { every }
    }

    /// Whether it changed since last asked, so the engine persists it.
    pub fn take_dirty(&mut self) -> bool {
        std::mem::take(&mut self.dirty)
    }

    fn set_phase(&mut self, phase: Phase) {
        if self.phase != phase {
            self.phase = phase;
            self.dirty = true;
        }
    }

    /// Records that the daemon was not running when this occurrence was due.
    pub fn miss(&mut self, why: &str) {
        self.note = Some(why.to_owned());
        self.set_phase(Phase::Missed);
    }

    /// Cancels a campaign that has not started; armed devices are disarmed. Refused once the
    /// instant has come (stopping a sounding is a different, deliberate act).
    pub fn cancel(&mut self, by: &str, now: Timestamp) -> Result<Vec<Action>, &'static str> {
        if self.phase.is_final() {
            return Err("the campaign is already over");
        }
        if now >= self.instant || !matches!(self.phase, Phase::Planned | Phase::Arming) {
            return Err("the sounding has started; it can no longer be cancelled");
        }
        self.note = Some(format!("cancelled by {by}"));
        self.set_phase(Phase::Cancelled);
        let actions = (0..self.targets.len())
            .filter(|&i| {
                matches!(self.targets[i].step, TargetStep::Armed | TargetStep::Disarm | TargetStep::Withdraw)
                    || self.targets[i].busy
            })
            .map(|target| Action { target, command: Command::Cancel })
            .collect();
        Ok(actions)
    }

    /// Advances the campaign to `now` and says what to send. `reachable(i)` tells whether
    /// target `i` has a working link (unreachable targets are not sent anything).
    pub fn poll(&mut self, now: Timestamp, reachable: &dyn Fn(usize) -> bool) -> Vec<Action> {
        let now_us = now.as_microsecond();
        let instant = self.instant_us();
        let lead_us = i64::from(self.settings.lead_s) * 1_000_000;
        let cutoff_us = instant - i64::from(self.settings.arm_cutoff_s) * 1_000_000;
        let mut actions = Vec::new();
        if self.phase == Phase::Planned {
            // A test never sounds late; a LIVE warning is triggered within its window.
            if now_us >= instant && self.kind != Kind::Live {
                self.miss("the instant passed before arming could start");
                return actions;
            }
            if now_us < instant - lead_us {
                return actions;
            }
            self.set_phase(Phase::Arming);
            self.arming_began = Some(now);
        }
        if self.phase == Phase::Arming {
            // Triggers may leave up to half the tolerance after the instant; then it runs.
            // A LIVE warning runs as soon as every siren has it (its window is for stragglers).
            let all_have_it = self.kind == Kind::Live
                && now_us >= instant
                && self
                    .targets
                    .iter()
                    .all(|t| !t.busy && matches!(t.step, TargetStep::Triggered | TargetStep::Armed | TargetStep::Idle));
            if now_us >= instant + self.trigger_window_us() || all_have_it {
                self.set_phase(Phase::Running);
            } else {
                for i in 0..self.targets.len() {
                    let t = &mut self.targets[i];
                    if now_us >= cutoff_us && matches!(t.step, TargetStep::Sync | TargetStep::Arm) {
                        t.step = TargetStep::Trigger;
                        t.retry_at_us = 0;
                        self.dirty = true;
                    }
                    if t.busy || t.retry_at_us > now_us || !reachable(i) {
                        continue;
                    }
                    let command = match t.step {
                        TargetStep::Sync | TargetStep::Arm if now_us >= instant => continue,
                        TargetStep::Sync => Command::Sync,
                        TargetStep::Arm => Command::Arm,
                        TargetStep::Armed if now_us >= t.watch_at_us && now_us < instant - WATCH_STOP_US => {
                            Command::Sync
                        }
                        TargetStep::Disarm | TargetStep::Withdraw => Command::Cancel,
                        // The link's latency is measured first when there is time, then the
                        // trigger leaves early by the one-way latency so it lands at the instant.
                        TargetStep::Trigger => match t.before {
                            None if now_us < instant - 2_000_000 => Command::Sync,
                            before => {
                                let latency = before.map_or(0, |s| s.round_trip_us / 2);
                                if now_us < instant - latency {
                                    continue;
                                }
                                Command::Trigger
                            }
                        },
                        TargetStep::Armed | TargetStep::Triggered | TargetStep::Idle => continue,
                    };
                    t.busy = true;
                    actions.push(Action { target: i, command });
                }
            }
        }
        if self.phase == Phase::Running && now_us >= self.end_us() {
            self.set_phase(Phase::Verifying);
            for t in &mut self.targets {
                t.retry_at_us = 0;
            }
        }
        if self.phase == Phase::Verifying {
            let deadline = self.end_us() + i64::from(self.settings.verify_grace_s) * 1_000_000;
            let complete = self.targets.iter().all(|t| t.report.is_some() && t.after_settled());
            if complete || now_us >= deadline {
                self.finish(reachable);
                return actions;
            }
            for i in 0..self.targets.len() {
                let t = &mut self.targets[i];
                if t.busy || t.retry_at_us > now_us || !reachable(i) {
                    continue;
                }
                let command = if t.report.is_none() {
                    Command::Report
                } else if !t.after_settled() {
                    Command::Sync
                } else {
                    continue;
                };
                t.busy = true;
                t.retry_at_us = now_us + if command == Command::Sync { AFTER_RETRY_US } else { REPORT_EVERY_US };
                actions.push(Action { target: i, command });
            }
        }
        actions
    }

    /// The protocol message for `action`, stamped at `now`.
    pub fn message(&self, action: &Action, now: Timestamp) -> Message {
        let t = &self.targets[action.target];
        match action.command {
            Command::Sync => Message::TimeSyncRequest { t1_us: now.as_microsecond() },
            Command::Adjust { sync_t1_us, offset_us } => Message::ClockAdjust { sync_t1_us, offset_us },
            Command::Arm => {
                let arm = Arm { campaign: self.id, start_us: self.device_start_us(t), segments: self.segments.clone() };
                if self.kind == Kind::Live { Message::ArmLive(arm) } else { Message::ArmTest(arm) }
            }
            Command::Trigger => {
                // A test never sounds later than the tolerance allows, whatever the queue did.
                let not_after_true = self.instant_us() + self.trigger_window_us();
                let not_after_us = not_after_true - t.expected_offset_us(not_after_true);
                let trigger = Trigger { campaign: self.id, not_after_us, segments: self.segments.clone() };
                if self.kind == Kind::Live { Message::TriggerLive(trigger) } else { Message::TriggerTest(trigger) }
            }
            Command::Report => Message::ReportRequest { campaign: self.id },
            Command::Cancel => Message::Cancel { campaign: self.id },
        }
    }

    /// The targets whose clocks must not be stepped now: those armed with a start on their
    /// own clock (a target being re-armed too: its next arm is computed from the clock as
    /// measured), and those that sounded and whose clock is not yet measured after it (their
    /// start error is their reported start less that offset, so a step in between would count
    /// as error: with thousands of sirens synchronised after a restart, a LIVE warning's
    /// sirens read up to two seconds early or late). Targets waiting for a trigger are not
    /// among them: a time set helps them.
    pub fn clocks_held(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.targets.len()).filter(|&i| self.clock_held(i))
    }

    /// Whether target `i`'s clock must not be stepped now ([`Campaign::clocks_held`]).
    pub fn clock_held(&self, i: usize) -> bool {
        let Some(t) = self.targets.get(i) else { return false };
        let before = matches!(self.phase, Phase::Arming | Phase::Running);
        let after = matches!(self.phase, Phase::Running | Phase::Verifying);
        let armed =
            t.armed_start_us.is_some() || t.step == TargetStep::Disarm || (t.rearms > 0 && t.step == TargetStep::Arm);
        let sounded = t.triggered || t.armed_start_us.is_some() || t.report.is_some();
        (before && armed) || (after && sounded && t.verdict.is_none() && !t.after_settled())
    }

    /// Triggers `targets` with one broadcast if every one of them waits for a trigger: marks
    /// them triggered and returns the message (its latest start is true time: one frame
    /// cannot carry each device's offset). `None` when one of them does not wait for one.
    pub fn broadcast_trigger(&mut self, targets: &[usize]) -> Option<Message> {
        if self.phase != Phase::Arming
            || targets.is_empty()
            || !targets.iter().all(|&i| self.targets.get(i).is_some_and(|t| t.step == TargetStep::Trigger))
        {
            return None;
        }
        for &i in targets {
            let t = &mut self.targets[i];
            t.step = TargetStep::Triggered;
            t.triggered = true;
            t.busy = false;
        }
        self.dirty = true;
        let not_after_us = self.instant_us() + self.trigger_window_us();
        let trigger = Trigger { campaign: self.id, not_after_us, segments: self.segments.clone() };
        Some(if self.kind == Kind::Live { Message::TriggerLive(trigger) } else { Message::TriggerTest(trigger) })
    }

    /// The instant by the target's clock: true instant less the offset it is expected to
    /// have then. After a successful correction the offset is near zero; a flagged clock, and
    /// one that drifts, are compensated here.
    fn device_start_us(&self, t: &Target) -> i64 {
        self.instant_us() - t.expected_offset_us(self.instant_us())
    }

    /// Whether a trigger-now is due within two seconds: the engine then wakes every few
    /// milliseconds instead of every second, so the trigger leaves on time.
    pub fn urgent(&self, now: Timestamp) -> bool {
        self.phase == Phase::Arming
            && now.as_microsecond() >= self.instant_us() - 2_000_000
            && self.targets.iter().any(|t| t.step == TargetStep::Trigger && !t.busy)
    }

    /// A command was not sent after all (the link was busy): it is asked again at once.
    pub fn defer(&mut self, target: usize) {
        if let Some(t) = self.targets.get_mut(target) {
            t.busy = false;
            t.stale_sample = false;
            t.retry_at_us = 0;
        }
    }

    /// A command went unanswered after the master's retries.
    pub fn on_failed(&mut self, target: usize, now: Timestamp) {
        let Some(t) = self.targets.get_mut(target) else { return };
        t.busy = false;
        t.stale_sample = false;
        t.retry_at_us = now.as_microsecond() + RETRY_US;
    }

    /// A clock measurement of `target` (from the exchange started at `t1_us`). Returns a
    /// follow-up: another measurement, or the correction.
    fn on_clock_sample(&mut self, target: usize, t1_us: i64, sample: ClockSample, now_us: i64) -> Option<Action> {
        let phase = self.phase;
        let max_offset_us = i64::from(self.settings.max_clock_offset_ms) * 1000;
        let next_watch = self.next_watch(now_us);
        let t = self.targets.get_mut(target)?;
        if std::mem::take(&mut t.stale_sample) {
            // Measured again when the campaign next asks.
            return None;
        }
        let (mut t1_us, mut sample) = (t1_us, sample);
        if phase != Phase::Verifying && t.step == TargetStep::Sync && !t.clock_flagged {
            let Some(best) = t.best_before(t1_us, sample, max_offset_us) else {
                t.busy = true;
                return Some(Action { target, command: Command::Sync });
            };
            (t1_us, sample) = best;
        }
        let s = TimeSample { offset_us: sample.offset_us, round_trip_us: sample.round_trip_us };
        if phase == Phase::Verifying {
            if t.after.is_none_or(|a| sample.round_trip_us < a.round_trip_us) {
                t.after = Some(sample);
            }
            t.after_samples = t.after_samples.saturating_add(1);
            t.retry_at_us = now_us + AFTER_RETRY_US;
            return None;
        }
        t.before = Some(sample);
        let seen = t.watch.add(sample, f64::from(self.settings.max_drift_ppm));
        if let Some(ppm) = seen.drift_flagged {
            self.notices.push(Notice::ClockDrift { target, ppm });
        }
        if t.step == TargetStep::Armed && phase == Phase::Arming {
            let instant_us = self.instant.as_microsecond();
            if let Some(moved_us) = t.watched(&sample, instant_us, max_offset_us, now_us, next_watch) {
                self.notices.push(Notice::ClockMoved { target, moved_us });
            }
            return None;
        }
        if t.step != TargetStep::Sync {
            return None;
        }
        if t.clock_flagged {
            // The measurement after the flagged clock's last correction: whether or not
            // the device applied that one, this is what the arm compensates.
            t.step = TargetStep::Arm;
            return None;
        }
        t.sync_attempts = t.sync_attempts.saturating_add(1);
        let close = s.offset_us.abs() <= max_offset_us;
        if close && !t.needs_adjust {
            // Within the limit: the arm compensates the offset measured, and one
            // exchange per siren is saved (a third of arming a fleet's time). The
            // daemon synchronised the device when it first heard it.
            t.step = TargetStep::Arm;
            return None;
        }
        if close {
            // A device that refused to arm as never synchronised: the correction is
            // what marks it synchronised; its ack leaves the residual to compensate.
            t.step = TargetStep::Arm;
            t.needs_adjust = false;
        } else if t.sync_attempts >= SYNC_ATTEMPTS {
            // Flagged, and resynced once more; it stays in Sync for one more
            // measurement, because an offset measured before a correction the device
            // may or may not apply cannot be compensated without counting it twice.
            t.clock_flagged = true;
        }
        t.busy = true;
        let command = Command::Adjust { sync_t1_us: t1_us, offset_us: s.offset_us };
        Some(Action { target, command })
    }

    /// A device's answer to `command`. Returns a follow-up to send at once (the clock
    /// correction after a measurement).
    pub fn on_reply(&mut self, target: usize, command: Command, reply: &Message, now: Timestamp) -> Option<Action> {
        let now_us = now.as_microsecond();
        let next_watch = self.next_watch(now_us);
        let end_us = self.end_us();
        let t = self.targets.get_mut(target)?;
        t.busy = false;
        self.dirty = true;
        match (command, reply) {
            (Command::Sync, &Message::TimeSyncReply { t1_us, t2_us, t3_us }) => {
                let s = TimeSample::compute(t1_us, t2_us, t3_us, now_us);
                let sample = ClockSample { at_us: now_us, offset_us: s.offset_us, round_trip_us: s.round_trip_us };
                self.on_clock_sample(target, t1_us, sample, now_us)
            }
            (Command::Adjust { offset_us, .. }, Message::Ack { .. }) => {
                t.watch.corrected();
                // The device applied it: what it reads now is off by what was left.
                if let Some(b) = &mut t.before {
                    if t.step == TargetStep::Arm && !t.clock_flagged {
                        b.offset_us -= offset_us;
                    }
                }
                None
            }
            (Command::Arm, Message::Ack { .. }) => {
                let instant_us = self.instant.as_microsecond();
                t.armed_start_us = Some(instant_us - t.expected_offset_us(instant_us));
                t.watch_at_us = next_watch;
                t.step = TargetStep::Armed;
                t.nak = None;
                if self.all_armed.is_none()
                    && self
                        .targets
                        .iter()
                        .all(|t| t.armed_start_us.is_some() || t.maintenance.is_some() || t.stopped.is_some())
                {
                    self.all_armed = Some(now);
                }
                None
            }
            (Command::Trigger, Message::Ack { .. }) => {
                t.step = TargetStep::Triggered;
                t.triggered = true;
                None
            }
            // Asked too early, or the device kept no report: not a refusal to sound. Soon
            // after the end it may still be sounding: a trigger-now starts it later than the
            // instant by its link's latency, so it is asked again in a second, not ten.
            (Command::Report, Message::Nak { .. }) => {
                if now_us < end_us + REPORT_EVERY_US {
                    t.retry_at_us = t.retry_at_us.min(now_us + AFTER_RETRY_US);
                }
                None
            }
            // Disarmed to be armed again (a device that no longer knows the campaign lost its
            // arm): armed again, or triggered at the instant past the cut-off.
            (Command::Cancel, Message::Ack { .. } | Message::Nak { code: NakCode::UnknownCampaign, .. })
                if t.step == TargetStep::Disarm =>
            {
                t.armed_start_us = None;
                t.step = TargetStep::Arm;
                t.retry_at_us = 0;
                None
            }
            // Taken into maintenance while armed: it stays silent.
            (Command::Cancel, Message::Ack { .. } | Message::Nak { code: NakCode::UnknownCampaign, .. })
                if t.step == TargetStep::Withdraw =>
            {
                t.armed_start_us = None;
                t.step = TargetStep::Idle;
                None
            }
            (_, Message::Nak { code, .. }) => {
                t.nak = Some(format!("{code:?}"));
                match (command, code) {
                    // Its clock is not trusted by the device: correct it again.
                    (Command::Arm, NakCode::ClockUnsynced) => {
                        t.step = TargetStep::Sync;
                        t.sync_attempts = 0;
                        t.clock_flagged = false;
                        t.needs_adjust = true;
                    }
                    (Command::Trigger, NakCode::Expired) => t.step = TargetStep::Idle,
                    _ => t.retry_at_us = now_us + RETRY_US,
                }
                None
            }
            (Command::Report, Message::SoundingReport(r)) => {
                if r.campaign == self.id {
                    t.report = Some(r.clone());
                    // The clock measurement after the sounding goes at once, not at the next
                    // report retry: a short grace would end verification without it.
                    t.retry_at_us = 0;
                }
                None
            }
            _ => None,
        }
    }

    /// Target `target` is in the maintenance window `window` (its summary), or (`None`) in none,
    /// at `now`. Before the instant a target in maintenance is left out: its arm is cancelled
    /// if it was armed (a crew may be on its mast). One whose window ended before the arm
    /// cut-off is armed after all. Returns whether anything changed.
    pub fn set_maintenance(&mut self, target: usize, window: Option<&str>, now: Timestamp) -> bool {
        let now_us = now.as_microsecond();
        let cutoff_us = self.instant_us() - i64::from(self.settings.arm_cutoff_s) * 1_000_000;
        let before_instant = matches!(self.phase, Phase::Planned | Phase::Arming) && now_us < self.instant_us();
        let Some(t) = self.targets.get_mut(target) else { return false };
        match window {
            Some(summary) if t.maintenance.is_none() => {
                t.maintenance = Some(summary.to_owned());
                if before_instant {
                    t.step = match t.step {
                        TargetStep::Armed | TargetStep::Disarm => TargetStep::Withdraw,
                        TargetStep::Triggered | TargetStep::Withdraw => t.step,
                        TargetStep::Sync | TargetStep::Arm | TargetStep::Trigger | TargetStep::Idle => TargetStep::Idle,
                    };
                    t.retry_at_us = 0;
                }
            }
            None if t.maintenance.is_some()
                && t.stopped.is_none()
                && before_instant
                && now_us < cutoff_us
                && t.step == TargetStep::Idle
                && t.nak.is_none() =>
            {
                t.maintenance = None;
                t.step = TargetStep::Sync;
                t.retry_at_us = 0;
            }
            _ => return false,
        }
        self.dirty = true;
        true
    }

    /// An operator stopped target `target` (`why`: who and why) at `now`: an arm is cancelled
    /// before the instant, nothing else is sent to it, and it is judged `stopped` unless it
    /// passed. Returns whether it was news.
    pub fn stop_target(&mut self, target: usize, why: &str, now: Timestamp) -> bool {
        let before_instant =
            matches!(self.phase, Phase::Planned | Phase::Arming) && now.as_microsecond() < self.instant_us();
        let Some(t) = self.targets.get_mut(target) else { return false };
        if t.stopped.is_some() {
            return false;
        }
        t.stopped = Some(why.to_owned());
        t.step = match t.step {
            TargetStep::Armed | TargetStep::Disarm | TargetStep::Withdraw if before_instant => TargetStep::Withdraw,
            _ => TargetStep::Idle,
        };
        t.retry_at_us = 0;
        self.dirty = true;
        true
    }

    /// What target `target` said about itself (a status report, a heartbeat) at `now`. While
    /// it is armed: a device that says it is idle lost its arm (a reboot) and is armed again
    /// (a retry of the same arm is only acknowledged again if it did not); a clock reading
    /// further from the expected offset than the report's latency explains is measured at once.
    pub fn on_status(&mut self, target: usize, view: &DeviceView, now: Timestamp) {
        let now_us = now.as_microsecond();
        let max_offset_us = i64::from(self.settings.max_clock_offset_ms) * 1000;
        if self.phase != Phase::Arming || now_us >= self.instant_us() - WATCH_STOP_US {
            return;
        }
        let Some(t) = self.targets.get_mut(target) else { return };
        if t.step != TargetStep::Armed {
            return;
        }
        if view.state == siren_proto::message::DeviceState::Idle {
            t.step = TargetStep::Arm;
            t.retry_at_us = 0;
            self.dirty = true;
            return;
        }
        let Some((device_time_us, received_us)) = view.clock else { return };
        if view.campaign.is_some_and(|c| c != self.id) {
            return;
        }
        // What the reading says is an upper bound of the offset: true time at the reading is
        // the arrival less the report's latency.
        let read = received_us - device_time_us;
        let latency = t.before.map_or(0, |s| s.round_trip_us).max(STATUS_LATENCY_US);
        let deviation = read - t.expected_offset_us(now_us);
        let measured_recently = t.before.is_some_and(|s| now_us - s.at_us < WATCH_RECHECK_US);
        if (deviation > max_offset_us + latency || deviation < -max_offset_us) && !measured_recently {
            t.watch_at_us = now_us;
        }
    }

    /// The daemon set target `target`'s clock at `now` (a `TIME_SET` broadcast to its bus,
    /// which is never sent while it is armed). A measurement taken before no longer holds: one
    /// waiting for a trigger is measured again.
    pub fn clock_set(&mut self, target: usize, now: Timestamp) {
        let Some(t) = self.targets.get_mut(target) else { return };
        t.clock_set_us = Some(now.as_microsecond());
        t.stale_sample = t.busy;
        if self.phase == Phase::Arming && t.armed_start_us.is_none() && t.step != TargetStep::Disarm {
            t.before = None;
            t.watch.corrected();
        }
        self.dirty = true;
    }

    /// A sounding report the device sent by itself (MQTT publishes one when a sounding ends).
    /// Returns whether it is the first report of the target in this campaign (the device
    /// repeats it until it is acknowledged, and answers report requests with it too).
    pub fn on_report(&mut self, target: usize, report: &SoundingReport) -> bool {
        if report.campaign != self.id {
            return false;
        }
        // The report of an arm this campaign cancelled to arm again (devices publish one for
        // a cancelled arm too): the sounding's own report is the one that counts.
        if self.phase == Phase::Arming && report.outcome == siren_proto::message::Outcome::Cancelled {
            return false;
        }
        let Some(t) = self.targets.get_mut(target) else { return false };
        let first = t.report.is_none();
        t.report = Some(report.clone());
        t.retry_at_us = 0;
        self.dirty = true;
        first
    }

    fn finish(&mut self, reachable: &dyn Fn(usize) -> bool) {
        let instant = self.instant_us();
        let criteria = Criteria {
            // A LIVE warning that sounded late still warned: its lateness is its latency.
            tolerance_us: if self.kind == Kind::Live { LIVE_TRIGGER_WINDOW_US } else { self.tolerance_us() },
            audible: self.kind.audible(),
            min_sound_level_db: self.settings.min_sound_level_db,
        };
        for i in 0..self.targets.len() {
            let unreachable = !reachable(i);
            let t = &mut self.targets[i];
            t.unreachable = t.report.is_none() && unreachable;
            let max_offset_us = i64::from(self.settings.max_clock_offset_ms) * 1000;
            let started = t.report.as_ref().filter(|r| r.started_us != 0).map(|r| r.started_us);
            t.skew_us = started.map(|started_us| {
                let skew = |offset: i64| started_us + offset - instant;
                match t.offsets_apart(instant, max_offset_us) {
                    // The clock stepped between the measurements around the start, when is
                    // not known: the start is judged by the worse of the two.
                    Some((before, after)) => {
                        t.start_uncertain = true;
                        if skew(before).abs() >= skew(after).abs() { skew(before) } else { skew(after) }
                    }
                    None => skew(t.offset_at(instant).unwrap_or(0)),
                }
            });
            let evidence = Evidence {
                commanded: t.armed_start_us.is_some() || t.triggered,
                unreachable: t.unreachable,
                refused_cannot_sound: t.nak.as_deref() == Some("CannotSound"),
                report: t.report.as_ref(),
                skew_us: t.skew_us,
            };
            t.verdict = Some(match judge(&evidence, &criteria) {
                Verdict::Fail(_) if t.stopped.is_some() => Verdict::Stopped,
                // Out of service by a crew's word: not a failure of the siren.
                Verdict::Fail(_) if t.maintenance.is_some() => Verdict::InMaintenance,
                verdict => verdict,
            });
            t.busy = false;
        }
        self.set_phase(Phase::Done);
    }

    /// Count of targets per verdict (only once done).
    pub fn tally(&self) -> Tally {
        let mut tally = Tally::default();
        for t in &self.targets {
            match t.verdict {
                Some(Verdict::Pass) => tally.passed += 1,
                Some(Verdict::InMaintenance) => tally.in_maintenance += 1,
                Some(Verdict::Stopped) => tally.stopped += 1,
                Some(Verdict::Fail(r)) => {
                    tally.failed += 1;
                    *tally.by_reason.entry(r).or_default() += 1;
                }
                None => tally.pending += 1,
            }
        }
        tally
    }

    /// Start-skew statistics over the targets that reported a start, µs.
    pub fn skew_stats(&self) -> Option<SkewStats> {
        let mut skews: Vec<i64> = self.targets.iter().filter_map(|t| t.skew_us).map(i64::abs).collect();
        if skews.is_empty() {
            return None;
        }
        skews.sort_unstable();
        let pick = |q: f64| {
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_precision_loss)]
            let i = ((q * skews.len() as f64).ceil() as usize).clamp(1, skews.len()) - 1;
            skews[i]
        };
        Some(SkewStats { count: skews.len(), p50_us: pick(0.5), p99_us: pick(0.99), max_us: pick(1.0) })
    }
}

/// Targets by verdict.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Tally {
    pub passed: usize,
    pub failed: usize,
    /// Left out, or failed, while a crew had it in maintenance.
    pub in_maintenance: usize,
    /// Stopped by an operator before it passed.
    pub stopped: usize,
    pub pending: usize,
    pub by_reason: std::collections::BTreeMap<FailReason, usize>,
}

/// Absolute start errors (nearest-rank percentiles), µs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SkewStats {
    pub count: usize,
    pub p50_us: i64,
    pub p99_us: i64,
    pub max_us: i64,
}

impl Ord for FailReason {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl PartialOrd for FailReason {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// The protocol crate stays free of serde: reports are stored through this mirror.
mod stored_report {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use siren_proto::message::{Outcome, SoundingReport};

    #[derive(Serialize, Deserialize)]
    struct Stored {
        campaign: u32,
        outcome: u8,
        live: bool,
        started_us: i64,
        ended_us: i64,
        sound_level_ddb: u16,
        amplifier_current_ma: u16,
    }

    #[allow(clippy::ref_option, reason = "the signature serde's `with` expects")]
    pub(super) fn serialize<S: Serializer>(r: &Option<SoundingReport>, s: S) -> Result<S::Ok, S::Error> {
        r.as_ref()
            .map(|r| Stored {
                campaign: r.campaign,
                outcome: r.outcome as u8,
                live: r.live,
                started_us: r.started_us,
                ended_us: r.ended_us,
                sound_level_ddb: r.sound_level_ddb,
                amplifier_current_ma: r.amplifier_current_ma,
            })
            .serialize(s)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SoundingReport>, D::Error> {
        let Some(r) = Option::<Stored>::deserialize(d)? else { return Ok(None) };
        let outcome = Outcome::from_u8(r.outcome).ok_or_else(|| serde::de::Error::custom("unknown outcome"))?;
        Ok(Some(SoundingReport {
            campaign: r.campaign,
            outcome,
            live: r.live,
            started_us: r.started_us,
            ended_us: r.ended_us,
            sound_level_ddb: r.sound_level_ddb,
            amplifier_current_ma: r.amplifier_current_ma,
        }))
    }
}

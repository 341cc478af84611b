//! A simulated siren controller's hardware and firmware behaviour, without I/O: physics,
//! clock, faults and soundings, advanced by a clock the caller controls (virtual time in
//! tests, real time in demos). It also keeps the ground truth that tests compare the daemon
//! against: when sound really started and stopped, and everything it received.

pub mod clock;
pub mod power;

use std::collections::VecDeque;

use siren_proto::message::{
    Arm, ChannelState, ChargerState, DeviceState, FaultBits, Firmware, Heartbeat, NakCode, Outcome, Segment,
    SoundingReport, SpeakerState, StatusReport, Trigger,
};
use siren_proto::pattern::Tone;

pub use clock::{DeviceClock, DeviceMicros, TrueMicros};
pub use power::Power;

const SECOND: i64 = 1_000_000;
/// The longest step the physics integrates at once.
const MAX_STEP: i64 = SECOND;
/// Reports a device keeps for `REPORT_REQUEST` (the spec asks for at least 4).
const KEPT_REPORTS: usize = 8;
/// How long a reboot keeps a controller off the air unless its spec says otherwise.
pub const REBOOT_TIME_US: i64 = 20 * SECOND;
/// Ambient temperature in the cabinet, 0.1 °C.
const AMBIENT_DC: i16 = 220;
/// Above this the controller warns of over-temperature, 0.1 °C.
const OVER_TEMPERATURE_DC: i16 = 600;

/// What a device is built with.
#[derive(Debug, Clone)]
pub struct DeviceSpec {
    /// dB(C) at 30 m with every channel working.
    pub rating_db: f64,
    pub channels: u8,
    pub battery_capacity_ah: f64,
    pub firmware: Firmware,
    pub can_measure_sound: bool,
    pub can_measure_current: bool,
    pub live_enabled: bool,
    /// How long a reboot keeps the controller off the air, µs.
    pub reboot_time_us: i64,
}

impl Default for DeviceSpec {
    fn default() -> Self {
        Self {
            rating_db: 118.0,
            channels: 4,
            battery_capacity_ah: 100.0,
            firmware: Firmware { major: 2, minor: 4, patch: 1 },
            can_measure_sound: true,
            can_measure_current: true,
            live_enabled: true,
            reboot_time_us: REBOOT_TIME_US,
        }
    }
}

/// One sounding as it really happened, for tests to compare the daemon's verdict against.
#[derive(Debug, Clone, PartialEq)]
pub struct SoundingTruth {
    pub campaign: u32,
    pub live: bool,
    /// When sound (or the silent self-test) really started, true time.
    pub started: Option<TrueMicros>,
    /// When it really ended, true time.
    pub ended: Option<TrueMicros>,
    /// Whether a listener near the siren heard anything.
    pub audible: bool,
    pub outcome: Outcome,
    /// What the device reports (times by its own clock).
    pub report: SoundingReport,
}

#[derive(Debug, Clone)]
struct Armed {
    campaign: u32,
    live: bool,
    start_device: DeviceMicros,
    segments: Vec<Segment>,
}

#[derive(Debug, Clone)]
struct Active {
    campaign: u32,
    live: bool,
    started: TrueMicros,
    ends: TrueMicros,
    segments: Vec<Segment>,
    speaker_failed_during: bool,
}

/// Total length of a sounding, µs: the latest segment end.
fn sounding_length_us(segments: &[Segment]) -> i64 {
    let ms = segments.iter().map(|s| u64::from(s.offset_ms) + s.pattern.duration_ms()).max().unwrap_or(0);
    i64::try_from(ms).unwrap_or(i64::MAX / 2_000).saturating_mul(1_000)
}

/// Whether any segment makes sound (a silent test does not).
fn has_audible_step(segments: &[Segment]) -> bool {
    segments.iter().any(|s| s.pattern.steps.iter().any(|st| !matches!(st.tone, Tone::Off | Tone::SelfTest)))
}

/// The simulated controller hardware and firmware.
#[derive(Debug, Clone)]
pub struct Device {
    pub spec: DeviceSpec,
    pub power: Power,
    pub clock: DeviceClock,
    pub channels: Vec<ChannelState>,
    pub speaker_ok: bool,
    pub door_open: bool,
    /// The cabinet's cooling has failed.
    pub over_temperature: bool,
    boot_seq: u32,
    booted_at: TrueMicros,
    /// Off the air until then (rebooting, or browned out while the value is `i64::MAX`).
    down_until: Option<TrueMicros>,
    now: TrueMicros,
    armed: Option<Armed>,
    active: Option<Active>,
    history: VecDeque<SoundingTruth>,
    all_truth: Vec<SoundingTruth>,
}

impl Device {
    pub fn new(spec: DeviceSpec, now: TrueMicros, clock: DeviceClock, boot_seq: u32) -> Self {
        let channels = vec![ChannelState::Ok; usize::from(spec.channels)];
        Self {
            power: Power::new(spec.battery_capacity_ah),
            spec,
            clock,
            channels,
            speaker_ok: true,
            door_open: false,
            over_temperature: false,
            boot_seq,
            booted_at: now,
            down_until: None,
            now,
            armed: None,
            active: None,
            history: VecDeque::new(),
            all_truth: Vec::new(),
        }
    }

    pub fn now(&self) -> TrueMicros {
        self.now
    }

    pub fn boot_seq(&self) -> u32 {
        self.boot_seq
    }

    /// Whether the controller is running (not rebooting, not browned out).
    pub fn is_up(&self) -> bool {
        self.down_until.is_none_or(|t| self.now >= t)
    }

    /// The fault bits the firmware reports now.
    pub fn faults(&self) -> FaultBits {
        let mut f = 0;
        let mut set = |cond: bool, bit: u32| {
            if cond {
                f |= bit;
            }
        };
        let working = self.channels.iter().filter(|c| **c == ChannelState::Ok).count();
        set(!self.power.mains, FaultBits::MAINS_LOST);
        set(self.power.low(), FaultBits::BATTERY_LOW);
        set(!self.power.charger_ok, FaultBits::CHARGER_FAULT);
        set(self.door_open, FaultBits::DOOR_OPEN);
        set(self.cabinet_temp_dc() > OVER_TEMPERATURE_DC, FaultBits::OVER_TEMPERATURE);
        set(self.clock.sync_age_s(self.now).is_none_or(|a| a > 86_400), FaultBits::CLOCK_UNSYNCED);
        set(working > 0 && working < self.channels.len(), FaultBits::CHANNEL_DEGRADED);
        set(self.power.exhausted(), FaultBits::BATTERY_EXHAUSTED);
        set(working == 0, FaultBits::AMPLIFIER_FAILED);
        set(!self.speaker_ok, FaultBits::SPEAKER_FAILED);
        FaultBits(f)
    }

    fn state(&self) -> DeviceState {
        if self.active.is_some() {
            DeviceState::Sounding
        } else if self.armed.is_some() {
            DeviceState::Armed
        } else {
            DeviceState::Idle
        }
    }

    /// Advances physics, clock-driven starts and ends to true time `to`.
    pub fn advance(&mut self, to: TrueMicros) {
        while self.now < to {
            if let Some(until) = self.down_until {
                if until > self.now && until != i64::MAX {
                    // Rebooting: physics continue, the firmware does not.
                    let step = (until.min(to) - self.now).min(MAX_STEP);
                    self.integrate(step);
                    continue;
                }
            }
            let mut next = (self.now + MAX_STEP).min(to);
            if let Some(a) = &self.armed {
                next = next.min(self.clock.true_time_of(a.start_device).max(self.now));
            }
            if let Some(a) = &self.active {
                next = next.min(a.ends.max(self.now));
            }
            self.integrate(next - self.now);
            self.on_instant();
            if next == self.now && self.armed.is_none() && self.active.as_ref().is_none_or(|a| a.ends > self.now) {
                // Nothing due at this instant: guarantee progress.
                self.integrate((to - self.now).min(MAX_STEP));
            }
        }
        self.on_instant();
    }

    #[allow(clippy::cast_precision_loss, reason = "step lengths are at most a second")]
    fn integrate(&mut self, step: i64) {
        if step <= 0 {
            return;
        }
        let sounding = self.active.is_some();
        self.power.advance(step as f64 / 1e6, sounding);
        self.now += step;
        if self.down_until.is_none() && !self.power.mains && self.power.soc() <= 0.0 {
            // Brown-out: the controller dies until mains returns.
            self.down_until = Some(i64::MAX);
            self.abort_active(Outcome::Aborted);
        }
    }

    /// Starts and ends what is due at `self.now`, and aborts on blocking faults.
    fn on_instant(&mut self) {
        if let Some(a) = &self.armed {
            if self.clock.true_time_of(a.start_device) <= self.now {
                let a = self.armed.take().expect("checked above");
                if self.clock.true_time_of(a.start_device) < self.now {
                    // The instant passed while the firmware was not running (rebooting) or the
                    // clock jumped over it: never sound late.
                    self.record_unstarted(a.campaign, a.live, Outcome::MissedStart);
                } else {
                    self.begin(a.campaign, a.live, a.segments, self.now);
                }
            }
        }
        if let Some(a) = &self.active {
            if a.ends <= self.now {
                self.finish(Outcome::Completed);
            } else if self.faults().is_blocking() && !self.speaker_only_fault() {
                let outcome = if self.power.exhausted() { Outcome::Aborted } else { Outcome::AmplifierFault };
                self.abort_active(outcome);
            }
        }
    }

    /// A failed speaker does not stop the amplifiers: the siren plays on, silently.
    fn speaker_only_fault(&self) -> bool {
        self.faults().0 & FaultBits::BLOCKING == FaultBits::SPEAKER_FAILED
    }

    fn begin(&mut self, campaign: u32, live: bool, segments: Vec<Segment>, start: TrueMicros) {
        if !self.is_up() || self.power.exhausted() {
            self.record_unstarted(campaign, live, Outcome::MissedStart);
            return;
        }
        if self.faults().is_blocking() && !self.speaker_only_fault() {
            self.record_unstarted(campaign, live, Outcome::AmplifierFault);
            return;
        }
        let ends = start + sounding_length_us(&segments);
        let speaker_failed_during = !self.speaker_ok;
        self.active = Some(Active { campaign, live, started: start, ends, segments, speaker_failed_during });
        if ends <= self.now {
            self.finish(Outcome::Completed);
        }
    }

    fn record_unstarted(&mut self, campaign: u32, live: bool, outcome: Outcome) {
        let report = SoundingReport {
            campaign,
            outcome,
            live,
            started_us: 0,
            ended_us: 0,
            sound_level_ddb: siren_proto::message::NOT_MEASURED,
            amplifier_current_ma: siren_proto::message::NOT_MEASURED,
        };
        self.push_truth(SoundingTruth { campaign, live, started: None, ended: None, audible: false, outcome, report });
    }

    fn abort_active(&mut self, outcome: Outcome) {
        if self.active.is_some() {
            self.finish(outcome);
        }
    }

    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_precision_loss, reason = "bounded")]
    fn finish(&mut self, outcome: Outcome) {
        let Some(a) = self.active.take() else { return };
        let ended = a.ends.min(self.now);
        let working = self.channels.iter().filter(|c| **c == ChannelState::Ok).count().max(1);
        let audible_pattern = has_audible_step(&a.segments);
        let speaker_dead = a.speaker_failed_during || !self.speaker_ok;
        let audible = audible_pattern && !speaker_dead && ended > a.started;
        let outcome =
            if outcome == Outcome::Completed && audible_pattern && speaker_dead { Outcome::NoSound } else { outcome };
        // The cabinet microphone: the rated level less the lost channels' share, or street
        // noise when nothing came out.
        let level_db = if audible {
            self.spec.rating_db - 10.0 * (self.channels.len().max(1) as f64 / working as f64).log10()
        } else {
            45.0
        };
        let current_a = if speaker_dead {
            0.3
        } else {
            power::SOUNDING_LOAD_A * working as f64 / self.channels.len().max(1) as f64
        };
        let report = SoundingReport {
            campaign: a.campaign,
            outcome,
            live: a.live,
            started_us: self.clock.read(a.started),
            ended_us: self.clock.read(ended),
            sound_level_ddb: if self.spec.can_measure_sound {
                (level_db * 10.0).round() as u16
            } else {
                siren_proto::message::NOT_MEASURED
            },
            amplifier_current_ma: if self.spec.can_measure_current {
                (current_a * 1000.0).round() as u16
            } else {
                siren_proto::message::NOT_MEASURED
            },
        };
        self.push_truth(SoundingTruth {
            campaign: a.campaign,
            live: a.live,
            started: Some(a.started),
            ended: Some(ended),
            audible,
            outcome,
            report,
        });
    }

    fn push_truth(&mut self, truth: SoundingTruth) {
        self.all_truth.push(truth.clone());
        if self.history.len() >= KEPT_REPORTS {
            self.history.pop_front();
        }
        self.history.push_back(truth);
    }

    /// Every sounding this device has finished, in order (ground truth).
    pub fn soundings(&self) -> &[SoundingTruth] {
        &self.all_truth
    }

    /// The campaign armed, if any.
    pub fn armed_campaign(&self) -> Option<u32> {
        self.armed.as_ref().map(|a| a.campaign)
    }

    /// The campaign sounding, if any.
    pub fn sounding_campaign(&self) -> Option<u32> {
        self.active.as_ref().map(|a| a.campaign)
    }

    /// Whether a listener near the siren hears it at this instant.
    pub fn audible_now(&self) -> bool {
        let Some(a) = &self.active else { return false };
        if !self.speaker_ok {
            return false;
        }
        let elapsed_ms = u64::try_from((self.now - a.started) / 1_000).unwrap_or(0);
        a.segments.iter().any(|s| {
            let offset = u64::from(s.offset_ms);
            elapsed_ms >= offset
                && s.pattern.tone_at(elapsed_ms - offset).is_some_and(|t| !matches!(t, Tone::Off | Tone::SelfTest))
        })
    }

    // ----- Firmware: what the protocol's requests do -----

    /// `ARM_TEST` / `ARM_LIVE`.
    pub fn arm(&mut self, arm: &Arm, live: bool) -> Result<(), NakCode> {
        if live && !self.spec.live_enabled {
            return Err(NakCode::LiveDisabled);
        }
        if arm.campaign == 0 || arm.segments.is_empty() {
            return Err(NakCode::BadPayload);
        }
        if let Some(a) = &self.armed {
            if a.campaign == arm.campaign
                && a.start_device == arm.start_us
                && a.segments == arm.segments
                && a.live == live
            {
                return Ok(()); // a retry
            }
            return Err(NakCode::Busy);
        }
        if let Some(a) = &self.active {
            return if a.campaign == arm.campaign { Ok(()) } else { Err(NakCode::Busy) };
        }
        if self.clock.sync_age_s(self.now).is_none() {
            return Err(NakCode::ClockUnsynced);
        }
        if arm.start_us <= self.clock.read(self.now) {
            return Err(NakCode::Expired);
        }
        if self.faults().is_blocking() && !self.speaker_only_fault() {
            return Err(NakCode::CannotSound);
        }
        self.armed =
            Some(Armed { campaign: arm.campaign, live, start_device: arm.start_us, segments: arm.segments.clone() });
        Ok(())
    }

    /// `TRIGGER_TEST` / `TRIGGER_LIVE`.
    pub fn trigger(&mut self, trigger: &Trigger, live: bool) -> Result<(), NakCode> {
        if live && !self.spec.live_enabled {
            return Err(NakCode::LiveDisabled);
        }
        if trigger.campaign == 0 || trigger.segments.is_empty() {
            return Err(NakCode::BadPayload);
        }
        // The order of docs/protocol.md §5.1: a retry of the trigger already sounding is
        // acknowledged, then BUSY, then EXPIRED.
        if let Some(a) = &self.active {
            return if a.campaign == trigger.campaign { Ok(()) } else { Err(NakCode::Busy) };
        }
        if self.armed.as_ref().is_some_and(|a| a.campaign != trigger.campaign) {
            return Err(NakCode::Busy);
        }
        if self.clock.read(self.now) > trigger.not_after_us {
            return Err(NakCode::Expired);
        }
        if self.faults().is_blocking() && !self.speaker_only_fault() {
            return Err(NakCode::CannotSound);
        }
        self.armed = None;
        self.begin(trigger.campaign, live, trigger.segments.clone(), self.now);
        Ok(())
    }

    /// `CANCEL`: disarm before the start.
    pub fn cancel(&mut self, campaign: u32) -> Result<(), NakCode> {
        if self.armed.as_ref().is_some_and(|a| a.campaign == campaign) {
            let a = self.armed.take().expect("checked above");
            self.record_unstarted(a.campaign, a.live, Outcome::Cancelled);
            return Ok(());
        }
        if self.history.iter().any(|h| h.campaign == campaign) || self.sounding_campaign() == Some(campaign) {
            return Ok(()); // already cancelled, or too late to cancel: idempotent
        }
        Err(NakCode::UnknownCampaign)
    }

    /// `STOP`: end a running sounding now; campaign 0 stops whatever sounds.
    pub fn stop(&mut self, campaign: u32) {
        if self.active.as_ref().is_some_and(|a| campaign == 0 || a.campaign == campaign) {
            self.finish(Outcome::Aborted);
        }
    }

    /// The report of a finished campaign.
    pub fn report(&self, campaign: u32) -> Option<SoundingReport> {
        self.history.iter().rev().find(|h| h.campaign == campaign).map(|h| h.report.clone())
    }

    /// The most recent report, for unsolicited publication.
    pub fn last_report(&self) -> Option<&SoundingReport> {
        self.history.back().map(|h| &h.report)
    }

    /// `STATUS_REPORT` contents now.
    pub fn status(&self, link_quality: u8) -> StatusReport {
        let last = self.history.back();
        StatusReport {
            boot_seq: self.boot_seq,
            uptime_s: u32::try_from((self.now - self.booted_at).max(0) / SECOND).unwrap_or(u32::MAX),
            device_time_us: self.clock.read(self.now),
            state: self.state(),
            active_campaign: self
                .active
                .as_ref()
                .map(|a| a.campaign)
                .or_else(|| self.armed.as_ref().map(|a| a.campaign))
                .unwrap_or(0),
            mains_present: self.power.mains,
            battery_mv: self.power.battery_mv(self.active.is_some()),
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, reason = "0..=100")]
            battery_soc: (self.power.soc() * 100.0).round() as u8,
            charger: if !self.power.charger_ok {
                ChargerState::Fault
            } else if self.power.charging() {
                ChargerState::Charging
            } else if self.power.mains {
                ChargerState::Float
            } else {
                ChargerState::Idle
            },
            cabinet_temp_dc: self.cabinet_temp_dc(),
            door_open: self.door_open,
            speaker: if self.speaker_ok { SpeakerState::Ok } else { SpeakerState::OpenCircuit },
            clock_sync_age_s: self.clock.sync_age_s(self.now).unwrap_or(siren_proto::message::NEVER_SYNCED),
            firmware: self.spec.firmware,
            link_quality,
            faults: self.faults(),
            last_campaign: last.map_or(0, |h| h.campaign),
            last_outcome: last.map_or(Outcome::None, |h| h.outcome),
            channels: self.channels.clone(),
        }
    }

    /// `HEARTBEAT` contents now.
    pub fn heartbeat(&self) -> Heartbeat {
        Heartbeat {
            boot_seq: self.boot_seq,
            uptime_s: u32::try_from((self.now - self.booted_at).max(0) / SECOND).unwrap_or(u32::MAX),
            state: self.state(),
            faults: self.faults(),
        }
    }

    // ----- Faults and events from outside -----

    /// Mains lost or restored. Restoring mains after a brown-out boots the controller.
    pub fn set_mains(&mut self, present: bool) {
        self.power.mains = present;
        if present && self.down_until == Some(i64::MAX) {
            self.reboot();
        }
    }

    /// Reboots the controller: a new boot sequence number, off the air for a while. An armed
    /// campaign survives in non-volatile memory; a running one is cut short.
    pub fn reboot(&mut self) {
        self.abort_active(Outcome::Aborted);
        self.boot_seq = self.boot_seq.wrapping_add(1);
        self.booted_at = self.now;
        self.down_until = Some(self.now + self.spec.reboot_time_us);
    }

    /// Cabinet temperature, 0.1 °C: ambient, warmer while sounding, hot when the cabinet's
    /// cooling has failed.
    pub fn cabinet_temp_dc(&self) -> i16 {
        let sounding = if self.active.is_some() { 60 } else { 0 };
        let cooling = if self.over_temperature { 500 } else { 0 };
        AMBIENT_DC + sounding + cooling
    }
}

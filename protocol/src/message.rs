//! Typed messages and their payload encodings (docs/protocol.md §5).
//!
//! Times are microseconds since the Unix epoch (UTC) on the sender's clock; durations are
//! milliseconds. Message types 0x01..=0x7F travel master → outstation, 0x80..=0xFF the other
//! way, so a frame reflected back at its sender is never of a type the sender accepts.

use crate::error::{DecodeError, EncodeError};
use crate::pattern::{Pattern, wire_enum};
use crate::wire::{Reader, Writer};

wire_enum! {
    /// The message type byte.
    MessageType {
        StatusRequest = 0x01,
        TimeSyncRequest = 0x02,
        ClockAdjust = 0x03,
        TimeSet = 0x04,
        ArmTest = 0x10,
        ArmLive = 0x11,
        TriggerTest = 0x12,
        TriggerLive = 0x13,
        Cancel = 0x14,
        Stop = 0x15,
        ReportRequest = 0x16,
        Ack = 0x80,
        Nak = 0x81,
        StatusReport = 0x82,
        TimeSyncReply = 0x83,
        SoundingReport = 0x84,
        Heartbeat = 0x85,
        Birth = 0x86,
        Death = 0x87,
    }
}

impl MessageType {
    /// Whether an outstation sends this type.
    pub const fn from_outstation(self) -> bool {
        (self as u8) & 0x80 != 0
    }

    /// Whether a master may send this type to the broadcast address.
    pub const fn broadcast_allowed(self) -> bool {
        matches!(
            self,
            MessageType::TimeSet
                | MessageType::TriggerTest
                | MessageType::TriggerLive
                | MessageType::Cancel
                | MessageType::Stop
        )
    }

    /// Whether this master → outstation type changes the device's state (and so must be
    /// persisted past replay before it is acted on).
    pub const fn is_command(self) -> bool {
        matches!(
            self,
            MessageType::ClockAdjust
                | MessageType::TimeSet
                | MessageType::ArmTest
                | MessageType::ArmLive
                | MessageType::TriggerTest
                | MessageType::TriggerLive
                | MessageType::Cancel
                | MessageType::Stop
        )
    }
}

wire_enum! {
    /// What the device is doing.
    DeviceState { Idle = 0, Armed = 1, Sounding = 2 }
}

wire_enum! {
    /// Battery charger state.
    ChargerState { Idle = 0, Charging = 1, Float = 2, Fault = 3 }
}

wire_enum! {
    /// Horn or speaker array state.
    SpeakerState { Ok = 0, OpenCircuit = 1, ShortCircuit = 2, Unknown = 3 }
}

wire_enum! {
    /// One amplifier or motor-driver channel.
    ChannelState { Ok = 0, Fault = 1, Overheated = 2 }
}

wire_enum! {
    /// How a sounding ended, as the device saw it.
    Outcome {
        /// Nothing recorded (no campaign yet).
        None = 0,
        /// Every segment played to the end.
        Completed = 1,
        /// Stopped part-way (STOP, or a fault while sounding).
        Aborted = 2,
        /// Played, but the device's own sensor heard nothing.
        NoSound = 3,
        /// Could not drive the horn or speakers at all.
        AmplifierFault = 4,
        /// Cancelled before the start instant.
        Cancelled = 5,
        /// The start instant passed while the device could not start (rebooting, no power).
        MissedStart = 6,
    }
}

wire_enum! {
    /// Why a device refused a command.
    NakCode {
        /// The type is defined but this device does not implement it.
        Unsupported = 1,
        /// The payload parsed but its values are unusable.
        BadPayload = 2,
        /// Already armed or sounding another campaign.
        Busy = 3,
        /// No such campaign on this device.
        UnknownCampaign = 4,
        /// The start instant (or a trigger's not-after instant) has already passed.
        Expired = 5,
        /// A blocking fault prevents sounding.
        CannotSound = 6,
        /// A pattern this device cannot play.
        BadPattern = 7,
        /// LIVE activation is disabled on this device.
        LiveDisabled = 8,
        /// The device clock is not synchronised, so it will not arm for an absolute instant.
        ClockUnsynced = 9,
    }
}

wire_enum! {
    /// Why a device's session ended.
    DeathCause {
        /// Published by the broker as the last will: the connection was lost.
        ConnectionLost = 0,
        /// Orderly shutdown.
        Shutdown = 1,
        /// The device is rebooting.
        Reboot = 2,
    }
}

/// Fault bits of status reports and heartbeats. Bits 0..=15 are warnings (the siren can still
/// sound: `degraded`); bits 16..=31 are blocking faults (it cannot: `faulty`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct FaultBits(pub u32);

impl FaultBits {
    pub const MAINS_LOST: u32 = 1 << 0;
    pub const BATTERY_LOW: u32 = 1 << 1;
    pub const CHARGER_FAULT: u32 = 1 << 2;
    pub const DOOR_OPEN: u32 = 1 << 3;
    pub const OVER_TEMPERATURE: u32 = 1 << 4;
    pub const CLOCK_UNSYNCED: u32 = 1 << 5;
    pub const CHANNEL_DEGRADED: u32 = 1 << 6;
    pub const SELF_TEST_WARNING: u32 = 1 << 7;
    pub const BATTERY_EXHAUSTED: u32 = 1 << 16;
    pub const AMPLIFIER_FAILED: u32 = 1 << 17;
    pub const SPEAKER_FAILED: u32 = 1 << 18;
    pub const DRIVER_FAILED: u32 = 1 << 19;
    pub const SELF_TEST_FAILED: u32 = 1 << 20;

    /// Mask of the warning half.
    pub const WARNINGS: u32 = 0x0000_FFFF;
    /// Mask of the blocking half.
    pub const BLOCKING: u32 = 0xFFFF_0000;

    /// Names of the defined bits, for logs, events and metrics labels.
    pub const NAMES: [(u32, &'static str); 13] = [
        (Self::MAINS_LOST, "mains_lost"),
        (Self::BATTERY_LOW, "battery_low"),
        (Self::CHARGER_FAULT, "charger_fault"),
        (Self::DOOR_OPEN, "door_open"),
        (Self::OVER_TEMPERATURE, "over_temperature"),
        (Self::CLOCK_UNSYNCED, "clock_unsynced"),
        (Self::CHANNEL_DEGRADED, "channel_degraded"),
        (Self::SELF_TEST_WARNING, "self_test_warning"),
        (Self::BATTERY_EXHAUSTED, "battery_exhausted"),
        (Self::AMPLIFIER_FAILED, "amplifier_failed"),
        (Self::SPEAKER_FAILED, "speaker_failed"),
        (Self::DRIVER_FAILED, "driver_failed"),
        (Self::SELF_TEST_FAILED, "self_test_failed"),
    ];

    /// Whether any blocking fault is set: the siren cannot sound.
    pub const fn is_blocking(self) -> bool {
        self.0 & Self::BLOCKING != 0
    }

    /// Whether any warning is set.
    pub const fn has_warning(self) -> bool {
        self.0 & Self::WARNINGS != 0
    }

    /// Whether `bit` is set.
    pub const fn contains(self, bit: u32) -> bool {
        self.0 & bit == bit
    }
}

/// Most amplifier or driver channels a status report carries.
pub const MAX_CHANNELS: usize = 16;
/// Most segments a sounding may have.
pub const MAX_SEGMENTS: usize = 8;
/// Marks a 16-bit measurement the device cannot make.
pub const NOT_MEASURED: u16 = 0xFFFF;
/// Marks an 8-bit percentage the device does not know.
pub const UNKNOWN_PERCENT: u8 = 0xFF;
/// Marks a temperature the device does not know.
pub const UNKNOWN_TEMPERATURE: i16 = i16::MAX;
/// Marks a clock that was never synchronised.
pub const NEVER_SYNCED: u32 = u32::MAX;

/// Firmware version, `major.minor.patch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Firmware {
    pub major: u8,
    pub minor: u8,
    pub patch: u8,
}

impl Firmware {
    fn encode(self, w: &mut Writer<'_>) {
        w.bytes(&[self.major, self.minor, self.patch]);
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let [major, minor, patch] = r.bytes()?;
        Ok(Self { major, minor, patch })
    }
}

impl core::fmt::Display for Firmware {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// A device's full condition.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusReport {
    /// Boot sequence number: increments at every boot.
    pub boot_seq: u32,
    pub uptime_s: u32,
    /// The device clock when the report was made.
    pub device_time_us: i64,
    pub state: DeviceState,
    /// The armed or sounding campaign, 0 for none.
    pub active_campaign: u32,
    pub mains_present: bool,
    pub battery_mv: u16,
    /// State of charge in percent, or [`UNKNOWN_PERCENT`].
    pub battery_soc: u8,
    pub charger: ChargerState,
    /// Cabinet temperature in tenths of a degree Celsius, or [`UNKNOWN_TEMPERATURE`].
    pub cabinet_temp_dc: i16,
    pub door_open: bool,
    pub speaker: SpeakerState,
    /// Seconds since the clock was last set by time sync, or [`NEVER_SYNCED`].
    pub clock_sync_age_s: u32,
    pub firmware: Firmware,
    /// Link quality in percent, or [`UNKNOWN_PERCENT`].
    pub link_quality: u8,
    pub faults: FaultBits,
    /// The most recent campaign that ended, 0 for none.
    pub last_campaign: u32,
    pub last_outcome: Outcome,
    pub channels: Vec<ChannelState>,
}

impl StatusReport {
    fn encode(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        let count = channel_count(self.channels.len())?;
        for (field, value) in [("battery_soc", self.battery_soc), ("link_quality", self.link_quality)] {
            if !matches!(value, 0..=100 | UNKNOWN_PERCENT) {
                return Err(EncodeError::Range(field));
            }
        }
        w.u32(self.boot_seq);
        w.u32(self.uptime_s);
        w.i64(self.device_time_us);
        w.u8(self.state as u8);
        w.u32(self.active_campaign);
        w.u8(u8::from(self.mains_present));
        w.u16(self.battery_mv);
        w.u8(self.battery_soc);
        w.u8(self.charger as u8);
        w.i16(self.cabinet_temp_dc);
        w.u8(u8::from(self.door_open));
        w.u8(self.speaker as u8);
        w.u32(self.clock_sync_age_s);
        self.firmware.encode(w);
        w.u8(self.link_quality);
        w.u32(self.faults.0);
        w.u32(self.last_campaign);
        w.u8(self.last_outcome as u8);
        w.u8(count);
        for c in &self.channels {
            w.u8(*c as u8);
        }
        Ok(())
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let report = Self {
            boot_seq: r.u32()?,
            uptime_s: r.u32()?,
            device_time_us: r.i64()?,
            state: DeviceState::read(r)?,
            active_campaign: r.u32()?,
            mains_present: read_bool(r, "mains")?,
            battery_mv: r.u16()?,
            battery_soc: read_percent(r, "battery_soc")?,
            charger: ChargerState::read(r)?,
            cabinet_temp_dc: r.i16()?,
            door_open: read_bool(r, "door")?,
            speaker: SpeakerState::read(r)?,
            clock_sync_age_s: r.u32()?,
            firmware: Firmware::decode(r)?,
            link_quality: read_percent(r, "link_quality")?,
            faults: FaultBits(r.u32()?),
            last_campaign: r.u32()?,
            last_outcome: Outcome::read(r)?,
            channels: {
                let n = usize::from(r.u8()?);
                if n > MAX_CHANNELS {
                    return Err(DecodeError::Range("channel count"));
                }
                (0..n).map(|_| ChannelState::read(r)).collect::<Result<_, _>>()?
            },
        };
        Ok(report)
    }
}

/// What the device recorded of one sounding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SoundingReport {
    pub campaign: u32,
    pub outcome: Outcome,
    /// Whether it was a LIVE activation (else TEST).
    pub live: bool,
    /// When sound started by the device clock, 0 if it never started.
    pub started_us: i64,
    /// When it ended by the device clock, 0 if it never started.
    pub ended_us: i64,
    /// Peak sound level at the device's own microphone in tenths of dB(C), or [`NOT_MEASURED`].
    pub sound_level_ddb: u16,
    /// Mean amplifier current while sounding in mA, or [`NOT_MEASURED`].
    pub amplifier_current_ma: u16,
}

impl SoundingReport {
    fn encode(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        if self.outcome == Outcome::None {
            return Err(EncodeError::Range("outcome"));
        }
        w.u32(campaign_id(self.campaign)?);
        w.u8(self.outcome as u8);
        w.u8(u8::from(self.live));
        w.i64(self.started_us);
        w.i64(self.ended_us);
        w.u16(self.sound_level_ddb);
        w.u16(self.amplifier_current_ma);
        Ok(())
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            campaign: read_campaign(r)?,
            outcome: match Outcome::read(r)? {
                Outcome::None => return Err(DecodeError::Range("outcome")),
                o => o,
            },
            live: read_bool(r, "live")?,
            started_us: r.i64()?,
            ended_us: r.i64()?,
            sound_level_ddb: r.u16()?,
            amplifier_current_ma: r.u16()?,
        })
    }
}

/// A pattern and when it starts relative to the sounding's start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub offset_ms: u32,
    pub pattern: Pattern,
}

/// Arm a sounding for an absolute start instant (`ARM_TEST`, `ARM_LIVE`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arm {
    pub campaign: u32,
    /// The start instant on the device clock (which time sync keeps on UTC).
    pub start_us: i64,
    pub segments: Vec<Segment>,
}

/// Sound now (`TRIGGER_TEST`, `TRIGGER_LIVE`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trigger {
    pub campaign: u32,
    /// The device refuses the trigger once its clock has passed this instant, so a trigger
    /// delayed in a queue never sounds late.
    pub not_after_us: i64,
    pub segments: Vec<Segment>,
}

fn encode_segments(segments: &[Segment], w: &mut Writer<'_>) -> Result<(), EncodeError> {
    let count = u8::try_from(segments.len())
        .ok()
        .filter(|&n| n >= 1 && usize::from(n) <= MAX_SEGMENTS)
        .ok_or(EncodeError::TooMany("segments"))?;
    w.u8(count);
    for s in segments {
        w.u32(s.offset_ms);
        s.pattern.encode(w)?;
    }
    Ok(())
}

fn decode_segments(r: &mut Reader<'_>) -> Result<Vec<Segment>, DecodeError> {
    let n = usize::from(r.u8()?);
    if n == 0 || n > MAX_SEGMENTS {
        return Err(DecodeError::Range("segment count"));
    }
    (0..n).map(|_| Ok(Segment { offset_ms: r.u32()?, pattern: Pattern::decode(r)? })).collect()
}

/// Periodic liveness beacon (MQTT).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heartbeat {
    pub boot_seq: u32,
    pub uptime_s: u32,
    pub state: DeviceState,
    pub faults: FaultBits,
}

/// Sent on every (re)connect (MQTT), after the last will was registered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Birth {
    pub boot_seq: u32,
    pub firmware: Firmware,
    /// Capability bits ([`Birth::CAN_MEASURE_SOUND`], ...).
    pub capabilities: u16,
    /// Seconds between heartbeats.
    pub heartbeat_period_s: u16,
}

impl Birth {
    /// The device has a microphone and reports sound level.
    pub const CAN_MEASURE_SOUND: u16 = 1 << 0;
    /// The device measures amplifier current.
    pub const CAN_MEASURE_CURRENT: u16 = 1 << 1;
    /// The device accepts LIVE activation.
    pub const LIVE_ENABLED: u16 = 1 << 2;
}

/// End of a device's session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Death {
    pub boot_seq: u32,
    pub cause: DeathCause,
}

/// Every message of the protocol.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    StatusRequest,
    TimeSyncRequest {
        t1_us: i64,
    },
    /// Add `offset_us` to the device clock, once per time-sync exchange (`sync_t1_us`).
    ClockAdjust {
        sync_t1_us: i64,
        offset_us: i64,
    },
    /// Set the device clock to the master's time at the start of this frame.
    TimeSet {
        master_time_us: i64,
    },
    ArmTest(Arm),
    ArmLive(Arm),
    TriggerTest(Trigger),
    TriggerLive(Trigger),
    Cancel {
        campaign: u32,
    },
    /// Stop sounding `campaign`, or whatever is sounding when 0.
    Stop {
        campaign: u32,
    },
    ReportRequest {
        campaign: u32,
    },
    Ack {
        counter: u32,
        message_type: u8,
    },
    Nak {
        counter: u32,
        message_type: u8,
        code: NakCode,
    },
    StatusReport(StatusReport),
    TimeSyncReply {
        t1_us: i64,
        t2_us: i64,
        t3_us: i64,
    },
    SoundingReport(SoundingReport),
    Heartbeat(Heartbeat),
    Birth(Birth),
    Death(Death),
}

impl Message {
    /// The type byte this message is sent with.
    pub fn message_type(&self) -> MessageType {
        match self {
            Message::StatusRequest => MessageType::StatusRequest,
            Message::TimeSyncRequest { .. } => MessageType::TimeSyncRequest,
            Message::ClockAdjust { .. } => MessageType::ClockAdjust,
            Message::TimeSet { .. } => MessageType::TimeSet,
            Message::ArmTest(_) => MessageType::ArmTest,
            Message::ArmLive(_) => MessageType::ArmLive,
            Message::TriggerTest(_) => MessageType::TriggerTest,
            Message::TriggerLive(_) => MessageType::TriggerLive,
            Message::Cancel { .. } => MessageType::Cancel,
            Message::Stop { .. } => MessageType::Stop,
            Message::ReportRequest { .. } => MessageType::ReportRequest,
            Message::Ack { .. } => MessageType::Ack,
            Message::Nak { .. } => MessageType::Nak,
            Message::StatusReport(_) => MessageType::StatusReport,
            Message::TimeSyncReply { .. } => MessageType::TimeSyncReply,
            Message::SoundingReport(_) => MessageType::SoundingReport,
            Message::Heartbeat(_) => MessageType::Heartbeat,
            Message::Birth(_) => MessageType::Birth,
            Message::Death(_) => MessageType::Death,
        }
    }

    /// Appends the payload encoding to `out`.
    pub fn encode_payload(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let w = &mut Writer::new(out);
        match self {
            Message::StatusRequest => {}
            Message::TimeSyncRequest { t1_us } => w.i64(*t1_us),
            Message::ClockAdjust { sync_t1_us, offset_us } => {
                w.i64(*sync_t1_us);
                w.i64(*offset_us);
            }
            Message::TimeSet { master_time_us } => w.i64(*master_time_us),
            Message::ArmTest(arm) | Message::ArmLive(arm) => {
                w.u32(campaign_id(arm.campaign)?);
                w.i64(arm.start_us);
                encode_segments(&arm.segments, w)?;
            }
            Message::TriggerTest(t) | Message::TriggerLive(t) => {
                w.u32(campaign_id(t.campaign)?);
                w.i64(t.not_after_us);
                encode_segments(&t.segments, w)?;
            }
            Message::Cancel { campaign } | Message::ReportRequest { campaign } => w.u32(campaign_id(*campaign)?),
            Message::Stop { campaign } => w.u32(*campaign),
            Message::Ack { counter, message_type } => {
                w.u32(*counter);
                w.u8(*message_type);
            }
            Message::Nak { counter, message_type, code } => {
                w.u32(*counter);
                w.u8(*message_type);
                w.u8(*code as u8);
            }
            Message::StatusReport(s) => s.encode(w)?,
            Message::TimeSyncReply { t1_us, t2_us, t3_us } => {
                w.i64(*t1_us);
                w.i64(*t2_us);
                w.i64(*t3_us);
            }
            Message::SoundingReport(s) => s.encode(w)?,
            Message::Heartbeat(h) => {
                w.u32(h.boot_seq);
                w.u32(h.uptime_s);
                w.u8(h.state as u8);
                w.u32(h.faults.0);
            }
            Message::Birth(b) => {
                if !HEARTBEAT_PERIOD_S.contains(&b.heartbeat_period_s) {
                    return Err(EncodeError::Range("heartbeat_period_s"));
                }
                w.u32(b.boot_seq);
                b.firmware.encode(w);
                w.u16(b.capabilities);
                w.u16(b.heartbeat_period_s);
            }
            Message::Death(d) => {
                w.u32(d.boot_seq);
                w.u8(d.cause as u8);
            }
        }
        Ok(())
    }

    /// Decodes a payload of the given type byte. Every field is range-checked and the payload
    /// must be consumed exactly.
    pub fn decode(message_type: u8, payload: &[u8]) -> Result<Self, DecodeError> {
        let ty = MessageType::from_u8(message_type).ok_or(DecodeError::UnknownType(message_type))?;
        let mut reader = Reader::new(payload);
        let r = &mut reader;
        let message = match ty {
            MessageType::StatusRequest => Message::StatusRequest,
            MessageType::TimeSyncRequest => Message::TimeSyncRequest { t1_us: r.i64()? },
            MessageType::ClockAdjust => Message::ClockAdjust { sync_t1_us: r.i64()?, offset_us: r.i64()? },
            MessageType::TimeSet => Message::TimeSet { master_time_us: r.i64()? },
            MessageType::ArmTest => Message::ArmTest(decode_arm(r)?),
            MessageType::ArmLive => Message::ArmLive(decode_arm(r)?),
            MessageType::TriggerTest => Message::TriggerTest(decode_trigger(r)?),
            MessageType::TriggerLive => Message::TriggerLive(decode_trigger(r)?),
            MessageType::Cancel => Message::Cancel { campaign: read_campaign(r)? },
            MessageType::Stop => Message::Stop { campaign: r.u32()? },
            MessageType::ReportRequest => Message::ReportRequest { campaign: read_campaign(r)? },
            MessageType::Ack => Message::Ack { counter: r.u32()?, message_type: r.u8()? },
            MessageType::Nak => Message::Nak { counter: r.u32()?, message_type: r.u8()?, code: NakCode::read(r)? },
            MessageType::StatusReport => Message::StatusReport(StatusReport::decode(r)?),
            MessageType::TimeSyncReply => Message::TimeSyncReply { t1_us: r.i64()?, t2_us: r.i64()?, t3_us: r.i64()? },
            MessageType::SoundingReport => Message::SoundingReport(SoundingReport::decode(r)?),
            MessageType::Heartbeat => Message::Heartbeat(Heartbeat {
                boot_seq: r.u32()?,
                uptime_s: r.u32()?,
                state: DeviceState::read(r)?,
                faults: FaultBits(r.u32()?),
            }),
            MessageType::Birth => Message::Birth(Birth {
                boot_seq: r.u32()?,
                firmware: Firmware::decode(r)?,
                capabilities: r.u16()?,
                heartbeat_period_s: match r.u16()? {
                    p if HEARTBEAT_PERIOD_S.contains(&p) => p,
                    _ => return Err(DecodeError::Range("heartbeat_period_s")),
                },
            }),
            MessageType::Death => Message::Death(Death { boot_seq: r.u32()?, cause: DeathCause::read(r)? }),
        };
        reader.finish()?;
        Ok(message)
    }
}

fn decode_arm(r: &mut Reader<'_>) -> Result<Arm, DecodeError> {
    Ok(Arm { campaign: read_campaign(r)?, start_us: r.i64()?, segments: decode_segments(r)? })
}

fn decode_trigger(r: &mut Reader<'_>) -> Result<Trigger, DecodeError> {
    Ok(Trigger { campaign: read_campaign(r)?, not_after_us: r.i64()?, segments: decode_segments(r)? })
}

/// The seconds a BIRTH may announce as its heartbeat period (docs/protocol.md §5.6).
pub const HEARTBEAT_PERIOD_S: core::ops::RangeInclusive<u16> = 1..=3600;

/// A campaign id where one is required: never 0 (docs/protocol.md §5.4).
fn campaign_id(campaign: u32) -> Result<u32, EncodeError> {
    if campaign == 0 { Err(EncodeError::Range("campaign")) } else { Ok(campaign) }
}

fn read_campaign(r: &mut Reader<'_>) -> Result<u32, DecodeError> {
    match r.u32()? {
        0 => Err(DecodeError::Range("campaign")),
        c => Ok(c),
    }
}

fn channel_count(n: usize) -> Result<u8, EncodeError> {
    u8::try_from(n).ok().filter(|&c| usize::from(c) <= MAX_CHANNELS).ok_or(EncodeError::TooMany("channels"))
}

fn read_bool(r: &mut Reader<'_>, field: &'static str) -> Result<bool, DecodeError> {
    match r.u8()? {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(DecodeError::Range(field)),
    }
}

fn read_percent(r: &mut Reader<'_>, field: &'static str) -> Result<u8, DecodeError> {
    match r.u8()? {
        v @ (0..=100 | UNKNOWN_PERCENT) => Ok(v),
        _ => Err(DecodeError::Range(field)),
    }
}

//! The published test vectors of docs/protocol.md §11: one frame of every message type under
//! a test key. Implementers of compatible devices check their encoder against the hex in the
//! specification; this crate's tests check that the specification's hex decodes to exactly
//! these messages and re-encodes byte for byte.

mod describe;
mod reject;

pub use describe::describe;
pub use reject::{Receiver, Rejection, rejections};

use crate::frame::{Address, KeyId};
use crate::mac::Key;
use crate::message::{
    Arm, Birth, ChannelState, ChargerState, Death, DeathCause, DeviceState, FaultBits, Firmware, Heartbeat, Message,
    NakCode, Outcome, Segment, SoundingReport, SpeakerState, StatusReport, Trigger,
};
use crate::pattern::catalogue;

/// The device test key: bytes 0x00, 0x01, ..., 0x1F. Never deploy it.
pub fn device_key() -> Key {
    Key::new(core::array::from_fn(|i| u8::try_from(i).unwrap_or(0)))
}

/// The bus group test key: bytes 0x20, 0x21, ..., 0x3F. Never deploy it.
pub fn group_key() -> Key {
    Key::new(core::array::from_fn(|i| u8::try_from(i + 0x20).unwrap_or(0)))
}

/// Key id of [`device_key`] in the vectors.
pub const DEVICE_KEY_ID: KeyId = KeyId(0x0102);
/// Key id of [`group_key`] in the vectors.
pub const GROUP_KEY_ID: KeyId = KeyId(0x8001);
/// The device's address in the vectors.
pub const DEVICE_ADDRESS: Address = Address(0x0011);

/// One test vector: a message and the header fields it is sealed with.
#[derive(Debug, Clone)]
pub struct Vector {
    pub name: &'static str,
    pub destination: Address,
    pub source: Address,
    pub key_id: KeyId,
    pub counter: u32,
    pub message: Message,
}

impl Vector {
    /// The key that seals this vector.
    pub fn key(&self) -> Key {
        if self.key_id == GROUP_KEY_ID { group_key() } else { device_key() }
    }
}

/// 2026-05-12T10:00:00+08:00, the 5·12 test, in microseconds since the epoch.
const START_US: i64 = 1_778_551_200_000_000;

/// Every vector, one per message type at least.
#[allow(clippy::too_many_lines, reason = "one entry per message type reads best as one list")]
pub fn all() -> Vec<Vector> {
    let down = |name, counter, message| Vector {
        name,
        destination: DEVICE_ADDRESS,
        source: Address::MASTER,
        key_id: DEVICE_KEY_ID,
        counter,
        message,
    };
    let up = |name, counter, message| Vector {
        name,
        destination: Address::MASTER,
        source: DEVICE_ADDRESS,
        key_id: DEVICE_KEY_ID,
        counter,
        message,
    };
    let broadcast = |name, counter, message| Vector {
        name,
        destination: Address::BROADCAST,
        source: Address::MASTER,
        key_id: GROUP_KEY_ID,
        counter,
        message,
    };
    let air_defence = vec![
        Segment { offset_ms: 0, pattern: catalogue::pre_warning() },
        Segment { offset_ms: 240_000, pattern: catalogue::air_raid() },
        Segment { offset_ms: 480_000, pattern: catalogue::all_clear() },
    ];
    vec![
        down("status-request", 1, Message::StatusRequest),
        up(
            "status-report",
            1,
            Message::StatusReport(StatusReport {
                boot_seq: 7,
                uptime_s: 86_400,
                device_time_us: START_US - 600_000_000,
                state: DeviceState::Armed,
                active_campaign: 512,
                mains_present: true,
                battery_mv: 26_800,
                battery_soc: 97,
                charger: ChargerState::Float,
                cabinet_temp_dc: 235,
                door_open: false,
                speaker: SpeakerState::Ok,
                clock_sync_age_s: 300,
                firmware: Firmware { major: 2, minor: 4, patch: 1 },
                link_quality: 88,
                faults: FaultBits(0),
                last_campaign: 511,
                last_outcome: Outcome::Completed,
                channels: vec![ChannelState::Ok; 4],
            }),
        ),
        down("time-sync-request", 2, Message::TimeSyncRequest { t1_us: START_US - 900_000_000 }),
        up(
            "time-sync-reply",
            2,
            Message::TimeSyncReply {
                t1_us: START_US - 900_000_000,
                t2_us: START_US - 900_000_000 + 1_250_000 + 45_000,
                t3_us: START_US - 900_000_000 + 1_250_000 + 47_000,
            },
        ),
        down("clock-adjust", 3, Message::ClockAdjust { sync_t1_us: START_US - 900_000_000, offset_us: -1_250_000 }),
        up("ack", 3, Message::Ack { counter: 3, message_type: 0x03 }),
        broadcast("time-set-broadcast", 1, Message::TimeSet { master_time_us: START_US - 660_000_000 }),
        down("arm-test", 4, Message::ArmTest(Arm { campaign: 512, start_us: START_US, segments: air_defence.clone() })),
        up("nak", 4, Message::Nak { counter: 4, message_type: 0x10, code: NakCode::ClockUnsynced }),
        down("arm-live", 5, Message::ArmLive(Arm { campaign: 513, start_us: START_US, segments: air_defence })),
        down(
            "trigger-test",
            6,
            Message::TriggerTest(Trigger {
                campaign: 514,
                not_after_us: START_US + 2_000_000,
                segments: vec![Segment { offset_ms: 0, pattern: catalogue::silent_test() }],
            }),
        ),
        broadcast(
            "trigger-live-broadcast",
            2,
            Message::TriggerLive(Trigger {
                campaign: 515,
                not_after_us: START_US + 2_000_000,
                segments: vec![Segment { offset_ms: 0, pattern: catalogue::air_raid() }],
            }),
        ),
        down("cancel", 7, Message::Cancel { campaign: 513 }),
        down("stop", 8, Message::Stop { campaign: 0 }),
        down("report-request", 9, Message::ReportRequest { campaign: 512 }),
        up(
            "sounding-report",
            5,
            Message::SoundingReport(SoundingReport {
                campaign: 512,
                outcome: Outcome::Completed,
                live: false,
                started_us: START_US + 3_000,
                ended_us: START_US + 660_003_000,
                sound_level_ddb: 1_184,
                amplifier_current_ma: 9_500,
            }),
        ),
        up(
            "heartbeat",
            6,
            Message::Heartbeat(Heartbeat {
                boot_seq: 7,
                uptime_s: 86_430,
                state: DeviceState::Idle,
                faults: FaultBits(FaultBits::MAINS_LOST | FaultBits::DOOR_OPEN),
            }),
        ),
        up("death", 7, Message::Death(Death { boot_seq: 7, cause: DeathCause::ConnectionLost })),
        up(
            "birth",
            8,
            Message::Birth(Birth {
                boot_seq: 7,
                firmware: Firmware { major: 2, minor: 4, patch: 1 },
                capabilities: Birth::CAN_MEASURE_SOUND | Birth::CAN_MEASURE_CURRENT,
                heartbeat_period_s: 30,
            }),
        ),
    ]
}

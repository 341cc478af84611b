//! Strategies shared by the property tests.
#![allow(dead_code, unreachable_pub)]

use proptest::prelude::*;
use siren_proto::message::{
    Arm, Birth, ChannelState, ChargerState, Death, DeathCause, DeviceState, FaultBits, Firmware, Heartbeat, Message,
    NakCode, Outcome, Segment, SoundingReport, SpeakerState, StatusReport, Trigger,
};
use siren_proto::pattern::{Pattern, Step, Tone};

pub fn one_of<T: Copy + core::fmt::Debug + 'static>(all: &'static [T]) -> impl Strategy<Value = T> {
    proptest::sample::select(all)
}

fn percent() -> impl Strategy<Value = u8> {
    prop_oneof![0u8..=100, Just(0xFF)]
}

fn firmware() -> impl Strategy<Value = Firmware> {
    any::<[u8; 3]>().prop_map(|[major, minor, patch]| Firmware { major, minor, patch })
}

pub fn pattern() -> impl Strategy<Value = Pattern> {
    (
        1u16..=u16::MAX,
        proptest::collection::vec(
            (one_of(Tone::ALL), any::<u32>()).prop_map(|(tone, duration_ms)| Step { tone, duration_ms }),
            1..=16,
        ),
    )
        .prop_map(|(repeats, steps)| Pattern { repeats, steps })
}

fn segments() -> impl Strategy<Value = Vec<Segment>> {
    proptest::collection::vec(
        (any::<u32>(), pattern()).prop_map(|(offset_ms, pattern)| Segment { offset_ms, pattern }),
        1..=3,
    )
}

fn status() -> impl Strategy<Value = StatusReport> {
    (
        (any::<u32>(), any::<u32>(), any::<i64>(), one_of(DeviceState::ALL), any::<u32>(), any::<bool>(), any::<u16>()),
        (percent(), one_of(ChargerState::ALL), any::<i16>(), any::<bool>(), one_of(SpeakerState::ALL), any::<u32>()),
        (firmware(), percent(), any::<u32>(), any::<u32>(), one_of(Outcome::ALL)),
        proptest::collection::vec(one_of(ChannelState::ALL), 0..=16),
    )
        .prop_map(|(a, b, c, channels)| StatusReport {
            boot_seq: a.0,
            uptime_s: a.1,
            device_time_us: a.2,
            state: a.3,
            active_campaign: a.4,
            mains_present: a.5,
            battery_mv: a.6,
            battery_soc: b.0,
            charger: b.1,
            cabinet_temp_dc: b.2,
            door_open: b.3,
            speaker: b.4,
            clock_sync_age_s: b.5,
            firmware: c.0,
            link_quality: c.1,
            faults: FaultBits(c.2),
            last_campaign: c.3,
            last_outcome: c.4,
            channels,
        })
}

/// Any valid message of any type.
pub fn message() -> impl Strategy<Value = Message> {
    let arm = || {
        (1..=u32::MAX, any::<i64>(), segments()).prop_map(|(campaign, start_us, segments)| Arm {
            campaign,
            start_us,
            segments,
        })
    };
    let trigger = || {
        (1..=u32::MAX, any::<i64>(), segments()).prop_map(|(campaign, not_after_us, segments)| Trigger {
            campaign,
            not_after_us,
            segments,
        })
    };
    prop_oneof![
        Just(Message::StatusRequest),
        any::<i64>().prop_map(|t1_us| Message::TimeSyncRequest { t1_us }),
        (any::<i64>(), any::<i64>()).prop_map(|(sync_t1_us, offset_us)| Message::ClockAdjust { sync_t1_us, offset_us }),
        any::<i64>().prop_map(|master_time_us| Message::TimeSet { master_time_us }),
        arm().prop_map(Message::ArmTest),
        arm().prop_map(Message::ArmLive),
        trigger().prop_map(Message::TriggerTest),
        trigger().prop_map(Message::TriggerLive),
        (1..=u32::MAX).prop_map(|campaign| Message::Cancel { campaign }),
        any::<u32>().prop_map(|campaign| Message::Stop { campaign }),
        (1..=u32::MAX).prop_map(|campaign| Message::ReportRequest { campaign }),
        (any::<u32>(), any::<u8>()).prop_map(|(counter, message_type)| Message::Ack { counter, message_type }),
        (any::<u32>(), any::<u8>(), one_of(NakCode::ALL)).prop_map(|(counter, message_type, code)| Message::Nak {
            counter,
            message_type,
            code
        }),
        status().prop_map(Message::StatusReport),
        (any::<i64>(), any::<i64>(), any::<i64>())
            .prop_map(|(t1_us, t2_us, t3_us)| { Message::TimeSyncReply { t1_us, t2_us, t3_us } }),
        (
            1..=u32::MAX,
            one_of(&Outcome::ALL[1..]),
            any::<bool>(),
            any::<i64>(),
            any::<i64>(),
            any::<u16>(),
            any::<u16>()
        )
            .prop_map(
                |(campaign, outcome, live, started_us, ended_us, sound_level_ddb, amplifier_current_ma)| {
                    Message::SoundingReport(SoundingReport {
                        campaign,
                        outcome,
                        live,
                        started_us,
                        ended_us,
                        sound_level_ddb,
                        amplifier_current_ma,
                    })
                }
            ),
        (any::<u32>(), any::<u32>(), one_of(DeviceState::ALL), any::<u32>()).prop_map(
            |(boot_seq, uptime_s, state, f)| Message::Heartbeat(Heartbeat {
                boot_seq,
                uptime_s,
                state,
                faults: FaultBits(f)
            })
        ),
        (any::<u32>(), firmware(), any::<u16>(), 1u16..=3600).prop_map(
            |(boot_seq, firmware, capabilities, heartbeat_period_s)| {
                Message::Birth(Birth { boot_seq, firmware, capabilities, heartbeat_period_s })
            }
        ),
        (any::<u32>(), one_of(DeathCause::ALL)).prop_map(|(boot_seq, cause)| Message::Death(Death { boot_seq, cause })),
    ]
}

//! Device physics, clock and pattern timing on virtual time: the caller's clock is the only
//! clock, so hours pass in microseconds.
#![allow(clippy::unwrap_used, reason = "test helpers may panic on impossible states")]

use siren_proto::message::{Arm, FaultBits, NakCode, Outcome, Segment};
use siren_proto::pattern::catalogue;
use siren_sim::device::{Device, DeviceClock, DeviceSpec};

const S: i64 = 1_000_000;
const H: i64 = 3_600 * S;
/// 2026-09-18T01:00:00Z, three hours before the 9·18 sounding in Beijing time.
const T0: i64 = 1_789_693_200 * S;

fn device(capacity_ah: f64) -> Device {
    let spec = DeviceSpec { battery_capacity_ah: capacity_ah, ..DeviceSpec::default() };
    let mut d = Device::new(spec, T0, DeviceClock::new(T0, 0, 0.0), 1);
    d.clock.set(T0, T0); // synchronised
    d
}

fn air_defence() -> Vec<Segment> {
    vec![
        Segment { offset_ms: 0, pattern: catalogue::pre_warning() },
        Segment { offset_ms: 240_000, pattern: catalogue::air_raid() },
        Segment { offset_ms: 480_000, pattern: catalogue::all_clear() },
    ]
}

#[test]
fn battery_runs_down_on_mains_loss_and_the_siren_turns_faulty_when_exhausted() {
    // 10 Ah at 0.4 A idle: 30 % left after 17.5 h, the 10 % cut-off after 22.5 h.
    let mut d = device(10.0);
    d.set_mains(false);
    d.advance(T0 + 17 * H);
    let f = d.faults();
    assert!(f.contains(FaultBits::MAINS_LOST) && !f.contains(FaultBits::BATTERY_LOW), "{f:?}");
    assert!(!f.is_blocking());
    d.advance(T0 + 18 * H);
    assert!(d.faults().contains(FaultBits::BATTERY_LOW));
    assert!(!d.faults().is_blocking());
    d.advance(T0 + 22 * H);
    assert!(!d.faults().is_blocking(), "cut-off not reached yet");
    d.advance(T0 + 23 * H);
    assert!(d.faults().contains(FaultBits::BATTERY_EXHAUSTED));
    assert!(d.faults().is_blocking());
    let status = d.status(100);
    assert!(status.battery_mv < 22_200, "{} mV", status.battery_mv);
    assert_eq!(status.battery_soc, 8);
    let arm = Arm { campaign: 1, start_us: T0 + 24 * H, segments: air_defence() };
    assert_eq!(d.arm(&arm, false), Err(NakCode::CannotSound));
    // Mains back: the charger lifts it out of the cut-off at once, and recharges.
    d.set_mains(true);
    assert!(!d.faults().is_blocking());
    d.advance(T0 + 26 * H);
    assert!(d.power.soc() > 0.8);
}

#[test]
fn sounding_drains_the_battery_far_faster_than_idling() {
    let mut idle = device(100.0);
    let mut loud = device(100.0);
    idle.set_mains(false);
    loud.set_mains(false);
    let arm = Arm {
        campaign: 5,
        start_us: T0 + S,
        segments: vec![Segment { offset_ms: 0, pattern: catalogue::all_clear() }],
    };
    loud.arm(&arm, false).unwrap();
    idle.advance(T0 + 10 * 60 * S);
    loud.advance(T0 + 10 * 60 * S);
    let used = |d: &Device| 100.0 - d.power.charge_ah;
    // 3 min at 25 A more: 1.25 Ah.
    assert!((used(&loud) - used(&idle) - 1.25).abs() < 0.01, "{} vs {}", used(&loud), used(&idle));
}

#[test]
fn the_air_defence_signals_play_exactly_as_specified() {
    let mut d = device(100.0);
    let start = T0 + 3 * H;
    d.arm(&Arm { campaign: 918, start_us: start, segments: air_defence() }, false).unwrap();
    // Step through the whole sounding in uneven steps; the truth must not depend on them.
    let mut t = T0;
    let mut audible = Vec::new();
    while t < start + 700 * S {
        t += 137_000;
        d.advance(t);
        audible.push((t - start, d.audible_now()));
    }
    let truth = &d.soundings()[0];
    assert_eq!(truth.outcome, Outcome::Completed);
    assert_eq!(truth.started, Some(start));
    assert_eq!(truth.ended, Some(start + 660 * S), "3 min + 1 min gap + 3 min + 1 min gap + 3 min");
    assert!(truth.audible);
    assert_eq!(truth.report.started_us, start, "the synchronised device clock reads true time");
    assert_eq!(catalogue::pre_warning().duration_ms(), 180_000);
    assert_eq!(catalogue::air_raid().duration_ms(), 180_000);
    assert_eq!(catalogue::all_clear().duration_ms(), 180_000);
    let at = |secs: f64| {
        #[allow(clippy::cast_possible_truncation, reason = "test values")]
        let us = (secs * 1e6) as i64;
        audible.iter().filter(|(e, _)| (*e - us).abs() < 70_000).map(|(_, a)| *a).next().unwrap()
    };
    assert!(at(1.0) && at(35.0) && !at(37.0) && !at(59.0) && at(61.0), "pre-warning: 36 s on, 24 s off");
    assert!(!at(200.0), "gap between signals");
    assert!(at(241.0) && !at(247.0) && at(253.0) && !at(419.5), "air raid: 6 s on, 6 s off, last off step");
    assert!(at(481.0) && at(659.0) && !at(661.0), "all clear: 3 min continuous");
}

#[test]
fn a_clock_offset_and_drift_move_the_start_and_time_sync_corrects_it() {
    // The device runs 1.5 s ahead and loses 50 ppm (a mains-locked clock on a sagging grid).
    let mut d = Device::new(DeviceSpec::default(), T0, DeviceClock::new(T0, 1_500_000, -50.0), 1);
    assert_eq!(d.clock.error_at(T0), 1_500_000);
    assert_eq!(d.clock.error_at(T0 + 10_000 * S), 1_500_000 - 500_000);
    let start = T0 + 10_000 * S;
    assert_eq!(
        d.arm(&Arm { campaign: 1, start_us: start, segments: air_defence() }, false),
        Err(NakCode::ClockUnsynced)
    );
    // One time-sync correction at T0 + 1000 s removes the error; the drift then accumulates.
    let at = T0 + 1_000 * S;
    d.advance(at);
    let error = d.clock.error_at(at);
    assert!(d.clock.adjust(at, 42, -error));
    assert!(!d.clock.adjust(at, 42, -error), "a retried CLOCK_ADJUST applies once");
    assert_eq!(d.clock.error_at(at), 0);
    d.arm(&Arm { campaign: 1, start_us: start, segments: air_defence() }, false).unwrap();
    d.advance(start + 700 * S);
    let truth = &d.soundings()[0];
    // It starts when its clock reads `start`: 9000 s × 50 ppm = 450 ms late by true time.
    assert_eq!(truth.started, Some(start + 450_023));
    assert_eq!(truth.report.started_us, start, "by its own clock it started on time");
}

#[test]
fn failures_give_distinct_outcomes() {
    let arm = |d: &mut Device, c| d.arm(&Arm { campaign: c, start_us: T0 + 60 * S, segments: air_defence() }, false);
    // A speaker open circuit: the amplifiers play into nothing; the microphone hears nothing.
    let mut speaker = device(100.0);
    speaker.speaker_ok = false;
    arm(&mut speaker, 1).unwrap();
    speaker.advance(T0 + H);
    let t = &speaker.soundings()[0];
    assert_eq!((t.outcome, t.audible), (Outcome::NoSound, false));
    assert!(t.report.sound_level_ddb < 600);

    // Every amplifier channel fails after arming: no start at all.
    let mut amp = device(100.0);
    arm(&mut amp, 2).unwrap();
    amp.channels.fill(siren_proto::message::ChannelState::Fault);
    amp.advance(T0 + H);
    assert_eq!(amp.soundings()[0].outcome, Outcome::AmplifierFault);
    assert_eq!(amp.soundings()[0].started, None);

    // A reboot across the start instant: the arming survives in flash but the start is missed.
    let mut rebooting = device(100.0);
    arm(&mut rebooting, 3).unwrap();
    rebooting.advance(T0 + 50 * S);
    rebooting.reboot();
    rebooting.advance(T0 + H);
    assert_eq!(rebooting.soundings()[0].outcome, Outcome::MissedStart);
    assert_eq!(rebooting.boot_seq(), 2);

    // STOP part-way.
    let mut stopped = device(100.0);
    arm(&mut stopped, 4).unwrap();
    stopped.advance(T0 + 120 * S);
    stopped.stop(0);
    let t = &stopped.soundings()[0];
    assert_eq!(t.outcome, Outcome::Aborted);
    assert_eq!(t.ended, Some(T0 + 120 * S));

    // Cancelled before the start; a cancel repeated is acknowledged too.
    let mut cancelled = device(100.0);
    arm(&mut cancelled, 5).unwrap();
    cancelled.cancel(5).unwrap();
    cancelled.cancel(5).unwrap();
    assert_eq!(cancelled.cancel(6), Err(NakCode::UnknownCampaign));
    assert_eq!(cancelled.soundings()[0].outcome, Outcome::Cancelled);
}

#[test]
fn arming_rules() {
    let mut d = device(100.0);
    let a = Arm { campaign: 7, start_us: T0 + 60 * S, segments: air_defence() };
    d.arm(&a, false).unwrap();
    d.arm(&a, false).unwrap(); // a retry is acknowledged again
    let other = Arm { campaign: 8, ..a.clone() };
    assert_eq!(d.arm(&other, false), Err(NakCode::Busy));
    let past = Arm { campaign: 9, start_us: T0 - S, segments: air_defence() };
    d.cancel(7).unwrap();
    assert_eq!(d.arm(&past, false), Err(NakCode::Expired), "never sounds late");
    d.spec.live_enabled = false;
    assert_eq!(d.arm(&other, true), Err(NakCode::LiveDisabled));
}

#[test]
fn the_firmware_answers_as_docs_protocol_md_section_5_4_says() {
    use siren_proto::message::Trigger;
    let arm = |c, start| Arm { campaign: c, start_us: start, segments: air_defence() };
    let trigger = |c, not_after| Trigger { campaign: c, not_after_us: not_after, segments: air_defence() };

    // The same campaign armed again with other content: BUSY. Identical: acknowledged.
    let mut d = device(100.0);
    d.arm(&arm(5, T0 + 60 * S), false).unwrap();
    assert_eq!(d.arm(&arm(5, T0 + 61 * S), false), Err(NakCode::Busy));
    assert_eq!(d.arm(&arm(5, T0 + 60 * S), false), Ok(()));
    // A trigger of the armed campaign starts it now.
    d.advance(T0 + 10 * S);
    d.trigger(&trigger(5, T0 + 20 * S), false).unwrap();
    assert_eq!((d.sounding_campaign(), d.armed_campaign()), (Some(5), None));
    // Its retry after not_after passed is acknowledged, not EXPIRED: it is already sounding.
    d.advance(T0 + 30 * S);
    assert_eq!(d.trigger(&trigger(5, T0 + 20 * S), false), Ok(()));
    assert_eq!(d.trigger(&trigger(6, T0 + 20 * S), false), Err(NakCode::Busy), "BUSY comes before EXPIRED");
    // CANCEL of a campaign never heard of: UNKNOWN_CAMPAIGN; of the one sounding: changes nothing.
    assert_eq!(d.cancel(99), Err(NakCode::UnknownCampaign));
    assert_eq!(d.cancel(5), Ok(()));
    assert_eq!(d.sounding_campaign(), Some(5));
    // STOP of another campaign changes nothing; STOP when idle too.
    d.stop(7);
    assert_eq!(d.sounding_campaign(), Some(5));
    d.stop(0);
    assert_eq!(d.sounding_campaign(), None);
    d.stop(0);

    // Never synchronised: ARM is refused, TRIGGER is not.
    let mut unsynced = Device::new(DeviceSpec::default(), T0, DeviceClock::new(T0, 0, 0.0), 1);
    assert_eq!(unsynced.arm(&arm(8, T0 + 60 * S), false), Err(NakCode::ClockUnsynced));
    assert_eq!(unsynced.trigger(&trigger(8, T0 + 60 * S), false), Ok(()));
}

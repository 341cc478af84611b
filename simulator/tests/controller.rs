//! The controller as the daemon sees it: counters across reboots, a device with the wrong key,
//! a replaying attacker, time sync through the protocol, and the ground-truth log.
#![allow(clippy::unwrap_used, reason = "test helpers may panic on impossible states")]

use std::time::Instant;

use siren_proto::frame::{Address, KeyId};
use siren_proto::master::{Master, MasterConfig, MasterEvent, PeerConfig, Priority, TimeSample};
use siren_proto::message::MessageType::{ArmTest, ClockAdjust, TimeSyncRequest};
use siren_proto::message::{Arm, Segment};
use siren_proto::pattern::catalogue;
use siren_proto::replay::{ReplayWindow, TxCounter};
use siren_proto::{Key, Message, RejectReason};
use siren_sim::controller::{Channel, Controller, Identity};
use siren_sim::device::{Device, DeviceClock, DeviceSpec};
use siren_sim::fault::Fault;

const S: i64 = 1_000_000;
const T0: i64 = 1_789_693_200 * S;

fn controller(clock_error_us: i64) -> Controller {
    let identity = Identity {
        siren_id: "HZ-C-0001".into(),
        address: Address(1),
        key_id: KeyId(7),
        key: Key::new([7; 32]),
        group: None,
    };
    Controller::new(identity, Device::new(DeviceSpec::default(), T0, DeviceClock::new(T0, clock_error_us, 0.0), 1))
}

fn master() -> Master {
    let mut m = Master::new(MasterConfig::mqtt());
    m.add_peer(PeerConfig {
        key_id: KeyId(7),
        key: Key::new([7; 32]),
        address: Address(1),
        tx: TxCounter::new(1, 1024),
        rx: ReplayWindow::default(),
        birth: None,
        links: vec![],
    });
    m
}

/// Delivers the master's request to the controller at true time `t` and the answers back.
fn exchange(m: &mut Master, c: &mut Controller, t: i64) -> Vec<MasterEvent> {
    let now = Instant::now();
    while let Some(tx) = m.poll_transmit(now) {
        c.handle_mqtt(t, &tx.bytes);
    }
    while let Some((_, frame)) = c.poll_mqtt() {
        m.handle_input(now, &frame);
    }
    let events: Vec<MasterEvent> = std::iter::from_fn(|| m.poll_event()).collect();
    // Persisting is the daemon's business; here every lease asked for is granted.
    for e in &events {
        if let MasterEvent::LeaseWanted { key_id, up_to } = e {
            m.grant_lease(*key_id, *up_to);
        }
    }
    events.into_iter().filter(|e| !matches!(e, MasterEvent::LeaseWanted { .. })).collect()
}

fn publish_status(c: &mut Controller) -> Vec<u8> {
    let status = Message::StatusReport(c.device.status(100));
    c.publish(Channel::Status, &status);
    c.poll_mqtt().unwrap().1
}

#[test]
fn counters_survive_reboots_and_old_frames_stay_dead() {
    let mut m = master();
    let mut c = controller(0);
    let before: Vec<Vec<u8>> = (0..3).map(|_| publish_status(&mut c)).collect();
    for f in &before {
        m.handle_input(Instant::now(), f);
    }
    assert!(std::iter::from_fn(|| m.poll_event()).all(|e| matches!(e, MasterEvent::Unsolicited { .. })));
    for i in 1..=3 {
        c.apply(T0 + i * 100 * S, &Fault::Reboot);
        c.device.advance(T0 + i * 100 * S + 30 * S);
    }
    assert_eq!(c.device.boot_seq(), 4);
    m.handle_input(Instant::now(), &publish_status(&mut c));
    let got: Vec<_> = std::iter::from_fn(|| m.poll_event()).collect();
    assert!(matches!(got.as_slice(), [MasterEvent::Unsolicited { .. }]), "{got:?}");
    m.handle_input(Instant::now(), &before[2]);
    assert!(matches!(m.poll_event(), Some(MasterEvent::Rejected { reason: RejectReason::Replayed, .. })));
    // Commands persisted the receive counter, so an old command is refused after a reboot too.
    m.request(KeyId(7), Message::Stop { campaign: 0 }, Priority::Command).unwrap();
    let stop = m.poll_transmit(Instant::now()).unwrap().bytes;
    c.handle_mqtt(T0 + 400 * S, &stop);
    c.apply(T0 + 401 * S, &Fault::Reboot);
    c.device.advance(T0 + 430 * S);
    c.handle_mqtt(T0 + 431 * S, &stop);
    assert_eq!(c.rejected(), [RejectReason::Replayed]);
}

#[test]
fn a_device_with_the_wrong_key_is_refused_and_refuses() {
    let mut m = master();
    let mut c = controller(0);
    c.apply(T0, &Fault::WrongKey);
    m.handle_input(Instant::now(), &publish_status(&mut c));
    assert!(matches!(m.poll_event(), Some(MasterEvent::Rejected { reason: RejectReason::BadMac, .. })));
    m.request(KeyId(7), Message::StatusRequest, Priority::Poll).unwrap();
    assert!(exchange(&mut m, &mut c, T0 + S).is_empty(), "no answer to a request it cannot verify");
    assert_eq!(c.rejected(), [RejectReason::BadMac]);
}

#[test]
fn the_replaying_attacker_is_counted_as_replays() {
    let mut m = master();
    let mut c = controller(0);
    for _ in 0..3 {
        m.handle_input(Instant::now(), &publish_status(&mut c));
    }
    while m.poll_event().is_some() {}
    c.apply(T0 + S, &Fault::ReplayAttack);
    let mut replays = 0;
    while let Some((_, frame)) = c.poll_mqtt() {
        m.handle_input(Instant::now(), &frame);
        replays += 1;
    }
    let got: Vec<_> = std::iter::from_fn(|| m.poll_event()).collect();
    assert_eq!(replays, 3);
    assert!(got.iter().all(|e| matches!(e, MasterEvent::Rejected { reason: RejectReason::Replayed, .. })), "{got:?}");
}

#[test]
fn time_sync_through_the_protocol_brings_the_start_within_tolerance() {
    // The device clock is 1.8 s ahead; one exchange over a symmetric 40 ms path fixes it.
    let mut m = master();
    let mut c = controller(1_800_000);
    let t1 = T0;
    m.request(KeyId(7), Message::TimeSyncRequest { t1_us: t1 }, Priority::Command).unwrap();
    let got = exchange(&mut m, &mut c, T0 + 40_000);
    let Some(MasterEvent::Reply { message: Message::TimeSyncReply { t1_us, t2_us, t3_us }, .. }) = got.first() else {
        panic!("{got:?}")
    };
    let t4 = t3_us - 1_800_000 + 40_000; // the answer's arrival by the master's (true) clock
    let sample = TimeSample::compute(*t1_us, *t2_us, *t3_us, t4);
    assert!((sample.offset_us + 1_800_000).abs() < 1_000, "{sample:?}");
    m.request(KeyId(7), Message::ClockAdjust { sync_t1_us: t1, offset_us: sample.offset_us }, Priority::Command)
        .unwrap();
    let acked = exchange(&mut m, &mut c, T0 + 100_000);
    assert!(matches!(acked.as_slice(), [MasterEvent::Reply { message: Message::Ack { .. }, .. }]), "{acked:?}");
    assert!(c.device.clock.error_at(T0 + 100_000).abs() < 1_000);

    let start = T0 + 600 * S;
    let segments = vec![Segment { offset_ms: 0, pattern: catalogue::chime() }];
    m.request(KeyId(7), Message::ArmTest(Arm { campaign: 3, start_us: start, segments }), Priority::Command).unwrap();
    exchange(&mut m, &mut c, T0 + 200_000);
    c.device.advance(start + 10 * S);
    let truth = &c.device.soundings()[0];
    assert!((truth.started.unwrap() - start).abs() < 1_000, "started {} µs off", truth.started.unwrap() - start);
    // The ground-truth log holds what it received, in order.
    let kinds: Vec<_> = c.received().iter().map(|r| r.message.message_type()).collect();
    assert_eq!(kinds, [TimeSyncRequest, ClockAdjust, ArmTest]);
}

#[test]
fn the_ground_truth_logs_stay_bounded() {
    use siren_sim::controller::LOG_LIMIT;
    let mut m = master();
    let mut c = controller(0);
    for i in 0..(LOG_LIMIT + 10) {
        m.request(KeyId(7), Message::StatusRequest, Priority::Poll).unwrap();
        let t = T0 + i64::try_from(i).unwrap() * 1_000;
        exchange(&mut m, &mut c, t);
    }
    let received = c.received();
    assert!(received.len() <= LOG_LIMIT, "{}", received.len());
    assert!(received.len() > LOG_LIMIT / 2, "the recent half is kept");
    assert_eq!(received.last().unwrap().at, T0 + i64::try_from(LOG_LIMIT + 9).unwrap() * 1_000, "the newest is kept");
}

#[test]
fn a_time_set_over_serial_counts_its_own_wire_time() {
    // Two seconds off; the master stamps the frame as its SYNC starts (docs/protocol.md §5.3).
    let mut c = controller(2 * S);
    let mut m = Master::new(MasterConfig::serial(9600));
    m.add_peer(PeerConfig {
        key_id: KeyId(7),
        key: Key::new([7; 32]),
        address: Address(1),
        tx: TxCounter::new(1, 1024),
        rx: ReplayWindow::default(),
        birth: None,
        links: vec![],
    });
    let sync_start = T0 + 10 * S;
    m.request(KeyId(7), Message::TimeSet { master_time_us: sync_start }, Priority::Command).unwrap();
    let tx = m.poll_transmit(Instant::now()).unwrap();
    assert_eq!(tx.bytes.len(), 43, "the TIME_SET envelope");
    // Its last byte arrives 43 byte times (10 bits at 9600 baud) after the SYNC started.
    let wire = 43 * (10 * S / 9_600);
    c.handle_serial(sync_start + wire, &tx.bytes);
    let error = c.device.clock.read(sync_start + wire) - (sync_start + wire);
    assert!(error.abs() < 1_000, "the clock is {error} µs off after the TIME_SET");
}

#[test]
fn a_device_whose_counter_jumped_ahead_drops_commands_as_replays_but_still_reports() {
    let mut m = master();
    let mut c = controller(0);
    m.request(KeyId(7), Message::StatusRequest, Priority::Command).unwrap();
    assert!(exchange(&mut m, &mut c, T0 + S).iter().any(|e| matches!(e, MasterEvent::Reply { .. })), "answers before");
    c.apply(T0 + 2 * S, &Fault::CounterAhead { by: 1_000_000 });
    m.request(KeyId(7), Message::TimeSyncRequest { t1_us: T0 + 3 * S }, Priority::Command).unwrap();
    let events = exchange(&mut m, &mut c, T0 + 3 * S);
    assert!(!events.iter().any(|e| matches!(e, MasterEvent::Reply { .. })), "{events:?}");
    assert_eq!(c.rejected().last(), Some(&RejectReason::Replayed));
    // Its own frames still verify at the master: it is heard.
    m.handle_input(Instant::now(), &publish_status(&mut c));
    let got: Vec<_> = std::iter::from_fn(|| m.poll_event()).collect();
    assert!(got.iter().any(|e| matches!(e, MasterEvent::Unsolicited { .. })), "{got:?}");
}

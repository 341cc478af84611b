//! Master and outstation sessions driven against each other on a virtual clock: no sockets,
//! no sleeps; time is whatever instant the test passes in.
#![allow(clippy::unwrap_used, reason = "test helpers may panic on impossible states")]

use std::time::{Duration, Instant};

use siren_proto::frame::{Address, Framing, KeyId};
use siren_proto::master::{LinkId, Master, MasterConfig, MasterEvent, PeerConfig, Priority, TimeSample};
use siren_proto::message::{
    Birth, Death, DeathCause, DeviceState, FaultBits, Firmware, Heartbeat, MessageType, NakCode,
};
use siren_proto::outstation::{GroupConfig, Outstation, OutstationConfig, OutstationEvent};
use siren_proto::replay::{ReplayWindow, TxCounter};
use siren_proto::{Key, Message, RejectReason, vectors};

const GROUP: KeyId = KeyId(0x8000);

fn device_key(n: u16) -> Key {
    let mut k = [0u8; 32];
    k[..2].copy_from_slice(&n.to_be_bytes());
    Key::new(k)
}

fn group_key() -> Key {
    Key::new([0xEE; 32])
}

fn outstation(framing: Framing, n: u16) -> Outstation {
    Outstation::new(OutstationConfig {
        framing,
        address: Address(n),
        key_id: KeyId(n),
        key: device_key(n),
        tx: TxCounter::new(1, 1024),
        rx: ReplayWindow::default(),
        groups: vec![GroupConfig { key_id: GROUP, key: group_key(), rx: ReplayWindow::default() }],
        heartbeat: (framing == Framing::Datagram).then_some(Duration::from_secs(30)),
    })
}

fn master(config: MasterConfig, devices: &[u16]) -> Master {
    let mut m = Master::new(config);
    for &n in devices {
        m.add_peer(PeerConfig {
            key_id: KeyId(n),
            key: device_key(n),
            address: Address(n),
            tx: TxCounter::new(1, 1024),
            rx: ReplayWindow::default(),
            birth: None,
            links: vec![],
        });
    }
    m.add_group(GROUP, group_key(), TxCounter::new(1, 1024));
    m
}

fn status(boot_seq: u32) -> Message {
    let Message::StatusReport(mut s) = vectors::all().into_iter().find(|v| v.name == "status-report").unwrap().message
    else {
        unreachable!()
    };
    s.boot_seq = boot_seq;
    Message::StatusReport(s)
}

fn events(m: &mut Master) -> Vec<MasterEvent> {
    std::iter::from_fn(|| m.poll_event()).collect()
}

fn requests(o: &mut Outstation) -> Vec<OutstationEvent> {
    std::iter::from_fn(|| o.poll_event()).collect()
}

/// The device answers every request as a healthy siren would.
fn serve(o: &mut Outstation) {
    for e in requests(o) {
        if let OutstationEvent::Request { token, message } = e {
            match message {
                Message::StatusRequest => o.respond(&token, &status(1)).unwrap(),
                Message::TimeSyncRequest { t1_us } => {
                    o.respond(&token, &Message::TimeSyncReply { t1_us, t2_us: 0, t3_us: 0 }).unwrap();
                }
                m if m.message_type().is_command() => o.ack(&token).unwrap(),
                _ => o.nak(&token, NakCode::Unsupported).unwrap(),
            }
        }
    }
}

/// The t1 a request leaves with, read off the device's side.
fn t1_received(o: &mut Outstation, bytes: &[u8]) -> i64 {
    o.handle_input(bytes);
    match requests(o).into_iter().next() {
        Some(OutstationEvent::Request { message: Message::TimeSyncRequest { t1_us }, .. }) => t1_us,
        other => panic!("{other:?}"),
    }
}

#[test]
fn time_sync_requests_are_stamped_as_they_are_sealed_retries_included() {
    let t0 = Instant::now();
    let mut m = master(MasterConfig::serial(9600), &[17]);
    let mut o = outstation(Framing::Serial, 17);
    // Without a clock the request goes as it was made.
    m.request(KeyId(17), Message::TimeSyncRequest { t1_us: 5 }, Priority::Command).unwrap();
    assert_eq!(t1_received(&mut o, &m.poll_transmit(t0).unwrap().bytes), 5);
    m.handle_timeout(t0 + Duration::from_secs(10));
    m.stamp_time_syncs(|| 1_800_000_000_000_000);
    // A retry is stamped afresh: the wait for it is not clock offset.
    let retry = m.poll_transmit(t0 + Duration::from_secs(10)).unwrap();
    assert_eq!(t1_received(&mut o, &retry.bytes), 1_800_000_000_000_000);
}

#[test]
fn broadcast_time_sets_are_stamped_as_they_are_sealed() {
    let t0 = Instant::now();
    let mut m = master(MasterConfig::serial(9600), &[1]);
    let mut o = outstation(Framing::Serial, 1);
    m.stamp_time_syncs(|| 1_800_000_000_000_000);
    // Queued with the time it was made; it leaves with the time it is sealed.
    m.broadcast(GROUP, Message::TimeSet { master_time_us: 5 }).unwrap();
    o.handle_input(&m.poll_transmit(t0).unwrap().bytes);
    let got = requests(&mut o);
    let [OutstationEvent::Request { message: Message::TimeSet { master_time_us }, .. }] = got.as_slice() else {
        panic!("{got:?}")
    };
    assert_eq!(*master_time_us, 1_800_000_000_000_000);
}

#[test]
fn poll_gets_status() {
    let t0 = Instant::now();
    let mut m = master(MasterConfig::serial(9600), &[17]);
    let mut o = outstation(Framing::Serial, 17);
    let id = m.request(KeyId(17), Message::StatusRequest, Priority::Poll).unwrap();
    let tx = m.poll_transmit(t0).unwrap();
    assert_eq!(tx.destination, Address(17));
    o.handle_input(&tx.bytes);
    serve(&mut o);
    let reply = o.poll_transmit().unwrap();
    m.handle_input(t0 + Duration::from_millis(80), &reply);
    assert_eq!(
        events(&mut m),
        vec![MasterEvent::Reply { request: id, key_id: KeyId(17), message: status(1), attempts: 1 }]
    );
    assert_eq!(m.pending(), 0);
    assert_eq!(m.poll_timeout(), None);
}

/// Requests to a device with one in flight wait for it, in their order, and let requests to
/// other devices pass; a failed request releases them as a reply does.
#[test]
fn requests_to_a_busy_device_wait_in_order_and_let_others_pass() {
    let t0 = Instant::now();
    let mut m = master(MasterConfig::mqtt(), &[1, 2, 3]);
    let mut o1 = outstation(Framing::Datagram, 1);
    let first = m.request(KeyId(1), Message::StatusRequest, Priority::Command).unwrap();
    let second = m.request(KeyId(1), Message::Stop { campaign: 7 }, Priority::Command).unwrap();
    let third = m.request(KeyId(1), Message::StatusRequest, Priority::Poll).unwrap();
    m.request(KeyId(2), Message::StatusRequest, Priority::Command).unwrap();
    m.request(KeyId(3), Message::StatusRequest, Priority::Poll).unwrap();
    let sent: Vec<_> = std::iter::from_fn(|| m.poll_transmit(t0)).collect();
    let to: Vec<Address> = sent.iter().map(|t| t.destination).collect();
    assert_eq!(to, [Address(1), Address(2), Address(3)], "one request per device at a time");
    assert_eq!(sent[0].request, Some(first));
    assert_eq!(m.pending(), 5, "two wait behind the first");
    assert_eq!(m.queued_on(LinkId::DEFAULT), 2);
    o1.handle_input(&sent[0].bytes);
    serve(&mut o1);
    m.handle_input(t0, &o1.poll_transmit().unwrap());
    let next = m.poll_transmit(t0).unwrap();
    assert_eq!((next.destination, next.request), (Address(1), Some(second)), "the command, then the poll");
    assert!(m.poll_transmit(t0).is_none());
    // The STOP goes unanswered: once it fails, the poll behind it leaves.
    while let Some(now) = m.poll_timeout() {
        m.handle_timeout(now);
        if let Some(t) = m.poll_transmit(now) {
            if t.request == Some(third) {
                assert!(
                    events(&mut m)
                        .iter()
                        .any(|e| matches!(e, MasterEvent::Failed { request, .. } if *request == second))
                );
                return;
            }
        }
    }
    panic!("the poll behind the failed STOP was never sent");
}

#[test]
fn broadcasts_go_before_queued_requests_in_their_own_order() {
    let t0 = Instant::now();
    let mut m = master(MasterConfig::serial(9600), &[1, 2]);
    m.request(KeyId(1), Message::Cancel { campaign: 3 }, Priority::Command).unwrap();
    m.request(KeyId(2), Message::Cancel { campaign: 3 }, Priority::Command).unwrap();
    let stop = m.broadcast(GROUP, Message::Stop { campaign: 0 }).unwrap();
    let then = m.broadcast(GROUP, Message::Stop { campaign: 3 }).unwrap();
    let order: Vec<_> = std::iter::from_fn(|| {
        let t = m.poll_transmit(t0)?;
        if t.destination != Address::BROADCAST {
            // Answered at once, so the next may go.
            m.handle_timeout(m.poll_timeout()?);
        }
        Some(t.request)
    })
    .take(3)
    .collect();
    assert_eq!(order[..2], [Some(stop), Some(then)]);
}

#[test]
fn timeout_scales_with_baud_rate_and_frame_length() {
    let t0 = Instant::now();
    let mut m = master(MasterConfig::serial(9600), &[1]);
    m.request(KeyId(1), Message::StatusRequest, Priority::Poll).unwrap();
    let tx = m.poll_transmit(t0).unwrap();
    let wire = Duration::from_nanos(10_000_000_000 / 9600) * u32::try_from(tx.bytes.len()).unwrap();
    assert_eq!(m.poll_timeout(), Some(t0 + wire + MasterConfig::serial(9600).reply_timeout));
}

#[test]
fn lost_request_is_retried_with_a_fresh_counter() {
    let t0 = Instant::now();
    let mut m = master(MasterConfig::serial(9600), &[5]);
    let mut o = outstation(Framing::Serial, 5);
    let id = m.request(KeyId(5), Message::StatusRequest, Priority::Poll).unwrap();
    let _lost = m.poll_transmit(t0).unwrap();
    let deadline = m.poll_timeout().unwrap();
    m.handle_timeout(deadline.checked_sub(Duration::from_millis(1)).unwrap());
    assert!(events(&mut m).is_empty(), "nothing expires early");
    m.handle_timeout(deadline);
    assert_eq!(events(&mut m), vec![MasterEvent::Timeout { request: id, key_id: KeyId(5), attempt: 1 }]);
    let retry = m.poll_transmit(deadline).unwrap();
    o.handle_input(&retry.bytes);
    serve(&mut o);
    m.handle_input(deadline, &o.poll_transmit().unwrap());
    assert!(matches!(events(&mut m).as_slice(), [MasterEvent::Reply { attempts: 2, .. }]));
    assert_eq!(m.peer(KeyId(5)).unwrap().tx.next(), 3, "two counters used");
}

#[test]
fn lost_reply_to_a_command_is_retried_and_both_acks_match() {
    let t0 = Instant::now();
    let mut m = master(MasterConfig::serial(9600), &[5]);
    let mut o = outstation(Framing::Serial, 5);
    let id = m.request(KeyId(5), Message::Stop { campaign: 0 }, Priority::Command).unwrap();
    o.handle_input(&m.poll_transmit(t0).unwrap().bytes);
    serve(&mut o);
    let lost_ack = o.poll_transmit().unwrap();
    let deadline = m.poll_timeout().unwrap();
    m.handle_timeout(deadline);
    let retry = m.poll_transmit(deadline).unwrap();
    o.handle_input(&retry.bytes);
    serve(&mut o); // the device executes the idempotent command again and acks
    // The ack of the first attempt turns up late: it answers the request too.
    m.handle_input(deadline, &lost_ack);
    let got = events(&mut m);
    assert!(
        matches!(got.as_slice(), [MasterEvent::Timeout { .. }, MasterEvent::Reply { request, attempts: 2, .. }] if *request == id)
    );
    // The second ack then answers nothing and is reported as unsolicited, not rejected.
    m.handle_input(deadline, &o.poll_transmit().unwrap());
    assert!(matches!(events(&mut m).as_slice(), [MasterEvent::Unsolicited { message: Message::Ack { .. }, .. }]));
}

#[test]
fn retries_exhausted_fail_the_request() {
    let mut now = Instant::now();
    let mut m = master(MasterConfig::serial(9600), &[5]);
    let id = m.request(KeyId(5), Message::StatusRequest, Priority::Poll).unwrap();
    let mut sent = 0;
    while let Some(_tx) = m.poll_transmit(now) {
        sent += 1;
        now = m.poll_timeout().unwrap();
        m.handle_timeout(now);
    }
    assert_eq!(sent, 3, "first attempt and two retries");
    let got = events(&mut m);
    assert_eq!(got.last(), Some(&MasterEvent::Failed { request: id, key_id: KeyId(5), attempts: 3 }));
    assert_eq!(m.pending(), 0);
}

#[test]
fn garbage_between_frames_is_skipped() {
    let t0 = Instant::now();
    let mut m = master(MasterConfig::serial(9600), &[9]);
    let mut o = outstation(Framing::Serial, 9);
    m.request(KeyId(9), Message::StatusRequest, Priority::Poll).unwrap();
    let mut line = vec![0x00, 0xFF, 0xA5, 0x13, 0xA5];
    line.extend(m.poll_transmit(t0).unwrap().bytes);
    line.extend([0xA5, 0xC3, 0x01, 0x02]); // a false SYNC and a partial header
    for chunk in line.chunks(3) {
        o.handle_input(chunk);
    }
    o.handle_line_idle();
    serve(&mut o);
    let mut back = vec![0xFF; 7];
    back.extend(o.poll_transmit().unwrap());
    back.extend([0x55; 4]);
    m.handle_input(t0, &back);
    assert!(events(&mut m).iter().any(|e| matches!(e, MasterEvent::Reply { attempts: 1, .. })));
}

#[test]
fn replayed_frames_are_rejected_both_ways() {
    let t0 = Instant::now();
    let mut m = master(MasterConfig::serial(9600), &[3]);
    let mut o = outstation(Framing::Serial, 3);
    m.request(KeyId(3), Message::Stop { campaign: 0 }, Priority::Command).unwrap();
    let command = m.poll_transmit(t0).unwrap().bytes;
    o.handle_input(&command);
    serve(&mut o);
    let ack = o.poll_transmit().unwrap();
    m.handle_input(t0, &ack);
    events(&mut m);
    // An attacker who recorded both frames plays them again.
    o.handle_input(&command);
    assert_eq!(requests(&mut o), vec![OutstationEvent::Rejected(RejectReason::Replayed)]);
    m.handle_input(t0, &ack);
    assert_eq!(
        events(&mut m),
        vec![MasterEvent::Rejected { link: LinkId::DEFAULT, reason: RejectReason::Replayed, key_id: Some(KeyId(3)) }]
    );
}

#[test]
fn forged_and_misaddressed_frames_are_rejected() {
    let t0 = Instant::now();
    let mut m = master(MasterConfig::mqtt(), &[3, 4]);
    // A device with the wrong key.
    let mut impostor = Outstation::new(OutstationConfig {
        key: device_key(99),
        ..OutstationConfig {
            framing: Framing::Datagram,
            address: Address(3),
            key_id: KeyId(3),
            key: device_key(3),
            tx: TxCounter::new(1, 100),
            rx: ReplayWindow::default(),
            groups: vec![],
            heartbeat: None,
        }
    });
    impostor.send(&status(1)).unwrap();
    m.handle_input(t0, &impostor.poll_transmit().unwrap());
    // Device 4 signing correctly but claiming device 3's address.
    let mut confused = outstation(Framing::Datagram, 4);
    let mut bytes = {
        confused.send(&status(1)).unwrap();
        confused.poll_transmit().unwrap()
    };
    bytes[5] = 3; // source address low byte: the MAC now fails, as it must
    m.handle_input(t0, &bytes);
    // A key id the master has never heard of.
    let mut stranger = outstation(Framing::Datagram, 50);
    stranger.send(&status(1)).unwrap();
    m.handle_input(t0, &stranger.poll_transmit().unwrap());
    let reasons: Vec<RejectReason> = events(&mut m)
        .into_iter()
        .map(|e| match e {
            MasterEvent::Rejected { reason, .. } => reason,
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(reasons, vec![RejectReason::BadMac, RejectReason::BadMac, RejectReason::UnknownKeyId]);
}

#[test]
fn an_authentic_device_cannot_speak_for_another_address() {
    let t0 = Instant::now();
    let mut m = master(MasterConfig::mqtt(), &[3]);
    // Device 3's own key, but configured at the wrong address.
    let mut o = Outstation::new(OutstationConfig {
        framing: Framing::Datagram,
        address: Address(30),
        key_id: KeyId(3),
        key: device_key(3),
        tx: TxCounter::new(1, 100),
        rx: ReplayWindow::default(),
        groups: vec![],
        heartbeat: None,
    });
    o.send(&status(1)).unwrap();
    m.handle_input(t0, &o.poll_transmit().unwrap());
    assert_eq!(
        events(&mut m),
        vec![MasterEvent::Rejected {
            link: LinkId::DEFAULT,
            reason: RejectReason::AddressMismatch,
            key_id: Some(KeyId(3))
        }]
    );
}

#[test]
fn a_reflected_frame_is_ignored() {
    let t0 = Instant::now();
    let mut m = master(MasterConfig::serial(9600), &[3]);
    m.request(KeyId(3), Message::Stop { campaign: 0 }, Priority::Command).unwrap();
    let own = m.poll_transmit(t0).unwrap().bytes;
    m.handle_input(t0, &own); // an RS-485 adapter that echoes
    assert!(events(&mut m).is_empty());
    let mut o = outstation(Framing::Serial, 3);
    o.send(&status(1)).unwrap();
    let mut neighbour = outstation(Framing::Serial, 4);
    neighbour.handle_input(&o.poll_transmit().unwrap()); // another device's reply on the bus
    assert!(requests(&mut neighbour).is_empty());
}

#[test]
fn counters_survive_a_reboot() {
    let t0 = Instant::now();
    let mut m = master(MasterConfig::mqtt(), &[8]);
    let mut o = outstation(Framing::Datagram, 8);
    // The device persisted a lease ending at 1024 and used a few counters.
    let mut sent = Vec::new();
    for _ in 0..5 {
        o.send(&status(1)).unwrap();
        sent.push(o.poll_transmit().unwrap());
    }
    for s in &sent {
        m.handle_input(t0, s);
    }
    assert_eq!(events(&mut m).len(), 5);
    let persisted_lease_end = o.tx().lease_end();
    let persisted_rx = o.rx_highest();

    // Reboot: the device resumes from the persisted lease end and must lease again first.
    let mut rebooted = Outstation::new(OutstationConfig {
        tx: TxCounter::resumed(persisted_lease_end),
        rx: ReplayWindow::restored(persisted_rx),
        ..OutstationConfig {
            framing: Framing::Datagram,
            address: Address(8),
            key_id: KeyId(8),
            key: device_key(8),
            tx: TxCounter::new(1, 1),
            rx: ReplayWindow::default(),
            groups: vec![],
            heartbeat: None,
        }
    });
    assert!(rebooted.send(&status(2)).is_err(), "nothing goes out before a new lease is persisted");
    let wanted = requests(&mut rebooted);
    let [OutstationEvent::LeaseWanted { up_to }] = wanted.as_slice() else { panic!("{wanted:?}") };
    assert!(*up_to > persisted_lease_end);
    rebooted.grant_lease(*up_to);
    rebooted.send(&status(2)).unwrap();
    m.handle_input(t0, &rebooted.poll_transmit().unwrap());
    assert!(matches!(events(&mut m).as_slice(), [MasterEvent::Unsolicited { .. }]));
    // The pre-reboot frames stay dead.
    m.handle_input(t0, &sent[4]);
    assert!(matches!(events(&mut m).as_slice(), [MasterEvent::Rejected { reason: RejectReason::Replayed, .. }]));
}

#[test]
fn master_restart_with_restored_window_refuses_old_frames() {
    let t0 = Instant::now();
    let mut o = outstation(Framing::Datagram, 8);
    let mut frames = Vec::new();
    for _ in 0..3 {
        o.send(&status(1)).unwrap();
        frames.push(o.poll_transmit().unwrap());
    }
    let mut m = master(MasterConfig::mqtt(), &[]);
    m.add_peer(PeerConfig {
        key_id: KeyId(8),
        key: device_key(8),
        address: Address(8),
        tx: TxCounter::resumed(1024),
        rx: ReplayWindow::restored(2),
        birth: None,
        links: vec![],
    });
    for f in &frames {
        m.handle_input(t0, f);
    }
    let got = events(&mut m);
    assert!(matches!(got[0], MasterEvent::Rejected { reason: RejectReason::Replayed, .. }));
    assert!(matches!(got[1], MasterEvent::Rejected { reason: RejectReason::Replayed, .. }));
    assert!(matches!(got[2], MasterEvent::Unsolicited { .. }));
}

#[test]
fn broadcast_reaches_group_members_and_gets_no_reply() {
    let t0 = Instant::now();
    let mut m = master(MasterConfig::serial(9600), &[1, 2, 3]);
    let mut bus: Vec<Outstation> = (1..=3).map(|n| outstation(Framing::Serial, n)).collect();
    let mut outsider = Outstation::new(OutstationConfig {
        framing: Framing::Serial,
        address: Address(4),
        key_id: KeyId(4),
        key: device_key(4),
        tx: TxCounter::new(1, 100),
        rx: ReplayWindow::default(),
        groups: vec![],
        heartbeat: None,
    });
    m.broadcast(GROUP, Message::TimeSet { master_time_us: 1_000 }).unwrap();
    let tx = m.poll_transmit(t0).unwrap();
    assert_eq!(tx.destination, Address::BROADCAST);
    assert_eq!(m.poll_timeout(), None, "no reply is awaited");
    for o in &mut bus {
        o.handle_input(&tx.bytes);
        let got = requests(o);
        let [OutstationEvent::Request { token, message: Message::TimeSet { master_time_us: 1_000 } }] = got.as_slice()
        else {
            panic!("{got:?}")
        };
        assert!(token.broadcast);
        o.ack(token).unwrap();
        assert_eq!(o.poll_transmit(), None, "broadcasts are never answered");
    }
    outsider.handle_input(&tx.bytes);
    assert_eq!(requests(&mut outsider), vec![OutstationEvent::Rejected(RejectReason::UnknownKeyId)]);
    assert!(m.broadcast(GROUP, Message::StatusRequest).is_err(), "status cannot be broadcast");
}

#[test]
fn half_duplex_bus_has_one_request_in_flight_and_commands_go_first() {
    let t0 = Instant::now();
    let mut m = master(MasterConfig::serial(9600), &[1, 2, 3]);
    let mut bus: Vec<Outstation> = (1..=3).map(|n| outstation(Framing::Serial, n)).collect();
    m.request(KeyId(1), Message::StatusRequest, Priority::Poll).unwrap();
    m.request(KeyId(2), Message::StatusRequest, Priority::Poll).unwrap();
    let first = m.poll_transmit(t0).unwrap();
    assert_eq!(first.destination, Address(1));
    m.request(KeyId(3), Message::Stop { campaign: 0 }, Priority::Command).unwrap();
    assert_eq!(m.poll_transmit(t0), None, "the line is waiting for device 1");
    let o = &mut bus[0];
    o.handle_input(&first.bytes);
    serve(o);
    m.handle_input(t0, &o.poll_transmit().unwrap());
    let next = m.poll_transmit(t0).unwrap();
    assert_eq!(next.destination, Address(3), "the command overtakes the queued poll");
}

#[test]
fn mqtt_allows_one_request_per_device_in_parallel() {
    let t0 = Instant::now();
    let mut m = master(MasterConfig::mqtt(), &[1, 2]);
    m.request(KeyId(1), Message::StatusRequest, Priority::Poll).unwrap();
    m.request(KeyId(1), Message::StatusRequest, Priority::Poll).unwrap();
    m.request(KeyId(2), Message::StatusRequest, Priority::Poll).unwrap();
    let a = m.poll_transmit(t0).unwrap();
    let b = m.poll_transmit(t0).unwrap();
    assert_eq!((a.destination, b.destination), (Address(1), Address(2)));
    assert_eq!(m.poll_transmit(t0), None);
}

#[test]
fn reordered_mqtt_frames_within_the_window_are_accepted_once() {
    let t0 = Instant::now();
    let mut m = master(MasterConfig::mqtt(), &[6]);
    let mut o = outstation(Framing::Datagram, 6);
    let frames: Vec<Vec<u8>> = (0..3)
        .map(|_| {
            o.send(&status(1)).unwrap();
            o.poll_transmit().unwrap()
        })
        .collect();
    for i in [2, 0, 1, 1] {
        m.handle_input(t0, &frames[i]);
    }
    let got = events(&mut m);
    assert_eq!(got.iter().filter(|e| matches!(e, MasterEvent::Unsolicited { .. })).count(), 3);
    assert!(matches!(got[3], MasterEvent::Rejected { reason: RejectReason::Replayed, .. }));
}

fn heartbeat() -> Message {
    Message::Heartbeat(Heartbeat { boot_seq: 4, uptime_s: 1, state: DeviceState::Idle, faults: FaultBits(0) })
}

#[test]
fn last_will_death_is_accepted_once_for_the_current_session_only() {
    let t0 = Instant::now();
    let mut m = master(MasterConfig::mqtt(), &[7]);
    let mut o = outstation(Framing::Datagram, 7);
    let birth = |boot_seq| {
        Message::Birth(Birth { boot_seq, firmware: Firmware::default(), capabilities: 0, heartbeat_period_s: 30 })
    };
    let death = |boot_seq| Message::Death(Death { boot_seq, cause: DeathCause::ConnectionLost });
    // Session 4: the will is sealed immediately before the birth, as §9 requires.
    let old_will = o.seal(&death(4)).unwrap();
    o.send(&birth(4)).unwrap();
    m.handle_input(t0, &o.poll_transmit().unwrap());
    // Session 5 after a reconnect.
    let will = o.seal(&death(5)).unwrap();
    o.send(&birth(5)).unwrap();
    m.handle_input(t0, &o.poll_transmit().unwrap());
    // Far more traffic than the replay window holds.
    for _ in 0..200 {
        o.send(&heartbeat()).unwrap();
        m.handle_input(t0, &o.poll_transmit().unwrap());
    }
    events(&mut m);
    m.handle_input(t0, &old_will);
    assert!(matches!(events(&mut m).as_slice(), [MasterEvent::Rejected { reason: RejectReason::Replayed, .. }]));
    m.handle_input(t0, &will);
    assert_eq!(events(&mut m), vec![MasterEvent::Unsolicited { key_id: KeyId(7), message: death(5) }]);
    m.handle_input(t0, &will);
    assert!(matches!(events(&mut m).as_slice(), [MasterEvent::Rejected { reason: RejectReason::Replayed, .. }]));
    assert!(m.peer(KeyId(7)).unwrap().birth.unwrap().death_seen);
}

#[test]
fn heartbeats_are_timed_by_the_session() {
    let t0 = Instant::now();
    let mut o = outstation(Framing::Datagram, 2);
    assert_eq!(o.poll_timeout(), None);
    o.start_heartbeats(t0);
    let due = o.poll_timeout().unwrap();
    assert_eq!(due, t0 + Duration::from_secs(30));
    o.handle_timeout(due.checked_sub(Duration::from_millis(1)).unwrap());
    assert!(requests(&mut o).is_empty());
    // A stall of 100 s yields one heartbeat, not a burst, and the schedule stays on the grid.
    o.handle_timeout(t0 + Duration::from_secs(100));
    assert_eq!(requests(&mut o), vec![OutstationEvent::HeartbeatDue]);
    assert_eq!(o.poll_timeout(), Some(t0 + Duration::from_secs(120)));
}

#[test]
fn time_sync_exchange_yields_offset_and_round_trip() {
    // The device clock runs 1.25 s ahead; 40 ms each way; 2 ms in the device.
    let master_t1 = 1_000_000_000_i64;
    let ahead = 1_250_000;
    let t2 = master_t1 + 40_000 + ahead;
    let t3 = t2 + 2_000;
    let t4 = master_t1 + 40_000 + 2_000 + 40_000;
    let s = TimeSample::compute(master_t1, t2, t3, t4);
    assert_eq!(s.offset_us, -ahead);
    assert_eq!(s.round_trip_us, 80_000);
    // Absurd device clocks saturate instead of overflowing.
    let s = TimeSample::compute(i64::MIN, i64::MAX, i64::MAX, i64::MIN);
    assert_eq!(s.offset_us, i64::MIN);
}

#[test]
fn nak_answers_the_request_it_names() {
    let t0 = Instant::now();
    let mut m = master(MasterConfig::mqtt(), &[2]);
    let mut o = outstation(Framing::Datagram, 2);
    let id = m.request(KeyId(2), Message::ReportRequest { campaign: 77 }, Priority::Poll).unwrap();
    o.handle_input(&m.poll_transmit(t0).unwrap().bytes);
    for e in requests(&mut o) {
        if let OutstationEvent::Request { token, .. } = e {
            assert_eq!(token.message_type, MessageType::ReportRequest);
            o.nak(&token, NakCode::UnknownCampaign).unwrap();
        }
    }
    m.handle_input(t0, &o.poll_transmit().unwrap());
    let got = events(&mut m);
    assert!(
        matches!(&got[..], [MasterEvent::Reply { request, message: Message::Nak { code: NakCode::UnknownCampaign, .. }, .. }] if *request == id)
    );
}

#[test]
fn master_asks_for_a_new_lease_before_running_out() {
    let t0 = Instant::now();
    let mut m = Master::new(MasterConfig::mqtt());
    let peer = |tx| PeerConfig {
        key_id: KeyId(1),
        key: device_key(1),
        address: Address(1),
        tx,
        rx: ReplayWindow::default(),
        birth: None,
        links: vec![],
    };
    m.add_peer(peer(TxCounter::new(1, 200)));
    m.request(KeyId(1), Message::StatusRequest, Priority::Poll).unwrap();
    m.poll_transmit(t0).unwrap();
    let got = events(&mut m);
    let [MasterEvent::LeaseWanted { key_id: KeyId(1), up_to }] = got.as_slice() else { panic!("{got:?}") };
    m.grant_lease(KeyId(1), *up_to);
    assert_eq!(m.peer(KeyId(1)).unwrap().tx.lease_end(), *up_to);

    // After a restart with no lease left, the request waits until one is granted.
    let mut m = Master::new(MasterConfig::mqtt());
    m.add_peer(peer(TxCounter::resumed(500)));
    m.request(KeyId(1), Message::StatusRequest, Priority::Poll).unwrap();
    assert_eq!(m.poll_transmit(t0), None);
    let got = events(&mut m);
    let [MasterEvent::LeaseWanted { up_to, .. }] = got.as_slice() else { panic!("{got:?}") };
    m.grant_lease(KeyId(1), *up_to);
    let tx = m.poll_transmit(t0).unwrap();
    assert_eq!(u32::from_be_bytes(tx.bytes[8..12].try_into().unwrap()), 500, "resumes at the persisted lease end");
}

#[test]
fn a_device_with_serial_and_mqtt_links_is_one_peer_with_one_counter_sequence() {
    let t0 = Instant::now();
    let (bus, net) = (LinkId(1), LinkId(2));
    let mut m = Master::without_links();
    m.add_link(bus, MasterConfig::serial(9600));
    m.add_link(net, MasterConfig::mqtt());
    m.add_peer(PeerConfig {
        key_id: KeyId(12),
        key: device_key(12),
        address: Address(12),
        tx: TxCounter::new(1, 1024),
        rx: ReplayWindow::default(),
        birth: None,
        links: vec![bus, net],
    });
    // One session at the device too: one key, one counter space.
    let mut o = outstation(Framing::Datagram, 12);
    m.request(KeyId(12), Message::StatusRequest, Priority::Poll).unwrap();
    let tx = m.poll_transmit(t0).unwrap();
    assert_eq!(tx.link, bus);
    o.handle_stream(&tx.bytes);
    serve(&mut o);
    let over_serial = o.poll_transmit().unwrap();
    assert!(over_serial.starts_with(&siren_proto::frame::SYNC), "serial answers are enveloped");
    m.handle_link_input(t0, bus, &over_serial);
    assert!(matches!(events(&mut m).as_slice(), [MasterEvent::Reply { .. }]));

    // The bus fails over to MQTT: counters continue where they were.
    m.set_link(KeyId(12), net).unwrap();
    m.request(KeyId(12), Message::StatusRequest, Priority::Poll).unwrap();
    let tx = m.poll_transmit(t0).unwrap();
    assert_eq!(tx.link, net);
    o.handle_frame(&tx.bytes);
    serve(&mut o);
    let over_mqtt = o.poll_transmit().unwrap();
    assert_eq!(over_mqtt[0], siren_proto::VERSION, "MQTT answers are bare frames");
    m.handle_link_input(t0, net, &over_mqtt);
    assert!(matches!(events(&mut m).as_slice(), [MasterEvent::Reply { .. }]));
    assert_eq!(o.tx().next(), 3, "both answers came from one counter");
    assert_eq!(m.peer(KeyId(12)).unwrap().tx.next(), 3, "both requests too");
    // The device's frame replayed onto the other link is still a replay.
    m.handle_link_input(t0, net, &over_mqtt);
    assert!(matches!(events(&mut m).as_slice(), [MasterEvent::Rejected { reason: RejectReason::Replayed, .. }]));
    assert_eq!(m.set_link(KeyId(12), LinkId(9)), Err(siren_proto::master::RequestError::UnknownLink(9)));
}

#[test]
fn a_frame_on_a_link_that_does_not_reach_its_device_is_refused() {
    let t0 = Instant::now();
    let mut m = Master::without_links();
    m.add_link(LinkId(1), MasterConfig::mqtt());
    m.add_link(LinkId(2), MasterConfig::mqtt());
    m.add_peer(PeerConfig {
        key_id: KeyId(4),
        key: device_key(4),
        address: Address(4),
        tx: TxCounter::new(1, 1024),
        rx: ReplayWindow::default(),
        birth: None,
        links: vec![LinkId(1)],
    });
    let mut o = outstation(Framing::Datagram, 4);
    o.send(&status(1)).unwrap();
    m.handle_link_input(t0, LinkId(2), &o.poll_transmit().unwrap());
    let got = events(&mut m);
    assert!(
        matches!(
            got.as_slice(),
            [MasterEvent::Rejected { link: LinkId(2), reason: RejectReason::AddressMismatch, .. }]
        ),
        "{got:?}"
    );
}

#[test]
fn each_bus_keeps_its_own_half_duplex_slot() {
    let t0 = Instant::now();
    let mut m = Master::without_links();
    for bus in 1..=2 {
        m.add_link(LinkId(bus), MasterConfig::serial(9600));
    }
    for n in 1..=4u16 {
        m.add_peer(PeerConfig {
            key_id: KeyId(n),
            key: device_key(n),
            address: Address(n),
            tx: TxCounter::new(1, 1024),
            rx: ReplayWindow::default(),
            birth: None,
            links: vec![LinkId(1 + (n - 1) / 2)],
        });
        m.request(KeyId(n), Message::StatusRequest, Priority::Poll).unwrap();
    }
    let sent: Vec<(LinkId, Address)> =
        std::iter::from_fn(|| m.poll_transmit(t0)).map(|t| (t.link, t.destination)).collect();
    assert_eq!(sent.len(), 2, "one request per bus until answered: {sent:?}");
    assert!(sent.contains(&(LinkId(1), Address(1))) && sent.contains(&(LinkId(2), Address(3))));
}

#[test]
fn a_reply_cut_by_an_idle_gap_is_truncated_at_the_gap_and_never_reassembled() {
    let t0 = Instant::now();
    let config = MasterConfig::serial(9600);
    let gap = config.idle_gap.unwrap();
    let mut m = master(config, &[17]);
    let mut o = outstation(Framing::Serial, 17);
    m.request(KeyId(17), Message::StatusRequest, Priority::Poll).unwrap();
    o.handle_input(&m.poll_transmit(t0).unwrap().bytes);
    serve(&mut o);
    let reply = o.poll_transmit().unwrap();
    let first = t0 + Duration::from_millis(60);
    m.handle_input(first, &reply[..30]);
    assert!(events(&mut m).is_empty());
    assert_eq!(m.poll_timeout(), Some(first + gap), "the idle gap ends before the reply's deadline");
    m.handle_timeout(first + gap);
    let got = events(&mut m);
    assert!(matches!(got.first(), Some(MasterEvent::Rejected { reason: RejectReason::Truncated, .. })), "{got:?}");
    // The rest, a second later, is noise on its own.
    m.handle_input(first + Duration::from_secs(1), &reply[30..]);
    m.handle_timeout(first + Duration::from_secs(1) + gap);
    assert!(!events(&mut m).iter().any(|e| matches!(e, MasterEvent::Reply { .. })));
}

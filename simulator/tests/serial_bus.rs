//! The serial bus on a real pseudo-terminal: the test plays the daemon's part with the
//! protocol's master session and checks addressing, pacing and line noise.
#![allow(clippy::unwrap_used, reason = "test helpers may panic on impossible states")]

use std::fs::{File, OpenOptions};
use std::io::{Read as _, Write as _};
use std::os::fd::AsFd as _;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use siren_proto::fleet::{Fleet, KeyEntry, KeyFile};
use siren_proto::frame::{Address, KeyId};
use siren_proto::master::{Master, MasterConfig, MasterEvent, PeerConfig, Priority};
use siren_proto::message::MessageType;
use siren_proto::replay::{ReplayWindow, TxCounter};
use siren_proto::{Key, Message, RejectReason};
use siren_sim::clock::SimClock;
use siren_sim::fault::Fault;
use siren_sim::fleet::{BuildOptions, SimFleet, lock};

const FLEET: &str = "\
id,name,latitude,longitude,zone,rating_db,address,key_id,links
A,a,30.1,120.1,hz/c/t1,118,17,1,serial:b1
B,b,30.1,120.2,hz/c/t1,118,18,2,serial:b1
C,c,30.1,120.3,hz/c/t2,118,19,3,serial:b1
";
const GROUP: KeyId = KeyId(0x8000);

fn key(n: u8) -> Key {
    Key::new([n; 32])
}

fn fleet() -> SimFleet {
    let fleet = Fleet::parse("test", FLEET).unwrap();
    let entry = |id: u16, holder: &str| KeyEntry {
        key_id: KeyId(id),
        holder: holder.parse().unwrap(),
        key: key(u8::try_from(id % 256).unwrap()),
    };
    let keys = KeyFile {
        entries: vec![entry(1, "siren:A"), entry(2, "siren:B"), entry(3, "siren:C"), entry(0x8000, "bus:b1")],
    };
    SimFleet::build(fleet, &keys, SimClock::real_time(), &BuildOptions::default()).unwrap()
}

fn master() -> Master {
    let mut m = Master::new(MasterConfig::serial(9600));
    for n in 1..=3u16 {
        m.add_peer(PeerConfig {
            key_id: KeyId(n),
            key: key(u8::try_from(n).unwrap()),
            address: Address(16 + n),
            tx: TxCounter::new(1, 1024),
            rx: ReplayWindow::default(),
            birth: None,
            links: vec![],
        });
    }
    m.add_group(GROUP, key(0), TxCounter::new(1, 1024));
    m
}

/// Drives the master over the port until `done` says so; a generous guard stops a hung test.
fn drive(m: &mut Master, port: &mut File, mut done: impl FnMut(&MasterEvent) -> bool) -> Vec<MasterEvent> {
    let guard = Instant::now() + Duration::from_secs(30);
    let mut seen = Vec::new();
    let mut buf = [0u8; 512];
    loop {
        assert!(Instant::now() < guard, "the bus stopped answering: {seen:?}");
        while let Some(tx) = m.poll_transmit(Instant::now()) {
            port.write_all(&tx.bytes).unwrap();
        }
        let wait = m.poll_timeout().map_or(Duration::from_millis(50), |t| t.saturating_duration_since(Instant::now()));
        let ms = u16::try_from(wait.as_millis().clamp(1, 1000)).unwrap();
        let mut fds = [PollFd::new(port.as_fd(), PollFlags::POLLIN)];
        if poll(&mut fds, PollTimeout::from(ms)).unwrap() > 0 {
            let n = port.read(&mut buf).unwrap();
            m.handle_input(Instant::now(), &buf[..n]);
        }
        m.handle_timeout(Instant::now());
        while let Some(e) = m.poll_event() {
            let stop = done(&e);
            seen.push(e);
            if stop {
                return seen;
            }
        }
    }
}

#[test]
fn only_the_addressed_device_answers_at_line_pace() {
    let sim = fleet();
    let bus = sim.serve_serial("b1", 9600, None).unwrap();
    let mut port = OpenOptions::new().read(true).write(true).open(bus.path()).unwrap();
    let mut m = master();
    m.request(KeyId(2), Message::StatusRequest, Priority::Poll).unwrap();
    let sent = Instant::now();
    let events = drive(&mut m, &mut port, |e| matches!(e, MasterEvent::Reply { .. }));
    let elapsed = sent.elapsed();
    let Some(MasterEvent::Reply { message: Message::StatusReport(_), attempts: 1, .. }) = events.last() else {
        panic!("{events:?}")
    };
    // 35 bytes out, 87 back (with 4 channels) at 1.04 ms each, plus the device's turnaround:
    // the answer cannot come sooner on a real 9600 baud line, so it must not come sooner here.
    let line_time = Duration::from_micros(1042 * (35 + 87));
    assert!(elapsed >= line_time, "answer after {elapsed:?}, faster than the line allows ({line_time:?})");
    let received = |id: &str| lock(sim.controller(id).unwrap()).received().len();
    assert_eq!((received("A"), received("B"), received("C")), (0, 1, 0));
}

#[test]
fn a_broadcast_reaches_every_drop_and_draws_no_answer() {
    let sim = fleet();
    let bus = sim.serve_serial("b1", 9600, None).unwrap();
    let mut port = OpenOptions::new().read(true).write(true).open(bus.path()).unwrap();
    let mut m = master();
    m.broadcast(GROUP, Message::TimeSet { master_time_us: SimClock::real_time().now() }).unwrap();
    m.request(KeyId(1), Message::StatusRequest, Priority::Poll).unwrap();
    let events = drive(&mut m, &mut port, |e| matches!(e, MasterEvent::Reply { .. }));
    // Nothing but the status answer came back: no device answered the broadcast.
    assert!(matches!(events.as_slice(), [MasterEvent::Reply { key_id: KeyId(1), .. }]), "{events:?}");
    for id in ["A", "B", "C"] {
        let c = lock(sim.controller(id).unwrap());
        assert!(c.received().iter().any(|r| r.broadcast && r.message.message_type() == MessageType::TimeSet), "{id}");
        assert_eq!(c.device.clock.sync_age_s(c.device.now()), Some(0), "{id} set its clock");
    }
}

#[test]
fn line_noise_is_rejected_by_crc_and_retried() {
    let sim = fleet();
    sim.inject("C", &Fault::LineNoise { rate: 0.05 }).unwrap();
    let bus = sim.serve_serial("b1", 9600, None).unwrap();
    let mut port = OpenOptions::new().read(true).write(true).open(bus.path()).unwrap();
    let mut m = master();
    m.request(KeyId(3), Message::StatusRequest, Priority::Poll).unwrap();
    let events = drive(&mut m, &mut port, |e| matches!(e, MasterEvent::Reply { .. } | MasterEvent::Failed { .. }));
    let timeouts = events.iter().filter(|e| matches!(e, MasterEvent::Timeout { .. })).count();
    let crc_at_master =
        events.iter().filter(|e| matches!(e, MasterEvent::Rejected { reason: RejectReason::BadCrc, .. })).count();
    let crc_at_device =
        lock(sim.controller("C").unwrap()).rejected().iter().filter(|r| **r == RejectReason::BadCrc).count();
    assert!(timeouts > 0, "at 5 % corrupted bytes some attempt must fail: {events:?}");
    let at_device = lock(sim.controller("C").unwrap()).rejected().to_vec();
    assert!(crc_at_master + crc_at_device > 0, "damage shows up as CRC rejections: {events:?} {at_device:?}");
}

#[test]
fn a_cut_drop_stays_silent_and_the_others_answer() {
    let sim = fleet();
    sim.inject("A", &Fault::LinkLoss).unwrap();
    let bus = sim.serve_serial("b1", 9600, None).unwrap();
    let mut port = OpenOptions::new().read(true).write(true).open(bus.path()).unwrap();
    let mut m = master();
    m.request(KeyId(1), Message::StatusRequest, Priority::Poll).unwrap();
    let events = drive(&mut m, &mut port, |e| matches!(e, MasterEvent::Failed { .. }));
    assert_eq!(events.iter().filter(|e| matches!(e, MasterEvent::Timeout { .. })).count(), 2);
    m.request(KeyId(2), Message::StatusRequest, Priority::Poll).unwrap();
    let events = drive(&mut m, &mut port, |e| matches!(e, MasterEvent::Reply { .. } | MasterEvent::Failed { .. }));
    assert!(matches!(events.last(), Some(MasterEvent::Reply { key_id: KeyId(2), .. })));
}

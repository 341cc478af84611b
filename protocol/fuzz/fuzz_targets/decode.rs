//! Fuzzes everything that reads bytes from outside: the serial decoder, frame parsing and
//! authentication, every payload decoder, and both sessions.
//!
//! Oracles: nothing panics; every payload that decodes re-encodes to the same bytes (the
//! encoding is canonical, so a decoder that accepts a sloppy payload shows up); a frame opened
//! under the test key re-encodes byte for byte.
#![no_main]

use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use siren_proto::frame::{self, FrameRef, Framing, Seal};
use siren_proto::master::{Master, MasterConfig, PeerConfig};
use siren_proto::outstation::{Outstation, OutstationConfig};
use siren_proto::replay::{ReplayWindow, TxCounter};
use siren_proto::{Message, SerialDecoder, vectors};

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, rest)) = data.split_first() else { return };
    let chunk = usize::from(chunk).max(1);

    // 1. Payload decoders, reached directly (the MAC keeps random frames from them).
    if let Some((&ty, payload)) = rest.split_first() {
        if let Ok(message) = Message::decode(ty, payload) {
            let mut again = Vec::new();
            message.encode_payload(&mut again).expect("a decoded message encodes");
            assert_eq!(again, payload, "non-canonical decode of type {ty:#04x}");
        }
    }

    // 2. The serial decoder over arbitrary chunking, then parsing and authentication.
    let key = vectors::device_key();
    let mut decoder = SerialDecoder::new();
    let check = |f: &[u8]| {
        if let Ok(opened) = frame::open(f, |_| Some(key.clone())) {
            let h = opened.header;
            let seal = Seal { destination: h.destination, source: h.source, key_id: h.key_id, key: &key, counter: h.counter };
            let mut again = Vec::new();
            seal.encode(&opened.message, Framing::Datagram, &mut again).expect("an opened frame encodes");
            assert_eq!(again, f);
        }
        let _ = FrameRef::parse(f);
    };
    for c in rest.chunks(chunk) {
        decoder.push(c);
        while let Some(r) = decoder.next_frame() {
            if let Ok(f) = r {
                check(&f.to_vec());
            }
        }
    }
    decoder.line_idle();
    while decoder.next_frame().is_some() {}
    check(rest);

    // 3. Both sessions, as a serial device and an MQTT master would see the bytes.
    let mut outstation = Outstation::new(OutstationConfig {
        framing: Framing::Serial,
        address: vectors::DEVICE_ADDRESS,
        key_id: vectors::DEVICE_KEY_ID,
        key: key.clone(),
        tx: TxCounter::new(1, 1024),
        rx: ReplayWindow::default(),
        groups: vec![],
        heartbeat: None,
    });
    for c in rest.chunks(chunk) {
        outstation.handle_input(c);
    }
    outstation.handle_line_idle();
    while outstation.poll_event().is_some() {}

    let mut master = Master::new(MasterConfig::mqtt());
    master.add_peer(PeerConfig {
        key_id: vectors::DEVICE_KEY_ID,
        key,
        address: vectors::DEVICE_ADDRESS,
        tx: TxCounter::new(1, 1024),
        rx: ReplayWindow::default(),
        birth: None,
        links: vec![],
    });
    master.handle_input(Instant::now(), rest);
    while master.poll_event().is_some() {}
});

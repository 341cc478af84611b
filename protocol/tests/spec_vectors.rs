//! The test vectors published in docs/protocol.md §11 decode to the reference messages and
//! re-encode byte for byte. The specification itself is the fixture, so it cannot drift from
//! the implementation unnoticed.
#![allow(clippy::unwrap_used, reason = "test helpers may panic on impossible states")]

use std::collections::HashMap;

use siren_proto::frame::{self, Framing, Seal};
use siren_proto::message::MessageType;
use siren_proto::{SerialDecoder, vectors};

/// `name -> (frame, envelope)` from the `vector` code blocks of the spec.
fn spec_vectors() -> HashMap<String, (Vec<u8>, Vec<u8>)> {
    let spec = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/protocol.md"))
        .expect("docs/protocol.md is readable");
    let mut out = HashMap::new();
    for block in spec.split("```vector\n").skip(1) {
        let body = block.split("```").next().unwrap_or_default();
        let field = |key: &str| {
            body.lines()
                .find_map(|l| l.strip_prefix(key).map(str::trim))
                .unwrap_or_else(|| panic!("vector block without {key}: {body}"))
                .to_owned()
        };
        let name = field("name");
        let frame = hex::decode(field("frame")).expect("frame is hex");
        let envelope = hex::decode(field("envelope")).expect("envelope is hex");
        assert!(out.insert(name.clone(), (frame, envelope)).is_none(), "duplicate vector {name}");
    }
    out
}

#[test]
fn every_message_type_has_a_vector_in_the_spec() {
    let spec = spec_vectors();
    let covered: Vec<MessageType> = vectors::all().iter().map(|v| v.message.message_type()).collect();
    for ty in MessageType::ALL {
        assert!(covered.contains(ty), "no vector for {ty:?}");
    }
    for v in vectors::all() {
        assert!(spec.contains_key(v.name), "vector {} missing from docs/protocol.md", v.name);
    }
    assert_eq!(spec.len(), vectors::all().len(), "the spec has vectors the crate does not know");
}

#[test]
fn spec_frames_decode_to_the_reference_messages_and_reencode_exactly() {
    let spec = spec_vectors();
    for v in vectors::all() {
        let (frame, envelope) = &spec[v.name];
        let opened =
            frame::open(frame, |id| (id == v.key_id).then(|| v.key())).unwrap_or_else(|e| panic!("{}: {e}", v.name));
        assert_eq!(opened.message, v.message, "{}", v.name);
        assert_eq!(
            (opened.header.destination, opened.header.source, opened.header.key_id, opened.header.counter),
            (v.destination, v.source, v.key_id, v.counter),
            "{}",
            v.name
        );
        let key = v.key();
        let seal =
            Seal { destination: v.destination, source: v.source, key_id: v.key_id, key: &key, counter: v.counter };
        let mut again = Vec::new();
        seal.encode(&opened.message, Framing::Datagram, &mut again).unwrap();
        assert_eq!(&again, frame, "{}: frame re-encodes", v.name);
        let mut again = Vec::new();
        seal.encode(&opened.message, Framing::Serial, &mut again).unwrap();
        assert_eq!(&again, envelope, "{}: envelope re-encodes", v.name);
        let mut decoder = SerialDecoder::new();
        decoder.push(envelope);
        assert_eq!(decoder.next_frame(), Some(Ok(frame.as_slice())), "{}: envelope decodes", v.name);
    }
}

#[test]
fn crc_matches_the_published_check_value() {
    // The spec names CRC-16/IBM-SDLC by its check value; make sure that is what we compute.
    let v = &vectors::all()[0];
    let (frame, envelope) = &spec_vectors()[v.name];
    let crc = crc::Crc::<u16>::new(&crc::CRC_16_IBM_SDLC);
    assert_eq!(crc.checksum(b"123456789"), 0x906E);
    assert_eq!(envelope[envelope.len() - 2..], crc.checksum(frame).to_be_bytes());
}

#[test]
fn the_field_tables_in_the_spec_are_what_the_crate_prints() {
    let spec = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/protocol.md")).unwrap();
    for v in vectors::all() {
        let heading = format!("#### {}\n\n", v.name);
        let at = spec.find(&heading).unwrap_or_else(|| panic!("no heading for {}", v.name)) + heading.len();
        let text = spec[at..].split("\n\n```vector").next().unwrap();
        assert_eq!(
            text,
            vectors::describe(&v),
            "{}: regenerate with `cargo run -p siren-proto --example vectors`",
            v.name
        );
    }
}

/// `(name, receiver, after, serial, bytes, reason)` of one `reject` block of the spec.
type SpecRejection = (String, String, Option<String>, bool, Vec<u8>, String);

/// Every `reject` block of the spec.
fn spec_rejections() -> Vec<SpecRejection> {
    let spec = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/protocol.md")).unwrap();
    spec.split("```reject\n")
        .skip(1)
        .map(|block| {
            let body = block.split("```").next().unwrap_or_default();
            let field = |key: &str| body.lines().find_map(|l| l.strip_prefix(key).map(|v| v.trim().to_owned()));
            let (serial, bytes) = match (field("envelope "), field("frame ")) {
                (Some(e), _) => (true, e),
                (None, Some(f)) => (false, f),
                _ => panic!("a reject block without bytes: {body}"),
            };
            (
                field("name ").unwrap(),
                field("receiver ").unwrap(),
                field("after ").filter(|a| !a.is_empty()),
                serial,
                hex::decode(bytes).unwrap(),
                field("reason ").unwrap(),
            )
        })
        .collect()
}

/// What `receiver` does with the frame of vector `after` and then with `bytes`: the reasons
/// it refused them for.
fn refusals(receiver: &str, after: Option<&str>, serial: bool, bytes: &[u8]) -> Vec<siren_proto::RejectReason> {
    use siren_proto::master::{Master, MasterConfig, MasterEvent, PeerConfig};
    use siren_proto::outstation::{GroupConfig, Outstation, OutstationConfig, OutstationEvent};
    use siren_proto::replay::{ReplayWindow, TxCounter};
    let before = after.map(|name| {
        let v = vectors::all().into_iter().find(|v| v.name == name).unwrap();
        let key = v.key();
        let mut frame = Vec::new();
        Seal { destination: v.destination, source: v.source, key_id: v.key_id, key: &key, counter: v.counter }
            .encode(&v.message, Framing::Datagram, &mut frame)
            .unwrap();
        frame
    });
    let framing = if serial { Framing::Serial } else { Framing::Datagram };
    match receiver {
        "outstation" => {
            let mut o = Outstation::new(OutstationConfig {
                framing,
                address: vectors::DEVICE_ADDRESS,
                key_id: vectors::DEVICE_KEY_ID,
                key: vectors::device_key(),
                tx: TxCounter::new(1, 1024),
                rx: ReplayWindow::default(),
                groups: vec![GroupConfig {
                    key_id: vectors::GROUP_KEY_ID,
                    key: vectors::group_key(),
                    rx: ReplayWindow::default(),
                }],
                heartbeat: None,
            });
            if let Some(f) = before {
                o.handle_frame(&f);
            }
            while o.poll_event().is_some() {}
            if serial {
                o.handle_stream(bytes);
                o.handle_line_idle();
            } else {
                o.handle_frame(bytes);
            }
            std::iter::from_fn(|| o.poll_event())
                .filter_map(|e| match e {
                    OutstationEvent::Rejected(r) => Some(r),
                    _ => None,
                })
                .collect()
        }
        "master" => {
            let mut m = Master::new(if serial { MasterConfig::serial(9600) } else { MasterConfig::mqtt() });
            m.add_peer(PeerConfig {
                key_id: vectors::DEVICE_KEY_ID,
                key: vectors::device_key(),
                address: vectors::DEVICE_ADDRESS,
                tx: TxCounter::new(1, 1024),
                rx: ReplayWindow::default(),
                birth: None,
                links: vec![],
            });
            let now = std::time::Instant::now();
            if let Some(f) = before {
                m.handle_input(now, &f);
            }
            while m.poll_event().is_some() {}
            m.handle_input(now, bytes);
            if serial {
                m.handle_line_idle(now, siren_proto::master::LinkId::DEFAULT);
            }
            std::iter::from_fn(|| m.poll_event())
                .filter_map(|e| match e {
                    MasterEvent::Rejected { reason, .. } => Some(reason),
                    _ => None,
                })
                .collect()
        }
        other => panic!("unknown receiver {other}"),
    }
}

#[test]
fn every_frame_to_refuse_in_the_spec_is_refused_for_its_reason() {
    let spec = spec_rejections();
    assert_eq!(spec.len(), vectors::rejections().len(), "the spec's reject vectors are the crate's");
    for (r, (name, receiver, after, serial, bytes, reason)) in vectors::rejections().iter().zip(&spec) {
        assert_eq!(
            (r.name, r.after, r.serial, &r.bytes, r.reason.as_str()),
            (name.as_str(), after.as_deref(), *serial, bytes, reason.as_str())
        );
        let got = refusals(receiver, after.as_deref(), *serial, bytes);
        assert_eq!(got.first().map(|g| g.as_str()), Some(reason.as_str()), "{name}: refused for {got:?}");
    }
}

#[test]
fn the_spec_gives_the_test_keys_mqtt_password() {
    let spec = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/protocol.md")).unwrap();
    let password = vectors::device_key().mqtt_password();
    assert_eq!(password, "0fb1013b635adf240054ffb8d7d11f96");
    let spec = spec.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(spec.contains(&format!("the password is `{password}`")));
}

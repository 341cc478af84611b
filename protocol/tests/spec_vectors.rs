//! The test vectors published in docs/protocol.md §11 decode to the reference messages and
//! re-encode byte for byte. The specification itself is the fixture, so it cannot drift from
//! the implementation unnoticed.

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

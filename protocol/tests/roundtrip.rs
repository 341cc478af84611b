//! Every message type survives encode → decode, bare and in the serial envelope, and the
//! decoder never panics nor accepts a damaged frame.

mod common;

use proptest::prelude::*;
use siren_proto::frame::{self, Address, FrameRef, Framing, KeyId, Seal};
use siren_proto::{Key, RejectReason, SerialDecoder};

fn key() -> Key {
    Key::new([7; 32])
}

fn seal(counter: u32) -> (Key, impl Fn(&siren_proto::Message, Framing) -> Vec<u8>) {
    let k = key();
    let k2 = k.clone();
    (k, move |m: &siren_proto::Message, framing| {
        let mut out = Vec::new();
        Seal { destination: Address(3), source: Address::MASTER, key_id: KeyId(9), key: &k2, counter }
            .encode(m, framing, &mut out)
            .expect("a valid message encodes");
        out
    })
}

proptest! {
    #[test]
    fn datagram_round_trip(message in common::message(), counter in 1u32..) {
        let (k, seal) = seal(counter);
        let bytes = seal(&message, Framing::Datagram);
        let opened = frame::open(&bytes, |id| (id == KeyId(9)).then(|| k.clone())).expect("own frame opens");
        prop_assert_eq!(opened.message, message);
        prop_assert_eq!(opened.header.counter, counter);
        prop_assert_eq!(opened.header.destination, Address(3));
    }

    #[test]
    fn serial_round_trip_in_any_chunks(message in common::message(), cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..8)) {
        let (_, seal) = seal(1);
        let envelope = seal(&message, Framing::Serial);
        let bare = seal(&message, Framing::Datagram);
        let mut points: Vec<usize> = cuts.iter().map(|i| i.index(envelope.len())).collect();
        points.sort_unstable();
        let mut decoder = SerialDecoder::new();
        let mut frames = Vec::new();
        let mut last = 0;
        for p in points.into_iter().chain([envelope.len()]) {
            decoder.push(&envelope[last..p]);
            last = p;
            while let Some(r) = decoder.next_frame() {
                frames.push(r.map(<[u8]>::to_vec));
            }
        }
        prop_assert_eq!(frames, vec![Ok(bare)]);
    }

    #[test]
    fn decoder_survives_random_bytes(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..10)) {
        let mut decoder = SerialDecoder::new();
        for c in &chunks {
            decoder.push(c);
            while let Some(r) = decoder.next_frame() {
                // Random bytes essentially never carry a valid CRC *and* MAC.
                if let Ok(f) = r {
                    let parsed = FrameRef::parse(f);
                    prop_assert!(parsed.map_or(true, |p| !p.verify(&key())));
                }
            }
        }
        decoder.line_idle();
        while decoder.next_frame().is_some() {}
    }

    #[test]
    fn frames_survive_garbage_between_them(
        messages in proptest::collection::vec(common::message(), 1..5),
        garbage in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 5),
    ) {
        // Garbage never contains a SYNC here, so every frame must come through intact.
        let mut stream = Vec::new();
        let mut expected = Vec::new();
        for (i, m) in messages.iter().enumerate() {
            let g: Vec<u8> = garbage[i].iter().map(|&b| if b == 0xA5 { 0 } else { b }).collect();
            stream.extend_from_slice(&g);
            let (_, seal) = seal(u32::try_from(i).unwrap() + 1);
            stream.extend_from_slice(&seal(m, Framing::Serial));
            expected.push(seal(m, Framing::Datagram));
        }
        let mut decoder = SerialDecoder::new();
        decoder.push(&stream);
        let got: Vec<Vec<u8>> = std::iter::from_fn(|| decoder.next_frame().map(|r| r.map(<[u8]>::to_vec))).filter_map(Result::ok).collect();
        prop_assert_eq!(got, expected);
    }

    #[test]
    fn bit_flips_are_never_accepted(message in common::message(), bit in any::<prop::sample::Index>(), serial in any::<bool>()) {
        let (k, seal) = seal(5);
        let framing = if serial { Framing::Serial } else { Framing::Datagram };
        let mut bytes = seal(&message, framing);
        let bit = bit.index(bytes.len() * 8);
        bytes[bit / 8] ^= 1 << (bit % 8);
        let accepted = if serial {
            let mut decoder = SerialDecoder::new();
            decoder.push(&bytes);
            decoder.line_idle();
            let mut any_opened = false;
            while let Some(r) = decoder.next_frame() {
                if let Ok(f) = r {
                    any_opened |= frame::open(f, |_| Some(k.clone())).is_ok();
                }
            }
            any_opened
        } else {
            frame::open(&bytes, |_| Some(k.clone())).is_ok()
        };
        prop_assert!(!accepted);
    }
}

#[test]
fn every_rejection_reason_is_distinct() {
    let labels: std::collections::BTreeSet<_> = RejectReason::ALL.iter().map(|r| r.as_str()).collect();
    assert_eq!(labels.len(), RejectReason::ALL.len());
}

#[test]
fn structural_rejections_have_their_own_reasons() {
    let (k, seal) = seal(1);
    let good = seal(&siren_proto::Message::Stop { campaign: 1 }, Framing::Datagram);
    let with = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut b = good.clone();
        f(&mut b);
        frame::open(&b, |id| (id == KeyId(9)).then(|| k.clone())).map(|_| ())
    };
    assert_eq!(with(&|_| {}), Ok(()));
    assert_eq!(with(&|b| b.truncate(10)), Err(RejectReason::Truncated));
    assert_eq!(with(&|b| b.truncate(b.len() - 1)), Err(RejectReason::Truncated));
    assert_eq!(with(&|b| b.push(0)), Err(RejectReason::Malformed));
    assert_eq!(with(&|b| b[0] = 2), Err(RejectReason::UnknownVersion));
    assert_eq!(with(&|b| b[1] = 0x40), Err(RejectReason::Malformed));
    assert_eq!(with(&|b| b[13..15].copy_from_slice(&513u16.to_be_bytes())), Err(RejectReason::Oversize));
    assert_eq!(with(&|b| b[7] ^= 1), Err(RejectReason::UnknownKeyId));
    assert_eq!(with(&|b| b[20] ^= 1), Err(RejectReason::BadMac));
    // An authentic frame of an unknown type, and one whose payload is short.
    let reseal = |ty: u8, payload: &[u8]| {
        let mut b = good[..15].to_vec();
        b[12] = ty;
        b[13..15].copy_from_slice(&u16::try_from(payload.len()).unwrap().to_be_bytes());
        b.extend_from_slice(payload);
        let mac = k.sign(&b);
        b.extend_from_slice(&mac);
        frame::open(&b, |_| Some(k.clone())).map(|_| ())
    };
    assert_eq!(reseal(0x7E, &[]), Err(RejectReason::UnknownMessageType));
    assert_eq!(reseal(0x15, &[0, 0]), Err(RejectReason::Malformed));
    assert_eq!(reseal(0x15, &[0, 0, 0, 1]), Ok(()));
}

#[test]
fn serial_envelope_rejections() {
    let (_, seal) = seal(1);
    let good = seal(&siren_proto::Message::StatusRequest, Framing::Serial);
    let mut bad_crc = good.clone();
    let last = bad_crc.len() - 1;
    bad_crc[last] ^= 0xFF;
    let mut decoder = SerialDecoder::new();
    decoder.push(&bad_crc);
    assert_eq!(decoder.next_frame().map(|r| r.map(<[u8]>::to_vec)), Some(Err(RejectReason::BadCrc)));
    while decoder.next_frame().is_some() {}

    let mut oversize = good.clone();
    oversize[15..17].copy_from_slice(&600u16.to_be_bytes());
    let mut decoder = SerialDecoder::new();
    decoder.push(&oversize);
    assert_eq!(decoder.next_frame().map(|r| r.map(<[u8]>::to_vec)), Some(Err(RejectReason::Oversize)));

    // A frame cut short, then the line goes idle, then a good frame.
    let mut decoder = SerialDecoder::new();
    decoder.push(&good[..good.len() - 5]);
    assert!(decoder.next_frame().is_none());
    assert!(decoder.is_mid_frame());
    decoder.line_idle();
    assert_eq!(decoder.next_frame().map(|r| r.map(<[u8]>::to_vec)), Some(Err(RejectReason::Truncated)));
    while decoder.next_frame().is_some() {}
    decoder.push(&good);
    assert!(matches!(decoder.next_frame(), Some(Ok(_))));
}

/// Every verdict the decoder gives until it needs more bytes.
fn drain(decoder: &mut SerialDecoder) -> Vec<Result<Vec<u8>, RejectReason>> {
    std::iter::from_fn(|| decoder.next_frame().map(|r| r.map(<[u8]>::to_vec))).collect()
}

#[test]
fn a_fragment_is_truncated_once_the_line_is_idle_for_the_gap() {
    use std::time::{Duration, Instant};
    let (_, seal) = seal(1);
    let good = seal(&siren_proto::Message::StatusRequest, Framing::Serial);
    let bare = seal(&siren_proto::Message::StatusRequest, Framing::Datagram);
    let gap = Duration::from_millis(100);
    let t0 = Instant::now();

    // A 30-byte fragment, then silence: truncated at the gap, not when the next frame comes.
    let mut decoder = SerialDecoder::with_idle_gap(gap);
    decoder.push_at(&good[..30], t0);
    assert!(drain(&mut decoder).is_empty());
    assert_eq!(decoder.idle_deadline(), Some(t0 + gap));
    assert!(!decoder.poll_idle(t0 + gap.saturating_sub(Duration::from_millis(1))));
    assert!(decoder.poll_idle(t0 + gap));
    let verdicts = drain(&mut decoder);
    assert_eq!(verdicts.first(), Some(&Err(RejectReason::Truncated)));
    assert!(verdicts.iter().all(Result::is_err), "{verdicts:?}");
    assert_eq!(decoder.idle_deadline(), None, "nothing is pending");
    decoder.push_at(&good, t0 + Duration::from_secs(5));
    assert_eq!(drain(&mut decoder), [Ok(bare.clone())], "the next envelope is decoded on its own");

    // An envelope with a one-second pause in the middle is not reassembled.
    let mut decoder = SerialDecoder::with_idle_gap(gap);
    decoder.push_at(&good[..20], t0);
    decoder.push_at(&good[20..], t0 + Duration::from_secs(1));
    let verdicts = drain(&mut decoder);
    assert_eq!(verdicts.first(), Some(&Err(RejectReason::Truncated)), "{verdicts:?}");
    assert!(!verdicts.iter().any(Result::is_ok), "{verdicts:?}");

    // Pauses shorter than the gap (an adapter's bursts) are part of one envelope; a trailing
    // first SYNC byte alone also waits for the gap.
    let mut decoder = SerialDecoder::with_idle_gap(gap);
    let mut at = t0;
    for chunk in good.chunks(7) {
        decoder.push_at(chunk, at);
        at += gap / 2;
    }
    assert_eq!(drain(&mut decoder), [Ok(bare.clone())]);
    decoder.push_at(&good[..1], at);
    assert!(drain(&mut decoder).is_empty());
    assert!(decoder.poll_idle(at + gap));
    assert!(drain(&mut decoder).is_empty(), "a lone SYNC byte is noise, not an envelope");

    // Bytes that arrive after the gap but before anyone asked for verdicts still come after
    // the truncated fragment, never merged with it.
    let mut decoder = SerialDecoder::with_idle_gap(gap);
    decoder.push_at(&good[..30], t0);
    assert!(decoder.poll_idle(t0 + gap));
    decoder.push_at(&good, t0 + gap * 2);
    let verdicts = drain(&mut decoder);
    assert_eq!(verdicts.first(), Some(&Err(RejectReason::Truncated)));
    assert_eq!(verdicts.last(), Some(&Ok(bare)));
}

#[test]
fn the_default_gap_is_three_and_a_half_byte_times_but_never_below_the_host_minimum() {
    use siren_proto::decoder::{MIN_HOST_IDLE_GAP, default_idle_gap, wire_idle_gap};
    use std::time::Duration;
    assert_eq!(wire_idle_gap(9600), Duration::from_nanos(3_645_833));
    assert_eq!(default_idle_gap(9600), MIN_HOST_IDLE_GAP);
    assert_eq!(default_idle_gap(300), wire_idle_gap(300), "at 300 baud 3.5 byte times are 117 ms");
}

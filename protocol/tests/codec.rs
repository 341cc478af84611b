//! The `tokio_util` codec yields frames and rejections from a byte stream and never ends the
//! stream on bad input.

use bytes::BytesMut;
use siren_proto::codec::SerialCodec;
use siren_proto::frame::{Framing, Seal};
use siren_proto::{RejectReason, vectors};
use tokio_util::codec::{Decoder, Encoder};

fn envelope(counter: u32) -> (Vec<u8>, Vec<u8>) {
    let v = &vectors::all()[1];
    let key = v.key();
    let seal = Seal { destination: v.destination, source: v.source, key_id: v.key_id, key: &key, counter };
    let (mut frame, mut env) = (Vec::new(), Vec::new());
    seal.encode(&v.message, Framing::Datagram, &mut frame).expect("encodes");
    seal.encode(&v.message, Framing::Serial, &mut env).expect("encodes");
    (frame, env)
}

#[test]
fn codec_yields_frames_and_rejections_in_order() {
    let (frame1, env1) = envelope(1);
    let (frame2, env2) = envelope(2);
    let mut damaged = env1.clone();
    damaged[20] ^= 0x01;

    let mut codec = SerialCodec::default();
    let mut wire = BytesMut::new();
    for part in [&[0x00, 0x13][..], &env1, &damaged, &env2[..10]] {
        codec.encode(part, &mut wire).expect("writes");
    }
    let mut items = Vec::new();
    while let Some(item) = codec.decode(&mut wire).expect("never an I/O error") {
        items.push(item);
    }
    assert_eq!(items, vec![Ok(frame1), Err(RejectReason::BadCrc)]);

    // The rest of the second frame arrives.
    wire.extend_from_slice(&env2[10..]);
    assert_eq!(codec.decode(&mut wire).expect("ok"), Some(Ok(frame2)));
    assert_eq!(codec.decode(&mut wire).expect("ok"), None);

    // The stream ends mid-frame.
    wire.extend_from_slice(&env1[..30]);
    assert_eq!(codec.decode_eof(&mut wire).expect("ok"), Some(Err(RejectReason::Truncated)));
}

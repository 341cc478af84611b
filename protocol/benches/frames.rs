//! Frame throughput: decode + verify of a status report, encode + sign of one, and the
//! serial path through the stream decoder. Results and the command are in BENCHMARKS.md.

use std::hint::black_box;
use std::time::Instant;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use siren_proto::frame::{FrameRef, Framing, Seal};
use siren_proto::master::{Master, MasterConfig, PeerConfig};
use siren_proto::replay::{ReplayWindow, TxCounter};
use siren_proto::{Message, SerialDecoder, vectors};

fn status_vector() -> vectors::Vector {
    vectors::all().into_iter().find(|v| v.name == "status-report").expect("status vector exists")
}

fn sealed(framing: Framing, counter: u32) -> Vec<u8> {
    let v = status_vector();
    let key = v.key();
    let mut out = Vec::new();
    Seal { destination: v.destination, source: v.source, key_id: v.key_id, key: &key, counter }
        .encode(&v.message, framing, &mut out)
        .expect("the vector encodes");
    out
}

fn frames(c: &mut Criterion) {
    let v = status_vector();
    let key = v.key();
    let frame = sealed(Framing::Datagram, 1);
    let envelope = sealed(Framing::Serial, 1);

    let mut g = c.benchmark_group("status_report");
    g.throughput(Throughput::Elements(1));

    g.bench_function("decode_verify", |b| {
        b.iter(|| {
            let parsed = FrameRef::parse(black_box(&frame)).expect("valid");
            assert!(parsed.verify(&key));
            black_box(Message::decode(parsed.header.message_type, parsed.payload).expect("valid"))
        });
    });

    let mut out = Vec::with_capacity(256);
    let mut counter = 0u32;
    g.bench_function("encode_sign", |b| {
        b.iter(|| {
            out.clear();
            counter = counter.wrapping_add(1).max(1);
            Seal { destination: v.destination, source: v.source, key_id: v.key_id, key: &key, counter }
                .encode(black_box(&v.message), Framing::Datagram, &mut out)
                .expect("encodes");
            black_box(out.len())
        });
    });

    let mut decoder = SerialDecoder::new();
    g.bench_function("serial_decode_verify", |b| {
        b.iter(|| {
            decoder.push(black_box(&envelope));
            let f = decoder.next_frame().expect("complete").expect("valid");
            let parsed = FrameRef::parse(f).expect("valid");
            assert!(parsed.verify(&key));
            black_box(Message::decode(parsed.header.message_type, parsed.payload).expect("valid"))
        });
    });

    // The whole receive path of the master session: parse, MAC, replay window, decode, match.
    let batch: Vec<Vec<u8>> = (1..=10_000).map(|c| sealed(Framing::Datagram, c)).collect();
    g.throughput(Throughput::Elements(batch.len() as u64));
    g.bench_function("master_session_receive_10k", |b| {
        b.iter_batched(
            || {
                let mut m = Master::new(MasterConfig::mqtt());
                m.add_peer(PeerConfig {
                    key_id: v.key_id,
                    key: key.clone(),
                    address: v.source,
                    tx: TxCounter::new(1, 1024),
                    rx: ReplayWindow::default(),
                    birth: None,
                    links: vec![],
                });
                m
            },
            |mut m| {
                let now = Instant::now();
                for f in &batch {
                    m.handle_input(now, f);
                    black_box(m.poll_event());
                }
            },
            criterion::BatchSize::LargeInput,
        );
    });
    g.finish();
}

criterion_group!(benches, frames);
criterion_main!(benches);

//! Prints the test vectors in the form docs/protocol.md §10 carries them:
//! `cargo run -p siren-proto --example vectors`.

use siren_proto::frame::{Framing, Seal};
use siren_proto::vectors;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for v in vectors::all() {
        let key = v.key();
        let seal =
            Seal { destination: v.destination, source: v.source, key_id: v.key_id, key: &key, counter: v.counter };
        let mut frame = Vec::new();
        seal.encode(&v.message, Framing::Datagram, &mut frame)?;
        let mut envelope = Vec::new();
        seal.encode(&v.message, Framing::Serial, &mut envelope)?;
        println!("#### {}\n", v.name);
        println!("{:?}\n", v.message);
        println!("```vector");
        println!("name     {}", v.name);
        println!("frame    {}", hex::encode(&frame));
        println!("envelope {}", hex::encode(&envelope));
        println!("```\n");
    }
    Ok(())
}

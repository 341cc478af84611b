//! Prints the test vectors in the form docs/protocol.md §11 carries them:
//! `cargo run -p siren-proto --example vectors`.

use siren_proto::frame::{Framing, Seal};
use siren_proto::vectors::{self, Receiver};

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
        println!("{}\n", vectors::describe(&v));
        println!("```vector");
        println!("name     {}", v.name);
        println!("frame    {}", hex::encode(&frame));
        println!("envelope {}", hex::encode(&envelope));
        println!("```\n");
    }
    println!("### 11.1 Frames to refuse\n");
    for r in vectors::rejections() {
        println!("#### reject: {}\n", r.name);
        let receiver = match r.receiver {
            Receiver::Outstation => "outstation",
            Receiver::Master => "master",
        };
        println!("```reject");
        println!("name     {}", r.name);
        println!("receiver {receiver}");
        if let Some(after) = r.after {
            println!("after    {after}");
        }
        println!("{} {}", if r.serial { "envelope" } else { "frame   " }, hex::encode(&r.bytes));
        println!("reason   {}", r.reason.as_str());
        println!("why      {}", r.why);
        println!("```\n");
    }
    Ok(())
}

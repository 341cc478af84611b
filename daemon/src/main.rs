//! `sirend`, the sirennet monitoring daemon. The daemon itself is built by the "Daemon core"
//! issue; until then the binary only reports which protocol version it speaks.

fn main() {
    println!("sirend {} (protocol version {})", env!("CARGO_PKG_VERSION"), siren_proto::VERSION);
}

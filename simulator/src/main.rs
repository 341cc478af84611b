//! `siren-sim`, simulated siren controllers. The simulator is built by the "Simulator" issue;
//! until then the binary only reports which protocol version it speaks.

fn main() {
    println!("siren-sim {} (protocol version {})", env!("CARGO_PKG_VERSION"), siren_proto::VERSION);
}

//! The sirennet field-device protocol, sans-IO.
//!
//! `docs/protocol.md` is the normative specification; this crate implements it and nothing
//! else. There is no I/O here: callers feed received bytes in, take bytes to transmit out, and
//! pass the current instant to the session state machines, which tell them when they next need
//! to be woken. The daemon and the simulator both build on it.
//!
//! Layers, bottom up:
//! - [`frame`]: the authenticated frame (header, payload, MAC) and the serial envelope
//!   (sync, frame, CRC).
//! - [`decoder`]: an incremental serial decoder that resynchronises after noise.
//! - [`message`] and [`pattern`]: typed payloads.
//! - [`replay`]: per-direction counters, the anti-replay window and counter leases.
//! - [`master`] and [`outstation`]: the two session state machines.

pub mod decoder;
pub mod error;
pub mod frame;
pub mod mac;
pub mod master;
pub mod message;
pub mod outstation;
pub mod pattern;
pub mod replay;
pub mod vectors;
mod wire;

#[cfg(feature = "codec")]
pub mod codec;
#[cfg(feature = "fleet")]
pub mod fleet;

pub use decoder::SerialDecoder;
pub use error::{DecodeError, RejectReason};
pub use frame::{Address, Framing, Header, KeyId, VerifiedFrame};
pub use mac::Key;
pub use message::{Message, MessageType};
pub use pattern::{Pattern, Step, Tone};

/// Protocol version carried in every frame.
pub const VERSION: u8 = 1;

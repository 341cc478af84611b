//! Simulated siren controllers: the hardware and firmware of a siren cabinet without the
//! hardware, on real serial pseudo-terminals and real MQTT connections, with faults on demand
//! and the ground truth that tests compare the daemon against.
//!
//! - [`device`]: physics, clock and soundings, advanced by a caller-controlled clock.
//! - [`controller`]: the protocol's outstation on top of a device.
//! - [`fault`] and [`scenario`]: what can go wrong, by hand, from files or at random.
//! - [`generate`]: whole fleets with keys and a matching daemon configuration.
//! - [`serial`] and [`mqtt`]: the transports.
//! - [`fleet`]: a running fleet, for tests and the demo.

pub mod clock;
pub mod controller;
pub mod device;
pub mod fault;
pub mod fleet;
pub mod generate;
pub mod mqtt;
pub mod scenario;
pub mod serial;

//! `sirend`, the sirennet monitoring daemon.
//!
//! - [`config`]: `sirend.toml` with its fleet and key files.
//! - [`coverage`]: who would hear a warning now, by area and by population.
//! - [`fleet`]: every owned siren with its liveness and telemetry.
//! - [`history`]: a siren's outages, state changes, maintenance and soundings, for its crew.
//! - [`live`]: LIVE warnings, requested by one person and approved by another.
//! - [`liveness`]: each siren's state machine, a pure function of (state, observation, now).
//! - [`maintenance`]: windows in which crews have taken sirens out of service.
//! - [`store`]: events, replay counters and last known states in SQLite.

pub mod area;
pub mod auth;
pub mod cap;
pub mod config;
pub mod coverage;
pub mod daemon;
#[cfg(feature = "demo")]
pub mod demo;
pub mod engine;
pub mod fleet;
pub mod history;
pub mod http;
pub mod leadership;
pub mod link;
pub mod live;
pub mod liveness;
pub mod maintenance;
pub mod metrics;
pub mod sounding;
pub mod store;

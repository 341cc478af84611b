//! `sirend`, the sirennet monitoring daemon.
//!
//! - [`config`]: `sirend.toml` with its fleet and key files.
//! - [`liveness`]: each siren's state machine, a pure function of (state, observation, now).
//! - [`store`]: events, replay counters and last known states in SQLite.

pub mod config;
pub mod liveness;
pub mod store;

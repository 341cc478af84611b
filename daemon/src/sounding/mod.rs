//! Test soundings: schedules, campaigns (arm, trigger, verify) and their reports.
//!
//! - [`sequence`]: a schedule's signal sequence as protocol segments.
//! - [`schedule`]: recurrence rules in a time zone, and their occurrences.

pub mod board;
pub mod campaign;
pub mod runner;
pub mod schedule;
pub mod sequence;
pub mod verdict;

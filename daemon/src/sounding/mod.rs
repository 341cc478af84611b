//! Test soundings: schedules, campaigns (arm, trigger, verify) and their reports.
//!
//! - [`sequence`]: a schedule's signal sequence as protocol segments.
//! - [`schedule`]: recurrence rules in a time zone, and their occurrences.
//! - [`campaign`]: one sounding as a state machine; [`clock_watch`]: an armed siren's clock
//!   until the instant (steps, drift).
//! - [`conflicts`]: no siren in two campaigns at once (precedence between schedules).
//! - [`uncommanded`]: sirens armed or sounding that no campaign of ours ordered.
//! - [`stop`]: the one-step stop of every siren in a scope.

pub mod board;
pub mod campaign;
pub mod clock_watch;
pub mod conflicts;
pub mod runner;
pub mod schedule;
pub mod sequence;
pub mod stop;
pub mod uncommanded;
pub mod verdict;

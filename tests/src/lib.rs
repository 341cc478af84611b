//! End-to-end tests of sirend and siren-sim live in `tests/tests/`; this library will hold
//! their shared harness (PTY fleets, brokers, virtual clocks).

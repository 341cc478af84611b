//! Shared harness of the end-to-end tests in `tests/tests/`: real MQTT brokers on free ports
//! and small helpers around the simulator.

pub mod broker;

//! Shared harness of the end-to-end tests in `tests/tests/`: real MQTT brokers on free ports
//! and small helpers around the simulator.

pub mod broker;

pub mod wait {
    //! Waiting for something the system under test reaches by itself.

    use std::time::{Duration, Instant};

    /// Checks `done` every 20 ms until it holds; the 60 s guard only stops a hung test.
    pub async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
        let guard = Instant::now() + Duration::from_secs(60);
        while !done() {
            assert!(Instant::now() < guard, "gave up waiting for {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

//! Shared harness of the end-to-end tests in `tests/tests/`: real MQTT brokers on free ports
//! and small helpers around the simulator.

pub mod broker;
pub mod browser;
pub mod config;
pub mod http;
pub mod proxy;
pub mod rooms;
pub mod tools;

pub mod wait {
    //! Waiting for something the system under test reaches by itself.

    use std::time::{Duration, Instant};

    /// Checks `done` every 20 ms until it holds; the 60 s guard only stops a hung test.
    pub async fn wait_for(what: &str, done: impl FnMut() -> bool) {
        wait_within(what, Duration::from_secs(60), done).await;
    }

    /// As `wait_for`, and when it gives up, says why with what `explain` tells (logs, the
    /// state of what was waited for), taken only then.
    pub async fn wait_explaining(what: &str, mut done: impl FnMut() -> bool, explain: impl Fn() -> String) {
        let guard = Instant::now() + Duration::from_secs(60);
        while !done() {
            assert!(Instant::now() < guard, "gave up waiting for {what}:\n{}", explain());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// As `wait_for`, with a guard of `limit` for what takes longer by design.
    pub async fn wait_within(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
        let guard = Instant::now() + limit;
        while !done() {
            assert!(Instant::now() < guard, "gave up waiting for {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

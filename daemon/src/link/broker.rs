//! The embedded MQTT broker (rumqttd), so a single-site install needs no broker of its own.
//! It runs on its own threads, with explicit router limits sized for a large fleet.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rumqttd::{Broker, Config, ConnectionSettings, RouterConfig, ServerSettings};

/// The largest payload the embedded broker accepts from a client; a client that publishes a
/// larger one is disconnected. Room for a frame (`siren_proto::frame::MAX_FRAME`) and then
/// some, far below what the daemon's own client reads (`mqtt::MAX_INCOMING_PACKET`).
pub const MAX_PAYLOAD: usize = 4 * 1024;

/// Starts the broker on `listen` and waits until it accepts connections.
///
/// rumqttd only logs a failure to bind, from its own thread, so the port is claimed here first:
/// otherwise a port already taken by another broker would pass the readiness probe below and
/// the daemon would quietly talk to someone else's broker.
pub fn start(listen: SocketAddr, max_connections: usize) -> anyhow::Result<()> {
    drop(
        TcpListener::bind(listen).with_context(|| {
            format!("the embedded MQTT broker cannot listen on {listen} (is another broker there?)")
        })?,
    );
    let connections = ConnectionSettings {
        connection_timeout_ms: 10_000,
        max_payload_size: MAX_PAYLOAD,
        max_inflight_count: 1_000,
        auth: None,
        external_auth: None,
        dynamic_filters: true,
    };
    let server = ServerSettings { name: "sirend".into(), listen, tls: None, next_connection_delay_ms: 0, connections };
    let config = Config {
        id: 0,
        // Memory is bounded by what the router may hold (BENCHMARKS.md, "junk flood"): each
        // subscription's log keeps 4 x 256 KiB of messages for readers that lag (a reader
        // further behind loses the oldest), each connection 1,000 messages on their way out,
        // and (vendored patch) each connection 64 messages on their way in. With 64 MiB x 10
        // segments a junk flood on the sirens' topics held hundreds of MiB for good.
        router: RouterConfig {
            max_connections,
            max_outgoing_packet_count: 1_000,
            max_segment_size: 256 * 1024,
            max_segment_count: 4,
            custom_segment: None,
            initialized_filters: None,
            shared_subscriptions_strategy: rumqttd::Strategy::default(),
        },
        v4: Some(HashMap::from([("sirend".to_owned(), server)])),
        ..Config::default()
    };
    std::thread::Builder::new().name("mqtt-broker".into()).spawn(move || {
        let mut broker = Broker::new(config);
        if let Err(e) = broker.start() {
            tracing::error!(error = %e, "embedded MQTT broker stopped");
        }
    })?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if TcpStream::connect(listen).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    anyhow::bail!("the embedded MQTT broker did not start listening on {listen}")
}

//! The embedded MQTT broker (rumqttd), so a single-site install needs no broker of its own.
//! It runs on its own threads, with explicit router limits sized for a large fleet.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use std::sync::Arc;

use anyhow::Context as _;
use rumqttd::{Acl, Broker, Config, ConnectionSettings, RouterConfig, ServerSettings};
use subtle::ConstantTimeEq as _;

/// The largest payload the embedded broker accepts from a client; a client that publishes a
/// larger one is disconnected. Room for a frame (`siren_proto::frame::MAX_FRAME`) and then
/// some, far below what the daemon's own client reads (`mqtt::MAX_INCOMING_PACKET`).
pub const MAX_PAYLOAD: usize = 4 * 1024;

/// Who may connect to the embedded broker and what each may do (docs/operations.md, "The
/// embedded broker"): each siren as itself only (client id and user name its fleet id, password
/// derived from its key, `Key::mqtt_password`), publishing only on its own topics and
/// subscribing only to its own command topic; the daemon's own client with a password made at
/// start. Nothing else connects.
#[derive(Debug, Clone)]
pub struct Access {
    pub topic_root: String,
    /// By siren id: its zone path and its password.
    pub sirens: HashMap<String, (String, String)>,
    /// The daemon's client id and password.
    pub daemon: (String, String),
}

/// The channels a siren publishes on (docs/protocol.md §9).
pub const DEVICE_CHANNELS: [&str; 6] = ["birth", "death", "hb", "status", "report", "reply"];

impl Access {
    /// Whether `client_id` may connect with `username` and `password`.
    fn admits(&self, client_id: &str, username: &str, password: &str) -> bool {
        let expected = if client_id == self.daemon.0 {
            &self.daemon.1
        } else {
            match self.sirens.get(client_id) {
                Some((_, p)) if username == client_id => p,
                _ => return false,
            }
        };
        bool::from(expected.as_bytes().ct_eq(password.as_bytes()))
    }

    /// Whether `client_id` may publish on (`publish`) or subscribe to `topic`.
    fn allows(&self, client_id: &str, topic: &str, publish: bool) -> bool {
        if client_id == self.daemon.0 {
            return true;
        }
        let Some((zone, _)) = self.sirens.get(client_id) else { return false };
        let Some(channel) = topic
            .strip_prefix(self.topic_root.as_str())
            .and_then(|t| t.strip_prefix('/'))
            .and_then(|t| t.strip_prefix(zone.as_str()))
            .and_then(|t| t.strip_prefix('/'))
            .and_then(|t| t.strip_prefix(client_id))
            .and_then(|t| t.strip_prefix('/'))
        else {
            return false;
        };
        if publish { DEVICE_CHANNELS.contains(&channel) } else { channel == "cmd" }
    }
}

/// Starts the broker on `listen` and waits until it accepts connections.
///
/// rumqttd only logs a failure to bind, from its own thread, so the port is claimed here first:
/// otherwise a port already taken by another broker would pass the readiness probe below and
/// the daemon would quietly talk to someone else's broker.
pub fn start(listen: SocketAddr, max_connections: usize, access: Option<Access>) -> anyhow::Result<()> {
    drop(
        TcpListener::bind(listen).with_context(|| {
            format!("the embedded MQTT broker cannot listen on {listen} (is another broker there?)")
        })?,
    );
    let mut connections = ConnectionSettings {
        connection_timeout_ms: 10_000,
        max_payload_size: MAX_PAYLOAD,
        max_inflight_count: 1_000,
        auth: None,
        external_auth: None,
        dynamic_filters: true,
    };
    let acl = access.map(|access| {
        let access = Arc::new(access);
        let admits = Arc::clone(&access);
        connections.set_auth_handler(move |client_id: String, username: String, password: String| {
            let admitted = admits.admits(&client_id, &username, &password);
            if !admitted {
                tracing::warn!(client_id, username, "MQTT connection refused: unknown client or wrong password");
            }
            std::future::ready(admitted)
        });
        Acl(Arc::new(move |client_id: &str, topic: &str, publish: bool| access.allows(client_id, topic, publish)))
    });
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
            acl,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn access() -> Access {
        Access {
            topic_root: "sirennet/v1".into(),
            sirens: HashMap::from([("HZ-1".into(), ("hz/c".into(), "pw1".into()))]),
            daemon: ("sirend-7".into(), "secret".into()),
        }
    }

    #[test]
    fn a_siren_connects_only_as_itself_with_its_password() {
        let a = access();
        assert!(a.admits("HZ-1", "HZ-1", "pw1"));
        assert!(!a.admits("HZ-1", "HZ-1", "pw2"), "wrong password");
        assert!(!a.admits("HZ-1", "HZ-2", "pw1"), "another user name");
        assert!(!a.admits("HZ-2", "HZ-2", "pw1"), "not in the fleet");
        assert!(a.admits("sirend-7", "", "secret"));
        assert!(!a.admits("sirend-7", "", "pw1"));
    }

    #[test]
    fn a_siren_uses_only_its_own_topics() {
        let a = access();
        for channel in DEVICE_CHANNELS {
            assert!(a.allows("HZ-1", &format!("sirennet/v1/hz/c/HZ-1/{channel}"), true), "{channel}");
        }
        assert!(!a.allows("HZ-1", "sirennet/v1/hz/c/HZ-1/cmd", true), "commands come from the daemon only");
        assert!(!a.allows("HZ-1", "sirennet/v1/hz/c/HZ-2/status", true), "another siren's topic");
        assert!(!a.allows("HZ-1", "sirennet/v1/hz/d/HZ-1/status", true), "another zone");
        assert!(!a.allows("HZ-1", "junk/anything", true));
        assert!(a.allows("HZ-1", "sirennet/v1/hz/c/HZ-1/cmd", false));
        assert!(!a.allows("HZ-1", "sirennet/v1/#", false), "no one else's traffic");
        assert!(a.allows("sirend-7", "sirennet/v1/#", false));
        assert!(a.allows("sirend-7", "sirennet/v1/hz/c/HZ-1/cmd", true));
    }
}

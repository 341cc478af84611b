//! The daemon's MQTT client: subscribes to the sirens' topics (all of them, or its zones'),
//! passes every publication to the engine, publishes commands, and reconnects with back-off,
//! resubscribing after every connect. While the broker is lost the link is down, so its
//! sirens are `unreachable`, never `down`, for silence the daemon itself caused.

use std::time::Duration;

use rumqttc::{AsyncClient, ConnectionError, Event, EventLoop, MqttOptions, Packet, QoS};
use siren_proto::master::LinkId;
use tokio::sync::mpsc;

use super::Backoff;
use crate::engine::{Input, Output};

/// The largest MQTT packet the client reads. rumqttc drops the connection on a larger one, so
/// this is far above any valid message (one frame: `siren_proto::frame::MAX_FRAME` bytes) and
/// above what a broker configured as docs/operations.md says delivers (the embedded one
/// refuses payloads over [`super::broker::MAX_PAYLOAD`]): a larger message that does arrive
/// is read whole, dropped and counted, and the connection stays up.
pub const MAX_INCOMING_PACKET: usize = 1024 * 1024;
/// The largest packet the client sends: a command frame and its topic.
const MAX_OUTGOING_PACKET: usize = 64 * 1024;

/// Where and what to subscribe.
#[derive(Debug, Clone)]
pub struct MqttLink {
    pub link: LinkId,
    pub host: String,
    pub port: u16,
    pub client_id: String,
    /// User name and password, for a broker that asks (the embedded one does).
    pub credentials: Option<(String, String)>,
    pub topic_root: String,
    /// Zone prefixes to subscribe to; empty: the whole tree.
    pub zones: Vec<String>,
    /// The keep-alive: the client pings this often; a broker that sends nothing for one and a
    /// half of it (not even a ping's answer) is taken as lost.
    pub keep_alive: Duration,
}

impl MqttLink {
    fn filters(&self) -> Vec<String> {
        if self.zones.is_empty() {
            vec![format!("{}/#", self.topic_root)]
        } else {
            self.zones.iter().map(|z| format!("{}/{z}/#", self.topic_root)).collect()
        }
    }
}

/// Parses `mqtt://host:port`.
pub fn parse_url(url: &str) -> Option<(String, u16)> {
    let rest = url.strip_prefix("mqtt://").or_else(|| url.strip_prefix("tcp://"))?;
    let (host, port) = rest.trim_end_matches('/').rsplit_once(':')?;
    Some((host.to_owned(), port.parse().ok()?))
}

/// Runs the client until the engine goes away.
pub async fn run(
    config: MqttLink,
    gate: crate::leadership::CommandGate,
    inputs: mpsc::Sender<Input>,
    mut outputs: mpsc::Receiver<Output>,
) {
    let mut backoff = Backoff::new();
    // What the engine was last told; nothing yet, so that a broker that is never reachable
    // still turns its sirens `unreachable`.
    let mut reported: Option<bool> = None;
    loop {
        let mut options = MqttOptions::new(config.client_id.clone(), config.host.clone(), config.port);
        options.set_keep_alive(config.keep_alive);
        if let Some((user, password)) = &config.credentials {
            options.set_credentials(user.clone(), password.clone());
        }
        options.set_clean_session(true);
        options.set_max_packet_size(MAX_INCOMING_PACKET, MAX_OUTGOING_PACKET);
        let (client, mut event_loop) = AsyncClient::new(options, 1024);
        // Without TCP_NODELAY a command written while the broker's acknowledgement of the last
        // one is outstanding waits for it (Nagle): 40-45 ms with the peer's delayed ACK, time a
        // TIME_SYNC_REQUEST's t1 then spends in the daemon (docs/protocol.md §5.3).
        event_loop.set_network_options(no_delay());
        // `EventLoop::poll` must not be cancelled part-way: one task owns it.
        let (events_tx, mut events) = mpsc::channel(1024);
        let pump = tokio::spawn(pump(event_loop, events_tx));
        // A broker that hangs with its TCP connection open sends nothing, not even the answer
        // to the client's ping every keep-alive: silence for one and a half of it is a loss.
        let silence = config.keep_alive + config.keep_alive / 2;
        let mut heard = tokio::time::Instant::now();
        let failure = loop {
            tokio::select! {
                () = tokio::time::sleep_until(heard + silence) => {
                    break format!("the broker sent nothing for {} s", silence.as_secs_f32());
                }
                event = events.recv() => match event.inspect(|e| {
                    if matches!(e, Ok(Event::Incoming(_))) {
                        heard = tokio::time::Instant::now();
                    }
                }) {
                    Some(Ok(Event::Incoming(Packet::ConnAck(_)))) => {
                        for filter in config.filters() {
                            let _ = client.try_subscribe(filter, QoS::AtLeastOnce);
                        }
                    }
                    Some(Ok(Event::Incoming(Packet::SubAck(_)))) => {
                        if reported != Some(true) {
                            reported = Some(true);
                            backoff.reset();
                            tracing::info!(host = %config.host, port = config.port, "MQTT connected");
                            if inputs.send(Input::LinkUp(config.link)).await.is_err() {
                                pump.abort();
                                return;
                            }
                        }
                    }
                    Some(Ok(Event::Incoming(Packet::Publish(p)))) => {
                        if p.payload.len() > siren_proto::frame::MAX_FRAME {
                            // Not a frame: junk or an attack. Counted, never copied on.
                            let input = Input::Rejected(siren_proto::RejectReason::Oversize);
                            if inputs.send(input).await.is_err() {
                                pump.abort();
                                return;
                            }
                            continue;
                        }
                        let mut levels = p.topic.rsplit('/');
                        let (Some(channel), Some(siren)) = (levels.next(), levels.next()) else { continue };
                        let input = Input::Mqtt {
                            siren: siren.to_owned(),
                            channel: channel.to_owned(),
                            payload: p.payload.to_vec(),
                            at: jiff::Timestamp::now(),
                        };
                        if inputs.send(input).await.is_err() {
                            pump.abort();
                            return;
                        }
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => break e.to_string(),
                    None => break "event loop ended".to_owned(),
                },
                out = outputs.recv() => match out {
                    // Never a command while the gate is shut: another daemon may lead.
                    Some(Output::Mqtt { .. }) if !gate.is_open() => {}
                    Some(Output::Mqtt { topic, payload }) => {
                        // A full client queue drops the command; the engine's request retries.
                        let _ = client.try_publish(topic, QoS::AtLeastOnce, false, payload);
                    }
                    Some(Output::Serial(_)) => {}
                    None => {
                        pump.abort();
                        return;
                    }
                },
            }
        };
        pump.abort();
        if reported == Some(false) {
            tracing::debug!(error = %failure, "MQTT connect failed");
        } else {
            reported = Some(false);
            tracing::warn!(host = %config.host, port = config.port, error = %failure, "MQTT connection lost or refused");
            if inputs.send(Input::LinkDown(config.link)).await.is_err() {
                return;
            }
        }
        tokio::time::sleep(backoff.delay()).await;
    }
}

async fn pump(mut event_loop: EventLoop, events: mpsc::Sender<Result<Event, ConnectionError>>) {
    loop {
        let event = event_loop.poll().await;
        let failed = event.is_err();
        if events.send(event).await.is_err() || failed {
            return;
        }
    }
}

/// Network options with Nagle's algorithm off.
fn no_delay() -> rumqttc::NetworkOptions {
    let mut network = rumqttc::NetworkOptions::new();
    network.set_tcp_nodelay(true);
    network
}

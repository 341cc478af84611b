//! Simulated sirens on MQTT: each device is its own MQTT client (docs/protocol.md §9).
//!
//! On every connect a device registers a freshly sealed DEATH as its last will, subscribes to
//! its command topic and publishes BIRTH and a status report; it then sends heartbeats,
//! publishes status on change and a sounding report when a sounding ends, and answers commands
//! on its reply topic. Faults act as they would in the field: a hung controller stops talking
//! but leaves its TCP connection open (the broker notices by keep-alive), a lost link or a
//! reboot drops the connection without DISCONNECT (the broker publishes the will at once).

use std::sync::Arc;
use std::time::Duration;

use rumqttc::{AsyncClient, ConnectionError, Event, EventLoop, LastWill, MqttOptions, Packet, QoS};
use siren_proto::Message;
use siren_proto::message::FaultBits;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::clock::SimClock;
use crate::controller::Channel;
use crate::fleet::{Shared, lock};

/// Where and how the devices connect.
#[derive(Debug, Clone)]
pub struct MqttConfig {
    pub host: String,
    pub port: u16,
    pub topic_root: String,
    pub keep_alive: Duration,
    pub heartbeat: Duration,
    /// How often each device checks its hardware for changes to publish.
    pub check_every: Duration,
}

impl MqttConfig {
    /// Parses `mqtt://host:port` (or `host:port`).
    pub fn from_url(url: &str) -> anyhow::Result<Self> {
        let rest = url.strip_prefix("mqtt://").or_else(|| url.strip_prefix("tcp://")).unwrap_or(url);
        let (host, port) = rest.rsplit_once(':').ok_or_else(|| anyhow::anyhow!("broker URL `{url}` needs a port"))?;
        let port = port.trim_end_matches('/').parse().map_err(|_| anyhow::anyhow!("broker URL `{url}`: bad port"))?;
        Ok(Self {
            host: host.to_owned(),
            port,
            topic_root: "sirennet/v1".into(),
            keep_alive: Duration::from_secs(30),
            heartbeat: Duration::from_secs(30),
            check_every: Duration::from_secs(1),
        })
    }

    /// The topic of a device's channel.
    pub fn topic(&self, zone: &str, siren: &str, channel: &str) -> String {
        format!("{}/{zone}/{siren}/{channel}", self.topic_root)
    }
}

/// The running MQTT devices; dropping it disconnects them all.
#[derive(Debug)]
pub struct MqttDevices {
    tasks: JoinSet<()>,
}

impl MqttDevices {
    /// Starts one client per device on the current tokio runtime.
    pub fn start(config: &MqttConfig, devices: Vec<(String, Shared)>, clock: SimClock) -> Self {
        let config = Arc::new(config.clone());
        let mut tasks = JoinSet::new();
        for (zone, device) in devices {
            tasks.spawn(run_device(Arc::clone(&config), zone, device, clock));
        }
        Self { tasks }
    }

    /// How many device tasks are running.
    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// Stops every device.
    pub async fn shutdown(mut self) {
        self.tasks.shutdown().await;
    }
}

fn qos(channel: Channel) -> QoS {
    match channel {
        Channel::Heartbeat => QoS::AtMostOnce,
        _ => QoS::AtLeastOnce,
    }
}

/// What, when changed, makes a device publish its status.
fn status_key(device: &crate::device::Device) -> (u32, u8, Option<u32>, Option<u32>) {
    let f: FaultBits = device.faults();
    (f.0, u8::from(device.is_up()), device.armed_campaign(), device.sounding_campaign())
}

#[allow(clippy::too_many_lines, reason = "one connection's select loop reads best whole")]
async fn run_device(config: Arc<MqttConfig>, zone: String, device: Shared, clock: SimClock) {
    let (id, cmd_topic) = {
        let c = lock(&device);
        (c.id().to_owned(), config.topic(&zone, c.id(), "cmd"))
    };
    let heartbeat_s = u16::try_from(config.heartbeat.as_secs()).unwrap_or(u16::MAX).max(1);
    let mut backoff = Duration::from_millis(200);
    loop {
        // Wait until the controller is up and has a link.
        loop {
            let ready = {
                let mut c = lock(&device);
                c.device.advance(clock.now());
                c.on_air()
            };
            if ready {
                break;
            }
            tokio::time::sleep(config.check_every).await;
        }
        let Some((will, birth)) = lock(&device).will_and_birth(heartbeat_s) else {
            tracing::warn!(siren = %id, "counter space exhausted; the device is mute");
            return;
        };
        let mut options = MqttOptions::new(id.clone(), config.host.clone(), config.port);
        options.set_keep_alive(config.keep_alive);
        options.set_clean_session(true);
        options.set_max_packet_size(4096, 4096);
        // Brokers that authenticate devices by their keys (docs/protocol.md §9) take this;
        // the others ignore it.
        let password = lock(&device).identity.key.mqtt_password();
        options.set_credentials(id.clone(), password);
        options.set_last_will(LastWill::new(config.topic(&zone, &id, "death"), will, QoS::AtLeastOnce, false));
        let (client, mut event_loop) = AsyncClient::new(options, 16);
        // Replies leave at once (no Nagle): their t3 is stamped just before they are sent.
        let mut network = rumqttc::NetworkOptions::new();
        network.set_tcp_nodelay(true);
        event_loop.set_network_options(network);
        // `EventLoop::poll` must never be cancelled part-way (a connect dropped half-done makes
        // the broker publish the will), so one task owns it and hands events over a channel.
        let (events_tx, mut events) = mpsc::channel(16);
        let pump = tokio::spawn(pump(event_loop, events_tx, Arc::clone(&device), config.check_every));
        let boot_seq = lock(&device).device.boot_seq();
        // Real devices are not phase-locked: each beats at its own offset within the period.
        let phase = config.heartbeat.mul_f64(
            f64::from(id.bytes().fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b))) % 1000) / 1000.0,
        );
        let mut heartbeat = tokio::time::interval_at(
            tokio::time::Instant::now() + phase.max(Duration::from_millis(1)),
            config.heartbeat,
        );
        let mut check = tokio::time::interval(config.check_every);
        let mut last_status = None;
        let mut reports_seen = lock(&device).device.soundings().len();
        let mut connected = false;
        loop {
            tokio::select! {
                event = events.recv() => match event {
                    Some(Ok(Event::Incoming(Packet::ConnAck(_)))) => {
                        backoff = Duration::from_millis(200);
                        let _ = client.try_subscribe(cmd_topic.clone(), QoS::AtLeastOnce);
                    }
                    // BIRTH only once the command topic is subscribed (docs/protocol.md §9):
                    // the master's first command follows the birth at once.
                    Some(Ok(Event::Incoming(Packet::SubAck(_)))) if !connected => {
                        connected = true;
                        let _ = client.try_publish(config.topic(&zone, &id, "birth"), QoS::AtLeastOnce, false, birth.clone());
                        let mut c = lock(&device);
                        let status = Message::StatusReport(c.device.status(100));
                        c.publish(Channel::Status, &status);
                        last_status = Some(status_key(&c.device));
                        drop(c);
                        flush(&config, &zone, &id, &device, &client);
                    }
                    Some(Ok(Event::Incoming(Packet::Publish(p)))) if p.topic == cmd_topic => {
                        lock(&device).handle_mqtt(clock.now(), &p.payload);
                        flush(&config, &zone, &id, &device, &client);
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        tracing::debug!(siren = %id, error = %e, "MQTT connection ended");
                        break;
                    }
                    None => break,
                },
                _ = heartbeat.tick(), if connected => {
                    let mut c = lock(&device);
                    let hb = Message::Heartbeat(c.device.heartbeat());
                    c.publish(Channel::Heartbeat, &hb);
                    drop(c);
                    flush(&config, &zone, &id, &device, &client);
                }
                _ = check.tick() => {
                    let (hung, gone) = {
                        let mut c = lock(&device);
                        c.device.advance(clock.now());
                        (c.link.hung, c.link.link_lost || !c.device.is_up() || c.device.boot_seq() != boot_seq)
                    };
                    if gone {
                        // Cable cut, reboot or power loss: the TCP connection dies without a
                        // DISCONNECT, so the broker publishes the will.
                        break;
                    }
                    if hung {
                        // Hung firmware: the pump stops polling, so not even keep-alive pings
                        // go out, but the socket stays open until the broker gives up on it.
                        while lock(&device).link.hung {
                            tokio::time::sleep(config.check_every).await;
                        }
                        break;
                    }
                    if connected {
                        let mut c = lock(&device);
                        let key = status_key(&c.device);
                        if last_status != Some(key) {
                            last_status = Some(key);
                            let status = Message::StatusReport(c.device.status(100));
                            c.publish(Channel::Status, &status);
                        }
                        let done = c.device.soundings().len();
                        if done > reports_seen {
                            reports_seen = done;
                            if let Some(report) = c.device.last_report().cloned() {
                                c.publish(Channel::Report, &Message::SoundingReport(report));
                            }
                        }
                        drop(c);
                        flush(&config, &zone, &id, &device, &client);
                    }
                }
            }
        }
        // Dropping the event loop closes the socket without DISCONNECT.
        pump.abort();
        let _ = pump.await;
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}

/// Owns a connection's event loop: polls it and forwards every event, and stops polling while
/// the controller is hung.
async fn pump(
    mut event_loop: EventLoop,
    events: mpsc::Sender<Result<Event, ConnectionError>>,
    device: Shared,
    check_every: Duration,
) {
    loop {
        while lock(&device).link.hung {
            tokio::time::sleep(check_every).await;
        }
        let event = event_loop.poll().await;
        let failed = event.is_err();
        if events.send(event).await.is_err() || failed {
            return;
        }
    }
}

/// Publishes everything the controller has queued.
fn flush(config: &MqttConfig, zone: &str, id: &str, device: &Shared, client: &AsyncClient) {
    let mut c = lock(device);
    while let Some((channel, frame)) = c.poll_mqtt() {
        // A full request queue drops the frame, as a congested modem would; QoS 0 heartbeats
        // are allowed to vanish, the rest is retried by the master.
        let _ = client.try_publish(config.topic(zone, id, channel.as_str()), qos(channel), false, frame);
    }
}

//! Simulated sirens on a real MQTT broker (the embedded one, and Mosquitto where installed):
//! birth on connect, heartbeats, the last-will death when the link drops or the controller
//! hangs, commands answered on the reply topic. A watcher plays the daemon with the protocol's
//! master session, so every frame is checked as the daemon will check it.
#![allow(clippy::unwrap_used, reason = "test helpers may panic on impossible states")]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS};
use siren_proto::fleet::{Fleet, KeyEntry, KeyFile};
use siren_proto::frame::KeyId;
use siren_proto::master::{Master, MasterConfig, MasterEvent, PeerConfig, Priority};
use siren_proto::message::DeathCause;
use siren_proto::replay::{ReplayWindow, TxCounter};
use siren_proto::{Key, Message};
use siren_sim::clock::SimClock;
use siren_sim::fault::Fault;
use siren_sim::fleet::{BuildOptions, SimFleet};
use siren_sim::mqtt::MqttConfig;
use sirennet_e2e::broker::TestBroker;

const FLEET: &str = "\
id,name,latitude,longitude,zone,rating_db,address,key_id,links
HZ-C-0001,a,30.1,120.1,hangzhou/c/t1,118,1,1,mqtt
HZ-C-0002,b,30.1,120.2,hangzhou/c/t2,118,1,2,mqtt
";

fn key(n: u16) -> Key {
    Key::new([u8::try_from(n).unwrap(); 32])
}

fn sim() -> Arc<SimFleet> {
    let fleet = Fleet::parse("test", FLEET).unwrap();
    let keys = KeyFile {
        entries: (1..=2)
            .map(|n| KeyEntry { key_id: KeyId(n), holder: format!("siren:HZ-C-000{n}").parse().unwrap(), key: key(n) })
            .collect(),
    };
    let options = BuildOptions { reboot_time_us: 500_000, ..BuildOptions::default() };
    Arc::new(SimFleet::build(fleet, &keys, SimClock::real_time(), &options).unwrap())
}

/// The daemon's part: subscribes to everything and checks every frame.
struct Watcher {
    client: AsyncClient,
    /// Publications, from a task that owns the event loop: `EventLoop::poll` must not be
    /// cancelled part-way, a channel receive may be.
    publications: tokio::sync::mpsc::UnboundedReceiver<rumqttc::Publish>,
    master: Master,
    key_ids: HashMap<String, KeyId>,
    /// Accepted events nobody has asked for yet, with the channel they came on.
    backlog: Vec<(String, MasterEvent)>,
    /// Every (siren, channel) received, in order.
    log: Vec<(String, String)>,
}

impl Watcher {
    async fn connect(broker: &TestBroker) -> Self {
        let mut options = MqttOptions::new(
            format!("watcher-{}", broker.addr.port()),
            broker.addr.ip().to_string(),
            broker.addr.port(),
        );
        options.set_keep_alive(Duration::from_secs(30));
        let (client, mut events) = AsyncClient::new(options, 64);
        client.subscribe("sirennet/v1/#", QoS::AtLeastOnce).await.unwrap();
        // Wait for the subscription to be in place before any device starts.
        loop {
            if let Event::Incoming(Packet::SubAck(_)) = events.poll().await.unwrap() {
                break;
            }
        }
        let (tx, publications) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(pump(events, tx));
        let mut master = Master::new(MasterConfig::mqtt());
        for n in 1..=2 {
            master.add_peer(PeerConfig {
                key_id: KeyId(n),
                key: key(n),
                address: siren_proto::frame::Address(1),
                tx: TxCounter::new(1, 1024),
                rx: ReplayWindow::default(),
                birth: None,
                links: vec![],
            });
        }
        let key_ids = HashMap::from([("HZ-C-0001".to_owned(), KeyId(1)), ("HZ-C-0002".to_owned(), KeyId(2))]);
        Self { client, publications, master, key_ids, backlog: Vec::new(), log: Vec::new() }
    }

    /// Waits for a master event that `want` accepts, returning it with the topic channel it
    /// came on. Every frame on the way must be accepted, never rejected.
    async fn expect(&mut self, what: &str, mut want: impl FnMut(&str, &MasterEvent) -> bool) -> MasterEvent {
        if let Some(i) = self.backlog.iter().position(|(ch, e)| want(ch, e)) {
            return self.backlog.remove(i).1;
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            assert!(Instant::now() < deadline, "gave up waiting for {what}");
            while let Some(tx) = self.master.poll_transmit(Instant::now()) {
                let id = self.key_ids.iter().find(|(_, k)| **k == tx.key_id).unwrap().0;
                let zone = if id.ends_with('1') { "t1" } else { "t2" };
                self.client
                    .publish(format!("sirennet/v1/hangzhou/c/{zone}/{id}/cmd"), QoS::AtLeastOnce, false, tx.bytes)
                    .await
                    .unwrap();
            }
            let received = tokio::time::timeout(Duration::from_millis(500), self.publications.recv()).await;
            let Ok(received) = received else { continue };
            if let Some(p) = received {
                let levels: Vec<&str> = p.topic.split('/').collect();
                let (channel, siren) = (levels[levels.len() - 1], levels[levels.len() - 2]);
                if channel == "cmd" {
                    continue; // our own commands
                }
                assert!(self.key_ids.contains_key(siren), "topic {} names an unknown siren", p.topic);
                self.log.push((siren.to_owned(), channel.to_owned()));
                self.master.handle_input(Instant::now(), &p.payload);
                while let Some(e) = self.master.poll_event() {
                    assert!(!matches!(e, MasterEvent::Rejected { .. }), "{} on {}: {e:?}", siren, p.topic);
                    if want(channel, &e) {
                        return e;
                    }
                    self.backlog.push((channel.to_owned(), e));
                }
            }
        }
    }
}

/// Owns the watcher's event loop and forwards every publication.
async fn pump(mut events: EventLoop, tx: tokio::sync::mpsc::UnboundedSender<rumqttc::Publish>) {
    loop {
        match events.poll().await {
            Ok(Event::Incoming(Packet::Publish(p))) => {
                if tx.send(p).is_err() {
                    return;
                }
            }
            Ok(_) => {}
            Err(e) => panic!("the watcher lost its broker connection: {e}"),
        }
    }
}

fn from(e: &MasterEvent, key: u16) -> Option<&Message> {
    match e {
        MasterEvent::Unsolicited { key_id, message } if *key_id == KeyId(key) => Some(message),
        _ => None,
    }
}

async fn birth_heartbeat_death_and_commands(broker: &TestBroker) {
    let sim = sim();
    let mut watcher = Watcher::connect(broker).await;
    let mut config = MqttConfig::from_url(&broker.url()).unwrap();
    config.heartbeat = Duration::from_secs(1);
    config.keep_alive = Duration::from_secs(2);
    config.check_every = Duration::from_millis(100);
    let devices = sim.serve_mqtt(&config);
    assert_eq!(devices.len(), 2);

    for n in 1..=2 {
        watcher.expect("a birth", |ch, e| ch == "birth" && matches!(from(e, n), Some(Message::Birth(_)))).await;
    }
    for siren in ["HZ-C-0001", "HZ-C-0002"] {
        let first = watcher.log.iter().find(|(s, _)| s == siren).map(|(_, ch)| ch.as_str());
        assert_eq!(first, Some("birth"), "{siren} must announce itself before anything else");
    }
    watcher.expect("a heartbeat", |ch, e| ch == "hb" && matches!(from(e, 1), Some(Message::Heartbeat(_)))).await;

    // A command answered on the reply topic.
    let id = watcher.master.request(KeyId(2), Message::StatusRequest, Priority::Poll).unwrap();
    let reply = watcher.expect("a status reply", |ch, e| ch == "reply" && matches!(e, MasterEvent::Reply { .. })).await;
    assert!(matches!(reply, MasterEvent::Reply { request, message: Message::StatusReport(_), .. } if request == id));

    // A fault changes the published status.
    sim.inject("HZ-C-0002", &Fault::DoorOpen).unwrap();
    watcher
        .expect("a status with the door open", |ch, e| {
            ch == "status" && matches!(from(e, 2), Some(Message::StatusReport(s)) if s.door_open)
        })
        .await;

    // The link drops: the broker publishes the will, which the master accepts by the
    // last-will rule, then the device comes back with a new birth.
    sim.inject("HZ-C-0001", &Fault::LinkLoss).unwrap();
    let death = watcher.expect("a death", |ch, e| ch == "death" && matches!(from(e, 1), Some(Message::Death(_)))).await;
    assert!(matches!(from(&death, 1), Some(Message::Death(d)) if d.cause == DeathCause::ConnectionLost));
    sim.inject("HZ-C-0001", &Fault::LinkRestore).unwrap();
    let restored =
        watcher.expect("a new birth", |ch, e| ch == "birth" && matches!(from(e, 1), Some(Message::Birth(_)))).await;
    let Some(Message::Birth(before)) = from(&restored, 1).cloned() else { unreachable!() };

    // A reboot: the connection dies with the controller, and it comes back with the next boot
    // sequence number.
    sim.inject("HZ-C-0001", &Fault::Reboot).unwrap();
    watcher.expect("a death on reboot", |ch, e| ch == "death" && matches!(from(e, 1), Some(Message::Death(_)))).await;
    let reborn = watcher
        .expect("a birth after reboot", |ch, e| ch == "birth" && matches!(from(e, 1), Some(Message::Birth(_))))
        .await;
    assert!(matches!(from(&reborn, 1), Some(Message::Birth(b)) if b.boot_seq == before.boot_seq + 1), "{reborn:?}");

    // The controller hangs: no DISCONNECT, the broker notices by keep-alive.
    sim.inject("HZ-C-0002", &Fault::SilentDeath).unwrap();
    watcher
        .expect("a death by keep-alive", |ch, e| ch == "death" && matches!(from(e, 2), Some(Message::Death(_))))
        .await;
    devices.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sirens_on_the_embedded_broker() {
    let broker = TestBroker::embedded().unwrap();
    birth_heartbeat_death_and_commands(&broker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sirens_on_mosquitto() {
    let Some(broker) = TestBroker::mosquitto().unwrap() else {
        eprintln!("mosquitto is not installed here: skipped (CI installs it and requires it)");
        return;
    };
    birth_heartbeat_death_and_commands(&broker).await;
}

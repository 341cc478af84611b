//! The embedded broker delivers a publication at the lower of its own QoS and the
//! subscription's, as MQTT 3.1.1 §3.8.4 says and Mosquitto does: a QoS 0 heartbeat is not
//! turned into a QoS 1 delivery that the subscriber must acknowledge.
#![allow(clippy::unwrap_used, reason = "test helpers may panic on impossible states")]

use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use sirennet_e2e::broker::TestBroker;

/// The QoS at which each publication arrives at a QoS 1 subscriber, for publications sent at
/// QoS 0 and QoS 1.
async fn delivered(broker: &TestBroker) -> Vec<(Vec<u8>, QoS)> {
    let addr = broker.url().trim_start_matches("mqtt://").to_owned();
    let (host, port) = addr.rsplit_once(':').unwrap();
    let client = |id: &str| {
        let mut o = MqttOptions::new(id, host, port.parse().unwrap());
        o.set_keep_alive(Duration::from_secs(10));
        AsyncClient::new(o, 16)
    };
    let (sub, mut sub_loop) = client("sub");
    sub.subscribe("t/#", QoS::AtLeastOnce).await.unwrap();
    loop {
        if let Event::Incoming(Packet::SubAck(_)) = sub_loop.poll().await.unwrap() {
            break;
        }
    }
    let (publisher, mut pub_loop) = client("pub");
    publisher.publish("t/hb", QoS::AtMostOnce, false, b"zero".to_vec()).await.unwrap();
    publisher.publish("t/status", QoS::AtLeastOnce, false, b"one".to_vec()).await.unwrap();
    tokio::spawn(async move { while pub_loop.poll().await.is_ok() {} });
    let mut got = Vec::new();
    while got.len() < 2 {
        let event = tokio::time::timeout(Duration::from_secs(30), sub_loop.poll()).await.unwrap().unwrap();
        if let Event::Incoming(Packet::Publish(p)) = event {
            got.push((p.payload.to_vec(), p.qos));
        }
    }
    got.sort_by(|a, b| a.0.cmp(&b.0));
    got
}

#[tokio::test]
async fn a_qos_0_publication_reaches_a_qos_1_subscriber_at_qos_0() {
    let expected = vec![(b"one".to_vec(), QoS::AtLeastOnce), (b"zero".to_vec(), QoS::AtMostOnce)];
    let embedded = TestBroker::embedded().unwrap();
    assert_eq!(delivered(&embedded).await, expected, "embedded broker");
    if let Some(mosquitto) = TestBroker::mosquitto().unwrap() {
        assert_eq!(delivered(&mosquitto).await, expected, "mosquitto");
    }
}

//! The serial and MQTT link tasks put no command on their link once the command gate's
//! deadline has passed (a leader that could not renew its lease), whatever the engine still
//! asks of them: the last line of defence against two daemons commanding at once.
//!
//! Each test sends three commands: one while the gate is open, one after its deadline, one
//! after it was opened again; the far end must receive the first and the third only. The
//! tests run on one thread, so the link task has taken the second command (and looked at the
//! gate) once the channel is empty again, before the gate is reopened.
#![allow(clippy::unwrap_used, reason = "test code")]

use std::time::{Duration, Instant};

use siren_proto::master::LinkId;
use sirend::config::SerialEndpoint;
use sirend::engine::{Input, Output};
use sirend::leadership::CommandGate;
use sirend::link::{broker, mqtt, serial};
use tokio::io::AsyncReadExt as _;
use tokio::sync::mpsc;

/// Hands `out` to the link task and waits until it has taken it.
async fn taken(outputs: &mpsc::Sender<Output>, out: Output) {
    outputs.send(out).await.unwrap();
    while outputs.capacity() < outputs.max_capacity() {
        tokio::task::yield_now().await;
    }
}

/// Waits for the link task to say its link is up.
async fn link_up(inputs: &mut mpsc::Receiver<Input>) {
    loop {
        match inputs.recv().await.unwrap() {
            Input::LinkUp(_) => return,
            Input::LinkDown(link) => panic!("{link:?} failed"),
            _ => {}
        }
    }
}

/// Closes the gate the way a lease that was not renewed does: its deadline has passed.
fn deadline_passed(gate: &CommandGate) {
    gate.open_until(Some(Instant::now()));
}

#[tokio::test(flavor = "current_thread")]
async fn a_serial_line_writes_no_frame_after_the_gates_deadline() {
    let server = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = SerialEndpoint::Tcp(server.local_addr().unwrap().to_string());
    let gate = CommandGate::closed();
    gate.open_until(Some(Instant::now() + Duration::from_secs(3600)));
    let (input_tx, mut inputs) = mpsc::channel(16);
    let (outputs, output_rx) = mpsc::channel(1);
    let task = tokio::spawn(serial::run(LinkId(1), endpoint, 9600, gate.clone(), input_tx, output_rx));
    let (mut line, _) = server.accept().await.unwrap();
    link_up(&mut inputs).await;

    let mut byte = [0u8; 1];
    taken(&outputs, Output::Serial(b"1".to_vec())).await;
    line.read_exact(&mut byte).await.unwrap();
    assert_eq!(&byte, b"1", "written while the gate is open");
    deadline_passed(&gate);
    taken(&outputs, Output::Serial(b"2".to_vec())).await;
    gate.open_until(Some(Instant::now() + Duration::from_secs(3600)));
    taken(&outputs, Output::Serial(b"3".to_vec())).await;
    line.read_exact(&mut byte).await.unwrap();
    assert_eq!(&byte, b"3", "the frame handed over after the deadline never reached the line");
    task.abort();
}

#[tokio::test(flavor = "current_thread")]
async fn an_mqtt_link_publishes_no_command_after_the_gates_deadline() {
    let addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    broker::start(addr, 16, None).unwrap();
    // Whatever the sirens' side of the broker receives.
    let mut options = rumqttc::MqttOptions::new("device-side", addr.ip().to_string(), addr.port());
    options.set_keep_alive(Duration::from_secs(5));
    let (device, mut device_loop) = rumqttc::AsyncClient::new(options, 16);
    device.subscribe("sirens/#", rumqttc::QoS::AtLeastOnce).await.unwrap();
    loop {
        if let rumqttc::Event::Incoming(rumqttc::Packet::SubAck(_)) = device_loop.poll().await.unwrap() {
            break;
        }
    }
    let (payloads, mut received) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(event) = device_loop.poll().await {
            if let rumqttc::Event::Incoming(rumqttc::Packet::Publish(p)) = event {
                let _ = payloads.send(String::from_utf8_lossy(&p.payload).into_owned());
            }
        }
    });

    let gate = CommandGate::closed();
    gate.open_until(Some(Instant::now() + Duration::from_secs(3600)));
    let link = mqtt::MqttLink {
        link: LinkId(1),
        host: addr.ip().to_string(),
        port: addr.port(),
        client_id: "sirend".into(),
        credentials: None,
        topic_root: "sirens".into(),
        zones: Vec::new(),
        keep_alive: Duration::from_secs(5),
    };
    let (input_tx, mut inputs) = mpsc::channel(16);
    let (outputs, output_rx) = mpsc::channel(1);
    let task = tokio::spawn(mqtt::run(link, gate.clone(), input_tx, output_rx));
    link_up(&mut inputs).await;

    let command = |n: &str| Output::Mqtt { topic: "sirens/z/S-1/cmd".into(), payload: n.as_bytes().to_vec() };
    taken(&outputs, command("1")).await;
    assert_eq!(received.recv().await.unwrap(), "1", "published while the gate is open");
    deadline_passed(&gate);
    taken(&outputs, command("2")).await;
    gate.open_until(Some(Instant::now() + Duration::from_secs(3600)));
    taken(&outputs, command("3")).await;
    assert_eq!(received.recv().await.unwrap(), "3", "the command handed over after the deadline was never published");
    task.abort();
}

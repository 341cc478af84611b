//! A simulated siren controller: the protocol's outstation session on top of the device model,
//! with non-volatile memory for counters, link-level faults, and a record of everything it
//! received and refused (ground truth for tests).

use std::collections::VecDeque;

use siren_proto::frame::{Address, Framing, KeyId};
use siren_proto::message::{Birth, ChannelState, Death, DeathCause, NakCode};
use siren_proto::outstation::{GroupConfig, Outstation, OutstationConfig, OutstationEvent, RequestToken};
use siren_proto::replay::{DEFAULT_LEASE, ReplayWindow, TxCounter};
use siren_proto::{Key, Message, RejectReason};

use crate::device::{Device, TrueMicros};
use crate::fault::Fault;

/// Identity and keys of a controller.
#[derive(Debug, Clone)]
pub struct Identity {
    pub siren_id: String,
    pub address: Address,
    pub key_id: KeyId,
    pub key: Key,
    /// The bus group key (serial only).
    pub group: Option<(KeyId, Key)>,
}

/// Which MQTT topic channel a frame goes out on (docs/protocol.md §9).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channel {
    Birth,
    Heartbeat,
    Status,
    Report,
    Reply,
}

impl Channel {
    /// The topic's last level.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Birth => "birth",
            Channel::Heartbeat => "hb",
            Channel::Status => "status",
            Channel::Report => "report",
            Channel::Reply => "reply",
        }
    }
}

/// Bytes of a `TIME_SET` serial envelope: SYNC, header, the 8-byte time, MAC, CRC.
#[allow(clippy::cast_possible_wrap, reason = "a few dozen bytes")]
const TIME_SET_ENVELOPE: i64 =
    (siren_proto::frame::HEADER_LEN + 8 + siren_proto::mac::MAC_LEN + siren_proto::frame::ENVELOPE_OVERHEAD) as i64;

/// Which of the device's links bytes came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    Serial,
    Mqtt,
}

/// What the controller keeps in flash across reboots (docs/protocol.md §4.2, §4.3).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NonVolatile {
    pub tx_lease_end: u32,
    pub rx_highest: u32,
    pub group_rx_highest: u32,
}

/// One authentic request the controller received (ground truth).
#[derive(Debug, Clone, PartialEq)]
pub struct Received {
    pub at: TrueMicros,
    pub counter: u32,
    pub broadcast: bool,
    pub message: Message,
}

/// Faults that act on the link rather than the hardware.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LinkFaults {
    pub hung: bool,
    pub link_lost: bool,
    pub slow_us: i64,
    pub wrong_key: bool,
    pub noise_rate: f64,
}

/// Frames the controller recently sent, for the replay attacker.
const CAPTURED: usize = 8;
/// Ground-truth log entries kept per controller: tests look at a few, and a simulator that
/// runs for weeks must not grow without bound.
pub const LOG_LIMIT: usize = 10_000;

/// Appends to a log that keeps only the most recent [`LOG_LIMIT`] entries.
fn push_bounded<T>(log: &mut Vec<T>, item: T) {
    if log.len() >= LOG_LIMIT {
        // Drop the older half at once, so trimming costs O(1) per entry on average.
        log.drain(..LOG_LIMIT / 2);
    }
    log.push(item);
}

/// A simulated controller.
#[derive(Debug)]
pub struct Controller {
    pub identity: Identity,
    pub device: Device,
    pub link: LinkFaults,
    /// Device turnaround before an answer starts, µs.
    pub turnaround_us: i64,
    /// One byte's time on its serial line, µs (10 bits at the line's baud rate): a broadcast
    /// `TIME_SET` is stamped when its SYNC started, so its own wire time is added
    /// (docs/protocol.md §5.3).
    pub serial_byte_us: i64,
    outstation: Outstation,
    nv: NonVolatile,
    received: Vec<Received>,
    rejected: Vec<RejectReason>,
    captured: VecDeque<Vec<u8>>,
    serial_out: VecDeque<Vec<u8>>,
    mqtt_out: VecDeque<(Channel, Vec<u8>)>,
}

impl Controller {
    pub fn new(identity: Identity, device: Device) -> Self {
        let nv = NonVolatile::default();
        let outstation = boot_outstation(&identity, &nv, false);
        let mut c = Self {
            identity,
            device,
            link: LinkFaults::default(),
            turnaround_us: 5_000,
            serial_byte_us: 10_000_000 / 9_600,
            outstation,
            nv,
            received: Vec::new(),
            rejected: Vec::new(),
            captured: VecDeque::new(),
            serial_out: VecDeque::new(),
            mqtt_out: VecDeque::new(),
        };
        c.reserve_lease();
        c
    }

    /// Reserves a counter lease as firmware does at boot: persist first, then use.
    fn reserve_lease(&mut self) {
        let end = self.outstation.tx().next().max(self.nv.tx_lease_end).saturating_add(DEFAULT_LEASE);
        self.nv.tx_lease_end = end;
        self.outstation.grant_lease(end);
    }

    pub fn id(&self) -> &str {
        &self.identity.siren_id
    }

    /// Boots with `nv` in flash (a simulator started again with the state it saved): counters
    /// resume past the saved lease and the receive window refuses what was seen before.
    pub fn restore(&mut self, nv: NonVolatile) {
        self.nv = nv;
        self.after_reboot();
    }

    pub fn non_volatile(&self) -> NonVolatile {
        self.nv
    }

    /// Whether the controller answers at all right now.
    pub fn on_air(&self) -> bool {
        self.device.is_up() && !self.link.hung && !self.link.link_lost
    }

    /// Delay between a request's end on the line and the start of the answer, µs.
    pub fn reply_delay_us(&self) -> i64 {
        self.turnaround_us + self.link.slow_us
    }

    /// The authentic requests it received, in order (the most recent [`LOG_LIMIT`] at most).
    pub fn received(&self) -> &[Received] {
        &self.received
    }

    /// The frames addressed to it that it refused, in order (the most recent [`LOG_LIMIT`] at
    /// most).
    pub fn rejected(&self) -> &[RejectReason] {
        &self.rejected
    }

    /// Feeds bytes from the serial line at true time `now` (when they finished arriving).
    /// Answers are queued for [`Controller::poll_serial`].
    pub fn handle_serial(&mut self, now: TrueMicros, bytes: &[u8]) {
        self.device.advance(now);
        if self.on_air() {
            self.outstation.handle_stream(bytes);
            self.process(now, Via::Serial);
        }
    }

    /// The serial line went idle.
    pub fn serial_idle(&mut self, now: TrueMicros) {
        if self.on_air() {
            self.outstation.handle_line_idle();
            self.process(now, Via::Serial);
        }
    }

    /// Feeds one MQTT payload from the device's command topic. Answers are queued for
    /// [`Controller::poll_mqtt`] on the reply channel.
    pub fn handle_mqtt(&mut self, now: TrueMicros, payload: &[u8]) {
        self.device.advance(now);
        if self.on_air() {
            self.outstation.handle_frame(payload);
            self.process(now, Via::Mqtt);
        }
    }

    fn process(&mut self, now: TrueMicros, via: Via) {
        while let Some(event) = self.outstation.poll_event() {
            match event {
                OutstationEvent::Request { token, message } => {
                    if token.message_type.is_command() {
                        // Persist the receive counter before acting (docs/protocol.md §4.3).
                        self.nv.rx_highest = self.outstation.rx_highest();
                        if let Some((_, h)) = self.outstation.group_rx_highest().next() {
                            self.nv.group_rx_highest = h;
                        }
                    }
                    let entry = Received {
                        at: now,
                        counter: token.counter,
                        broadcast: token.broadcast,
                        message: message.clone(),
                    };
                    push_bounded(&mut self.received, entry);
                    self.execute(now, via, token, &message);
                }
                OutstationEvent::Rejected(reason) => {
                    // What points at an attacker or a mismatched master is worth a warning;
                    // line noise (CRC, truncation) only at debug level, a noisy line makes plenty.
                    if matches!(reason, RejectReason::BadMac | RejectReason::Replayed) {
                        tracing::warn!(siren = %self.identity.siren_id, reason = reason.as_str(), "frame rejected");
                    } else {
                        tracing::debug!(siren = %self.identity.siren_id, reason = reason.as_str(), "frame rejected");
                    }
                    push_bounded(&mut self.rejected, reason);
                }
                OutstationEvent::LeaseWanted { up_to } => {
                    self.nv.tx_lease_end = up_to;
                    self.outstation.grant_lease(up_to);
                }
                OutstationEvent::HeartbeatDue => {}
            }
        }
        while let Some(frame) = self.outstation.poll_transmit() {
            self.capture(&frame);
            match via {
                Via::Serial => self.serial_out.push_back(frame),
                Via::Mqtt => self.mqtt_out.push_back((Channel::Reply, frame)),
            }
        }
    }

    fn capture(&mut self, frame: &[u8]) {
        if self.captured.len() >= CAPTURED {
            self.captured.pop_front();
        }
        self.captured.push_back(frame.to_vec());
    }

    fn execute(&mut self, now: TrueMicros, via: Via, token: RequestToken, message: &Message) {
        let d = &mut self.device;
        let outcome: Result<Option<Message>, NakCode> = match message {
            Message::StatusRequest => Ok(Some(Message::StatusReport(d.status(link_quality(self.link.noise_rate))))),
            Message::TimeSyncRequest { t1_us } => {
                let t2_us = d.clock.read(now);
                // t3 is stamped when the reply leaves (docs/protocol.md §5.3): after the
                // turnaround on a serial line, at once over MQTT.
                let leaves = match via {
                    Via::Serial => now + self.turnaround_us + self.link.slow_us,
                    Via::Mqtt => now,
                };
                let t3_us = d.clock.read(leaves);
                Ok(Some(Message::TimeSyncReply { t1_us: *t1_us, t2_us, t3_us }))
            }
            Message::ClockAdjust { sync_t1_us, offset_us } => {
                d.clock.adjust(now, *sync_t1_us, *offset_us);
                Ok(None)
            }
            Message::TimeSet { master_time_us } => {
                // `now` is the frame's end; `master_time` was its SYNC's start.
                let wire_us = match via {
                    Via::Serial => self.serial_byte_us * TIME_SET_ENVELOPE,
                    Via::Mqtt => 0,
                };
                d.clock.set(now, master_time_us.saturating_add(wire_us));
                Ok(None)
            }
            Message::ArmTest(a) => d.arm(a, false).map(|()| None),
            Message::ArmLive(a) => d.arm(a, true).map(|()| None),
            Message::TriggerTest(t) => d.trigger(t, false).map(|()| None),
            Message::TriggerLive(t) => d.trigger(t, true).map(|()| None),
            Message::Cancel { campaign } => d.cancel(*campaign).map(|()| None),
            Message::Stop { campaign } => {
                d.stop(*campaign);
                Ok(None)
            }
            Message::ReportRequest { campaign } => {
                d.report(*campaign).map(|r| Some(Message::SoundingReport(r))).ok_or(NakCode::UnknownCampaign)
            }
            _ => Err(NakCode::Unsupported),
        };
        let sent = match outcome {
            Ok(Some(reply)) => self.outstation.respond(&token, &reply),
            Ok(None) => self.outstation.ack(&token),
            Err(code) => self.outstation.nak(&token, code),
        };
        if let Err(e) = sent {
            // Only an exhausted counter space gets here; the device then stays mute, as real
            // firmware must (docs/protocol.md §4.2).
            tracing::warn!(siren = %self.identity.siren_id, error = %e, "cannot answer");
        }
        self.process_lease();
    }

    fn process_lease(&mut self) {
        if let Some(up_to) = self.outstation.tx().lease_wanted() {
            self.nv.tx_lease_end = up_to;
            self.outstation.grant_lease(up_to);
        }
    }

    /// Publishes a message of the device's own accord on an MQTT channel.
    pub fn publish(&mut self, channel: Channel, message: &Message) {
        if !self.on_air() {
            return;
        }
        if self.outstation.send(message).is_ok() {
            self.process_lease();
        }
        while let Some(frame) = self.outstation.poll_transmit() {
            self.capture(&frame);
            self.mqtt_out.push_back((channel, frame));
        }
    }

    /// Seals the last will and the birth of a new MQTT session: consecutive counters, the will
    /// first (docs/protocol.md §4.4).
    pub fn will_and_birth(&mut self, heartbeat_period_s: u16) -> Option<(Vec<u8>, Vec<u8>)> {
        let boot_seq = self.device.boot_seq();
        let will = self.outstation.seal(&Message::Death(Death { boot_seq, cause: DeathCause::ConnectionLost })).ok()?;
        let spec = &self.device.spec;
        let bit = |on: bool, bit: u16| if on { bit } else { 0 };
        let capabilities = bit(spec.can_measure_sound, Birth::CAN_MEASURE_SOUND)
            | bit(spec.can_measure_current, Birth::CAN_MEASURE_CURRENT)
            | bit(spec.live_enabled, Birth::LIVE_ENABLED);
        let birth = Message::Birth(Birth { boot_seq, firmware: spec.firmware, capabilities, heartbeat_period_s });
        let birth = self.outstation.seal(&birth).ok()?;
        self.process_lease();
        Some((will, birth))
    }

    /// The next bytes for the serial line.
    pub fn poll_serial(&mut self) -> Option<Vec<u8>> {
        self.serial_out.pop_front()
    }

    /// The next MQTT publication.
    pub fn poll_mqtt(&mut self) -> Option<(Channel, Vec<u8>)> {
        self.mqtt_out.pop_front()
    }

    /// Frames the device sent recently: what an eavesdropper could have recorded.
    pub fn captured(&self) -> impl Iterator<Item = &[u8]> {
        self.captured.iter().map(Vec::as_slice)
    }

    /// Applies a fault at true time `now`.
    pub fn apply(&mut self, now: TrueMicros, fault: &Fault) {
        self.device.advance(now);
        let d = &mut self.device;
        match fault {
            Fault::MainsLoss => d.set_mains(false),
            Fault::MainsReturn => {
                // Mains back after a brown-out boots the controller.
                let boot_seq = d.boot_seq();
                d.set_mains(true);
                if self.device.boot_seq() != boot_seq {
                    self.after_reboot();
                }
            }
            Fault::BatteryAgeing { capacity_factor } => d.power.age(*capacity_factor),
            Fault::ChargerFault => d.power.charger_ok = false,
            Fault::ChargerRepaired => d.power.charger_ok = true,
            Fault::AmplifierFailure { channel: Some(c) } => {
                if let Some(ch) = d.channels.get_mut(usize::from(*c)) {
                    *ch = ChannelState::Fault;
                }
            }
            Fault::AmplifierFailure { channel: None } => d.channels.fill(ChannelState::Fault),
            Fault::AmplifierRepaired => d.channels.fill(ChannelState::Ok),
            Fault::SpeakerOpen => d.speaker_ok = false,
            Fault::SpeakerRepaired => d.speaker_ok = true,
            Fault::DoorOpen => d.door_open = true,
            Fault::DoorClosed => d.door_open = false,
            Fault::CoolingFailure => d.over_temperature = true,
            Fault::CoolingRepaired => d.over_temperature = false,
            Fault::ClockStep { ms } => d.clock.step(now, ms.saturating_mul(1_000)),
            Fault::ClockDrift { ppm } => d.clock.set_drift(now, *ppm),
            Fault::Reboot => {
                d.reboot();
                self.after_reboot();
            }
            Fault::SilentDeath => self.link.hung = true,
            Fault::Revive => self.link.hung = false,
            Fault::LinkLoss => self.link.link_lost = true,
            Fault::LinkRestore => self.link.link_lost = false,
            Fault::SlowAnswers { ms } => self.link.slow_us = i64::try_from(*ms).unwrap_or(i64::MAX / 1_000) * 1_000,
            Fault::WrongKey => {
                self.link.wrong_key = true;
                self.after_reboot();
            }
            Fault::RightKey => {
                self.link.wrong_key = false;
                self.after_reboot();
            }
            Fault::ReplayAttack => {
                // The attacker plays back what it recorded, on whichever link it came from:
                // serial envelopes start with SYNC, MQTT frames with the version byte.
                for frame in self.captured.clone() {
                    if frame.starts_with(&siren_proto::frame::SYNC) {
                        self.serial_out.push_back(frame);
                    } else {
                        self.mqtt_out.push_back((Channel::Status, frame));
                    }
                }
            }
            Fault::LineNoise { rate } => self.link.noise_rate = rate.clamp(0.0, 1.0),
            Fault::SelfTrigger { campaign } => {
                let campaign = if *campaign == 0 { 0xdead_0000 | (d.boot_seq() & 0xffff) } else { *campaign };
                let trigger =
                    siren_proto::message::Trigger { campaign, not_after_us: i64::MAX, segments: rogue_segments() };
                if let Err(code) = d.trigger(&trigger, false) {
                    tracing::debug!(?code, "self-trigger refused by the device's own state");
                }
            }
            Fault::RogueArm { campaign, in_s } => {
                let arm = siren_proto::message::Arm {
                    campaign: *campaign,
                    start_us: d.clock.read(now) + i64::from(*in_s) * 1_000_000,
                    segments: rogue_segments(),
                };
                if let Err(code) = d.arm(&arm, false) {
                    tracing::debug!(?code, "rogue arm refused by the device's own state");
                }
            }
            Fault::CounterAhead { by } => {
                self.nv.rx_highest = self.nv.rx_highest.max(self.outstation.rx_highest()).saturating_add(*by);
                self.after_reboot();
            }
        }
    }

    /// The firmware restarts: the session is rebuilt from non-volatile memory.
    fn after_reboot(&mut self) {
        self.outstation = boot_outstation(&self.identity, &self.nv, self.link.wrong_key);
        self.reserve_lease();
    }
}

fn boot_outstation(id: &Identity, nv: &NonVolatile, wrong_key: bool) -> Outstation {
    let key = if wrong_key { Key::new([0x5A; 32]) } else { id.key.clone() };
    Outstation::new(OutstationConfig {
        // Unsolicited frames are MQTT's; serial answers follow their requests.
        framing: Framing::Datagram,
        address: id.address,
        key_id: id.key_id,
        key,
        tx: TxCounter::resumed(nv.tx_lease_end.max(1)),
        rx: if nv.rx_highest == 0 { ReplayWindow::default() } else { ReplayWindow::restored(nv.rx_highest) },
        groups: id
            .group
            .iter()
            .map(|(key_id, key)| GroupConfig {
                key_id: *key_id,
                key: key.clone(),
                rx: if nv.group_rx_highest == 0 {
                    ReplayWindow::default()
                } else {
                    ReplayWindow::restored(nv.group_rx_highest)
                },
            })
            .collect(),
        heartbeat: None,
    })
}

/// Link quality the device reports: worse with line noise.
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, reason = "0..=100")]
fn link_quality(noise_rate: f64) -> u8 {
    (100.0 * (1.0 - noise_rate * 50.0).clamp(0.0, 1.0)).round() as u8
}

/// What a self-triggered or rogue sounding plays: the air-raid signal.
fn rogue_segments() -> Vec<siren_proto::message::Segment> {
    siren_proto::pattern::catalogue::by_name("air-raid")
        .map(|pattern| vec![siren_proto::message::Segment { offset_ms: 0, pattern }])
        .unwrap_or_default()
}

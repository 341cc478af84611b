//! The outstation session: a siren controller's side of a link (docs/protocol.md §8).
//!
//! It checks every frame addressed to the device (or broadcast to its group), keeps the
//! anti-replay windows and the transmit counter, and hands authentic requests to the
//! application, which decides what the device does and answers through [`Outstation::respond`].
//! On MQTT it also times heartbeats. It performs no I/O.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::decoder::SerialDecoder;
use crate::error::{EncodeError, RejectReason};
use crate::frame::{Address, FrameRef, Framing, KeyId, Seal};
use crate::mac::Key;
use crate::message::{Message, MessageType, NakCode};
use crate::replay::{ReplayWindow, TxCounter};

/// A broadcast group this device belongs to.
#[derive(Debug, Clone)]
pub struct GroupConfig {
    pub key_id: KeyId,
    pub key: Key,
    pub rx: ReplayWindow,
}

/// The device's identity and persisted counters.
#[derive(Debug, Clone)]
pub struct OutstationConfig {
    /// How [`Outstation::handle_input`] reads bytes and how unsolicited frames are sealed. A
    /// device with both a serial and an MQTT link uses one session for both (one counter space
    /// under its one key) and feeds each link through [`Outstation::handle_stream`] or
    /// [`Outstation::handle_frame`]; answers go back the way their request came.
    pub framing: Framing,
    pub address: Address,
    pub key_id: KeyId,
    pub key: Key,
    pub tx: TxCounter,
    pub rx: ReplayWindow,
    pub groups: Vec<GroupConfig>,
    /// Heartbeat period on MQTT; `None` on serial, where the device only answers.
    pub heartbeat: Option<Duration>,
}

/// An authentic request the application must act on and, unless broadcast, answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestToken {
    pub counter: u32,
    pub message_type: MessageType,
    pub broadcast: bool,
    /// How the request arrived, and so how the answer is sealed.
    pub framing: Framing,
}

/// Something that happened at the outstation.
#[derive(Debug, Clone, PartialEq)]
pub enum OutstationEvent {
    /// An authentic request. For commands, persist [`Outstation::rx_highest`] before acting
    /// (docs/protocol.md §4.3), then answer with [`Outstation::respond`] (ACK or NAK).
    Request { token: RequestToken, message: Message },
    /// A frame addressed to this device (or its group) was refused.
    Rejected(RejectReason),
    /// Time to publish a heartbeat.
    HeartbeatDue,
    /// The transmit lease runs low: persist `up_to`, then call [`Outstation::grant_lease`].
    LeaseWanted { up_to: u32 },
}

/// The outstation session.
#[derive(Debug)]
pub struct Outstation {
    config: OutstationConfig,
    decoder: SerialDecoder,
    events: VecDeque<OutstationEvent>,
    transmits: VecDeque<Vec<u8>>,
    next_heartbeat: Option<Instant>,
    lease_asked: bool,
}

impl Outstation {
    pub fn new(config: OutstationConfig) -> Self {
        Self {
            config,
            decoder: SerialDecoder::new(),
            events: VecDeque::new(),
            transmits: VecDeque::new(),
            next_heartbeat: None,
            lease_asked: false,
        }
    }

    pub fn address(&self) -> Address {
        self.config.address
    }

    pub fn key_id(&self) -> KeyId {
        self.config.key_id
    }

    /// The transmit counter, for persistence.
    pub fn tx(&self) -> TxCounter {
        self.config.tx
    }

    /// The highest accepted master counter under the device key, for persistence.
    pub fn rx_highest(&self) -> u32 {
        self.config.rx.highest()
    }

    /// The highest accepted counter under each group key, for persistence.
    pub fn group_rx_highest(&self) -> impl Iterator<Item = (KeyId, u32)> + '_ {
        self.config.groups.iter().map(|g| (g.key_id, g.rx.highest()))
    }

    /// Extends the transmit lease to `up_to`, which the caller has persisted.
    pub fn grant_lease(&mut self, up_to: u32) {
        self.config.tx.grant(up_to);
        self.lease_asked = false;
    }

    /// Starts heartbeat timing (on connect); the first is due one period from `now`.
    pub fn start_heartbeats(&mut self, now: Instant) {
        self.next_heartbeat = self.config.heartbeat.map(|p| now + p);
    }

    /// Stops heartbeat timing (on disconnect).
    pub fn stop_heartbeats(&mut self) {
        self.next_heartbeat = None;
    }

    /// When [`Outstation::handle_timeout`] must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next_heartbeat
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if let (Some(due), Some(period)) = (self.next_heartbeat, self.config.heartbeat) {
            if due <= now {
                self.events.push_back(OutstationEvent::HeartbeatDue);
                // Skip missed periods rather than bursting after a stall.
                let mut next = due + period;
                while next <= now {
                    next += period;
                }
                self.next_heartbeat = Some(next);
            }
        }
    }

    /// Feeds received bytes as the configured framing reads them: a chunk of the serial
    /// stream, or one whole MQTT payload.
    pub fn handle_input(&mut self, bytes: &[u8]) {
        match self.config.framing {
            Framing::Datagram => self.handle_frame(bytes),
            Framing::Serial => self.handle_stream(bytes),
        }
    }

    /// Feeds a chunk of a serial byte stream.
    pub fn handle_stream(&mut self, bytes: &[u8]) {
        let mut decoder = std::mem::take(&mut self.decoder);
        decoder.push(bytes);
        self.drain(&mut decoder);
        self.decoder = decoder;
    }

    /// Feeds one bare frame (an MQTT payload).
    pub fn handle_frame(&mut self, frame: &[u8]) {
        self.accept_into_events(frame, Framing::Datagram);
    }

    /// Tells the session the serial line went idle: a partial frame is reported as truncated.
    pub fn handle_line_idle(&mut self) {
        let mut decoder = std::mem::take(&mut self.decoder);
        decoder.line_idle();
        self.drain(&mut decoder);
        self.decoder = decoder;
    }

    fn drain(&mut self, decoder: &mut SerialDecoder) {
        while let Some(result) = decoder.next_frame() {
            match result {
                Ok(frame) => self.accept_into_events(frame, Framing::Serial),
                Err(reason) => self.events.push_back(OutstationEvent::Rejected(reason)),
            }
        }
    }

    fn accept_into_events(&mut self, frame: &[u8], framing: Framing) {
        match self.accept(frame, framing) {
            Ok(Some(event)) => self.events.push_back(event),
            Ok(None) => {}
            Err(reason) => self.events.push_back(OutstationEvent::Rejected(reason)),
        }
    }

    /// Checks a frame in the order of docs/protocol.md §7. `Ok(None)`: not for this device.
    fn accept(&mut self, frame: &[u8], framing: Framing) -> Result<Option<OutstationEvent>, RejectReason> {
        let parsed = FrameRef::parse(frame)?;
        let h = parsed.header;
        if h.from_outstation() {
            // Another device's reply on the shared bus.
            return Ok(None);
        }
        let broadcast = h.destination == Address::BROADCAST;
        if !broadcast && h.destination != self.config.address {
            return Ok(None);
        }
        let (key, window) = if broadcast {
            let group = self.config.groups.iter_mut().find(|g| g.key_id == h.key_id);
            let group = group.ok_or(RejectReason::UnknownKeyId)?;
            (&group.key, &mut group.rx)
        } else if h.key_id == self.config.key_id {
            (&self.config.key, &mut self.config.rx)
        } else {
            return Err(RejectReason::UnknownKeyId);
        };
        if !parsed.verify(key) {
            return Err(RejectReason::BadMac);
        }
        if h.source != Address::MASTER {
            return Err(RejectReason::AddressMismatch);
        }
        window.check(h.counter)?;
        window.accept(h.counter);
        let message = Message::decode(h.message_type, parsed.payload)?;
        let message_type = message.message_type();
        if broadcast && !message_type.broadcast_allowed() {
            return Err(RejectReason::Malformed);
        }
        let token = RequestToken { counter: h.counter, message_type, broadcast, framing };
        Ok(Some(OutstationEvent::Request { token, message }))
    }

    /// Answers a request. Broadcast requests get no answer: this returns `Ok` and sends
    /// nothing.
    pub fn respond(&mut self, token: &RequestToken, message: &Message) -> Result<(), EncodeError> {
        if token.broadcast {
            return Ok(());
        }
        let bytes = self.seal_as(message, token.framing)?;
        self.transmits.push_back(bytes);
        Ok(())
    }

    /// Acknowledges a command.
    pub fn ack(&mut self, token: &RequestToken) -> Result<(), EncodeError> {
        self.respond(token, &Message::Ack { counter: token.counter, message_type: token.message_type as u8 })
    }

    /// Refuses a request.
    pub fn nak(&mut self, token: &RequestToken, code: NakCode) -> Result<(), EncodeError> {
        self.respond(token, &Message::Nak { counter: token.counter, message_type: token.message_type as u8, code })
    }

    /// Sends a message of the device's own accord (heartbeat, birth, status, report, death).
    pub fn send(&mut self, message: &Message) -> Result<(), EncodeError> {
        let bytes = self.seal(message)?;
        self.transmits.push_back(bytes);
        Ok(())
    }

    /// Seals a message without queueing it: for the MQTT last will, which the broker holds and
    /// publishes later. Seal the will immediately before the BIRTH of the same session.
    pub fn seal(&mut self, message: &Message) -> Result<Vec<u8>, EncodeError> {
        self.seal_as(message, self.config.framing)
    }

    fn seal_as(&mut self, message: &Message, framing: Framing) -> Result<Vec<u8>, EncodeError> {
        let counter = self.config.tx.allocate(self.config.key_id.0);
        if !self.lease_asked {
            if let Some(up_to) = self.config.tx.lease_wanted() {
                self.lease_asked = true;
                self.events.push_back(OutstationEvent::LeaseWanted { up_to });
            }
        }
        let mut out = Vec::new();
        let seal = Seal {
            destination: Address::MASTER,
            source: self.config.address,
            key_id: self.config.key_id,
            key: &self.config.key,
            counter: counter?,
        };
        seal.encode(message, framing, &mut out)?;
        Ok(out)
    }

    /// The next bytes to transmit.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.transmits.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<OutstationEvent> {
        self.events.pop_front()
    }
}

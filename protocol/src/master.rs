//! The master session: the daemon's side of the protocol (docs/protocol.md §8).
//!
//! One `Master` serves every link of a daemon: serial buses (one request in flight per bus,
//! half duplex) and MQTT connections (one request in flight per device). It owns each device's
//! counters and anti-replay window once, whichever link carries its frames, so that a siren
//! with a serial and an MQTT link sees one counter sequence under its one key. It matches
//! replies to requests, times requests out and retries them with fresh counters. It performs
//! no I/O: the caller feeds received bytes with [`Master::handle_link_input`], sends what
//! [`Master::poll_transmit`] returns on the link it names, calls [`Master::handle_timeout`] at
//! [`Master::poll_timeout`], and drains [`Master::poll_event`]. A master made with
//! [`Master::new`] has one link, [`LinkId::DEFAULT`], which the single-link shorthands use.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use crate::decoder::SerialDecoder;
use crate::error::{EncodeError, RejectReason};
use crate::frame::{Address, FrameRef, Framing, KeyId, Seal};
use crate::mac::Key;
use crate::message::{Message, MessageType};
use crate::replay::{ReplayWindow, TxCounter};

/// Identifies one link of a master: a serial bus or an MQTT connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LinkId(pub u16);

impl LinkId {
    /// The link a master made with [`Master::new`] starts with.
    pub const DEFAULT: LinkId = LinkId(0);
}

/// Settings of one link.
#[derive(Debug, Clone)]
pub struct MasterConfig {
    pub framing: Framing,
    /// How long to wait for a reply once the request has been transmitted.
    pub reply_timeout: Duration,
    /// Wire time of one byte (10 bits at the line's baud rate on serial, zero on MQTT); added
    /// to the timeout for the request's own transmission time.
    pub byte_time: Duration,
    /// Retransmissions after the first attempt.
    pub retries: u8,
    /// Requests awaiting a reply at once: 1 on a half-duplex bus.
    pub max_in_flight: usize,
    /// Serial only: silence after which an incomplete envelope is rejected as truncated
    /// (docs/protocol.md §3.1); `None` leaves idle detection to [`Master::handle_line_idle`].
    pub idle_gap: Option<Duration>,
}

impl MasterConfig {
    /// Settings for a serial bus at `baud` (8N1: 10 bits per byte).
    pub fn serial(baud: u32) -> Self {
        Self {
            framing: Framing::Serial,
            reply_timeout: Duration::from_millis(200),
            byte_time: Duration::from_nanos(10_000_000_000 / u64::from(baud.max(1))),
            retries: 2,
            max_in_flight: 1,
            idle_gap: Some(crate::decoder::default_idle_gap(baud)),
        }
    }

    /// Settings for an MQTT link.
    pub fn mqtt() -> Self {
        Self {
            framing: Framing::Datagram,
            reply_timeout: Duration::from_secs(5),
            byte_time: Duration::ZERO,
            retries: 2,
            max_in_flight: usize::MAX,
            idle_gap: None,
        }
    }
}

/// What the master knows about one device; the application persists `tx.lease_end()`,
/// `rx.highest()` and `birth` so that a restart neither reuses nor re-accepts counters.
#[derive(Debug, Clone)]
pub struct PeerConfig {
    pub key_id: KeyId,
    pub key: Key,
    pub address: Address,
    pub tx: TxCounter,
    pub rx: ReplayWindow,
    pub birth: Option<BirthRecord>,
    /// The links that reach the device, preferred first. Frames under its key arriving on any
    /// other link are refused; requests go out on the current link ([`Master::set_link`]).
    pub links: Vec<LinkId>,
}

/// The device's current session as announced by its last BIRTH: what a last-will DEATH must
/// match (docs/protocol.md §4.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BirthRecord {
    pub boot_seq: u32,
    pub counter: u32,
    pub death_seen: bool,
}

/// Identifies a request for the lifetime of a `Master`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(pub u64);

/// Requests of higher priority are sent first; commands pre-empt polls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Priority {
    Poll,
    Command,
}

/// Bytes to put on a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub link: LinkId,
    /// The device (or group, for broadcast) whose key signed it.
    pub key_id: KeyId,
    pub destination: Address,
    pub request: Option<RequestId>,
    pub bytes: Vec<u8>,
}

/// Something that happened.
#[derive(Debug, Clone, PartialEq)]
pub enum MasterEvent {
    /// The device answered a request.
    Reply { request: RequestId, key_id: KeyId, message: Message, attempts: u8 },
    /// An authentic frame that answers no request: heartbeat, birth, death, unsolicited status
    /// or sounding report, or a reply that came after its request was given up.
    Unsolicited { key_id: KeyId, message: Message },
    /// One attempt went unanswered; the request will be sent again.
    Timeout { request: RequestId, key_id: KeyId, attempt: u8 },
    /// Every attempt went unanswered (or the request could not be sent at all).
    Failed { request: RequestId, key_id: KeyId, attempts: u8 },
    /// A frame was refused. `key_id` is set when the frame named a key this master holds.
    Rejected { link: LinkId, reason: RejectReason, key_id: Option<KeyId> },
    /// The counter lease under `key_id` runs low: persist `up_to`, then call
    /// [`Master::grant_lease`].
    LeaseWanted { key_id: KeyId, up_to: u32 },
}

/// Why a request was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("no device with key id {0}")]
    UnknownPeer(u16),
    #[error("no broadcast group with key id {0}")]
    UnknownGroup(u16),
    #[error("no link {0}")]
    UnknownLink(u16),
    #[error("a master does not send {0:?}")]
    WrongDirection(MessageType),
    #[error("{0:?} may not be broadcast")]
    NotBroadcastable(MessageType),
}

/// `Ok(None)`: not for us; `Err`: rejected, with the key id when the frame named a known one.
type Accepted = Result<Option<(KeyId, Message)>, (RejectReason, Option<KeyId>)>;

#[derive(Debug)]
struct Peer {
    config: PeerConfig,
    /// The link requests go out on.
    link: LinkId,
    lease_asked: bool,
}

#[derive(Debug)]
struct Group {
    link: LinkId,
    key: Key,
    tx: TxCounter,
    lease_asked: bool,
}

#[derive(Debug)]
struct Queued {
    id: RequestId,
    key_id: KeyId,
    message: Message,
    broadcast: bool,
}

#[derive(Debug)]
struct InFlight {
    id: RequestId,
    link: LinkId,
    message: Message,
    priority: Priority,
    /// Counters of every attempt sent so far: a late reply to any of them answers it.
    counters: Vec<u32>,
    /// `None` while a (re)transmission is due.
    deadline: Option<Instant>,
}

/// One link's timing, decoder, queues and reply slots.
#[derive(Debug)]
struct Link {
    config: MasterConfig,
    decoder: SerialDecoder,
    commands: VecDeque<Queued>,
    polls: VecDeque<Queued>,
    /// In-flight requests due for (re)transmission, by priority, oldest first.
    due_commands: VecDeque<KeyId>,
    due_polls: VecDeque<KeyId>,
    /// Queued requests to devices that already had one in flight when the queue was last
    /// searched, oldest first, put back at the head of their queues when that one ends. A
    /// device takes one request at a time, and without this a queue of 10,000 triggers behind
    /// busy devices was searched from its head for every frame sent.
    parked: HashMap<KeyId, Vec<(Priority, Queued)>>,
    parked_len: usize,
    /// Broadcasts among `commands`: while the line awaits a reply only they may go, and a
    /// link with none is not searched for one.
    broadcasts: usize,
    /// Requests on the wire awaiting a reply.
    waiting: usize,
}

impl Link {
    fn new(config: MasterConfig) -> Self {
        Self {
            decoder: config.idle_gap.map_or_else(SerialDecoder::new, SerialDecoder::with_idle_gap),
            config,
            commands: VecDeque::new(),
            polls: VecDeque::new(),
            due_commands: VecDeque::new(),
            due_polls: VecDeque::new(),
            parked: HashMap::new(),
            parked_len: 0,
            broadcasts: 0,
            waiting: 0,
        }
    }

    fn queue(&mut self, priority: Priority) -> &mut VecDeque<Queued> {
        match priority {
            Priority::Command => &mut self.commands,
            Priority::Poll => &mut self.polls,
        }
    }

    /// Puts `key_id`'s parked requests back at the head of their queues, oldest first.
    fn unpark(&mut self, key_id: KeyId) {
        let Some(parked) = self.parked.remove(&key_id) else { return };
        self.parked_len -= parked.len();
        for (priority, q) in parked.into_iter().rev() {
            self.queue(priority).push_front(q);
        }
    }

    /// Requests queued and not yet sent.
    fn queued(&self) -> usize {
        self.commands.len() + self.polls.len() + self.parked_len
    }

    fn due(&mut self, priority: Priority) -> &mut VecDeque<KeyId> {
        match priority {
            Priority::Command => &mut self.due_commands,
            Priority::Poll => &mut self.due_polls,
        }
    }
}

/// Capacity an emptied request or event queue keeps.
const QUEUE_KEPT: usize = 64;

/// The master session.
#[derive(Debug)]
pub struct Master {
    links: BTreeMap<LinkId, Link>,
    /// Boxed: a peer is a few hundred bytes, and the table keeps about a third of its slots
    /// free; boxed, a free slot costs a pointer, not a peer.
    peers: HashMap<KeyId, Box<Peer>>,
    groups: HashMap<KeyId, Group>,
    in_flight: HashMap<KeyId, InFlight>,
    /// Reply deadlines of in-flight requests, soonest first.
    deadlines: BTreeMap<(Instant, RequestId), KeyId>,
    events: VecDeque<MasterEvent>,
    next_request: u64,
    /// Where the next `poll_transmit` starts, so no link starves the others.
    next_link: usize,
    scratch: Vec<u8>,
    /// The master's clock, µs, read as each `TIME_SYNC_REQUEST` is sealed (see
    /// [`Master::stamp_time_syncs`]).
    clock: Option<fn() -> i64>,
}

impl Master {
    /// A master with one link, [`LinkId::DEFAULT`].
    pub fn new(config: MasterConfig) -> Self {
        let mut m = Self::without_links();
        m.add_link(LinkId::DEFAULT, config);
        m
    }

    /// A master with no links yet.
    pub fn without_links() -> Self {
        Self {
            links: BTreeMap::new(),
            peers: HashMap::new(),
            groups: HashMap::new(),
            in_flight: HashMap::new(),
            deadlines: BTreeMap::new(),
            events: VecDeque::new(),
            next_request: 0,
            next_link: 0,
            scratch: Vec::new(),
            clock: None,
        }
    }

    /// Adds (or reconfigures) a link.
    /// Stamps `t1` of every `TIME_SYNC_REQUEST` and `master_time` of every broadcast
    /// `TIME_SET` with `clock` as it is sealed for the wire, retries included, instead of the
    /// value the message was made with. A message can wait in the queue (thousands of sirens
    /// synchronised at once, a busy bus), and both fields mean the time the frame left
    /// (docs/protocol.md §5.3), or the wait counts as clock offset.
    pub fn stamp_time_syncs(&mut self, clock: fn() -> i64) {
        self.clock = Some(clock);
    }

    pub fn add_link(&mut self, id: LinkId, config: MasterConfig) {
        match self.links.get_mut(&id) {
            Some(link) => link.config = config,
            None => {
                self.links.insert(id, Link::new(config));
            }
        }
    }

    /// Adds (or replaces) a device. A device with no links listed is reached on
    /// [`LinkId::DEFAULT`].
    pub fn add_peer(&mut self, mut config: PeerConfig) {
        if config.links.is_empty() {
            config.links.push(LinkId::DEFAULT);
        }
        let link = config.links[0];
        self.peers.insert(config.key_id, Box::new(Peer { config, link, lease_asked: false }));
    }

    /// The link the device's requests go out on now.
    pub fn link_of(&self, key_id: KeyId) -> Option<LinkId> {
        self.peers.get(&key_id).map(|p| p.link)
    }

    /// Sends the device's future requests on `link` (one of its links), for example while its
    /// preferred link is down. Requests already queued stay where they are.
    pub fn set_link(&mut self, key_id: KeyId, link: LinkId) -> Result<(), RequestError> {
        let peer = self.peers.get_mut(&key_id).ok_or(RequestError::UnknownPeer(key_id.0))?;
        if !peer.config.links.contains(&link) {
            return Err(RequestError::UnknownLink(link.0));
        }
        peer.link = link;
        Ok(())
    }

    /// Adds (or replaces) a broadcast group key on [`LinkId::DEFAULT`].
    pub fn add_group(&mut self, key_id: KeyId, key: Key, tx: TxCounter) {
        self.add_group_on(LinkId::DEFAULT, key_id, key, tx);
    }

    /// Adds (or replaces) a serial bus's broadcast group key, with its transmit counter.
    pub fn add_group_on(&mut self, link: LinkId, key_id: KeyId, key: Key, tx: TxCounter) {
        self.groups.insert(key_id, Group { link, key, tx, lease_asked: false });
    }

    /// The device's current counters and session, for persistence.
    pub fn peer(&self, key_id: KeyId) -> Option<&PeerConfig> {
        self.peers.get(&key_id).map(|p| &p.config)
    }

    /// A group's transmit counter, for persistence.
    pub fn group_counter(&self, key_id: KeyId) -> Option<TxCounter> {
        self.groups.get(&key_id).map(|g| g.tx)
    }

    /// Extends the transmit lease under `key_id` to `up_to`, which the caller has persisted.
    pub fn grant_lease(&mut self, key_id: KeyId, up_to: u32) {
        if let Some(p) = self.peers.get_mut(&key_id) {
            p.config.tx.grant(up_to);
            p.lease_asked = false;
        }
        if let Some(g) = self.groups.get_mut(&key_id) {
            g.tx.grant(up_to);
            g.lease_asked = false;
        }
    }

    /// Requests waiting to be sent or awaiting replies, on every link.
    pub fn pending(&self) -> usize {
        self.links.values().map(Link::queued).sum::<usize>() + self.in_flight.len()
    }

    /// Requests queued on `link` and not yet sent: a scheduler that keeps this at zero or one
    /// never oversubscribes a bus, and lets commands go first.
    pub fn queued_on(&self, link: LinkId) -> usize {
        self.links.get(&link).map_or(0, |l| l.queued() + l.due_commands.len() + l.due_polls.len())
    }

    /// Whether `link` has a request on the wire awaiting its reply.
    pub fn is_waiting_on(&self, link: LinkId) -> bool {
        self.links.get(&link).is_some_and(|l| l.waiting > 0)
    }

    /// Whether a request to `key_id` is queued or awaiting its reply.
    pub fn is_busy(&self, key_id: KeyId) -> bool {
        self.in_flight.contains_key(&key_id)
            || self.links.values().any(|l| {
                l.parked.contains_key(&key_id) || l.commands.iter().chain(&l.polls).any(|q| q.key_id == key_id)
            })
    }

    /// Queues a request to one device on its current link. Replies arrive as
    /// [`MasterEvent::Reply`].
    pub fn request(&mut self, key_id: KeyId, message: Message, priority: Priority) -> Result<RequestId, RequestError> {
        let ty = message.message_type();
        if ty.from_outstation() {
            return Err(RequestError::WrongDirection(ty));
        }
        let link = self.peers.get(&key_id).ok_or(RequestError::UnknownPeer(key_id.0))?.link;
        let id = self.next_id();
        let queue = self.links.get_mut(&link).ok_or(RequestError::UnknownLink(link.0))?.queue(priority);
        queue.push_back(Queued { id, key_id, message, broadcast: false });
        Ok(id)
    }

    /// Queues a broadcast under a group key on the group's bus. Broadcasts get no reply and
    /// go before every request queued to one device (in their own order among themselves),
    /// and while the line awaits a reply.
    pub fn broadcast(&mut self, group: KeyId, message: Message) -> Result<RequestId, RequestError> {
        let ty = message.message_type();
        if !ty.broadcast_allowed() {
            return Err(RequestError::NotBroadcastable(ty));
        }
        let link = self.groups.get(&group).ok_or(RequestError::UnknownGroup(group.0))?.link;
        let id = self.next_id();
        let l = self.links.get_mut(&link).ok_or(RequestError::UnknownLink(link.0))?;
        l.broadcasts += 1;
        // Behind the broadcasts already queued, ahead of every request to one device: a STOP
        // or a trigger for a whole bus must not wait for one exchange per siren.
        let at = l.commands.iter().take_while(|q| q.broadcast).count();
        l.commands.insert(at, Queued { id, key_id: group, message, broadcast: true });
        Ok(id)
    }

    fn next_id(&mut self) -> RequestId {
        self.next_request += 1;
        RequestId(self.next_request)
    }

    /// The next bytes to send, on whichever link may carry them now.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Transmit> {
        let ids: Vec<LinkId> = self.links.keys().copied().collect();
        let n = ids.len();
        for i in 0..n {
            let link = ids[(self.next_link + i) % n];
            if let Some(t) = self.poll_link(now, link) {
                self.next_link = (self.next_link + i + 1) % n;
                return Some(t);
            }
        }
        None
    }

    fn poll_link(&mut self, now: Instant, link: LinkId) -> Option<Transmit> {
        // Retransmissions first: on a bus they hold the line.
        if let Some(t) = self.retransmit(now, link) {
            return Some(t);
        }
        for priority in [Priority::Command, Priority::Poll] {
            let l = self.links.get_mut(&link)?;
            let free = l.waiting < l.config.max_in_flight;
            let q = if free {
                // Requests to busy devices are parked as they come up, so each is passed over
                // once, not once per frame sent.
                let mut sendable = None;
                while let Some(q) = l.queue(priority).pop_front() {
                    if q.broadcast || !(self.in_flight.contains_key(&q.key_id) || l.parked.contains_key(&q.key_id)) {
                        sendable = Some(q);
                        break;
                    }
                    l.parked.entry(q.key_id).or_default().push((priority, q));
                    l.parked_len += 1;
                }
                sendable
            } else if l.broadcasts > 0 {
                // Only a broadcast may go while the line awaits a reply.
                let index = l.queue(priority).iter().position(|q| q.broadcast);
                index.and_then(|i| l.queue(priority).remove(i))
            } else {
                None
            };
            let Some(q) = q else { continue };
            if q.broadcast {
                l.broadcasts -= 1;
            }
            if l.queue(priority).is_empty() {
                // A burst (a whole fleet's time sync after a restart) must not keep its
                // queue's capacity for good.
                l.queue(priority).shrink_to(QUEUE_KEPT);
            }
            if q.broadcast {
                let sealed = self.seal_broadcast(link, &q);
                if sealed.is_none() {
                    // Waiting for a group counter lease: keep its place.
                    let l = self.links.get_mut(&link)?;
                    l.broadcasts += 1;
                    l.commands.push_front(q);
                }
                return sealed;
            }
            let flight =
                InFlight { id: q.id, link, message: q.message, priority, counters: Vec::new(), deadline: None };
            self.in_flight.insert(q.key_id, flight);
            let sent = self.send_attempt(now, q.key_id);
            if sent.is_none() && self.in_flight.contains_key(&q.key_id) {
                self.links.get_mut(&link)?.due(priority).push_back(q.key_id);
            }
            return sent;
        }
        None
    }

    /// Sends the most urgent in-flight request on `link` that is due: a retry after a
    /// timeout, or a first attempt that had to wait for a counter lease.
    fn retransmit(&mut self, now: Instant, link: LinkId) -> Option<Transmit> {
        for priority in [Priority::Command, Priority::Poll] {
            let len = self.links.get_mut(&link)?.due(priority).len();
            for _ in 0..len {
                let Some(key_id) = self.links.get_mut(&link)?.due(priority).pop_front() else { break };
                if let Some(t) = self.send_attempt(now, key_id) {
                    return Some(t);
                }
                // Still waiting for a lease: keep its place behind the others.
                if self.in_flight.contains_key(&key_id) {
                    self.links.get_mut(&link)?.due(priority).push_back(key_id);
                }
            }
        }
        None
    }

    /// The requests parked behind `key_id`'s ended request go back to their queues.
    fn unpark(&mut self, key_id: KeyId) {
        for l in self.links.values_mut() {
            l.unpark(key_id);
        }
    }

    /// Ends an in-flight request, releasing its reply slot and deadline.
    fn finish(&mut self, key_id: KeyId) -> Option<InFlight> {
        let flight = self.in_flight.remove(&key_id)?;
        self.unpark(key_id);
        if let Some(d) = flight.deadline {
            self.deadlines.remove(&(d, flight.id));
            if let Some(l) = self.links.get_mut(&flight.link) {
                l.waiting = l.waiting.saturating_sub(1);
            }
        }
        Some(flight)
    }

    fn send_attempt(&mut self, now: Instant, key_id: KeyId) -> Option<Transmit> {
        let peer = self.peers.get_mut(&key_id)?;
        let flight = self.in_flight.get_mut(&key_id)?;
        let link = self.links.get_mut(&flight.link)?;
        let counter = match take_counter(&mut peer.config.tx, &mut peer.lease_asked, key_id, &mut self.events) {
            Ok(c) => c,
            // No counter until the application persists a lease: the request stays due.
            Err(EncodeError::CounterLeaseExhausted(_)) => return None,
            Err(_) => {
                let (request, attempts) = (flight.id, u8::try_from(flight.counters.len()).unwrap_or(u8::MAX));
                self.finish(key_id);
                self.events.push_back(MasterEvent::Failed { request, key_id, attempts });
                return None;
            }
        };
        self.scratch.clear();
        if let (Some(clock), Message::TimeSyncRequest { t1_us }) = (self.clock, &mut flight.message) {
            *t1_us = clock();
        }
        let seal =
            Seal { destination: peer.config.address, source: Address::MASTER, key_id, key: &peer.config.key, counter };
        if let Err(e) = seal.encode(&flight.message, link.config.framing, &mut self.scratch) {
            // Only an over-long message can fail here; it would fail every time.
            debug_assert!(matches!(e, EncodeError::Oversize(_) | EncodeError::TooMany(_)));
            let (request, attempts) = (flight.id, u8::try_from(flight.counters.len()).unwrap_or(u8::MAX));
            self.finish(key_id);
            self.events.push_back(MasterEvent::Failed { request, key_id, attempts });
            return None;
        }
        flight.counters.push(counter);
        let wire = link.config.byte_time * u32::try_from(self.scratch.len()).unwrap_or(u32::MAX);
        let deadline = now + wire + link.config.reply_timeout;
        flight.deadline = Some(deadline);
        link.waiting += 1;
        let (id, link_id) = (flight.id, flight.link);
        self.deadlines.insert((deadline, id), key_id);
        let destination = peer.config.address;
        Some(Transmit { link: link_id, key_id, destination, request: Some(id), bytes: self.scratch.clone() })
    }

    fn seal_broadcast(&mut self, link: LinkId, q: &Queued) -> Option<Transmit> {
        let group = self.groups.get_mut(&q.key_id)?;
        let framing = self.links.get(&link)?.config.framing;
        let counter = take_counter(&mut group.tx, &mut group.lease_asked, q.key_id, &mut self.events).ok()?;
        let mut bytes = Vec::new();
        let stamped;
        let message = match (self.clock, &q.message) {
            (Some(clock), Message::TimeSet { .. }) => {
                stamped = Message::TimeSet { master_time_us: clock() };
                &stamped
            }
            _ => &q.message,
        };
        let seal = Seal {
            destination: Address::BROADCAST,
            source: Address::MASTER,
            key_id: q.key_id,
            key: &group.key,
            counter,
        };
        seal.encode(message, framing, &mut bytes).ok()?;
        Some(Transmit { link, key_id: q.key_id, destination: Address::BROADCAST, request: Some(q.id), bytes })
    }

    /// When [`Master::handle_timeout`] must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let replies = self.deadlines.first_key_value().map(|((d, _), _)| *d);
        let idle = self.links.values().filter_map(|l| l.decoder.idle_deadline()).min();
        match (replies, idle) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Expires unanswered attempts, and rejects as truncated the incomplete envelopes of
    /// serial lines that have been idle for their gap.
    pub fn handle_timeout(&mut self, now: Instant) {
        let idle: Vec<LinkId> =
            self.links.iter_mut().filter_map(|(id, l)| l.decoder.poll_idle(now).then_some(*id)).collect();
        for link in idle {
            let Some(l) = self.links.get_mut(&link) else { continue };
            let mut decoder = std::mem::take(&mut l.decoder);
            self.drain_decoder(now, link, &mut decoder);
            if let Some(l) = self.links.get_mut(&link) {
                l.decoder = decoder;
            }
        }
        while let Some(entry) = self.deadlines.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let key_id = entry.remove();
            let Some(flight) = self.in_flight.get_mut(&key_id) else { continue };
            flight.deadline = None;
            let attempt = u8::try_from(flight.counters.len()).unwrap_or(u8::MAX);
            let (request, priority, link_id) = (flight.id, flight.priority, flight.link);
            let Some(link) = self.links.get_mut(&link_id) else { continue };
            link.waiting = link.waiting.saturating_sub(1);
            if flight.counters.len() > usize::from(link.config.retries) {
                self.in_flight.remove(&key_id);
                self.unpark(key_id);
                self.events.push_back(MasterEvent::Failed { request, key_id, attempts: attempt });
            } else {
                link.due(priority).push_back(key_id);
                self.events.push_back(MasterEvent::Timeout { request, key_id, attempt });
            }
        }
    }

    /// Feeds bytes received on [`LinkId::DEFAULT`].
    pub fn handle_input(&mut self, now: Instant, bytes: &[u8]) {
        self.handle_link_input(now, LinkId::DEFAULT, bytes);
    }

    /// Feeds bytes received on `link`: a chunk of a serial stream, or one whole MQTT payload.
    pub fn handle_link_input(&mut self, now: Instant, link: LinkId, bytes: &[u8]) {
        let Some(l) = self.links.get_mut(&link) else { return };
        match l.config.framing {
            Framing::Datagram => self.handle_frame(now, link, bytes),
            Framing::Serial => {
                let mut decoder = std::mem::take(&mut l.decoder);
                decoder.push_at(bytes, now);
                self.drain_decoder(now, link, &mut decoder);
                if let Some(l) = self.links.get_mut(&link) {
                    l.decoder = decoder;
                }
            }
        }
    }

    /// Tells the session a serial line went idle: a partial frame is reported as truncated.
    pub fn handle_line_idle(&mut self, now: Instant, link: LinkId) {
        let Some(l) = self.links.get_mut(&link) else { return };
        let mut decoder = std::mem::take(&mut l.decoder);
        decoder.line_idle();
        self.drain_decoder(now, link, &mut decoder);
        if let Some(l) = self.links.get_mut(&link) {
            l.decoder = decoder;
        }
    }

    fn drain_decoder(&mut self, now: Instant, link: LinkId, decoder: &mut SerialDecoder) {
        while let Some(result) = decoder.next_frame() {
            match result {
                Ok(frame) => self.handle_frame(now, link, frame),
                Err(reason) => self.events.push_back(MasterEvent::Rejected { link, reason, key_id: None }),
            }
        }
    }

    fn handle_frame(&mut self, _now: Instant, link: LinkId, frame: &[u8]) {
        match self.accept(link, frame) {
            Ok(Some((key_id, message))) => self.dispatch(key_id, message),
            Ok(None) => {}
            Err((reason, key_id)) => self.events.push_back(MasterEvent::Rejected { link, reason, key_id }),
        }
    }

    /// Checks a frame in the order of docs/protocol.md §7. `Ok(None)`: not for us.
    fn accept(&mut self, link: LinkId, frame: &[u8]) -> Accepted {
        let parsed = FrameRef::parse(frame).map_err(|r| (r, None))?;
        let h = parsed.header;
        if !h.from_outstation() || h.destination != Address::MASTER {
            // Our own echo on a bus, or another master's traffic.
            return Ok(None);
        }
        let key_id = h.key_id;
        let peer = self.peers.get_mut(&key_id).ok_or((RejectReason::UnknownKeyId, None))?;
        let fail = |r| (r, Some(key_id));
        if !parsed.verify(&peer.config.key) {
            return Err(fail(RejectReason::BadMac));
        }
        if h.source != peer.config.address || !peer.config.links.contains(&link) {
            return Err(fail(RejectReason::AddressMismatch));
        }
        match peer.config.rx.check(h.counter) {
            Ok(()) => {
                peer.config.rx.accept(h.counter);
                let message = Message::decode(h.message_type, parsed.payload).map_err(|e| fail(e.into()))?;
                if let Message::Birth(b) = &message {
                    peer.config.birth =
                        Some(BirthRecord { boot_seq: b.boot_seq, counter: h.counter, death_seen: false });
                }
                if let (Message::Death(d), Some(birth)) = (&message, peer.config.birth.as_mut()) {
                    if d.boot_seq == birth.boot_seq {
                        birth.death_seen = true;
                    }
                }
                Ok(Some((key_id, message)))
            }
            Err(replayed) => {
                // The one exception: a last-will DEATH, sealed just before the BIRTH of the
                // same session and published by the broker long after.
                if h.message_type == MessageType::Death as u8 {
                    let message = Message::decode(h.message_type, parsed.payload).map_err(|e| fail(e.into()))?;
                    if let (Message::Death(d), Some(birth)) = (&message, peer.config.birth.as_mut()) {
                        if !birth.death_seen
                            && d.boot_seq == birth.boot_seq
                            && h.counter.checked_add(1) == Some(birth.counter)
                        {
                            birth.death_seen = true;
                            return Ok(Some((key_id, message)));
                        }
                    }
                }
                Err(fail(replayed))
            }
        }
    }

    fn dispatch(&mut self, key_id: KeyId, message: Message) {
        if let Some(flight) = self.in_flight.get(&key_id) {
            if answers(&flight.message, &flight.counters, &message) {
                let attempts = u8::try_from(flight.counters.len()).unwrap_or(u8::MAX);
                let request = flight.id;
                self.finish(key_id);
                self.events.push_back(MasterEvent::Reply { request, key_id, message, attempts });
                return;
            }
        }
        self.events.push_back(MasterEvent::Unsolicited { key_id, message });
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<MasterEvent> {
        let event = self.events.pop_front();
        if event.is_none() {
            self.events.shrink_to(QUEUE_KEPT);
        }
        event
    }
}

/// Takes the next counter under `key_id`, asking the application once for a new lease when the
/// current one runs low.
fn take_counter(
    tx: &mut TxCounter,
    lease_asked: &mut bool,
    key_id: KeyId,
    events: &mut VecDeque<MasterEvent>,
) -> Result<u32, EncodeError> {
    let counter = tx.allocate(key_id.0);
    if !*lease_asked {
        if let Some(up_to) = tx.lease_wanted() {
            *lease_asked = true;
            events.push_back(MasterEvent::LeaseWanted { key_id, up_to });
        }
    }
    counter
}

/// Whether `reply` answers `request`, sent under the counters `sent`.
fn answers(request: &Message, sent: &[u32], reply: &Message) -> bool {
    let ty = request.message_type() as u8;
    match (request, reply) {
        (_, Message::Nak { counter, message_type, .. }) => *message_type == ty && sent.contains(counter),
        (Message::StatusRequest, Message::StatusReport(_)) => true,
        (Message::TimeSyncRequest { t1_us }, Message::TimeSyncReply { t1_us: echoed, .. }) => t1_us == echoed,
        (Message::ReportRequest { campaign }, Message::SoundingReport(r)) => r.campaign == *campaign,
        (_, Message::Ack { counter, message_type }) => {
            request.message_type().is_command() && *message_type == ty && sent.contains(counter)
        }
        _ => false,
    }
}

/// Offset and round trip from one time-sync exchange (NTP's on-wire calculation).
///
/// `t1` master transmit, `t2` device receive, `t3` device transmit (device clock), `t4`
/// master receive. `offset_us` is what must be added to the device clock to agree with the
/// master's, assuming symmetric paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeSample {
    pub offset_us: i64,
    pub round_trip_us: i64,
}

impl TimeSample {
    pub fn compute(t1: i64, t2: i64, t3: i64, t4: i64) -> Self {
        // Widened to avoid overflow on absurd device clocks (the inputs come from outside).
        let (t1, t2, t3, t4) = (i128::from(t1), i128::from(t2), i128::from(t3), i128::from(t4));
        let offset = ((t1 - t2) + (t4 - t3)) / 2;
        let rtt = (t4 - t1) - (t3 - t2);
        let clamp = |v: i128| i64::try_from(v).unwrap_or(if v < 0 { i64::MIN } else { i64::MAX });
        Self { offset_us: clamp(offset), round_trip_us: clamp(rtt) }
    }
}

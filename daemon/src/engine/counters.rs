//! Replay counters (docs/protocol.md §4.2): every key resumes past its persisted lease, and a
//! lease is durable before any counter in it is used; counters that moved are written at a
//! steady pace rather than at every frame.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use siren_proto::Key;
use siren_proto::frame::{Address, KeyId};
use siren_proto::master::{BirthRecord, LinkId, Master, PeerConfig};
use siren_proto::replay::{DEFAULT_LEASE, ReplayWindow, TxCounter};

use crate::store::{CounterRow, Store, StoreError};

/// How often changed replay counters are written.
pub const COUNTERS_EVERY: Duration = Duration::from_secs(1);

/// How far a resynchronisation moves a siren's transmit counter ahead: beyond any counter a
/// restored backup or a second controller can have used (2^24; the counter space allows 255).
pub const RESYNC_JUMP: u32 = 1 << 24;

/// A siren to add to the master: its key id, address and links.
pub type Peer = (KeyId, Address, Vec<LinkId>);

/// Adds every peer with a key in `keys`, and every bus's group key, to `master` with counters
/// resumed past their persisted leases, and persists the new leases in one commit before
/// anything is sent.
pub fn restore<S: std::hash::BuildHasher>(
    master: &mut Master,
    store: &Store,
    peers: &[Peer],
    keys: &HashMap<KeyId, Key, S>,
    groups: &[(LinkId, KeyId, Key)],
) -> Result<(), StoreError> {
    let mut rows = Vec::new();
    for (key_id, address, links) in peers {
        let Some(key) = keys.get(key_id) else { continue };
        let stored = store.counters(key_id.0)?;
        let lease_start = stored.map_or(1, |c| c.tx_lease_end.max(1));
        let lease_end = lease_start.saturating_add(DEFAULT_LEASE);
        let rx = match stored {
            Some(c) if c.rx_highest > 0 => ReplayWindow::restored(c.rx_highest),
            _ => ReplayWindow::default(),
        };
        let birth = stored.and_then(|c| c.birth).map(|(boot_seq, counter, death_seen)| BirthRecord {
            boot_seq,
            counter,
            death_seen,
        });
        master.add_peer(PeerConfig {
            key_id: *key_id,
            key: key.clone(),
            address: *address,
            tx: TxCounter::new(lease_start, lease_end),
            rx,
            birth,
            links: links.clone(),
        });
        rows.push(CounterRow {
            key_id: key_id.0,
            tx_lease_end: lease_end,
            rx_highest: rx.highest(),
            birth: birth.map(|b| (b.boot_seq, b.counter, b.death_seen)),
        });
    }
    for (link, key_id, key) in groups {
        let stored = store.counters(key_id.0)?;
        let lease_start = stored.map_or(1, |c| c.tx_lease_end.max(1));
        let lease_end = lease_start.saturating_add(DEFAULT_LEASE);
        master.add_group_on(*link, *key_id, key.clone(), TxCounter::new(lease_start, lease_end));
        rows.push(CounterRow { key_id: key_id.0, tx_lease_end: lease_end, rx_highest: 0, birth: None });
    }
    store.store_counters(rows)
}

/// The row to persist for `key_id` (a siren's or a bus group's), with `lease` as the lease's
/// end if a new one is wanted.
pub fn row(master: &Master, key_id: KeyId, lease: Option<u32>) -> CounterRow {
    match master.peer(key_id) {
        Some(p) => CounterRow {
            key_id: key_id.0,
            tx_lease_end: lease.unwrap_or(p.tx.lease_end()),
            rx_highest: p.rx.highest(),
            birth: p.birth.map(|b| (b.boot_seq, b.counter, b.death_seen)),
        },
        None => CounterRow {
            key_id: key_id.0,
            tx_lease_end: lease.unwrap_or_else(|| master.group_counter(key_id).map_or(0, |t| t.lease_end())),
            rx_highest: 0,
            birth: None,
        },
    }
}

/// The keys whose counters moved since they were last written, the leases that could not be
/// stored yet, and when to write them.
#[derive(Debug)]
pub struct DirtyCounters {
    dirty: HashSet<KeyId>,
    /// Leases the master asked for whose storing failed: the key gets no counter (so sends
    /// nothing) until one is stored, tried again at every write.
    leases_waiting: HashMap<KeyId, u32>,
    next: Instant,
}

impl DirtyCounters {
    pub fn new(now: Instant) -> Self {
        Self { dirty: HashSet::new(), leases_waiting: HashMap::new(), next: now + COUNTERS_EVERY }
    }

    /// Storing the lease up to `up_to` under `key_id` failed; returns whether it is the first
    /// failure for that key (to log once, not at every retry).
    pub fn lease_not_stored(&mut self, key_id: KeyId, up_to: u32) -> bool {
        self.leases_waiting.insert(key_id, up_to).is_none()
    }

    /// The lease under `key_id` was stored and granted.
    pub fn lease_stored(&mut self, key_id: KeyId) {
        self.leases_waiting.remove(&key_id);
    }

    /// How many keys wait for a lease to be stored.
    pub fn waiting_count(&self) -> usize {
        self.leases_waiting.len()
    }

    /// The leases to try storing again, with the end each was asked up to.
    pub fn leases_waiting(&self) -> Vec<(KeyId, u32)> {
        self.leases_waiting.iter().map(|(k, v)| (*k, *v)).collect()
    }

    /// A frame under `key_id` was accepted: its receive window moved.
    pub fn touched(&mut self, key_id: KeyId) {
        self.dirty.insert(key_id);
    }

    /// The keys to write now, if it is time (possibly none); the next write is a period on.
    pub fn take_due(&mut self, now: Instant) -> Option<Vec<KeyId>> {
        if now < self.next {
            return None;
        }
        self.next = now + COUNTERS_EVERY;
        Some(self.take_all())
    }

    /// Every key not yet written (at shutdown).
    pub fn take_all(&mut self) -> Vec<KeyId> {
        self.dirty.drain().collect()
    }

    pub fn next_due(&self) -> Instant {
        self.next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moved_counters_are_written_once_a_second_each_key_once() {
        let t0 = Instant::now();
        let mut d = DirtyCounters::new(t0);
        d.touched(KeyId(1));
        d.touched(KeyId(2));
        d.touched(KeyId(1));
        assert_eq!(d.take_due(t0 + Duration::from_millis(999)), None);
        let mut due = d.take_due(t0 + COUNTERS_EVERY).unwrap();
        due.sort();
        assert_eq!(due, [KeyId(1), KeyId(2)]);
        assert_eq!(d.next_due(), t0 + 2 * COUNTERS_EVERY);
        assert_eq!(d.take_due(t0 + 2 * COUNTERS_EVERY), Some(vec![]));
        d.touched(KeyId(3));
        assert_eq!(d.take_all(), [KeyId(3)]);
    }

    #[test]
    fn a_lease_not_stored_waits_until_it_is_and_is_reported_once() {
        let mut d = DirtyCounters::new(Instant::now());
        assert!(d.lease_not_stored(KeyId(4), 2_048));
        assert!(!d.lease_not_stored(KeyId(4), 2_048), "a retry that fails again is not news");
        assert_eq!(d.leases_waiting(), [(KeyId(4), 2_048)]);
        assert_eq!(d.waiting_count(), 1);
        d.lease_stored(KeyId(4));
        assert!(d.leases_waiting().is_empty());
        assert!(d.lease_not_stored(KeyId(4), 3_072), "a later failure is news again");
    }

    #[test]
    fn restored_counters_resume_past_the_persisted_lease_which_is_saved_first() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.db")).unwrap();
        store
            .save_counters(CounterRow { key_id: 7, tx_lease_end: 5_000, rx_highest: 42, birth: Some((3, 40, false)) })
            .unwrap();
        store.flush().unwrap();
        let key = Key::new([7; 32]);
        let keys = HashMap::from([(KeyId(7), key.clone()), (KeyId(8), key.clone())]);
        let peers = vec![(KeyId(7), Address(1), vec![LinkId(1)]), (KeyId(8), Address(2), vec![LinkId(1)])];
        let mut master = Master::without_links();
        master.add_link(LinkId(1), siren_proto::master::MasterConfig::serial(9600));
        restore(&mut master, &store, &peers, &keys, &[(LinkId(1), KeyId(900), key)]).unwrap();
        let resumed = master.peer(KeyId(7)).unwrap();
        assert_eq!(resumed.tx.lease_end(), 5_000 + DEFAULT_LEASE);
        assert_eq!(resumed.rx.highest(), 42);
        assert_eq!(store.counters(7).unwrap().unwrap().tx_lease_end, 5_000 + DEFAULT_LEASE);
        assert_eq!(store.counters(8).unwrap().unwrap().tx_lease_end, 1 + DEFAULT_LEASE);
        assert_eq!(store.counters(900).unwrap().unwrap().tx_lease_end, 1 + DEFAULT_LEASE);
        assert_eq!(row(&master, KeyId(900), None).tx_lease_end, 1 + DEFAULT_LEASE);
        assert_eq!(row(&master, KeyId(7), Some(9_999)).tx_lease_end, 9_999);
    }
}

//! The daemon's memory: events, the protocol's replay counters and each siren's last known
//! state, in SQLite (WAL).
//!
//! Writes go through one writer thread that commits everything queued so far in a single
//! transaction, so a burst of thousands of events costs a handful of commits and never blocks
//! the caller. Reads use their own connection, which WAL lets run beside the writer. Counter
//! leases must be durable before they are used (docs/protocol.md §4.2): callers
//! [`Store::flush`] before granting one.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use jiff::Timestamp;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension as _, params};

use crate::fleet::Acknowledgement;
use crate::maintenance::{Ended, Scope, Window};
use crate::sounding::campaign::Campaign;

/// Committed events a live follower may fall behind by before it is told it lagged.
pub const CHANGES_KEPT: usize = 4096;
/// Schema version kept in `PRAGMA user_version`.
const SCHEMA_VERSION: i64 = 8;
/// Most writes committed in one transaction.
const MAX_BATCH: usize = 10_000;
/// How long a caller waits for the writer's answer (a flush, a counter lease, a new campaign's
/// id) before it gives up: the engine must never wait on a slow, hung or frozen disk.
pub const ANSWER_WITHIN: Duration = Duration::from_secs(2);
/// A commit running longer than this is a stalled store (`/readyz`, metric, alert).
const STALLED_AFTER: Duration = Duration::from_secs(2);
/// How often writes whose commit failed are tried again.
const RETRY_EVERY: Duration = Duration::from_secs(1);
/// Events kept for a store that cannot commit; beyond it the newest are dropped (and counted):
/// the older ones say how the trouble began. States, counters and campaigns are always kept
/// (they are few and are overwritten, not appended).
pub const MAX_BACKLOG_EVENTS: usize = 100_000;

/// A store operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Open { path: PathBuf, source: rusqlite::Error },
    #[error("{path}: written by a newer sirend (schema {found}, this one knows {SCHEMA_VERSION})")]
    NewerSchema { path: PathBuf, found: i64 },
    #[error("database: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("the store's writer has stopped")]
    WriterGone,
    /// The transaction holding the write could not be committed (disk full, read-only,
    /// I/O error): what it held is not stored.
    #[error("could not commit to the store: {0}")]
    Commit(String),
    #[error("starting the store's writer: {0}")]
    Thread(std::io::Error),
    /// The writer did not answer in time: the disk is slow, hung or frozen. What was asked
    /// may still be written later; it must not be relied on now.
    #[error("the store did not answer within {} s (disk slow or hung)", ANSWER_WITHIN.as_secs())]
    Stalled,
}

/// Something that happened, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub at: Timestamp,
    /// The siren concerned, if any (a link event concerns none).
    pub siren: Option<String>,
    /// What kind: `state`, `fault_raised`, `fault_cleared`, `link_down`, ...
    pub kind: String,
    pub detail: String,
}

/// An event with its position in the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub id: i64,
    pub event: Event,
}

/// A siren's last known state, kept across restarts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateRow {
    pub siren: String,
    pub state: String,
    pub since: Timestamp,
    pub faults: u32,
    pub last_seen: Option<Timestamp>,
    pub flaps: u32,
}

/// What a siren announced in its last BIRTH (docs/protocol.md §5.6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BirthRow {
    pub siren: String,
    pub at: Timestamp,
    pub boot_seq: u32,
    pub firmware: String,
    pub capabilities: u16,
    pub heartbeat_s: u16,
}

/// The replay state under one key (docs/protocol.md §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CounterRow {
    pub key_id: u16,
    /// The end of the last persisted transmit lease.
    pub tx_lease_end: u32,
    /// The highest counter accepted from the device.
    pub rx_highest: u32,
    /// The last birth: boot sequence, its counter, and whether its death was seen.
    pub birth: Option<(u32, u32, bool)>,
}

/// One write attempted through the API, accepted or refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub at: Timestamp,
    /// The token's name, `anonymous` or `invalid-token`.
    pub actor: String,
    pub action: String,
    pub target: String,
    pub allowed: bool,
    /// Why it was refused, or the note or reason the caller gave.
    pub detail: String,
    /// The client's address (empty when not known).
    pub client: String,
}

/// Which events to read.
#[derive(Debug, Clone, Default)]
pub struct EventQuery {
    /// Only events after this id (for paging and tailing).
    pub after_id: Option<i64>,
    /// Only events at or after this time.
    pub since: Option<Timestamp>,
    pub siren: Option<String>,
    /// Only events of this kind.
    pub kind: Option<String>,
    /// Only events before this time.
    pub until: Option<Timestamp>,
    /// The latest first (the `limit` latest); otherwise the oldest first.
    pub newest_first: bool,
    pub limit: usize,
}

enum Write {
    Event(Event),
    State(StateRow),
    Counters(CounterRow),
    Birth(BirthRow),
    Campaign {
        id: u32,
        phase: &'static str,
        body: String,
    },
    /// Answered with an error if any commit failed since the last flush was answered: what
    /// was queued before it may sit in an earlier batch than the flush itself.
    Flush(Sender<Result<(), String>>),
    /// Counter rows that must be durable before they are used, answered with the outcome of
    /// the very commit that carried them.
    Durable(Vec<CounterRow>, Sender<Result<(), String>>),
    /// A new campaign row, answered with its id (`None`: that occurrence already has one).
    NewCampaign {
        schedule: String,
        instant: Timestamp,
        reply: Sender<Result<Option<u32>, String>>,
    },
    Audit(AuditEntry),
    CapAlert(Box<crate::cap::intake::Received>),
    /// A siren's acknowledgement (`None`: it ended).
    Acknowledgement(String, Option<Acknowledgement>),
    /// A maintenance window as it is now (opened, ended or lapsed).
    Maintenance(Window),
    /// A LIVE activation as it is now (JSON).
    Activation(u32, String),
}

/// The store.
#[derive(Debug)]
pub struct Store {
    writes: Option<Sender<Write>>,
    writer: Option<JoinHandle<()>>,
    reader: Mutex<Connection>,
    events_written: Arc<AtomicU64>,
    health: Arc<Health>,
    /// Each event once committed, with its id.
    changes: tokio::sync::broadcast::Sender<Stored>,
}

/// Whether the store's commits succeed, as its writer last found.
#[derive(Debug)]
pub struct Health {
    failing: std::sync::atomic::AtomicBool,
    failures: AtomicU64,
    last_error: Mutex<Option<String>>,
    /// What `commit_started_us` counts from: the monotonic clock, so that a step of the wall
    /// clock is never taken for a stalled disk.
    epoch: std::time::Instant,
    /// When the commit under way started (µs after `epoch`, at least 1), 0 when none is.
    commit_started_us: AtomicU64,
    /// Writes waiting for a commit that failed to be tried again.
    backlog: AtomicU64,
    /// Events dropped because the backlog was full.
    dropped: AtomicU64,
}

/// A copy of [`Health`] at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthReport {
    /// The last commit failed.
    pub failing: bool,
    /// Commits that failed since the store was opened.
    pub failures: u64,
    /// The error of the last commit that failed.
    pub last_error: Option<String>,
    /// A commit has been running for longer than it should: the disk is slow or hung.
    pub stalled: bool,
    /// Writes waiting to be committed again after a failure.
    pub backlog: u64,
    /// Events dropped since the store was opened because the backlog was full.
    pub dropped: u64,
}

impl Default for Health {
    fn default() -> Self {
        Self {
            failing: std::sync::atomic::AtomicBool::default(),
            failures: AtomicU64::default(),
            last_error: Mutex::default(),
            epoch: std::time::Instant::now(),
            commit_started_us: AtomicU64::default(),
            backlog: AtomicU64::default(),
            dropped: AtomicU64::default(),
        }
    }
}

impl Health {
    fn now_us(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    fn commit_started(&self) {
        self.commit_started_us.store(self.now_us().max(1), Ordering::Relaxed);
    }

    fn commit_ended(&self) {
        self.commit_started_us.store(0, Ordering::Relaxed);
    }

    fn stalled(&self) -> bool {
        let started = self.commit_started_us.load(Ordering::Relaxed);
        let now = self.now_us();
        started != 0 && now.saturating_sub(started) > u64::try_from(STALLED_AFTER.as_micros()).unwrap_or(u64::MAX)
    }

    fn committed(&self) {
        self.failing.store(false, Ordering::Relaxed);
    }

    fn failed(&self, error: &str) {
        self.failing.store(true, Ordering::Relaxed);
        self.failures.fetch_add(1, Ordering::Relaxed);
        *self.last_error.lock().unwrap_or_else(PoisonError::into_inner) = Some(error.to_owned());
    }
}

impl std::fmt::Debug for Write {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Write")
    }
}

fn open(path: &Path) -> Result<Connection, StoreError> {
    let err = |source| StoreError::Open { path: path.to_owned(), source };
    let conn = Connection::open(path).map_err(err)?;
    conn.pragma_update(None, "journal_mode", "WAL").map_err(err)?;
    conn.pragma_update(None, "synchronous", "NORMAL").map_err(err)?;
    // 512 KiB of page cache per connection (SQLite's default is 2 MiB): the daemon appends and
    // upserts; it never scans enough to profit from more.
    conn.pragma_update(None, "cache_size", -512).map_err(err)?;
    conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(err)?;
    Ok(conn)
}

/// The schema's migrations: each brings the store from the version before it to its own.
const MIGRATIONS: [(i64, &str); 8] = [
    (
        1,
        "BEGIN;
        CREATE TABLE IF NOT EXISTS events (
            id INTEGER PRIMARY KEY,
            at_us INTEGER NOT NULL,
            siren TEXT,
            kind TEXT NOT NULL,
            detail TEXT NOT NULL
        );
        CREATE INDEX IF NOT EXISTS events_siren ON events (siren, id);
        CREATE INDEX IF NOT EXISTS events_at ON events (at_us);
        CREATE TABLE IF NOT EXISTS siren_state (
            siren TEXT PRIMARY KEY,
            state TEXT NOT NULL,
            since_us INTEGER NOT NULL,
            faults INTEGER NOT NULL,
            last_seen_us INTEGER,
            flaps INTEGER NOT NULL
        );
        CREATE TABLE IF NOT EXISTS counters (
            key_id INTEGER PRIMARY KEY,
            tx_lease_end INTEGER NOT NULL,
            rx_highest INTEGER NOT NULL,
            birth_boot_seq INTEGER,
            birth_counter INTEGER,
            birth_death_seen INTEGER
        );
        PRAGMA user_version = 1;
        COMMIT;",
    ),
    (
        2,
        "BEGIN;
        CREATE TABLE IF NOT EXISTS audit (
            id INTEGER PRIMARY KEY,
            at_us INTEGER NOT NULL,
            actor TEXT NOT NULL,
            action TEXT NOT NULL,
            target TEXT NOT NULL,
            allowed INTEGER NOT NULL,
            detail TEXT NOT NULL
        );
        PRAGMA user_version = 2;
        COMMIT;",
    ),
    // One row per campaign; `body` is the campaign's JSON (targets and all), rewritten at
    // every step. (schedule, instant) is unique so an occurrence is never planned twice.
    (
        3,
        "BEGIN;
        CREATE TABLE IF NOT EXISTS campaigns (
            id INTEGER PRIMARY KEY,
            schedule TEXT NOT NULL,
            instant_us INTEGER NOT NULL,
            phase TEXT NOT NULL,
            body TEXT NOT NULL,
            UNIQUE (schedule, instant_us)
        );
        PRAGMA user_version = 3;
        COMMIT;",
    ),
    // The last BIRTH of each MQTT siren: its heartbeat period counts across restarts of
    // the daemon, during which the device stays connected and announces nothing.
    (
        4,
        "BEGIN;
        CREATE TABLE IF NOT EXISTS births (
            siren TEXT PRIMARY KEY,
            at_us INTEGER NOT NULL,
            boot_seq INTEGER NOT NULL,
            firmware TEXT NOT NULL,
            capabilities INTEGER NOT NULL,
            heartbeat_s INTEGER NOT NULL
        );
        PRAGMA user_version = 4;
        COMMIT;",
    ),
    // The address a request came from, for the audit log.
    (
        5,
        "BEGIN;
        ALTER TABLE audit ADD COLUMN client TEXT NOT NULL DEFAULT '';
        PRAGMA user_version = 5;
        COMMIT;",
    ),
    // Acknowledgements in force and maintenance windows (open and past, for the sirens'
    // histories) outlive a restart.
    (
        6,
        "BEGIN;
        CREATE TABLE IF NOT EXISTS acknowledgements (
            siren TEXT PRIMARY KEY,
            state TEXT NOT NULL,
            faults INTEGER NOT NULL,
            by TEXT NOT NULL,
            at_us INTEGER NOT NULL,
            note TEXT NOT NULL,
            until_us INTEGER
        );
        CREATE TABLE IF NOT EXISTS maintenance (
            id INTEGER PRIMARY KEY,
            scope TEXT NOT NULL,
            target TEXT NOT NULL,
            by TEXT NOT NULL,
            reason TEXT NOT NULL,
            from_us INTEGER NOT NULL,
            until_us INTEGER NOT NULL,
            ended_us INTEGER,
            ended_by TEXT,
            ended_note TEXT
        );
        PRAGMA user_version = 6;
        COMMIT;",
    ),
    // LIVE activations: requests, approvals, rejections, as JSON.
    (
        7,
        "BEGIN;
        CREATE TABLE IF NOT EXISTS activations (
            id INTEGER PRIMARY KEY,
            body TEXT NOT NULL
        );
        PRAGMA user_version = 7;
        COMMIT;",
    ),
    // CAP alerts received, each once (sender, identifier, sent), with what it did, as JSON.
    (
        8,
        "BEGIN;
        CREATE TABLE IF NOT EXISTS cap_alerts (
            id INTEGER PRIMARY KEY,
            sender TEXT NOT NULL,
            identifier TEXT NOT NULL,
            sent TEXT NOT NULL,
            body TEXT NOT NULL,
            UNIQUE (sender, identifier, sent)
        );
        PRAGMA user_version = 8;
        COMMIT;",
    ),
];

fn migrate(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if version > SCHEMA_VERSION {
        return Err(StoreError::NewerSchema { path: path.to_owned(), found: version });
    }
    for (to, script) in MIGRATIONS {
        if version < to {
            conn.execute_batch(script)?;
        }
    }
    Ok(())
}

fn micros(t: Timestamp) -> i64 {
    t.as_microsecond()
}

fn timestamp(us: i64) -> Timestamp {
    Timestamp::from_microsecond(us).unwrap_or(Timestamp::UNIX_EPOCH)
}

impl Store {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let writer_conn = open(path)?;
        migrate(&writer_conn, path)?;
        let reader = open(path)?;
        let events_written = Arc::new(AtomicU64::new(0));
        let (writes, rx) = mpsc::channel();
        let counter = Arc::clone(&events_written);
        let health = Arc::new(Health::default());
        let writer_health = Arc::clone(&health);
        let (changes, _) = tokio::sync::broadcast::channel(CHANGES_KEPT);
        let writer_changes = changes.clone();
        let thread = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || write_loop(writer_conn, &rx, &counter, &writer_health, &writer_changes))
            .map_err(StoreError::Thread)?;
        Ok(Self {
            writes: Some(writes),
            writer: Some(thread),
            reader: Mutex::new(reader),
            events_written,
            health,
            changes,
        })
    }

    fn send(&self, w: Write) -> Result<(), StoreError> {
        self.writes.as_ref().ok_or(StoreError::WriterGone)?.send(w).map_err(|_| StoreError::WriterGone)
    }

    /// Every event from now on, as it is committed, with its id. A receiver that falls more
    /// than [`CHANGES_KEPT`] behind is told it lagged (it reads the log from its last id).
    pub fn follow(&self) -> tokio::sync::broadcast::Receiver<Stored> {
        self.changes.subscribe()
    }

    /// Queues an event; it is committed with the next batch.
    pub fn record(&self, event: Event) -> Result<(), StoreError> {
        self.send(Write::Event(event))
    }

    /// Queues a siren's state.
    pub fn save_state(&self, row: StateRow) -> Result<(), StoreError> {
        self.send(Write::State(row))
    }

    /// Queues a siren's acknowledgement, or (`None`) that it ended.
    pub fn save_acknowledgement(&self, siren: &str, ack: Option<&Acknowledgement>) -> Result<(), StoreError> {
        self.send(Write::Acknowledgement(siren.to_owned(), ack.cloned()))
    }

    /// Queues a maintenance window as it is now.
    pub fn save_maintenance(&self, window: &Window) -> Result<(), StoreError> {
        self.send(Write::Maintenance(window.clone()))
    }

    /// Queues a LIVE activation as it is now, and waits until it is committed: a request or an
    /// approval is not answered before it is stored.
    pub fn save_activation(&self, a: &crate::live::Activation) -> Result<(), StoreError> {
        self.send(Write::Activation(a.id, serde_json::to_string(a).unwrap_or_default()))?;
        self.flush()
    }

    /// Queues a received CAP alert and what it did, and waits until it is committed: an
    /// alert is applied once, across restarts too.
    pub fn save_cap_alert(&self, r: &crate::cap::intake::Received) -> Result<(), StoreError> {
        self.send(Write::CapAlert(Box::new(r.clone())))?;
        self.flush()
    }

    /// The latest `limit` CAP alerts received, oldest first.
    pub fn cap_alerts(&self, limit: usize) -> Result<Vec<crate::cap::intake::Received>, StoreError> {
        self.latest_bodies(
            "SELECT body FROM (SELECT id, body FROM cap_alerts ORDER BY id DESC LIMIT ?1) ORDER BY id",
            limit,
        )
    }

    /// Queues a LIVE activation as it is now without waiting for the commit (a stop must not
    /// wait for the disk).
    pub fn queue_activation(&self, a: &crate::live::Activation) -> Result<(), StoreError> {
        self.send(Write::Activation(a.id, serde_json::to_string(a).unwrap_or_default()))
    }

    /// The latest `limit` LIVE activations, oldest first.
    pub fn activations(&self, limit: usize) -> Result<Vec<crate::live::Activation>, StoreError> {
        self.latest_bodies(
            "SELECT body FROM (SELECT id, body FROM activations ORDER BY id DESC LIMIT ?1) ORDER BY id",
            limit,
        )
    }

    /// The JSON bodies `query` (with the row limit as `?1`) selects, read as `T`; an
    /// unreadable one is logged and left out.
    fn latest_bodies<T: serde::de::DeserializeOwned>(&self, query: &str, limit: usize) -> Result<Vec<T>, StoreError> {
        let conn = self.reader();
        let mut stmt = conn.prepare_cached(query)?;
        let rows = stmt.query_map([i64::try_from(limit).unwrap_or(i64::MAX)], |r| r.get::<_, String>(0))?;
        let mut out = Vec::new();
        for body in rows {
            match serde_json::from_str(&body?) {
                Ok(a) => out.push(a),
                Err(e) => tracing::error!(error = %e, what = std::any::type_name::<T>(), "unreadable stored record"),
            }
        }
        Ok(out)
    }

    /// Every stored acknowledgement, by siren.
    pub fn acknowledgements(&self) -> Result<Vec<(String, Acknowledgement)>, StoreError> {
        let conn = self.reader();
        let mut stmt =
            conn.prepare_cached("SELECT siren, state, faults, by, at_us, note, until_us FROM acknowledgements")?;
        let rows = stmt.query_map([], |r| {
            let state: String = r.get(1)?;
            Ok((
                r.get::<_, String>(0)?,
                Acknowledgement {
                    state: crate::liveness::State::from_name(&state).unwrap_or(crate::liveness::State::Unknown),
                    faults: siren_proto::message::FaultBits(r.get(2)?),
                    by: r.get(3)?,
                    at: timestamp(r.get(4)?),
                    note: r.get(5)?,
                    until: r.get::<_, Option<i64>>(6)?.map(timestamp),
                },
            ))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Maintenance windows, the latest first: only those not ended when `open_only`.
    pub fn maintenance_windows(&self, open_only: bool, limit: usize) -> Result<Vec<Window>, StoreError> {
        let conn = self.reader();
        let mut stmt = conn.prepare_cached(
            "SELECT id, scope, target, by, reason, from_us, until_us, ended_us, ended_by, ended_note FROM maintenance
             WHERE (?1 = 0 OR ended_us IS NULL) ORDER BY id DESC LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![open_only, i64::try_from(limit).unwrap_or(i64::MAX)], |r| {
            let ended = r.get::<_, Option<i64>>(7)?.map(|at| -> rusqlite::Result<Ended> {
                Ok(Ended {
                    at: timestamp(at),
                    by: r.get::<_, Option<String>>(8)?.unwrap_or_default(),
                    note: r.get::<_, Option<String>>(9)?.unwrap_or_default(),
                })
            });
            Ok((
                r.get::<_, u32>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
                timestamp(r.get(5)?),
                timestamp(r.get(6)?),
                ended.transpose()?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (id, kind, target, by, reason, from, until, ended) = row?;
            // A scope this version does not know (a newer store) is left out.
            if let Some(scope) = Scope::from_parts(&kind, target) {
                out.push(Window { id, scope, by, reason, from, until, ended });
            }
        }
        Ok(out)
    }

    /// The highest maintenance window id ever stored (0 for none).
    pub fn last_maintenance_id(&self) -> Result<u32, StoreError> {
        let conn = self.reader();
        Ok(conn.query_row("SELECT COALESCE(MAX(id), 0) FROM maintenance", [], |r| r.get(0))?)
    }

    /// Queues what a siren announced in its BIRTH.
    pub fn save_birth(&self, row: BirthRow) -> Result<(), StoreError> {
        self.send(Write::Birth(row))
    }

    /// Every siren's last BIRTH.
    pub fn births(&self) -> Result<Vec<BirthRow>, StoreError> {
        let conn = self.reader();
        let mut stmt = conn.prepare_cached(
            "SELECT siren, at_us, boot_seq, firmware, capabilities, heartbeat_s FROM births ORDER BY siren",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(BirthRow {
                siren: r.get(0)?,
                at: timestamp(r.get(1)?),
                boot_seq: r.get(2)?,
                firmware: r.get(3)?,
                capabilities: r.get(4)?,
                heartbeat_s: r.get(5)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Queues the replay state under a key.
    pub fn save_counters(&self, row: CounterRow) -> Result<(), StoreError> {
        self.send(Write::Counters(row))
    }

    /// Allocates the id of a new campaign for `schedule` at `instant`; `None` if that
    /// occurrence already has one.
    pub fn create_campaign(&self, schedule: &str, instant: Timestamp) -> Result<Option<u32>, StoreError> {
        self.ask(|reply| Write::NewCampaign { schedule: schedule.to_owned(), instant, reply })
    }

    /// Queues a campaign's current form.
    pub fn save_campaign(&self, c: &Campaign) -> Result<(), StoreError> {
        self.send(Write::Campaign { id: c.id, phase: c.phase.as_str(), body: c.to_json() })
    }

    /// One campaign.
    pub fn campaign(&self, id: u32) -> Result<Option<Campaign>, StoreError> {
        let conn = self.reader();
        let body: Option<String> =
            conn.query_row("SELECT body FROM campaigns WHERE id = ?1 AND body != ''", [id], |r| r.get(0)).optional()?;
        Ok(body.and_then(|b| {
            Campaign::restore(&b).map_err(|e| tracing::error!(id, error = %e, "unreadable campaign")).ok()
        }))
    }

    /// Campaigns, newest instant first, optionally only those not over yet.
    pub fn campaigns(&self, open_only: bool, limit: usize) -> Result<Vec<Campaign>, StoreError> {
        let conn = self.reader();
        let mut stmt = conn.prepare_cached(
            "SELECT id, body FROM campaigns WHERE body != ''
               AND (?1 = 0 OR phase NOT IN ('done', 'missed', 'cancelled'))
             ORDER BY instant_us DESC, id DESC LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![open_only, i64::try_from(limit).unwrap_or(i64::MAX)], |r| {
            Ok((r.get::<_, u32>(0)?, r.get::<_, String>(1)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (id, body) = row?;
            match Campaign::restore(&body) {
                Ok(c) => out.push(c),
                Err(e) => tracing::error!(id, error = %e, "unreadable campaign"),
            }
        }
        Ok(out)
    }

    /// The latest campaign of `schedule` that ended in `phase` (`done`, `missed`, `cancelled`).
    pub fn latest_campaign(&self, schedule: &str, phase: &str) -> Result<Option<Campaign>, StoreError> {
        let conn = self.reader();
        let mut stmt = conn.prepare_cached(
            "SELECT id, body FROM campaigns WHERE schedule = ?1 AND phase = ?2 AND body != ''
             ORDER BY instant_us DESC LIMIT 1",
        )?;
        let mut rows = stmt.query(params![schedule, phase])?;
        let Some(row) = rows.next()? else { return Ok(None) };
        let (id, body): (u32, String) = (row.get(0)?, row.get(1)?);
        match Campaign::restore(&body) {
            Ok(c) => Ok(Some(c)),
            Err(e) => {
                tracing::error!(id, error = %e, "unreadable campaign");
                Ok(None)
            }
        }
    }

    /// The latest occurrence of `schedule` that has a campaign.
    pub fn last_instant(&self, schedule: &str) -> Result<Option<Timestamp>, StoreError> {
        let conn = self.reader();
        let us: Option<i64> =
            conn.query_row("SELECT MAX(instant_us) FROM campaigns WHERE schedule = ?1", [schedule], |r| r.get(0))?;
        Ok(us.map(timestamp))
    }

    /// Commits `rows` and waits for that commit: `Ok` only if they are stored (a counter lease
    /// is granted on nothing less).
    pub fn store_counters(&self, rows: Vec<CounterRow>) -> Result<(), StoreError> {
        self.ask(|reply| Write::Durable(rows, reply))
    }

    /// Waits until everything queued so far is committed; an error if any commit failed since
    /// the last flush was answered (what it held is not stored).
    pub fn flush(&self) -> Result<(), StoreError> {
        self.ask(Write::Flush)
    }

    /// Queues the write `make` builds around a reply channel, and waits for the writer's
    /// answer, at most [`ANSWER_WITHIN`].
    fn ask<T>(&self, make: impl FnOnce(Sender<Result<T, String>>) -> Write) -> Result<T, StoreError> {
        self.not_stalled()?;
        let (reply, rx) = mpsc::channel();
        self.send(make(reply))?;
        answer(&rx)?.map_err(StoreError::Commit)
    }

    /// A stalled store answers nothing in time: callers are told so at once rather than after
    /// [`ANSWER_WITHIN`] each.
    fn not_stalled(&self) -> Result<(), StoreError> {
        if self.health.stalled() { Err(StoreError::Stalled) } else { Ok(()) }
    }

    /// Whether commits succeed, as the writer last found.
    pub fn health(&self) -> HealthReport {
        HealthReport {
            failing: self.health.failing.load(Ordering::Relaxed),
            failures: self.health.failures.load(Ordering::Relaxed),
            last_error: self.health.last_error.lock().unwrap_or_else(PoisonError::into_inner).clone(),
            stalled: self.health.stalled(),
            backlog: self.health.backlog.load(Ordering::Relaxed),
            dropped: self.health.dropped.load(Ordering::Relaxed),
        }
    }

    /// Events committed since the store was opened.
    pub fn events_written(&self) -> u64 {
        self.events_written.load(Ordering::Relaxed)
    }

    fn reader(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.reader.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Committed events matching `q`, oldest first unless `q.newest_first`; none for a
    /// limit of 0.
    pub fn events(&self, q: &EventQuery) -> Result<Vec<Stored>, StoreError> {
        if q.limit == 0 {
            return Ok(Vec::new());
        }
        let conn = self.reader();
        let mut stmt = conn.prepare_cached(if q.newest_first {
            "SELECT id, at_us, siren, kind, detail FROM events
             WHERE id > ?1 AND at_us >= ?2 AND at_us < ?3 AND (?4 IS NULL OR siren = ?4) AND (?5 IS NULL OR kind = ?5)
             ORDER BY id DESC LIMIT ?6"
        } else {
            "SELECT id, at_us, siren, kind, detail FROM events
             WHERE id > ?1 AND at_us >= ?2 AND at_us < ?3 AND (?4 IS NULL OR siren = ?4) AND (?5 IS NULL OR kind = ?5)
             ORDER BY id LIMIT ?6"
        })?;
        let limit = i64::try_from(q.limit.min(100_000)).unwrap_or(100_000);
        let bounds = (q.after_id.unwrap_or(0), q.since.map_or(i64::MIN, micros), q.until.map_or(i64::MAX, micros));
        let rows = stmt.query_map(params![bounds.0, bounds.1, bounds.2, q.siren, q.kind, limit], |r| {
            Ok(Stored {
                id: r.get(0)?,
                event: Event { at: timestamp(r.get(1)?), siren: r.get(2)?, kind: r.get(3)?, detail: r.get(4)? },
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Records an audit entry and waits until it is committed: an accepted write is not
    /// acknowledged to its caller before its audit record is durable.
    pub fn audit(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        self.send(Write::Audit(entry.clone()))
    }

    /// The audit log, newest last.
    pub fn audit_log(&self, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        let conn = self.reader();
        let mut stmt = conn.prepare_cached(
            "SELECT at_us, actor, action, target, allowed, detail, client FROM (SELECT * FROM audit ORDER BY id DESC LIMIT ?1) ORDER BY id",
        )?;
        let rows = stmt.query_map([i64::try_from(limit).unwrap_or(i64::MAX)], |r| {
            Ok(AuditEntry {
                at: timestamp(r.get(0)?),
                actor: r.get(1)?,
                action: r.get(2)?,
                target: r.get(3)?,
                allowed: r.get(4)?,
                detail: r.get(5)?,
                client: r.get(6)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Every siren's last known state.
    pub fn states(&self) -> Result<Vec<StateRow>, StoreError> {
        let conn = self.reader();
        let mut stmt = conn.prepare_cached(
            "SELECT siren, state, since_us, faults, last_seen_us, flaps FROM siren_state ORDER BY siren",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(StateRow {
                siren: r.get(0)?,
                state: r.get(1)?,
                since: timestamp(r.get(2)?),
                faults: r.get(3)?,
                last_seen: r.get::<_, Option<i64>>(4)?.map(timestamp),
                flaps: r.get(5)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The replay state under one key.
    pub fn counters(&self, key_id: u16) -> Result<Option<CounterRow>, StoreError> {
        let conn = self.reader();
        let mut stmt = conn.prepare_cached(
            "SELECT tx_lease_end, rx_highest, birth_boot_seq, birth_counter, birth_death_seen FROM counters WHERE key_id = ?1",
        )?;
        let row = stmt
            .query_row([key_id], |r| {
                let birth =
                    match (r.get::<_, Option<u32>>(2)?, r.get::<_, Option<u32>>(3)?, r.get::<_, Option<bool>>(4)?) {
                        (Some(b), Some(c), Some(d)) => Some((b, c, d)),
                        _ => None,
                    };
                Ok(CounterRow { key_id, tx_lease_end: r.get(0)?, rx_highest: r.get(1)?, birth })
            })
            .optional()?;
        Ok(row)
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        // Closing the channel lets the writer commit what is queued and stop.
        drop(self.writes.take());
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

/// The writer's answer, if it comes in time.
fn answer<T>(rx: &Receiver<T>) -> Result<T, StoreError> {
    rx.recv_timeout(ANSWER_WITHIN).map_err(|e| match e {
        mpsc::RecvTimeoutError::Timeout => StoreError::Stalled,
        mpsc::RecvTimeoutError::Disconnected => StoreError::WriterGone,
    })
}

/// Commits what arrives, in batches. Writes whose commit failed are kept (events up to
/// [`MAX_BACKLOG_EVENTS`]) and tried again every [`RETRY_EVERY`], so a disk that was full or
/// read-only for a while loses nothing it had room to keep.
/// The next batch to commit: the writes kept from a failed commit, then what arrives (up to
/// [`MAX_BATCH`] more), and how many of them are kept ones. Waits for the first write, or
/// [`RETRY_EVERY`] while some are kept; `None` once every sender is gone and nothing is kept.
fn gather(rx: &Receiver<Write>, backlog: &mut Vec<Write>, open: &mut bool) -> Option<(Vec<Write>, usize)> {
    let first = if backlog.is_empty() {
        Some(rx.recv().ok()?)
    } else if *open {
        match rx.recv_timeout(RETRY_EVERY) {
            Ok(w) => Some(w),
            Err(mpsc::RecvTimeoutError::Timeout) => None,
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                *open = false;
                None
            }
        }
    } else {
        None
    };
    let retrying = backlog.len();
    let mut batch = std::mem::take(backlog);
    batch.extend(first);
    while batch.len() < MAX_BATCH + retrying {
        match rx.try_recv() {
            Ok(w) => batch.push(w),
            Err(_) => break,
        }
    }
    Some((batch, retrying))
}

fn write_loop(
    mut conn: Connection,
    rx: &Receiver<Write>,
    events_written: &AtomicU64,
    health: &Health,
    changes: &tokio::sync::broadcast::Sender<Stored>,
) {
    // A failure a flush has not reported yet.
    let mut unreported: Option<String> = None;
    let mut backlog: Vec<Write> = Vec::new();
    let mut open = true;
    while open || !backlog.is_empty() {
        let Some((batch, retrying)) = gather(rx, &mut backlog, &mut open) else { break };
        health.commit_started();
        let committed = commit(&mut conn, &batch);
        health.commit_ended();
        let mut created = Vec::new();
        let mut event_ids = Vec::new();
        let outcome = match committed {
            Ok((n, ids, events)) => {
                created = ids;
                event_ids = events;
                events_written.fetch_add(n, Ordering::Relaxed);
                if retrying > 0 {
                    tracing::info!(writes = retrying, "the store commits again: the writes kept meanwhile are stored");
                }
                health.committed();
                Ok(())
            }
            Err(e) => {
                let error = e.to_string();
                if retrying == 0 {
                    tracing::error!(error, writes = batch.len(), "could not commit to the store; kept to try again");
                }
                health.failed(&error);
                Err(error)
            }
        };
        if let Err(e) = &outcome {
            unreported = Some(e.clone());
        }
        let mut flushed = false;
        let mut events = 0;
        let mut created = created.into_iter();
        let mut event_ids = event_ids.into_iter();
        // Answered once the health says what this commit left behind.
        let mut answers: Vec<Box<dyn FnOnce()>> = Vec::new();
        for w in batch {
            match w {
                Write::Flush(done) => {
                    let answer = unreported.clone().map_or(Ok(()), Err);
                    answers.push(Box::new(move || drop(done.send(answer))));
                    flushed = true;
                }
                // Their callers try again themselves.
                Write::Durable(_, done) => {
                    let answer = outcome.clone();
                    answers.push(Box::new(move || drop(done.send(answer))));
                }
                // Never kept: a campaign is planned again at the scheduler's next look.
                Write::NewCampaign { reply, .. } => {
                    let answer = outcome.clone().map(|()| created.next().flatten());
                    answers.push(Box::new(move || drop(reply.send(answer))));
                }
                Write::Event(_) if outcome.is_err() && events >= MAX_BACKLOG_EVENTS => {
                    health.dropped.fetch_add(1, Ordering::Relaxed);
                }
                kept if outcome.is_err() => {
                    events += usize::from(matches!(kept, Write::Event(_)));
                    backlog.push(kept);
                }
                // Committed: told to whoever follows the log live (nobody listening is fine).
                Write::Event(event) => {
                    if let Some(id) = event_ids.next() {
                        let _ = changes.send(Stored { id, event });
                    }
                }
                _ => {}
            }
        }
        health.backlog.store(backlog.len() as u64, Ordering::Relaxed);
        for answer in answers {
            answer();
        }
        if flushed {
            unreported = None;
        }
        if !open && outcome.is_err() {
            tracing::error!(
                writes = backlog.len(),
                "the store could not commit before stopping: these writes are lost"
            );
            break;
        }
    }
}

/// What a commit wrote: the number of events and their ids, the campaigns created.
type Committed = (u64, Vec<Option<u32>>, Vec<i64>);

/// Commits `batch` in one transaction: the events written, and the ids of the campaigns it
/// created (in order; `None` where the occurrence already had one), and the events' ids.
fn commit(conn: &mut Connection, batch: &[Write]) -> Result<Committed, rusqlite::Error> {
    let tx = conn.transaction()?;
    let mut events = 0;
    let mut created = Vec::new();
    let mut event_ids = Vec::new();
    {
        let mut insert =
            tx.prepare_cached("INSERT INTO events (at_us, siren, kind, detail) VALUES (?1, ?2, ?3, ?4)")?;
        let mut state = tx.prepare_cached(
            "INSERT INTO siren_state (siren, state, since_us, faults, last_seen_us, flaps) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (siren) DO UPDATE SET state = ?2, since_us = ?3, faults = ?4, last_seen_us = ?5, flaps = ?6",
        )?;
        let mut counters = tx.prepare_cached(
            "INSERT INTO counters (key_id, tx_lease_end, rx_highest, birth_boot_seq, birth_counter, birth_death_seen)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (key_id) DO UPDATE SET tx_lease_end = MAX(tx_lease_end, ?2), rx_highest = MAX(rx_highest, ?3),
                 birth_boot_seq = ?4, birth_counter = ?5, birth_death_seen = ?6",
        )?;
        let mut campaign = tx.prepare_cached("UPDATE campaigns SET phase = ?2, body = ?3 WHERE id = ?1")?;
        let mut birth = tx.prepare_cached(
            "INSERT OR REPLACE INTO births (siren, at_us, boot_seq, firmware, capabilities, heartbeat_s)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?;
        let mut new_campaign = tx.prepare_cached(
            "INSERT OR IGNORE INTO campaigns (schedule, instant_us, phase, body) VALUES (?1, ?2, 'planned', '')",
        )?;
        let mut audit = tx.prepare_cached(
            "INSERT INTO audit (at_us, actor, action, target, allowed, detail, client) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?;
        for w in batch {
            match w {
                Write::Acknowledgement(..) | Write::Maintenance(_) => save_crews_word(&tx, w)?,
                Write::Activation(id, body) => {
                    tx.prepare_cached("INSERT OR REPLACE INTO activations (id, body) VALUES (?1, ?2)")?
                        .execute(params![id, body])?;
                }
                Write::CapAlert(r) => {
                    tx.prepare_cached(
                        "INSERT INTO cap_alerts (sender, identifier, sent, body) VALUES (?1, ?2, ?3, ?4)
                         ON CONFLICT (sender, identifier, sent) DO UPDATE SET body = excluded.body",
                    )?
                    .execute(params![
                        r.sender,
                        r.identifier,
                        r.sent,
                        serde_json::to_string(&r).unwrap_or_default()
                    ])?;
                }
                Write::Campaign { id, phase, body } => {
                    campaign.execute(params![id, phase, body])?;
                }
                Write::Event(e) => {
                    insert.execute(params![micros(e.at), e.siren, e.kind, e.detail])?;
                    event_ids.push(tx.last_insert_rowid());
                    events += 1;
                }
                Write::State(s) => {
                    state.execute(params![
                        s.siren,
                        s.state,
                        micros(s.since),
                        s.faults,
                        s.last_seen.map(micros),
                        s.flaps
                    ])?;
                }
                Write::Counters(c) => {
                    save_counters(&mut counters, c)?;
                }
                Write::Birth(b) => {
                    birth.execute(params![
                        b.siren,
                        micros(b.at),
                        b.boot_seq,
                        b.firmware,
                        b.capabilities,
                        b.heartbeat_s
                    ])?;
                }
                Write::Durable(rows, _) => {
                    for c in rows {
                        save_counters(&mut counters, c)?;
                    }
                }
                Write::NewCampaign { schedule, instant, .. } => {
                    let n = new_campaign.execute(params![schedule, micros(*instant)])?;
                    created.push((n > 0).then(|| u32::try_from(tx.last_insert_rowid()).ok()).flatten());
                }
                Write::Audit(a) => {
                    audit.execute(params![micros(a.at), a.actor, a.action, a.target, a.allowed, a.detail, a.client])?;
                }
                Write::Flush(_) => {}
            }
        }
    }
    tx.commit()?;
    Ok((events, created, event_ids))
}

/// Writes an acknowledgement or a maintenance window (few: their statements are prepared when
/// one comes).
fn save_crews_word(tx: &rusqlite::Transaction<'_>, w: &Write) -> Result<(), rusqlite::Error> {
    match w {
        Write::Acknowledgement(siren, Some(a)) => {
            let mut ack = tx.prepare_cached(
                "INSERT OR REPLACE INTO acknowledgements (siren, state, faults, by, at_us, note, until_us)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?;
            ack.execute(params![siren, a.state.as_str(), a.faults.0, a.by, micros(a.at), a.note, a.until.map(micros)])?;
        }
        Write::Acknowledgement(siren, None) => {
            tx.prepare_cached("DELETE FROM acknowledgements WHERE siren = ?1")?.execute([siren])?;
        }
        Write::Maintenance(m) => {
            let mut maintenance = tx.prepare_cached(
                "INSERT OR REPLACE INTO maintenance
                     (id, scope, target, by, reason, from_us, until_us, ended_us, ended_by, ended_note)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            )?;
            let ended = m.ended.as_ref();
            maintenance.execute(params![
                m.id,
                m.scope.kind(),
                m.scope.target(),
                m.by,
                m.reason,
                micros(m.from),
                micros(m.until),
                ended.map(|e| micros(e.at)),
                ended.map(|e| e.by.as_str()),
                ended.map(|e| e.note.as_str()),
            ])?;
        }
        _ => {}
    }
    Ok(())
}

fn save_counters(statement: &mut rusqlite::CachedStatement<'_>, c: &CounterRow) -> Result<usize, rusqlite::Error> {
    statement.execute(params![
        c.key_id,
        c.tx_lease_end,
        c.rx_highest,
        c.birth.map(|b| b.0),
        c.birth.map(|b| b.1),
        c.birth.map(|b| b.2)
    ])
}

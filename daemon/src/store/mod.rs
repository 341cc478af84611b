//! The daemon's memory: events, the protocol's replay counters, each siren's last known
//! state, campaigns, warnings and the audit log, in SQLite (WAL; one daemon, the embedded
//! default) or PostgreSQL (two or more daemons, one of them leading: `crate::leadership`).
//!
//! Writes go through one writer thread that commits everything queued so far in a single
//! transaction, so a burst of thousands of events costs a handful of commits and never blocks
//! the caller. Reads use connections of their own beside the writer. Counter leases must be
//! durable before they are used (docs/protocol.md §4.2): callers [`Store::flush`] before
//! granting one. A leader's store is fenced with its epoch: a commit that finds another
//! epoch in the database is refused (`DbError::Fenced`), so a deposed leader writes nothing.

mod postgres;
mod reads;
mod schema;
pub mod scratch;
pub(crate) mod sql;
mod sqlite;
mod writer;

use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use jiff::Timestamp;
use std::time::Duration;

use crate::fleet::Acknowledgement;
use crate::maintenance::Window;
use crate::sounding::campaign::Campaign;

use self::sql::Db;
pub use self::sql::DbError;
use self::sqlite::SqliteDb;

/// Committed events a live follower may fall behind by before it is told it lagged.
pub const CHANGES_KEPT: usize = 4096;
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
/// Connections reading a PostgreSQL store.
const PG_READERS: usize = 2;

/// Where the store is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A SQLite file.
    Sqlite(PathBuf),
    /// A PostgreSQL database (`postgres://...`).
    Postgres(String),
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Sqlite(p) => write!(f, "{}", p.display()),
            // Never the password.
            Self::Postgres(url) => match url.parse::<::postgres::Config>() {
                Ok(c) => {
                    let hosts: Vec<String> = c
                        .get_hosts()
                        .iter()
                        .map(|h| match h {
                            ::postgres::config::Host::Tcp(h) => h.clone(),
                            ::postgres::config::Host::Unix(p) => p.display().to_string(),
                        })
                        .collect();
                    let ports = c.get_ports().iter().map(u16::to_string).collect::<Vec<_>>().join(",");
                    write!(
                        f,
                        "postgres://{}@{}:{ports}/{}",
                        c.get_user().unwrap_or_default(),
                        hosts.join(","),
                        c.get_dbname().unwrap_or_default()
                    )
                }
                Err(_) => f.write_str("postgres://(unreadable URL)"),
            },
        }
    }
}

/// A store operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{at}: {source}")]
    Open { at: String, source: DbError },
    #[error("{at}: written by a newer sirend (schema {found}, this one knows {})", schema::VERSION)]
    NewerSchema { at: String, found: i64 },
    #[error("database: {0}")]
    Db(#[from] DbError),
    #[error("the store's writer has stopped")]
    WriterGone,
    /// The transaction holding the write could not be committed (disk full, read-only,
    /// I/O error, database unreachable): what it held is not stored.
    #[error("could not commit to the store: {0}")]
    Commit(String),
    #[error("starting the store's writer: {0}")]
    Thread(std::io::Error),
    /// The writer did not answer in time: the disk is slow, hung or frozen. What was asked
    /// may still be written later; it must not be relied on now.
    #[error("the store did not answer within {} s (disk or database slow or hung)", ANSWER_WITHIN.as_secs())]
    Stalled,
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        Self::Db(DbError::Sqlite(e))
    }
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
    /// The client's address (empty when not known); for a write a standby forwarded, followed
    /// by the standby's name and the address it had the write from:
    /// `10.1.0.2 (site-b, for 192.168.20.14)`.
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
    reader: Reader,
    events_written: Arc<AtomicU64>,
    health: Arc<Health>,
    /// Each event once committed, with its id.
    changes: tokio::sync::broadcast::Sender<Stored>,
    /// The id of the last event told to followers (by the writer, or by [`Store::tail`]).
    told: Arc<AtomicI64>,
    /// The leadership epoch every commit must still find in the database (0: none is
    /// checked, a single daemon's store).
    fence: Arc<AtomicI64>,
}

/// Where reads run.
enum Reader {
    /// SQLite: one connection, used on the caller's thread (WAL lets it read beside the
    /// writer).
    Local(Mutex<SqliteDb>),
    /// PostgreSQL: connections on threads of their own, fed through a queue.
    Threads(Sender<ReadJob>),
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Local(_) => "Reader::Local",
            Self::Threads(_) => "Reader::Threads",
        })
    }
}

type ReadJob = Box<dyn FnOnce(&mut dyn Db) + Send>;

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
    /// Writes refused because another daemon took the lead over.
    fenced: AtomicU64,
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
    /// Writes refused since the store was opened because another daemon had taken the lead
    /// over (what a former leader still had queued).
    pub fenced: u64,
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
            fenced: AtomicU64::default(),
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

impl Store {
    /// Opens (creating if needed) the SQLite database at `path`.
    pub fn open(path: &std::path::Path) -> Result<Self, StoreError> {
        Self::open_at(&Location::Sqlite(path.to_owned()))
    }

    /// Opens the store at `location`, bringing its schema up to date.
    pub fn open_at(location: &Location) -> Result<Self, StoreError> {
        let at = location.to_string();
        let open_err = |source| StoreError::Open { at: at.clone(), source };
        let (writer_db, reader): (Box<dyn Db>, Reader) = match location {
            Location::Sqlite(path) => {
                let mut db = sqlite::open(path).map_err(|e| open_err(e.into()))?;
                migrated(&mut db, &at)?;
                let reader = sqlite::open(path).map_err(|e| open_err(e.into()))?;
                (Box::new(db), Reader::Local(Mutex::new(reader)))
            }
            Location::Postgres(url) => {
                let config = postgres::config(url, "sirend").map_err(|e| open_err(e.into()))?;
                // The client must not run on an async thread: connect and migrate on one of
                // the store's own.
                let migrating = config.clone();
                let at_ = at.clone();
                let db = std::thread::spawn(move || -> Result<postgres::PgDb, StoreError> {
                    let mut db = postgres::PgDb::new(migrating);
                    migrated(&mut db, &at_)?;
                    Ok(db)
                })
                .join()
                .map_err(|_| StoreError::WriterGone)??;
                (Box::new(db), Reader::Threads(read_threads(&config)?))
            }
        };
        let events_written = Arc::new(AtomicU64::new(0));
        let (writes, rx) = mpsc::channel();
        let health = Arc::new(Health::default());
        let (changes, _) = tokio::sync::broadcast::channel(CHANGES_KEPT);
        let told = Arc::new(AtomicI64::new(0));
        let fence = Arc::new(AtomicI64::new(0));
        let parts = writer::Parts {
            events_written: Arc::clone(&events_written),
            health: Arc::clone(&health),
            changes: changes.clone(),
            told: Arc::clone(&told),
            fence: Arc::clone(&fence),
        };
        let thread = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || writer::write_loop(writer_db, &rx, &parts))
            .map_err(StoreError::Thread)?;
        let store =
            Self { writes: Some(writes), writer: Some(thread), reader, events_written, health, changes, told, fence };
        store.told.store(store.last_event_id()?, Ordering::Relaxed);
        Ok(store)
    }

    /// From now on, a commit succeeds only while the database's leadership epoch is `epoch`
    /// (0: any; a single daemon's store).
    pub fn fence(&self, epoch: i64) {
        self.fence.store(epoch, Ordering::SeqCst);
    }

    fn send(&self, w: Write) -> Result<(), StoreError> {
        self.writes.as_ref().ok_or(StoreError::WriterGone)?.send(w).map_err(|_| StoreError::WriterGone)
    }

    /// Every event from now on, as it is committed, with its id. A receiver that falls more
    /// than [`CHANGES_KEPT`] behind is told it lagged (it reads the log from its last id).
    pub fn follow(&self) -> tokio::sync::broadcast::Receiver<Stored> {
        self.changes.subscribe()
    }

    /// Tells followers the events another daemon committed since the last one told (a
    /// standby's view of the leader's log); how many.
    pub fn tail(&self) -> Result<usize, StoreError> {
        let after = self.told.load(Ordering::Relaxed);
        let new = self.events(&EventQuery { after_id: Some(after), limit: 10_000, ..EventQuery::default() })?;
        let n = new.len();
        for stored in new {
            self.told.fetch_max(stored.id, Ordering::Relaxed);
            let _ = self.changes.send(stored);
        }
        Ok(n)
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

    /// Queues a LIVE activation as it is now without waiting for the commit (a stop must not
    /// wait for the disk).
    pub fn queue_activation(&self, a: &crate::live::Activation) -> Result<(), StoreError> {
        self.send(Write::Activation(a.id, serde_json::to_string(a).unwrap_or_default()))
    }

    /// Queues what a siren announced in its BIRTH.
    pub fn save_birth(&self, row: BirthRow) -> Result<(), StoreError> {
        self.send(Write::Birth(row))
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

    /// Queues an entry of the audit log.
    pub fn audit(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        self.send(Write::Audit(entry.clone()))
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
            fenced: self.health.fenced.load(Ordering::Relaxed),
        }
    }

    /// Events committed since the store was opened.
    pub fn events_written(&self) -> u64 {
        self.events_written.load(Ordering::Relaxed)
    }

    /// Runs `read` on a reading connection: on the caller's thread for SQLite, on a reader
    /// thread for PostgreSQL (waiting at most [`ANSWER_WITHIN`]).
    fn read<T: Send + 'static>(
        &self,
        read: impl FnOnce(&mut dyn Db) -> Result<T, DbError> + Send + 'static,
    ) -> Result<T, StoreError> {
        match &self.reader {
            Reader::Local(db) => Ok(read(&mut *db.lock().unwrap_or_else(PoisonError::into_inner))?),
            Reader::Threads(jobs) => {
                let (reply, rx) = mpsc::channel();
                jobs.send(Box::new(move |db: &mut dyn Db| drop(reply.send(read(db)))))
                    .map_err(|_| StoreError::WriterGone)?;
                Ok(answer(&rx)??)
            }
        }
    }
}

/// Brings `db` to the current schema.
fn migrated(db: &mut dyn Db, at: &str) -> Result<(), StoreError> {
    match schema::migrate(db) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(found)) => Err(StoreError::NewerSchema { at: at.to_owned(), found }),
        Err(source) => Err(StoreError::Open { at: at.to_owned(), source }),
    }
}

/// Threads reading a PostgreSQL store, each with its connection, taking jobs from one queue.
fn read_threads(config: &::postgres::Config) -> Result<Sender<ReadJob>, StoreError> {
    let (jobs, queue) = mpsc::channel::<ReadJob>();
    let queue = Arc::new(Mutex::new(queue));
    for i in 0..PG_READERS {
        let queue = Arc::clone(&queue);
        let mut db = postgres::PgDb::new(config.clone());
        std::thread::Builder::new()
            .name(format!("store-reader-{i}"))
            .spawn(move || {
                loop {
                    let job = queue.lock().unwrap_or_else(PoisonError::into_inner).recv();
                    let Ok(job) = job else { return };
                    job(&mut db);
                }
            })
            .map_err(StoreError::Thread)?;
    }
    Ok(jobs)
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

/// The writer's (or a reader's) answer, if it comes in time.
fn answer<T>(rx: &Receiver<T>) -> Result<T, StoreError> {
    rx.recv_timeout(ANSWER_WITHIN).map_err(|e| match e {
        mpsc::RecvTimeoutError::Timeout => StoreError::Stalled,
        mpsc::RecvTimeoutError::Disconnected => StoreError::WriterGone,
    })
}

fn micros(t: Timestamp) -> i64 {
    t.as_microsecond()
}

fn timestamp(us: i64) -> Timestamp {
    Timestamp::from_microsecond(us).unwrap_or(Timestamp::UNIX_EPOCH)
}

//! Leadership among daemons sharing one PostgreSQL database: exactly one leads (commands the
//! sirens, runs campaigns, writes their state); the others are hot standbys that serve the
//! read API and the console and forward writes to the leader.
//!
//! - [`lease`]: the lease and its timing, sans IO;
//! - [`keeper`]: takes and renews it in the database;
//! - [`gate`]: what the link tasks look at before every frame they write.
//!
//! A daemon alone on SQLite leads for good (epoch 0) and its gate is always open.

pub mod gate;
pub mod keeper;
pub mod lease;

use std::time::Duration;

use jiff::Timestamp;
use serde::Serialize;
use tokio::sync::{mpsc, watch};

pub use self::gate::CommandGate;
pub use self::lease::{Change, Timing};

/// A daemon, by name and the URL of its API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Peer {
    pub name: String,
    pub url: String,
}

/// A daemon sharing the database, as it last said it was alive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Member {
    pub name: String,
    pub url: String,
    /// It led when it last said so.
    pub leads: bool,
    #[schema(value_type = String)]
    pub seen: Timestamp,
    /// Seen within three renewal periods.
    pub alive: bool,
}

/// Who leads, as this daemon knows it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Status {
    /// This daemon's name.
    pub name: String,
    /// Whether several daemons may share this daemon's database (PostgreSQL).
    pub shared: bool,
    /// This daemon leads.
    pub leads: bool,
    /// The term this daemon leads, or the highest it has seen.
    pub epoch: i64,
    /// When the leader's term began.
    #[schema(value_type = Option<String>)]
    pub since: Option<Timestamp>,
    /// The leader (this daemon when it leads); none while nobody does.
    pub leader: Option<Peer>,
    /// Every daemon that has shared the database, alive or not.
    pub daemons: Vec<Member>,
    /// How many daemons should be alive (`[leadership] daemons`).
    pub expected: u32,
    /// Seconds a lease lasts; a standby takes over at most this plus one renewal period
    /// after the leader's death.
    pub lease_s: f64,
}

impl Status {
    /// A daemon alone on its store: it leads, for good.
    pub fn alone(name: &str, url: &str, since: Timestamp) -> Self {
        Self {
            name: name.to_owned(),
            shared: false,
            leads: true,
            epoch: 0,
            since: Some(since),
            leader: Some(Peer { name: name.to_owned(), url: url.to_owned() }),
            daemons: vec![Member { name: name.to_owned(), url: url.to_owned(), leads: true, seen: since, alive: true }],
            expected: 1,
            lease_s: 0.0,
        }
    }

    /// Daemons seen alive.
    pub fn alive(&self) -> usize {
        self.daemons.iter().filter(|d| d.alive).count()
    }
}

/// What a daemon on a shared database runs with.
#[derive(Debug)]
pub struct Leadership {
    pub status: watch::Receiver<Status>,
    /// Leading starts and ends, in order.
    pub changes: mpsc::UnboundedReceiver<Change>,
    pub gate: CommandGate,
    /// The keeper's thread: it ends once `changes` is dropped.
    pub keeper: std::thread::JoinHandle<()>,
}

/// Settings of the lease.
#[derive(Debug, Clone)]
pub struct Settings {
    pub url: String,
    pub name: String,
    pub api_url: String,
    pub lease: Duration,
    pub expected: u32,
}

/// Starts keeping the lease on a thread of its own (a leader's renewals must not wait behind
/// the HTTP API's tasks).
pub fn start(settings: &Settings) -> anyhow::Result<Leadership> {
    let timing = Timing { lease: settings.lease };
    let config = keeper::config(&settings.url, timing.renew_every())?;
    let me = keeper::Identity {
        name: settings.name.clone(),
        holder: format!("{}#{}", settings.name, hex::encode(rand::random::<[u8; 4]>())),
        url: settings.api_url.clone(),
    };
    let mut first = Status::alone(&settings.name, &settings.api_url, Timestamp::now());
    first.shared = true;
    first.leads = false;
    first.since = None;
    first.leader = None;
    first.daemons.clear();
    first.expected = settings.expected;
    first.lease_s = settings.lease.as_secs_f64();
    let (status_tx, status) = watch::channel(first);
    let (changes_tx, changes) = mpsc::unbounded_channel();
    let gate = CommandGate::closed();
    let outputs = keeper::Outputs { status: status_tx, changes: changes_tx, gate: gate.clone() };
    let expected = settings.expected;
    let keeper = std::thread::Builder::new().name("leadership".into()).spawn(move || {
        match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(rt) => rt.block_on(keeper::run(config, me, lease::Lease::new(timing), expected, outputs)),
            Err(e) => tracing::error!(error = %e, "cannot start the leadership runtime"),
        }
    })?;
    Ok(Leadership { status, changes, gate, keeper })
}

//! The lease keeper: every renewal period, takes or renews the lease in PostgreSQL (every
//! statement under a client-side timeout, on a connection of its own), records this daemon
//! among those alive, and tells the daemon what changed. The lease's logic is in
//! [`super::lease`]; this is its IO.

use std::time::{Duration, Instant};

use jiff::Timestamp;
use tokio::sync::{mpsc, watch};
use tokio_postgres::{Client, NoTls};

use super::lease::{Change, Holder, Lease, Outcome};
use super::{CommandGate, Member, Peer, Status};

/// Takes the lease for `holder` if it is free or run out, or renews it if `holder` has it.
/// A lease taken from another daemon, or taken again after it ran out, starts a new term
/// (the epoch grows by one); a renewal keeps the term. The database's clock decides.
const TAKE_OR_RENEW: &str = "
    WITH now AS (SELECT (EXTRACT(EPOCH FROM clock_timestamp()) * 1000000)::BIGINT AS us)
    INSERT INTO leadership (id, holder, url, epoch, since_us, expires_us)
    SELECT 1, $1, $2, 1, now.us, now.us + $3 FROM now
    ON CONFLICT (id) DO UPDATE SET
        epoch = CASE WHEN leadership.holder = excluded.holder AND leadership.expires_us >= excluded.since_us
                     THEN leadership.epoch ELSE leadership.epoch + 1 END,
        since_us = CASE WHEN leadership.holder = excluded.holder AND leadership.expires_us >= excluded.since_us
                     THEN leadership.since_us ELSE excluded.since_us END,
        holder = excluded.holder,
        url = excluded.url,
        expires_us = excluded.expires_us
    WHERE leadership.holder = excluded.holder OR leadership.expires_us < excluded.since_us
    RETURNING epoch, since_us";

/// Ends this run's lease now (if it holds it) and its record among the living.
const RELEASE: &str = "
    WITH released AS (UPDATE leadership SET expires_us = 0 WHERE holder = $1)
    UPDATE daemons SET seen_us = 0, leads = 0 WHERE name = $2";

const HOLDER: &str = "SELECT holder, url, epoch, since_us FROM leadership WHERE id = 1";

const SEEN: &str = "
    INSERT INTO daemons (name, url, seen_us, leads)
    VALUES ($1, $2, (EXTRACT(EPOCH FROM clock_timestamp()) * 1000000)::BIGINT, $3)
    ON CONFLICT (name) DO UPDATE SET url = excluded.url, seen_us = excluded.seen_us, leads = excluded.leads";

const DAEMONS: &str = "
    SELECT name, url, seen_us, leads, (EXTRACT(EPOCH FROM clock_timestamp()) * 1000000)::BIGINT
    FROM daemons ORDER BY name";

/// Who this daemon is among those sharing the database.
#[derive(Debug, Clone)]
pub struct Identity {
    pub name: String,
    /// Unique to this run of the daemon: a restarted leader does not inherit its own lease.
    pub holder: String,
    pub url: String,
}

/// The keeper's way to the daemon.
#[derive(Debug)]
pub struct Outputs {
    pub status: watch::Sender<Status>,
    pub changes: mpsc::UnboundedSender<Change>,
    pub gate: CommandGate,
}

/// Runs until the daemon drops the receiving end of `changes`.
pub async fn run(config: tokio_postgres::Config, me: Identity, mut lease: Lease, expected: u32, out: Outputs) {
    let every = lease.timing().renew_every();
    let mut client: Option<Client> = None;
    // Whether the last attempt failed: a database out of reach is logged once, not at every
    // attempt, and its return once.
    let mut failing = false;
    loop {
        if out.changes.is_closed() {
            // The daemon has stopped commanding and is going: the lease is handed back so
            // that a standby takes over at its next attempt, not at the lease's end.
            out.gate.open_until(None);
            if let Some(c) = &client {
                match tokio::time::timeout(every, c.execute(RELEASE, &[&me.holder, &me.name])).await {
                    Ok(Ok(_)) => tracing::info!(daemon = %me.name, "leadership handed back"),
                    Ok(Err(e)) => tracing::warn!(error = %e, "the lease could not be handed back"),
                    Err(_) => tracing::warn!("the lease could not be handed back in time"),
                }
            }
            return;
        }
        let sent = Instant::now();
        let attempt = tokio::time::timeout(every, attempt(&config, &mut client, &me, &lease));
        let (outcome, daemons) = match attempt.await {
            Ok(Ok(found)) => found,
            Ok(Err(e)) => {
                client = None;
                (Outcome::Failed(e.to_string()), None)
            }
            Err(_) => {
                client = None;
                (Outcome::Failed(format!("no answer within {} ms", every.as_millis())), None)
            }
        };
        match (&outcome, failing) {
            (Outcome::Failed(e), false) => {
                tracing::warn!(error = %e, "the leadership lease could not be taken or renewed; trying again");
            }
            (Outcome::Failed(e), true) => tracing::debug!(error = %e, "the leadership lease still out of reach"),
            (_, true) => tracing::info!("the leadership lease can be reached again"),
            (_, false) => {}
        }
        failing = matches!(outcome, Outcome::Failed(_));
        let change = lease.attempted(sent, outcome, Instant::now());
        if !tell(&out, &lease, change, &me, expected, daemons) {
            return;
        }
        // Until the next attempt; if the commanding time ends first, step down then.
        let next = sent + every;
        while let Some(until) = lease.commanding_until().filter(|u| *u < next) {
            tokio::time::sleep_until(until.into()).await;
            let change = lease.tick(Instant::now());
            if !tell(&out, &lease, change, &me, expected, None) {
                return;
            }
        }
        tokio::time::sleep_until(next.into()).await;
    }
}

/// Opens or closes the gate, tells the daemon of a change, publishes the status; `false`
/// once the daemon is gone.
fn tell(
    out: &Outputs,
    lease: &Lease,
    change: Change,
    me: &Identity,
    expected: u32,
    daemons: Option<Vec<Member>>,
) -> bool {
    out.gate.open_until(lease.commanding_until());
    match &change {
        Change::None => {}
        Change::Lead { epoch } => tracing::warn!(epoch, daemon = %me.name, "this daemon leads now"),
        Change::StepDown { why } => tracing::warn!(why = %why, daemon = %me.name, "this daemon stops leading"),
    }
    if change != Change::None && out.changes.send(change).is_err() {
        return false;
    }
    out.status.send_modify(|s| {
        s.leads = lease.leading().is_some();
        s.epoch = lease.leading().map_or(lease.epoch(), |(e, _)| e);
        s.since = lease.leading().map(|(_, since)| since).or_else(|| lease.leader().map(|h| h.since));
        s.leader = match (lease.leading(), lease.leader()) {
            (Some(_), _) => Some(Peer { name: me.name.clone(), url: me.url.clone() }),
            (None, Some(h)) => Some(Peer { name: h.name.clone(), url: h.url.clone() }),
            (None, None) => None,
        };
        s.expected = expected;
        if let Some(d) = daemons {
            s.daemons = d;
        }
    });
    true
}

fn micros_to_timestamp(us: i64) -> Timestamp {
    Timestamp::from_microsecond(us).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// One attempt: take or renew the lease, say this daemon is alive, and read who else is.
async fn attempt(
    config: &tokio_postgres::Config,
    client: &mut Option<Client>,
    me: &Identity,
    lease: &Lease,
) -> Result<(Outcome, Option<Vec<Member>>), tokio_postgres::Error> {
    if client.as_ref().is_none_or(Client::is_closed) {
        let (c, connection) = config.connect(NoTls).await?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "the leadership connection ended");
            }
        });
        *client = Some(c);
    }
    let Some(c) = client.as_ref() else { unreachable!("connected above") };
    let lease_us = i64::try_from(lease.timing().lease.as_micros()).unwrap_or(i64::MAX);
    let outcome = match c.query_opt(TAKE_OR_RENEW, &[&me.holder, &me.url, &lease_us]).await? {
        Some(row) => Outcome::Held { epoch: row.try_get(0)?, since: micros_to_timestamp(row.try_get(1)?) },
        None => match c.query_opt(HOLDER, &[]).await? {
            Some(row) => {
                let holder: String = row.try_get(0)?;
                Outcome::HeldBy(Holder {
                    // `name#run`: the name is what people read.
                    name: holder.split_once('#').map_or(holder.as_str(), |(n, _)| n).to_owned(),
                    url: row.try_get(1)?,
                    epoch: row.try_get(2)?,
                    since: micros_to_timestamp(row.try_get(3)?),
                })
            }
            // Deleted between the two statements: the next attempt takes it.
            None => Outcome::Failed("the lease row is missing".into()),
        },
    };
    let leads = i64::from(matches!(outcome, Outcome::Held { .. }));
    c.execute(SEEN, &[&me.name, &me.url, &leads]).await?;
    let alive_within = i64::try_from((lease.timing().renew_every() * 3).as_micros()).unwrap_or(i64::MAX);
    let daemons = c
        .query(DAEMONS, &[])
        .await?
        .iter()
        .map(|r| -> Result<Member, tokio_postgres::Error> {
            let seen: i64 = r.try_get(2)?;
            let now: i64 = r.try_get(4)?;
            Ok(Member {
                name: r.try_get(0)?,
                url: r.try_get(1)?,
                leads: r.try_get::<_, i64>(3)? != 0,
                seen: micros_to_timestamp(seen),
                alive: now - seen <= alive_within,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((outcome, Some(daemons)))
}

/// The keeper's connection settings: a lock it waits for (a leader's commit holding the
/// leadership row) and every statement end within one renewal period.
pub fn config(url: &str, every: Duration) -> Result<tokio_postgres::Config, tokio_postgres::Error> {
    let mut config: tokio_postgres::Config = url.parse()?;
    config.application_name("sirend-leadership");
    config.connect_timeout(every);
    config.keepalives(true).keepalives_idle(Duration::from_secs(5));
    config.tcp_user_timeout(Duration::from_secs(5));
    let ms = every.as_millis();
    let options =
        format!("{} -c lock_timeout={ms} -c statement_timeout={ms}", config.get_options().unwrap_or_default());
    config.options(options.trim());
    Ok(config)
}

//! The store's writer thread: commits what arrives in batches, keeps what a failed commit
//! held to try again, and refuses a deposed leader's writes.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver};

use super::sql::{Db, DbError, Dialect, Dialects, Row, Value, values};
use super::{CounterRow, Health, MAX_BACKLOG_EVENTS, MAX_BATCH, RETRY_EVERY, Stored, Write, micros};

/// What the writer shares with the store.
pub(super) struct Parts {
    pub(super) events_written: Arc<AtomicU64>,
    pub(super) health: Arc<Health>,
    pub(super) changes: tokio::sync::broadcast::Sender<Stored>,
    pub(super) told: Arc<AtomicI64>,
    pub(super) fence: Arc<AtomicI64>,
}

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

/// Commits what arrives, in batches. Writes whose commit failed are kept (events up to
/// [`MAX_BACKLOG_EVENTS`]) and tried again every [`RETRY_EVERY`], so a disk that was full or
/// read-only for a while, or a database that was out of reach, loses nothing it had room to
/// keep. Writes refused by the fence are never kept: another daemon leads.
pub(super) fn write_loop(mut db: Box<dyn Db>, rx: &Receiver<Write>, parts: &Parts) {
    let health = &parts.health;
    // A failure a flush has not reported yet.
    let mut unreported: Option<String> = None;
    let mut backlog: Vec<Write> = Vec::new();
    let mut open = true;
    while open || !backlog.is_empty() {
        let Some((batch, retrying)) = gather(rx, &mut backlog, &mut open) else { break };
        health.commit_started();
        let fence = parts.fence.load(Ordering::SeqCst);
        let committed = commit(&mut *db, &batch, fence);
        health.commit_ended();
        let mut created = Vec::new();
        let mut event_ids = Vec::new();
        let mut fenced = false;
        let outcome = match committed {
            Ok((n, ids, events)) => {
                created = ids;
                event_ids = events;
                parts.events_written.fetch_add(n, Ordering::Relaxed);
                if retrying > 0 {
                    tracing::info!(writes = retrying, "the store commits again: the writes kept meanwhile are stored");
                }
                health.committed();
                Ok(())
            }
            Err(e @ DbError::Fenced { .. }) => {
                fenced = true;
                health.fenced.fetch_add(batch.len() as u64, Ordering::Relaxed);
                tracing::warn!(error = %e, writes = batch.len(), "writes refused: another daemon leads");
                keep_audit(&mut *db, &batch);
                Err(e.to_string())
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
                _ if fenced => {}
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
                        parts.told.fetch_max(id, Ordering::Relaxed);
                        let _ = parts.changes.send(Stored { id, event });
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
        if !open && outcome.is_err() && !fenced {
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

/// The upsert of counter rows after `VALUES ...`: a lease end or a receive counter never
/// goes back.
const COUNTERS_CONFLICT: Dialects = Dialects {
    sqlite: " ON CONFLICT (key_id) DO UPDATE SET
                 tx_lease_end = MAX(tx_lease_end, excluded.tx_lease_end),
                 rx_highest = MAX(rx_highest, excluded.rx_highest),
                 birth_boot_seq = excluded.birth_boot_seq, birth_counter = excluded.birth_counter,
                 birth_death_seen = excluded.birth_death_seen",
    postgres: " ON CONFLICT (key_id) DO UPDATE SET
                 tx_lease_end = GREATEST(counters.tx_lease_end, excluded.tx_lease_end),
                 rx_highest = GREATEST(counters.rx_highest, excluded.rx_highest),
                 birth_boot_seq = excluded.birth_boot_seq, birth_counter = excluded.birth_counter,
                 birth_death_seen = excluded.birth_death_seen",
};

/// Commits `batch` in one transaction: the events written, and the ids of the campaigns it
/// created (in order; `None` where the occurrence already had one), and the events' ids.
/// With a `fence` (an epoch), the transaction ends by locking the leadership row and commits
/// only if the epoch there is still `fence`: a takeover, which updates that row, either came
/// first (the commit is refused) or waits for the commit. The lock is taken last so that a
/// long batch does not hold up the leader's own renewals.
fn commit(db: &mut dyn Db, batch: &[Write], fence: i64) -> Result<Committed, DbError> {
    db.batch("BEGIN")?;
    let written = write_all(db, batch).and_then(|w| check_fence(db, fence).map(|()| w));
    match written.and_then(|w| db.batch("COMMIT").map(|()| w)) {
        Ok(w) => Ok(w),
        Err(e) => {
            let _ = db.batch("ROLLBACK");
            Err(e)
        }
    }
}

fn check_fence(db: &mut dyn Db, fence: i64) -> Result<(), DbError> {
    if fence == 0 || db.dialect() == Dialect::Sqlite {
        return Ok(());
    }
    let current =
        db.query_opt("SELECT epoch FROM leadership WHERE id = 1 FOR SHARE", &[])?.map_or(Ok(0), |r| r.int(0))?;
    if current == fence { Ok(()) } else { Err(DbError::Fenced { mine: fence, current }) }
}

/// A fenced batch's audit entries, committed alone: what people asked of this daemon is
/// recorded whoever leads.
fn keep_audit(db: &mut dyn Db, batch: &[Write]) {
    let audit: Vec<Write> = batch
        .iter()
        .filter_map(|w| if let Write::Audit(a) = w { Some(Write::Audit(a.clone())) } else { None })
        .collect();
    if !audit.is_empty() {
        if let Err(e) = commit(db, &audit, 0) {
            tracing::error!(error = %e, entries = audit.len(), "audit entries could not be stored");
        }
    }
}

fn write_all(db: &mut dyn Db, batch: &[Write]) -> Result<Committed, DbError> {
    let mut created = Vec::new();
    let mut queued = Vec::new();
    let mut states: std::collections::BTreeMap<&str, &super::StateRow> = std::collections::BTreeMap::new();
    let mut counters: std::collections::BTreeMap<u16, CounterRow> = std::collections::BTreeMap::new();
    for w in batch {
        match w {
            Write::Acknowledgement(..) | Write::Maintenance(_) => save_crews_word(db, w)?,
            Write::Activation(id, body) => {
                db.execute(
                    "INSERT INTO activations (id, body) VALUES ($1, $2)
                     ON CONFLICT (id) DO UPDATE SET body = excluded.body",
                    &values![*id, body],
                )?;
            }
            Write::CapAlert(r) => {
                db.execute(
                    "INSERT INTO cap_alerts (sender, identifier, sent, body) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (sender, identifier, sent) DO UPDATE SET body = excluded.body",
                    &values![&r.sender, &r.identifier, &r.sent, serde_json::to_string(&r).unwrap_or_default()],
                )?;
            }
            Write::Campaign { id, phase, body } => {
                db.execute("UPDATE campaigns SET phase = $1, body = $2 WHERE id = $3", &values![*phase, body, *id])?;
            }
            Write::Event(e) => queued.push(e),
            // The last state of each siren in the batch is what counts.
            Write::State(s) => drop(states.insert(s.siren.as_str(), s)),
            Write::Counters(c) => merge_counters(&mut counters, c),
            Write::Durable(rows, _) => {
                for c in rows {
                    merge_counters(&mut counters, c);
                }
            }
            Write::Birth(b) => {
                db.execute(
                    "INSERT INTO births (siren, at_us, boot_seq, firmware, capabilities, heartbeat_s)
                     VALUES ($1, $2, $3, $4, $5, $6)
                     ON CONFLICT (siren) DO UPDATE SET at_us = excluded.at_us, boot_seq = excluded.boot_seq,
                         firmware = excluded.firmware, capabilities = excluded.capabilities,
                         heartbeat_s = excluded.heartbeat_s",
                    &values![&b.siren, micros(b.at), b.boot_seq, &b.firmware, b.capabilities, b.heartbeat_s],
                )?;
            }
            Write::NewCampaign { schedule, instant, .. } => {
                let row = db.query_opt(
                    "INSERT INTO campaigns (schedule, instant_us, phase, body) VALUES ($1, $2, 'planned', '')
                     ON CONFLICT (schedule, instant_us) DO NOTHING RETURNING id",
                    &values![schedule, micros(*instant)],
                )?;
                created.push(row.map(|r| r.num::<u32>(0)).transpose()?);
            }
            Write::Audit(a) => {
                db.execute(
                    "INSERT INTO audit (at_us, actor, action, target, allowed, detail, client)
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    &values![micros(a.at), &a.actor, &a.action, &a.target, a.allowed, &a.detail, &a.client],
                )?;
            }
            Write::Flush(_) => {}
        }
    }
    let event_ids = insert_events(db, &queued)?;
    let state_rows: Vec<Vec<Value>> = states
        .values()
        .map(|s| values![&s.siren, &s.state, micros(s.since), s.faults, s.last_seen.map(micros), s.flaps].to_vec())
        .collect();
    write_rows(
        db,
        "INSERT INTO siren_state (siren, state, since_us, faults, last_seen_us, flaps)",
        " ON CONFLICT (siren) DO UPDATE SET state = excluded.state, since_us = excluded.since_us,
             faults = excluded.faults, last_seen_us = excluded.last_seen_us, flaps = excluded.flaps",
        &state_rows,
    )?;
    let counter_rows: Vec<Vec<Value>> = counters
        .values()
        .map(|c| {
            values![
                c.key_id,
                c.tx_lease_end,
                c.rx_highest,
                c.birth.map(|b| b.0),
                c.birth.map(|b| b.1),
                c.birth.map(|b| b.2)
            ]
            .to_vec()
        })
        .collect();
    let conflict = COUNTERS_CONFLICT.for_(db.dialect());
    write_rows(
        db,
        "INSERT INTO counters (key_id, tx_lease_end, rx_highest, birth_boot_seq, birth_counter, birth_death_seen)",
        conflict,
        &counter_rows,
    )?;
    Ok((queued.len() as u64, created, event_ids))
}

/// Adds `c` to the batch's counter rows: per key, the highest lease end and receive counter,
/// and the latest birth (what writing them one after the other would leave).
fn merge_counters(rows: &mut std::collections::BTreeMap<u16, CounterRow>, c: &CounterRow) {
    rows.entry(c.key_id)
        .and_modify(|r| {
            r.tx_lease_end = r.tx_lease_end.max(c.tx_lease_end);
            r.rx_highest = r.rx_highest.max(c.rx_highest);
            r.birth = c.birth;
        })
        .or_insert(*c);
}

/// Rows per statement of a multi-row write, largest first: a batch is written in statements
/// of these sizes (a few shapes, each prepared once per connection), one round trip each on
/// PostgreSQL, where a statement per row would cost a round trip per row.
const CHUNKS: [usize; 5] = [256, 64, 16, 4, 1];

/// Writes `rows` (of the same width) as `head VALUES (...), (...) tail`, in statements of
/// [`CHUNKS`] rows; the rows each statement returned, in order of the statements.
fn write_rows(db: &mut dyn Db, head: &str, tail: &str, rows: &[Vec<Value>]) -> Result<Vec<Vec<Row>>, DbError> {
    let mut out = Vec::new();
    let mut rest = rows;
    while let Some(first) = rest.first() {
        let n = CHUNKS.into_iter().find(|&n| n <= rest.len()).unwrap_or(1);
        let (chunk, tail_rows) = rest.split_at(n);
        let width = first.len();
        let tuples: Vec<String> = (0..n)
            .map(|r| {
                let cells: Vec<String> = (1..=width).map(|c| format!("${}", r * width + c)).collect();
                format!("({})", cells.join(", "))
            })
            .collect();
        let sql = format!("{head} VALUES {}{tail}", tuples.join(", "));
        let params: Vec<Value> = chunk.iter().flatten().cloned().collect();
        out.push(db.query(&sql, &params)?);
        rest = tail_rows;
    }
    Ok(out)
}

/// Inserts `events` in order; their ids, in the same order.
fn insert_events(db: &mut dyn Db, events: &[&super::Event]) -> Result<Vec<i64>, DbError> {
    let rows: Vec<Vec<Value>> =
        events.iter().map(|e| values![micros(e.at), e.siren.as_ref(), &e.kind, &e.detail].to_vec()).collect();
    let mut ids = Vec::with_capacity(events.len());
    for returned in write_rows(db, "INSERT INTO events (at_us, siren, kind, detail)", " RETURNING id", &rows)? {
        // Identities are drawn row by row in the order of VALUES: sorted, they follow it.
        let mut chunk_ids = returned.iter().map(|r| r.int(0)).collect::<Result<Vec<_>, _>>()?;
        chunk_ids.sort_unstable();
        ids.extend(chunk_ids);
    }
    Ok(ids)
}

/// Writes an acknowledgement or a maintenance window.
fn save_crews_word(db: &mut dyn Db, w: &Write) -> Result<(), DbError> {
    match w {
        Write::Acknowledgement(siren, Some(a)) => {
            db.execute(
                "INSERT INTO acknowledgements (siren, state, faults, by, at_us, note, until_us)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)
                 ON CONFLICT (siren) DO UPDATE SET state = excluded.state, faults = excluded.faults,
                     by = excluded.by, at_us = excluded.at_us, note = excluded.note, until_us = excluded.until_us",
                &values![siren, a.state.as_str(), a.faults.0, &a.by, micros(a.at), &a.note, a.until.map(micros)],
            )?;
        }
        Write::Acknowledgement(siren, None) => {
            db.execute("DELETE FROM acknowledgements WHERE siren = $1", &values![siren])?;
        }
        Write::Maintenance(m) => {
            let ended = m.ended.as_ref();
            db.execute(
                "INSERT INTO maintenance
                     (id, scope, target, by, reason, from_us, until_us, ended_us, ended_by, ended_note)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                 ON CONFLICT (id) DO UPDATE SET scope = excluded.scope, target = excluded.target,
                     by = excluded.by, reason = excluded.reason, from_us = excluded.from_us,
                     until_us = excluded.until_us, ended_us = excluded.ended_us,
                     ended_by = excluded.ended_by, ended_note = excluded.ended_note",
                &values![
                    m.id,
                    m.scope.kind(),
                    m.scope.target(),
                    &m.by,
                    &m.reason,
                    micros(m.from),
                    micros(m.until),
                    ended.map(|e| micros(e.at)),
                    ended.map(|e| e.by.as_str()),
                    ended.map(|e| e.note.as_str()),
                ],
            )?;
        }
        _ => {}
    }
    Ok(())
}

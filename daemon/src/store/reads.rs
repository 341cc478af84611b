//! What the store reads back: the same statements on both databases.

use jiff::Timestamp;

use super::sql::{Db, DbError, Row, values};
use super::{
    AuditEntry, BirthRow, CounterRow, Event, EventQuery, StateRow, Store, StoreError, Stored, micros, timestamp,
};
use crate::fleet::Acknowledgement;
use crate::maintenance::{Ended, Scope, Window};
use crate::sounding::campaign::Campaign;

/// Reads every row `sql` returns as `T`.
fn all<T>(
    db: &mut dyn Db,
    sql: &str,
    params: &[super::sql::Value],
    mut read: impl FnMut(&Row) -> Result<T, DbError>,
) -> Result<Vec<T>, DbError> {
    db.query(sql, params)?.iter().map(&mut read).collect()
}

/// JSON bodies read as `T`; an unreadable one is logged and left out.
fn bodies<T: serde::de::DeserializeOwned>(rows: Vec<(i64, String)>) -> Vec<T> {
    rows.into_iter()
        .filter_map(|(id, body)| match serde_json::from_str(&body) {
            Ok(a) => Some(a),
            Err(e) => {
                tracing::error!(id, error = %e, what = std::any::type_name::<T>(), "unreadable stored record");
                None
            }
        })
        .collect()
}

fn campaign_of(id: i64, body: &str) -> Option<Campaign> {
    Campaign::restore(body).map_err(|e| tracing::error!(id, error = %e, "unreadable campaign")).ok()
}

impl Store {
    /// The latest `limit` CAP alerts received, oldest first.
    pub fn cap_alerts(&self, limit: usize) -> Result<Vec<crate::cap::intake::Received>, StoreError> {
        self.latest_bodies(
            "SELECT id, body FROM (SELECT id, body FROM cap_alerts ORDER BY id DESC LIMIT $1) AS latest ORDER BY id",
            limit,
        )
    }

    /// The latest `limit` LIVE activations, oldest first.
    pub fn activations(&self, limit: usize) -> Result<Vec<crate::live::Activation>, StoreError> {
        self.latest_bodies(
            "SELECT id, body FROM (SELECT id, body FROM activations ORDER BY id DESC LIMIT $1) AS latest ORDER BY id",
            limit,
        )
    }

    /// The (id, JSON body) rows `sql` (with the row limit as `$1`) selects, read as `T`.
    fn latest_bodies<T: serde::de::DeserializeOwned>(
        &self,
        sql: &'static str,
        limit: usize,
    ) -> Result<Vec<T>, StoreError> {
        let rows = self.read(move |db| all(db, sql, &values![limit], |r| Ok((r.int(0)?, r.text(1)?))))?;
        Ok(bodies(rows))
    }

    /// Every stored acknowledgement, by siren.
    pub fn acknowledgements(&self) -> Result<Vec<(String, Acknowledgement)>, StoreError> {
        self.read(|db| {
            all(db, "SELECT siren, state, faults, by, at_us, note, until_us FROM acknowledgements", &[], |r| {
                let state = r.text(1)?;
                Ok((
                    r.text(0)?,
                    Acknowledgement {
                        state: crate::liveness::State::from_name(&state).unwrap_or(crate::liveness::State::Unknown),
                        faults: siren_proto::message::FaultBits(r.num(2)?),
                        by: r.text(3)?,
                        at: timestamp(r.int(4)?),
                        note: r.text(5)?,
                        until: r.opt_int(6)?.map(timestamp),
                    },
                ))
            })
        })
    }

    /// Maintenance windows, the latest first: only those not ended when `open_only`.
    pub fn maintenance_windows(&self, open_only: bool, limit: usize) -> Result<Vec<Window>, StoreError> {
        self.read(move |db| {
            let rows = all(
                db,
                "SELECT id, scope, target, by, reason, from_us, until_us, ended_us, ended_by, ended_note FROM maintenance
                 WHERE ($1 = 0 OR ended_us IS NULL) ORDER BY id DESC LIMIT $2",
                &values![open_only, limit],
                |r| {
                    let ended = r.opt_int(7)?.map(|at| -> Result<Ended, DbError> {
                        Ok(Ended {
                            at: timestamp(at),
                            by: r.opt_text(8)?.unwrap_or_default(),
                            note: r.opt_text(9)?.unwrap_or_default(),
                        })
                    });
                    // A scope this version does not know (a newer store) is left out.
                    Ok(Scope::from_parts(&r.text(1)?, r.text(2)?).map(|scope| -> Result<Window, DbError> {
                        Ok(Window {
                            id: r.num(0)?,
                            scope,
                            by: r.text(3)?,
                            reason: r.text(4)?,
                            from: timestamp(r.int(5)?),
                            until: timestamp(r.int(6)?),
                            ended: ended.transpose()?,
                        })
                    }))
                },
            )?;
            rows.into_iter().flatten().collect()
        })
    }

    /// The highest maintenance window id ever stored (0 for none).
    pub fn last_maintenance_id(&self) -> Result<u32, StoreError> {
        self.read(|db| db.query_opt("SELECT COALESCE(MAX(id), 0) FROM maintenance", &[])?.map_or(Ok(0), |r| r.num(0)))
    }

    /// The id of the last event stored (0 for none).
    pub fn last_event_id(&self) -> Result<i64, StoreError> {
        self.read(|db| db.query_opt("SELECT COALESCE(MAX(id), 0) FROM events", &[])?.map_or(Ok(0), |r| r.int(0)))
    }

    /// Every siren's last BIRTH.
    pub fn births(&self) -> Result<Vec<BirthRow>, StoreError> {
        self.read(|db| {
            all(
                db,
                "SELECT siren, at_us, boot_seq, firmware, capabilities, heartbeat_s FROM births ORDER BY siren",
                &[],
                |r| {
                    Ok(BirthRow {
                        siren: r.text(0)?,
                        at: timestamp(r.int(1)?),
                        boot_seq: r.num(2)?,
                        firmware: r.text(3)?,
                        capabilities: r.num(4)?,
                        heartbeat_s: r.num(5)?,
                    })
                },
            )
        })
    }

    /// One campaign.
    pub fn campaign(&self, id: u32) -> Result<Option<Campaign>, StoreError> {
        let body = self.read(move |db| {
            db.query_opt("SELECT body FROM campaigns WHERE id = $1 AND body != ''", &values![id])?
                .map(|r| r.text(0))
                .transpose()
        })?;
        Ok(body.and_then(|b| campaign_of(id.into(), &b)))
    }

    /// Campaigns, newest instant first, optionally only those not over yet.
    pub fn campaigns(&self, open_only: bool, limit: usize) -> Result<Vec<Campaign>, StoreError> {
        let rows = self.read(move |db| {
            all(
                db,
                "SELECT id, body FROM campaigns WHERE body != ''
                   AND ($1 = 0 OR phase NOT IN ('done', 'missed', 'cancelled'))
                 ORDER BY instant_us DESC, id DESC LIMIT $2",
                &values![open_only, limit],
                |r| Ok((r.int(0)?, r.text(1)?)),
            )
        })?;
        Ok(rows.into_iter().filter_map(|(id, body)| campaign_of(id, &body)).collect())
    }

    /// The latest campaign of `schedule` that ended in `phase` (`done`, `missed`, `cancelled`).
    pub fn latest_campaign(&self, schedule: &str, phase: &str) -> Result<Option<Campaign>, StoreError> {
        let (schedule, phase) = (schedule.to_owned(), phase.to_owned());
        let row = self.read(move |db| {
            db.query_opt(
                "SELECT id, body FROM campaigns WHERE schedule = $1 AND phase = $2 AND body != ''
                 ORDER BY instant_us DESC LIMIT 1",
                &values![schedule, phase],
            )?
            .map(|r| Ok((r.int(0)?, r.text(1)?)))
            .transpose()
        })?;
        Ok(row.and_then(|(id, body)| campaign_of(id, &body)))
    }

    /// The latest occurrence of `schedule` that has a campaign.
    pub fn last_instant(&self, schedule: &str) -> Result<Option<Timestamp>, StoreError> {
        let schedule = schedule.to_owned();
        let us = self.read(move |db| {
            db.query_opt("SELECT MAX(instant_us) FROM campaigns WHERE schedule = $1", &values![schedule])?
                .map_or(Ok(None), |r| r.opt_int(0))
        })?;
        Ok(us.map(timestamp))
    }

    /// Committed events matching `q`, oldest first unless `q.newest_first`; none for a
    /// limit of 0.
    pub fn events(&self, q: &EventQuery) -> Result<Vec<Stored>, StoreError> {
        if q.limit == 0 {
            return Ok(Vec::new());
        }
        let sql = if q.newest_first {
            "SELECT id, at_us, siren, kind, detail FROM events
             WHERE id > $1 AND at_us >= $2 AND at_us < $3
               AND (CAST($4 AS TEXT) IS NULL OR siren = $4) AND (CAST($5 AS TEXT) IS NULL OR kind = $5)
             ORDER BY id DESC LIMIT $6"
        } else {
            "SELECT id, at_us, siren, kind, detail FROM events
             WHERE id > $1 AND at_us >= $2 AND at_us < $3
               AND (CAST($4 AS TEXT) IS NULL OR siren = $4) AND (CAST($5 AS TEXT) IS NULL OR kind = $5)
             ORDER BY id LIMIT $6"
        };
        let params = values![
            q.after_id.unwrap_or(0),
            q.since.map_or(i64::MIN, micros),
            q.until.map_or(i64::MAX, micros),
            q.siren.clone(),
            q.kind.clone(),
            q.limit.min(100_000),
        ];
        self.read(move |db| {
            all(db, sql, &params, |r| {
                Ok(Stored {
                    id: r.int(0)?,
                    event: Event {
                        at: timestamp(r.int(1)?),
                        siren: r.opt_text(2)?,
                        kind: r.text(3)?,
                        detail: r.text(4)?,
                    },
                })
            })
        })
    }

    /// The audit log, newest last.
    pub fn audit_log(&self, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        self.read(move |db| {
            all(
                db,
                "SELECT at_us, actor, action, target, allowed, detail, client
                 FROM (SELECT * FROM audit ORDER BY id DESC LIMIT $1) AS latest ORDER BY id",
                &values![limit],
                |r| {
                    Ok(AuditEntry {
                        at: timestamp(r.int(0)?),
                        actor: r.text(1)?,
                        action: r.text(2)?,
                        target: r.text(3)?,
                        allowed: r.int(4)? != 0,
                        detail: r.text(5)?,
                        client: r.text(6)?,
                    })
                },
            )
        })
    }

    /// Every siren's last known state.
    pub fn states(&self) -> Result<Vec<StateRow>, StoreError> {
        self.read(|db| {
            all(
                db,
                "SELECT siren, state, since_us, faults, last_seen_us, flaps FROM siren_state ORDER BY siren",
                &[],
                |r| {
                    Ok(StateRow {
                        siren: r.text(0)?,
                        state: r.text(1)?,
                        since: timestamp(r.int(2)?),
                        faults: r.num(3)?,
                        last_seen: r.opt_int(4)?.map(timestamp),
                        flaps: r.num(5)?,
                    })
                },
            )
        })
    }

    /// The replay state under one key.
    pub fn counters(&self, key_id: u16) -> Result<Option<CounterRow>, StoreError> {
        self.read(move |db| {
            db.query_opt(
                "SELECT tx_lease_end, rx_highest, birth_boot_seq, birth_counter, birth_death_seen
                 FROM counters WHERE key_id = $1",
                &values![key_id],
            )?
            .map(|r| {
                let birth = match (r.opt_num::<u32>(2)?, r.opt_num::<u32>(3)?, r.opt_int(4)?) {
                    (Some(b), Some(c), Some(d)) => Some((b, c, d != 0)),
                    _ => None,
                };
                Ok(CounterRow { key_id, tx_lease_end: r.num(0)?, rx_highest: r.num(1)?, birth })
            })
            .transpose()
        })
    }
}

//! The schema and its migrations, one list per database, step for step the same.

use super::sql::{Db, DbError, Dialect, values};

/// The schema version this build writes.
pub(crate) const VERSION: i64 = 9;
/// The advisory lock daemons starting together on one PostgreSQL take while migrating.
const MIGRATION_LOCK: i64 = 0x5349_5245_4e44; // "SIREND"

/// SQLite's migrations: each brings the store from the version before it to its own.
const SQLITE: [(i64, &str); 9] = [
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
    // Leadership among daemons sharing one database (used on PostgreSQL only; created on
    // both so that the two schemas stay one).
    (
        9,
        "BEGIN;
        CREATE TABLE IF NOT EXISTS leadership (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            holder TEXT NOT NULL,
            url TEXT NOT NULL,
            epoch INTEGER NOT NULL,
            since_us INTEGER NOT NULL,
            expires_us INTEGER NOT NULL
        );
        CREATE TABLE IF NOT EXISTS daemons (
            name TEXT PRIMARY KEY,
            url TEXT NOT NULL,
            seen_us INTEGER NOT NULL,
            leads INTEGER NOT NULL
        );
        PRAGMA user_version = 9;
        COMMIT;",
    ),
];

/// PostgreSQL's migrations, the same steps as SQLite's: integers are BIGINT (the SQLite
/// columns hold 64-bit integers too), ids an identity, booleans 0 or 1 as in SQLite.
const POSTGRES: [(i64, &str); 9] = [
    (
        1,
        "CREATE TABLE IF NOT EXISTS events (
            id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
            at_us BIGINT NOT NULL,
            siren TEXT,
            kind TEXT NOT NULL,
            detail TEXT NOT NULL
        );
        CREATE INDEX IF NOT EXISTS events_siren ON events (siren, id);
        CREATE INDEX IF NOT EXISTS events_at ON events (at_us);
        CREATE TABLE IF NOT EXISTS siren_state (
            siren TEXT PRIMARY KEY,
            state TEXT NOT NULL,
            since_us BIGINT NOT NULL,
            faults BIGINT NOT NULL,
            last_seen_us BIGINT,
            flaps BIGINT NOT NULL
        );
        CREATE TABLE IF NOT EXISTS counters (
            key_id BIGINT PRIMARY KEY,
            tx_lease_end BIGINT NOT NULL,
            rx_highest BIGINT NOT NULL,
            birth_boot_seq BIGINT,
            birth_counter BIGINT,
            birth_death_seen BIGINT
        );",
    ),
    (
        2,
        "CREATE TABLE IF NOT EXISTS audit (
            id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
            at_us BIGINT NOT NULL,
            actor TEXT NOT NULL,
            action TEXT NOT NULL,
            target TEXT NOT NULL,
            allowed BIGINT NOT NULL,
            detail TEXT NOT NULL
        );",
    ),
    (
        3,
        "CREATE TABLE IF NOT EXISTS campaigns (
            id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
            schedule TEXT NOT NULL,
            instant_us BIGINT NOT NULL,
            phase TEXT NOT NULL,
            body TEXT NOT NULL,
            UNIQUE (schedule, instant_us)
        );",
    ),
    (
        4,
        "CREATE TABLE IF NOT EXISTS births (
            siren TEXT PRIMARY KEY,
            at_us BIGINT NOT NULL,
            boot_seq BIGINT NOT NULL,
            firmware TEXT NOT NULL,
            capabilities BIGINT NOT NULL,
            heartbeat_s BIGINT NOT NULL
        );",
    ),
    (5, "ALTER TABLE audit ADD COLUMN IF NOT EXISTS client TEXT NOT NULL DEFAULT '';"),
    (
        6,
        "CREATE TABLE IF NOT EXISTS acknowledgements (
            siren TEXT PRIMARY KEY,
            state TEXT NOT NULL,
            faults BIGINT NOT NULL,
            by TEXT NOT NULL,
            at_us BIGINT NOT NULL,
            note TEXT NOT NULL,
            until_us BIGINT
        );
        CREATE TABLE IF NOT EXISTS maintenance (
            id BIGINT PRIMARY KEY,
            scope TEXT NOT NULL,
            target TEXT NOT NULL,
            by TEXT NOT NULL,
            reason TEXT NOT NULL,
            from_us BIGINT NOT NULL,
            until_us BIGINT NOT NULL,
            ended_us BIGINT,
            ended_by TEXT,
            ended_note TEXT
        );",
    ),
    (
        7,
        "CREATE TABLE IF NOT EXISTS activations (
            id BIGINT PRIMARY KEY,
            body TEXT NOT NULL
        );",
    ),
    (
        8,
        "CREATE TABLE IF NOT EXISTS cap_alerts (
            id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
            sender TEXT NOT NULL,
            identifier TEXT NOT NULL,
            sent TEXT NOT NULL,
            body TEXT NOT NULL,
            UNIQUE (sender, identifier, sent)
        );",
    ),
    (
        9,
        "CREATE TABLE IF NOT EXISTS leadership (
            id BIGINT PRIMARY KEY CHECK (id = 1),
            holder TEXT NOT NULL,
            url TEXT NOT NULL,
            epoch BIGINT NOT NULL,
            since_us BIGINT NOT NULL,
            expires_us BIGINT NOT NULL
        );
        CREATE TABLE IF NOT EXISTS daemons (
            name TEXT PRIMARY KEY,
            url TEXT NOT NULL,
            seen_us BIGINT NOT NULL,
            leads BIGINT NOT NULL
        );",
    ),
];

/// Brings the database to [`VERSION`]; the version found if it is newer than this build.
pub(crate) fn migrate(db: &mut dyn Db) -> Result<Result<(), i64>, DbError> {
    match db.dialect() {
        Dialect::Sqlite => {
            let version = db.query_opt("PRAGMA user_version", &[])?.map_or(Ok(0), |r| r.int(0))?;
            if version > VERSION {
                return Ok(Err(version));
            }
            for (to, script) in SQLITE {
                if version < to {
                    db.batch(script)?;
                }
            }
            Ok(Ok(()))
        }
        Dialect::Postgres => {
            db.execute("SELECT pg_advisory_lock($1)", &values![MIGRATION_LOCK])?;
            let migrated = migrate_postgres(db);
            let unlocked = db.execute("SELECT pg_advisory_unlock($1)", &values![MIGRATION_LOCK]);
            let migrated = migrated?;
            unlocked?;
            Ok(migrated)
        }
    }
}

fn migrate_postgres(db: &mut dyn Db) -> Result<Result<(), i64>, DbError> {
    db.batch("CREATE TABLE IF NOT EXISTS sirennet_schema (version BIGINT NOT NULL)")?;
    let found = db.query_opt("SELECT version FROM sirennet_schema", &[])?;
    let version = if let Some(r) = found {
        r.int(0)?
    } else {
        db.execute("INSERT INTO sirennet_schema (version) VALUES (0)", &[])?;
        0
    };
    if version > VERSION {
        return Ok(Err(version));
    }
    for (to, script) in POSTGRES {
        if version < to {
            db.batch("BEGIN")?;
            let step = db
                .batch(script)
                .and_then(|()| db.execute("UPDATE sirennet_schema SET version = $1", &values![to]).map(drop));
            match step {
                Ok(()) => db.batch("COMMIT")?,
                Err(e) => {
                    let _ = db.batch("ROLLBACK");
                    return Err(e);
                }
            }
        }
    }
    Ok(Ok(()))
}

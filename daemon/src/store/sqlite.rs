//! The store's statements on SQLite (WAL), the single daemon's embedded default.

use std::path::Path;

use rusqlite::Connection;
use rusqlite::types::{ToSqlOutput, ValueRef};

use super::sql::{Db, DbError, Dialect, Row, Value};

/// One SQLite connection, its statements cached.
#[derive(Debug)]
pub(crate) struct SqliteDb(pub(crate) Connection);

/// Opens `path` (creating it) as the store wants it.
pub(crate) fn open(path: &Path) -> Result<SqliteDb, rusqlite::Error> {
    let conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    // 512 KiB of page cache per connection (SQLite's default is 2 MiB): the daemon appends and
    // upserts; it never scans enough to profit from more.
    conn.pragma_update(None, "cache_size", -512)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(SqliteDb(conn))
}

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            Value::Null => ToSqlOutput::Borrowed(ValueRef::Null),
            Value::Int(v) => ToSqlOutput::Borrowed(ValueRef::Integer(*v)),
            Value::Text(v) => ToSqlOutput::Borrowed(ValueRef::Text(v.as_bytes())),
        })
    }
}

fn value(v: ValueRef<'_>) -> Value {
    match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::Int(i),
        // The store writes no floating-point or binary column; one read as text says so.
        #[allow(clippy::cast_possible_truncation, reason = "never written by the store")]
        ValueRef::Real(f) => Value::Int(f as i64),
        ValueRef::Text(t) | ValueRef::Blob(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
    }
}

impl Db for SqliteDb {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64, DbError> {
        let n = self.0.prepare_cached(sql)?.execute(rusqlite::params_from_iter(params))?;
        Ok(n as u64)
    }

    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>, DbError> {
        let mut stmt = self.0.prepare_cached(sql)?;
        let columns = stmt.column_count();
        let mut rows = stmt.query(rusqlite::params_from_iter(params))?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            out.push(Row((0..columns).map(|i| r.get_ref(i).map(value)).collect::<Result<_, _>>()?));
        }
        Ok(out)
    }

    fn batch(&mut self, sql: &str) -> Result<(), DbError> {
        Ok(self.0.execute_batch(sql)?)
    }
}

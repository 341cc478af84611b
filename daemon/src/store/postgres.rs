//! The store's statements on PostgreSQL, for two or more daemons on one database.
//!
//! The `postgres` client (the blocking face of tokio-postgres) runs a small runtime of its
//! own and must not be used on a thread that drives async tasks: the store's writer and
//! readers, and the leadership lease, each use it on a thread of their own.

use std::collections::HashMap;
use std::time::Duration;

use bytes::BytesMut;
use postgres::types::{IsNull, ToSql, Type, to_sql_checked};
use postgres::{Client, Config, NoTls, Statement};

use super::sql::{Db, DbError, Dialect, Row, Value};

/// How long connecting may take before it counts as a failure.
pub(crate) const CONNECT_WITHIN: Duration = Duration::from_secs(3);

/// The client's settings for `url` (`postgres://user@host:port/db?...`), with a connect
/// timeout, TCP keep-alives and `application_name` when the URL sets none.
pub(crate) fn config(url: &str, application: &str) -> Result<Config, postgres::Error> {
    let mut config: Config = url.parse()?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_WITHIN);
    }
    if config.get_application_name().is_none() {
        config.application_name(application);
    }
    // A peer that vanished (cable cut, host dead) is noticed in seconds, not hours.
    config.keepalives(true).keepalives_idle(Duration::from_secs(5));
    config.tcp_user_timeout(Duration::from_secs(5));
    // The server's side of the same: a session whose client vanished inside a transaction
    // holds its locks (the leadership row among them) only this long. Notices (a migration's
    // "already exists, skipping") are not news.
    let mut options = config.get_options().unwrap_or_default().to_owned();
    options.push_str(
        " -c idle_in_transaction_session_timeout=5000 -c tcp_keepalives_idle=5 -c tcp_keepalives_interval=2 \
         -c tcp_keepalives_count=2 -c client_min_messages=warning",
    );
    config.options(options.trim());
    Ok(config)
}

/// One connection, made again when it was lost (never inside a transaction: what the lost
/// connection's transaction held is gone with it, and the statements after it must not run
/// on a new connection outside any transaction); its statements prepared once per
/// connection.
pub(crate) struct PgDb {
    config: Config,
    client: Option<Client>,
    statements: HashMap<String, Statement>,
    in_transaction: bool,
}

impl std::fmt::Debug for PgDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgDb").field("connected", &self.client.is_some()).finish_non_exhaustive()
    }
}

impl PgDb {
    /// A connection to be made at first use.
    pub(crate) fn new(config: Config) -> Self {
        Self { config, client: None, statements: HashMap::new(), in_transaction: false }
    }

    fn client(&mut self) -> Result<&mut Client, DbError> {
        if self.client.as_ref().is_none_or(Client::is_closed) {
            if self.in_transaction {
                return Err(DbError::ConnectionLost);
            }
            self.statements.clear();
            self.client = None;
            self.client = Some(self.config.connect(NoTls)?);
        }
        Ok(self.client.as_mut().expect("connected above"))
    }

    fn statement(&mut self, sql: &str) -> Result<Statement, DbError> {
        // A new connection first forgets the old one's statements.
        self.client()?;
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        let r = self.client()?.prepare(sql);
        let s = self.failed(r)?;
        self.statements.insert(sql.to_owned(), s.clone());
        Ok(s)
    }

    /// Runs `op`, and once more on a new connection if the connection turned out to be lost
    /// (an idle connection learns of its loss only when used) outside a transaction.
    fn again_if_lost<T>(&mut self, mut op: impl FnMut(&mut Self) -> Result<T, DbError>) -> Result<T, DbError> {
        match op(self) {
            Err(_) if self.client.is_none() && !self.in_transaction => op(self),
            r => r,
        }
    }

    /// Forgets a connection that failed, so the next use makes a new one.
    fn failed<T>(&mut self, r: Result<T, postgres::Error>) -> Result<T, DbError> {
        r.map_err(|e| {
            if e.is_closed() || self.client.as_ref().is_some_and(Client::is_closed) {
                self.client = None;
            }
            DbError::Postgres(e)
        })
    }
}

fn refs(params: &[Value]) -> Vec<&(dyn ToSql + Sync)> {
    params.iter().map(|p| p as &(dyn ToSql + Sync)).collect()
}

impl Db for PgDb {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64, DbError> {
        self.again_if_lost(|db| {
            let statement = db.statement(sql)?;
            let r = db.client()?.execute(&statement, &refs(params));
            db.failed(r)
        })
    }

    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>, DbError> {
        let rows = self.again_if_lost(|db| {
            let statement = db.statement(sql)?;
            let r = db.client()?.query(&statement, &refs(params));
            db.failed(r)
        })?;
        rows.iter().map(row).collect()
    }

    fn batch(&mut self, sql: &str) -> Result<(), DbError> {
        match sql {
            "ROLLBACK" => {
                self.in_transaction = false;
                match self.client.as_mut().filter(|c| !c.is_closed()) {
                    Some(c) => {
                        let r = c.batch_execute(sql);
                        self.failed(r)
                    }
                    // The server rolled it back when the connection went.
                    None => Ok(()),
                }
            }
            "COMMIT" => {
                let r = self.client().map(|c| c.batch_execute(sql));
                self.in_transaction = false;
                self.failed(r?)
            }
            _ => {
                let r = self.again_if_lost(|db| {
                    let r = db.client()?.batch_execute(sql);
                    db.failed(r)
                });
                if sql == "BEGIN" {
                    self.in_transaction = r.is_ok();
                }
                r
            }
        }
    }
}

fn row(r: &postgres::Row) -> Result<Row, DbError> {
    let mut out = Vec::with_capacity(r.len());
    for (i, column) in r.columns().iter().enumerate() {
        let ty = column.type_();
        let v = if *ty == Type::INT8 {
            r.try_get::<_, Option<i64>>(i)?.map(Value::Int)
        } else if *ty == Type::INT4 {
            r.try_get::<_, Option<i32>>(i)?.map(|v| Value::Int(v.into()))
        } else if *ty == Type::INT2 {
            r.try_get::<_, Option<i16>>(i)?.map(|v| Value::Int(v.into()))
        } else if *ty == Type::BOOL {
            r.try_get::<_, Option<bool>>(i)?.map(|v| Value::Int(v.into()))
        } else if *ty == Type::TEXT || *ty == Type::VARCHAR || *ty == Type::NAME {
            r.try_get::<_, Option<String>>(i)?.map(Value::Text)
        } else {
            return Err(DbError::Decode { column: i, expected: "an integer or text column" });
        };
        out.push(v.unwrap_or(Value::Null));
    }
    Ok(Row(out))
}

impl ToSql for Value {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Self::Null => Ok(IsNull::Yes),
            Self::Int(v) if *ty == Type::INT4 => i32::try_from(*v)?.to_sql(ty, out),
            Self::Int(v) if *ty == Type::INT2 => i16::try_from(*v)?.to_sql(ty, out),
            Self::Int(v) if *ty == Type::BOOL => (*v != 0).to_sql(ty, out),
            Self::Int(v) if *ty == Type::INT8 => v.to_sql(ty, out),
            Self::Text(v) if <&str as ToSql>::accepts(ty) => v.as_str().to_sql(ty, out),
            Self::Int(_) => Err(format!("an integer given for a {ty} parameter").into()),
            Self::Text(_) => Err(format!("text given for a {ty} parameter").into()),
        }
    }

    // Each value checks its column's type as it is written (above); NULL fits any.
    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

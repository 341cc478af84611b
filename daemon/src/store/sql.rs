//! What the store asks of a database, whichever it is: statements with `$1, $2, ...`
//! parameters (SQLite reads `$1` as a named parameter numbered by first appearance, so each
//! statement names its parameters in ascending order), values that are integers, text or
//! NULL, and rows of them.

/// A parameter or a column's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Value {
    Null,
    Int(i64),
    Text(String),
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Self::Int(v)
    }
}

impl From<u32> for Value {
    fn from(v: u32) -> Self {
        Self::Int(i64::from(v))
    }
}

impl From<u16> for Value {
    fn from(v: u16) -> Self {
        Self::Int(i64::from(v))
    }
}

impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Self::Int(i64::from(v))
    }
}

impl From<usize> for Value {
    fn from(v: usize) -> Self {
        Self::Int(i64::try_from(v).unwrap_or(i64::MAX))
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Self::Text(v.to_owned())
    }
}

impl From<&String> for Value {
    fn from(v: &String) -> Self {
        Self::Text(v.clone())
    }
}

impl From<String> for Value {
    fn from(v: String) -> Self {
        Self::Text(v)
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Self::Null, Into::into)
    }
}

/// The parameters of one statement.
macro_rules! values {
    ($($v:expr),* $(,)?) => { [$($crate::store::sql::Value::from($v)),*] };
}
pub(crate) use values;

/// A row, its columns in the statement's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Row(pub(crate) Vec<Value>);

impl Row {
    fn column(&self, i: usize) -> Result<&Value, DbError> {
        self.0.get(i).ok_or(DbError::Decode { column: i, expected: "a column" })
    }

    pub(crate) fn opt_int(&self, i: usize) -> Result<Option<i64>, DbError> {
        match self.column(i)? {
            Value::Null => Ok(None),
            Value::Int(v) => Ok(Some(*v)),
            Value::Text(_) => Err(DbError::Decode { column: i, expected: "an integer" }),
        }
    }

    pub(crate) fn int(&self, i: usize) -> Result<i64, DbError> {
        self.opt_int(i)?.ok_or(DbError::Decode { column: i, expected: "an integer, not NULL" })
    }

    /// An integer that must fit `T` (ids, counters, bit sets).
    pub(crate) fn num<T: TryFrom<i64>>(&self, i: usize) -> Result<T, DbError> {
        T::try_from(self.int(i)?).map_err(|_| DbError::Decode { column: i, expected: "a number in range" })
    }

    pub(crate) fn opt_num<T: TryFrom<i64>>(&self, i: usize) -> Result<Option<T>, DbError> {
        self.opt_int(i)?
            .map(|v| T::try_from(v).map_err(|_| DbError::Decode { column: i, expected: "a number in range" }))
            .transpose()
    }

    pub(crate) fn opt_text(&self, i: usize) -> Result<Option<String>, DbError> {
        match self.column(i)? {
            Value::Null => Ok(None),
            Value::Text(v) => Ok(Some(v.clone())),
            Value::Int(_) => Err(DbError::Decode { column: i, expected: "text" }),
        }
    }

    pub(crate) fn text(&self, i: usize) -> Result<String, DbError> {
        self.opt_text(i)?.ok_or(DbError::Decode { column: i, expected: "text, not NULL" })
    }
}

/// Which database a statement is written for, where the two differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Sqlite,
    Postgres,
}

/// A statement that differs between the databases.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Dialects {
    pub(crate) sqlite: &'static str,
    pub(crate) postgres: &'static str,
}

impl Dialects {
    pub(crate) fn for_(&self, d: Dialect) -> &'static str {
        match d {
            Dialect::Sqlite => self.sqlite,
            Dialect::Postgres => self.postgres,
        }
    }
}

/// A database operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    #[error("{0}")]
    Postgres(#[from] postgres::Error),
    /// The connection went while a transaction was open: the transaction is gone.
    #[error("the connection to the database was lost inside a transaction")]
    ConnectionLost,
    #[error("column {column}: expected {expected}")]
    Decode { column: usize, expected: &'static str },
    /// A leader's write after another daemon took the lead over (a higher epoch): refused,
    /// never retried (docs/operations.md, "Two control rooms").
    #[error("this daemon no longer leads: its epoch is {mine}, the database's is {current}")]
    Fenced { mine: i64, current: i64 },
}

/// One connection to a database.
pub(crate) trait Db: Send {
    fn dialect(&self) -> Dialect;
    /// Runs a statement; the number of rows it changed.
    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64, DbError>;
    /// Runs a statement; the rows it returned.
    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>, DbError>;
    /// Runs statements without parameters (`BEGIN`, a migration).
    fn batch(&mut self, sql: &str) -> Result<(), DbError>;

    /// The first row of a query, if any.
    fn query_opt(&mut self, sql: &str, params: &[Value]) -> Result<Option<Row>, DbError> {
        Ok(self.query(sql, params)?.into_iter().next())
    }
}

//! Throwaway PostgreSQL databases for the tests and benchmarks that run the store on
//! PostgreSQL: each gets a database of its own on the server `SIRENNET_POSTGRES_URL` names
//! (CI starts one on a port of its own), dropped when it is done with.

use std::sync::atomic::{AtomicU32, Ordering};

/// The server the tests use, if one is configured; with `SIRENNET_REQUIRE_POSTGRES` set, its
/// absence is a failure rather than a skip.
pub fn server() -> Option<String> {
    match std::env::var("SIRENNET_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var_os("SIRENNET_REQUIRE_POSTGRES").is_none(),
                "SIRENNET_REQUIRE_POSTGRES is set but SIRENNET_POSTGRES_URL names no server"
            );
            None
        }
    }
}

/// A database of its own, dropped with this value.
#[derive(Debug)]
pub struct Scratch {
    server: String,
    name: String,
    /// The database's URL.
    pub url: String,
}

impl Scratch {
    /// Creates an empty database on `server` (a `postgres://` URL whose user may create
    /// databases).
    pub fn create(server: &str) -> Result<Self, postgres::Error> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!("sirennet_t{}_{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let admin: postgres::Config = server.parse()?;
        let create = format!("CREATE DATABASE {name}");
        on_own_thread(move || admin.connect(postgres::NoTls)?.batch_execute(&create))?;
        let url = url_with_dbname(server, &name);
        Ok(Self { server: server.to_owned(), name, url })
    }
}

/// `server` with its database name replaced by `dbname`.
fn url_with_dbname(server: &str, dbname: &str) -> String {
    let (base, query) = server.split_once('?').map_or((server, None), |(b, q)| (b, Some(q)));
    let rest = base.strip_prefix("postgres://").or_else(|| base.strip_prefix("postgresql://")).unwrap_or(base);
    let authority = rest.split_once('/').map_or(rest, |(a, _)| a);
    match query {
        Some(q) => format!("postgres://{authority}/{dbname}?{q}"),
        None => format!("postgres://{authority}/{dbname}"),
    }
}

/// The client must not run on a thread that drives async tasks (the tests' may).
fn on_own_thread<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, postgres::Error> + Send + 'static,
) -> Result<T, postgres::Error> {
    std::thread::spawn(f).join().expect("the PostgreSQL client panicked")
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let (server, name) = (self.server.clone(), self.name.clone());
        let dropped = on_own_thread(move || {
            let config: postgres::Config = server.parse()?;
            config.connect(postgres::NoTls)?.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        });
        if let Err(e) = dropped {
            eprintln!("could not drop the scratch database {}: {e}", self.name);
        }
    }
}

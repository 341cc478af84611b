//! One sirend process for the two-control-room tests (`tests/tests/two_control_rooms.rs`):
//! `sirend_node CONFIG` runs the daemon CONFIG describes until SIGTERM, as `sirend run`
//! does. The tests kill it with SIGKILL to stand for a machine that dies.

use std::path::PathBuf;

use anyhow::Context as _;
use tokio::signal::unix::{SignalKind, signal};

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    let path = PathBuf::from(std::env::args().nth(1).context("usage: sirend_node CONFIG")?);
    let loaded = sirend::config::Loaded::load(&path)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(sirend::daemon::Daemon::run_until(loaded, async {
        match signal(SignalKind::terminate()) {
            Ok(mut term) => drop(term.recv().await),
            Err(_) => std::future::pending().await,
        }
    }))
}

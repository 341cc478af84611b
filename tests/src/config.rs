//! A generated fleet's configuration made ready for a test: the HTTP API and the embedded
//! broker on ports of the test's own.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use siren_sim::generate::{self, Generated};

/// Writes `g` into `dir` and returns the configuration's path and text (to add to, then
/// write back) with the HTTP API on port 0 and the embedded broker on a free port, which is
/// returned too.
pub fn written(g: &Generated, dir: &Path) -> anyhow::Result<(PathBuf, String, SocketAddr)> {
    let written = generate::write(g, dir)?;
    let mut text = std::fs::read_to_string(&written.config)?;
    text = text.replace("listen = \"127.0.0.1:9750\"", "listen = \"127.0.0.1:0\"");
    let port = crate::broker::free_port()?;
    text = text.replace("listen = \"127.0.0.1:1884\"", &format!("listen = \"{port}\""));
    Ok((written.config, text, port))
}

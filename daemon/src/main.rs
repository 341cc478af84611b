//! `sirend`, the sirennet monitoring daemon.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use sirend::config::Loaded;
use sirend::daemon::Daemon;
use sirend::demo::{self, DemoOptions};

#[derive(Debug, Parser)]
#[command(name = "sirend", version, about = "Monitoring daemon for outdoor warning sirens")]
struct Cli {
    /// Log as JSON lines instead of human-readable text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Validate a configuration with its fleet and key files, and summarise it.
    CheckConfig {
        /// The configuration file (sirend.toml).
        file: PathBuf,
    },
    /// Run the daemon.
    Run {
        #[arg(long, default_value = "sirend.toml")]
        config: PathBuf,
    },
    /// Make a new API token: prints the secret once, and the entry for sirend.toml.
    Token {
        /// Who holds it (recorded in the audit log).
        #[arg(long)]
        name: String,
        /// viewer, operator or admin.
        #[arg(long, default_value = "operator")]
        role: String,
    },
    /// Start an embedded broker, a simulated fleet with a scenario of faults, and the daemon.
    Demo {
        #[arg(long, default_value_t = 120)]
        sirens: usize,
        /// Where the HTTP API and /metrics listen.
        #[arg(long, default_value = "127.0.0.1:9750")]
        listen: SocketAddr,
        /// Where the embedded MQTT broker listens.
        #[arg(long, default_value = "127.0.0.1:1884")]
        broker: SocketAddr,
        /// Directory for the demo's fleet, keys, configuration and database [default: a new
        /// temporary directory].
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        // rumqttd logs every connection a readiness probe opens and closes as an error.
        .unwrap_or_else(|_| "info,rumqttd=warn,rumqttd::server::broker=off,rumqttc=warn".into());
    if cli.json {
        tracing_subscriber::fmt().json().with_env_filter(filter).init();
    } else {
        tracing_subscriber::fmt().with_env_filter(filter).init();
    }
    let result = match cli.command {
        Command::CheckConfig { file } => match Loaded::load(&file) {
            Ok(loaded) => {
                print!("{}", loaded.summary());
                Ok(())
            }
            Err(e) => Err(e.into()),
        },
        Command::Run { config } => run(&config),
        Command::Token { name, role } => token(&name, &role),
        Command::Demo { sirens, listen, broker, dir } => run_demo(sirens, listen, broker, dir),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn token(name: &str, role: &str) -> anyhow::Result<()> {
    let role = match role {
        "viewer" => sirend::auth::Role::Viewer,
        "operator" => sirend::auth::Role::Operator,
        "admin" => sirend::auth::Role::Admin,
        other => anyhow::bail!("role `{other}`: use viewer, operator or admin"),
    };
    let (secret, entry) = sirend::auth::new_token(name, role);
    println!("token (shown once; give it to {name}): {secret}\n\nadd to sirend.toml:\n\n{entry}");
    Ok(())
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the runtime")
}

fn run(config: &std::path::Path) -> anyhow::Result<()> {
    let loaded = Loaded::load(config)?;
    runtime()?.block_on(async {
        let daemon = Daemon::start(&loaded).await?;
        // The daemon keeps what it needs; the files as read are not.
        drop(loaded);
        shutdown_signal().await;
        daemon.stop().await;
        Ok(())
    })
}

fn run_demo(sirens: usize, listen: SocketAddr, broker: SocketAddr, dir: Option<PathBuf>) -> anyhow::Result<()> {
    let temp = match &dir {
        Some(_) => None,
        None => Some(
            tempfile::Builder::new().prefix("sirend-demo-").tempdir().context("creating a directory for the demo")?,
        ),
    };
    let dir = dir.unwrap_or_else(|| temp.as_ref().map(|t| t.path().to_owned()).unwrap_or_default());
    runtime()?.block_on(demo::run(DemoOptions { sirens, listen, broker, dir }, shutdown_signal()))
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}

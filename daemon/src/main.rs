//! `sirend`, the sirennet monitoring daemon.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use sirend::config::Loaded;
use sirend::coverage::Coverage;
use sirend::daemon::Daemon;
#[cfg(feature = "demo")]
use sirend::demo::{self, DemoOptions};
use sirend::liveness::State;

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
        /// The configuration file (as every other subcommand, also `--config FILE`).
        #[arg(conflicts_with = "config")]
        file: Option<PathBuf>,
        #[arg(long)]
        config: Option<PathBuf>,
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
    /// Who would hear a warning: coverage per zone from the last known states in the store.
    Coverage {
        #[arg(long, default_value = "sirend.toml")]
        config: PathBuf,
        /// Count every siren as able to sound: the design coverage.
        #[arg(long)]
        assume_all_ok: bool,
    },
    /// Where to add sirens: new sites that bring each zone's design coverage to its target
    /// (greedy maximum coverage), as a table, and as CSV and GeoJSON with --out.
    Plan {
        #[arg(long, default_value = "sirend.toml")]
        config: PathBuf,
        /// The covered share every zone should reach [default: each zone's coverage target].
        #[arg(long)]
        target: Option<f64>,
        /// Most new sites to propose.
        #[arg(long, default_value_t = 100)]
        max_new: usize,
        /// Rating of the new sirens, dB(C) at 30 m.
        #[arg(long, default_value_t = 120.0)]
        rating: f64,
        /// Candidate sites (CSV with `latitude,longitude`: rooftops, towers the office can use)
        /// [default: a grid over the zones].
        #[arg(long)]
        candidates: Option<PathBuf>,
        /// Count these sirens as gone (decommissioned).
        #[arg(long, num_args = 1..)]
        without: Vec<String>,
        /// Sirens planned but not built (CSV with `latitude,longitude,zone,rating_db`).
        #[arg(long)]
        with: Option<PathBuf>,
        /// Write proposals.csv and proposals.geojson here.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Write Mosquitto's password and ACL files for the fleet: each MQTT siren as itself on
    /// its own topics, sirend as `[mqtt] username` (password from `password_file`).
    MosquittoFiles {
        #[arg(long, default_value = "sirend.toml")]
        config: PathBuf,
        /// Where to write `passwd` (hash it with `mosquitto_passwd -U passwd`) and `acl`.
        #[arg(long)]
        out: PathBuf,
    },
    /// Test-sounding schedules.
    Schedule {
        #[command(subcommand)]
        action: ScheduleAction,
    },
    /// Start an embedded broker, a simulated fleet with a scenario of faults, and the daemon.
    #[cfg(feature = "demo")]
    Demo {
        #[arg(long, default_value_t = 120)]
        sirens: usize,
        /// Where the HTTP API and /metrics listen.
        #[arg(long, default_value = "127.0.0.1:9750")]
        listen: std::net::SocketAddr,
        /// Where the embedded MQTT broker listens.
        #[arg(long, default_value = "127.0.0.1:1884")]
        broker: std::net::SocketAddr,
        /// Directory for the demo's fleet, keys, configuration and database [default: a new
        /// temporary directory].
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Play no faults: the fleet stays healthy (and no alert should fire).
        #[arg(long)]
        no_faults: bool,
    },
}

#[derive(Debug, Subcommand)]
enum ScheduleAction {
    /// The next occurrences of every schedule, soonest first: instant (RFC 3339, in the
    /// schedule's zone), schedule name and kind, one per line.
    Next {
        #[arg(long, default_value = "sirend.toml")]
        config: PathBuf,
        #[arg(long, default_value_t = 10)]
        count: usize,
        /// Start from this instant instead of now (RFC 3339).
        #[arg(long)]
        after: Option<jiff::Timestamp>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        // rumqttd logs every connection a readiness probe opens and closes as an error.
        .unwrap_or_else(|_| "info,rumqttd=warn,rumqttd::server::broker=off,rumqttc=warn".into());
    // Logs and diagnostics go to stderr, coloured only on a terminal; what a command prints
    // as its answer (the demo's banner, a table) goes to stdout.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    if cli.json {
        tracing_subscriber::fmt().json().with_writer(std::io::stderr).with_env_filter(filter).init();
    } else {
        tracing_subscriber::fmt().with_writer(std::io::stderr).with_ansi(ansi).with_env_filter(filter).init();
    }
    let result = match cli.command {
        Command::CheckConfig { file, config } => {
            check_config(&file.or(config).unwrap_or_else(|| PathBuf::from("sirend.toml")))
        }
        Command::Coverage { config, assume_all_ok } => coverage(&config, assume_all_ok),
        Command::Run { config } => run(&config),
        Command::Token { name, role } => token(&name, &role),
        Command::MosquittoFiles { config, out } => mosquitto_files(&config, &out),
        Command::Plan { config, target, max_new, rating, candidates, without, with, out } => {
            plan(&config, &PlanArgs { target, max_new, rating, candidates, without, with, out })
        }
        Command::Schedule { action: ScheduleAction::Next { config, count, after } } => {
            schedule_next(&config, count, after.unwrap_or_else(jiff::Timestamp::now))
        }
        #[cfg(feature = "demo")]
        Command::Demo { sirens, listen, broker, dir, no_faults } => run_demo(sirens, listen, broker, dir, !no_faults),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Writes a command's answer to stdout; a reader that went away (`| head`) is not an error.
fn emit(text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

fn check_config(file: &std::path::Path) -> anyhow::Result<()> {
    use std::fmt::Write as _;
    let loaded = Loaded::load(file)?;
    // Everything is checked before anything is printed: "OK" means OK.
    let coverage = if loaded.own_sirens().next().is_some() { Some(Coverage::from_config(&loaded)?) } else { None };
    let mut text = loaded.summary();
    if let Some(c) = &coverage {
        text.push_str(&c.summary());
    }
    if !loaded.schedules.is_empty() {
        use sirend::sounding::schedule;
        let _ = writeln!(text, "\nschedules (next occurrence):");
        let now = jiff::Timestamp::now();
        for s in &loaded.schedules {
            let next = s
                .after(now)
                .next()
                .map_or_else(|| "none (the rule has ended)".to_owned(), |t| schedule::rfc3339(&s.local(t)));
            let zones = if s.zones.is_empty() { "all zones".to_owned() } else { s.zones.join(", ") };
            let _ = writeln!(text, "  {:<20} {:<7} {next}  {zones}", s.name, s.kind.as_str());
        }
    }
    emit(&text)
}

fn coverage(config: &std::path::Path, assume_all_ok: bool) -> anyhow::Result<()> {
    let loaded = Loaded::load(config)?;
    let mut coverage = Coverage::from_config(&loaded)?;
    let ids: Vec<String> = coverage.siren_ids().to_vec();
    if assume_all_ok {
        for i in 0..ids.len() {
            coverage.set_able(i, true);
        }
        emit("design coverage: every siren counted as able to sound\n\n")?;
    } else {
        let location = loaded.store_location();
        if let sirend::store::Location::Sqlite(path) = &location {
            anyhow::ensure!(
                path.exists(),
                "{}: no store yet (the daemon has not run); --assume-all-ok shows the design coverage",
                path.display()
            );
        }
        let states = sirend::store::Store::open_at(&location)?.states()?;
        let known: std::collections::HashMap<&str, &str> =
            states.iter().map(|r| (r.siren.as_str(), r.state.as_str())).collect();
        for (i, id) in ids.iter().enumerate() {
            let able = known.get(id.as_str()).and_then(|s| State::from_name(s)).is_some_and(State::can_sound);
            coverage.set_able(i, able);
        }
        emit(&format!("coverage from the last known states in {location}\n\n"))?;
    }
    emit(&sirend::coverage::table::render(&mut coverage))?;
    Ok(())
}

/// `sirend plan`'s options.
#[derive(Debug)]
struct PlanArgs {
    target: Option<f64>,
    max_new: usize,
    rating: f64,
    candidates: Option<PathBuf>,
    without: Vec<String>,
    with: Option<PathBuf>,
    out: Option<PathBuf>,
}

fn plan(config: &std::path::Path, args: &PlanArgs) -> anyhow::Result<()> {
    use sirend::coverage::{planner, siting};
    anyhow::ensure!(args.target.is_none_or(|t| (0.0..=1.0).contains(&t)), "--target must be between 0 and 1");
    anyhow::ensure!(args.rating.is_finite() && (80.0..=160.0).contains(&args.rating), "--rating must be 80 to 160 dB");
    let loaded = Loaded::load(config)?;
    let planned = args.with.as_deref().map(siting::read_planned).transpose()?.unwrap_or_default();
    let mut coverage = Coverage::from_config_with(&loaded, &planned)?;
    let ids = coverage.siren_ids().to_vec();
    for gone in &args.without {
        anyhow::ensure!(ids.contains(gone), "--without {gone}: no such siren in the fleet");
    }
    for (i, id) in ids.iter().enumerate() {
        coverage.set_able(i, !args.without.contains(id));
    }
    let candidates = match &args.candidates {
        Some(path) => {
            let sites = siting::read_candidates(path)?;
            Some(sites.into_iter().map(|(lat, lon)| coverage.projection().project(lat, lon)).collect())
        }
        None => None,
    };
    let options =
        planner::PlanOptions { max_new: args.max_new, rating_db: args.rating, target: args.target, candidates };
    let result = planner::plan(coverage.map(), &options);
    let population = coverage.has_population();
    emit(&siting::table(&result, coverage.map(), coverage.projection(), population))?;
    if let Some(out) = &args.out {
        std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
        let csv_path = out.join("proposals.csv");
        std::fs::write(&csv_path, siting::csv(&result, coverage.map(), coverage.projection()))
            .with_context(|| format!("writing {}", csv_path.display()))?;
        let geo_path = out.join("proposals.geojson");
        std::fs::write(&geo_path, siting::geojson(&result, coverage.map(), coverage.projection()).to_string())
            .with_context(|| format!("writing {}", geo_path.display()))?;
        emit(&format!("wrote {} and {}\n", csv_path.display(), geo_path.display()))?;
    }
    Ok(())
}

fn schedule_next(config: &std::path::Path, count: usize, after: jiff::Timestamp) -> anyhow::Result<()> {
    use sirend::sounding::schedule;
    use std::fmt::Write as _;
    let loaded = Loaded::load(config)?;
    anyhow::ensure!(!loaded.schedules.is_empty(), "{}: no [[schedule]] is configured", config.display());
    let mut text = String::new();
    for (s, t) in schedule::next(&loaded.schedules, after, count) {
        let suppressed = sirend::sounding::conflicts::suppressed_by(&loaded.schedules, s, t)
            .map(|(by, _)| format!(" (suppressed by {})", by.name))
            .unwrap_or_default();
        let _ = writeln!(text, "{} {} {}{suppressed}", schedule::rfc3339(&s.local(t)), s.name, s.kind.as_str());
    }
    emit(&text)?;
    Ok(())
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

fn mosquitto_files(config: &std::path::Path, out: &std::path::Path) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let loaded = Loaded::load(config)?;
    let (user, password) = loaded
        .broker_credentials()?
        .context("set [mqtt] username and password_file: sirend's own user on the broker")?;
    let (passwd, acl) = sirend::link::mosquitto::files(&loaded, &user, &password);
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    // The password file holds every siren's broker password: readable by its owner only.
    let path = out.join("passwd");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("writing {}", path.display()))?;
    std::io::Write::write_all(&mut file, passwd.as_bytes())?;
    std::fs::write(out.join("acl"), acl).with_context(|| format!("writing {}", out.join("acl").display()))?;
    println!(
        "wrote {0}/passwd and {0}/acl; now run `mosquitto_passwd -U {0}/passwd` and set in mosquitto.conf:\n\n\
         allow_anonymous false\npassword_file {0}/passwd\nacl_file {0}/acl\nset_tcp_nodelay true\nmax_packet_size 4096",
        out.display()
    );
    Ok(())
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the runtime")
}

fn run(config: &std::path::Path) -> anyhow::Result<()> {
    let loaded = Loaded::load(config)?;
    // `block_on` polls its future on this thread: the engine runs here.
    runtime()?.block_on(Daemon::run_until(loaded, shutdown_signal()))
}

#[cfg(feature = "demo")]
fn run_demo(
    sirens: usize,
    listen: std::net::SocketAddr,
    broker: std::net::SocketAddr,
    dir: Option<PathBuf>,
    faults: bool,
) -> anyhow::Result<()> {
    let temp = match &dir {
        Some(_) => None,
        None => Some(
            tempfile::Builder::new().prefix("sirend-demo-").tempdir().context("creating a directory for the demo")?,
        ),
    };
    let dir = dir.unwrap_or_else(|| temp.as_ref().map(|t| t.path().to_owned()).unwrap_or_default());
    let options = DemoOptions { sirens, listen, broker, faults, ..DemoOptions::new(dir) };
    runtime()?.block_on(demo::run(options, shutdown_signal()))
}

/// Ctrl-C or SIGTERM. SIGHUP and SIGUSR1, which service managers and operators send to ask for
/// a reload, are answered with a log line: the configuration is read at start only, and
/// their default action would kill the daemon.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let term = async {
        match signal(SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    let ignored = async {
        let (Ok(mut hup), Ok(mut usr1)) = (signal(SignalKind::hangup()), signal(SignalKind::user_defined1())) else {
            return std::future::pending::<()>().await;
        };
        loop {
            let name = tokio::select! {
                _ = hup.recv() => "SIGHUP",
                _ = usr1.recv() => "SIGUSR1",
            };
            tracing::warn!(
                signal = name,
                "ignored: the configuration is read at start only; restart sirend to apply changes"
            );
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
        () = ignored => {}
    }
}

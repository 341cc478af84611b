//! Starting and stopping the whole daemon from a loaded configuration.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use anyhow::Context as _;
use jiff::Timestamp;
use siren_proto::fleet::{KeyHolder, Link};
use siren_proto::master::LinkId;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;

use crate::config::{Loaded, SerialEndpoint};
use crate::coverage::Coverage;
use crate::coverage::metrics::SharedCoverage;
use crate::engine::{Engine, Plan, SerialPlan};
use crate::fleet::FleetState;
use crate::http::{AppState, router};
use crate::leadership::{CommandGate, Status};
use crate::link::mqtt::{MqttLink, parse_url};
use crate::liveness::Policy;
use crate::metrics::Metrics;
use crate::sounding::runner::Runner;
use crate::store::Store;

/// A running daemon.
#[derive(Debug)]
pub struct Daemon {
    pub http: SocketAddr,
    pub mqtt_broker: Option<SocketAddr>,
    pub fleet: Arc<RwLock<FleetState>>,
    pub store: Arc<Store>,
    pub metrics: Arc<Metrics>,
    /// Who would hear a warning now; `None` when the daemon owns no siren.
    pub coverage: Option<SharedCoverage>,
    /// Who leads (this daemon, alone on SQLite).
    pub leadership: watch::Receiver<Status>,
    tasks: JoinSet<()>,
    /// What commands the sirens, while this daemon does: on SQLite from the start; on
    /// PostgreSQL, the supervisor starts and stops it with the lease.
    commander: Option<Commander>,
    /// On PostgreSQL: what stops the supervisor, and the supervisor.
    supervisor: Option<(oneshot::Sender<()>, tokio::task::JoinHandle<()>)>,
}

/// What the web console is set up with. Zone areas that cannot be read leave the map without
/// zones; coverage, set up from the same files, fails with the reason.
fn console_settings(loaded: &Loaded) -> crate::http::console::ConsoleSettings {
    let zones = if loaded.own_sirens().next().is_none() && loaded.config.coverage.boundaries.is_none() {
        Vec::new()
    } else {
        Coverage::zone_areas(loaded).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "the console's map shows no zone areas");
            Vec::new()
        })
    };
    let console = &loaded.config.console;
    crate::http::console::ConsoleSettings {
        basemap: console.basemap.clone(),
        basemap_attribution: console.basemap_attribution.clone(),
        timezone: loaded.config.soundings.timezone.clone(),
        live_signals: loaded.config.live.signal_names(),
        patterns: siren_proto::pattern::catalogue::NAMES.to_vec(),
        approval_window_s: loaded.config.live.approval_window_s,
        version: env!("CARGO_PKG_VERSION"),
        zones: crate::coverage::boundaries::to_geojson(&zones).into(),
    }
}

/// Builds the coverage grid of the daemon's own sirens; `None` when it owns none.
fn start_coverage(loaded: &Loaded) -> anyhow::Result<Option<SharedCoverage>> {
    if loaded.own_sirens().next().is_none() {
        return Ok(None);
    }
    let started = std::time::Instant::now();
    let c = Coverage::from_config(loaded).context("setting up coverage")?;
    let g = c.map().layout().grid;
    tracing::info!(
        cells = g.cells(),
        cell_m = g.cell_m,
        took_ms = started.elapsed().as_millis(),
        "coverage grid ready"
    );
    Ok(Some(Arc::new(Mutex::new(c))))
}

/// What the daemon shares between its parts, whether it leads or stands by.
#[derive(Debug, Clone)]
struct Shared {
    fleet: Arc<RwLock<FleetState>>,
    store: Arc<Store>,
    metrics: Arc<Metrics>,
    coverage: Option<SharedCoverage>,
}

impl Shared {
    /// Opens the store and builds the fleet's state from it.
    fn open(loaded: &Loaded) -> anyhow::Result<Self> {
        let c = &loaded.config;
        let store = Arc::new(Store::open_at(&loaded.store_location())?);
        let policy = Policy { down_after_misses: c.liveness.down_after_misses };
        let now = Timestamp::now();
        let mut fleet = FleetState::new(loaded.own_sirens(), policy, now);
        fleet.restore(store.states()?);
        fleet.restore_acknowledgements(store.acknowledgements()?, now);
        *fleet.maintenance_mut() =
            crate::maintenance::Book::restore(store.maintenance_windows(true, 10_000)?, store.last_maintenance_id()?);
        let fleet = Arc::new(RwLock::new(fleet));
        let coverage = start_coverage(loaded)?;
        let metrics = Arc::new(Metrics::new(Arc::clone(&fleet), coverage.clone()));
        Ok(Self { fleet, store, metrics, coverage })
    }

    /// A standby's view: the states, acknowledgements and maintenance windows the leader
    /// stored, and the events it committed (to the event stream's followers).
    fn mirror(&self) -> Result<(), crate::store::StoreError> {
        let states = self.store.states()?;
        let acks = self.store.acknowledgements()?;
        let windows = self.store.maintenance_windows(true, 10_000)?;
        let last_window = self.store.last_maintenance_id()?;
        let now = Timestamp::now();
        let changed = {
            let mut fleet = self.fleet.write().unwrap_or_else(std::sync::PoisonError::into_inner);
            let changed = fleet.mirror(&states);
            fleet.mirror_acknowledgements(acks, now);
            let book = crate::maintenance::Book::restore(windows, last_window);
            if book.open() != fleet.maintenance().open() {
                *fleet.maintenance_mut() = book;
            }
            changed
        };
        if let Some(c) = &self.coverage {
            let fleet = self.fleet.read().unwrap_or_else(std::sync::PoisonError::into_inner);
            let mut coverage = c.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            for (i, able) in changed {
                coverage.set_able(i, able);
            }
            for i in 0..fleet.sirens().len() {
                coverage.set_in_maintenance(i, fleet.in_maintenance(i, now).is_some());
            }
        }
        self.store.tail()?;
        Ok(())
    }
}

/// The parts that command the sirens: the link tasks and the engine.
#[derive(Debug)]
struct Commander {
    tasks: JoinSet<()>,
    /// The engine's own thread: it ends, after its final save, once every sender of its
    /// inputs (link tasks, the HTTP API) is gone.
    engine: Option<std::thread::JoinHandle<()>>,
    /// The MQTT link's own thread and what stops it (dropping the sender stops it too).
    mqtt_link: Option<(oneshot::Sender<()>, std::thread::JoinHandle<()>)>,
    mqtt_broker: Option<SocketAddr>,
}

/// How long `stop` waits for the engine's final save.
const ENGINE_STOP: Duration = Duration::from_secs(10);

/// The MQTT link's id; serial buses take 1, 2, ...
const MQTT_LINK: LinkId = LinkId(0);

/// The engine, built and ready, with the receiver of its inputs.
struct EngineParts {
    engine: Engine,
    inputs: mpsc::Receiver<crate::engine::Input>,
}

impl EngineParts {
    /// Runs the engine until every sender of its inputs is gone, then saves.
    async fn run(self) {
        self.engine.run(self.inputs).await;
    }
}

/// Where the API's requests for the engine go: on PostgreSQL, to whichever engine runs now
/// (none while this daemon stands by).
type EngineSlot = watch::Sender<Option<mpsc::Sender<crate::engine::Input>>>;

/// How long a request for the engine waits for one (a term that has just begun builds its
/// engine) before the API answers 503.
const ENGINE_AWAITED: Duration = Duration::from_secs(5);

impl Commander {
    /// Builds the engine and starts the links. The engine's inputs: `inputs`, and the API's
    /// through `engine_tx` (kept by the caller).
    fn build(
        loaded: &Loaded,
        shared: &Shared,
        gate: &CommandGate,
    ) -> anyhow::Result<(Self, EngineParts, mpsc::Sender<crate::engine::Input>)> {
        let c = &loaded.config;
        let Shared { fleet, store, metrics, coverage } = shared;
        let (inputs_tx, inputs) = mpsc::channel(4096);
        let mut outputs = HashMap::new();
        let mut tasks = JoinSet::new();
        let mut serial = Vec::new();
        for (i, s) in c.serial.iter().enumerate() {
            let link = LinkId(u16::try_from(i + 1).context("too many serial buses")?);
            let group = loaded.keys.bus_key(&s.bus).map(|e| (e.key_id, e.key.clone()));
            serial.push(SerialPlan {
                link,
                bus: s.bus.clone(),
                baud: s.baud,
                poll_interval: Duration::from_secs_f64(s.poll_interval_s),
                idle_gap: s.idle_gap(),
                group,
            });
            let (tx, rx) = mpsc::channel(64);
            outputs.insert(link, tx);
            let endpoint = match s.endpoint() {
                SerialEndpoint::Device(p) => SerialEndpoint::Device(loaded.resolve(&p)),
                tcp @ SerialEndpoint::Tcp(_) => tcp,
            };
            tasks.spawn(crate::link::serial::run(link, endpoint, s.baud, gate.clone(), inputs_tx.clone(), rx));
        }
        for feed in &c.cap.feeds {
            tasks.spawn(crate::link::cap_feed::run(feed.clone(), inputs_tx.clone(), Arc::clone(metrics)));
        }
        let has_mqtt = loaded.own_sirens().any(siren_proto::fleet::Siren::has_mqtt);
        let (mqtt_broker, mqtt_link) = if has_mqtt {
            let (tx, rx) = mpsc::channel(8192);
            outputs.insert(MQTT_LINK, tx);
            let (broker, link) = start_mqtt(loaded, gate, inputs_tx.clone(), rx)?;
            (broker, Some(link))
        } else {
            (None, None)
        };
        let keys = loaded
            .keys
            .entries
            .iter()
            .filter(|e| matches!(e.holder, KeyHolder::Siren(_)))
            .map(|e| (e.key_id, e.key.clone()))
            .collect();
        let peers =
            loaded.own_sirens().map(|s| (s.key_id, s.address, s.links.iter().map(Link::to_string).collect())).collect();
        let plan = Plan {
            serial,
            mqtt: has_mqtt.then_some(MQTT_LINK),
            topic_root: c.mqtt.topic_root.clone(),
            heartbeat: Duration::from_secs(u64::from(c.liveness.heartbeat_s)),
            status_every: Duration::from_secs(u64::from(c.mqtt.status_every_s)),
            down_after_misses: c.liveness.down_after_misses,
            keys,
            peers,
        };
        let mut engine = Engine::new(plan, Arc::clone(fleet), Arc::clone(store), Arc::clone(metrics), outputs)?;
        if let Some(c) = coverage {
            engine.set_coverage(Arc::clone(c));
        }
        engine.set_soundings(start_soundings(loaded, store, fleet, metrics)?);
        engine.set_stop_uncommanded(c.soundings.stop_uncommanded);
        warnings_desk(&mut engine, loaded, store)?;
        let commander = Self { tasks, engine: None, mqtt_link, mqtt_broker };
        Ok((commander, EngineParts { engine, inputs }, inputs_tx))
    }

    /// Stops every link, then waits for the engine's final save.
    async fn stop(mut self) {
        self.tasks.shutdown().await;
        if let Some((stop, thread)) = self.mqtt_link.take() {
            let _ = stop.send(());
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
        if let Some(engine) = self.engine.take() {
            let joined = tokio::time::timeout(ENGINE_STOP, tokio::task::spawn_blocking(move || engine.join())).await;
            if joined.is_err() {
                tracing::error!("the engine did not stop within {ENGINE_STOP:?}");
            }
        }
    }
}

impl Daemon {
    /// Starts everything the configuration describes, the engine on a thread of its own (so
    /// that HTTP load on the runtime's workers cannot delay monitoring).
    pub async fn start(loaded: &Loaded) -> anyhow::Result<Self> {
        if loaded.config.store.url.is_some() {
            return Self::start_shared(loaded.clone()).await;
        }
        let (mut daemon, engine) = Self::start_alone(loaded).await?;
        let thread = on_own_thread("engine", engine.run())?;
        if let Some(c) = &mut daemon.commander {
            c.engine = Some(thread);
        }
        Ok(daemon)
    }

    /// Starts everything `loaded` describes, drops `loaded`, and runs the engine on the calling
    /// thread until `shutdown` completes; then stops everything, the engine last, after its
    /// final save. What `sirend run` does: the engine's per-siren memory then comes from the
    /// allocator arena of the thread that read the configuration and set everything up, and
    /// reuses what that left free (with an engine on a thread of its own, 10,000 sirens took
    /// 8 MB more; BENCHMARKS.md). Daemons sharing a PostgreSQL store run their engine on a
    /// thread of its own, started and stopped with the lease.
    pub async fn run_until(loaded: Loaded, shutdown: impl std::future::Future<Output = ()>) -> anyhow::Result<()> {
        if loaded.config.store.url.is_some() {
            let daemon = Self::start_shared(loaded).await?;
            shutdown.await;
            daemon.stop().await;
            return Ok(());
        }
        let (daemon, engine) = Self::start_alone(&loaded).await?;
        // The daemon keeps what it needs; the files as read are not.
        drop(loaded);
        let engine = engine.run();
        tokio::pin!(engine);
        let engine_ended = tokio::select! {
            () = &mut engine => true,
            () = shutdown => false,
        };
        if engine_ended {
            tracing::error!("the engine stopped by itself");
        }
        let store = Arc::clone(&daemon.store);
        daemon.stop().await;
        if !engine_ended {
            // Its inputs' senders are gone with the tasks: it ends after its final save.
            if tokio::time::timeout(ENGINE_STOP, engine).await.is_err() {
                tracing::error!("the engine did not stop within {ENGINE_STOP:?}");
            }
        }
        if let Err(e) = store.flush() {
            tracing::error!(error = %e, "the store's last commit failed");
        }
        Ok(())
    }

    /// A daemon alone on SQLite: it commands from the start.
    async fn start_alone(loaded: &Loaded) -> anyhow::Result<(Self, EngineParts)> {
        let shared = Shared::open(loaded)?;
        let (commander, engine, engine_tx) = Commander::build(loaded, &shared, &CommandGate::always_open())?;
        let http = format!("http://{}", loaded.config.http.listen);
        let (_, leadership) = watch::channel(Status::alone(&daemon_name(loaded), &http, Timestamp::now()));
        shared.metrics.leadership(&leadership.borrow());
        let mut tasks = JoinSet::new();
        let addr = serve_http(loaded, &shared, Some(engine_tx), leadership.clone(), &mut tasks).await?;
        let mqtt_broker = commander.mqtt_broker;
        let daemon = Self {
            http: addr,
            mqtt_broker,
            fleet: shared.fleet,
            store: shared.store,
            metrics: shared.metrics,
            coverage: shared.coverage,
            leadership,
            tasks,
            commander: Some(commander),
            supervisor: None,
        };
        Ok((daemon, engine))
    }

    /// A daemon on a shared PostgreSQL store: it serves the API at once and commands only
    /// while it holds the lease.
    async fn start_shared(loaded: Loaded) -> anyhow::Result<Self> {
        let shared = {
            let loaded = loaded.clone();
            tokio::task::spawn_blocking(move || Shared::open(&loaded)).await??
        };
        let c = &loaded.config;
        let settings = crate::leadership::Settings {
            url: c.store.url.clone().unwrap_or_default(),
            name: daemon_name(&loaded),
            api_url: c.leadership.url.clone().unwrap_or_else(|| format!("http://{}", c.http.listen)),
            lease: Duration::from_secs_f64(c.leadership.lease_s),
            expected: c.leadership.daemons,
        };
        let leadership = crate::leadership::start(&settings)?;
        let status = leadership.status.clone();
        // The API's requests for the engine: passed on to the engine of the current term.
        let (engine_tx, mut engine_rx) = mpsc::channel::<crate::engine::Input>(64);
        let (slot, mut engine_now): (EngineSlot, _) = watch::channel(None);
        let mut tasks = JoinSet::new();
        tasks.spawn(async move {
            while let Some(input) = engine_rx.recv().await {
                let engine = tokio::time::timeout(ENGINE_AWAITED, engine_now.wait_for(Option::is_some))
                    .await
                    .ok()
                    .and_then(|e| e.ok().and_then(|e| e.clone()));
                // None: no engine in time; the request's reply is dropped and the API answers 503.
                if let Some(engine) = engine {
                    let _ = engine.send(input).await;
                }
            }
        });
        {
            let metrics = Arc::clone(&shared.metrics);
            let mut status = status.clone();
            tasks.spawn(async move {
                loop {
                    metrics.leadership(&status.borrow_and_update());
                    if status.changed().await.is_err() {
                        return;
                    }
                }
            });
        }
        let addr = serve_http(&loaded, &shared, Some(engine_tx), status.clone(), &mut tasks).await?;
        let (stop, stopped) = oneshot::channel();
        let supervisor = tokio::spawn(supervise(loaded, shared.clone(), leadership, slot, stopped));
        Ok(Self {
            http: addr,
            mqtt_broker: None,
            fleet: shared.fleet,
            store: shared.store,
            metrics: shared.metrics,
            coverage: shared.coverage,
            leadership: status,
            tasks,
            commander: None,
            supervisor: Some((stop, supervisor)),
        })
    }

    /// Stops every task, then waits for the engine's final save of counters and campaigns.
    pub async fn stop(mut self) {
        if let Some((stop, supervisor)) = self.supervisor.take() {
            let _ = stop.send(());
            let _ = supervisor.await;
        }
        self.tasks.shutdown().await;
        if let Some(c) = self.commander.take() {
            c.stop().await;
        }
        if let Err(e) = self.store.flush() {
            tracing::error!(error = %e, "the store's last commit failed");
        }
    }
}

/// This daemon's name among those sharing a store: `[leadership] name`, or the host's.
fn daemon_name(loaded: &Loaded) -> String {
    loaded.config.leadership.name.clone().unwrap_or_else(|| {
        std::fs::read_to_string("/etc/hostname")
            .ok()
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty() && !h.contains('#'))
            .unwrap_or_else(|| "sirend".to_owned())
    })
}

/// How often a standby reads the leader's view back from the store.
const MIRROR_EVERY: Duration = Duration::from_secs(1);

/// Starts and stops the commanding parts as the lease comes and goes; meanwhile, as a
/// standby, keeps the fleet's view of the store current.
async fn supervise(
    loaded: Loaded,
    shared: Shared,
    mut leadership: crate::leadership::Leadership,
    slot: EngineSlot,
    mut stopped: oneshot::Receiver<()>,
) {
    let loaded = Arc::new(loaded);
    let mut commander: Option<Commander> = None;
    // A term whose commanding parts could not be built yet (the store failed a read): tried
    // again every second while the term lasts.
    let mut unbuilt: Option<i64> = None;
    let mut mirror = tokio::time::interval(MIRROR_EVERY);
    mirror.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = &mut stopped => break,
            change = leadership.changes.recv() => match change {
                None => break,
                Some(crate::leadership::Change::Lead { epoch }) => {
                    stand_down(&mut commander, &slot).await;
                    shared.store.fence(epoch);
                    unbuilt = Some(epoch);
                }
                Some(crate::leadership::Change::StepDown { .. }) => {
                    unbuilt = None;
                    stand_down(&mut commander, &slot).await;
                }
                Some(crate::leadership::Change::None) => {}
            },
            _ = mirror.tick(), if commander.is_none() => {
                // The engine, which shows the store's health while it runs, does not.
                shared.metrics.store_health(&shared.store.health());
                if unbuilt.is_none() {
                    let shared = shared.clone();
                    if let Ok(Err(e)) = tokio::task::spawn_blocking(move || shared.mirror()).await {
                        tracing::warn!(error = %e, "the standby's view could not be read from the store");
                    }
                }
            }
        }
        if let Some(epoch) = unbuilt {
            match lead(&loaded, &shared, &leadership.gate, &slot).await {
                Ok(c) => {
                    tracing::warn!(epoch, "commanding: counters leased, campaigns resumed, links open");
                    commander = Some(c);
                    unbuilt = None;
                }
                Err(e) => tracing::error!(epoch, error = %e, "cannot take command yet; trying again in a second"),
            }
        }
    }
    stand_down(&mut commander, &slot).await;
    // The lease is handed back (it runs out at once) only once nothing here commands.
    drop(leadership.changes);
    let _ = tokio::task::spawn_blocking(move || leadership.keeper.join()).await;
}

/// Starts commanding: the view the leader left in the store, then the engine (counters
/// leased beyond every stored lease, campaigns and warnings resumed) and the links.
async fn lead(
    loaded: &Arc<Loaded>,
    shared: &Shared,
    gate: &CommandGate,
    slot: &EngineSlot,
) -> anyhow::Result<Commander> {
    let (loaded, shared_, gate) = (Arc::clone(loaded), shared.clone(), gate.clone());
    let (mut commander, engine, engine_tx) = tokio::task::spawn_blocking(move || {
        shared_.mirror()?;
        Commander::build(&loaded, &shared_, &gate)
    })
    .await??;
    slot.send_replace(Some(engine_tx));
    commander.engine = Some(on_own_thread("engine", engine.run())?);
    Ok(commander)
}

/// Stops commanding, if this daemon does.
async fn stand_down(commander: &mut Option<Commander>, slot: &EngineSlot) {
    // The engine ends once the API's way to it is gone too.
    slot.send_replace(None);
    if let Some(c) = commander.take() {
        c.stop().await;
        tracing::warn!("stopped commanding: standing by");
    }
}

/// Serves the API on `http.listen`; its address.
async fn serve_http(
    loaded: &Loaded,
    shared: &Shared,
    engine: Option<mpsc::Sender<crate::engine::Input>>,
    leadership: watch::Receiver<Status>,
    tasks: &mut JoinSet<()>,
) -> anyhow::Result<SocketAddr> {
    let c = &loaded.config;
    let listener = tokio::net::TcpListener::bind(c.http.listen)
        .await
        .with_context(|| format!("binding the HTTP listener on {}", c.http.listen))?;
    let http = listener.local_addr()?;
    let tokens = Arc::new(crate::auth::Tokens::new(&c.http.tokens));
    let app = router(AppState {
        fleet: Arc::clone(&shared.fleet),
        store: Arc::clone(&shared.store),
        metrics: Arc::clone(&shared.metrics),
        tokens,
        refusals: Arc::default(),
        coverage: shared.coverage.clone(),
        engine,
        views: Arc::default(),
        access: crate::http::Access { reads: c.http.reads_need_token(), metrics: c.http.metrics_need_token },
        console: Arc::new(console_settings(loaded)),
        cluster: Arc::new(crate::http::cluster::Cluster::new(leadership)),
    });
    let http_metrics = Arc::clone(&shared.metrics);
    let limits = crate::http::server::Limits::default();
    tasks.spawn(crate::http::server::serve(listener, app, limits, move || http_metrics.http_connection_refused()));
    tracing::info!(%http, sirens = shared.fleet.read().map_or(0, |f| f.sirens().len()), "sirend running");
    Ok(http)
}

/// The link to the embedded or external broker, on a thread of its own (like the engine:
/// deaths and heartbeats must not wait for the runtime's workers while they serve HTTP), and
/// the embedded broker's address if it runs one.
#[allow(clippy::type_complexity, reason = "one use, named in `Daemon::mqtt_link`")]
fn start_mqtt(
    loaded: &Loaded,
    gate: &CommandGate,
    inputs: mpsc::Sender<crate::engine::Input>,
    outputs: mpsc::Receiver<crate::engine::Output>,
) -> anyhow::Result<(Option<SocketAddr>, (tokio::sync::oneshot::Sender<()>, std::thread::JoinHandle<()>))> {
    let c = &loaded.config.mqtt;
    let mut embedded = None;
    let client_id = format!("sirend-{}-{}", std::process::id(), hex::encode(rand::random::<[u8; 3]>()));
    let credentials;
    let (host, port) = if c.embedded {
        let password = hex::encode(rand::random::<[u8; 16]>());
        let sirens = loaded
            .own_sirens()
            .filter(|s| s.has_mqtt())
            .filter_map(|s| {
                let key = loaded.keys.entries.iter().find(|e| e.key_id == s.key_id)?;
                Some((s.id.clone(), (s.zone.to_string(), key.key.mqtt_password())))
            })
            .collect();
        let access = crate::link::broker::Access {
            topic_root: c.topic_root.clone(),
            sirens,
            daemon: (client_id.clone(), password.clone()),
        };
        crate::link::broker::start(c.listen, 100_000, Some(access))?;
        credentials = Some((client_id.clone(), password));
        embedded = Some(c.listen);
        (c.listen.ip().to_string(), c.listen.port())
    } else {
        credentials = loaded.broker_credentials()?;
        let url = c.url.as_deref().unwrap_or_default();
        parse_url(url).with_context(|| format!("mqtt.url `{url}` is not mqtt://host:port"))?
    };
    let link = MqttLink {
        link: MQTT_LINK,
        host,
        port,
        client_id,
        credentials,
        topic_root: c.topic_root.clone(),
        zones: c.zones.clone(),
        keep_alive: Duration::from_secs(u64::from(c.keep_alive_s)),
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let run = crate::link::mqtt::run(link, gate.clone(), inputs, outputs);
    let thread = on_own_thread("mqtt-link", async {
        tokio::select! {
            () = run => {}
            _ = stopped => {}
        }
    })?;
    Ok((embedded, (stop, thread)))
}

/// Runs `task` on a new thread named `name`, on a runtime of its own: away from the
/// runtime's workers, which serve HTTP.
fn on_own_thread(
    name: &str,
    task: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<std::thread::JoinHandle<()>> {
    let what = name.to_owned();
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(rt) => rt.block_on(task),
            Err(e) => tracing::error!(thread = what, error = %e, "cannot start a runtime"),
        })
        .with_context(|| format!("starting the {name} thread"))
}

/// The soundings runner, resuming the campaigns the store holds open.
fn start_soundings(
    loaded: &Loaded,
    store: &Store,
    fleet: &RwLock<FleetState>,
    metrics: &Metrics,
) -> anyhow::Result<Runner> {
    let fleet = fleet.read().unwrap_or_else(std::sync::PoisonError::into_inner);
    Ok(Runner::new(loaded.schedules.clone(), loaded.config.soundings.clone(), store, &fleet, metrics.soundings())?)
}

/// The LIVE desk and the CAP intake and feed, from the configuration and the store; each
/// waiver of the second person said loudly.
fn warnings_desk(engine: &mut Engine, loaded: &Loaded, store: &Store) -> anyhow::Result<()> {
    let c = &loaded.config;
    for w in &c.live.waivers {
        tracing::warn!(
            source = %w.source,
            zones = %w.zones.join(", "),
            "LIVE warnings from this source in these zones need NO second person ([[live.waivers]])"
        );
    }
    engine.set_live(c.live.clone(), crate::live::Desk::restore(store.activations(10_000)?));
    let publishing = crate::engine::cap::Publishing {
        publisher: crate::cap::publish::Publisher {
            sender: c.cap.sender.clone().unwrap_or_else(|| "sirend@localhost".to_owned()),
            timezone: jiff::tz::TimeZone::get(&c.soundings.timezone).unwrap_or(jiff::tz::TimeZone::UTC),
        },
        coverage: c.coverage.clone(),
    };
    engine.set_cap(c.cap.clone(), crate::cap::intake::Intake::restore(store.cap_alerts(100_000)?), publishing);
    Ok(())
}

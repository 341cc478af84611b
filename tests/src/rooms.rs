//! Two control rooms for the tests and the takeover benchmark: two sirend processes
//! (`sirend_node`) on one PostgreSQL database, simulated sirens on an MQTT broker both reach
//! and on serial lines behind device servers (TCP), and what the devices recorded, read back
//! per leader. Set-up failures panic with their cause: these are the tests' own steps.
#![allow(clippy::unwrap_used, reason = "a failed step of a test's set-up is that test's failure")]

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use siren_proto::RejectReason;
use siren_sim::clock::SimClock;
use siren_sim::fleet::{BuildOptions, SimFleet, lock};
use siren_sim::generate::{self, Options};
use siren_sim::mqtt::{MqttConfig, MqttDevices};
use siren_sim::serial::SerialBus;
use sirend::auth::{Role, new_token};
use sirend::store::scratch::{self, Scratch};
use sirend::store::{Location, Store};

use crate::broker::{TestBroker, free_port};
use crate::http;
use crate::proxy::Proxy;
use crate::wait::{wait_explaining, wait_for};

/// Seconds a lease lasts in these tests: a standby takes over within 5 + 5/6 s of the
/// leader's death, well inside the 10 s the issue asks for.
pub const LEASE_S: u32 = 5;

/// One daemon: its own process, configuration and HTTP port.
#[derive(Debug)]
pub struct Room {
    pub http: SocketAddr,
    node: PathBuf,
    config: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl Room {
    pub fn start(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        let child = Command::new(&self.node)
            .arg(&self.config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    /// SIGKILL: the machine dies, nothing is saved or handed back.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    /// `GET /api/leadership`, when the daemon answers.
    pub fn leadership(&self) -> Option<serde_json::Value> {
        let r = http::send(self.http, "GET", "/api/leadership", None, "application/json", "").ok()?;
        (r.status == 200).then(|| r.json())
    }

    pub fn leads(&self) -> bool {
        self.leadership().is_some_and(|l| l["leads"] == true)
    }

    /// The leader this daemon knows of, by name.
    pub fn leader(&self) -> Option<String> {
        self.leadership().and_then(|l| l["leader"]["name"].as_str().map(str::to_owned))
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Room {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Both rooms, the database, the broker and the simulated sirens.
#[derive(Debug)]
pub struct Setup {
    _dir: tempfile::TempDir,
    pub db: Scratch,
    pub sim: Arc<SimFleet>,
    _broker: TestBroker,
    _buses: Vec<SerialBus>,
    pub devices: Option<MqttDevices>,
    pub rooms: [Room; 2],
    /// Two operators' tokens (a LIVE warning one requests, the other approves).
    pub operator: String,
    pub second: String,
    /// An administrator's token (the audit log).
    pub admin: String,
    /// Every siren: id and key.
    pub sirens: Vec<(String, u16)>,
}

/// Six sirens (half on serial lines behind device servers, half on MQTT), a chime `in_s`
/// seconds away armed from `lead_s` before, and two daemons' configurations, run by the
/// `sirend_node` binary `node`; room A reaches the database through a proxy when `db_proxy`.
/// `None` when no PostgreSQL server is configured (`SIRENNET_POSTGRES_URL`).
pub fn setup(node: &Path, in_s: i64, lead_s: u32, db_proxy: bool) -> Option<(Setup, Option<Proxy>)> {
    let pg_server = scratch::server()?;
    let db = Scratch::create(&pg_server).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let options = Options { sirens: 6, seed: 5, serial_share: 0.5, redundant_share: 0.0, ..Options::default() };
    let g = generate::generate(&options).unwrap();
    let written = generate::write(&g, dir.path()).unwrap();
    let base = std::fs::read_to_string(&written.config).unwrap();
    let sim =
        Arc::new(SimFleet::build(g.fleet.clone(), &g.keys, SimClock::real_time(), &BuildOptions::default()).unwrap());
    let broker = TestBroker::embedded().unwrap();
    let mut buses = Vec::new();
    let mut text = base.replace("[store]\npath = \"sirend.db\"\n", "[store]\nurl = \"@DB@\"\n");
    // Status requests every 2 s: MQTT sirens are commanded often enough to tell who does.
    text =
        text.replace("embedded = true", &format!("embedded = false\nurl = \"{}\"\nstatus_every_s = 2", broker.url()));
    for bus in g.fleet.buses().keys() {
        let served = sim.serve_serial_tcp(bus, 9600, "127.0.0.1:0".parse().unwrap()).unwrap();
        let pty = generate::pty_link(dir.path(), bus);
        let line = format!("port = \"{}\"", pty.display());
        assert!(text.contains(&line), "{text}");
        text = text.replace(&line, &format!("port = \"tcp://{}\"\npoll_interval_s = 1", served.tcp().unwrap()));
        buses.push(served);
    }
    let (operator, op_entry) = new_token("ops", Role::Operator);
    let (second, second_entry) = new_token("second-officer", Role::Operator);
    let (admin, admin_entry) = new_token("admin", Role::Admin);
    let start = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(in_s);
    let start = start.to_zoned(jiff::tz::TimeZone::UTC).datetime().strftime("%Y-%m-%dT%H:%M:%S").to_string();
    write!(
        text,
        "\n{op_entry}\n{second_entry}\n{admin_entry}\n[liveness]\nheartbeat_s = 2\n\n[soundings]\ntimezone = \"UTC\"\nlead_s = {lead_s}\n\
         arm_cutoff_s = 2\nverify_grace_s = 8\n\n[[schedule]]\nname = \"e2e-chime\"\nkind = \"chime\"\n\
         start = \"{start}\"\nrrule = \"FREQ=DAILY\"\nsequence = [{{ pattern = \"chime\" }}]\n"
    )
    .unwrap();
    let proxy = db_proxy.then(|| Proxy::start(crate::proxy::postgres_server(&db.url).unwrap()).unwrap());
    let rooms = ["room-a", "room-b"].map(|name| {
        let http = free_port().unwrap();
        let url = match (&proxy, name) {
            (Some(p), "room-a") => crate::proxy::postgres_through(&db.url, p.addr).unwrap(),
            _ => db.url.clone(),
        };
        let mut t = text.replace("@DB@", &url).replace("listen = \"127.0.0.1:9750\"", &format!("listen = \"{http}\""));
        write!(t, "\n[leadership]\nname = \"{name}\"\nurl = \"http://{http}\"\nlease_s = {LEASE_S}\ndaemons = 2\n")
            .unwrap();
        let config = dir.path().join(format!("{name}.toml"));
        std::fs::write(&config, t).unwrap();
        Room { http, node: node.to_owned(), config, log: dir.path().join(format!("{name}.log")), child: None }
    });
    let mut mqtt = MqttConfig::from_url(&broker.url()).unwrap();
    mqtt.heartbeat = Duration::from_secs(2);
    mqtt.check_every = Duration::from_millis(50);
    let devices = Some(sim.serve_mqtt(&mqtt));
    let sirens = g.fleet.sirens.iter().map(|s| (s.id.clone(), s.key_id.0)).collect();
    let s =
        Setup { _dir: dir, db, sim, _broker: broker, _buses: buses, devices, rooms, operator, second, admin, sirens };
    Some((s, proxy))
}

impl Setup {
    /// Starts room A, waits until it leads, then starts room B as its standby.
    pub async fn a_leads_b_stands_by(&mut self) {
        self.rooms[0].start();
        let a = &self.rooms[0];
        wait_explaining("room A leads", || a.leads(), || a.log()).await;
        self.rooms[1].start();
        let b = &self.rooms[1];
        wait_for("room B stands by for A", || b.leader().as_deref() == Some("room-a")).await;
        assert!(!b.leads(), "{}", b.log());
        let ids: Vec<String> = self.sirens.iter().map(|(id, _)| id.clone()).collect();
        let a = self.rooms[0].http;
        wait_for("every siren heard by the leader", || {
            let r = http::get(a, "/api/sirens");
            r.status == 200
                && ids
                    .iter()
                    .all(|id| r.json().as_array().unwrap().iter().any(|s| s["id"] == *id && s["state"] == "ok"))
        })
        .await;
    }

    /// Each key's stored transmit lease end (exclusive): once the leader can no longer write,
    /// every counter it used is below this, and every counter its successor uses is at least
    /// this.
    pub fn stored_leases(&self) -> Vec<(String, u32)> {
        let store = Store::open_at(&Location::Postgres(self.db.url.clone())).unwrap();
        self.sirens
            .iter()
            .map(|(id, key)| (id.clone(), store.counters(*key).unwrap().map_or(0, |c| c.tx_lease_end)))
            .collect()
    }

    /// What each device accepted, split at the former leader's last lease: the latest moment
    /// a frame of the former leader arrived anywhere, the earliest of its successor's, and
    /// how many each sent. No device may have refused a frame as replayed.
    pub fn commands_by_leader(&self, leases: &[(String, u32)]) -> (i64, i64, usize, usize) {
        let (mut last_old, mut first_new, mut old, mut new) = (i64::MIN, i64::MAX, 0, 0);
        for (id, lease_end) in leases {
            let c = lock(self.sim.controller(id).unwrap());
            assert!(
                !c.rejected().contains(&RejectReason::Replayed),
                "{id} refused a replayed frame: {:?}",
                c.rejected()
            );
            for r in c.received().iter().filter(|r| !r.broadcast) {
                if r.counter < *lease_end {
                    last_old = last_old.max(r.at);
                    old += 1;
                } else {
                    first_new = first_new.min(r.at);
                    new += 1;
                }
            }
        }
        (last_old, first_new, old, new)
    }
}

//! Load harness: 32 simulated sirens on one 9600 baud PTY bus, polled as fast as the line
//! allows. Reports answered polls per second against the line-rate limit of BENCHMARKS.md,
//! how long arming the bus for a sounding takes while polls go on (and the polls' share of the
//! line meanwhile), the sounding's verdicts and start skew, how soon a LIVE warning sounds and
//! the one-step stop silences the bus (against the bound the line allows), and how long a
//! silent siren takes to turn `down`.
//!
//! `cargo run --release -p sirennet-e2e --bin serial_load [SECONDS]`

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use siren_proto::Key;
use siren_proto::fleet::{Fleet, KeyEntry, KeyFile};
use siren_proto::frame::KeyId;
use siren_sim::clock::SimClock;
use siren_sim::fault::Fault;
use siren_sim::fleet::{BuildOptions, SimFleet};
use sirend::auth::{Role, new_token};
use sirend::config::Loaded;
use sirend::daemon::Daemon;
use sirend::liveness::State;
use sirennet_e2e::http;

const DROPS: u16 = 32;
const BAUD: u32 = 9600;

/// Answered polls so far: the poll-duration histogram's count.
fn answered(daemon: &Daemon) -> f64 {
    daemon
        .metrics
        .encode()
        .lines()
        .find_map(|l| l.strip_prefix("siren_link_poll_duration_seconds_count{link=\"serial:load\"} "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let seconds: u64 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(30);
    let dir = tempfile::tempdir()?;
    let mut csv = String::from("id,name,latitude,longitude,zone,rating_db,address,key_id,links\n");
    let mut keys = Vec::new();
    for n in 1..=DROPS {
        writeln!(csv, "L-{n:02},load {n},30.2,120.1,load/a/b,118,{},{n},serial:load", 16 + n)?;
        keys.push(KeyEntry {
            key_id: KeyId(n),
            holder: format!("siren:L-{n:02}").parse().map_err(anyhow::Error::msg)?,
            key: Key::new([u8::try_from(n)?; 32]),
        });
    }
    keys.push(KeyEntry {
        key_id: KeyId(0x8000),
        holder: "bus:load".parse().map_err(anyhow::Error::msg)?,
        key: Key::new([0xEE; 32]),
    });
    let fleet = Fleet::parse("load", &csv)?;
    let keys = KeyFile { entries: keys };
    std::fs::write(dir.path().join("fleet.csv"), &csv)?;
    let mut key_csv = Vec::new();
    keys.write_csv(&mut key_csv)?;
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        let mut f =
            std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(dir.path().join("keys.csv"))?;
        std::io::Write::write_all(&mut f, &key_csv)?;
    }
    let port = dir.path().join("bus");
    let (token, token_entry) = new_token("bench", Role::Operator);
    let (approver, approver_entry) = new_token("second-officer", Role::Operator);
    std::fs::write(
        dir.path().join("sirend.toml"),
        format!(
            "fleet = \"fleet.csv\"\nkeys = \"keys.csv\"\n[http]\nlisten = \"127.0.0.1:0\"\n[[serial]]\nbus = \"load\"\nport = \"{}\"\nbaud = {BAUD}\npoll_interval_s = 0.1\n\
             [soundings]\ntimezone = \"UTC\"\nlead_s = 120\narm_cutoff_s = 5\nverify_grace_s = 60\n{token_entry}\n{approver_entry}\n\
             [live]\n[[live.signals]]\nname = \"burst\"\nsequence = [{{ pattern = \"chime\" }}]\n",
            port.display()
        ),
    )?;
    let loaded = Loaded::load(&dir.path().join("sirend.toml"))?;
    let sim = Arc::new(SimFleet::build(fleet, &keys, SimClock::real_time(), &BuildOptions::default())?);
    let _bus = sim.serve_serial("load", BAUD, Some(port))?;
    let daemon = Daemon::start(&loaded).await?;

    tokio::time::sleep(Duration::from_secs(5)).await; // warm up: every siren heard once
    let (a0, t0) = (answered(&daemon), Instant::now());
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let rate = (answered(&daemon) - a0) / t0.elapsed().as_secs_f64();
    // docs/protocol.md §3 and BENCHMARKS.md: 35 + 87 bytes and two 3.5-byte gaps per poll.
    let limit = f64::from(BAUD) / 10.0 / (35.0 + 87.0 + 7.0);
    println!("answered polls: {rate:.2}/s on one {BAUD} baud bus of {DROPS} sirens");
    println!("line-rate limit: {limit:.2}/s -> {:.1} % of the limit", 100.0 * rate / limit);

    arm_the_bus(&daemon, &token).await?;
    warn_and_stop(&daemon, &sim, (&token, &approver)).await?;

    // Silent death: down after 3 misses; each siren is polled every DROPS / rate seconds.
    let interval = f64::from(DROPS) / rate;
    let cut = Instant::now();
    sim.inject("L-07", &Fault::SilentDeath)?;
    loop {
        let state = daemon.fleet.read().map_err(|_| anyhow::anyhow!("poisoned"))?.get("L-07").map(|s| s.liveness.state);
        if state == Some(State::Down) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let took = cut.elapsed().as_secs_f64();
    println!(
        "silent death -> down: {took:.1} s (3 misses + 1 interval = {:.1} s at {interval:.1} s per round)",
        4.0 * interval
    );
    daemon.stop().await;
    Ok(())
}

/// An ad-hoc chime 40 s ahead, armed at once (the lead is longer): reports how long arming the
/// whole bus took by the daemon's own record, the answered polls per second meanwhile, then
/// the verdicts and the start skew.
async fn arm_the_bus(daemon: &Daemon, token: &str) -> anyhow::Result<()> {
    let at = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(40);
    let body = format!(r#"{{"at":"{at}","kind":"chime","sequence":[{{"pattern":"chime"}}]}}"#);
    let created = http::request(daemon.http, "POST", "/api/soundings", Some(token), &body);
    anyhow::ensure!(created.status == 201, "ad-hoc sounding refused: {}", created.body);
    let id = created.json()["id"].as_u64().unwrap_or_default();
    let path = format!("/api/soundings/{id}");
    let (a0, t0) = (answered(daemon), Instant::now());
    let summary = loop {
        let list = http::get(daemon.http, "/api/soundings").json();
        let c = list.as_array().and_then(|a| a.iter().find(|c| c["id"] == id).cloned()).unwrap_or_default();
        if !c["all_armed"].is_null() || c["phase"] != "arming" && c["phase"] != "planned" {
            break c;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let polls = (answered(daemon) - a0) / t0.elapsed().as_secs_f64();
    let stamp = |k: &str| summary[k].as_str().and_then(|t| t.parse::<jiff::Timestamp>().ok());
    match (stamp("arming_began"), stamp("all_armed")) {
        (Some(began), Some(armed)) => println!(
            "arming {DROPS} sirens (time sync, correction where needed, ARM): {:.1} s, with {polls:.2} answered polls/s meanwhile",
            armed.duration_since(began).as_secs_f64()
        ),
        _ => println!("not every siren was armed: {summary}"),
    }
    let report = loop {
        let r = http::get(daemon.http, &path).json();
        if r["phase"] == "done" || r["phase"] == "missed" {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    println!(
        "sounding: {} passed, {} failed {}; start skew ms {}",
        report["passed"], report["failed"], report["failures"], report["skew_ms"]
    );
    Ok(())
}

/// Requests, approves and waits for a LIVE warning of `signal`; returns its id and the approval.
fn approved_live(daemon: &Daemon, (requester, approver): (&str, &str), signal: &str) -> anyhow::Result<(u64, i64)> {
    let ask = format!(r#"{{"signal":"{signal}","reason":"load test"}}"#);
    let created = http::request(daemon.http, "POST", "/api/activations", Some(requester), &ask);
    anyhow::ensure!(created.status == 201, "LIVE request refused: {}", created.body);
    let id = created.json()["id"].as_u64().unwrap_or_default();
    let approval = http::request(daemon.http, "POST", &format!("/api/activations/{id}/approve"), Some(approver), "");
    anyhow::ensure!(approval.status == 200, "approval refused: {}", approval.body);
    let at = approval.json()["at"].as_str().and_then(|t| t.parse::<jiff::Timestamp>().ok());
    Ok((id, at.map_or(0, jiff::Timestamp::as_microsecond)))
}

/// The wire time of `message` broadcast on the bus, µs (its serial envelope included).
fn broadcast_wire_us(message: &siren_proto::Message) -> anyhow::Result<i64> {
    let key = Key::new([0; 32]);
    let seal = siren_proto::frame::Seal {
        destination: siren_proto::frame::Address::BROADCAST,
        source: siren_proto::frame::Address::MASTER,
        key_id: KeyId(0x8000),
        key: &key,
        counter: 1,
    };
    let mut frame = Vec::new();
    seal.encode(message, siren_proto::frame::Framing::Serial, &mut frame).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    Ok(i64::try_from(frame.len())? * 10_000_000 / i64::from(BAUD))
}

fn percentiles(mut v: Vec<i64>) -> String {
    v.sort_unstable();
    let pick = |q: f64| {
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_precision_loss)]
        let i = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1;
        v[i] / 1000
    };
    if v.is_empty() {
        "none".into()
    } else {
        format!("p50 {} / p99 {} / max {} ms (n={})", pick(0.5), pick(0.99), pick(1.0), v.len())
    }
}

/// LIVE warnings "now" to the whole bus while it is polled, a few times: the latency from the
/// approval to each siren's start of sound (the simulator's true time, and the daemon's own
/// measurement); then a LIVE air-raid signal stopped in one step: the time until each siren
/// really fell silent, and until the daemon had each one's confirmation. Both against the
/// bound of the line: the exchange that may hold it (a request and its reply timeout, and a
/// retry due before the broadcast) plus the broadcast frame itself.
async fn warn_and_stop(daemon: &Daemon, sim: &SimFleet, tokens: (&str, &str)) -> anyhow::Result<()> {
    const WARNINGS: usize = 3;
    let ids: Vec<String> = (1..=DROPS).map(|n| format!("L-{n:02}")).collect();
    let truth = |id: &str| {
        sim.controller(id)
            .map(|c| siren_sim::fleet::lock(c).device.soundings().to_vec())
            .ok_or_else(|| anyhow::anyhow!("no simulated siren {id}"))
    };
    let (mut real, mut measured) = (Vec::new(), Vec::new());
    let mut trigger_us = 0;
    for _ in 0..WARNINGS {
        let (id, approved_us) = approved_live(daemon, tokens, "burst")?;
        let view = loop {
            let v = http::get(daemon.http, &format!("/api/activations/{id}")).json();
            let c = &v["counts"];
            if c["done"].as_u64().unwrap_or(0) + c["failed"].as_u64().unwrap_or(0) == u64::from(DROPS) {
                break v;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let campaign = view["campaign"].as_u64().unwrap_or_default();
        for s in view["sirens"].as_array().into_iter().flatten() {
            measured.extend(s["latency_ms"].as_i64().map(|ms| ms * 1000));
        }
        for sid in &ids {
            let started = truth(sid)?.iter().find(|t| u64::from(t.campaign) == campaign).and_then(|t| t.started);
            real.extend(started.map(|t| t - approved_us));
        }
        let c = sim.controller(&ids[0]).ok_or_else(|| anyhow::anyhow!("no simulated siren"))?;
        let c = siren_sim::fleet::lock(c);
        if let Some(r) = c.received().iter().rev().find(|r| matches!(r.message, siren_proto::Message::TriggerLive(_))) {
            trigger_us = broadcast_wire_us(&r.message)?;
        }
    }
    // docs/protocol.md §3 and MasterConfig::serial: a poll of 35 bytes, a 200 ms reply timeout.
    let byte_us = 10_000_000 / i64::from(BAUD);
    let held_us = 2 * (35 * byte_us + 200_000);
    println!(
        "LIVE warning, approval to start of sound, {WARNINGS} warnings of {DROPS} sirens: true {}; as sirend measured {}",
        percentiles(real),
        percentiles(measured)
    );
    println!(
        "  the line's bound: {} ms = {} ms the line may be held (an exchange and a retry) + {} ms the TRIGGER_LIVE broadcast",
        (held_us + trigger_us) / 1000,
        held_us / 1000,
        trigger_us / 1000
    );

    let (id, _) = approved_live(daemon, tokens, "air-raid")?;
    let sounding = |sid: &str| sim.controller(sid).map(|c| siren_sim::fleet::lock(c).device.sounding_campaign());
    while !ids.iter().all(|sid| sounding(sid).is_some_and(|c| c.is_some())) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let stop_us = jiff::Timestamp::now().as_microsecond();
    let sweep = http::request(daemon.http, "POST", "/api/stop", Some(tokens.0), "");
    anyhow::ensure!(sweep.status == 202, "stop refused: {}", sweep.body);
    let path = format!("/api/stop/{}", sweep.json()["id"]);
    let view = loop {
        let v = http::get(daemon.http, &path).json();
        if v["pending"] == 0 {
            break v;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let campaign = http::get(daemon.http, &format!("/api/activations/{id}")).json()["campaign"].as_u64().unwrap_or(0);
    let mut silent = Vec::new();
    for sid in &ids {
        let ended = truth(sid)?.iter().find(|t| u64::from(t.campaign) == campaign).and_then(|t| t.ended);
        silent.extend(ended.map(|t| t - stop_us));
    }
    let stop_wire_us = broadcast_wire_us(&siren_proto::Message::Stop { campaign: 0 })?;
    println!(
        "STOP, request to silence: true {}; every siren's silence confirmed to sirend after {} ms; the line's bound {} ms",
        percentiles(silent),
        view["all_silent_after_ms"],
        (held_us + stop_wire_us) / 1000
    );
    Ok(())
}

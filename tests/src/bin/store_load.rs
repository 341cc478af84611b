//! The daemon's write load on the store, SQLite against PostgreSQL (BENCHMARKS.md, "Store on
//! two databases"): `cargo run --release -p sirennet-e2e --bin store_load -- [SIRENS] [ROUNDS]`
//! with `SIRENNET_POSTGRES_URL` naming a server (a scratch database is made on it).
//!
//! For a fleet of SIRENS (default 10,000), each measured ROUNDS times (default 5), the time
//! until the writes are committed (`flush` returns):
//! - a whole fleet changing state at once (one state row and one event per siren), as when a
//!   broker or a bus comes back;
//! - a steady minute's worth of changes in one batch: a tenth of the fleet;
//! - the counter leases of the whole fleet, stored durably as a new leader does before it
//!   sends anything;
//! - one campaign of every siren rewritten, as at every step of a fleet-wide sounding.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use jiff::Timestamp;
use sirend::config::Soundings;
use sirend::sounding::campaign::{Campaign, Settings, Target};
use sirend::sounding::sequence::{Kind, Step};
use sirend::store::scratch::{self, Scratch};
use sirend::store::{CounterRow, Event, Location, StateRow, Store};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let sirens: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(10_000);
    let rounds: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(5);
    let server = scratch::server().context("set SIRENNET_POSTGRES_URL to a PostgreSQL server")?;
    let pg = Scratch::create(&server)?;
    let dir = tempfile::tempdir()?;
    let backends = [
        ("SQLite", Location::Sqlite(dir.path().join("sirend.db"))),
        ("PostgreSQL", Location::Postgres(pg.url.clone())),
    ];
    println!("{sirens} sirens, {rounds} rounds; median / worst ms until committed");
    println!("{:<38} {:>17} {:>17}", "", backends[0].0, backends[1].0);
    let stores: Vec<Store> = backends.iter().map(|(_, l)| Store::open_at(l)).collect::<Result<_, _>>()?;
    let loads: [(&str, Box<Load>); 4] = [
        ("every siren changes state", Box::new(move |s, r| fleet_changes(s, sirens, sirens, r))),
        ("a tenth of the fleet changes state", Box::new(move |s, r| fleet_changes(s, sirens, sirens / 10, r))),
        ("counter leases of the fleet (durable)", Box::new(move |s, r| leases(s, sirens, r))),
        ("a fleet-wide campaign rewritten", Box::new(move |s, r| campaign(s, sirens, r))),
    ];
    for (name, load) in loads {
        let mut cells = Vec::new();
        for store in &stores {
            let mut times: Vec<Duration> = (0..rounds).map(|r| load(store, r)).collect::<Result<_, _>>()?;
            times.sort();
            cells.push(format!("{:>7.1} / {:>7.1}", ms(times[times.len() / 2]), ms(times[times.len() - 1])));
        }
        println!("{name:<38} {:>17} {:>17}", cells[0], cells[1]);
    }
    Ok(())
}

/// One kind of write load on a store, in round `r`: the time until it is committed.
type Load<'a> = dyn Fn(&Store, usize) -> anyhow::Result<Duration> + 'a;

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn at(round: usize) -> Timestamp {
    Timestamp::now() + jiff::SignedDuration::from_secs(i64::try_from(round).unwrap_or(0))
}

/// `changed` of `sirens` each store a state row and an event.
fn fleet_changes(store: &Store, sirens: usize, changed: usize, round: usize) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let now = at(round);
    for i in (0..sirens).step_by((sirens / changed.max(1)).max(1)).take(changed) {
        let siren = format!("HZ-{i:05}");
        let (from, to) = if round % 2 == 0 { ("ok", "unreachable") } else { ("unreachable", "ok") };
        store.save_state(StateRow {
            siren: siren.clone(),
            state: to.into(),
            since: now,
            faults: 0,
            last_seen: Some(now),
            flaps: u32::try_from(round).unwrap_or(0),
        })?;
        store.record(Event { at: now, siren: Some(siren), kind: "state".into(), detail: format!("{from} -> {to}") })?;
    }
    store.flush()?;
    Ok(started.elapsed())
}

/// A new lease for every siren's key, stored in one durable commit.
fn leases(store: &Store, sirens: usize, round: usize) -> anyhow::Result<Duration> {
    let base = u32::try_from(round + 1).unwrap_or(1) * 1_000_000;
    let rows = (0..sirens)
        .map(|i| CounterRow {
            key_id: u16::try_from(i % 65_000 + 1).unwrap_or(1),
            tx_lease_end: base + u32::try_from(i).unwrap_or(0),
            rx_highest: base,
            birth: Some((1, 1, false)),
        })
        .collect();
    let started = Instant::now();
    store.store_counters(rows)?;
    Ok(started.elapsed())
}

/// A campaign of every siren, created once, saved again each round.
fn campaign(store: &Store, sirens: usize, round: usize) -> anyhow::Result<Duration> {
    let instant = Timestamp::from_second(2_000_000_000)? + jiff::SignedDuration::from_secs(i64::try_from(round)?);
    let id = store.create_campaign("load", instant)?.context("a new occurrence")?;
    let targets = (0..sirens).map(|i| Target::new(format!("HZ-{i:05}"), "hangzhou/c".into())).collect();
    let settings = Settings::from_config(&Soundings::default(), 600);
    let chime = vec![Step::Pattern { pattern: "chime".into() }];
    let c = Campaign::new(id, "load".into(), Kind::Chime, instant, chime, settings, targets)?;
    let started = Instant::now();
    store.save_campaign(&c)?;
    store.flush()?;
    Ok(started.elapsed())
}

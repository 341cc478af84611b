//! The store on a real PostgreSQL (where `SIRENNET_POSTGRES_URL` names a server; CI starts
//! one) reached through a TCP proxy the test cuts: what the daemon writes meanwhile is kept
//! and committed once the database is back, and no counter lease is granted while it is out
//! of reach.
#![allow(clippy::unwrap_used, reason = "test helpers may panic on impossible states")]

use std::time::{Duration, Instant};

use jiff::Timestamp;
use sirend::store::scratch::{self, Scratch};
use sirend::store::{CounterRow, Event, EventQuery, Location, StateRow, Store};
use sirennet_e2e::proxy::{Proxy, postgres_server, postgres_through};

fn event(i: u32) -> Event {
    Event { at: Timestamp::now(), siren: Some(format!("S-{}", i % 7)), kind: "state".into(), detail: format!("#{i}") }
}

#[test]
fn writes_made_while_the_database_is_out_of_reach_are_committed_when_it_returns() {
    let Some(server) = scratch::server() else { return };
    let db = Scratch::create(&server).unwrap();
    let proxy = Proxy::start(postgres_server(&db.url).unwrap()).unwrap();
    let store = Store::open_at(&Location::Postgres(postgres_through(&db.url, proxy.addr).unwrap())).unwrap();
    for i in 0..100 {
        store.record(event(i)).unwrap();
    }
    store.flush().unwrap();

    proxy.cut();
    for i in 100..1_100 {
        store.record(event(i)).unwrap();
    }
    let state = StateRow {
        siren: "S-1".into(),
        state: "down".into(),
        // Stored to the microsecond.
        since: Timestamp::from_microsecond(Timestamp::now().as_microsecond()).unwrap(),
        faults: 0,
        last_seen: None,
        flaps: 1,
    };
    store.save_state(state.clone()).unwrap();
    assert!(store.flush().is_err(), "a flush says the writes are not stored");
    let lease = CounterRow { key_id: 3, tx_lease_end: 2048, rx_highest: 0, birth: None };
    assert!(store.store_counters(vec![lease]).is_err(), "no lease is granted while the database is out of reach");
    assert!(store.health().failing);
    assert!(store.health().backlog > 0);

    proxy.restore();
    let guard = Instant::now() + Duration::from_secs(60);
    while store.flush().is_err() {
        assert!(Instant::now() < guard, "the backlog was not written: {:?}", store.health());
        std::thread::sleep(Duration::from_millis(100));
    }
    let all = store.events(&EventQuery { limit: 10_000, ..EventQuery::default() }).unwrap();
    let details: std::collections::HashSet<String> = all.iter().map(|e| e.event.detail.clone()).collect();
    assert!((0..1_100).all(|i| details.contains(&format!("#{i}"))), "every event is stored");
    assert_eq!(store.states().unwrap(), [state]);
    assert!(!store.health().failing);
    store.store_counters(vec![lease]).unwrap();
    assert_eq!(store.counters(3).unwrap(), Some(lease));
}

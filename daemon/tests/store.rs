//! The store on a real SQLite file and, when a server is configured (`SIRENNET_POSTGRES_URL`;
//! CI starts one), on a real PostgreSQL database: bursts, restarts, counters and states.
#![allow(clippy::unwrap_used, reason = "test helpers may panic on impossible states")]

use jiff::{SignedDuration, Timestamp};
use sirend::store::scratch::{self, Scratch};
use sirend::store::{CounterRow, Event, EventQuery, Location, StateRow, Store};

fn t(secs: i64) -> Timestamp {
    Timestamp::from_second(1_790_000_000).unwrap() + SignedDuration::from_secs(secs)
}

/// Runs `test` on each database, given a way to open (and, called again, reopen) the store.
fn on_each_database(test: impl Fn(&dyn Fn() -> Store)) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sirend.db");
    test(&|| Store::open(&path).unwrap());
    if let Some(server) = scratch::server() {
        let db = Scratch::create(&server).unwrap();
        let location = Location::Postgres(db.url.clone());
        test(&|| Store::open_at(&location).unwrap());
    }
}

fn event(i: i64, siren: &str) -> Event {
    Event { at: t(i), siren: Some(siren.into()), kind: "state".into(), detail: format!("ok->down #{i}") }
}

#[test]
fn a_burst_is_committed_and_survives_a_restart() {
    on_each_database(|open| {
        {
            let store = open();
            for i in 0..20_000 {
                store.record(event(i, if i % 2 == 0 { "A" } else { "B" })).unwrap();
            }
            store.flush().unwrap();
            assert_eq!(store.events_written(), 20_000);
            store.record(event(20_000, "A")).unwrap();
            // Dropped without a flush: what was queued is committed on the way out.
        }
        let store = open();
        let all = store.events(&EventQuery { limit: 100_000, ..EventQuery::default() }).unwrap();
        assert_eq!(all.len(), 20_001);
        assert!(all.windows(2).all(|w| w[0].id < w[1].id), "in order");
        assert_eq!(all[5].event, event(5, "B"));
        let only_a =
            store.events(&EventQuery { siren: Some("A".into()), limit: 100_000, ..EventQuery::default() }).unwrap();
        assert_eq!(only_a.len(), 10_001);
        let recent = store.events(&EventQuery { since: Some(t(19_990)), limit: 100, ..EventQuery::default() }).unwrap();
        assert_eq!(recent.len(), 11);
        let page =
            store.events(&EventQuery { after_id: Some(all[99].id), limit: 10, ..EventQuery::default() }).unwrap();
        assert_eq!(page.first().unwrap().id, all[100].id);
        assert_eq!(page.len(), 10);
    });
}

#[test]
fn states_and_counters_are_upserted_and_counters_never_go_back() {
    on_each_database(|open| {
        let store = open();
        let row = |state: &str, flaps| StateRow {
            siren: "A".into(),
            state: state.into(),
            since: t(1),
            faults: 3,
            last_seen: Some(t(2)),
            flaps,
        };
        store.save_state(row("ok", 0)).unwrap();
        store.save_state(row("down", 1)).unwrap();
        store
            .save_counters(CounterRow { key_id: 7, tx_lease_end: 2048, rx_highest: 900, birth: Some((4, 880, false)) })
            .unwrap();
        // A stale write (an older lease, an older window) must not move the counters back.
        store
            .save_counters(CounterRow { key_id: 7, tx_lease_end: 1024, rx_highest: 100, birth: Some((4, 880, true)) })
            .unwrap();
        store.flush().unwrap();
        // Nor in a later commit.
        store
            .save_counters(CounterRow { key_id: 7, tx_lease_end: 1500, rx_highest: 800, birth: Some((4, 880, true)) })
            .unwrap();
        store.flush().unwrap();
        drop(store);
        let store = open();
        assert_eq!(store.states().unwrap(), [row("down", 1)]);
        assert_eq!(
            store.counters(7).unwrap(),
            Some(CounterRow { key_id: 7, tx_lease_end: 2048, rx_highest: 900, birth: Some((4, 880, true)) })
        );
        assert_eq!(store.counters(8).unwrap(), None);
    });
}

#[test]
fn a_database_that_is_not_sqlite_is_refused_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sirend.db");
    std::fs::write(&path, b"this is not a database, it is a text file of some length").unwrap();
    let err = Store::open(&path).unwrap_err().to_string();
    assert!(err.contains("sirend.db"), "{err}");
}

#[test]
fn the_latest_campaign_of_a_schedule_in_a_phase_is_found() {
    use sirend::config::Soundings;
    use sirend::sounding::campaign::{Campaign, Settings, Target};
    use sirend::sounding::sequence::{Kind, Step};

    on_each_database(|open| {
        let store = open();
        let chime = vec![Step::Pattern { pattern: "chime".into() }];
        let settings = Settings::from_config(&Soundings::default(), 600);
        let make = |schedule: &str, at: i64, missed: bool| {
            let id = store.create_campaign(schedule, t(at)).unwrap().unwrap();
            let targets = vec![Target::new("S-1".into(), "z".into())];
            let mut c =
                Campaign::new(id, schedule.into(), Kind::Chime, t(at), chime.clone(), settings, targets).unwrap();
            if missed {
                c.miss("down");
            }
            store.save_campaign(&c).unwrap();
            id
        };
        let early_miss = make("hourly", 0, true);
        let late_miss = make("hourly", 7_200, true);
        make("hourly", 10_800, false);
        make("weekly", 20_000, true);
        assert!(early_miss < late_miss);
        store.flush().unwrap();
        let latest = store.latest_campaign("hourly", "missed").unwrap().unwrap();
        assert_eq!(latest.id, late_miss, "the latest, not the first");
        assert!(store.latest_campaign("hourly", "done").unwrap().is_none(), "a planned campaign has not ended");
        assert!(store.latest_campaign("daily", "missed").unwrap().is_none());
    });
}

/// A statement on the scratch database, from a thread of its own (the client must not run on
/// an async thread; these tests have none, but the store's own threads are the model).
fn on_postgres(url: &str, sql: &'static str) {
    let url = url.to_owned();
    std::thread::spawn(move || postgres::Client::connect(&url, postgres::NoTls).unwrap().batch_execute(sql).unwrap())
        .join()
        .unwrap();
}

#[test]
fn on_postgresql_a_leader_whose_epoch_has_passed_writes_nothing_but_what_people_asked_of_it() {
    let Some(server) = scratch::server() else { return };
    let db = Scratch::create(&server).unwrap();
    let store = Store::open_at(&Location::Postgres(db.url.clone())).unwrap();
    // Another daemon leads, in epoch 2; this store still carries epoch 1.
    on_postgres(
        &db.url,
        "INSERT INTO leadership (id, holder, url, epoch, since_us, expires_us) VALUES (1, 'b#1', '', 2, 0, 0)",
    );
    store.fence(1);
    store.record(event(1, "A")).unwrap();
    store
        .audit(&sirend::store::AuditEntry {
            at: t(1),
            actor: "ops".into(),
            action: "acknowledge".into(),
            target: "A".into(),
            allowed: true,
            detail: String::new(),
            client: "127.0.0.1".into(),
        })
        .unwrap();
    let refused = store.flush().unwrap_err().to_string();
    assert!(refused.contains("no longer leads"), "{refused}");
    let lease = CounterRow { key_id: 9, tx_lease_end: 4096, rx_highest: 0, birth: None };
    assert!(store.store_counters(vec![lease]).is_err(), "no lease for a deposed leader");
    assert!(store.flush().is_err(), "the next flush reports the refusal too");
    assert!(store.events(&EventQuery { limit: 10, ..EventQuery::default() }).unwrap().is_empty());
    assert_eq!(store.counters(9).unwrap(), None);
    assert_eq!(store.audit_log(10).unwrap().len(), 1, "the audit entry is kept");
    assert!(store.health().fenced >= 3, "{:?}", store.health());
    assert!(!store.health().failing, "refused, not failing");
    // Leading in epoch 2, it writes again; nothing refused before comes back.
    store.fence(2);
    store.record(event(2, "A")).unwrap();
    store.flush().unwrap();
    let events = store.events(&EventQuery { limit: 10, ..EventQuery::default() }).unwrap();
    assert_eq!(events.iter().map(|e| e.event.at).collect::<Vec<_>>(), [t(2)]);
}

#[test]
fn on_postgresql_daemons_starting_together_migrate_once_and_a_newer_schema_is_refused() {
    let Some(server) = scratch::server() else { return };
    let db = Scratch::create(&server).unwrap();
    let opening: Vec<_> = (0..4)
        .map(|_| {
            let location = Location::Postgres(db.url.clone());
            std::thread::spawn(move || Store::open_at(&location).map(drop))
        })
        .collect();
    for o in opening {
        o.join().unwrap().unwrap();
    }
    on_postgres(&db.url, "UPDATE sirennet_schema SET version = 99");
    let err = Store::open_at(&Location::Postgres(db.url.clone())).unwrap_err().to_string();
    assert!(err.contains("newer sirend") && err.contains("99"), "{err}");
    assert!(!err.contains("password"), "{err}");
}

//! `siren-sim --state`: the controllers' counters survive a restart of the simulator, so a
//! daemon that saw them before does not take their frames for replays.
#![allow(clippy::unwrap_used, reason = "test helpers may panic on impossible states")]

use siren_proto::Message;
use siren_proto::fleet::{KeyEntry, KeyFile};
use siren_proto::frame::FrameRef;
use siren_sim::clock::SimClock;
use siren_sim::controller::Channel;
use siren_sim::fleet::{BuildOptions, SimFleet, lock};
use siren_sim::generate::{self, Options};

fn fleet() -> SimFleet {
    let g = generate::generate(&Options { sirens: 3, seed: 5, serial_share: 0.0, ..Options::default() }).unwrap();
    let keys = KeyFile {
        entries: g
            .keys
            .entries
            .iter()
            .map(|e| KeyEntry { key_id: e.key_id, holder: e.holder.clone(), key: e.key.clone() })
            .collect(),
    };
    SimFleet::build(g.fleet, &keys, SimClock::real_time(), &BuildOptions::default()).unwrap()
}

/// The counter of the next frame the siren publishes.
fn next_counter(sim: &SimFleet, id: &str) -> u32 {
    let mut c = lock(sim.controller(id).unwrap());
    let status = Message::StatusReport(c.device.status(100));
    c.publish(Channel::Status, &status);
    let (_, frame) = c.poll_mqtt().unwrap();
    FrameRef::parse(&frame).unwrap().header.counter
}

#[test]
fn counters_saved_by_one_run_are_where_the_next_run_starts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.csv");
    let first = fleet();
    let ids: Vec<String> = first.fleet.sirens.iter().map(|s| s.id.clone()).collect();
    assert_eq!(first.load_state(&path).unwrap(), 0, "no file: a first start");
    let used: Vec<u32> = (0..5).map(|_| next_counter(&first, &ids[0])).collect();
    first.save_state(&path).unwrap();

    let second = fleet();
    assert_eq!(second.load_state(&path).unwrap(), ids.len());
    let after = next_counter(&second, &ids[0]);
    assert!(after > *used.iter().max().unwrap(), "counter {after} after {used:?}: reused");
    // A siren that sent nothing resumes past its saved lease too (it reserves a new one).
    let (saved, restored) = (
        lock(first.controller(&ids[1]).unwrap()).non_volatile(),
        lock(second.controller(&ids[1]).unwrap()).non_volatile(),
    );
    assert!(restored.tx_lease_end > saved.tx_lease_end, "{saved:?} -> {restored:?}");

    // Without the file, a restarted simulator starts from scratch and repeats counters.
    let fresh = fleet();
    assert!(next_counter(&fresh, &ids[0]) <= *used.iter().max().unwrap());
}

#[test]
fn a_damaged_state_file_is_an_error_naming_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.csv");
    let sim = fleet();
    let id = sim.fleet.sirens[0].id.clone();
    std::fs::write(&path, format!("siren,tx_lease_end,rx_highest,group_rx_highest\n{id},12x,0,0\n")).unwrap();
    let error = format!("{:#}", sim.load_state(&path).unwrap_err());
    assert!(error.contains("line 2") && error.contains("column 2"), "{error}");
}

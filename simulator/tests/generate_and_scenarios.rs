//! Fleet generation and scenario files.
#![allow(clippy::unwrap_used, reason = "test helpers may panic on impossible states")]

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::PermissionsExt as _;

use siren_proto::fleet::{Fleet, KeyFile, Link};
use siren_sim::fault::Fault;
use siren_sim::generate::{self, MAX_DROPS, Options};
use siren_sim::scenario::{Scenario, Target, random_faults};

fn generated(n: usize, seed: u64) -> generate::Generated {
    generate::generate(&Options { sirens: n, seed, ..Options::default() }).unwrap()
}

#[test]
fn a_generated_fleet_is_valid_and_shaped_like_a_city() {
    let g = generated(2_000, 7);
    let fleet = &g.fleet;
    assert_eq!(fleet.sirens.len(), 2_000);
    for (bus, drops) in fleet.buses() {
        assert!(drops.len() <= MAX_DROPS, "{bus} has {} drops", drops.len());
        let addresses: HashSet<_> = drops.iter().map(|s| s.address).collect();
        assert_eq!(addresses.len(), drops.len(), "{bus}: unique addresses");
    }
    assert!(fleet.sirens.iter().all(|s| (110.0..=125.0).contains(&s.rating_db)));
    assert!(fleet.sirens.iter().all(|s| s.zone.levels().count() == 3));
    let serial = fleet.sirens.iter().filter(|s| s.serial_bus().is_some()).count();
    assert!((450..750).contains(&serial), "about 30 % on serial: {serial}");
    assert!(fleet.sirens.iter().any(|s| s.serial_bus().is_some() && s.has_mqtt()), "some redundant links");
    // Denser in the centre: the central district holds more than an average corner.
    let mut per_district: HashMap<&str, usize> = HashMap::new();
    for s in &fleet.sirens {
        *per_district.entry(s.zone.levels().nth(1).unwrap()).or_default() += 1;
    }
    let corners = ["nw", "ne", "sw", "se"].iter().map(|d| per_district[d]).sum::<usize>() / 4;
    assert!(per_district["c"] > 2 * corners, "centre {} vs corner {corners}", per_district["c"]);
    g.keys.check_against(fleet, "keys").unwrap();
}

#[test]
fn generation_is_reproducible_from_the_seed() {
    let (a, b, c) = (generated(300, 1), generated(300, 1), generated(300, 2));
    assert_eq!(a.fleet, b.fleet);
    assert_eq!(a.keys, b.keys);
    assert_ne!(a.fleet, c.fleet);
}

#[test]
fn written_files_load_back_and_keys_are_private() {
    let dir = tempfile::tempdir().unwrap();
    let g = generated(120, 3);
    let w = generate::write(&g, dir.path()).unwrap();
    assert!(Fleet::load(&w.fleet).unwrap() == g.fleet, "the fleet file reads back as generated");
    assert!(KeyFile::load(&w.keys).unwrap() == g.keys, "the key file reads back as generated");
    let mode = std::fs::metadata(&w.keys).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the key file must not be readable by others");
    let config = std::fs::read_to_string(&w.config).unwrap();
    for bus in g.fleet.buses().keys() {
        let link = generate::pty_link(&dir.path().canonicalize().unwrap(), bus);
        assert!(config.contains(&format!("port = \"{}\"", link.display())), "{config}");
    }
    assert!(config.contains("fleet = \"fleet.csv\"") && config.contains("embedded = true"));
}

const SCENARIO: &str = r#"
[[event]]
at = "2m 30s"
siren = "HZ-C-0001"
fault = { clock-step = { ms = 1500 } }

[[event]]
at = "30s"
zone = "hangzhou/c"
fault = "mains-loss"

[[event]]
at = "1m"
bus = "bus-c-1"
fault = { line-noise = { rate = 0.01 } }
"#;

#[test]
fn scenario_files_parse_in_time_order_and_check_their_targets() {
    let g = generated(200, 1);
    let s = Scenario::parse("s.toml", SCENARIO, &g.fleet).unwrap();
    let at: Vec<i64> = s.events.iter().map(|e| e.at_us).collect();
    assert_eq!(at, [30_000_000, 60_000_000, 150_000_000]);
    assert_eq!(s.events[0].fault, Fault::MainsLoss);
    assert_eq!(s.events[2].fault, Fault::ClockStep { ms: 1500 });
    let zone: Vec<&str> = Scenario::sirens(&g.fleet, &s.events[0].target).collect();
    assert!(!zone.is_empty() && zone.iter().all(|id| id.starts_with("HZ-C-")));
    let on_bus = Scenario::sirens(&g.fleet, &Target::Bus("bus-c-1".into())).count();
    let expected = g.fleet.sirens.iter().filter(|s| s.links.contains(&Link::Serial { bus: "bus-c-1".into() })).count();
    assert_eq!(on_bus, expected);

    let err = |text: &str| Scenario::parse("s.toml", text, &g.fleet).unwrap_err().to_string();
    assert!(err("[[event]]\nat = \"1m\"\nsiren = \"nope\"\nfault = \"reboot\"\n").contains("event 1: no siren `nope`"));
    assert!(err("[[event]]\nat = \"soon\"\nsiren = \"HZ-C-0001\"\nfault = \"reboot\"\n").contains("not a duration"));
    assert!(err("[[event]]\nat = \"1m\"\nsiren = \"HZ-C-0001\"\nfault = \"explode\"\n").starts_with("s.toml: "));
    assert!(err("[[event]]\nat = \"1m\"\nfault = \"reboot\"\n").contains("exactly one of"));
}

#[test]
fn random_faults_replay_identically_for_a_seed() {
    let g = generated(200, 1);
    let hour = 3_600_000_000;
    let a = random_faults(&g.fleet, 11, hour, 300_000_000, 24 * hour);
    let b = random_faults(&g.fleet, 11, hour, 300_000_000, 24 * hour);
    let c = random_faults(&g.fleet, 12, hour, 300_000_000, 24 * hour);
    assert_eq!(a, b);
    assert_ne!(a, c);
    // About one failure per siren-hour: 200 sirens × 24 h, each failure with its repair.
    let failures = a.events.len() / 2;
    assert!((3_000..6_000).contains(&failures), "{failures}");
    assert!(a.events.windows(2).all(|w| w[0].at_us <= w[1].at_us));
}

#[test]
fn every_fault_written_in_the_docs_parses() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/fleet-files.md")).unwrap();
    let section = doc.split("## Scenario files").nth(1).unwrap();
    let g = generated(200, 1);
    // The example file in the docs.
    let example = section.split("```toml\n").nth(1).unwrap().split("```").next().unwrap();
    let parsed = Scenario::parse("docs example", example, &g.fleet).unwrap();
    assert!(parsed.events.len() > 2, "the example's random faults are drawn too");
    // Every fault expression in the table's first column.
    let mut checked = 0;
    for row in section.lines().filter(|l| l.starts_with("| `")) {
        let first = row.split(" | ").next().unwrap();
        for expr in first.split('`').skip(1).step_by(2) {
            let fault = if expr.starts_with('{') { expr.to_owned() } else { format!("\"{expr}\"") };
            let text = format!("[[event]]\nat = \"1s\"\nsiren = \"HZ-C-0001\"\nfault = {fault}\n");
            Scenario::parse("docs table", &text, &g.fleet).unwrap_or_else(|e| panic!("`{expr}`: {e}"));
            checked += 1;
        }
    }
    assert!(checked >= 25, "only {checked} fault expressions found in the docs");
}

#[test]
fn a_scenario_replayed_on_the_same_seed_ends_in_the_same_state() {
    use siren_proto::fleet::KeyFile as Keys;
    use siren_sim::clock::SimClock;
    use siren_sim::fleet::{BuildOptions, SimFleet, lock};

    let g = generated(150, 5);
    let hour = 3_600_000_000;
    let scenario = random_faults(&g.fleet, 9, hour / 2, 60_000_000, 6 * hour);
    let t0 = 1_789_693_200_000_000;
    let run = |keys: &Keys, events: &[siren_sim::scenario::Event]| {
        // A clock that stands still: a running one put each build's devices at a slightly
        // different true instant (how long building took), and the battery models drifted
        // apart by that much on a loaded machine.
        let sim =
            SimFleet::build(g.fleet.clone(), keys, SimClock::starting_at(t0, 0.0), &BuildOptions::default()).unwrap();
        for e in events {
            for id in Scenario::sirens(&g.fleet, &e.target) {
                lock(sim.controller(id).unwrap()).apply(t0 + e.at_us, &e.fault);
            }
        }
        sim.controllers()
            .map(|(id, c)| {
                let mut c = lock(c);
                c.device.advance(t0 + 7 * hour);
                (id.to_owned(), c.device.status(100), c.link)
            })
            .collect::<Vec<_>>()
    };
    let (a, b) = (run(&g.keys, &scenario.events), run(&g.keys, &scenario.events));
    assert!(a == b, "two replays of one scenario diverged");
    assert!(a != run(&g.keys, &[]), "the scenario changed nothing, so the comparison proves nothing");
}

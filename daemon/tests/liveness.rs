//! The liveness state machine on a virtual clock.
#![allow(clippy::unwrap_used, reason = "test helpers may panic on impossible states")]

use jiff::{SignedDuration, Timestamp};
use proptest::prelude::*;
use siren_proto::message::FaultBits;
use sirend::liveness::{Cause, Change, Observation, Policy, SirenState, State};

const POLICY: Policy = Policy { down_after_misses: 3 };

fn t(secs: i64) -> Timestamp {
    Timestamp::from_second(1_790_000_000).unwrap() + SignedDuration::from_secs(secs)
}

fn heard(link: &str, bits: u32) -> Observation {
    Observation::Heard { link: link.into(), faults: Some(FaultBits(bits)) }
}

fn missed(link: &str) -> Observation {
    Observation::Missed { link: link.into() }
}

fn run(state: SirenState, observations: &[Observation]) -> (SirenState, Vec<Change>) {
    let mut all = Vec::new();
    let mut s = state;
    for (i, o) in observations.iter().enumerate() {
        let (next, changes) = s.step(o, t(i64::try_from(i).unwrap()), POLICY);
        s = next;
        all.extend(changes);
    }
    (s, all)
}

fn serial() -> SirenState {
    SirenState::new(["serial:b1".to_owned()], t(0))
}

#[test]
fn faults_set_the_health_states() {
    let (s, changes) = run(serial(), &[heard("serial:b1", 0)]);
    assert_eq!(s.state, State::Ok);
    assert_eq!(changes, [Change::State { from: State::Unknown, to: State::Ok, cause: Cause::Heard }]);
    let (s, changes) = run(s, &[heard("serial:b1", FaultBits::MAINS_LOST | FaultBits::DOOR_OPEN)]);
    assert_eq!(s.state, State::Degraded);
    assert!(changes.contains(&Change::FaultRaised { fault: "mains_lost" }));
    assert!(changes.contains(&Change::FaultRaised { fault: "door_open" }));
    let (s, changes) = run(s, &[heard("serial:b1", FaultBits::MAINS_LOST | FaultBits::BATTERY_EXHAUSTED)]);
    assert_eq!(s.state, State::Faulty);
    assert!(!s.state.can_sound());
    assert!(changes.contains(&Change::FaultCleared { fault: "door_open" }));
    assert!(changes.contains(&Change::FaultRaised { fault: "battery_exhausted" }));
}

#[test]
fn down_is_debounced_and_an_answer_brings_it_back() {
    let (s, _) = run(serial(), &[heard("serial:b1", 0), missed("serial:b1"), missed("serial:b1")]);
    assert_eq!((s.state, s.misses), (State::Ok, 2), "two misses are not yet down");
    let (s, changes) = run(s, &[missed("serial:b1")]);
    assert_eq!(s.state, State::Down);
    assert_eq!(changes, [Change::State { from: State::Ok, to: State::Down, cause: Cause::Missed }]);
    assert_eq!(s.flaps, 1);
    let (s, _) = run(s, &[missed("serial:b1")]);
    assert_eq!(s.flaps, 1, "staying down is not another flap");
    let (s, _) = run(s, &[heard("serial:b1", 0), missed("serial:b1"), missed("serial:b1"), missed("serial:b1")]);
    assert_eq!((s.state, s.flaps), (State::Down, 2));
}

#[test]
fn a_siren_never_heard_goes_down_after_the_misses_too() {
    let (s, _) = run(serial(), &[missed("serial:b1"), missed("serial:b1"), missed("serial:b1")]);
    assert_eq!(s.state, State::Down);
}

#[test]
fn a_death_is_down_at_once() {
    let mqtt = SirenState::new(["mqtt".to_owned()], t(0));
    let (s, changes) = run(mqtt, &[heard("mqtt", 0), Observation::Died { link: "mqtt".into() }]);
    assert_eq!(s.state, State::Down);
    assert!(changes.contains(&Change::State { from: State::Ok, to: State::Down, cause: Cause::Died }));
    let (s, changes) = run(s, &[Observation::Heard { link: "mqtt".into(), faults: None }]);
    assert_eq!((s.state, s.misses), (State::Down, 0), "a birth alone does not say the siren can sound");
    assert!(changes.is_empty());
    let (s, _) = run(s, &[heard("mqtt", FaultBits::DOOR_OPEN)]);
    assert_eq!(s.state, State::Degraded, "its status does");
}

#[test]
fn a_siren_is_ok_only_once_its_faults_are_known() {
    let mqtt = SirenState::new(["mqtt".to_owned()], t(0));
    let birth = Observation::Heard { link: "mqtt".into(), faults: None };
    let (s, changes) = run(mqtt, std::slice::from_ref(&birth));
    assert_eq!(s.state, State::Unknown);
    assert!(changes.is_empty(), "no unknown -> ok -> degraded flap at boot: {changes:?}");
    let (s, changes) = run(s, &[heard("mqtt", FaultBits::MAINS_LOST)]);
    assert_eq!(s.state, State::Degraded);
    assert_eq!(changes[0], Change::State { from: State::Unknown, to: State::Degraded, cause: Cause::Heard });
    let (s, _) = run(s, std::slice::from_ref(&birth));
    assert_eq!(s.state, State::Degraded, "a known state stands through a birth");
    let (s, _) = run(s, &[Observation::LinkDown { link: "mqtt".into() }, birth]);
    assert_eq!(s.state, State::Unknown, "heard again after being unreachable: there, health unknown");
}

#[test]
fn a_dead_link_makes_its_sirens_unreachable_not_down() {
    let (s, _) = run(serial(), &[heard("serial:b1", 0), Observation::LinkDown { link: "serial:b1".into() }]);
    assert_eq!(s.state, State::Unreachable);
    // Polls cannot be answered while the port is gone: no verdict.
    let (s, _) = run(s, &[missed("serial:b1"), missed("serial:b1"), missed("serial:b1"), missed("serial:b1")]);
    assert_eq!(s.state, State::Unreachable);
    let (s, changes) = run(s, &[Observation::LinkUp { link: "serial:b1".into() }]);
    assert_eq!((s.state, s.misses), (State::Unknown, 0));
    assert_eq!(changes, [Change::State { from: State::Unreachable, to: State::Unknown, cause: Cause::LinkUp }]);
}

#[test]
fn redundancy_a_siren_is_reachable_while_any_link_is() {
    let both = SirenState::new(["serial:b1".to_owned(), "mqtt".to_owned()], t(0));
    let (s, _) = run(both, &[heard("mqtt", 0), Observation::LinkDown { link: "serial:b1".into() }]);
    assert_eq!(s.state, State::Ok, "MQTT still reaches it");
    let (s, _) = run(s, &[heard("mqtt", 0)]);
    assert_eq!(s.state, State::Ok);
    let (s, _) = run(s, &[Observation::LinkDown { link: "mqtt".into() }]);
    assert_eq!(s.state, State::Unreachable);
    // Hearing it again on a link proves that link works.
    let (s, _) = run(s, &[heard("serial:b1", 0)]);
    assert_eq!(s.state, State::Ok);
    assert!(s.reachable());
}

fn observation() -> impl Strategy<Value = Observation> {
    let link = prop_oneof![Just("serial:b1".to_owned()), Just("mqtt".to_owned())];
    (link, 0u8..6, any::<u32>()).prop_map(|(link, kind, bits)| match kind {
        0 => Observation::Heard { link, faults: Some(FaultBits(bits & 0x001F_00FF)) },
        1 => Observation::Heard { link, faults: None },
        2 | 3 => Observation::Missed { link },
        4 => Observation::LinkDown { link },
        _ => Observation::LinkUp { link },
    })
}

proptest! {
    #[test]
    fn invariants_hold_for_any_sequence(observations in proptest::collection::vec(observation(), 0..60)) {
        let mut s = SirenState::new(["serial:b1".to_owned(), "mqtt".to_owned()], t(0));
        let mut misses_in_a_row = 0;
        for (i, o) in observations.iter().enumerate() {
            let reachable_before = s.reachable();
            let (next, changes) = s.step(o, t(i64::try_from(i).unwrap()), POLICY);
            // Every reported state change is the real one, from the real previous state.
            for c in &changes {
                if let Change::State { from, to, .. } = c {
                    prop_assert_eq!(*from, s.state);
                    prop_assert_eq!(*to, next.state);
                }
            }
            prop_assert_eq!(next.state != s.state, changes.iter().any(|c| matches!(c, Change::State { .. })));
            // Unreachable exactly when no link is up (once a link has gone down).
            prop_assert_eq!(next.state == State::Unreachable, !next.reachable());
            misses_in_a_row = match o {
                Observation::Missed { .. } if reachable_before => misses_in_a_row + 1,
                Observation::Heard { .. } => 0,
                Observation::LinkUp { .. } if s.state == State::Unreachable => 0,
                _ => misses_in_a_row,
            };
            // Down only by enough consecutive misses (no deaths in this sequence).
            if next.state == State::Down && s.state != State::Down {
                prop_assert!(misses_in_a_row >= POLICY.down_after_misses);
            }
            s = next;
        }
    }
}

/// Acknowledgements: of any condition but ok; held while the siren stays in it or a milder
/// one; ended by recovery, by something worse or new, and by their expiry.
#[test]
fn an_acknowledgement_holds_until_the_siren_recovers_gets_worse_or_it_expires() {
    use sirend::fleet::{AckRefused, FleetState};
    let g = siren_sim::generate::generate(&siren_sim::generate::Options { sirens: 1, seed: 3, ..Default::default() })
        .unwrap();
    let t0 = Timestamp::UNIX_EPOCH + SignedDuration::from_hours(24 * 365 * 56);
    let mut fleet = FleetState::new(&g.fleet.sirens, Policy { down_after_misses: 2 }, t0);
    let link = g.fleet.sirens[0].links[0].to_string();
    let heard = |faults: u32| Observation::Heard { link: link.clone(), faults: Some(FaultBits(faults)) };
    let missed = Observation::Missed { link: link.clone() };
    let at = |s: i64| t0 + SignedDuration::from_secs(s);
    assert_eq!(fleet.acknowledge(0, "ops", "", None, at(1)).unwrap_err(), AckRefused::NotHeard);
    fleet.observe(0, &heard(0), at(1));
    assert_eq!(fleet.acknowledge(0, "ops", "", None, at(2)).unwrap_err(), AckRefused::NothingWrong);
    // Down, acknowledged; then heard again with its amplifier gone (faulty): a new fault ends it.
    fleet.observe(0, &missed, at(3));
    fleet.observe(0, &missed, at(4));
    assert_eq!(fleet.siren(0).liveness.state, State::Down);
    let ack = fleet.acknowledge(0, "ops", "crew 7", None, at(5)).unwrap();
    assert_eq!(ack.state, State::Down);
    assert!(fleet.acknowledgement(0, at(6)).is_some());
    let changes = fleet.observe(0, &heard(FaultBits::AMPLIFIER_FAILED), at(7));
    assert!(changes.contains(&Change::AcknowledgementEnded { why: "a new fault" }), "{changes:?}");
    assert!(fleet.acknowledgement(0, at(7)).is_none());
    // Faulty, acknowledged; the amplifier is half repaired (degraded, a known fault class
    // gone): milder, it holds; then a door opens (new): it ends.
    let faulty = FaultBits::AMPLIFIER_FAILED | FaultBits::CHANNEL_DEGRADED;
    fleet.observe(0, &heard(faulty), at(8));
    fleet.acknowledge(0, "ops", "", None, at(9)).unwrap();
    let changes = fleet.observe(0, &heard(FaultBits::CHANNEL_DEGRADED), at(10));
    assert_eq!(fleet.siren(0).liveness.state, State::Degraded);
    assert!(!changes.iter().any(|c| matches!(c, Change::AcknowledgementEnded { .. })), "{changes:?}");
    let changes = fleet.observe(0, &heard(FaultBits::CHANNEL_DEGRADED | FaultBits::DOOR_OPEN), at(11));
    assert!(changes.contains(&Change::AcknowledgementEnded { why: "a new fault" }), "{changes:?}");
    // Degraded, acknowledged; it goes down: worse.
    fleet.acknowledge(0, "ops", "", None, at(12)).unwrap();
    fleet.observe(0, &missed, at(13));
    let changes = fleet.observe(0, &missed, at(14));
    assert!(changes.contains(&Change::AcknowledgementEnded { why: "worse than when acknowledged" }), "{changes:?}");
    // Down, acknowledged for a minute: in force for that minute; recovery ends it.
    fleet.acknowledge(0, "ops", "", Some(at(75)), at(15)).unwrap();
    assert!(fleet.acknowledgement(0, at(74)).is_some());
    assert!(fleet.acknowledgement(0, at(75)).is_none(), "expired");
    fleet.acknowledge(0, "ops", "", None, at(80)).unwrap();
    let changes = fleet.observe(0, &heard(0), at(81));
    assert!(changes.contains(&Change::AcknowledgementEnded { why: "recovered" }), "{changes:?}");
}

//! Scenario files: a timeline of faults and link events applied at offsets from the start.
//!
//! ```toml
//! [[event]]
//! at = "30s"                 # offset from the start of the run
//! siren = "HZ-NW-0001"       # one siren, or
//! # zone = "hangzhou/nw"     # every siren in a zone, or
//! # bus = "bus-nw-1"         # every siren on a serial bus
//! fault = "mains-loss"
//!
//! [[event]]
//! at = "2m 30s"
//! siren = "HZ-NW-0002"
//! fault = { clock-step = { ms = 1500 } }
//!
//! [random]                   # optional: random faults, reproducible from the seed
//! seed = 7
//! mtbf = "2h"                # mean time between failures per siren
//! repair_after = "5m"        # each fault is repaired after this long
//! duration = "1h"            # draw faults over this span
//! ```

use std::path::Path;

use jiff::SignedDuration;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Deserialize;
use siren_proto::fleet::Fleet;

use crate::fault::Fault;

/// Which sirens an event applies to.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    Siren(String),
    Zone(String),
    Bus(String),
}

/// One scheduled fault.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Offset from the start of the run, µs.
    pub at_us: i64,
    pub target: Target,
    pub fault: Fault,
}

/// A timeline of faults, ordered by time.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scenario {
    pub events: Vec<Event>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default, rename = "event")]
    events: Vec<RawEvent>,
    random: Option<RawRandom>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEvent {
    at: String,
    siren: Option<String>,
    zone: Option<String>,
    bus: Option<String>,
    fault: Fault,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRandom {
    seed: u64,
    mtbf: String,
    repair_after: String,
    duration: String,
}

/// A scenario file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("{file}: {source}")]
    Read { file: String, source: std::io::Error },
    #[error("{file}: {message}")]
    Syntax { file: String, message: String },
    #[error("{file}: event {index}: {problem}")]
    Event { file: String, index: usize, problem: String },
}

fn parse_duration(text: &str) -> Result<i64, String> {
    let d: SignedDuration =
        text.parse().map_err(|e| format!("`{text}` is not a duration such as \"90s\" or \"2m 30s\": {e}"))?;
    if d.is_negative() {
        return Err(format!("`{text}` is negative"));
    }
    i64::try_from(d.as_micros()).map_err(|_| format!("`{text}` is too long"))
}

impl Scenario {
    pub fn load(path: &Path, fleet: &Fleet) -> Result<Self, ScenarioError> {
        let file = path.display().to_string();
        let text =
            std::fs::read_to_string(path).map_err(|source| ScenarioError::Read { file: file.clone(), source })?;
        Self::parse(&file, &text, fleet)
    }

    /// Parses a scenario and checks every target against the fleet.
    pub fn parse(file: &str, text: &str, fleet: &Fleet) -> Result<Self, ScenarioError> {
        let raw: File =
            toml::from_str(text).map_err(|e| ScenarioError::Syntax { file: file.into(), message: e.to_string() })?;
        let mut events = Vec::new();
        for (i, e) in raw.events.into_iter().enumerate() {
            let problem = |problem: String| ScenarioError::Event { file: file.into(), index: i + 1, problem };
            let at_us = parse_duration(&e.at).map_err(problem)?;
            let target = match (e.siren, e.zone, e.bus) {
                (Some(id), None, None) => {
                    if fleet.get(&id).is_none() {
                        return Err(problem(format!("no siren `{id}` in the fleet")));
                    }
                    Target::Siren(id)
                }
                (None, Some(zone), None) => {
                    if !fleet.sirens.iter().any(|s| s.zone.is_within(&zone)) {
                        return Err(problem(format!("no siren in zone `{zone}`")));
                    }
                    Target::Zone(zone)
                }
                (None, None, Some(bus)) => {
                    if !fleet.buses().contains_key(bus.as_str()) {
                        return Err(problem(format!("no serial bus `{bus}` in the fleet")));
                    }
                    Target::Bus(bus)
                }
                _ => return Err(problem("name exactly one of `siren`, `zone` or `bus`".into())),
            };
            events.push(Event { at_us, target, fault: e.fault });
        }
        if let Some(r) = raw.random {
            let problem =
                |problem: String| ScenarioError::Syntax { file: file.into(), message: format!("[random]: {problem}") };
            let mtbf = parse_duration(&r.mtbf).map_err(problem)?;
            let repair = parse_duration(&r.repair_after).map_err(problem)?;
            let duration = parse_duration(&r.duration).map_err(problem)?;
            if mtbf == 0 {
                return Err(problem("mtbf must be positive".into()));
            }
            events.extend(random_faults(fleet, r.seed, mtbf, repair, duration).events);
        }
        events.sort_by_key(|e| e.at_us);
        Ok(Self { events })
    }

    /// The sirens an event applies to.
    pub fn sirens<'f>(fleet: &'f Fleet, target: &'f Target) -> impl Iterator<Item = &'f str> + 'f {
        fleet
            .sirens
            .iter()
            .filter(move |s| match target {
                Target::Siren(id) => &s.id == id,
                Target::Zone(z) => s.zone.is_within(z),
                Target::Bus(b) => s.serial_bus() == Some(b.as_str()),
            })
            .map(|s| s.id.as_str())
    }
}

/// Random faults: each siren fails as a Poisson process with the given mean time between
/// failures, each failure is repaired after `repair_us`. The same seed gives the same
/// timeline.
#[allow(clippy::cast_possible_truncation, clippy::cast_precision_loss, reason = "µs spans fit in f64")]
pub fn random_faults(fleet: &Fleet, seed: u64, mtbf_us: i64, repair_us: i64, duration_us: i64) -> Scenario {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let pairs = Fault::random_pairs();
    let mut events = Vec::new();
    for siren in &fleet.sirens {
        let mut t = 0i64;
        loop {
            // Exponential inter-arrival time.
            let u: f64 = rng.random_range(f64::EPSILON..1.0);
            t += (-u.ln() * mtbf_us as f64) as i64;
            if t >= duration_us {
                break;
            }
            let (fault, repair) = pairs[rng.random_range(0..pairs.len())].clone();
            let target = Target::Siren(siren.id.clone());
            events.push(Event { at_us: t, target: target.clone(), fault });
            events.push(Event { at_us: t + repair_us, target, fault: repair });
            t += repair_us;
        }
    }
    events.sort_by_key(|e| e.at_us);
    Scenario { events }
}

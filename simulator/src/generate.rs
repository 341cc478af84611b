//! Generates a fleet: positions spread like a real city (denser in the centre), three-level
//! zones, acoustic ratings, serial buses of at most 32 drops, MQTT links, per-device and per-bus
//! keys, and a daemon configuration that matches (docs/fleet-files.md).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use siren_proto::Key;
use siren_proto::fleet::{Fleet, KeyEntry, KeyFile, KeyHolder, Link, Siren};
use siren_proto::frame::{Address, KeyId};

/// Most drops on one RS-485 bus.
pub const MAX_DROPS: usize = 32;
/// First key id of bus group keys; sirens take 1 upwards.
pub const GROUP_KEY_BASE: u16 = 0x8000;

/// The compass districts a city is divided into, north-west to south-east.
const DISTRICTS: [&str; 9] = ["nw", "n", "ne", "w", "c", "e", "sw", "s", "se"];

/// What to generate.
#[derive(Debug, Clone)]
pub struct Options {
    pub sirens: usize,
    pub seed: u64,
    /// City name, the first zone level.
    pub city: String,
    /// Short city code that starts every siren id.
    pub code: String,
    /// Centre of the area, degrees.
    pub centre: (f64, f64),
    /// Half the height and width of the bounding box, degrees of latitude and longitude.
    pub half_extent: (f64, f64),
    /// Share of sirens on serial buses (the rest use MQTT).
    pub serial_share: f64,
    /// Share of serial sirens that also have an MQTT link.
    pub redundant_share: f64,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            sirens: 100,
            seed: 1,
            city: "hangzhou".into(),
            code: "HZ".into(),
            centre: (30.2741, 120.1551),
            half_extent: (0.18, 0.21),
            serial_share: 0.3,
            redundant_share: 0.1,
        }
    }
}

/// A generated fleet and its keys.
#[derive(Debug, Clone)]
pub struct Generated {
    pub fleet: Fleet,
    pub keys: KeyFile,
}

/// Generates a fleet; the same options always give the same fleet and keys.
///
/// The keys come from the seeded generator so that test fleets are reproducible: never deploy
/// them.
pub fn generate(o: &Options) -> anyhow::Result<Generated> {
    anyhow::ensure!(o.sirens > 0, "a fleet needs at least one siren");
    anyhow::ensure!(o.sirens < usize::from(GROUP_KEY_BASE), "at most {} sirens", GROUP_KEY_BASE - 1);
    anyhow::ensure!((0.0..=1.0).contains(&o.serial_share), "serial share must be between 0 and 1");
    let mut rng = ChaCha8Rng::seed_from_u64(o.seed);
    let code = &o.code;
    let mut sirens = Vec::with_capacity(o.sirens);
    let mut per_district: BTreeMap<&str, usize> = BTreeMap::new();
    for i in 0..o.sirens {
        let (dy, dx) = city_offset(&mut rng);
        // Rounded to the 6 decimals (about 0.1 m) the fleet file keeps.
        let lat = ((o.centre.0 + dy * o.half_extent.0) * 1e6).round() / 1e6;
        let lon = ((o.centre.1 + dx * o.half_extent.1) * 1e6).round() / 1e6;
        let (district, town) = district_and_town(dy, dx);
        let n = per_district.entry(district).or_default();
        *n += 1;
        let serial = rng.random_bool(o.serial_share);
        let mut links = Vec::new();
        if serial {
            links.push(Link::Serial { bus: String::new() }); // named once buses are formed
        }
        if !serial || rng.random_bool(o.redundant_share) {
            links.push(Link::Mqtt);
        }
        let id = format!("{code}-{}-{:04}", district.to_uppercase(), n);
        sirens.push(Siren {
            name: format!("{} {} siren {}", o.city, district.to_uppercase(), n),
            id,
            latitude: lat,
            longitude: lon,
            zone: format!("{}/{district}/{town}", o.city).parse().map_err(anyhow::Error::msg)?,
            rating_db: f64::from(rng.random_range(220u16..=250)) / 2.0,
            address: Address(1),
            key_id: KeyId(u16::try_from(i + 1)?),
            links,
        });
    }
    // Serial sirens of one district share buses of at most MAX_DROPS drops.
    let mut keys = Vec::new();
    let mut bus_count = 0u16;
    for district in DISTRICTS {
        let members: Vec<usize> = sirens
            .iter()
            .enumerate()
            .filter(|(_, s)| {
                s.zone.levels().nth(1) == Some(district) && s.links.iter().any(|l| matches!(l, Link::Serial { .. }))
            })
            .map(|(i, _)| i)
            .collect();
        for (b, chunk) in members.chunks(MAX_DROPS).enumerate() {
            let bus = format!("bus-{district}-{}", b + 1);
            for (drop, &i) in chunk.iter().enumerate() {
                sirens[i].address = Address(u16::try_from(drop + 17)?); // 17..=48, clear of defaults
                for link in &mut sirens[i].links {
                    if let Link::Serial { bus: name } = link {
                        name.clone_from(&bus);
                    }
                }
            }
            keys.push(KeyEntry {
                key_id: KeyId(GROUP_KEY_BASE + bus_count),
                holder: KeyHolder::Bus(bus),
                key: random_key(&mut rng),
            });
            bus_count += 1;
        }
    }
    let mut entries: Vec<KeyEntry> = sirens
        .iter()
        .map(|s| KeyEntry { key_id: s.key_id, holder: KeyHolder::Siren(s.id.clone()), key: random_key(&mut rng) })
        .collect();
    entries.extend(keys);
    Ok(Generated { fleet: Fleet { sirens }, keys: KeyFile { entries } })
}

/// A siren to add to a generated fleet: where, in which zone, how loud.
#[derive(Debug, Clone, PartialEq)]
pub struct NewSite {
    pub latitude: f64,
    pub longitude: f64,
    pub zone: String,
    pub rating_db: f64,
}

/// Adds MQTT sirens at `sites` to a generated fleet (ids `<CODE>-<DISTRICT>-P<n>`), each with
/// its own key from the seeded generator.
pub fn add_sirens(g: &mut Generated, code: &str, sites: &[NewSite], seed: u64) -> anyhow::Result<()> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5EED_0ADD);
    let mut next_key = g.fleet.sirens.iter().map(|s| s.key_id.0).filter(|&k| k < GROUP_KEY_BASE).max().unwrap_or(0);
    let mut per_district: BTreeMap<String, usize> = BTreeMap::new();
    for site in sites {
        let zone: siren_proto::fleet::ZonePath = site.zone.parse().map_err(anyhow::Error::msg)?;
        let district = zone.levels().nth(1).unwrap_or("x").to_uppercase();
        let n = per_district.entry(district.clone()).or_default();
        *n += 1;
        next_key += 1;
        anyhow::ensure!(next_key < GROUP_KEY_BASE, "at most {} sirens", GROUP_KEY_BASE - 1);
        let id = format!("{code}-{district}-P{n:03}");
        g.keys.entries.push(KeyEntry {
            key_id: KeyId(next_key),
            holder: KeyHolder::Siren(id.clone()),
            key: random_key(&mut rng),
        });
        g.fleet.sirens.push(Siren {
            name: format!("{} planned siren {}", site.zone, n),
            id,
            latitude: (site.latitude * 1e6).round() / 1e6,
            longitude: (site.longitude * 1e6).round() / 1e6,
            zone,
            rating_db: site.rating_db,
            address: Address(1),
            key_id: KeyId(next_key),
            links: vec![Link::Mqtt],
        });
    }
    Ok(())
}

fn random_key(rng: &mut ChaCha8Rng) -> Key {
    let mut bytes = [0u8; 32];
    rng.fill(&mut bytes);
    Key::new(bytes)
}

/// A position in the unit square around the centre, denser in the middle: 60 % of sirens
/// from a normal distribution of σ = 0.3, the rest uniform (suburbs and villages).
fn city_offset(rng: &mut ChaCha8Rng) -> (f64, f64) {
    if rng.random_bool(0.6) {
        // Box–Muller.
        let u1: f64 = rng.random_range(f64::EPSILON..1.0);
        let u2: f64 = rng.random_range(0.0..1.0);
        let r = (-2.0 * u1.ln()).sqrt() * 0.3;
        let (s, c) = (2.0 * std::f64::consts::PI * u2).sin_cos();
        ((r * s).clamp(-0.999, 0.999), (r * c).clamp(-0.999, 0.999))
    } else {
        (rng.random_range(-0.999..0.999), rng.random_range(-0.999..0.999))
    }
}

/// The compass district (3 × 3 grid) and town (2 × 2 inside it) of a unit-square offset.
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, reason = "clamped to 0..3 and 0..6")]
fn district_and_town(dy: f64, dx: f64) -> (&'static str, String) {
    // Map -1..1 to 0..3 (districts) and 0..6 (towns, two per district).
    let row = (((1.0 - dy) * 1.5) as usize).min(2);
    let col = (((dx + 1.0) * 1.5) as usize).min(2);
    let sub_row = (((1.0 - dy) * 3.0) as usize).min(5) % 2;
    let sub_col = (((dx + 1.0) * 3.0) as usize).min(5) % 2;
    (DISTRICTS[row * 3 + col], format!("t{}", sub_row * 2 + sub_col + 1))
}

/// Paths of the files a generated fleet is written to.
#[derive(Debug, Clone)]
pub struct Written {
    pub fleet: PathBuf,
    pub keys: PathBuf,
    pub config: PathBuf,
}

/// Where `siren-sim serial` links a bus's pseudo-terminal, and so where the generated daemon
/// configuration expects it.
pub fn pty_link(dir: &Path, bus: &str) -> PathBuf {
    dir.join("pty").join(bus)
}

/// Writes `fleet.csv`, `keys.csv` (mode 0600) and `sirend.toml` into `dir`.
pub fn write(generated: &Generated, dir: &Path) -> anyhow::Result<Written> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let dir = dir.canonicalize().with_context(|| format!("resolving {}", dir.display()))?;
    let written = Written { fleet: dir.join("fleet.csv"), keys: dir.join("keys.csv"), config: dir.join("sirend.toml") };

    let mut fleet = Vec::new();
    generated.fleet.write_csv(&mut fleet)?;
    fs::write(&written.fleet, fleet).with_context(|| format!("writing {}", written.fleet.display()))?;

    let mut keys = Vec::new();
    generated.keys.write_csv(&mut keys)?;
    write_private(&written.keys, &keys)?;

    let mut config = String::new();
    writeln!(config, "# sirend configuration for the fleet generated beside it (docs/fleet-files.md).")?;
    writeln!(config, "fleet = \"fleet.csv\"\nkeys = \"keys.csv\"\n")?;
    writeln!(config, "[http]\nlisten = \"127.0.0.1:9750\"\n")?;
    writeln!(config, "[store]\npath = \"sirend.db\"\n")?;
    writeln!(
        config,
        "[mqtt]\n# The daemon's own broker; set embedded = false and url = \"mqtt://host:1883\" for an external one."
    )?;
    writeln!(config, "embedded = true\nlisten = \"127.0.0.1:1884\"\ntopic_root = \"sirennet/v1\"\n")?;
    for bus in generated.fleet.buses().keys() {
        writeln!(
            config,
            "[[serial]]\nbus = \"{bus}\"\n# `siren-sim serial --bus {bus}` links its pseudo-terminal here."
        )?;
        writeln!(config, "port = \"{}\"\nbaud = 9600\n", pty_link(&dir, bus).display())?;
    }
    fs::write(&written.config, config).with_context(|| format!("writing {}", written.config.display()))?;
    Ok(written)
}

/// Writes a file readable by its owner only.
fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let _ = fs::remove_file(path);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(bytes).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

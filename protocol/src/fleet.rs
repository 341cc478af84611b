//! The fleet file and the key file (docs/fleet-files.md): the model of which sirens exist,
//! where they are, how they are reached and which key each holds. Read by the daemon, written
//! by the simulator. Both are CSV so that an operator can edit them in a spreadsheet.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::io;
use std::path::Path;
use std::str::FromStr;

use crate::frame::{Address, KeyId};
use crate::mac::Key;

/// A problem in a fleet or key file, naming the file, the line and the field.
#[derive(Debug, thiserror::Error)]
#[error("{file}{}{}: {problem}", line.map(|l| format!(":{l}")).unwrap_or_default(), field.map(|f| format!(": field `{f}`")).unwrap_or_default())]
pub struct FleetError {
    pub file: String,
    pub line: Option<u64>,
    pub field: Option<&'static str>,
    pub problem: String,
}

impl FleetError {
    fn new(file: &str, line: Option<u64>, field: Option<&'static str>, problem: impl Into<String>) -> Self {
        Self { file: file.to_owned(), line, field, problem: problem.into() }
    }
}

/// A zone path such as `zhoushan/dinghai/yancang`, outermost level first.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ZonePath(String);

impl ZonePath {
    /// The levels, outermost first.
    pub fn levels(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }

    /// This zone and every enclosing zone, outermost first: `a`, `a/b`, `a/b/c`.
    pub fn ancestry(&self) -> impl Iterator<Item = &str> {
        self.0.match_indices('/').map(|(i, _)| &self.0[..i]).chain([self.0.as_str()])
    }

    /// Whether this zone is `other` or lies inside it.
    pub fn is_within(&self, other: &str) -> bool {
        self.0 == other || (self.0.starts_with(other) && self.0.as_bytes().get(other.len()) == Some(&b'/'))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for ZonePath {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err("empty zone path".into());
        }
        for level in s.split('/') {
            if level.is_empty() {
                return Err(format!("zone path `{s}` has an empty level"));
            }
            if !level.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) {
                return Err(format!("zone level `{level}` may hold only letters, digits, `-`, `_` and `.`"));
            }
        }
        Ok(Self(s.to_owned()))
    }
}

impl fmt::Display for ZonePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How the daemon reaches a siren.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Link {
    /// A drop on the named serial bus (the daemon's configuration maps the bus to a port).
    Serial { bus: String },
    /// The siren's own MQTT connection.
    Mqtt,
}

impl FromStr for Link {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once(':') {
            None if s == "mqtt" => Ok(Link::Mqtt),
            Some(("serial", bus)) if valid_name(bus) => Ok(Link::Serial { bus: bus.to_owned() }),
            Some(("serial", bus)) => Err(format!("bus name `{bus}` may hold only letters, digits, `-`, `_` and `.`")),
            _ => Err(format!("`{s}` is not a link: write `serial:<bus>` or `mqtt`")),
        }
    }
}

impl fmt::Display for Link {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Link::Serial { bus } => write!(f, "serial:{bus}"),
            Link::Mqtt => f.write_str("mqtt"),
        }
    }
}

fn valid_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// One siren of the fleet.
#[derive(Debug, Clone, PartialEq)]
pub struct Siren {
    pub id: String,
    pub name: String,
    pub latitude: f64,
    pub longitude: f64,
    pub zone: ZonePath,
    /// Acoustic rating in dB(C) at 30 m.
    pub rating_db: f64,
    /// Protocol address: unique on its serial bus; carried in MQTT frames too.
    pub address: Address,
    pub key_id: KeyId,
    pub links: Vec<Link>,
}

impl Siren {
    /// The serial bus this siren hangs on, if any.
    pub fn serial_bus(&self) -> Option<&str> {
        self.links.iter().find_map(|l| match l {
            Link::Serial { bus } => Some(bus.as_str()),
            Link::Mqtt => None,
        })
    }

    /// Whether the siren has an MQTT link.
    pub fn has_mqtt(&self) -> bool {
        self.links.contains(&Link::Mqtt)
    }
}

/// The columns of the fleet file, in order.
pub const FLEET_COLUMNS: [&str; 9] =
    ["id", "name", "latitude", "longitude", "zone", "rating_db", "address", "key_id", "links"];

/// Every siren of a fleet.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Fleet {
    pub sirens: Vec<Siren>,
}

impl Fleet {
    /// Reads and validates a fleet file.
    pub fn load(path: &Path) -> Result<Self, FleetError> {
        let (file, text) = read(path)?;
        Self::parse(&file, &text)
    }

    /// Parses and validates fleet CSV; `file` names the source in errors.
    pub fn parse(file: &str, text: &str) -> Result<Self, FleetError> {
        let mut reader = csv_reader(text);
        let headers = reader.headers().map_err(|e| FleetError::new(file, Some(1), None, e.to_string()))?.clone();
        let column = |name: &'static str| {
            headers.iter().position(|h| h == name).ok_or_else(|| {
                FleetError::new(
                    file,
                    Some(1),
                    Some(name),
                    format!("missing column (the header must name {FLEET_COLUMNS:?})"),
                )
            })
        };
        let cols: Vec<usize> = FLEET_COLUMNS.iter().map(|c| column(c)).collect::<Result<_, _>>()?;
        let mut sirens = Vec::new();
        for record in reader.records() {
            let record = record
                .map_err(|e| FleetError::new(file, e.position().map(csv::Position::line), None, e.to_string()))?;
            let line = record.position().map(csv::Position::line);
            let get = |i: usize| record.get(cols[i]).unwrap_or("");
            let err = |field, problem: String| FleetError::new(file, line, Some(field), problem);
            let number = |i: usize, field| {
                get(i).parse::<f64>().map_err(|_| err(field, format!("`{}` is not a number", get(i))))
            };
            let siren = Siren {
                id: {
                    let id = get(0);
                    if !valid_name(id) {
                        return Err(err("id", format!("`{id}`: 1-64 letters, digits, `-`, `_` or `.`")));
                    }
                    id.to_owned()
                },
                name: get(1).to_owned(),
                latitude: number(2, "latitude")?,
                longitude: number(3, "longitude")?,
                zone: get(4).parse().map_err(|e| err("zone", e))?,
                rating_db: number(5, "rating_db")?,
                address: Address(parse_u16(get(6)).map_err(|e| err("address", e))?),
                key_id: KeyId(parse_u16(get(7)).map_err(|e| err("key_id", e))?),
                links: get(8)
                    .split(';')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::parse)
                    .collect::<Result<_, _>>()
                    .map_err(|e| err("links", e))?,
            };
            check_siren(&siren).map_err(|(field, problem)| err(field, problem))?;
            sirens.push(siren);
        }
        let fleet = Self { sirens };
        fleet.check_unique(file)?;
        Ok(fleet)
    }

    fn check_unique(&self, file: &str) -> Result<(), FleetError> {
        let mut ids = HashSet::new();
        let mut keys = HashMap::new();
        let mut drops = HashSet::new();
        for s in &self.sirens {
            let dup = |field, problem: String| Err(FleetError::new(file, None, Some(field), problem));
            if !ids.insert(s.id.as_str()) {
                return dup("id", format!("siren id `{}` appears twice", s.id));
            }
            if let Some(other) = keys.insert(s.key_id, s.id.as_str()) {
                return dup("key_id", format!("key id {:#06x} is used by both `{other}` and `{}`", s.key_id.0, s.id));
            }
            if let Some(bus) = s.serial_bus() {
                if !drops.insert((bus, s.address)) {
                    return dup("address", format!("address {} appears twice on bus `{bus}`", s.address.0));
                }
            }
        }
        Ok(())
    }

    /// Writes the fleet as CSV.
    pub fn write_csv(&self, out: impl io::Write) -> io::Result<()> {
        let mut w = csv::Writer::from_writer(out);
        w.write_record(FLEET_COLUMNS)?;
        for s in &self.sirens {
            let links: Vec<String> = s.links.iter().map(ToString::to_string).collect();
            w.write_record([
                s.id.clone(),
                s.name.clone(),
                format!("{:.6}", s.latitude),
                format!("{:.6}", s.longitude),
                s.zone.to_string(),
                format!("{:.1}", s.rating_db),
                s.address.0.to_string(),
                format!("{:#06x}", s.key_id.0),
                links.join(";"),
            ])?;
        }
        w.flush()
    }

    /// Sirens per serial bus, by bus name.
    pub fn buses(&self) -> BTreeMap<&str, Vec<&Siren>> {
        let mut buses: BTreeMap<&str, Vec<&Siren>> = BTreeMap::new();
        for s in &self.sirens {
            if let Some(bus) = s.serial_bus() {
                buses.entry(bus).or_default().push(s);
            }
        }
        buses
    }

    /// The siren with this id.
    pub fn get(&self, id: &str) -> Option<&Siren> {
        self.sirens.iter().find(|s| s.id == id)
    }
}

fn check_siren(s: &Siren) -> Result<(), (&'static str, String)> {
    if !(-90.0..=90.0).contains(&s.latitude) {
        return Err(("latitude", format!("{} is outside -90..90", s.latitude)));
    }
    if !(-180.0..=180.0).contains(&s.longitude) {
        return Err(("longitude", format!("{} is outside -180..180", s.longitude)));
    }
    if !(60.0..=160.0).contains(&s.rating_db) {
        return Err(("rating_db", format!("{} dB(C) at 30 m is outside 60..160", s.rating_db)));
    }
    if !s.address.is_outstation() {
        return Err(("address", format!("{} is reserved (0 is the master, 65535 broadcast)", s.address.0)));
    }
    if s.links.is_empty() {
        return Err(("links", "a siren needs at least one link".into()));
    }
    if s.links.iter().filter(|l| matches!(l, Link::Serial { .. })).count() > 1 {
        return Err(("links", "a siren hangs on at most one serial bus".into()));
    }
    Ok(())
}

/// A file's name for errors and its text.
fn read(path: &Path) -> Result<(String, String), FleetError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| FleetError::new(&file, None, None, e.to_string()))?;
    Ok((file, text))
}

/// A CSV reader as both files are read: trimmed fields, `#` comment lines.
fn csv_reader(text: &str) -> csv::Reader<&[u8]> {
    csv::ReaderBuilder::new().trim(csv::Trim::All).comment(Some(b'#')).from_reader(text.as_bytes())
}

/// Parses `17`, `0x11` or `0X0011`.
fn parse_u16(s: &str) -> Result<u16, String> {
    let parsed = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u16::from_str_radix(hex, 16),
        None => s.parse(),
    };
    parsed.map_err(|_| format!("`{s}` is not a number from 0 to 65535 (decimal or 0x hex)"))
}

/// Who holds a key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KeyHolder {
    /// A siren's own key.
    Siren(String),
    /// The broadcast group key of a serial bus.
    Bus(String),
}

impl FromStr for KeyHolder {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once(':') {
            Some(("siren", id)) if valid_name(id) => Ok(KeyHolder::Siren(id.to_owned())),
            Some(("bus", bus)) if valid_name(bus) => Ok(KeyHolder::Bus(bus.to_owned())),
            _ => Err(format!("`{s}` is not a holder: write `siren:<id>` or `bus:<name>`")),
        }
    }
}

impl fmt::Display for KeyHolder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyHolder::Siren(id) => write!(f, "siren:{id}"),
            KeyHolder::Bus(bus) => write!(f, "bus:{bus}"),
        }
    }
}

/// One key of the key file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyEntry {
    pub key_id: KeyId,
    pub holder: KeyHolder,
    pub key: Key,
}

/// Every key of a fleet: sirens' own keys and bus group keys.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyFile {
    pub entries: Vec<KeyEntry>,
}

impl KeyFile {
    /// Reads a key file. Permission checks are the reader's business (the daemon refuses a
    /// key file that others can read).
    pub fn load(path: &Path) -> Result<Self, FleetError> {
        let (file, text) = read(path)?;
        Self::parse(&file, &text)
    }

    /// Parses key-file CSV (`key_id,holder,key`).
    pub fn parse(file: &str, text: &str) -> Result<Self, FleetError> {
        let mut reader = csv_reader(text);
        let mut entries = Vec::new();
        let mut seen = HashSet::new();
        let mut holders = HashSet::new();
        for record in reader.records() {
            let record = record
                .map_err(|e| FleetError::new(file, e.position().map(csv::Position::line), None, e.to_string()))?;
            let line = record.position().map(csv::Position::line);
            let err = |field, problem: String| FleetError::new(file, line, Some(field), problem);
            let get = |i| record.get(i).unwrap_or("");
            let key_id = KeyId(parse_u16(get(0)).map_err(|e| err("key_id", e))?);
            let holder: KeyHolder = get(1).parse().map_err(|e| err("holder", e))?;
            // Never echo key material into an error message.
            let key = Key::from_hex(get(2)).ok_or_else(|| err("key", "not 64 hexadecimal digits".into()))?;
            if !seen.insert(key_id) {
                return Err(err("key_id", format!("key id {:#06x} appears twice", key_id.0)));
            }
            if !holders.insert(holder.clone()) {
                return Err(err("holder", format!("`{holder}` holds two keys")));
            }
            entries.push(KeyEntry { key_id, holder, key });
        }
        Ok(Self { entries })
    }

    /// Writes the key file as CSV.
    pub fn write_csv(&self, out: impl io::Write) -> io::Result<()> {
        let mut w = csv::Writer::from_writer(out);
        w.write_record(["key_id", "holder", "key"])?;
        for e in &self.entries {
            w.write_record([format!("{:#06x}", e.key_id.0), e.holder.to_string(), hex::encode(e.key.as_bytes())])?;
        }
        w.flush()
    }

    /// The key with this id.
    pub fn key(&self, key_id: KeyId) -> Option<&Key> {
        self.entries.iter().find(|e| e.key_id == key_id).map(|e| &e.key)
    }

    /// The group key of a bus.
    pub fn bus_key(&self, bus: &str) -> Option<&KeyEntry> {
        self.entries.iter().find(|e| matches!(&e.holder, KeyHolder::Bus(b) if b == bus))
    }

    /// Checks that every siren's key is present and held by that siren, and every serial bus
    /// has a group key.
    pub fn check_against(&self, fleet: &Fleet, file: &str) -> Result<(), FleetError> {
        for s in &fleet.sirens {
            let problem = match self.entries.iter().find(|e| e.key_id == s.key_id) {
                None => Some(format!("no key with id {:#06x} for siren `{}`", s.key_id.0, s.id)),
                Some(e) if e.holder != KeyHolder::Siren(s.id.clone()) => {
                    Some(format!("key id {:#06x} belongs to `{}`, not to siren `{}`", s.key_id.0, e.holder, s.id))
                }
                Some(_) => None,
            };
            if let Some(problem) = problem {
                return Err(FleetError::new(file, None, Some("key_id"), problem));
            }
        }
        for bus in fleet.buses().keys() {
            if self.bus_key(bus).is_none() {
                return Err(FleetError::new(file, None, Some("holder"), format!("no group key for bus `{bus}`")));
            }
        }
        Ok(())
    }
}

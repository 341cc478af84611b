//! A running simulated fleet: controllers for every siren of a fleet file, served on PTY serial
//! buses and MQTT, with faults injected by hand or from a scenario and the ground truth of
//! every device readable at any time. This is the library API tests and the demo use.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use anyhow::Context as _;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use siren_proto::fleet::{Fleet, KeyFile};

use crate::clock::SimClock;
use crate::controller::{Controller, Identity};
use crate::device::{Device, DeviceClock, DeviceSpec};
use crate::fault::Fault;
use crate::mqtt::{MqttConfig, MqttDevices};
use crate::scenario::Scenario;
use crate::serial::{BusConfig, SerialBus};

/// A controller shared between its transports and the test that inspects it.
pub type Shared = Arc<Mutex<Controller>>;

/// Locks a controller; a panic on another thread does not make the fleet unusable.
pub fn lock(shared: &Shared) -> MutexGuard<'_, Controller> {
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

/// How the simulated devices are built.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    pub seed: u64,
    /// Clock errors are drawn uniformly from ± this many milliseconds.
    pub clock_offset_ms: i64,
    /// Clock drifts are drawn uniformly from ± this many ppm.
    pub clock_drift_ppm: f64,
    /// How long a reboot keeps a controller off the air, µs.
    pub reboot_time_us: i64,
}

impl Default for BuildOptions {
    fn default() -> Self {
        Self { seed: 1, clock_offset_ms: 2_000, clock_drift_ppm: 5.0, reboot_time_us: crate::device::REBOOT_TIME_US }
    }
}

/// Every simulated controller of a fleet.
#[derive(Debug)]
pub struct SimFleet {
    pub fleet: Fleet,
    pub clock: SimClock,
    controllers: BTreeMap<String, Shared>,
}

impl SimFleet {
    /// Builds a controller for every siren, with the keys of the key file.
    pub fn build(fleet: Fleet, keys: &KeyFile, clock: SimClock, options: &BuildOptions) -> anyhow::Result<Self> {
        keys.check_against(&fleet, "key file")?;
        let mut rng = ChaCha8Rng::seed_from_u64(options.seed);
        let now = clock.now();
        let mut controllers = BTreeMap::new();
        for s in &fleet.sirens {
            let key = keys.key(s.key_id).with_context(|| format!("no key for siren {}", s.id))?.clone();
            let group = s.serial_bus().and_then(|bus| keys.bus_key(bus)).map(|e| (e.key_id, e.key.clone()));
            let offset_us = if options.clock_offset_ms > 0 {
                rng.random_range(-options.clock_offset_ms..=options.clock_offset_ms) * 1_000
            } else {
                0
            };
            let drift = if options.clock_drift_ppm > 0.0 {
                rng.random_range(-options.clock_drift_ppm..=options.clock_drift_ppm)
            } else {
                0.0
            };
            let spec =
                DeviceSpec { rating_db: s.rating_db, reboot_time_us: options.reboot_time_us, ..DeviceSpec::default() };
            let device = Device::new(spec, now, DeviceClock::new(now, offset_us, drift), rng.random_range(1..1000));
            let identity = Identity { siren_id: s.id.clone(), address: s.address, key_id: s.key_id, key, group };
            controllers.insert(s.id.clone(), Arc::new(Mutex::new(Controller::new(identity, device))));
        }
        Ok(Self { fleet, clock, controllers })
    }

    /// The controller of a siren.
    pub fn controller(&self, id: &str) -> Option<&Shared> {
        self.controllers.get(id)
    }

    /// Every controller, by siren id.
    pub fn controllers(&self) -> impl Iterator<Item = (&str, &Shared)> {
        self.controllers.iter().map(|(id, c)| (id.as_str(), c))
    }

    /// Writes every controller's non-volatile state (counters) to `path`, as CSV
    /// (`siren,tx_lease_end,rx_highest,group_rx_highest`), replacing the file atomically.
    pub fn save_state(&self, path: &std::path::Path) -> anyhow::Result<()> {
        use std::fmt::Write as _;
        let mut text = String::from("siren,tx_lease_end,rx_highest,group_rx_highest\n");
        for (id, c) in &self.controllers {
            let nv = lock(c).non_volatile();
            let _ = writeln!(text, "{id},{},{},{}", nv.tx_lease_end, nv.rx_highest, nv.group_rx_highest);
        }
        let partial = path.with_extension("partial");
        std::fs::write(&partial, text).with_context(|| format!("writing {}", partial.display()))?;
        std::fs::rename(&partial, path).with_context(|| format!("replacing {}", path.display()))
    }

    /// Restores the controllers' non-volatile state saved by [`SimFleet::save_state`]; a
    /// missing file is a first start (returns 0). Returns how many sirens were restored.
    pub fn load_state(&self, path: &std::path::Path) -> anyhow::Result<usize> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let mut restored = 0;
        for (n, line) in text.lines().enumerate().skip(1) {
            let fields: Vec<&str> = line.split(',').collect();
            let parse = |i: usize| -> anyhow::Result<u32> {
                fields
                    .get(i)
                    .and_then(|f| f.trim().parse().ok())
                    .with_context(|| format!("{} line {}: column {} is not a counter", path.display(), n + 1, i + 1))
            };
            let [id, ..] = fields.as_slice() else { continue };
            let Some(c) = self.controllers.get(*id) else { continue };
            let nv = crate::controller::NonVolatile {
                tx_lease_end: parse(1)?,
                rx_highest: parse(2)?,
                group_rx_highest: parse(3)?,
            };
            lock(c).restore(nv);
            restored += 1;
        }
        Ok(restored)
    }

    /// Applies a fault to a siren now.
    pub fn inject(&self, id: &str, fault: &Fault) -> anyhow::Result<()> {
        let c = self.controller(id).with_context(|| format!("no siren {id}"))?;
        lock(c).apply(self.clock.now(), fault);
        Ok(())
    }

    /// Starts the serial bus `bus` on a new PTY.
    pub fn serve_serial(&self, bus: &str, baud: u32, link: Option<std::path::PathBuf>) -> anyhow::Result<SerialBus> {
        let (devices, seed) = self.bus_devices(bus)?;
        let config = BusConfig { name: bus.to_owned(), baud, link, tcp: None, seed };
        SerialBus::start(&config, devices, self.clock).with_context(|| format!("starting bus `{bus}` on a PTY"))
    }

    /// The controllers on serial bus `bus`, and the seed of its line noise (reproducible per
    /// bus).
    fn bus_devices(&self, bus: &str) -> anyhow::Result<(Vec<Shared>, u64)> {
        let buses = self.fleet.buses();
        let members = buses.get(bus).with_context(|| format!("no serial bus `{bus}` in the fleet"))?;
        let devices = members.iter().filter_map(|s| self.controllers.get(&s.id).cloned()).collect();
        let seed = bus.bytes().fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
        Ok((devices, seed))
    }

    /// Serves serial bus `bus` on TCP address `addr` (port 0: any free one), as a serial
    /// device server does; [`SerialBus::tcp`] says where.
    pub fn serve_serial_tcp(&self, bus: &str, baud: u32, addr: std::net::SocketAddr) -> anyhow::Result<SerialBus> {
        let (devices, seed) = self.bus_devices(bus)?;
        let config = BusConfig { name: bus.to_owned(), baud, link: None, tcp: Some(addr), seed };
        SerialBus::start(&config, devices, self.clock).with_context(|| format!("serving bus `{bus}` on {addr}"))
    }

    /// Starts every siren that has an MQTT link as its own client of the broker.
    pub fn serve_mqtt(&self, config: &MqttConfig) -> MqttDevices {
        let devices = self
            .fleet
            .sirens
            .iter()
            .filter(|s| s.has_mqtt())
            .filter_map(|s| self.controllers.get(&s.id).map(|c| (s.zone.to_string(), Arc::clone(c))))
            .collect();
        MqttDevices::start(config, devices, self.clock)
    }

    /// Plays a scenario from now on, on the current tokio runtime.
    pub fn play(self: &Arc<Self>, scenario: Scenario) -> tokio::task::JoinHandle<()> {
        let fleet = Arc::clone(self);
        tokio::spawn(async move {
            let start = tokio::time::Instant::now();
            for event in scenario.events {
                let at = start + std::time::Duration::from_micros(u64::try_from(event.at_us).unwrap_or(0));
                tokio::time::sleep_until(at).await;
                for id in Scenario::sirens(&fleet.fleet, &event.target) {
                    tracing::info!(siren = id, fault = ?event.fault, "scenario");
                    let _ = fleet.inject(id, &event.fault);
                }
            }
        })
    }
}

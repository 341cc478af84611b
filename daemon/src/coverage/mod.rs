//! Acoustic coverage: who would hear a warning right now (docs/operations.md, "Coverage").
//!
//! - [`model`]: the FEMA CPG 1-17 level-over-distance model and how overlaps combine.
//! - [`projection`], [`grid`]: the local metric grid and polygons burnt into it.
//! - [`boundaries`], [`population`]: the optional zone and population files.
//! - [`layout`]: zones, acoustics and cell ownership from the configuration.
//! - [`map`]: per-cell coverage kept up to date one siren at a time.
//! - [`planner`]: where to add sirens (greedy maximum coverage, lazily evaluated).
//! - [`outline`], [`export`]: uncovered ground as polygons (GeoJSON); [`render`]: the map (PNG).

pub mod boundaries;
pub mod export;
pub mod grid;
pub mod layout;
pub mod map;
pub mod metrics;
pub mod model;
pub mod outline;
pub mod planner;
pub mod population;
pub mod projection;
pub mod render;
pub mod siting;
pub mod table;

use crate::config::Loaded;
use layout::SirenSpot;
use map::{CoverageMap, LostAlert, ZoneCoverage};

/// One zone's coverage in the three figures people act on (docs/operations.md, "Coverage").
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct ZoneFigures {
    pub zone: String,
    /// With every siren able to sound.
    pub design: ZoneCoverage,
    pub now: ZoneCoverage,
    /// Covered by design but not now: what failures cost.
    pub lost: Lost,
    /// Now below the target, or with sirens none of which can sound.
    pub below_target: bool,
    /// Below the target even with every siren able: a planning matter, not a failure.
    pub design_below_target: bool,
    /// When the zone alerts on coverage lost, if it does.
    pub lost_alert: Option<LostAlert>,
}

/// Coverage lost to failures.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct Lost {
    pub area_m2: f64,
    /// With a population file.
    pub population: Option<f64>,
    /// The part of it that sirens in maintenance explain: what they would cover, were they
    /// able, that no other siren does. The rest is unexplained.
    pub in_maintenance: LostPart,
}

/// A part of the coverage lost.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize, utoipa::ToSchema)]
pub struct LostPart {
    pub area_m2: f64,
    pub population: Option<f64>,
}

impl Lost {
    /// What no maintenance window explains: the loss that alerts.
    pub fn unexplained(&self) -> LostPart {
        LostPart {
            area_m2: (self.area_m2 - self.in_maintenance.area_m2).max(0.0),
            population: self.population.map(|p| (p - self.in_maintenance.population.unwrap_or(0.0)).max(0.0)),
        }
    }
}

/// A siren that cannot sound and what that costs: the ground and people only it would cover.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct SirenLoss {
    #[serde(skip)]
    pub index: usize,
    pub siren: String,
    pub zone: String,
    pub area_m2: f64,
    pub population: Option<f64>,
    /// A crew has it in maintenance.
    pub in_maintenance: bool,
}

/// Whether zone `path` is `zone` or inside it.
pub fn within(path: &str, zone: &str) -> bool {
    path == zone || path.strip_prefix(zone).is_some_and(|rest| rest.starts_with('/'))
}

/// Coverage could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum CoverageError {
    #[error("{file}: {source}")]
    Read { file: String, source: std::io::Error },
    #[error("{file}: {problem}")]
    Boundaries { file: String, problem: String },
    #[error("{file}: line {line}: {problem}")]
    Population { file: String, line: usize, problem: String },
    #[error(
        "the coverage grid would have {cells} cells of {cell_m} m: raise coverage.cell_size_m or split the fleet by zone"
    )]
    GridTooLarge { cells: usize, cell_m: f64 },
    #[error("{0} zones: the coverage grid holds at most 65,534")]
    TooManyZones(usize),
    #[error("no zone has an area: no sirens and no boundaries")]
    NoArea,
}

impl CoverageError {
    fn file(file: &str, source: std::io::Error) -> Self {
        Self::Read { file: file.to_owned(), source }
    }
}

/// The daemon's coverage: the live map, the design coverage (every siren able) beside it, and
/// the siren ids in fleet order.
#[derive(Debug)]
pub struct Coverage {
    map: CoverageMap,
    design: Vec<ZoneCoverage>,
    projection: projection::LocalProjection,
    sirens: Vec<String>,
    /// Which sirens (fleet order) a crew has in maintenance.
    maintenance: Vec<bool>,
}

impl Coverage {
    /// Builds the coverage of the configured fleet's own sirens, none of them able yet.
    pub fn from_config(loaded: &Loaded) -> Result<Self, CoverageError> {
        Self::from_config_with(loaded, &[])
    }

    /// As [`Self::from_config`], with sirens that are planned but not built added after the
    /// fleet's (named `planned-1`, `planned-2`, ...).
    pub fn from_config_with(loaded: &Loaded, planned: &[siting::Planned]) -> Result<Self, CoverageError> {
        let settings = &loaded.config.coverage;
        let own: Vec<&siren_proto::fleet::Siren> = loaded.own_sirens().collect();
        let mut spots: Vec<SirenSpot<'_>> = own.iter().map(|s| SirenSpot::from(*s)).collect();
        spots.extend(planned.iter().map(|p| SirenSpot {
            latitude: p.latitude,
            longitude: p.longitude,
            zone: p.zone.as_str(),
            rating_db: p.rating_db,
        }));
        let boundaries = settings.boundaries.as_ref().map(|p| boundaries::load(&loaded.resolve(p))).transpose()?;
        let population_path = settings.population.as_ref().map(|p| loaded.resolve(p));
        let read_population = population_path
            .as_deref()
            .map(|path| move |g: &grid::Grid, p: &projection::LocalProjection| population::load(path, g, p));
        let built = layout::build(
            settings,
            &spots,
            boundaries.as_deref(),
            read_population.as_ref().map(|read| read as layout::PopulationReader<'_>),
        )?;
        let ids = own.iter().map(|s| s.id.clone()).chain((1..=planned.len()).map(|i| format!("planned-{i}")));
        Ok(Self::new(built, ids.collect()))
    }

    /// Each zone's area as people are shown it: the boundaries file's, or without one the
    /// hull of its sirens' audible circles (what the coverage model takes the zone to be).
    pub fn zone_areas(loaded: &Loaded) -> Result<Vec<boundaries::Boundary>, CoverageError> {
        let settings = &loaded.config.coverage;
        if let Some(path) = &settings.boundaries {
            return boundaries::load(&loaded.resolve(path));
        }
        let spots: Vec<SirenSpot<'_>> = loaded.own_sirens().map(SirenSpot::from).collect();
        layout::zone_hulls(settings, &spots)
    }

    /// Coverage of a built layout; `sirens` names its sites in order.
    pub fn new(built: layout::Built, sirens: Vec<String>) -> Self {
        let mut map = CoverageMap::new(built.layout, built.sites);
        map.recompute(&vec![true; sirens.len()]);
        map.fix_design();
        let design = map.report();
        map.recompute(&vec![false; sirens.len()]);
        let maintenance = vec![false; sirens.len()];
        Self { map, design, projection: built.projection, sirens, maintenance }
    }

    /// Records whether siren `index` (fleet order) is in maintenance.
    pub fn set_in_maintenance(&mut self, index: usize, in_maintenance: bool) {
        if let Some(m) = self.maintenance.get_mut(index) {
            *m = in_maintenance;
        }
    }

    /// Records whether siren `index` (fleet order) can sound.
    pub fn set_able(&mut self, index: usize, able: bool) -> bool {
        self.map.set_able(index, able)
    }

    /// Coverage now, per zone at every level.
    pub fn current(&self) -> Vec<ZoneCoverage> {
        self.map.report()
    }

    /// Coverage if only the sirens `able` names (ids) could sound, e.g. those that passed a
    /// sounding. The live state is restored before returning.
    pub fn with_only(&mut self, able: &std::collections::HashSet<&str>) -> Vec<ZoneCoverage> {
        let before: Vec<bool> = (0..self.sirens.len()).map(|i| self.map.is_able(i)).collect();
        for i in 0..self.sirens.len() {
            self.map.set_able(i, able.contains(self.sirens[i].as_str()));
        }
        let report = self.map.report();
        for (i, was) in before.into_iter().enumerate() {
            self.map.set_able(i, was);
        }
        report
    }

    /// Coverage with every siren able to sound.
    pub fn design(&self) -> &[ZoneCoverage] {
        &self.design
    }

    /// Per zone: design, now and lost (with the part sirens in maintenance explain).
    pub fn figures(&mut self) -> Vec<ZoneFigures> {
        let current = self.current();
        // Coverage were the sirens in maintenance able: what they cost is the difference.
        let idle: Vec<usize> =
            (0..self.sirens.len()).filter(|&i| self.maintenance[i] && !self.map.is_able(i)).collect();
        let restored = if idle.is_empty() {
            None
        } else {
            for &i in &idle {
                self.map.set_able(i, true);
            }
            let report = self.map.report();
            for &i in &idle {
                self.map.set_able(i, false);
            }
            Some(report)
        };
        let zones = &self.map.layout().zones;
        current
            .into_iter()
            .zip(&self.design)
            .zip(zones)
            .enumerate()
            .map(|(z, ((now, design), zone))| {
                // Design covers everything covered now (sirens only add), so the difference is
                // exactly the cells and people covered by design and not now.
                let difference = |more: &ZoneCoverage, less: &ZoneCoverage| LostPart {
                    area_m2: (more.covered_area_m2 - less.covered_area_m2).max(0.0),
                    population: more.covered_population.zip(less.covered_population).map(|(d, n)| (d - n).max(0.0)),
                };
                let total = difference(design, &now);
                let in_maintenance = restored.as_ref().map_or_else(
                    || LostPart { area_m2: 0.0, population: total.population.map(|_| 0.0) },
                    |r| difference(&r[z], &now),
                );
                let lost = Lost { area_m2: total.area_m2, population: total.population, in_maintenance };
                ZoneFigures {
                    zone: now.zone.clone(),
                    below_target: now.below_target(),
                    design_below_target: design.below_target(),
                    lost,
                    lost_alert: zone.lost_alert,
                    design: design.clone(),
                    now,
                }
            })
            .collect()
    }

    /// Per cell, whether the sirens in maintenance that cannot sound would cover it were they
    /// able; `None` when there are none.
    pub fn explained_by_maintenance(&mut self) -> Option<Vec<bool>> {
        let idle: Vec<usize> =
            (0..self.sirens.len()).filter(|&i| self.maintenance[i] && !self.map.is_able(i)).collect();
        if idle.is_empty() {
            return None;
        }
        for &i in &idle {
            self.map.set_able(i, true);
        }
        let covered = (0..self.map.layout().grid.cells()).map(|cell| self.map.is_covered(cell)).collect();
        for &i in &idle {
            self.map.set_able(i, false);
        }
        Some(covered)
    }

    /// The sirens that cannot sound now, each with the ground and people only it would cover:
    /// most people first (then area, then id).
    pub fn lost_by_siren(&mut self) -> Vec<SirenLoss> {
        let population = self.has_population();
        let cell_m2 = self.map.layout().grid.cell_area_m2();
        let sole = self.map.sole_coverage().to_vec();
        let layout = self.map.layout();
        let mut out: Vec<SirenLoss> = sole
            .into_iter()
            .enumerate()
            .filter(|&(i, _)| !self.map.is_able(i))
            .map(|(i, s)| {
                #[allow(clippy::cast_precision_loss, reason = "cell counts and people fit f64")]
                SirenLoss {
                    index: i,
                    siren: self.sirens[i].clone(),
                    zone: layout.zones[self.map.sites()[i].zone].path.clone(),
                    area_m2: s.cells as f64 * cell_m2,
                    population: population.then_some(s.population_milli as f64 / 1000.0),
                    in_maintenance: self.maintenance[i],
                }
            })
            .collect();
        out.sort_by(|a, b| {
            b.population
                .unwrap_or(0.0)
                .total_cmp(&a.population.unwrap_or(0.0))
                .then(b.area_m2.total_cmp(&a.area_m2))
                .then_with(|| a.siren.cmp(&b.siren))
        });
        out
    }

    /// Whether `zone` is one of the coverage's zones.
    pub fn has_zone(&self, zone: &str) -> bool {
        self.map.layout().zones.iter().any(|z| z.path == zone)
    }

    pub fn has_population(&self) -> bool {
        self.map.layout().population.is_some()
    }

    /// Per siren (id, what it alone covers).
    pub fn sole_coverage(&mut self) -> Vec<(&str, map::SoleCoverage)> {
        let sole = self.map.sole_coverage().to_vec();
        self.sirens.iter().map(String::as_str).zip(sole).collect()
    }

    /// The `n` sirens whose failure uncovers the most people (then the most area): the
    /// maintenance priority. Each with its index in fleet order.
    pub fn priority(&mut self, n: usize) -> Vec<(usize, String, map::SoleCoverage)> {
        let mut sole: Vec<(usize, String, map::SoleCoverage)> =
            self.sole_coverage().into_iter().enumerate().map(|(i, (id, s))| (i, id.to_owned(), s)).collect();
        sole.sort_by(|a, b| {
            (b.2.population_milli, b.2.cells).cmp(&(a.2.population_milli, a.2.cells)).then_with(|| a.1.cmp(&b.1))
        });
        sole.truncate(n);
        sole
    }

    pub fn map(&self) -> &CoverageMap {
        &self.map
    }

    pub fn projection(&self) -> &projection::LocalProjection {
        &self.projection
    }

    pub fn siren_ids(&self) -> &[String] {
        &self.sirens
    }

    /// One line for `check-config`: the grid and what it was built from.
    pub fn summary(&self) -> String {
        let layout = self.map.layout();
        let g = &layout.grid;
        let zoned = layout.owner.iter().filter(|&&z| z != map::NO_ZONE).count();
        #[allow(clippy::cast_precision_loss)]
        let km2 = zoned as f64 * g.cell_area_m2() / 1e6;
        let people = self.design.iter().filter(|z| !z.zone.contains('/')).filter_map(|z| z.population).sum::<f64>();
        let population = if self.has_population() { format!(", {people:.0} people") } else { String::new() };
        format!(
            "coverage: {} x {} cells of {} m, {km2:.1} km² in {} zones{population}; {} overlap\n",
            g.width,
            g.height,
            g.cell_m,
            layout.zones.len(),
            layout.overlap.as_str()
        )
    }
}

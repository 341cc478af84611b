//! Acoustic coverage: who would hear a warning right now (docs/operations.md, "Coverage").
//!
//! - [`model`]: the FEMA CPG 1-17 level-over-distance model and how overlaps combine.
//! - [`projection`], [`grid`]: the local metric grid and polygons burnt into it.
//! - [`boundaries`], [`population`]: the optional zone and population files.
//! - [`layout`]: zones, acoustics and cell ownership from the configuration.
//! - [`map`]: per-cell coverage kept up to date one siren at a time.
//! - [`outline`], [`export`]: uncovered areas as polygons (GeoJSON) and a rendered map (PNG).

pub mod boundaries;
pub mod export;
pub mod grid;
pub mod layout;
pub mod map;
pub mod metrics;
pub mod model;
pub mod outline;
pub mod population;
pub mod projection;
pub mod table;

use crate::config::Loaded;
use layout::SirenSpot;
use map::{CoverageMap, ZoneCoverage};

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
}

impl Coverage {
    /// Builds the coverage of the configured fleet's own sirens, none of them able yet.
    pub fn from_config(loaded: &Loaded) -> Result<Self, CoverageError> {
        let settings = &loaded.config.coverage;
        let own: Vec<&siren_proto::fleet::Siren> = loaded.own_sirens().collect();
        let spots: Vec<SirenSpot<'_>> = own.iter().map(|s| SirenSpot::from(*s)).collect();
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
        Ok(Self::new(built, own.iter().map(|s| s.id.clone()).collect()))
    }

    /// Coverage of a built layout; `sirens` names its sites in order.
    pub fn new(built: layout::Built, sirens: Vec<String>) -> Self {
        let mut map = CoverageMap::new(built.layout, built.sites);
        map.recompute(&vec![true; sirens.len()]);
        let design = map.report();
        map.recompute(&vec![false; sirens.len()]);
        Self { map, design, projection: built.projection, sirens }
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

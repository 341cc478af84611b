//! Per-cell coverage, kept up to date one siren at a time.
//!
//! Every cell holds the sum of the contributions of the sirens able to sound that reach it: 0
//! or 1 each under [`Overlap::Loudest`] (so the sum counts the sirens covering the cell), fixed-point
//! intensities under [`Overlap::Energy`]. Integer sums make adding and removing one siren
//! exact, so an incrementally maintained map always equals a full recomputation.

use super::grid::Grid;
use super::model::{Acoustics, ENERGY_UNIT, Overlap};

/// Marks a cell that belongs to no zone: it is neither counted nor covered.
pub const NO_ZONE: u16 = u16::MAX;

/// One zone of the hierarchy.
#[derive(Debug, Clone, PartialEq)]
pub struct Zone {
    pub path: String,
    pub parent: Option<usize>,
    /// Index into [`Layout::classes`]: the acoustics of the zone's terrain.
    pub class: usize,
    /// The covered share below which the zone's design is short.
    pub target_ratio: f64,
    /// People (and square metres) lost to failures above which the zone alerts, if it does.
    pub lost_alert: Option<LostAlert>,
}

/// When a zone's coverage lost to failures alerts.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct LostAlert {
    pub people: f64,
    pub area_m2: f64,
}

/// Where a siren stands and how loud it is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Site {
    pub x: f64,
    pub y: f64,
    pub rating_db: f64,
    /// The zone it belongs to (index into [`Layout::zones`]).
    pub zone: usize,
}

/// What does not change while the daemon runs: the grid, which zone owns each cell, the
/// zones' acoustics and the population.
#[derive(Debug, Clone)]
pub struct Layout {
    pub grid: Grid,
    /// The zone each cell belongs to (the deepest whose area holds its centre), or [`NO_ZONE`].
    pub owner: Vec<u16>,
    pub zones: Vec<Zone>,
    pub classes: Vec<Acoustics>,
    /// People per cell, in thousandths of a person (integers, for exact sums).
    pub population: Option<Vec<u32>>,
    pub overlap: Overlap,
}

/// Cells and people, counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub cells: u64,
    pub population_milli: u64,
}

impl Tally {
    fn add(&mut self, other: Tally) {
        self.cells += other.cells;
        self.population_milli += other.population_milli;
    }
}

/// A zone's coverage, its own cells and every zone inside it together.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct ZoneCoverage {
    pub zone: String,
    pub area_m2: f64,
    pub covered_area_m2: f64,
    /// Covered share of the area; 1 for a zone without area.
    pub area_ratio: f64,
    /// People living in the zone, when a population file is configured.
    pub population: Option<f64>,
    pub covered_population: Option<f64>,
    /// Covered share of the people; absent for a zone where nobody lives.
    pub population_ratio: Option<f64>,
    pub uncovered_population: Option<f64>,
    pub target_ratio: f64,
    /// The sirens in the zone (and the zones inside it), and those of them able to sound.
    pub sirens: usize,
    pub sirens_able: usize,
}

impl ZoneCoverage {
    /// The ratio alerts compare with the target: by population when known, else by area.
    pub fn ratio(&self) -> f64 {
        self.population_ratio.unwrap_or(self.area_ratio)
    }

    /// Below its target, or with sirens none of which can sound (whatever the ratio says:
    /// a zone whose ground other zones' sirens reach still has its own sirens silent).
    pub fn below_target(&self) -> bool {
        self.ratio() < self.target_ratio || (self.sirens > 0 && self.sirens_able == 0)
    }
}

/// What one siren alone covers: the cells and people no other able siren would cover.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SoleCoverage {
    pub cells: u64,
    pub population_milli: u64,
}

#[derive(Debug, Clone)]
struct Reach {
    /// Squared reach per acoustics class, m².
    r2: Vec<f64>,
    /// The largest reach over the classes, m.
    max: f64,
}

/// The live coverage map.
#[derive(Debug, Clone)]
pub struct CoverageMap {
    layout: Layout,
    sites: Vec<Site>,
    reach: Vec<Reach>,
    able: Vec<bool>,
    level: Vec<u32>,
    /// Per zone, its own cells (not its children's) and those of them covered.
    total: Vec<Tally>,
    covered: Vec<Tally>,
    sole: Option<Vec<SoleCoverage>>,
    /// The cells covered with every siren able, one bit each (empty until [`Self::fix_design`]).
    design: Vec<u64>,
}

impl CoverageMap {
    /// A map of `sites`, none of them able to sound yet.
    pub fn new(layout: Layout, sites: Vec<Site>) -> Self {
        let reach = sites
            .iter()
            .map(|s| {
                let r: Vec<f64> = layout
                    .classes
                    .iter()
                    .map(|a| match layout.overlap {
                        Overlap::Loudest => a.audible_radius_m(s.rating_db),
                        Overlap::Energy => a.energy_radius_m(s.rating_db),
                    })
                    .collect();
                Reach { max: r.iter().copied().fold(0.0, f64::max), r2: r.iter().map(|r| r * r).collect() }
            })
            .collect();
        let mut total = vec![Tally::default(); layout.zones.len()];
        for (cell, &z) in layout.owner.iter().enumerate() {
            if z != NO_ZONE {
                total[usize::from(z)].add(Tally { cells: 1, population_milli: population_of(&layout, cell) });
            }
        }
        let n = sites.len();
        Self {
            level: vec![0; layout.grid.cells()],
            covered: vec![Tally::default(); layout.zones.len()],
            total,
            able: vec![false; n],
            reach,
            sites,
            layout,
            sole: None,
            design: Vec::new(),
        }
    }

    /// Records the cells covered now as the design coverage (call with every siren able).
    pub fn fix_design(&mut self) {
        let mut design = vec![0u64; self.level.len().div_ceil(64)];
        for cell in 0..self.level.len() {
            if self.is_covered(cell) {
                design[cell / 64] |= 1 << (cell % 64);
            }
        }
        self.design = design;
    }

    /// Whether cell `cell` is covered by design (every siren able).
    pub fn is_design_covered(&self, cell: usize) -> bool {
        self.design.get(cell / 64).is_some_and(|w| w & (1 << (cell % 64)) != 0)
    }

    /// Whether cell `cell` is covered by design but not now: coverage lost to failures.
    pub fn is_lost(&self, cell: usize) -> bool {
        self.is_uncovered(cell) && self.is_design_covered(cell)
    }

    /// Whether cell `cell` belongs to a zone that no siren covers even with all able.
    pub fn is_design_gap(&self, cell: usize) -> bool {
        self.layout.owner[cell] != NO_ZONE && !self.is_design_covered(cell)
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    pub fn sites(&self) -> &[Site] {
        &self.sites
    }

    pub fn is_able(&self, site: usize) -> bool {
        self.able[site]
    }

    /// The per-cell sums, for comparisons in tests.
    pub fn levels(&self) -> &[u32] {
        &self.level
    }

    /// Whether cell `cell` belongs to a zone and is covered.
    pub fn is_covered(&self, cell: usize) -> bool {
        self.layout.owner[cell] != NO_ZONE && self.level[cell] >= self.need()
    }

    /// Whether cell `cell` belongs to a zone and is not covered.
    pub fn is_uncovered(&self, cell: usize) -> bool {
        self.layout.owner[cell] != NO_ZONE && self.level[cell] < self.need()
    }

    fn need(&self) -> u32 {
        match self.layout.overlap {
            Overlap::Loudest => 1,
            Overlap::Energy => ENERGY_UNIT,
        }
    }

    /// Records whether siren `site` can sound, updating only the cells within its reach.
    /// Returns whether anything changed.
    pub fn set_able(&mut self, site: usize, able: bool) -> bool {
        if self.able[site] == able {
            return false;
        }
        self.able[site] = able;
        self.sole = None;
        let need = self.need();
        let (level, covered, layout) = (&mut self.level, &mut self.covered, &self.layout);
        for_each_contribution(layout, &self.sites[site], &self.reach[site], |cell, zone, c| {
            let before = level[cell] >= need;
            if able {
                level[cell] += c;
            } else {
                level[cell] -= c;
            }
            if before != (level[cell] >= need) {
                let t = &mut covered[zone];
                let pop = population_of(layout, cell);
                if able {
                    t.cells += 1;
                    t.population_milli += pop;
                } else {
                    t.cells -= 1;
                    t.population_milli -= pop;
                }
            }
        });
        true
    }

    /// Sets every siren's ability at once and recomputes the map from nothing.
    pub fn recompute(&mut self, able: &[bool]) {
        self.able.copy_from_slice(able);
        self.sole = None;
        self.level.iter_mut().for_each(|l| *l = 0);
        for site in 0..self.sites.len() {
            if self.able[site] {
                let level = &mut self.level;
                for_each_contribution(&self.layout, &self.sites[site], &self.reach[site], |cell, _, c| {
                    level[cell] += c;
                });
            }
        }
        let need = self.need();
        self.covered.iter_mut().for_each(|t| *t = Tally::default());
        for (cell, &z) in self.layout.owner.iter().enumerate() {
            if z != NO_ZONE && self.level[cell] >= need {
                self.covered[usize::from(z)]
                    .add(Tally { cells: 1, population_milli: population_of(&self.layout, cell) });
            }
        }
    }

    /// Each zone's own covered tally (not including its children), for comparisons in tests.
    pub fn covered_tallies(&self) -> &[Tally] {
        &self.covered
    }

    /// Coverage of every zone, each including the zones inside it.
    pub fn report(&self) -> Vec<ZoneCoverage> {
        let zones = &self.layout.zones;
        let mut total = self.total.clone();
        let mut covered = self.covered.clone();
        let mut sirens = vec![(0usize, 0usize); zones.len()];
        for (site, able) in self.sites.iter().zip(&self.able) {
            let n = &mut sirens[site.zone];
            n.0 += 1;
            n.1 += usize::from(*able);
        }
        // Children sort after their parents (paths in order), so one backward pass aggregates.
        for z in (0..zones.len()).rev() {
            if let Some(p) = zones[z].parent {
                let (t, c, n) = (total[z], covered[z], sirens[z]);
                total[p].add(t);
                covered[p].add(c);
                sirens[p] = (sirens[p].0 + n.0, sirens[p].1 + n.1);
            }
        }
        let cell_area = self.layout.grid.cell_area_m2();
        let has_population = self.layout.population.is_some();
        zones
            .iter()
            .enumerate()
            .map(|(z, zone)| {
                let (t, c) = (total[z], covered[z]);
                #[allow(clippy::cast_precision_loss)]
                let people = |milli: u64| milli as f64 / 1000.0;
                #[allow(clippy::cast_precision_loss)]
                let ratio = |part: u64, whole: u64| if whole == 0 { 1.0 } else { part as f64 / whole as f64 };
                #[allow(clippy::cast_precision_loss)]
                ZoneCoverage {
                    zone: zone.path.clone(),
                    area_m2: t.cells as f64 * cell_area,
                    covered_area_m2: c.cells as f64 * cell_area,
                    area_ratio: ratio(c.cells, t.cells),
                    population: has_population.then(|| people(t.population_milli)),
                    covered_population: has_population.then(|| people(c.population_milli)),
                    population_ratio: (has_population && t.population_milli > 0)
                        .then(|| ratio(c.population_milli, t.population_milli)),
                    uncovered_population: has_population.then(|| people(t.population_milli - c.population_milli)),
                    target_ratio: zone.target_ratio,
                    sirens: sirens[z].0,
                    sirens_able: sirens[z].1,
                }
            })
            .collect()
    }

    /// Per siren, what it alone covers: for a siren able to sound, the cells that would go
    /// uncovered if it failed; for one that cannot, those it would cover if it were repaired.
    pub fn sole_coverage(&mut self) -> &[SoleCoverage] {
        if self.sole.is_none() {
            let need = self.need();
            let sole = (0..self.sites.len())
                .map(|site| {
                    let mut sole = SoleCoverage::default();
                    let own = self.able[site];
                    for_each_contribution(&self.layout, &self.sites[site], &self.reach[site], |cell, _, c| {
                        let others = if own { self.level[cell] - c } else { self.level[cell] };
                        if others < need && others + c >= need {
                            sole.cells += 1;
                            sole.population_milli += population_of(&self.layout, cell);
                        }
                    });
                    sole
                })
                .collect();
            self.sole = Some(sole);
        }
        self.sole.as_deref().unwrap_or_default()
    }
}

fn population_of(layout: &Layout, cell: usize) -> u64 {
    layout.population.as_ref().map_or(0, |p| u64::from(p[cell]))
}

/// Calls `f(cell, zone, contribution)` for every zoned cell that `site` contributes to.
fn for_each_contribution(layout: &Layout, site: &Site, reach: &Reach, mut f: impl FnMut(usize, usize, u32)) {
    let g = &layout.grid;
    let r = reach.max;
    if r <= 0.0 {
        return;
    }
    for row in g.rows_between(site.y - r, site.y + r) {
        let dy = g.centre_y(row) - site.y;
        let half = (r * r - dy * dy).max(0.0).sqrt();
        let base = row * g.width;
        for col in g.columns_between(site.x - half, site.x + half) {
            let cell = base + col;
            let zone = layout.owner[cell];
            if zone == NO_ZONE {
                continue;
            }
            let zone = usize::from(zone);
            let class = layout.zones[zone].class;
            let dx = g.centre_x(col) - site.x;
            let d2 = dx * dx + dy * dy;
            if d2 > reach.r2[class] {
                continue;
            }
            let c = match layout.overlap {
                Overlap::Loudest => 1,
                Overlap::Energy => layout.classes[class].energy_units(site.rating_db, d2.sqrt()),
            };
            if c > 0 {
                f(cell, zone, c);
            }
        }
    }
}

/// The straightforward computation, for benchmarks and tests: every cell against every able
/// siren. Returns the per-cell sums.
pub fn naive_levels(layout: &Layout, sites: &[Site], able: &[bool]) -> Vec<u32> {
    let g = &layout.grid;
    let able_sites: Vec<(&Site, Vec<f64>)> = sites
        .iter()
        .zip(able)
        .filter(|(_, a)| **a)
        .map(|(s, _)| {
            let r2 = layout
                .classes
                .iter()
                .map(|a| match layout.overlap {
                    Overlap::Loudest => a.audible_radius_m(s.rating_db),
                    Overlap::Energy => a.energy_radius_m(s.rating_db),
                })
                .map(|r| r * r)
                .collect();
            (s, r2)
        })
        .collect();
    let mut level = vec![0u32; g.cells()];
    for row in 0..g.height {
        let y = g.centre_y(row);
        for col in 0..g.width {
            let cell = row * g.width + col;
            let zone = layout.owner[cell];
            if zone == NO_ZONE {
                continue;
            }
            let class = layout.zones[usize::from(zone)].class;
            let x = g.centre_x(col);
            for (site, r2) in &able_sites {
                let (dx, dy) = (x - site.x, y - site.y);
                let d2 = dx * dx + dy * dy;
                if d2 <= r2[class] {
                    level[cell] += match layout.overlap {
                        Overlap::Loudest => 1,
                        Overlap::Energy => layout.classes[class].energy_units(site.rating_db, d2.sqrt()),
                    };
                }
            }
        }
    }
    level
}

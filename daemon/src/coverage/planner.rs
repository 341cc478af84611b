//! Where to add sirens: greedy maximum coverage with lazy evaluation over candidate sites.
//!
//! Starting from the cells a map covers (every siren able, for the design; fewer or more for a
//! "what if"), the planner repeatedly takes the candidate site that would cover the most
//! people (or area, without a population) not yet covered in zones still short of their
//! target, until every zone meets it or `max_new` sites are taken. Coverage is a monotone
//! submodular function of the sites taken, so greedy is within 1 − 1/e (63 %) of the best
//! choice of the same number of sites, and a candidate's gain only shrinks as others are
//! taken: its last computed gain bounds it, which lets most candidates go unevaluated (lazy
//! greedy, Minoux 1978). A new siren counts as covering a cell when the cell is within its
//! audible radius (the `loudest` model, whatever the map's overlap setting: energy summation
//! is not submodular).

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use super::map::{CoverageMap, NO_ZONE};

/// What to plan.
#[derive(Debug, Clone)]
pub struct PlanOptions {
    /// Most sites to propose.
    pub max_new: usize,
    /// Rating of the sirens to add, dB(C) at 30 m.
    pub rating_db: f64,
    /// The covered share to reach in every zone (default: each zone's own target).
    pub target: Option<f64>,
    /// Candidate sites, projected metres; `None`: a grid over the zones.
    pub candidates: Option<Vec<(f64, f64)>>,
}

/// One proposed site.
#[derive(Debug, Clone, PartialEq)]
pub struct Proposal {
    pub x: f64,
    pub y: f64,
    /// Index of the zone it stands in.
    pub zone: usize,
    /// People (with a population) and area it adds.
    pub people: f64,
    pub area_m2: f64,
    /// Running totals over the proposals so far.
    pub total_people: f64,
    pub total_area_m2: f64,
}

/// The plan.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub proposals: Vec<Proposal>,
    /// Zones still short of the target after the proposals (indices).
    pub still_short: Vec<usize>,
    /// Candidate gains computed (lazy evaluation's cost).
    pub evaluations: usize,
    pub candidates: usize,
}

/// A candidate's last computed gain, ordered for the max-heap (ties: the lower index first).
#[derive(Debug, PartialEq, Eq)]
struct Bound {
    gain: u64,
    candidate: usize,
}

impl Ord for Bound {
    fn cmp(&self, other: &Self) -> Ordering {
        self.gain.cmp(&other.gain).then(other.candidate.cmp(&self.candidate))
    }
}

impl PartialOrd for Bound {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// The planner's view of the map: which cells are covered, who lives there, and what each
/// zone still needs.
struct State<'a> {
    map: &'a CoverageMap,
    covered: Vec<bool>,
    /// Weight of each cell: people in thousandths, or 1 per cell without a population.
    weight: Vec<u64>,
    /// Per zone (with the zones inside it): total and covered weight, and the weight it needs.
    total: Vec<u64>,
    done: Vec<u64>,
    need: Vec<u64>,
    /// Each zone and its ancestors.
    chain: Vec<Vec<usize>>,
    /// Squared audible radius of the new siren per acoustics class, and the largest radius.
    r2: Vec<f64>,
    reach: f64,
}

impl<'a> State<'a> {
    fn new(map: &'a CoverageMap, options: &PlanOptions) -> Self {
        let layout = map.layout();
        let cells = layout.grid.cells();
        let weight: Vec<u64> = (0..cells)
            .map(|c| match &layout.population {
                Some(p) => u64::from(p[c]),
                None => 1,
            })
            .collect();
        let covered: Vec<bool> = (0..cells).map(|c| map.is_covered(c)).collect();
        let chain: Vec<Vec<usize>> = (0..layout.zones.len())
            .map(|z| std::iter::successors(Some(z), |&z| layout.zones[z].parent).collect())
            .collect();
        let (mut total, mut done) = (vec![0u64; layout.zones.len()], vec![0u64; layout.zones.len()]);
        for (c, &z) in layout.owner.iter().enumerate() {
            if z == NO_ZONE {
                continue;
            }
            for &a in &chain[usize::from(z)] {
                total[a] += weight[c];
                if covered[c] {
                    done[a] += weight[c];
                }
            }
        }
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_precision_loss)]
        let need = layout
            .zones
            .iter()
            .zip(&total)
            .map(|(z, &t)| (options.target.unwrap_or(z.target_ratio).clamp(0.0, 1.0) * t as f64).ceil() as u64)
            .collect();
        let radii: Vec<f64> = layout.classes.iter().map(|a| a.audible_radius_m(options.rating_db)).collect();
        let reach = radii.iter().copied().fold(0.0, f64::max);
        Self { map, covered, weight, total, done, need, chain, r2: radii.iter().map(|r| r * r).collect(), reach }
    }

    fn short(&self, zone: usize) -> bool {
        self.total[zone] > 0 && self.done[zone] < self.need[zone]
    }

    /// Whether covering cell `c` helps: it is uncovered and some zone it counts for is short.
    fn useful(&self, c: usize, zone: usize) -> bool {
        !self.covered[c] && self.chain[zone].iter().any(|&z| self.short(z))
    }

    /// Calls `visit(cell, zone)` for every zoned cell a new siren at `site` would cover.
    fn each_reached(&self, site: (f64, f64), mut visit: impl FnMut(usize, usize)) {
        let layout = self.map.layout();
        let grid = &layout.grid;
        let reach = self.reach;
        for row in grid.rows_between(site.1 - reach, site.1 + reach) {
            let dy = grid.centre_y(row) - site.1;
            let half = (reach * reach - dy * dy).max(0.0).sqrt();
            for col in grid.columns_between(site.0 - half, site.0 + half) {
                let cell = row * grid.width + col;
                let owner = layout.owner[cell];
                if owner == NO_ZONE {
                    continue;
                }
                let zone = usize::from(owner);
                let dx = grid.centre_x(col) - site.0;
                if dx * dx + dy * dy <= self.r2[layout.zones[zone].class] {
                    visit(cell, zone);
                }
            }
        }
    }

    fn gain(&self, site: (f64, f64)) -> u64 {
        let mut gain = 0;
        self.each_reached(site, |c, z| {
            if self.useful(c, z) {
                gain += self.weight[c];
            }
        });
        gain
    }

    /// Takes a site: returns the weight and cells it added.
    fn take(&mut self, site: (f64, f64)) -> (u64, u64) {
        let mut reached = Vec::new();
        self.each_reached(site, |c, z| reached.push((c, z)));
        let (mut weight, mut cells) = (0, 0);
        for (c, z) in reached {
            if self.covered[c] {
                continue;
            }
            self.covered[c] = true;
            cells += 1;
            weight += self.weight[c];
            for i in 0..self.chain[z].len() {
                let a = self.chain[z][i];
                self.done[a] += self.weight[c];
            }
        }
        (weight, cells)
    }

    /// Takes `site` as the next proposal, after `previous` (for the running totals).
    fn propose(&mut self, site: (f64, f64), previous: Option<&Proposal>) -> Proposal {
        let layout = self.map.layout();
        let zone = layout.grid.cell_at(site).map_or(NO_ZONE, |c| layout.owner[c]);
        let (population, cell_m2) = (layout.population.is_some(), layout.grid.cell_area_m2());
        let (weight, cells) = self.take(site);
        #[allow(clippy::cast_precision_loss, reason = "people and cells fit f64")]
        let (people, area_m2) = (if population { weight as f64 / 1000.0 } else { 0.0 }, cells as f64 * cell_m2);
        Proposal {
            x: site.0,
            y: site.1,
            zone: usize::from(zone),
            people,
            area_m2,
            total_people: previous.map_or(0.0, |p| p.total_people) + people,
            total_area_m2: previous.map_or(0.0, |p| p.total_area_m2) + area_m2,
        }
    }

    fn any_short(&self) -> bool {
        (0..self.total.len()).any(|z| self.short(z))
    }
}

/// Candidate sites on a grid over the zones, `spacing` metres apart: a point is a candidate
/// when a zone owns its cell.
pub fn grid_candidates(map: &CoverageMap, spacing: f64) -> Vec<(f64, f64)> {
    let layout = map.layout();
    let g = &layout.grid;
    let (x_end, y_end) = (g.centre_x(g.width - 1), g.centre_y(g.height - 1));
    let mut out = Vec::new();
    let mut y = g.y0 + spacing / 2.0;
    while y <= y_end {
        let mut x = g.x0 + spacing / 2.0;
        while x <= x_end {
            if g.cell_at((x, y)).is_some_and(|c| layout.owner[c] != NO_ZONE) {
                out.push((x, y));
            }
            x += spacing;
        }
        y += spacing;
    }
    out
}

/// Plans new sites (see the module's documentation).
pub fn plan(map: &CoverageMap, options: &PlanOptions) -> Plan {
    let mut state = State::new(map, options);
    let candidates = options.candidates.clone().unwrap_or_else(|| {
        // Half the smallest audible radius apart: every spot of a zone is within a quarter
        // radius or so of a candidate.
        let smallest = state.r2.iter().copied().fold(f64::INFINITY, f64::min).sqrt();
        grid_candidates(map, (smallest / 2.0).max(map.layout().grid.cell_m))
    });
    let mut plan = Plan { candidates: candidates.len(), ..Plan::default() };
    let mut heap: BinaryHeap<Bound> = candidates
        .iter()
        .enumerate()
        .map(|(candidate, &site)| Bound { gain: state.gain(site), candidate })
        .filter(|b| b.gain > 0)
        .collect();
    plan.evaluations = candidates.len();
    while plan.proposals.len() < options.max_new && state.any_short() {
        let Some(top) = heap.pop() else { break };
        let gain = state.gain(candidates[top.candidate]);
        plan.evaluations += 1;
        if gain == 0 {
            continue;
        }
        if heap.peek().is_some_and(|next| next.gain > gain) {
            heap.push(Bound { gain, candidate: top.candidate });
            continue;
        }
        let proposal = state.propose(candidates[top.candidate], plan.proposals.last());
        plan.proposals.push(proposal);
    }
    plan.still_short = (0..state.total.len()).filter(|&z| state.short(z)).collect();
    plan
}

/// The same plan without lazy evaluation: every candidate's gain computed at every step (for
/// measuring what laziness saves, and checking that it changes nothing).
pub fn plan_eager(map: &CoverageMap, options: &PlanOptions) -> Plan {
    let mut state = State::new(map, options);
    let candidates = options.candidates.clone().unwrap_or_default();
    let mut plan = Plan { candidates: candidates.len(), ..Plan::default() };
    while plan.proposals.len() < options.max_new && state.any_short() {
        let mut best: Option<(u64, usize)> = None;
        for (i, &site) in candidates.iter().enumerate() {
            let gain = state.gain(site);
            plan.evaluations += 1;
            if gain > 0 && best.is_none_or(|(g, _)| gain > g) {
                best = Some((gain, i));
            }
        }
        let Some((_, i)) = best else { break };
        let proposal = state.propose(candidates[i], plan.proposals.last());
        plan.proposals.push(proposal);
    }
    plan.still_short = (0..state.total.len()).filter(|&z| state.short(z)).collect();
    plan
}

/// The weight (people in thousandths, or cells) the sites `taken` cover beyond what the map
/// covers, counting every uncovered cell (for comparing choices of sites in tests).
pub fn covered_by(map: &CoverageMap, options: &PlanOptions, taken: &[(f64, f64)]) -> u64 {
    let options = PlanOptions { target: Some(1.0), ..options.clone() };
    let mut state = State::new(map, &options);
    taken.iter().map(|&site| state.take(site).0).sum()
}

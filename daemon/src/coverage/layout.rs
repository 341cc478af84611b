//! Builds the coverage layout from the configuration: zones and their acoustics, the grid,
//! which zone owns each cell, and the population.

use std::collections::{BTreeMap, BTreeSet};

use super::CoverageError;
use super::boundaries::Boundary;
use super::grid::{self, Grid, Point, Polygon};
use super::map::{Layout, LostAlert, NO_ZONE, Site, Zone};
use super::model::Acoustics;
use super::projection::LocalProjection;
use crate::config::{self, Density, ZoneAcoustics};

/// Grids larger than this are refused: 50 million cells is 5,000 km² at 10 m, or a
/// 700 km square at 100 m; a larger fleet is split across daemons by zone.
pub const MAX_CELLS: usize = 50_000_000;

const DENSE_THRESHOLD_DB: f64 = 70.0;
const SPARSE_THRESHOLD_DB: f64 = 60.0;
const DEFAULT_LOSS_DB: f64 = 10.0;
const DEFAULT_TARGET: f64 = 0.95;
const DEFAULT_LOST_ALERT_PEOPLE: f64 = 500.0;
const DEFAULT_LOST_ALERT_KM2: f64 = 0.5;

/// A siren as the coverage engine needs it.
#[derive(Debug, Clone, Copy)]
pub struct SirenSpot<'a> {
    pub latitude: f64,
    pub longitude: f64,
    pub zone: &'a str,
    pub rating_db: f64,
}

impl<'a> From<&'a siren_proto::fleet::Siren> for SirenSpot<'a> {
    fn from(s: &'a siren_proto::fleet::Siren) -> Self {
        Self { latitude: s.latitude, longitude: s.longitude, zone: s.zone.as_str(), rating_db: s.rating_db }
    }
}

/// The layout, the sirens placed on it, and the projection between them and the map.
#[derive(Debug, Clone)]
pub struct Built {
    pub layout: Layout,
    pub sites: Vec<Site>,
    pub projection: LocalProjection,
}

/// Reads the population once the grid is known: people per cell in thousandths.
pub type PopulationReader<'a> = &'a dyn Fn(&Grid, &LocalProjection) -> Result<Vec<u32>, CoverageError>;

/// Lays out the grid. `population` is read once the grid is known: it receives the grid and
/// projection and returns people per cell in thousandths.
pub fn build(
    settings: &config::Coverage,
    sirens: &[SirenSpot<'_>],
    boundaries: Option<&[Boundary]>,
    population: Option<PopulationReader<'_>>,
) -> Result<Built, CoverageError> {
    let projection = centre(sirens, boundaries);
    let paths = zone_paths(sirens, boundaries);
    let index: BTreeMap<&str, usize> = paths.iter().enumerate().map(|(i, p)| (p.as_str(), i)).collect();
    if paths.len() >= usize::from(NO_ZONE) {
        return Err(CoverageError::TooManyZones(paths.len()));
    }
    let parents: BTreeSet<&str> = paths.iter().filter_map(|p| p.rsplit_once('/').map(|(parent, _)| parent)).collect();
    let mut classes: Vec<Acoustics> = Vec::new();
    let zones: Vec<Zone> = paths
        .iter()
        .map(|path| {
            let a = resolve(settings, path);
            let class = classes.iter().position(|c| *c == a.0).unwrap_or_else(|| {
                classes.push(a.0);
                classes.len() - 1
            });
            let parent = path.rsplit_once('/').and_then(|(p, _)| index.get(p).copied());
            let leaf = !parents.contains(path.as_str());
            Zone { path: path.clone(), parent, class, target_ratio: a.1, lost_alert: lost_alert(settings, path, leaf) }
        })
        .collect();
    let sites: Vec<Site> = sirens
        .iter()
        .map(|s| {
            let (x, y) = projection.project(s.latitude, s.longitude);
            Site { x, y, rating_db: s.rating_db, zone: index[s.zone] }
        })
        .collect();

    // Each zone's own area, projected.
    let mut areas: Vec<(usize, Polygon)> = Vec::new();
    if let Some(boundaries) = boundaries {
        for b in boundaries {
            let z = index[b.zone.as_str()];
            for polygon in &b.polygons {
                let rings = polygon
                    .iter()
                    .map(|ring| ring.iter().map(|&(lon, lat)| projection.project(lat, lon)).collect())
                    .collect();
                areas.push((z, rings));
            }
        }
    } else {
        areas.extend(hulls(sirens, &sites, &zones, &classes, &index));
    }
    if areas.is_empty() {
        return Err(CoverageError::NoArea);
    }
    let (mut min, mut max) = ((f64::INFINITY, f64::INFINITY), (f64::NEG_INFINITY, f64::NEG_INFINITY));
    for p in areas.iter().flat_map(|(_, rings)| rings.iter().flatten()) {
        min = (min.0.min(p.0), min.1.min(p.1));
        max = (max.0.max(p.0), max.1.max(p.1));
    }
    let grid = Grid::covering(min, max, settings.cell_size_m);
    if grid.cells() > MAX_CELLS {
        return Err(CoverageError::GridTooLarge { cells: grid.cells(), cell_m: settings.cell_size_m });
    }
    // Parents first, so that a zone inside another takes its cells from it.
    areas.sort_by_key(|(z, _)| (paths[*z].matches('/').count(), *z));
    let mut owner = vec![NO_ZONE; grid.cells()];
    for (z, polygon) in &areas {
        // Fewer zones than NO_ZONE, checked above.
        #[allow(clippy::cast_possible_truncation)]
        let z = *z as u16;
        grid.burn(polygon, |cell| owner[cell] = z);
    }
    let population = population.map(|read| read(&grid, &projection)).transpose()?;
    let layout = Layout { grid, owner, zones, classes, population, overlap: settings.overlap };
    Ok(Built { layout, sites, projection })
}

/// Each zone's area without boundaries: the convex hull of its sirens' audible circles.
fn hulls(
    sirens: &[SirenSpot<'_>],
    sites: &[Site],
    zones: &[Zone],
    classes: &[Acoustics],
    index: &BTreeMap<&str, usize>,
) -> Vec<(usize, Polygon)> {
    let mut circles: BTreeMap<usize, Vec<Point>> = BTreeMap::new();
    for (s, site) in sirens.iter().zip(sites) {
        let z = index[s.zone];
        let r = classes[zones[z].class].audible_radius_m(s.rating_db);
        circles.entry(z).or_default().extend(grid::circle((site.x, site.y), r.max(1.0), 64));
    }
    circles.into_iter().map(|(z, points)| (z, vec![grid::convex_hull(points)])).collect()
}

/// The areas a configuration without boundaries gives its zones (the hulls of their sirens'
/// audible circles), as boundaries: to fix them in a file, so that sirens added later do not
/// move them.
pub fn zone_hulls(settings: &config::Coverage, sirens: &[SirenSpot<'_>]) -> Result<Vec<Boundary>, CoverageError> {
    let built = build(settings, sirens, None, None)?;
    let paths: Vec<&str> = built.layout.zones.iter().map(|z| z.path.as_str()).collect();
    let index: BTreeMap<&str, usize> = paths.iter().enumerate().map(|(i, p)| (*p, i)).collect();
    let areas = hulls(sirens, &built.sites, &built.layout.zones, &built.layout.classes, &index);
    Ok(areas
        .into_iter()
        .map(|(z, rings)| {
            let rings = rings
                .into_iter()
                .map(|ring| {
                    let mut ring: Vec<(f64, f64)> = ring
                        .into_iter()
                        .map(|(x, y)| {
                            let (lat, lon) = built.projection.unproject(x, y);
                            (lon, lat)
                        })
                        .collect();
                    if let Some(&first) = ring.first() {
                        ring.push(first);
                    }
                    ring
                })
                .collect();
            Boundary { zone: paths[z].to_owned(), polygons: vec![rings] }
        })
        .collect())
}

/// Every zone a siren or a boundary names, with all their ancestors, parents before children.
fn zone_paths(sirens: &[SirenSpot<'_>], boundaries: Option<&[Boundary]>) -> Vec<String> {
    let named = sirens.iter().map(|s| s.zone).chain(boundaries.unwrap_or_default().iter().map(|b| b.zone.as_str()));
    let mut all = BTreeSet::new();
    for path in named {
        let mut end = 0;
        for level in path.split('/') {
            end += level.len();
            all.insert(path[..end].to_owned());
            end += 1;
        }
    }
    // Lexical order puts `a` before `a/b`, but `a-b` between them; parents only need to come
    // first, which lexical order keeps since a parent is a prefix of its children.
    all.into_iter().collect()
}

/// The projection's centre: the middle of everything placed on the map.
fn centre(sirens: &[SirenSpot<'_>], boundaries: Option<&[Boundary]>) -> LocalProjection {
    let points = sirens
        .iter()
        .map(|s| (s.longitude, s.latitude))
        .chain(boundaries.unwrap_or_default().iter().flat_map(|b| b.polygons.iter().flatten().flatten().copied()));
    let (mut lo, mut hi) = ((f64::INFINITY, f64::INFINITY), (f64::NEG_INFINITY, f64::NEG_INFINITY));
    for (lon, lat) in points {
        lo = (lo.0.min(lon), lo.1.min(lat));
        hi = (hi.0.max(lon), hi.1.max(lat));
    }
    if lo.0.is_finite() {
        LocalProjection::centred_on(f64::midpoint(lo.1, hi.1), f64::midpoint(lo.0, hi.0))
    } else {
        LocalProjection::centred_on(0.0, 0.0)
    }
}

/// The settings that apply to zone `path`, nearest first: its own, its ancestors', then
/// `defaults`.
fn settings_chain<'a>(
    settings: &'a config::Coverage,
    path: &str,
    defaults: &'a ZoneAcoustics,
) -> Vec<&'a ZoneAcoustics> {
    let mut chain: Vec<&ZoneAcoustics> = Vec::new();
    let mut at = Some(path);
    while let Some(p) = at {
        if let Some(z) = settings.zones.get(p) {
            chain.push(z);
        }
        at = p.rsplit_once('/').map(|(parent, _)| parent);
    }
    chain.push(defaults);
    chain
}

/// A zone's acoustics: how far its sirens are heard.
pub fn zone_acoustics(settings: &config::Coverage, path: &str) -> Acoustics {
    resolve(settings, path).0
}

/// A zone's acoustics and target: the nearest setting on the way up from the zone itself to
/// the defaults, per field.
fn resolve(settings: &config::Coverage, path: &str) -> (Acoustics, f64) {
    let defaults = settings.defaults();
    let chain = settings_chain(settings, path, &defaults);
    let first = |f: fn(&ZoneAcoustics) -> Option<f64>| chain.iter().find_map(|z| f(z));
    // The nearest explicit threshold or density wins, whichever is nearer.
    let threshold = chain
        .iter()
        .find_map(|z| {
            z.threshold_db.or(z.density.map(|d| match d {
                Density::Dense => DENSE_THRESHOLD_DB,
                Density::Sparse => SPARSE_THRESHOLD_DB,
            }))
        })
        .unwrap_or(DENSE_THRESHOLD_DB);
    let acoustics = Acoustics {
        threshold_db: threshold,
        loss_per_doubling_db: first(|z| z.loss_per_doubling_db).unwrap_or(DEFAULT_LOSS_DB),
    };
    (acoustics, first(|z| z.target_ratio).unwrap_or(DEFAULT_TARGET))
}

/// When zone `path` alerts on coverage lost to failures: a leaf zone (the crews' unit) by the
/// nearest setting on the way up; a zone with zones inside it only when set for it itself,
/// so that one failure does not page once per tier.
fn lost_alert(settings: &config::Coverage, path: &str, leaf: bool) -> Option<LostAlert> {
    let own = settings.zones.get(path);
    let explicit = own.is_some_and(|z| z.lost_alert_people.is_some() || z.lost_alert_km2.is_some());
    if !leaf && !explicit {
        return None;
    }
    let defaults = settings.defaults();
    let chain = settings_chain(settings, path, &defaults);
    let people = chain.iter().find_map(|z| z.lost_alert_people).unwrap_or(DEFAULT_LOST_ALERT_PEOPLE);
    let km2 = chain.iter().find_map(|z| z.lost_alert_km2).unwrap_or(DEFAULT_LOST_ALERT_KM2);
    Some(LostAlert { people, area_m2: km2 * 1e6 })
}

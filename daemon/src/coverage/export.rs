//! Uncovered ground as GeoJSON polygons: lost to failures, or never covered by design.

use super::map::{CoverageMap, NO_ZONE};
use super::outline;
use super::projection::LocalProjection;

/// Which uncovered ground a GeoJSON feature or a map colour shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ground {
    /// Covered by design, not now: lost to failures, a crew's work.
    Lost,
    /// Lost while sirens a crew has in maintenance cannot sound: explained, and would be
    /// covered again with them.
    Maintenance,
    /// Not covered even with every siren able: where sirens are missing, a planner's work.
    DesignGap,
}

impl Ground {
    pub fn as_str(self) -> &'static str {
        match self {
            Ground::Lost => "lost",
            Ground::Maintenance => "lost_in_maintenance",
            Ground::DesignGap => "design_gap",
        }
    }

    /// Whether `cell` is such ground; `explained` says which cells sirens in maintenance
    /// would cover (none when absent).
    fn holds(self, map: &CoverageMap, cell: usize, explained: Option<&[bool]>) -> bool {
        let explained = explained.is_some_and(|e| e[cell]);
        match self {
            Ground::Lost => map.is_lost(cell) && !explained,
            Ground::Maintenance => map.is_lost(cell) && explained,
            Ground::DesignGap => map.is_design_gap(cell),
        }
    }
}

/// Uncovered ground as a GeoJSON FeatureCollection: per zone (`zone` and the zones inside it
/// when given), one MultiPolygon feature of ground lost to failures (`"kind": "lost"`) and one
/// of ground never covered (`"kind": "design_gap"`), merged from their cells, each with the
/// zone, the area (km²) and the people in it.
pub fn uncovered_geojson(
    map: &CoverageMap,
    projection: &LocalProjection,
    zone: Option<&str>,
) -> geojson::FeatureCollection {
    uncovered_geojson_apart(map, projection, zone, None)
}

/// As [`uncovered_geojson`], with the lost ground that sirens in maintenance would cover
/// (`explained`, per cell) apart as `"kind": "lost_in_maintenance"`.
pub fn uncovered_geojson_apart(
    map: &CoverageMap,
    projection: &LocalProjection,
    zone: Option<&str>,
    explained: Option<&[bool]>,
) -> geojson::FeatureCollection {
    let mut features = Vec::new();
    for ground in [Ground::Lost, Ground::Maintenance, Ground::DesignGap] {
        features.extend(ground_features(map, projection, zone, ground, explained));
    }
    geojson::FeatureCollection { bbox: None, features, foreign_members: None }
}

fn ground_features(
    map: &CoverageMap,
    projection: &LocalProjection,
    zone: Option<&str>,
    ground: Ground,
    explained: Option<&[bool]>,
) -> Vec<geojson::Feature> {
    let layout = map.layout();
    let g = &layout.grid;
    let wanted: Vec<bool> = layout.zones.iter().map(|z| zone.is_none_or(|q| super::within(&z.path, q))).collect();
    // Each zone's own cells' bounding box, so that each outline pass looks only there.
    let mut boxes = vec![(usize::MAX, usize::MAX, 0usize, 0usize); layout.zones.len()];
    for (cell, &z) in layout.owner.iter().enumerate() {
        if z != NO_ZONE && wanted[usize::from(z)] && ground.holds(map, cell, explained) {
            let (col, row) = (cell % g.width, cell / g.width);
            let b = &mut boxes[usize::from(z)];
            *b = (b.0.min(col), b.1.min(row), b.2.max(col + 1), b.3.max(row + 1));
        }
    }
    let mut features = Vec::new();
    for (z, &(c0, r0, c1, r1)) in boxes.iter().enumerate() {
        if c0 == usize::MAX {
            continue;
        }
        let mut cells = 0u64;
        let mut people = 0u64;
        let in_zone = |col: usize, row: usize| {
            let cell = (r0 + row) * g.width + c0 + col;
            usize::from(layout.owner[cell]) == z && ground.holds(map, cell, explained)
        };
        for row in 0..r1 - r0 {
            for col in 0..c1 - c0 {
                if in_zone(col, row) {
                    cells += 1;
                    let cell = (r0 + row) * g.width + c0 + col;
                    people += layout.population.as_ref().map_or(0, |p| u64::from(p[cell]));
                }
            }
        }
        let to_position = |v: &outline::Vertex| {
            #[allow(clippy::cast_precision_loss)]
            let (x, y) = (g.x0 + (c0 + v.0) as f64 * g.cell_m, g.y0 + (r0 + v.1) as f64 * g.cell_m);
            let (lat, lon) = projection.unproject(x, y);
            geojson::Position::from([round6(lon), round6(lat)])
        };
        let polygons: Vec<geojson::PolygonType> = outline::outlines(c1 - c0, r1 - r0, in_zone)
            .iter()
            .map(|o| {
                std::iter::once(&o.exterior)
                    .chain(&o.holes)
                    .map(|ring| ring.iter().map(to_position).collect())
                    .collect()
            })
            .collect();
        let mut properties = geojson::JsonObject::new();
        properties.insert("zone".into(), layout.zones[z].path.clone().into());
        properties.insert("kind".into(), ground.as_str().into());
        #[allow(clippy::cast_precision_loss)]
        let km2 = cells as f64 * g.cell_area_m2() / 1e6;
        properties.insert("area_km2".into(), round6(km2).into());
        if layout.population.is_some() {
            #[allow(clippy::cast_precision_loss)]
            properties.insert("population".into(), (people as f64 / 1000.0).round().into());
        }
        features.push(geojson::Feature {
            bbox: None,
            geometry: Some(geojson::Geometry::new(geojson::GeometryValue::MultiPolygon { coordinates: polygons })),
            id: None,
            properties: Some(properties),
            foreign_members: None,
        });
    }
    features
}

fn round6(v: f64) -> f64 {
    (v * 1e6).round() / 1e6
}

//! What the coverage looks like from outside: uncovered areas as GeoJSON polygons, and a
//! rendered PNG map of sirens over covered and uncovered ground.

use super::map::{CoverageMap, NO_ZONE};
use super::outline;
use super::projection::LocalProjection;
use crate::liveness::State;

/// Uncovered ground as a GeoJSON FeatureCollection: one MultiPolygon feature per zone that has
/// any, merged from its cells, with the zone, the area (km²) and the people in it.
pub fn uncovered_geojson(map: &CoverageMap, projection: &LocalProjection) -> geojson::FeatureCollection {
    let layout = map.layout();
    let g = &layout.grid;
    // Each zone's own cells' bounding box, so that each outline pass looks only there.
    let mut boxes = vec![(usize::MAX, usize::MAX, 0usize, 0usize); layout.zones.len()];
    for (cell, &z) in layout.owner.iter().enumerate() {
        if z != NO_ZONE && map.is_uncovered(cell) {
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
            usize::from(layout.owner[cell]) == z && map.is_uncovered(cell)
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
        #[allow(clippy::cast_precision_loss)]
        let km2 = cells as f64 * g.cell_area_m2() / 1e6;
        properties.insert("uncovered_area_km2".into(), round6(km2).into());
        if layout.population.is_some() {
            #[allow(clippy::cast_precision_loss)]
            properties.insert("uncovered_population".into(), (people as f64 / 1000.0).round().into());
        }
        features.push(geojson::Feature {
            bbox: None,
            geometry: Some(geojson::Geometry::new(geojson::GeometryValue::MultiPolygon { coordinates: polygons })),
            id: None,
            properties: Some(properties),
            foreign_members: None,
        });
    }
    geojson::FeatureCollection { bbox: None, features, foreign_members: None }
}

fn round6(v: f64) -> f64 {
    (v * 1e6).round() / 1e6
}

/// The longest side of a rendered map, pixels.
pub const MAX_IMAGE_SIDE: usize = 1024;

const OUTSIDE: [u8; 3] = [245, 245, 245];
const COVERED: [u8; 3] = [199, 233, 192];
const UNCOVERED: [u8; 3] = [252, 146, 114];

/// The colour of a siren's marker on the map (also documented in docs/operations.md).
pub fn state_colour(state: State) -> [u8; 3] {
    match state {
        State::Ok => [0, 109, 44],
        State::Degraded => [254, 196, 79],
        State::Faulty => [217, 95, 14],
        State::Down => [203, 24, 29],
        State::Unreachable => [99, 99, 99],
        State::Unknown => [117, 107, 177],
    }
}

/// Renders the map as a PNG: covered ground green, uncovered red, outside the zones grey, and
/// each siren a dot in its state's colour. North is up; one pixel is one or more cells.
#[allow(clippy::many_single_char_names)]
pub fn render_png(map: &CoverageMap, states: &[State]) -> Vec<u8> {
    let g = &map.layout().grid;
    let scale = g.width.max(g.height).div_ceil(MAX_IMAGE_SIDE).max(1);
    let (w, h) = (g.width.div_ceil(scale), g.height.div_ceil(scale));
    let mut rgb = vec![0u8; w * h * 3];
    for py in 0..h {
        // Image rows run north to south; grid rows south to north.
        let row = (g.height - 1).saturating_sub(py * scale + scale / 2).min(g.height - 1);
        for px in 0..w {
            let col = (px * scale + scale / 2).min(g.width - 1);
            let cell = row * g.width + col;
            let colour = if map.is_covered(cell) {
                COVERED
            } else if map.is_uncovered(cell) {
                UNCOVERED
            } else {
                OUTSIDE
            };
            rgb[(py * w + px) * 3..][..3].copy_from_slice(&colour);
        }
    }
    let radius: isize = 3;
    for (site, state) in map.sites().iter().zip(states) {
        // Positions inside the grid by construction; the casts are to pixel offsets.
        #[allow(clippy::cast_possible_truncation, clippy::cast_precision_loss, clippy::cast_possible_wrap)]
        let (cx, cy) = (
            ((site.x - g.x0) / g.cell_m / scale as f64) as isize,
            h as isize - 1 - ((site.y - g.y0) / g.cell_m / scale as f64) as isize,
        );
        for dy in -radius - 1..=radius + 1 {
            for dx in -radius - 1..=radius + 1 {
                let (x, y) = (cx + dx, cy + dy);
                let d2 = dx * dx + dy * dy;
                #[allow(clippy::cast_possible_wrap)]
                if x < 0 || y < 0 || x >= w as isize || y >= h as isize || d2 > (radius + 1) * (radius + 1) {
                    continue;
                }
                let colour = if d2 > radius * radius { [0, 0, 0] } else { state_colour(*state) };
                rgb[(y.unsigned_abs() * w + x.unsigned_abs()) * 3..][..3].copy_from_slice(&colour);
            }
        }
    }
    let mut png = Vec::new();
    #[allow(clippy::cast_possible_truncation)]
    let mut encoder = png::Encoder::new(&mut png, w as u32, h as u32);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    // Writing to a Vec cannot fail, and the data has exactly the header's size.
    if let Ok(mut writer) = encoder.write_header() {
        let _ = writer.write_image_data(&rgb);
    }
    png
}

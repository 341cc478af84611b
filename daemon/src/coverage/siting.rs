//! `sirend plan`'s files: the sites it reads (candidates, sirens planned but not built) and
//! the proposals it writes (a table, CSV and GeoJSON).

use std::fmt::Write as _;
use std::path::Path;

use super::map::CoverageMap;
use super::planner::Plan;
use super::projection::LocalProjection;

/// A siren planned but not built (`--with`): where, in which zone, how loud.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct Planned {
    pub latitude: f64,
    pub longitude: f64,
    pub zone: String,
    pub rating_db: f64,
}

/// A file of sites could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SitesError {
    #[error("{file}: {source}")]
    Read { file: String, source: std::io::Error },
    #[error("{file}: line {line}: {problem}")]
    Row { file: String, line: u64, problem: String },
}

#[derive(Debug, serde::Deserialize)]
struct Candidate {
    latitude: f64,
    longitude: f64,
}

fn rows<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Vec<T>, SitesError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| SitesError::Read { file: file.clone(), source })?;
    let mut reader = csv::ReaderBuilder::new().trim(csv::Trim::All).from_reader(text.as_bytes());
    let mut out = Vec::new();
    for row in reader.deserialize() {
        let row: T = row.map_err(|e| SitesError::Row {
            file: file.clone(),
            line: e.position().map_or(0, csv::Position::line),
            problem: e.to_string(),
        })?;
        out.push(row);
    }
    Ok(out)
}

fn check_position(file: &Path, line: u64, latitude: f64, longitude: f64) -> Result<(), SitesError> {
    if (-90.0..=90.0).contains(&latitude) && (-180.0..=180.0).contains(&longitude) {
        return Ok(());
    }
    Err(SitesError::Row {
        file: file.display().to_string(),
        line,
        problem: format!("{latitude}, {longitude} is not a latitude and longitude"),
    })
}

/// Candidate sites (`--candidates`): a CSV with `latitude` and `longitude` columns (others,
/// such as a name, are ignored), in degrees.
pub fn read_candidates(path: &Path) -> Result<Vec<(f64, f64)>, SitesError> {
    let rows: Vec<Candidate> = rows(path)?;
    for (i, c) in (2u64..).zip(&rows) {
        check_position(path, i, c.latitude, c.longitude)?;
    }
    Ok(rows.into_iter().map(|c| (c.latitude, c.longitude)).collect())
}

/// Sirens planned but not built (`--with`): a CSV with `latitude`, `longitude`, `zone` and
/// `rating_db` columns.
pub fn read_planned(path: &Path) -> Result<Vec<Planned>, SitesError> {
    let rows: Vec<Planned> = rows(path)?;
    for (i, p) in (2u64..).zip(&rows) {
        check_position(path, i, p.latitude, p.longitude)?;
        if !(p.rating_db.is_finite() && (80.0..=160.0).contains(&p.rating_db)) {
            return Err(SitesError::Row {
                file: path.display().to_string(),
                line: i,
                problem: format!("rating_db {} is not between 80 and 160", p.rating_db),
            });
        }
    }
    Ok(rows)
}

/// One proposal as people read it.
struct Row {
    latitude: f64,
    longitude: f64,
    zone: String,
    people: f64,
    area_km2: f64,
    total_people: f64,
    total_area_km2: f64,
}

fn rows_of(plan: &Plan, map: &CoverageMap, projection: &LocalProjection) -> Vec<Row> {
    let zones = &map.layout().zones;
    plan.proposals
        .iter()
        .map(|p| {
            let (latitude, longitude) = projection.unproject(p.x, p.y);
            Row {
                latitude: (latitude * 1e6).round() / 1e6,
                longitude: (longitude * 1e6).round() / 1e6,
                zone: zones.get(p.zone).map_or_else(|| "(outside the zones)".to_owned(), |z| z.path.clone()),
                people: p.people,
                area_km2: p.area_m2 / 1e6,
                total_people: p.total_people,
                total_area_km2: p.total_area_m2 / 1e6,
            }
        })
        .collect()
}

/// The proposals as a table, with the zones still short after them.
pub fn table(plan: &Plan, map: &CoverageMap, projection: &LocalProjection, population: bool) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:>4}  {:>10}  {:>11}  {:<24} {:>10} {:>9} {:>12} {:>10}",
        "#", "latitude", "longitude", "zone", "people", "km²", "total people", "total km²"
    );
    for (i, r) in rows_of(plan, map, projection).iter().enumerate() {
        let people = |n: f64| if population { format!("{n:.0}") } else { "-".to_owned() };
        let _ = writeln!(
            out,
            "{:>4}  {:>10.6}  {:>11.6}  {:<24} {:>10} {:>9.2} {:>12} {:>10.2}",
            i + 1,
            r.latitude,
            r.longitude,
            r.zone,
            people(r.people),
            r.area_km2,
            people(r.total_people),
            r.total_area_km2
        );
    }
    let zones = &map.layout().zones;
    if plan.still_short.is_empty() {
        let _ = writeln!(out, "\nevery zone reaches its target with these {} sites", plan.proposals.len());
    } else {
        let names: Vec<&str> = plan.still_short.iter().map(|&z| zones[z].path.as_str()).collect();
        let _ = writeln!(out, "\nstill short of target: {}", names.join(", "));
    }
    let _ = writeln!(out, "({} candidate sites, {} gains computed)", plan.candidates, plan.evaluations);
    out
}

/// The proposals as CSV.
pub fn csv(plan: &Plan, map: &CoverageMap, projection: &LocalProjection) -> String {
    let mut w = csv::Writer::from_writer(Vec::new());
    let _ = w.write_record([
        "rank",
        "latitude",
        "longitude",
        "zone",
        "people",
        "area_km2",
        "total_people",
        "total_area_km2",
    ]);
    for (i, r) in rows_of(plan, map, projection).iter().enumerate() {
        let _ = w.write_record([
            (i + 1).to_string(),
            format!("{:.6}", r.latitude),
            format!("{:.6}", r.longitude),
            r.zone.clone(),
            format!("{:.0}", r.people),
            format!("{:.4}", r.area_km2),
            format!("{:.0}", r.total_people),
            format!("{:.4}", r.total_area_km2),
        ]);
    }
    String::from_utf8(w.into_inner().unwrap_or_default()).unwrap_or_default()
}

/// The proposals as GeoJSON points.
pub fn geojson(plan: &Plan, map: &CoverageMap, projection: &LocalProjection) -> geojson::FeatureCollection {
    let features = rows_of(plan, map, projection)
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            let mut properties = geojson::JsonObject::new();
            properties.insert("rank".into(), (i + 1).into());
            properties.insert("zone".into(), r.zone.into());
            properties.insert("people".into(), r.people.round().into());
            properties.insert("area_km2".into(), ((r.area_km2 * 1e4).round() / 1e4).into());
            geojson::Feature {
                bbox: None,
                geometry: Some(geojson::Geometry::new(geojson::GeometryValue::Point {
                    coordinates: geojson::Position::from([r.longitude, r.latitude]),
                })),
                id: None,
                properties: Some(properties),
                foreign_members: None,
            }
        })
        .collect();
    geojson::FeatureCollection { bbox: None, features, foreign_members: None }
}

//! Zone boundaries from a GeoJSON file: one Polygon or MultiPolygon feature per zone, the zone
//! path in the `zone` property.

use std::path::Path;

use super::CoverageError;

/// One zone's area as drawn: polygons of rings of `(longitude, latitude)`, exterior first.
#[derive(Debug, Clone, PartialEq)]
pub struct Boundary {
    pub zone: String,
    pub polygons: Vec<Vec<Vec<(f64, f64)>>>,
}

/// Boundaries as a GeoJSON FeatureCollection text, as [`parse`] reads it.
pub fn to_geojson(boundaries: &[Boundary]) -> String {
    let features = boundaries
        .iter()
        .map(|b| {
            let coordinates: Vec<geojson::PolygonType> = b
                .polygons
                .iter()
                .map(|polygon| {
                    polygon
                        .iter()
                        .map(|ring| ring.iter().map(|&(lon, lat)| geojson::Position::from([lon, lat])).collect())
                        .collect()
                })
                .collect();
            let mut properties = geojson::JsonObject::new();
            properties.insert("zone".into(), b.zone.clone().into());
            geojson::Feature {
                bbox: None,
                geometry: Some(geojson::Geometry::new(geojson::GeometryValue::MultiPolygon { coordinates })),
                id: None,
                properties: Some(properties),
                foreign_members: None,
            }
        })
        .collect();
    geojson::FeatureCollection { bbox: None, features, foreign_members: None }.to_string()
}

pub fn load(path: &Path) -> Result<Vec<Boundary>, CoverageError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| CoverageError::file(&file, e))?;
    parse(&text).map_err(|problem| CoverageError::Boundaries { file, problem })
}

/// Parses a FeatureCollection; the error says which feature is wrong and why.
pub fn parse(text: &str) -> Result<Vec<Boundary>, String> {
    let collection: geojson::FeatureCollection =
        text.parse().map_err(|e| format!("not a GeoJSON FeatureCollection: {e}"))?;
    let mut out: Vec<Boundary> = Vec::new();
    for (i, f) in collection.features.iter().enumerate() {
        let at = format!("feature {i}");
        let zone = f
            .properties
            .as_ref()
            .and_then(|p| p.get("zone"))
            .and_then(|z| z.as_str())
            .ok_or_else(|| format!("{at}: no `zone` property naming the zone path"))?;
        let zone: siren_proto::fleet::ZonePath = zone.parse().map_err(|e| format!("{at}: zone `{zone}`: {e}"))?;
        let geometry = f.geometry.as_ref().ok_or_else(|| format!("{at} ({zone}): no geometry"))?;
        let polygons = match &geometry.value {
            geojson::GeometryValue::Polygon { coordinates } => vec![coordinates.clone()],
            geojson::GeometryValue::MultiPolygon { coordinates } => coordinates.clone(),
            other => return Err(format!("{at} ({zone}): a {} is not an area", other.type_name())),
        };
        let mut rings_out = Vec::new();
        for polygon in polygons {
            let mut rings = Vec::new();
            for ring in polygon {
                let ring: Vec<(f64, f64)> = ring.iter().map(|p| (p[0], p[1])).collect();
                if ring.len() < 4 {
                    return Err(format!("{at} ({zone}): a ring needs at least four positions"));
                }
                if ring.iter().any(|(lon, lat)| !((-180.0..=180.0).contains(lon) && (-90.0..=90.0).contains(lat))) {
                    return Err(format!("{at} ({zone}): a position is not a longitude, latitude pair"));
                }
                rings.push(ring);
            }
            rings_out.push(rings);
        }
        if out.iter().any(|b| b.zone == zone.as_str()) {
            return Err(format!("{at}: zone `{zone}` has another feature already; use one MultiPolygon"));
        }
        out.push(Boundary { zone: zone.as_str().to_owned(), polygons: rings_out });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_polygons_and_names_bad_features() {
        let ok = r#"{"type":"FeatureCollection","features":[{"type":"Feature","properties":{"zone":"a/b"},
            "geometry":{"type":"Polygon","coordinates":[[[120,30],[121,30],[121,31],[120,30]]]}}]}"#;
        let b = parse(ok).expect("parses");
        assert_eq!(b[0].zone, "a/b");
        assert_eq!(b[0].polygons[0][0].len(), 4);
        let point = r#"{"type":"FeatureCollection","features":[{"type":"Feature","properties":{"zone":"a"},
            "geometry":{"type":"Point","coordinates":[120,30]}}]}"#;
        assert_eq!(parse(point).unwrap_err(), "feature 0 (a): a Point is not an area");
        let nameless = r#"{"type":"FeatureCollection","features":[{"type":"Feature","properties":{},
            "geometry":{"type":"Point","coordinates":[120,30]}}]}"#;
        assert!(parse(nameless).unwrap_err().contains("no `zone` property"));
    }
}

//! Target areas of warnings, sans-IO: GeoJSON polygons (longitude, latitude, WGS 84) and
//! circles, and which sirens stand inside them. A siren on an area's edge is inside: a warning
//! drawn along a street sounds the sirens on it.

use geo::{Distance, Haversine, Intersects, Point, Polygon};

use crate::fleet::FleetState;

/// The most vertices an area may have: far above a district's outline, low enough that
/// testing every siren of a large fleet against it stays cheap.
pub const MAX_VERTICES: usize = 100_000;

/// An area: polygons and circles; a point in any of them is in the area.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Area {
    polygons: Vec<Polygon<f64>>,
    circles: Vec<Circle>,
}

/// A circle on the ground: centre and radius in metres.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Circle {
    pub latitude: f64,
    pub longitude: f64,
    pub radius_m: f64,
}

/// Why an area was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AreaError {
    #[error("not a GeoJSON geometry: {0}")]
    NotGeoJson(String),
    #[error("a {0} is not an area: give a Polygon or a MultiPolygon")]
    NotAnArea(String),
    #[error("{0}")]
    Invalid(String),
}

impl Area {
    /// A GeoJSON geometry object: a `Polygon` or a `MultiPolygon`, rings closed, positions
    /// `[longitude, latitude]` in degrees.
    pub fn from_geojson(value: &serde_json::Value) -> Result<Self, AreaError> {
        let geometry: geojson::Geometry =
            serde_json::from_value(value.clone()).map_err(|e| AreaError::NotGeoJson(e.to_string()))?;
        let polygons: Vec<Vec<Vec<Vec<f64>>>> = match geometry.value {
            geojson::GeometryValue::Polygon { coordinates } => vec![positions(&coordinates)],
            geojson::GeometryValue::MultiPolygon { coordinates } => coordinates.iter().map(|p| positions(p)).collect(),
            other => return Err(AreaError::NotAnArea(other.type_name().to_owned())),
        };
        let mut area = Self::default();
        for polygon in polygons {
            area.add_polygon(&polygon)?;
        }
        Ok(area)
    }

    /// Adds a polygon: its exterior ring, then its holes, each `[longitude, latitude]`
    /// positions with the last equal to the first.
    pub fn add_polygon(&mut self, rings: &[Vec<Vec<f64>>]) -> Result<(), AreaError> {
        let mut converted = Vec::with_capacity(rings.len());
        for (r, ring) in rings.iter().enumerate() {
            let what = if r == 0 { "the exterior ring".to_owned() } else { format!("hole {r}") };
            if ring.len() < 4 {
                return Err(AreaError::Invalid(format!(
                    "{what} has {} positions; a ring needs at least 4",
                    ring.len()
                )));
            }
            if ring.first() != ring.last() {
                return Err(AreaError::Invalid(format!(
                    "{what} is not closed: its last position must equal its first"
                )));
            }
            let mut coords = Vec::with_capacity(ring.len());
            for p in ring {
                let &[lon, lat] = p.as_slice() else {
                    return Err(AreaError::Invalid(format!("{what}: a position is [longitude, latitude], got {p:?}")));
                };
                check_position(lat, lon).map_err(|e| AreaError::Invalid(format!("{what}: {e}")))?;
                coords.push(geo::coord! { x: lon, y: lat });
            }
            converted.push(geo::LineString::new(coords));
        }
        let mut rings = converted.into_iter();
        let Some(exterior) = rings.next() else {
            return Err(AreaError::Invalid("a polygon without rings".into()));
        };
        self.polygons.push(Polygon::new(exterior, rings.collect()));
        if self.vertices() > MAX_VERTICES {
            return Err(AreaError::Invalid(format!("more than {MAX_VERTICES} vertices")));
        }
        Ok(())
    }

    /// Adds a circle.
    pub fn add_circle(&mut self, circle: Circle) -> Result<(), AreaError> {
        check_position(circle.latitude, circle.longitude).map_err(AreaError::Invalid)?;
        if !(circle.radius_m.is_finite() && circle.radius_m >= 0.0) {
            return Err(AreaError::Invalid(format!("a circle's radius must be 0 m or more, got {}", circle.radius_m)));
        }
        self.circles.push(circle);
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.polygons.is_empty() && self.circles.is_empty()
    }

    fn vertices(&self) -> usize {
        self.polygons
            .iter()
            .map(|p| p.exterior().0.len() + p.interiors().iter().map(|r| r.0.len()).sum::<usize>())
            .sum()
    }

    /// Whether the point is inside the area or on its edge.
    pub fn contains(&self, latitude: f64, longitude: f64) -> bool {
        let point = Point::new(longitude, latitude);
        self.polygons.iter().any(|p| p.intersects(&point))
            || self
                .circles
                .iter()
                .any(|c| Haversine::distance(Point::new(c.longitude, c.latitude), point) <= c.radius_m)
    }

    /// The sirens of `fleet` inside the area, in fleet order.
    pub fn sirens_inside(&self, fleet: &FleetState) -> Vec<String> {
        fleet.sirens().iter().filter(|s| self.contains(s.latitude, s.longitude)).map(|s| s.id.clone()).collect()
    }
}

fn positions(polygon: &[Vec<geojson::Position>]) -> Vec<Vec<Vec<f64>>> {
    polygon.iter().map(|ring| ring.iter().map(|p| p.as_slice().to_vec()).collect()).collect()
}

fn check_position(latitude: f64, longitude: f64) -> Result<(), String> {
    if !(latitude.is_finite() && (-90.0..=90.0).contains(&latitude)) {
        return Err(format!("latitude {latitude} is outside -90..90"));
    }
    if !(longitude.is_finite() && (-180.0..=180.0).contains(&longitude)) {
        return Err(format!("longitude {longitude} is outside -180..180"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn square(lon: f64, lat: f64, d: f64) -> serde_json::Value {
        serde_json::json!({"type": "Polygon", "coordinates": [[[lon, lat], [lon + d, lat], [lon + d, lat + d], [lon, lat + d], [lon, lat]]]})
    }

    #[test]
    fn a_polygon_holds_what_is_inside_and_on_its_edge_and_a_hole_does_not() {
        let a = Area::from_geojson(&square(120.0, 30.0, 0.1)).unwrap();
        assert!(a.contains(30.05, 120.05));
        assert!(a.contains(30.0, 120.05), "on the edge");
        assert!(!a.contains(30.2, 120.05));
        let holed = serde_json::json!({"type": "Polygon", "coordinates": [
            [[120.0, 30.0], [120.1, 30.0], [120.1, 30.1], [120.0, 30.1], [120.0, 30.0]],
            [[120.04, 30.04], [120.06, 30.04], [120.06, 30.06], [120.04, 30.06], [120.04, 30.04]]]});
        let a = Area::from_geojson(&holed).unwrap();
        assert!(!a.contains(30.05, 120.05), "in the hole");
        assert!(a.contains(30.02, 120.02));
    }

    #[test]
    fn a_multipolygon_holds_each_part_and_a_circle_its_radius() {
        let multi = serde_json::json!({"type": "MultiPolygon", "coordinates": [
            square(120.0, 30.0, 0.1)["coordinates"], square(121.0, 31.0, 0.1)["coordinates"]]});
        let mut a = Area::from_geojson(&multi).unwrap();
        assert!(a.contains(30.05, 120.05) && a.contains(31.05, 121.05) && !a.contains(30.5, 120.5));
        // 0.01° of latitude is about 1,112 m.
        a.add_circle(Circle { latitude: 32.0, longitude: 120.0, radius_m: 1_200.0 }).unwrap();
        assert!(a.contains(32.01, 120.0));
        assert!(!a.contains(32.02, 120.0));
    }

    #[test]
    fn what_is_not_an_area_is_refused_with_the_reason() {
        let cases = [
            (serde_json::json!({"type": "Point", "coordinates": [120.0, 30.0]}), "a Point is not an area"),
            (
                serde_json::json!({"type": "Polygon", "coordinates": [[[120.0, 30.0], [120.1, 30.0], [120.1, 30.1], [120.0, 30.1]]]}),
                "not closed",
            ),
            (
                serde_json::json!({"type": "Polygon", "coordinates": [[[120.0, 30.0], [120.1, 30.0], [120.0, 30.0]]]}),
                "at least 4",
            ),
            (
                serde_json::json!({"type": "Polygon", "coordinates": [[[200.0, 30.0], [120.1, 30.0], [120.1, 30.1], [200.0, 30.0]]]}),
                "longitude 200",
            ),
            (serde_json::json!({"type": "Polygon", "coordinates": "here"}), "not a GeoJSON geometry"),
            (serde_json::json!([1, 2]), "not a GeoJSON geometry"),
        ];
        for (value, expected) in cases {
            let e = Area::from_geojson(&value).unwrap_err().to_string();
            assert!(e.contains(expected), "{value}: {e}");
        }
        let bad = Circle { latitude: 30.0, longitude: 120.0, radius_m: f64::NAN };
        assert!(Area::default().add_circle(bad).is_err());
    }
}

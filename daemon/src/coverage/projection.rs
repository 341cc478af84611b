//! A local metric projection for the coverage grid.
//!
//! Sinusoidal about the fleet's central meridian: equal-area everywhere (so area ratios are
//! exact) and, within a few hundred kilometres of the centre, distances are true to well under
//! 1 %. A national fleet is split by zone across daemons (docs/operations.md), each with its
//! own centre.

const EARTH_RADIUS_M: f64 = 6_371_008.8;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LocalProjection {
    lat0: f64,
    lon0: f64,
}

impl LocalProjection {
    /// A projection centred on `(latitude, longitude)`, degrees.
    pub fn centred_on(latitude: f64, longitude: f64) -> Self {
        Self { lat0: latitude, lon0: longitude }
    }

    /// Metres east and north of the centre.
    pub fn project(&self, latitude: f64, longitude: f64) -> (f64, f64) {
        let x = EARTH_RADIUS_M * (longitude - self.lon0).to_radians() * latitude.to_radians().cos();
        let y = EARTH_RADIUS_M * (latitude - self.lat0).to_radians();
        (x, y)
    }

    /// Latitude and longitude, degrees, of a projected point.
    pub fn unproject(&self, x: f64, y: f64) -> (f64, f64) {
        let latitude = self.lat0 + (y / EARTH_RADIUS_M).to_degrees();
        let longitude = self.lon0 + (x / (EARTH_RADIUS_M * latitude.to_radians().cos())).to_degrees();
        (latitude, longitude)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_keeps_local_distances() {
        let p = LocalProjection::centred_on(30.25, 120.16);
        let (x, y) = p.project(30.30, 120.20);
        let (lat, lon) = p.unproject(x, y);
        assert!((lat - 30.30).abs() < 1e-9 && (lon - 120.20).abs() < 1e-9);
        // 0.01 degree of latitude is 1,111.95 m on the mean sphere.
        let (_, y1) = p.project(30.26, 120.16);
        assert!((y1 - 1111.95).abs() < 0.01, "{y1}");
    }
}

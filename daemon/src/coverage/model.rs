//! The acoustic model after FEMA CPG 1-17: a siren rated `L` dB(C) at 30 m delivers
//! `L - k * log2(d / 30 m)` at distance `d`, `k` dB lost per doubling of distance.

/// The distance at which sirens are rated, metres (100 ft).
pub const REFERENCE_DISTANCE_M: f64 = 30.0;

/// In energy summation, the intensity that covers a point alone (the threshold) in fixed-point
/// units. Integers make adding and removing a siren exact, so incremental updates always equal
/// a full recomputation.
pub const ENERGY_UNIT: u32 = 1 << 16;

/// In energy summation, contributions more than this many dB below the threshold are ignored:
/// each is under 1 % of what a point needs, and counting them would multiply the work by the
/// square of the extra reach.
pub const ENERGY_FLOOR_DB: f64 = 20.0;

/// How overlapping sirens combine at a point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Overlap {
    /// The loudest siren alone decides (conservative: CPG 1-17's practice).
    #[default]
    Loudest,
    /// Intensities add: two sirens each 3 dB short of the threshold cover a point together.
    Energy,
}

impl Overlap {
    /// The name used in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Overlap::Loudest => "loudest",
            Overlap::Energy => "energy",
        }
    }
}

/// Propagation and coverage threshold of one kind of terrain.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Acoustics {
    /// The level a point needs to count as covered, dB(C).
    pub threshold_db: f64,
    /// Loss per doubling of distance, dB (6 is pure spherical spreading).
    pub loss_per_doubling_db: f64,
}

impl Acoustics {
    /// The level a siren rated `rating_db` delivers at `distance_m`; within the reference
    /// distance the rating itself (the model says nothing closer in).
    pub fn level_db(&self, rating_db: f64, distance_m: f64) -> f64 {
        let d = distance_m.max(REFERENCE_DISTANCE_M);
        rating_db - self.loss_per_doubling_db * (d / REFERENCE_DISTANCE_M).log2()
    }

    /// The distance out to which a siren rated `rating_db` reaches the threshold; zero when it
    /// never does.
    pub fn audible_radius_m(&self, rating_db: f64) -> f64 {
        self.radius_for(rating_db, self.threshold_db)
    }

    /// How far energy summation looks: where the siren falls [`ENERGY_FLOOR_DB`] below the
    /// threshold.
    pub fn energy_radius_m(&self, rating_db: f64) -> f64 {
        self.radius_for(rating_db, self.threshold_db - ENERGY_FLOOR_DB)
    }

    fn radius_for(&self, rating_db: f64, level_db: f64) -> f64 {
        if rating_db < level_db {
            0.0
        } else {
            REFERENCE_DISTANCE_M * ((rating_db - level_db) / self.loss_per_doubling_db).exp2()
        }
    }

    /// A siren's intensity at a point relative to the threshold, in [`ENERGY_UNIT`]s, capped
    /// at one unit (one siren at the threshold covers the point whatever the others add).
    pub fn energy_units(&self, rating_db: f64, distance_m: f64) -> u32 {
        let excess_db = self.level_db(rating_db, distance_m) - self.threshold_db;
        if excess_db >= 0.0 {
            ENERGY_UNIT
        } else if excess_db < -ENERGY_FLOOR_DB {
            0
        } else {
            // In [0.01, 1) of the unit: the cast cannot truncate anything that matters.
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let units = (f64::from(ENERGY_UNIT) * 10f64.powf(excess_db / 10.0)) as u32;
            units
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const URBAN: Acoustics = Acoustics { threshold_db: 70.0, loss_per_doubling_db: 10.0 };

    #[test]
    fn a_120_db_siren_reaches_70_db_at_960_m() {
        assert!((URBAN.audible_radius_m(120.0) - 960.0).abs() < 1e-9);
        assert!((URBAN.level_db(120.0, 960.0) - 70.0).abs() < 1e-9);
        assert!((URBAN.level_db(120.0, 10.0) - 120.0).abs() < 1e-9);
    }

    #[test]
    fn spherical_spreading_halves_the_loss() {
        let open = Acoustics { threshold_db: 70.0, loss_per_doubling_db: 6.0 };
        assert!(open.audible_radius_m(112.0) > URBAN.audible_radius_m(112.0));
        assert!((open.level_db(112.0, 60.0) - 106.0).abs() < 1e-9);
    }

    #[test]
    fn a_siren_below_the_threshold_covers_nothing() {
        assert!(URBAN.audible_radius_m(65.0).abs() < f64::EPSILON);
    }

    #[test]
    fn two_sirens_3_db_short_cover_together_in_energy() {
        let r = URBAN.audible_radius_m(120.0) * (3.0f64 / 10.0).exp2();
        let each = URBAN.energy_units(120.0, r);
        assert!(each < ENERGY_UNIT && 2 * each >= ENERGY_UNIT - 100, "{each}");
        assert_eq!(URBAN.energy_units(120.0, URBAN.energy_radius_m(120.0) * 1.01), 0);
    }
}

//! Mains, battery and charger of a 24 V siren cabinet.

/// Current drawn by the controller and radio, A.
pub const IDLE_LOAD_A: f64 = 0.4;
/// Current drawn by the amplifiers while sounding, A.
pub const SOUNDING_LOAD_A: f64 = 25.0;
/// Charger current into a battery that is not full, A.
pub const CHARGE_A: f64 = 4.0;
/// State of charge below which the battery is low (warning).
pub const LOW_SOC: f64 = 0.30;
/// State of charge below which the siren may not sound (cut-off protects the battery).
pub const EXHAUSTED_SOC: f64 = 0.10;

/// The cabinet's power supply.
#[derive(Debug, Clone)]
pub struct Power {
    pub mains: bool,
    pub charger_ok: bool,
    /// Usable capacity now, Ah (ageing reduces it).
    pub capacity_ah: f64,
    /// Charge held, Ah.
    pub charge_ah: f64,
}

impl Power {
    pub fn new(capacity_ah: f64) -> Self {
        Self { mains: true, charger_ok: true, capacity_ah, charge_ah: capacity_ah }
    }

    /// State of charge, 0..=1.
    pub fn soc(&self) -> f64 {
        if self.capacity_ah <= 0.0 { 0.0 } else { (self.charge_ah / self.capacity_ah).clamp(0.0, 1.0) }
    }

    /// Whether the charger is putting current in right now.
    pub fn charging(&self) -> bool {
        self.mains && self.charger_ok && self.soc() < 0.999
    }

    /// Terminal voltage, mV: a lead-acid pair's resting curve, raised while charging.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, reason = "0..=30 V in mV fits")]
    pub fn battery_mv(&self, sounding: bool) -> u16 {
        let mut v = 21.6 + 4.2 * self.soc();
        if self.mains && self.charger_ok {
            v += 1.4;
        } else if sounding {
            v -= 1.2; // sag under the amplifiers' load
        }
        (v * 1000.0).round() as u16
    }

    /// Whether the battery is below the sounding cut-off while it has to carry the load.
    pub fn exhausted(&self) -> bool {
        !self.mains && self.soc() < EXHAUSTED_SOC
    }

    /// Whether the battery is low.
    pub fn low(&self) -> bool {
        self.soc() < LOW_SOC
    }

    /// Integrates `seconds` of operation.
    pub fn advance(&mut self, seconds: f64, sounding: bool) {
        let hours = seconds / 3600.0;
        if self.mains {
            // Mains carries the load; the charger refills the battery.
            if self.charger_ok {
                self.charge_ah = (self.charge_ah + CHARGE_A * hours).min(self.capacity_ah);
            }
        } else {
            let load = IDLE_LOAD_A + if sounding { SOUNDING_LOAD_A } else { 0.0 };
            self.charge_ah = (self.charge_ah - load * hours).max(0.0);
        }
    }

    /// Ages the battery to `factor` of its current capacity.
    pub fn age(&mut self, factor: f64) {
        self.capacity_ah *= factor.clamp(0.0, 1.0);
        self.charge_ah = self.charge_ah.min(self.capacity_ah);
    }
}

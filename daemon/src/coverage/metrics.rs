//! Coverage series for `/metrics`, encoded from the live coverage at each scrape.

use std::sync::{Arc, Mutex};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Unit;

use super::Coverage;
use super::ZoneFigures;
use super::map::ZoneCoverage;

/// The coverage as the daemon shares it between the engine, HTTP and metrics.
pub type SharedCoverage = Arc<Mutex<Coverage>>;

/// Encodes `siren_coverage_*` and `siren_*uncovered_population`, per zone.
#[derive(Debug)]
pub struct CoverageCollector(pub SharedCoverage);

/// Encodes `siren_sole_coverage_*`, per siren: computed under the lock, encoded after it.
#[derive(Debug)]
pub struct SoleCoverageCollector(pub SharedCoverage);

fn ratios(zones: &[ZoneCoverage], population: bool) -> impl Iterator<Item = (&str, &'static str, f64)> {
    zones.iter().flat_map(move |z| {
        let by_area = std::iter::once((z.zone.as_str(), "area", z.area_ratio));
        let by_people = z.population_ratio.filter(|_| population).map(|r| (z.zone.as_str(), "population", r));
        by_area.chain(by_people)
    })
}

impl Collector for CoverageCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut coverage = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let population = coverage.has_population();
        let current = coverage.current();
        let design = coverage.design().to_vec();
        for (name, help, zones) in [
            (
                "siren_coverage_ratio",
                "Share of the zone that would hear a warning now, by area or population",
                &current,
            ),
            ("siren_design_coverage_ratio", "Share of the zone covered with every siren able to sound", &design),
        ] {
            let mut m = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for (zone, basis, ratio) in ratios(zones, population) {
                m.encode_family(&[("zone", zone), ("basis", basis)])?.encode_gauge(&ratio)?;
            }
        }
        if population {
            for (name, help, zones) in [
                ("siren_uncovered_population", "People in the zone who would not hear a warning now", &current),
                ("siren_design_uncovered_population", "People outside every siren's reach even with all able", &design),
            ] {
                let mut m = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
                for z in zones {
                    m.encode_family(&[("zone", z.zone.as_str())])?
                        .encode_gauge(&z.uncovered_population.unwrap_or(0.0))?;
                }
            }
        }
        {
            let help = "The covered share (by population when known, else area) below which the zone alerts";
            let mut m = encoder.encode_descriptor("siren_coverage_target_ratio", help, None, MetricType::Gauge)?;
            for z in &current {
                m.encode_family(&[("zone", z.zone.as_str())])?.encode_gauge(&z.target_ratio)?;
            }
        }
        {
            let help = "1 while the zone's coverage now is below its target, or none of its sirens can sound";
            let mut m = encoder.encode_descriptor("siren_coverage_below_target", help, None, MetricType::Gauge)?;
            for z in &current {
                m.encode_family(&[("zone", z.zone.as_str())])?.encode_gauge(&i64::from(z.below_target()))?;
            }
        }
        {
            let help = "1 while the zone's coverage with every siren able is below its target: a planning matter";
            let mut m =
                encoder.encode_descriptor("siren_design_coverage_below_target", help, None, MetricType::Gauge)?;
            for z in &design {
                m.encode_family(&[("zone", z.zone.as_str())])?.encode_gauge(&i64::from(z.below_target()))?;
            }
        }
        let figures = coverage.figures();
        drop(coverage);
        encode_lost(&mut encoder, &figures, population)
    }
}

/// Coverage lost to failures per zone, and the thresholds above which a zone alerts.
fn encode_lost(
    encoder: &mut DescriptorEncoder,
    figures: &[ZoneFigures],
    population: bool,
) -> Result<(), std::fmt::Error> {
    let area = Unit::Other("square_meters".into());
    {
        let help = "Area covered with every siren able but not now: lost to failures";
        let mut m = encoder.encode_descriptor("siren_coverage_lost_area", help, Some(&area), MetricType::Gauge)?;
        for z in figures {
            m.encode_family(&[("zone", z.zone.as_str())])?.encode_gauge(&z.lost.area_m2)?;
        }
    }
    {
        let help = "Lost area that sirens in maintenance explain (the rest of siren_coverage_lost_area is unexplained)";
        let name = "siren_coverage_lost_in_maintenance_area";
        let mut m = encoder.encode_descriptor(name, help, Some(&area), MetricType::Gauge)?;
        for z in figures {
            m.encode_family(&[("zone", z.zone.as_str())])?.encode_gauge(&z.lost.in_maintenance.area_m2)?;
        }
    }
    {
        let help = "Lost area above which the zone alerts when no population is configured (zones that alert)";
        let name = "siren_coverage_lost_alert_area";
        let mut m = encoder.encode_descriptor(name, help, Some(&area), MetricType::Gauge)?;
        for z in figures {
            if let Some(a) = z.lost_alert {
                m.encode_family(&[("zone", z.zone.as_str())])?.encode_gauge(&a.area_m2)?;
            }
        }
    }
    if population {
        {
            let help = "People covered with every siren able but not now: unwarned because something failed";
            let mut m = encoder.encode_descriptor("siren_coverage_lost_population", help, None, MetricType::Gauge)?;
            for z in figures {
                m.encode_family(&[("zone", z.zone.as_str())])?.encode_gauge(&z.lost.population.unwrap_or(0.0))?;
            }
        }
        {
            let help = "Lost people whom sirens in maintenance explain (the rest of siren_coverage_lost_population is unexplained)";
            let name = "siren_coverage_lost_in_maintenance_population";
            let mut m = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for z in figures {
                let people = z.lost.in_maintenance.population.unwrap_or(0.0);
                m.encode_family(&[("zone", z.zone.as_str())])?.encode_gauge(&people)?;
            }
        }
        let help = "Lost people above which the zone alerts (zones that alert)";
        let mut m = encoder.encode_descriptor("siren_coverage_lost_alert_population", help, None, MetricType::Gauge)?;
        for z in figures {
            if let Some(a) = z.lost_alert {
                m.encode_family(&[("zone", z.zone.as_str())])?.encode_gauge(&a.people)?;
            }
        }
    }
    Ok(())
}

impl Collector for SoleCoverageCollector {
    #[allow(clippy::cast_precision_loss, reason = "cell counts and people fit f64")]
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        // (siren, area in m², people), and the same for the sirens that cannot sound now
        #[allow(clippy::type_complexity, reason = "local tuples, named above")]
        let (sole, population, lost): (Vec<(String, f64, f64)>, bool, Vec<(String, f64, f64)>) = {
            let mut coverage = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let cell_m2 = coverage.map().layout().grid.cell_area_m2();
            let population = coverage.has_population();
            let sole = coverage
                .sole_coverage()
                .into_iter()
                .map(|(id, s)| (id.to_owned(), s.cells as f64 * cell_m2, s.population_milli as f64 / 1000.0))
                .collect();
            let lost = coverage
                .lost_by_siren()
                .into_iter()
                .map(|l| (l.siren, l.area_m2, l.population.unwrap_or(0.0)))
                .collect();
            (sole, population, lost)
        };
        {
            let help = "Area lost while this siren cannot sound: what only it would cover (sirens that cannot sound)";
            let unit = Unit::Other("square_meters".into());
            let name = "siren_coverage_lost_by_siren_area";
            let mut m = encoder.encode_descriptor(name, help, Some(&unit), MetricType::Gauge)?;
            for (id, area, _) in &lost {
                m.encode_family(&[("siren", id.as_str())])?.encode_gauge(area)?;
            }
        }
        if population {
            let help = "People unwarned while this siren cannot sound: those only it would cover";
            let name = "siren_coverage_lost_by_siren_population";
            let mut m = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for (id, _, people) in &lost {
                m.encode_family(&[("siren", id.as_str())])?.encode_gauge(people)?;
            }
        }
        {
            let help = "Area only this siren covers: uncovered if it fails (or regained if repaired)";
            let unit = Unit::Other("square_meters".into());
            let mut m = encoder.encode_descriptor("siren_sole_coverage_area", help, Some(&unit), MetricType::Gauge)?;
            for (id, area, _) in &sole {
                m.encode_family(&[("siren", id.as_str())])?.encode_gauge(area)?;
            }
        }
        if population {
            let help = "People only this siren covers: uncovered if it fails (or regained if repaired)";
            let mut m = encoder.encode_descriptor("siren_sole_coverage_population", help, None, MetricType::Gauge)?;
            for (id, _, people) in &sole {
                m.encode_family(&[("siren", id.as_str())])?.encode_gauge(people)?;
            }
        }
        Ok(())
    }
}

//! Coverage series for `/metrics`, encoded from the live coverage at each scrape.

use std::sync::{Arc, Mutex};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Unit;

use super::Coverage;
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
        let coverage = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
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
            let help = "1 while the zone's coverage is below its target: an alert condition";
            let mut m = encoder.encode_descriptor("siren_coverage_below_target", help, None, MetricType::Gauge)?;
            for z in &current {
                m.encode_family(&[("zone", z.zone.as_str())])?.encode_gauge(&i64::from(z.below_target()))?;
            }
        }
        Ok(())
    }
}

impl Collector for SoleCoverageCollector {
    #[allow(clippy::cast_precision_loss, reason = "cell counts and people fit f64")]
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        // (siren, area in m², people)
        let (sole, population): (Vec<(String, f64, f64)>, bool) = {
            let mut coverage = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let cell_m2 = coverage.map().layout().grid.cell_area_m2();
            let population = coverage.has_population();
            let sole = coverage
                .sole_coverage()
                .into_iter()
                .map(|(id, s)| (id.to_owned(), s.cells as f64 * cell_m2, s.population_milli as f64 / 1000.0))
                .collect();
            (sole, population)
        };
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

//! The plain-text report of `sirend coverage`.

use std::fmt::Write as _;

use super::Coverage;

/// How many sirens the report lists by the people their failure would uncover.
pub const PRIORITY_SIRENS: usize = 10;

/// A table per zone (every level) of the three figures, design, now and lost, by area and by
/// people; then the sirens that cannot sound, most people lost first; then, with a population
/// file, the sirens whose failure would uncover the most people.
pub fn render(coverage: &mut Coverage) -> String {
    let mut out = String::new();
    let population = coverage.has_population();
    let _ = writeln!(
        out,
        "{:<28} {:>9} {:>7} {:>7} {:>8}  {:>10} {:>7} {:>7} {:>9} {:>7}  status",
        "zone", "area km²", "design", "now", "lost km²", "people", "design", "now", "lost", "target"
    );
    for z in coverage.figures() {
        let people = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |p| format!("{p:.0}"));
        let share = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |r| format!("{:.1}%", r * 100.0));
        let status = match (z.design_below_target, z.below_target) {
            (true, _) => "short by design",
            (false, true) => "BELOW TARGET",
            (false, false) => "ok",
        };
        let _ = writeln!(
            out,
            "{:<28} {:>9.2} {:>7} {:>7} {:>8.2}  {:>10} {:>7} {:>7} {:>9} {:>6.0}%  {status}",
            z.zone,
            z.now.area_m2 / 1e6,
            share(Some(z.design.area_ratio)),
            share(Some(z.now.area_ratio)),
            z.lost.area_m2 / 1e6,
            people(z.now.population),
            share(z.design.population_ratio),
            share(z.now.population_ratio),
            people(z.lost.population),
            z.now.target_ratio * 100.0,
        );
    }
    let failed = coverage.lost_by_siren();
    if !failed.is_empty() {
        let _ = writeln!(out, "\nsirens that cannot sound, by what their failure costs:");
        let _ = writeln!(out, "{:<20} {:<28} {:>12} {:>9}", "siren", "zone", "people lost", "km² lost");
        for f in failed.iter().take(PRIORITY_SIRENS) {
            let people = f.population.map_or_else(|| "-".to_owned(), |p| format!("{p:.0}"));
            let _ = writeln!(out, "{:<20} {:<28} {people:>12} {:>9.2}", f.siren, f.zone, f.area_m2 / 1e6);
        }
        if failed.len() > PRIORITY_SIRENS {
            let _ = writeln!(out, "... and {} more", failed.len() - PRIORITY_SIRENS);
        }
    }
    if population {
        let _ = writeln!(out, "\nsirens whose failure would leave the most people unwarned:");
        let _ = writeln!(out, "{:<20} {:>12}  able now", "siren", "people");
        for (i, id, s) in coverage.priority(PRIORITY_SIRENS) {
            #[allow(clippy::cast_precision_loss)]
            let people = s.population_milli as f64 / 1000.0;
            let _ = writeln!(out, "{id:<20} {people:>12.0}  {}", if coverage.map().is_able(i) { "yes" } else { "no" });
        }
    }
    out
}

//! The plain-text report of `sirend coverage`.

use std::fmt::Write as _;

use super::Coverage;

/// How many sirens the report lists by the people their failure would uncover.
pub const PRIORITY_SIRENS: usize = 10;

/// A table per zone (every level), then, with a population file, the sirens whose failure
/// would uncover the most people.
pub fn render(coverage: &mut Coverage) -> String {
    let mut out = String::new();
    let population = coverage.has_population();
    let _ = writeln!(
        out,
        "{:<32} {:>10} {:>8} {:>12} {:>8} {:>12} {:>7}  status",
        "zone", "area km²", "heard", "people", "heard", "not heard", "target"
    );
    for z in coverage.current() {
        let people = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |p| format!("{p:.0}"));
        let share = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |r| format!("{:.1}%", r * 100.0));
        let _ = writeln!(
            out,
            "{:<32} {:>10.2} {:>8} {:>12} {:>8} {:>12} {:>6.0}%  {}",
            z.zone,
            z.area_m2 / 1e6,
            share(Some(z.area_ratio)),
            people(z.population),
            share(z.population_ratio),
            people(z.uncovered_population),
            z.target_ratio * 100.0,
            if z.below_target() { "BELOW TARGET" } else { "ok" }
        );
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

//! The siting planner at national scale: 100 new sites over the coverage benchmark's area
//! (100 km x 100 km at 100 m cells, 1,000,000 cells, 10,000 sirens) with a population, lazily
//! and eagerly evaluated. Run with `cargo bench -p sirend --bench planner` (BENCHMARKS.md).

use std::time::Instant;

use rand::{Rng, SeedableRng};
use sirend::config;
use sirend::coverage::boundaries::Boundary;
use sirend::coverage::layout::{self, SirenSpot};
use sirend::coverage::map::CoverageMap;
use sirend::coverage::planner::{self, PlanOptions};

const SIRENS: usize = 10_000;
const SIDE_M: f64 = 100_000.0;
const LAT: f64 = 30.0;
const LON: f64 = 120.0;
const NEW_SITES: usize = 100;

/// Peak resident set size of this process so far, KiB (Linux).
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

#[allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::many_single_char_names,
    reason = "a harness: compass-point bounds and display figures"
)]
fn main() {
    let deg_lat = SIDE_M / 2.0 / 111_195.0;
    let deg_lon = deg_lat / LAT.to_radians().cos();
    let (w, s, e, n) = (LON - deg_lon, LAT - deg_lat, LON + deg_lon, LAT + deg_lat);
    let boundary =
        Boundary { zone: "nation".into(), polygons: vec![vec![vec![(w, s), (e, s), (e, n), (w, n), (w, s)]]] };
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let spots: Vec<SirenSpot<'_>> = (0..SIRENS)
        .map(|_| SirenSpot {
            latitude: rng.random_range(s..n),
            longitude: rng.random_range(w..e),
            zone: "nation",
            rating_db: rng.random_range(110.0..125.0),
        })
        .collect();
    // People: three cities of 6-12 km scale (up to 15,000 per km²) over a rural floor.
    let read = |g: &sirend::coverage::grid::Grid, _: &_| {
        let cities = [(-20_000.0, 15_000.0, 8_000.0), (25_000.0, -10_000.0, 6_000.0), (0.0, 0.0, 12_000.0)];
        Ok((0..g.cells())
            .map(|c| {
                let (x, y) = (g.centre_x(c % g.width), g.centre_y(c / g.width));
                let dense: f64 = cities
                    .iter()
                    .map(|&(cx, cy, r)| 150.0 * (-((x - cx).powi(2) + (y - cy).powi(2)) / (2.0 * r * r)).exp())
                    .sum();
                ((2.0 + dense) * 1000.0) as u32
            })
            .collect())
    };
    let built = layout::build(&config::Coverage::default(), &spots, Some(&[boundary]), Some(&read)).expect("layout");
    let mut map = CoverageMap::new(built.layout, built.sites);
    map.recompute(&vec![true; SIRENS]);
    let z = &map.report()[0];
    eprintln!(
        "{} cells, {:.0} people, {:.1} % covered by design, {:.0} uncovered",
        map.layout().grid.cells(),
        z.population.unwrap_or(0.0),
        z.population_ratio.unwrap_or(0.0) * 100.0,
        z.uncovered_population.unwrap_or(0.0)
    );
    let candidates = planner::grid_candidates(&map, 250.0);
    let options = PlanOptions { max_new: NEW_SITES, rating_db: 120.0, target: Some(1.0), candidates: Some(candidates) };
    let before = peak_rss_kib();
    let t = Instant::now();
    let lazy = planner::plan(&map, &options);
    let lazy_time = t.elapsed();
    let lazy_rss = peak_rss_kib();
    let t = Instant::now();
    let eager = planner::plan_eager(&map, &options);
    let eager_time = t.elapsed();
    let total = |p: &planner::Plan| p.proposals.last().map_or(0.0, |x| x.total_people);
    println!("candidates:        {}", lazy.candidates);
    println!("sites proposed:    {} (lazy), {} (eager)", lazy.proposals.len(), eager.proposals.len());
    println!("people gained:     {:.0} (lazy), {:.0} (eager)", total(&lazy), total(&eager));
    println!(
        "gains computed:    {} (lazy), {} (eager): {:.1} x fewer",
        lazy.evaluations,
        eager.evaluations,
        eager.evaluations as f64 / lazy.evaluations as f64
    );
    println!(
        "time:              {:.2} s (lazy), {:.2} s (eager): {:.1} x faster",
        lazy_time.as_secs_f64(),
        eager_time.as_secs_f64(),
        eager_time.as_secs_f64() / lazy_time.as_secs_f64()
    );
    println!(
        "peak resident:     {:.1} MiB before planning, {:.1} MiB after the lazy plan (its state: 9 bytes per cell)",
        before as f64 / 1024.0,
        lazy_rss as f64 / 1024.0
    );
}

//! Coverage engine at national scale: 10,000 sirens over a 100 km x 100 km zone at 100 m cells
//! (1,000,000 cells). Full computation, one siren's change, and the straightforward loop of
//! every cell over every siren for comparison (BENCHMARKS.md).

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use rand::{Rng, SeedableRng};
use sirend::config;
use sirend::coverage::boundaries::Boundary;
use sirend::coverage::layout::{self, Built, SirenSpot};
use sirend::coverage::map::{CoverageMap, naive_levels};

const SIRENS: usize = 10_000;
const SIDE_M: f64 = 100_000.0;
const LAT: f64 = 30.0;
const LON: f64 = 120.0;

fn national() -> Built {
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
            // 110-125 dB(C) at 30 m: 450 m to 1.3 km at 70 dB(C).
            rating_db: rng.random_range(110.0..125.0),
        })
        .collect();
    layout::build(&config::Coverage::default(), &spots, Some(&[boundary]), None).expect("layout")
}

#[allow(clippy::cast_precision_loss)]
fn coverage(c: &mut Criterion) {
    let built = national();
    let cells = built.layout.grid.cells();
    eprintln!(
        "grid: {} x {} = {cells} cells; per-cell state {} bytes (zone u16 + level u32) = {:.1} MiB",
        built.layout.grid.width,
        built.layout.grid.height,
        6,
        (cells * 6) as f64 / f64::from(1 << 20)
    );
    let all = vec![true; SIRENS];
    let mut map = CoverageMap::new(built.layout.clone(), built.sites.clone());
    let mut group = c.benchmark_group("coverage");
    group.sample_size(10);
    group.bench_function("full_10k_sirens_1M_cells", |b| b.iter(|| map.recompute(black_box(&all))));
    map.recompute(&all);
    eprintln!("covered share with all able: {:.3}", map.report()[0].area_ratio);
    let mut next = 0usize;
    group.sample_size(100);
    group.bench_function("one_siren_change", |b| {
        b.iter(|| {
            let i = next % SIRENS;
            let able = !map.is_able(i);
            map.set_able(black_box(i), able);
            next += 7919;
        });
    });
    group.sample_size(10);
    group.bench_function("sole_coverage_all_sirens", |b| {
        b.iter(|| {
            map.set_able(0, !map.is_able(0));
            black_box(map.sole_coverage().len())
        });
    });
    group.bench_function("naive_per_cell_loop", |b| {
        b.iter(|| naive_levels(black_box(&built.layout), black_box(&built.sites), black_box(&all)));
    });
    group.finish();
}

criterion_group!(benches, coverage);
criterion_main!(benches);

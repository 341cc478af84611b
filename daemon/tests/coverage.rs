//! The coverage engine against analytic answers, hand-computed grids and a full recomputation.

use proptest::prelude::*;
use sirend::config;
use sirend::coverage::boundaries::Boundary;
use sirend::coverage::layout::{self, Built, SirenSpot};
use sirend::coverage::map::{CoverageMap, naive_levels};
use sirend::coverage::model::{Acoustics, Overlap};
use sirend::coverage::{export, population, render};

const LAT: f64 = 30.0;
const LON: f64 = 120.0;
/// Degrees of latitude per metre on the mean sphere.
const DEG_PER_M: f64 = 1.0 / 111_195.0;

fn square(zone: &str, west: f64, south: f64, east: f64, north: f64) -> Boundary {
    Boundary {
        zone: zone.into(),
        polygons: vec![vec![vec![(west, south), (east, south), (east, north), (west, north), (west, south)]]],
    }
}

/// A 10 km square zone `z` centred on (LAT, LON).
fn plane() -> Vec<Boundary> {
    let half = 5_000.0 * DEG_PER_M;
    let half_lon = half / LAT.to_radians().cos();
    vec![square("z", LON - half_lon, LAT - half, LON + half_lon, LAT + half)]
}

fn spot(zone: &str, east_m: f64, north_m: f64, rating_db: f64) -> SirenSpot<'_> {
    SirenSpot {
        latitude: LAT + north_m * DEG_PER_M,
        longitude: LON + east_m * DEG_PER_M / LAT.to_radians().cos(),
        zone,
        rating_db,
    }
}

fn build(settings: &config::Coverage, sirens: &[SirenSpot<'_>], boundaries: &[Boundary]) -> Built {
    layout::build(settings, sirens, Some(boundaries), None).expect("layout")
}

fn all_able(built: Built) -> CoverageMap {
    let n = built.sites.len();
    let mut map = CoverageMap::new(built.layout, built.sites);
    map.recompute(&vec![true; n]);
    map
}

fn urban_radius(rating_db: f64) -> f64 {
    Acoustics { threshold_db: 70.0, loss_per_doubling_db: 10.0 }.audible_radius_m(rating_db)
}

fn within(actual: f64, expected: f64, share: f64) {
    assert!((actual / expected - 1.0).abs() <= share, "{actual} is not within {share} of {expected}");
}

#[test]
fn one_siren_on_an_empty_plane_covers_pi_r_squared() {
    // The grid must be fine against the radius: at 100 m cells a 550 m disc is 95 cells, and
    // which cell centres fall inside sways its area by several percent.
    for (rating, cell_size_m) in [(112.0, 25.0), (120.0, 100.0), (125.0, 100.0), (130.0, 100.0)] {
        let settings = config::Coverage { cell_size_m, ..Default::default() };
        let map = all_able(build(&settings, &[spot("z", 0.0, 0.0, rating)], &plane()));
        let z = &map.report()[0];
        let r = urban_radius(rating);
        within(z.covered_area_m2, std::f64::consts::PI * r * r, 0.02);
        within(z.area_m2, 1e8, 0.02);
    }
}

#[test]
fn two_distant_sirens_cover_the_sum() {
    let settings = config::Coverage::default();
    let one = all_able(build(&settings, &[spot("z", -2500.0, 0.0, 120.0)], &plane())).report()[0].covered_area_m2;
    let other = all_able(build(&settings, &[spot("z", 2500.0, 0.0, 118.0)], &plane())).report()[0].covered_area_m2;
    let both = all_able(build(&settings, &[spot("z", -2500.0, 0.0, 120.0), spot("z", 2500.0, 0.0, 118.0)], &plane()));
    within(both.report()[0].covered_area_m2, one + other, 1e-9);
}

#[test]
fn a_siren_on_the_boundary_covers_only_the_inside_half() {
    let settings = config::Coverage::default();
    let map = all_able(build(&settings, &[spot("z", -5_000.0, 0.0, 120.0)], &plane()));
    let r = urban_radius(120.0);
    within(map.report()[0].covered_area_m2, std::f64::consts::PI * r * r / 2.0, 0.03);
}

#[test]
fn the_threshold_and_loss_come_from_the_zone_setting() {
    let mut settings = config::Coverage::default();
    settings.zones.insert(
        "z".into(),
        config::ZoneAcoustics {
            density: Some(config::Density::Sparse),
            loss_per_doubling_db: Some(6.0),
            ..Default::default()
        },
    );
    let map = all_able(build(&settings, &[spot("z", 0.0, 0.0, 100.0)], &plane()));
    let r = Acoustics { threshold_db: 60.0, loss_per_doubling_db: 6.0 }.audible_radius_m(100.0);
    within(map.report()[0].covered_area_m2, std::f64::consts::PI * r * r, 0.02);
}

#[test]
fn population_weighs_coverage_as_counted_by_hand() {
    let settings = config::Coverage::default();
    let sirens = [spot("z", 0.0, 0.0, 120.0), spot("z", 3000.0, 0.0, 120.0)];
    // 1,000 people 300 m north of the first siren, 250 only the second hears, 500 nobody does.
    let at = |east: f64, north: f64| {
        format!("{},{}", LAT + north * DEG_PER_M, LON + east * DEG_PER_M / LAT.to_radians().cos())
    };
    let csv = format!(
        "latitude,longitude,population\n{},1000\n{},250\n{},500\n",
        at(0.0, 300.0),
        at(3000.0, -200.0),
        at(-4000.0, 4000.0)
    );
    let read = |g: &_, p: &_| {
        let people = population::read_csv(csv.as_bytes(), g, p).expect("csv");
        Ok(population::to_milli(people))
    };
    let built = layout::build(&settings, &sirens, Some(&plane()), Some(&read)).expect("layout");
    let mut map = all_able(built);
    let z = &map.report()[0];
    assert_eq!(z.population, Some(1750.0));
    assert_eq!(z.covered_population, Some(1250.0));
    assert_eq!(z.uncovered_population, Some(500.0));
    let sole: Vec<u64> = map.sole_coverage().iter().map(|s| s.population_milli / 1000).collect();
    assert_eq!(sole, vec![1000, 250]);
    // The first siren fails: its 1,000 people are uncovered, and it is what would bring them back.
    map.set_able(0, false);
    let z = &map.report()[0];
    assert_eq!(z.uncovered_population, Some(1500.0));
    assert_eq!(map.sole_coverage()[0].population_milli, 1_000_000);
}

#[test]
fn nested_zones_add_up_to_their_parent() {
    let settings = config::Coverage::default();
    let mut boundaries = plane();
    let half = 5_000.0 * DEG_PER_M;
    let half_lon = half / LAT.to_radians().cos();
    boundaries.push(square("z/west", LON - half_lon, LAT - half, LON, LAT + half));
    boundaries.push(square("z/east/port", LON, LAT - half, LON + half_lon / 2.0, LAT));
    let sirens = [spot("z/west", -2000.0, 0.0, 120.0), spot("z/east/port", 1000.0, -1000.0, 115.0)];
    let map = all_able(build(&settings, &sirens, &boundaries));
    let report = map.report();
    let by = |z: &str| report.iter().find(|r| r.zone == z).expect(z).clone();
    let (z, west, east, port) = (by("z"), by("z/west"), by("z/east"), by("z/east/port"));
    within(west.area_m2, 5e7, 0.02);
    within(port.area_m2, 1.25e7, 0.02);
    within(east.area_m2, port.area_m2, 1e-12); // z/east has no boundary of its own: only its child's
    assert!(z.area_m2 > west.area_m2 + port.area_m2, "z keeps the cells no child claims");
    within(z.covered_area_m2, west.covered_area_m2 + east.covered_area_m2, 1e-9);
    within(west.covered_area_m2, std::f64::consts::PI * urban_radius(120.0).powi(2), 0.02);
}

#[test]
fn energy_summation_covers_what_two_sirens_reach_together() {
    // Two sirens 2.4 km apart, each audible to 960 m alone: the midpoint hears neither alone,
    // and 1 km from each they are each 0.6 dB short, together 2.4 dB over.
    let sirens = [spot("z", -500.0, 0.0, 120.0), spot("z", 500.0, 0.0, 120.0)];
    let loudest = all_able(build(&config::Coverage::default(), &sirens, &plane()));
    let energy_settings = config::Coverage { overlap: Overlap::Energy, ..Default::default() };
    let energy = all_able(build(&energy_settings, &sirens, &plane()));
    assert!(energy.report()[0].covered_area_m2 > loudest.report()[0].covered_area_m2 * 1.05);
}

#[test]
fn uncovered_ground_is_merged_into_polygons_with_holes() {
    let settings = config::Coverage::default();
    let built = build(&settings, &[spot("z", 0.0, 0.0, 120.0)], &plane());
    let projection = built.projection;
    let mut map = all_able(built);
    map.fix_design();
    let fc = export::uncovered_geojson(&map, &projection, None);
    assert_eq!(fc.features.len(), 1, "all able: no lost ground, only the design gap");
    let Some(geojson::Geometry { value: geojson::GeometryValue::MultiPolygon { coordinates }, .. }) =
        &fc.features[0].geometry
    else {
        panic!("not a MultiPolygon");
    };
    // One square with the siren's audible disc cut out of it.
    assert_eq!(coordinates.len(), 1);
    assert_eq!(coordinates[0].len(), 2, "an exterior and one hole");
    let props = fc.features[0].properties.as_ref().unwrap();
    assert_eq!(props["kind"], "design_gap");
    assert_eq!(props["zone"], "z");
    let km2 = props["area_km2"].as_f64().unwrap();
    let z = &map.report()[0];
    within(km2 * 1e6, z.area_m2 - z.covered_area_m2, 1e-6);
    let exterior = &coordinates[0][0];
    assert_eq!(exterior.len(), 5, "a square's four corners, closed");
    assert_eq!(exterior.first(), exterior.last());
    // The siren fails: its disc is lost ground, apart from the gap, which stays as it was.
    map.set_able(0, false);
    let fc = export::uncovered_geojson(&map, &projection, None);
    let kinds: Vec<&str> =
        fc.features.iter().map(|f| f.properties.as_ref().unwrap()["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["lost", "design_gap"]);
    let lost = fc.features[0].properties.as_ref().unwrap()["area_km2"].as_f64().unwrap();
    within(lost * 1e6, z.covered_area_m2, 1e-6);
    within(fc.features[1].properties.as_ref().unwrap()["area_km2"].as_f64().unwrap(), km2, 1e-12);
    // Limited to a zone that is not there: nothing.
    assert!(export::uncovered_geojson(&map, &projection, Some("elsewhere")).features.is_empty());
}

/// Two districts of 25 km² each, people spread evenly, one siren in each and a third in the
/// east; the one in the west is the west's only siren.
fn two_districts() -> sirend::coverage::Coverage {
    let settings = config::Coverage::default();
    let half = 5_000.0 * DEG_PER_M;
    let half_lon = half / LAT.to_radians().cos();
    let boundaries = vec![
        square("z/west", LON - half_lon, LAT - half / 2.0, LON, LAT + half / 2.0),
        square("z/east", LON, LAT - half / 2.0, LON + half_lon, LAT + half / 2.0),
    ];
    let sirens =
        [spot("z/west", -2500.0, 0.0, 120.0), spot("z/east", 2500.0, 0.0, 120.0), spot("z/east", 2500.0, 300.0, 110.0)];
    let read = |g: &sirend::coverage::grid::Grid, _: &_| Ok(vec![1000; g.cells()]);
    let built = layout::build(&settings, &sirens, Some(&boundaries), Some(&read)).expect("layout");
    sirend::coverage::Coverage::new(built, vec!["W".into(), "E1".into(), "E2".into()])
}

#[test]
fn lost_coverage_is_what_the_design_covers_and_the_failures_took() {
    let mut c = two_districts();
    for i in 0..3 {
        c.set_able(i, true);
    }
    let f = c.figures();
    let by = |f: &[sirend::coverage::ZoneFigures], z: &str| f.iter().find(|x| x.zone == z).unwrap().clone();
    let west = by(&f, "z/west");
    assert_eq!((west.lost.area_m2, west.lost.population), (0.0, Some(0.0)), "nothing failed");
    assert_eq!(west.now, west.design);
    let design_west = west.design.covered_area_m2;
    // The west's only siren fails: everything it covered is lost, and the west is below its
    // target although the design gap did not change.
    c.set_able(0, false);
    let f = c.figures();
    let west = by(&f, "z/west");
    within(west.lost.area_m2, design_west, 1e-12);
    within(west.lost.population.unwrap(), design_west / 1e4, 1e-9);
    assert_eq!((west.now.sirens, west.now.sirens_able), (1, 0));
    assert!(west.below_target);
    assert_eq!(west.design.uncovered_population, by(&c.figures(), "z/west").design.uncovered_population);
    // The parent sums its districts; the lost people per failed siren is the siren's own.
    let z = by(&f, "z");
    within(z.lost.area_m2, west.lost.area_m2 + by(&f, "z/east").lost.area_m2, 1e-12);
    let failed = c.lost_by_siren();
    assert_eq!(failed.len(), 1);
    assert_eq!((failed[0].siren.as_str(), failed[0].zone.as_str()), ("W", "z/west"));
    within(failed[0].population.unwrap(), west.lost.population.unwrap(), 1e-9);
    // E2 sits inside E1's reach: its failure alone costs nothing, and is listed with nothing.
    c.set_able(2, false);
    let failed = c.lost_by_siren();
    assert_eq!(failed.iter().map(|s| s.siren.as_str()).collect::<Vec<_>>(), ["W", "E2"]);
    assert_eq!(failed[1].population, Some(0.0));
    // Only leaf zones alert on loss by default; the parent does when set for it.
    assert!(by(&f, "z/west").lost_alert.is_some() && by(&f, "z").lost_alert.is_none());
}

#[test]
fn what_sirens_in_maintenance_cost_is_told_apart_from_unexplained_loss() {
    let mut c = two_districts();
    for i in 0..3 {
        c.set_able(i, true);
    }
    let by = |f: &[sirend::coverage::ZoneFigures], z: &str| f.iter().find(|x| x.zone == z).unwrap().clone();
    // The west's only siren fails while a crew has it in maintenance: all its loss is explained.
    c.set_able(0, false);
    c.set_in_maintenance(0, true);
    let west = by(&c.figures(), "z/west");
    assert!(west.lost.area_m2 > 0.0);
    within(west.lost.in_maintenance.area_m2, west.lost.area_m2, 1e-12);
    assert_eq!(west.lost.in_maintenance.population, west.lost.population);
    assert_eq!(west.lost.unexplained().population, Some(0.0));
    assert!(c.lost_by_siren()[0].in_maintenance);
    // An east siren fails too, unexplained: the east's loss is not maintenance's, and the
    // parent zone shows the two apart.
    c.set_able(1, false);
    c.set_able(2, false);
    let f = c.figures();
    let east = by(&f, "z/east");
    assert!(east.lost.area_m2 > 0.0);
    assert_eq!((east.lost.in_maintenance.area_m2, east.lost.in_maintenance.population), (0.0, Some(0.0)));
    let z = by(&f, "z");
    within(z.lost.in_maintenance.area_m2, west.lost.area_m2, 1e-12);
    within(z.lost.unexplained().area_m2, east.lost.area_m2, 1e-9);
    // The figures leave the live coverage as it was.
    assert_eq!(by(&c.figures(), "z/west").now, by(&f, "z/west").now);
    assert!(!c.map().is_able(0));
    // The map shows the west's loss apart, the east's as lost.
    let explained = c.explained_by_maintenance();
    let fc = export::uncovered_geojson_apart(c.map(), c.projection(), None, explained.as_deref());
    let kinds: Vec<(String, String)> = fc
        .features
        .iter()
        .map(|f| {
            let p = f.properties.as_ref().unwrap();
            (p["zone"].as_str().unwrap().to_owned(), p["kind"].as_str().unwrap().to_owned())
        })
        .filter(|(_, kind)| kind != "design_gap")
        .collect();
    assert_eq!(
        kinds,
        [("z/east".to_owned(), "lost".to_owned()), ("z/west".to_owned(), "lost_in_maintenance".to_owned())]
    );
    // Out of maintenance (still failed): all of it unexplained.
    c.set_in_maintenance(0, false);
    assert!(c.explained_by_maintenance().is_none());
    let west = by(&c.figures(), "z/west");
    assert_eq!((west.lost.in_maintenance.area_m2, west.lost.in_maintenance.population), (0.0, Some(0.0)));
    within(west.lost.unexplained().area_m2, west.lost.area_m2, 1e-12);
}

#[test]
fn a_zone_without_people_has_no_population_ratio() {
    let settings = config::Coverage::default();
    let read = |g: &sirend::coverage::grid::Grid, _: &_| Ok(vec![0; g.cells()]);
    let built = layout::build(&settings, &[spot("z", 0.0, 0.0, 120.0)], Some(&plane()), Some(&read)).expect("layout");
    let c = sirend::coverage::Coverage::new(built, vec!["S".into()]);
    let z = &c.design()[0];
    assert_eq!((z.population, z.population_ratio), (Some(0.0), None));
    assert!(z.area_ratio < 1.0, "judged by area instead");
}

#[test]
fn the_rendered_map_shows_its_legend_and_is_cropped_to_a_zone() {
    let mut c = two_districts();
    for i in 0..3 {
        c.set_able(i, true);
    }
    c.set_able(0, false);
    let states = [sirend::liveness::State::Faulty, sirend::liveness::State::Ok, sirend::liveness::State::Ok];
    let ids = c.siren_ids().to_vec();
    let decode = |bytes: Vec<u8>| {
        let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
        let mut reader = decoder.read_info().expect("a PNG");
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        (info.width, info.height, buf)
    };
    let view = |zone, width| render::View {
        zone,
        width,
        at: jiff::Timestamp::UNIX_EPOCH,
        ids: &ids,
        figures: vec!["figures".into()],
    };
    let (w, _, all) = decode(render::render_png(c.map(), &states, &view(None, None)));
    assert_eq!(w, render::DEFAULT_WIDTH);
    let count = |buf: &[u8], rgb: [u8; 3]| buf.chunks_exact(3).filter(|p| *p == rgb).count();
    let lost_red = [215, 25, 28];
    let faulty = render::state_colour(sirend::liveness::State::Faulty);
    assert!(count(&all, lost_red) > 1000, "the failed siren's ground is drawn as lost");
    // The east alone: cropped to it, so the west's lost ground and failed siren are not in
    // the picture (the legend's sample marker is in both).
    let (w, _, east) = decode(render::render_png(c.map(), &states, &view(Some("z/east"), Some(800))));
    assert_eq!(w, 800);
    assert_eq!(count(&east, lost_red), count(&east, lost_red).min(22 * 16), "only the legend's swatch");
    assert!(count(&all, faulty) >= count(&east, faulty) + 100, "the failed siren is drawn large, in the west");
}

fn random_layout(overlap: Overlap, sites: &[(f64, f64, f64, bool)]) -> Built {
    let mut settings = config::Coverage { overlap, cell_size_m: 200.0, ..Default::default() };
    settings.zones.insert(
        "z/open".into(),
        config::ZoneAcoustics { threshold_db: Some(62.0), loss_per_doubling_db: Some(7.0), ..Default::default() },
    );
    let mut boundaries = plane();
    let half = 5_000.0 * DEG_PER_M;
    boundaries.push(square("z/open", LON, LAT, LON + half / LAT.to_radians().cos(), LAT + half));
    let spots: Vec<SirenSpot<'_>> =
        sites.iter().map(|&(x, y, rating, open)| spot(if open { "z/open" } else { "z" }, x, y, rating)).collect();
    build(&settings, &spots, &boundaries)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Whatever sirens fail and recover, in whatever order, the incrementally kept map equals
    /// a recomputation from nothing and the straightforward per-cell loop.
    #[test]
    fn incremental_equals_full_recomputation(
        energy in any::<bool>(),
        sites in prop::collection::vec((-6000.0..6000.0f64, -6000.0..6000.0f64, 95.0..128.0f64, any::<bool>()), 1..12),
        flips in prop::collection::vec((0usize..12, any::<bool>()), 0..60),
    ) {
        let overlap = if energy { Overlap::Energy } else { Overlap::Loudest };
        let built = random_layout(overlap, &sites);
        let n = built.sites.len();
        let mut live = CoverageMap::new(built.layout.clone(), built.sites.clone());
        let mut able = vec![false; n];
        for (i, to) in flips {
            let i = i % n;
            live.set_able(i, to);
            able[i] = to;
            let mut full = CoverageMap::new(built.layout.clone(), built.sites.clone());
            full.recompute(&able);
            prop_assert_eq!(live.levels(), full.levels());
            prop_assert_eq!(live.covered_tallies(), full.covered_tallies());
            prop_assert_eq!(live.report(), full.report());
        }
        let naive = naive_levels(&built.layout, &built.sites, &able);
        prop_assert_eq!(live.levels(), naive.as_slice());
    }
}

#[test]
fn the_text_report_lists_zones_and_the_sirens_to_repair_first() {
    let settings = config::Coverage::default();
    let sirens = [spot("z", 0.0, 0.0, 120.0), spot("z", 3000.0, 0.0, 120.0)];
    let csv = format!(
        "latitude,longitude,population\n{},{},700\n{},{},300\n",
        LAT,
        LON,
        LAT,
        LON + 3000.0 * DEG_PER_M / LAT.to_radians().cos()
    );
    let read = |g: &_, p: &_| Ok(population::to_milli(population::read_csv(csv.as_bytes(), g, p).expect("csv")));
    let built = layout::build(&settings, &sirens, Some(&plane()), Some(&read)).expect("layout");
    let mut coverage = sirend::coverage::Coverage::new(built, vec!["A".into(), "B".into()]);
    coverage.set_able(1, true);
    let text = sirend::coverage::table::render(&mut coverage);
    let zone = text.lines().find(|l| l.starts_with("z ")).expect(&text);
    // By design both sirens cover all 1,000 people; A cannot sound, so 700 are lost.
    assert!(zone.contains("100.0%") && zone.contains("30.0%") && zone.contains(" 700 "), "{zone}");
    assert!(zone.ends_with("BELOW TARGET"), "{zone}");
    let failed: Vec<&str> = text.lines().skip_while(|l| !l.starts_with("sirens that cannot sound")).collect();
    assert!(failed[2].starts_with('A') && failed[2].contains(" 700 "), "{text}");
    let tail: Vec<&str> = text.lines().skip_while(|l| !l.starts_with("sirens whose failure")).collect();
    assert_eq!(tail.len(), 4, "{text}");
    assert!(tail[2].starts_with('A') && tail[2].contains(" 700  no"), "{}", tail[2]);
    assert!(tail[3].starts_with('B') && tail[3].contains(" 300  yes"), "{}", tail[3]);
}

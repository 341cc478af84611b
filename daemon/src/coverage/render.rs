//! The coverage map as a picture for people (`/api/coverage.png`): ground covered now, lost
//! to failures and never covered told apart (the last hatched as well, so that the difference
//! does not rest on colour alone), zone outlines with their names, every siren by state with
//! the failed ones large, ringed and named, a legend with the figures, a scale bar, a north
//! arrow and the time it shows.

use font8x8::UnicodeFonts as _;

use super::map::{CoverageMap, NO_ZONE};
use crate::liveness::State;

/// The default width of the picture, pixels: readable on a control room's screen.
pub const DEFAULT_WIDTH: u32 = 1280;
pub const MIN_WIDTH: u32 = 640;
pub const MAX_WIDTH: u32 = 4096;
/// The tallest map drawn, pixels (a zone much taller than wide is drawn narrower).
const MAX_MAP_HEIGHT: usize = 3000;
const LEGEND_WIDTH: usize = 330;
const TITLE_HEIGHT: usize = 40;
const MARGIN: usize = 10;
const LEGEND_HEIGHT: usize = 560;

type Rgb = [u8; 3];
const BACKGROUND: Rgb = [255, 255, 255];
const OUTSIDE: Rgb = [232, 232, 232];
const COVERED: Rgb = [199, 233, 192];
const LOST: Rgb = [215, 25, 28];
const GAP: Rgb = [255, 237, 160];
const GAP_HATCH: Rgb = [191, 160, 70];
const BORDER: Rgb = [70, 70, 70];
const INK: Rgb = [20, 20, 20];
const HALO: Rgb = [255, 255, 255];

/// The colour of a siren's marker (also documented in docs/operations.md).
pub fn state_colour(state: State) -> Rgb {
    match state {
        State::Ok => [0, 109, 44],
        State::Degraded => [254, 196, 79],
        State::Faulty => [217, 95, 14],
        State::Down => [203, 24, 29],
        State::Unreachable => [99, 99, 99],
        State::Unknown => [117, 107, 177],
    }
}

/// A siren that should stand out: it cannot sound although its link works.
fn failed(state: State) -> bool {
    matches!(state, State::Faulty | State::Down)
}

/// What the picture shows.
#[derive(Debug, Clone)]
pub struct View<'a> {
    /// Only this zone and the zones inside it; the picture is cropped to them.
    pub zone: Option<&'a str>,
    pub width: Option<u32>,
    /// The moment the coverage is of.
    pub at: jiff::Timestamp,
    /// Siren ids in fleet order (the failed ones are named on the map).
    pub ids: &'a [String],
    /// Figures for the legend, one line each.
    pub figures: Vec<String>,
}

/// An RGB raster with the few drawing operations the map needs.
struct Canvas {
    w: usize,
    h: usize,
    rgb: Vec<u8>,
}

impl Canvas {
    fn new(w: usize, h: usize) -> Self {
        let mut rgb = vec![0u8; w * h * 3];
        for px in rgb.chunks_exact_mut(3) {
            px.copy_from_slice(&BACKGROUND);
        }
        Self { w, h, rgb }
    }

    fn set(&mut self, x: isize, y: isize, c: Rgb) {
        if let (Ok(x), Ok(y)) = (usize::try_from(x), usize::try_from(y)) {
            if x < self.w && y < self.h {
                self.rgb[(y * self.w + x) * 3..][..3].copy_from_slice(&c);
            }
        }
    }

    fn fill(&mut self, left: isize, top: isize, width: isize, height: isize, colour: Rgb) {
        for y in top..top + height {
            for x in left..left + width {
                self.set(x, y, colour);
            }
        }
    }

    fn disc(&mut self, cx: isize, cy: isize, r: isize, c: Rgb) {
        for dy in -r..=r {
            for dx in -r..=r {
                if dx * dx + dy * dy <= r * r {
                    self.set(cx + dx, cy + dy, c);
                }
            }
        }
    }

    fn line(&mut self, (x0, y0): (isize, isize), (x1, y1): (isize, isize), c: Rgb) {
        let steps = (x1 - x0).abs().max((y1 - y0).abs()).max(1);
        for i in 0..=steps {
            self.set(x0 + (x1 - x0) * i / steps, y0 + (y1 - y0) * i / steps, c);
        }
    }

    /// Text in the 8×8 font at `scale`, with a one-pixel halo when `halo` is given. Characters
    /// outside Basic Latin are drawn as `?`.
    fn text(&mut self, x: isize, y: isize, text: &str, scale: isize, c: Rgb, halo: Option<Rgb>) {
        if let Some(h) = halo {
            for (dx, dy) in [(-1, 0), (1, 0), (0, -1), (0, 1), (-1, -1), (1, 1), (-1, 1), (1, -1)] {
                self.glyphs(x + dx, y + dy, text, scale, h);
            }
        }
        self.glyphs(x, y, text, scale, c);
    }

    fn glyphs(&mut self, x: isize, y: isize, text: &str, scale: isize, c: Rgb) {
        for (i, ch) in (0isize..).zip(text.chars()) {
            let glyph = font8x8::BASIC_FONTS.get(ch).or_else(|| font8x8::BASIC_FONTS.get('?')).unwrap_or([0; 8]);
            for (row, bits) in (0isize..).zip(glyph) {
                for col in 0..8 {
                    if bits & (1 << col) != 0 {
                        self.fill(x + (i * 8 + col) * scale, y + row * scale, scale, scale, c);
                    }
                }
            }
        }
    }

    fn png(&self) -> Vec<u8> {
        let mut png = Vec::new();
        let (Ok(w), Ok(h)) = (u32::try_from(self.w), u32::try_from(self.h)) else { return png };
        let mut encoder = png::Encoder::new(&mut png, w, h);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        // Writing to a Vec cannot fail, and the data has exactly the header's size.
        if let Ok(mut writer) = encoder.write_header() {
            let _ = writer.write_image_data(&self.rgb);
        }
        png
    }
}

fn text_width(text: &str, scale: usize) -> usize {
    text.chars().count() * 8 * scale
}

/// The cells `(col0, row0, col1, row1)` to draw: the whole grid, or the box of the zone's
/// cells with a margin.
fn window(map: &CoverageMap, wanted: &[bool]) -> (usize, usize, usize, usize) {
    let g = &map.layout().grid;
    let (mut c0, mut r0, mut c1, mut r1) = (usize::MAX, usize::MAX, 0, 0);
    for (cell, &z) in map.layout().owner.iter().enumerate() {
        if z != NO_ZONE && wanted[usize::from(z)] {
            let (col, row) = (cell % g.width, cell / g.width);
            (c0, r0, c1, r1) = (c0.min(col), r0.min(row), c1.max(col + 1), r1.max(row + 1));
        }
    }
    if c0 == usize::MAX {
        return (0, 0, g.width, g.height);
    }
    let pad = ((c1 - c0).max(r1 - r0) / 20).max(2);
    (c0.saturating_sub(pad), r0.saturating_sub(pad), (c1 + pad).min(g.width), (r1 + pad).min(g.height))
}

/// Renders the map (see the module's documentation).
#[allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_possible_wrap
)]
pub fn render_png(map: &CoverageMap, states: &[State], view: &View<'_>) -> Vec<u8> {
    let layout = map.layout();
    let g = &layout.grid;
    let wanted: Vec<bool> = layout.zones.iter().map(|z| view.zone.is_none_or(|q| super::within(&z.path, q))).collect();
    let (c0, r0, c1, r1) = window(map, &wanted);
    let (cols, rows) = ((c1 - c0).max(1), (r1 - r0).max(1));
    let width = view.width.unwrap_or(DEFAULT_WIDTH).clamp(MIN_WIDTH, MAX_WIDTH) as usize;
    let map_w_max = width - LEGEND_WIDTH - 3 * MARGIN;
    // Pixels per cell: the map fills the width unless that makes it too tall.
    let scale = (map_w_max as f64 / cols as f64).min(MAX_MAP_HEIGHT as f64 / rows as f64);
    let (map_w, map_h) = (((cols as f64) * scale).ceil() as usize, ((rows as f64) * scale).ceil() as usize);
    let height = (TITLE_HEIGHT + map_h + 2 * MARGIN).max(TITLE_HEIGHT + LEGEND_HEIGHT + 2 * MARGIN);
    let mut canvas = Canvas::new(width, height);
    let (mx, my) = (MARGIN, TITLE_HEIGHT + MARGIN);

    // Ground, then the zones' outlines.
    let cell_of = |px: usize, py: usize| -> usize {
        let col = c0 + ((px as f64 + 0.5) / scale) as usize;
        let row = r1 - 1 - (((py as f64 + 0.5) / scale) as usize).min(rows - 1);
        row * g.width + col.min(g.width - 1)
    };
    let owner_at = |px: usize, py: usize| -> u16 {
        let z = layout.owner[cell_of(px, py)];
        if z != NO_ZONE && wanted[usize::from(z)] { z } else { NO_ZONE }
    };
    for py in 0..map_h {
        for px in 0..map_w {
            let cell = cell_of(px, py);
            let colour = if owner_at(px, py) == NO_ZONE {
                OUTSIDE
            } else if map.is_covered(cell) {
                COVERED
            } else if map.is_lost(cell) {
                LOST
            } else if (px + py) % 8 < 2 {
                GAP_HATCH
            } else {
                GAP
            };
            let here = owner_at(px, py);
            let border =
                (px + 1 < map_w && owner_at(px + 1, py) != here) || (py + 1 < map_h && owner_at(px, py + 1) != here);
            canvas.set((mx + px) as isize, (my + py) as isize, if border { BORDER } else { colour });
        }
    }
    let to_pixel = |x: f64, y: f64| -> (isize, isize) {
        let px = ((x - g.x0) / g.cell_m - c0 as f64) * scale;
        let py = (r1 as f64 - (y - g.y0) / g.cell_m) * scale;
        (mx as isize + px as isize, my as isize + py as isize)
    };

    // Zone names at the middle of their own cells, relative to the zone shown (or to the one
    // zone everything is in).
    let tops: Vec<&str> = layout.zones.iter().filter(|z| z.parent.is_none()).map(|z| z.path.as_str()).collect();
    let root = view.zone.or(if tops.len() == 1 { Some(tops[0]) } else { None });
    let mut sums = vec![(0.0f64, 0.0f64, 0usize); layout.zones.len()];
    for row in r0..r1 {
        for col in c0..c1 {
            let z = layout.owner[row * g.width + col];
            if z != NO_ZONE && wanted[usize::from(z)] {
                let s = &mut sums[usize::from(z)];
                *s = (s.0 + g.centre_x(col), s.1 + g.centre_y(row), s.2 + 1);
            }
        }
    }
    for (z, &(sx, sy, n)) in sums.iter().enumerate() {
        if n == 0 {
            continue;
        }
        let path = &layout.zones[z].path;
        let name = root
            .and_then(|q| path.strip_prefix(q).map(|rest| rest.trim_start_matches('/')))
            .filter(|rest| !rest.is_empty())
            .unwrap_or(path);
        // Below the middle: a zone of one siren has it there.
        let (x, y) = to_pixel(sx / n as f64, sy / n as f64);
        canvas.text(x - text_width(name, 1) as isize / 2, y + 10, name, 1, INK, Some(HALO));
    }

    // Sirens: the able small, the failed large, ringed and named, drawn last so they are on top.
    let in_view = |i: usize| map.sites().get(i).is_some_and(|s| wanted[s.zone]);
    let mut order: Vec<usize> = (0..map.sites().len().min(states.len())).filter(|&i| in_view(i)).collect();
    order.sort_by_key(|&i| failed(states[i]));
    for i in order {
        let site = &map.sites()[i];
        let (x, y) = to_pixel(site.x, site.y);
        let state = states[i];
        if failed(state) {
            canvas.disc(x, y, 11, HALO);
            canvas.disc(x, y, 9, INK);
            canvas.disc(x, y, 7, state_colour(state));
            let id = view.ids.get(i).map_or("", String::as_str);
            canvas.text(x + 13, y - 4, id, 1, INK, Some(HALO));
        } else {
            canvas.disc(x, y, 5, INK);
            canvas.disc(x, y, 4, state_colour(state));
            if state == State::Degraded {
                canvas.set(x, y, INK);
            }
        }
    }

    north_arrow(&mut canvas, (mx + map_w) as isize - 24, my as isize + 10);
    title(&mut canvas, view);
    legend(&mut canvas, width - LEGEND_WIDTH - MARGIN, view, g.cell_m / scale);
    canvas.png()
}

#[allow(clippy::cast_possible_wrap, reason = "a margin of a few pixels")]
fn title(canvas: &mut Canvas, view: &View<'_>) {
    let at = view.at.strftime("%Y-%m-%d %H:%M:%S UTC").to_string();
    let text = format!("Warning coverage: {}   {at}", view.zone.unwrap_or("all zones"));
    canvas.text(MARGIN as isize, 12, &text, 2, INK, None);
}

#[allow(
    clippy::cast_possible_wrap,
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss
)]
fn legend(canvas: &mut Canvas, x: usize, view: &View<'_>, metres_per_pixel: f64) {
    let x = x as isize;
    let mut y = (TITLE_HEIGHT + MARGIN) as isize;
    canvas.text(x, y, "Ground", 2, INK, None);
    y += 24;
    let swatches: [(&str, Rgb, bool); 4] = [
        ("covered now", COVERED, false),
        ("lost to failures", LOST, false),
        ("never covered (design gap)", GAP, true),
        ("outside the zones", OUTSIDE, false),
    ];
    for (label, colour, hatched) in swatches {
        canvas.fill(x, y, 22, 16, BORDER);
        for dy in 1..15 {
            for dx in 1..21 {
                let c = if hatched && (dx + dy) % 8 < 2 { GAP_HATCH } else { colour };
                canvas.set(x + dx, y + dy, c);
            }
        }
        canvas.text(x + 30, y + 4, label, 1, INK, None);
        y += 22;
    }
    y += 8;
    canvas.text(x, y, "Sirens", 2, INK, None);
    y += 26;
    for state in [State::Ok, State::Degraded, State::Faulty, State::Down, State::Unreachable, State::Unknown] {
        let (cx, cy) = (x + 11, y + 6);
        if failed(state) {
            canvas.disc(cx, cy, 9, INK);
            canvas.disc(cx, cy, 7, state_colour(state));
        } else {
            canvas.disc(cx, cy, 5, INK);
            canvas.disc(cx, cy, 4, state_colour(state));
            if state == State::Degraded {
                canvas.set(cx, cy, INK);
            }
        }
        let label =
            if failed(state) { format!("{} (cannot sound)", state.as_str()) } else { state.as_str().to_owned() };
        canvas.text(x + 30, y + 2, &label, 1, INK, None);
        y += 22;
    }
    y += 8;
    for line in &view.figures {
        canvas.text(x, y, line, 1, INK, None);
        y += 14;
    }

    // Scale bar: the longest round length that fits in 200 pixels.
    y += 16;
    let lengths = [50.0, 100.0, 200.0, 500.0, 1e3, 2e3, 5e3, 1e4, 2e4, 5e4, 1e5, 2e5, 5e5];
    let metres = lengths.iter().rev().copied().find(|m| m / metres_per_pixel <= 200.0).unwrap_or(lengths[0]);
    let bar = (metres / metres_per_pixel).round().max(1.0) as isize;
    canvas.fill(x, y + 10, bar, 4, INK);
    canvas.fill(x, y + 4, 2, 14, INK);
    canvas.fill(x + bar - 2, y + 4, 2, 14, INK);
    let label = if metres >= 1e3 { format!("{} km", metres / 1e3) } else { format!("{metres} m") };
    canvas.text(x + bar + 8, y + 8, &label, 1, INK, None);
}

/// North is up: an arrow with an N, on a white ground, its top left at about `(x - 14, y)`.
fn north_arrow(canvas: &mut Canvas, x: isize, y: isize) {
    canvas.fill(x - 14, y, 28, 66, HALO);
    canvas.text(x - 7, y + 4, "N", 2, INK, None);
    let top = y + 24;
    for dx in -1..=1 {
        canvas.line((x + dx, top + 36), (x + dx, top), INK);
    }
    canvas.line((x, top), (x - 8, top + 14), INK);
    canvas.line((x, top), (x + 8, top + 14), INK);
}

//! Merges the cells of a mask into polygons: one exterior ring per 4-connected group of cells,
//! with its holes, instead of one square per cell.
//!
//! Every boundary edge between a cell in the mask and one outside is directed so that the mask
//! lies on its left; following edges, and turning left wherever two leave one vertex, closes
//! rings that each bound one 4-connected group. Exterior rings come out counter-clockwise and
//! holes clockwise, as RFC 7946 asks.

/// A vertex of the cell lattice: `(x, y)` counts cell edges from the mask's lower-left corner.
pub type Vertex = (usize, usize);

/// One polygon: the exterior ring, then its holes; rings are closed (first vertex repeated).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outline {
    pub exterior: Vec<Vertex>,
    pub holes: Vec<Vec<Vertex>>,
}

const EAST: u8 = 0;
const NORTH: u8 = 1;
const WEST: u8 = 2;
const SOUTH: u8 = 3;

/// The polygons covering exactly the cells `(col, row)` of a `width` x `height` box for which
/// `mask(col, row)` holds.
pub fn outlines(width: usize, height: usize, mask: impl Fn(usize, usize) -> bool) -> Vec<Outline> {
    let vw = width + 1;
    // Outgoing boundary edges per lattice vertex, one bit per direction.
    let mut edges = vec![0u8; vw * (height + 1)];
    let mut component = vec![u32::MAX; width * height];
    let mut components = 0u32;
    let mut stack = Vec::new();
    for row in 0..height {
        for col in 0..width {
            if !mask(col, row) {
                continue;
            }
            if row == 0 || !mask(col, row - 1) {
                edges[row * vw + col] |= 1 << EAST;
            }
            if col + 1 == width || !mask(col + 1, row) {
                edges[row * vw + col + 1] |= 1 << NORTH;
            }
            if row + 1 == height || !mask(col, row + 1) {
                edges[(row + 1) * vw + col + 1] |= 1 << WEST;
            }
            if col == 0 || !mask(col - 1, row) {
                edges[(row + 1) * vw + col] |= 1 << SOUTH;
            }
            if component[row * width + col] == u32::MAX {
                label(&mut component, &mut stack, (col, row), components, width, height, &mask);
                components += 1;
            }
        }
    }

    let mut exteriors: Vec<(u32, Vec<Vertex>)> = Vec::new();
    let mut holes: Vec<(u32, Vec<Vertex>)> = Vec::new();
    for start in 0..edges.len() {
        while edges[start] != 0 {
            let first = [EAST, NORTH, WEST, SOUTH].into_iter().find(|d| edges[start] & (1 << d) != 0).unwrap_or(EAST);
            let v0 = (start % vw, start / vw);
            let owner = component[left_cell(v0, first, width)];
            let ring = trace(&mut edges, vw, v0, first);
            if signed_area2(&ring) > 0 {
                exteriors.push((owner, ring));
            } else {
                holes.push((owner, ring));
            }
        }
    }
    let mut out: Vec<Outline> = Vec::with_capacity(exteriors.len());
    let mut by_component = vec![usize::MAX; components as usize];
    for (owner, ring) in exteriors {
        if by_component[owner as usize] == usize::MAX {
            by_component[owner as usize] = out.len();
        }
        out.push(Outline { exterior: ring, holes: Vec::new() });
    }
    for (owner, ring) in holes {
        let i = by_component[owner as usize];
        out[i].holes.push(ring);
    }
    out
}

/// The cell on the left of the edge leaving `v` towards `dir`.
fn left_cell(v: Vertex, dir: u8, width: usize) -> usize {
    let (col, row) = match dir {
        EAST => (v.0, v.1),
        NORTH => (v.0 - 1, v.1),
        WEST => (v.0 - 1, v.1 - 1),
        _ => (v.0, v.1 - 1),
    };
    row * width + col
}

fn step(v: Vertex, dir: u8) -> Vertex {
    match dir {
        EAST => (v.0 + 1, v.1),
        NORTH => (v.0, v.1 + 1),
        WEST => (v.0 - 1, v.1),
        _ => (v.0, v.1 - 1),
    }
}

/// Follows edges from `v0` leaving towards `first` until back, consuming them; keeps only the
/// corners.
fn trace(edges: &mut [u8], vw: usize, v0: Vertex, first: u8) -> Vec<Vertex> {
    let mut ring = vec![v0];
    let (mut v, mut dir) = (v0, first);
    loop {
        edges[v.1 * vw + v.0] &= !(1 << dir);
        v = step(v, dir);
        if v == v0 {
            break;
        }
        let out = edges[v.1 * vw + v.0];
        // Left, straight, right; a boundary never doubles back.
        let next = [(dir + 1) % 4, dir, (dir + 3) % 4].into_iter().find(|d| out & (1 << d) != 0);
        let Some(next) = next else { break };
        if next != dir {
            ring.push(v);
        }
        dir = next;
    }
    // The start may sit in the middle of a straight run: drop it then.
    if ring.len() > 2 {
        let (a, b, c) = (ring[ring.len() - 1], ring[0], ring[1]);
        if (a.0 == b.0 && b.0 == c.0) || (a.1 == b.1 && b.1 == c.1) {
            ring.remove(0);
        }
    }
    ring.push(ring[0]);
    ring
}

/// Twice the signed area of a closed ring: positive when counter-clockwise.
// Lattice coordinates are bounded by the grid's size (`layout::MAX_CELLS`).
#[allow(clippy::cast_possible_wrap)]
fn signed_area2(ring: &[Vertex]) -> i64 {
    ring.windows(2)
        .map(|w| {
            let (a, b) = (w[0], w[1]);
            a.0 as i64 * b.1 as i64 - b.0 as i64 * a.1 as i64
        })
        .sum()
}

/// Marks the 4-connected group of mask cells around `seed` with `id`.
fn label(
    component: &mut [u32],
    stack: &mut Vec<(usize, usize)>,
    seed: (usize, usize),
    id: u32,
    width: usize,
    height: usize,
    mask: &impl Fn(usize, usize) -> bool,
) {
    component[seed.1 * width + seed.0] = id;
    stack.push(seed);
    while let Some((col, row)) = stack.pop() {
        let neighbours = [
            (col.checked_sub(1), Some(row)),
            ((col + 1 < width).then_some(col + 1), Some(row)),
            (Some(col), row.checked_sub(1)),
            (Some(col), (row + 1 < height).then_some(row + 1)),
        ];
        for (c, r) in neighbours {
            if let (Some(c), Some(r)) = (c, r) {
                if component[r * width + c] == u32::MAX && mask(c, r) {
                    component[r * width + c] = id;
                    stack.push((c, r));
                }
            }
        }
    }
}

/// The area of an outline in cells.
#[cfg(test)]
fn cells_in(outline: &Outline) -> i64 {
    (signed_area2(&outline.exterior) + outline.holes.iter().map(|h| signed_area2(h)).sum::<i64>()) / 2
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from_art(art: &[&str]) -> (usize, usize, impl Fn(usize, usize) -> bool) {
        // Rows of text top to bottom; row 0 of the mask is the last line.
        let rows: Vec<Vec<bool>> = art.iter().rev().map(|l| l.chars().map(|c| c == '#').collect()).collect();
        let (w, h) = (rows[0].len(), rows.len());
        (w, h, move |c: usize, r: usize| rows[r][c])
    }

    #[test]
    fn one_square_is_one_ring_of_four_corners() {
        let (w, h, m) = from_art(&["##", "##"]);
        let o = outlines(w, h, m);
        assert_eq!(o, vec![Outline { exterior: vec![(0, 0), (2, 0), (2, 2), (0, 2), (0, 0)], holes: vec![] }]);
    }

    #[test]
    fn an_annulus_has_one_hole() {
        let (w, h, m) = from_art(&["###", "#.#", "###"]);
        let o = outlines(w, h, m);
        assert_eq!(o.len(), 1);
        assert_eq!(o[0].holes.len(), 1);
        assert_eq!(cells_in(&o[0]), 8);
        assert!(signed_area2(&o[0].holes[0]) < 0);
    }

    #[test]
    fn diagonal_neighbours_are_separate_polygons() {
        let (w, h, m) = from_art(&["#.", ".#"]);
        let o = outlines(w, h, m);
        assert_eq!(o.len(), 2);
        assert!(o.iter().all(|p| cells_in(p) == 1 && p.holes.is_empty()));
    }

    #[test]
    #[allow(clippy::cast_possible_wrap)]
    fn total_area_matches_the_mask_on_irregular_shapes() {
        let art = ["#.##.#####", "##..#...##", "#.###.#.##", "###...####", "..#.#.#..#", "#####.####"];
        let (w, h, m) = from_art(&art);
        let expected: i64 = art.iter().map(|l| l.matches('#').count() as i64).sum();
        let o = outlines(w, h, m);
        assert_eq!(o.iter().map(cells_in).sum::<i64>(), expected);
    }
}

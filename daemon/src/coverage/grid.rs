//! The coverage grid: square cells of a local metric projection, and polygons burnt into it.

/// A point in projected metres.
pub type Point = (f64, f64);

/// A polygon: its exterior ring first, then its holes (even-odd rule).
pub type Polygon = Vec<Vec<Point>>;

/// The grid's geometry. Cell `(col, row)` spans `[x0 + col * cell, x0 + (col + 1) * cell)`
/// east and likewise north; its index is `row * width + col`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Grid {
    pub x0: f64,
    pub y0: f64,
    pub cell_m: f64,
    pub width: usize,
    pub height: usize,
}

impl Grid {
    /// The smallest grid of `cell_m` cells holding the box `min..max`, with one cell to spare.
    pub fn covering(min: Point, max: Point, cell_m: f64) -> Self {
        let x0 = (min.0 / cell_m).floor() * cell_m - cell_m;
        let y0 = (min.1 / cell_m).floor() * cell_m - cell_m;
        // Sizes of a configured area: finite, positive, bounded by the caller.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let width = ((max.0 - x0) / cell_m).ceil() as usize + 1;
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let height = ((max.1 - y0) / cell_m).ceil() as usize + 1;
        Self { x0, y0, cell_m, width, height }
    }

    pub fn cells(&self) -> usize {
        self.width * self.height
    }

    /// The area of one cell, square metres.
    pub fn cell_area_m2(&self) -> f64 {
        self.cell_m * self.cell_m
    }

    /// The cell holding a projected point, if inside the grid.
    pub fn cell_at(&self, p: Point) -> Option<usize> {
        let col = ((p.0 - self.x0) / self.cell_m).floor();
        let row = ((p.1 - self.y0) / self.cell_m).floor();
        // Checked against the grid's size before the cast.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_precision_loss)]
        ((0.0..self.width as f64).contains(&col) && (0.0..self.height as f64).contains(&row))
            .then(|| row as usize * self.width + col as usize)
    }

    /// The centre of column `col` (east) and of row `row` (north).
    #[allow(clippy::cast_precision_loss)]
    pub fn centre_x(&self, col: usize) -> f64 {
        self.x0 + (col as f64 + 0.5) * self.cell_m
    }

    #[allow(clippy::cast_precision_loss)]
    pub fn centre_y(&self, row: usize) -> f64 {
        self.y0 + (row as f64 + 0.5) * self.cell_m
    }

    /// The columns `first..end` whose centres lie within `[x_min, x_max]`, clamped to the grid.
    pub fn columns_between(&self, x_min: f64, x_max: f64) -> std::ops::Range<usize> {
        span((x_min - self.x0) / self.cell_m - 0.5, (x_max - self.x0) / self.cell_m - 0.5, self.width)
    }

    /// The rows whose centres lie within `[y_min, y_max]`, clamped to the grid.
    pub fn rows_between(&self, y_min: f64, y_max: f64) -> std::ops::Range<usize> {
        span((y_min - self.y0) / self.cell_m - 0.5, (y_max - self.y0) / self.cell_m - 0.5, self.height)
    }

    /// Calls `fill(index)` for every cell whose centre is inside `polygon` (even-odd rule).
    pub fn burn(&self, polygon: &[Vec<Point>], mut fill: impl FnMut(usize)) {
        let (mut y_min, mut y_max) = (f64::INFINITY, f64::NEG_INFINITY);
        for p in polygon.iter().flatten() {
            y_min = y_min.min(p.1);
            y_max = y_max.max(p.1);
        }
        let mut crossings = Vec::new();
        for row in self.rows_between(y_min, y_max) {
            let y = self.centre_y(row);
            crossings.clear();
            for ring in polygon {
                for (a, b) in ring.iter().zip(ring.iter().cycle().skip(1)) {
                    // Half-open in y so that a vertex on the scanline is counted once.
                    if (a.1 <= y) != (b.1 <= y) {
                        crossings.push(a.0 + (y - a.1) / (b.1 - a.1) * (b.0 - a.0));
                    }
                }
            }
            crossings.sort_by(f64::total_cmp);
            for pair in crossings.chunks_exact(2) {
                for col in self.columns_between(pair[0], pair[1]) {
                    fill(row * self.width + col);
                }
            }
        }
    }
}

/// The indices `i < n` with `lo <= i <= hi`.
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_precision_loss)]
fn span(lo: f64, hi: f64, n: usize) -> std::ops::Range<usize> {
    let first = lo.ceil().max(0.0);
    let last = hi.floor().min(n as f64 - 1.0);
    if first > last { 0..0 } else { first as usize..last as usize + 1 }
}

/// The convex hull of `points` (Andrew's monotone chain), counter-clockwise.
pub fn convex_hull(mut points: Vec<Point>) -> Vec<Point> {
    points.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)));
    points.dedup();
    if points.len() < 3 {
        return points;
    }
    let cross = |o: Point, a: Point, b: Point| (a.0 - o.0) * (b.1 - o.1) - (a.1 - o.1) * (b.0 - o.0);
    let mut hull: Vec<Point> = Vec::with_capacity(points.len() + 1);
    for pass in 0..2 {
        let start = hull.len();
        let ordered: Box<dyn Iterator<Item = &Point>> =
            if pass == 0 { Box::new(points.iter()) } else { Box::new(points.iter().rev()) };
        for &p in ordered {
            while hull.len() >= start + 2 && cross(hull[hull.len() - 2], hull[hull.len() - 1], p) <= 0.0 {
                hull.pop();
            }
            hull.push(p);
        }
        hull.pop();
    }
    hull
}

/// A circle as a polygon of `sides` vertices on it.
pub fn circle(centre: Point, radius: f64, sides: u32) -> Vec<Point> {
    (0..sides)
        .map(|i| {
            let a = std::f64::consts::TAU * f64::from(i) / f64::from(sides);
            (centre.0 + radius * a.cos(), centre.1 + radius * a.sin())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burns_a_square_with_a_hole() {
        let g = Grid::covering((0.0, 0.0), (1000.0, 1000.0), 100.0);
        let outer = vec![(0.0, 0.0), (1000.0, 0.0), (1000.0, 1000.0), (0.0, 1000.0)];
        let hole = vec![(400.0, 400.0), (600.0, 400.0), (600.0, 600.0), (400.0, 600.0)];
        let mut n = 0;
        g.burn(&[outer, hole], |_| n += 1);
        assert_eq!(n, 100 - 4);
    }

    #[test]
    fn hull_of_a_square_and_its_centre() {
        let hull = convex_hull(vec![(0.0, 0.0), (1.0, 0.0), (0.5, 0.5), (1.0, 1.0), (0.0, 1.0)]);
        assert_eq!(hull, vec![(0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0)]);
    }
}

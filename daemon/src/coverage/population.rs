//! Where people live: an ESRI ASCII grid (`.asc`, as WorldPop publishes) or a CSV of
//! `latitude,longitude,population`, spread over the coverage grid.

use std::io::BufRead;
use std::path::Path;

use super::CoverageError;
use super::grid::Grid;
use super::projection::LocalProjection;

/// Metres per degree of latitude on the mean sphere.
const METRES_PER_DEGREE: f64 = 111_195.0;

/// Reads `path` (by its extension: `.csv` or an ASCII grid) into people per cell, in
/// thousandths of a person.
pub fn load(path: &Path, grid: &Grid, projection: &LocalProjection) -> Result<Vec<u32>, CoverageError> {
    let file = path.display().to_string();
    let reader = std::io::BufReader::new(std::fs::File::open(path).map_err(|e| CoverageError::file(&file, e))?);
    let csv = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("csv"));
    let people = if csv { read_csv(reader, grid, projection) } else { read_asc(reader, grid, projection) };
    people.map(to_milli).map_err(|(line, problem)| CoverageError::Population { file, line, problem })
}

/// A problem at a line (1-based) of the file.
type LineError = (usize, String);

/// People per cell in thousandths of a person.
pub fn to_milli(people: Vec<f64>) -> Vec<u32> {
    // Non-negative, and a cell of 4 million people is not a place.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    people.into_iter().map(|p| (p * 1000.0).round().min(f64::from(u32::MAX)) as u32).collect()
}

/// Reads an ESRI ASCII grid in WGS84 degrees; each source cell's people are spread evenly
/// over sub-cells at most half a coverage cell wide.
pub fn read_asc(reader: impl BufRead, grid: &Grid, projection: &LocalProjection) -> Result<Vec<f64>, LineError> {
    let mut header = AscHeader::default();
    let mut people = vec![0.0; grid.cells()];
    let mut index = 0usize;
    let mut line_no = 0;
    let mut in_header = true;
    for line in reader.lines() {
        line_no += 1;
        let line = line.map_err(|e| (line_no, e.to_string()))?;
        let mut words = line.split_whitespace().peekable();
        if in_header {
            let Some(&first) = words.peek() else { continue };
            if first.parse::<f64>().is_err() {
                let key = first.to_ascii_lowercase();
                let value: f64 = words
                    .nth(1)
                    .and_then(|v| v.parse().ok())
                    .ok_or_else(|| (line_no, format!("header `{first}` needs a number")))?;
                header.set(&key, value).map_err(|p| (line_no, p))?;
                continue;
            }
            in_header = false;
            header.check().map_err(|p| (line_no, p))?;
        }
        for word in words {
            let v: f64 = word.parse().map_err(|_| (line_no, format!("`{word}` is not a number")))?;
            if index >= header.cells() {
                return Err((line_no, format!("more than the {} values the header announces", header.cells())));
            }
            if header.nodata != Some(v) && v > 0.0 {
                header.spread(index, v, grid, projection, &mut people);
            } else if v < 0.0 && header.nodata != Some(v) {
                return Err((line_no, format!("negative population {v}")));
            }
            index += 1;
        }
    }
    if in_header || index != header.cells() {
        return Err((line_no, format!("{index} values where the header announces {}", header.cells())));
    }
    Ok(people)
}

#[derive(Debug, Default)]
struct AscHeader {
    ncols: usize,
    nrows: usize,
    /// South-west corner of the grid, degrees.
    west: Option<f64>,
    south: Option<f64>,
    centre_x: bool,
    centre_y: bool,
    cellsize: f64,
    nodata: Option<f64>,
}

impl AscHeader {
    fn set(&mut self, key: &str, v: f64) -> Result<(), String> {
        // Counts are whole and positive when valid; checked in `check`.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let count = v.max(0.0) as usize;
        match key {
            "ncols" => self.ncols = count,
            "nrows" => self.nrows = count,
            "xllcorner" => self.west = Some(v),
            "xllcenter" => (self.west, self.centre_x) = (Some(v), true),
            "yllcorner" => self.south = Some(v),
            "yllcenter" => (self.south, self.centre_y) = (Some(v), true),
            "cellsize" => self.cellsize = v,
            "nodata_value" => self.nodata = Some(v),
            _ => return Err(format!("unknown header `{key}`")),
        }
        Ok(())
    }

    fn check(&mut self) -> Result<(), String> {
        if self.ncols == 0 || self.nrows == 0 {
            return Err("the header needs ncols and nrows".into());
        }
        if !(self.cellsize > 0.0 && self.cellsize < 10.0) {
            return Err("the header needs a cellsize in degrees".into());
        }
        let (Some(w), Some(s)) = (self.west, self.south) else {
            return Err("the header needs xllcorner and yllcorner (or xllcenter and yllcenter)".into());
        };
        let half = self.cellsize / 2.0;
        self.west = Some(if self.centre_x { w - half } else { w });
        self.south = Some(if self.centre_y { s - half } else { s });
        Ok(())
    }

    fn cells(&self) -> usize {
        self.ncols * self.nrows
    }

    fn spread(&self, index: usize, v: f64, grid: &Grid, projection: &LocalProjection, people: &mut [f64]) {
        let (row, col) = (index / self.ncols, index % self.ncols);
        let (west, south) = (self.west.unwrap_or_default(), self.south.unwrap_or_default());
        // Rows run north to south.
        #[allow(clippy::cast_precision_loss)]
        let (lon0, lat0) = (west + col as f64 * self.cellsize, south + (self.nrows - 1 - row) as f64 * self.cellsize);
        let size_m = self.cellsize * METRES_PER_DEGREE;
        // A source cell wholly outside the grid cannot add anything.
        let (cx, cy) = projection.project(lat0 + self.cellsize / 2.0, lon0 + self.cellsize / 2.0);
        #[allow(clippy::cast_precision_loss)]
        let (gw, gh) = (grid.width as f64 * grid.cell_m, grid.height as f64 * grid.cell_m);
        if cx + size_m < grid.x0 || cy + size_m < grid.y0 || cx - size_m > grid.x0 + gw || cy - size_m > grid.y0 + gh {
            return;
        }
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let n = (size_m / (grid.cell_m / 2.0)).ceil().clamp(1.0, 64.0) as u32;
        let share = v / f64::from(n * n);
        let step = self.cellsize / f64::from(n);
        for a in 0..n {
            for b in 0..n {
                let lat = lat0 + (f64::from(a) + 0.5) * step;
                let lon = lon0 + (f64::from(b) + 0.5) * step;
                if let Some(cell) = grid.cell_at(projection.project(lat, lon)) {
                    people[cell] += share;
                }
            }
        }
    }
}

/// Reads `latitude,longitude,population` rows (with that header); each row's people go to the
/// cell holding its point.
pub fn read_csv(reader: impl BufRead, grid: &Grid, projection: &LocalProjection) -> Result<Vec<f64>, LineError> {
    #[derive(serde::Deserialize)]
    struct Row {
        latitude: f64,
        longitude: f64,
        population: f64,
    }
    let mut people = vec![0.0; grid.cells()];
    let mut rows = csv::ReaderBuilder::new().trim(csv::Trim::All).from_reader(reader);
    for (i, row) in rows.deserialize::<Row>().enumerate() {
        let line = i + 2;
        let row = row.map_err(|e| (line, e.to_string()))?;
        if !(row.population.is_finite() && row.population >= 0.0) {
            return Err((line, format!("population {} is not a number of people", row.population)));
        }
        if !((-90.0..=90.0).contains(&row.latitude) && (-180.0..=180.0).contains(&row.longitude)) {
            return Err((line, "not a latitude and longitude".into()));
        }
        if let Some(cell) = grid.cell_at(projection.project(row.latitude, row.longitude)) {
            people[cell] += row.population;
        }
    }
    Ok(people)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_asc_grid_keeps_its_people_inside_the_area() {
        let p = LocalProjection::centred_on(30.0, 120.0);
        let grid = Grid::covering(p.project(29.9, 119.9), p.project(30.1, 120.1), 100.0);
        let asc = "ncols 2\nnrows 2\nxllcorner 119.99\nyllcorner 29.99\ncellsize 0.01\nNODATA_value -9999\n10 20\n-9999 30.5\n";
        let people = read_asc(asc.as_bytes(), &grid, &p).expect("reads");
        assert!((people.iter().sum::<f64>() - 60.5).abs() < 1e-9);
        // The north-west source cell (10 people) lands north-west of the centre.
        let (x, y) = p.project(30.005, 119.995);
        let cell = grid.cell_at((x, y)).expect("inside");
        assert!(people[cell] > 0.0);
    }

    #[test]
    fn bad_asc_files_say_where() {
        let p = LocalProjection::centred_on(30.0, 120.0);
        let grid = Grid::covering((0.0, 0.0), (1000.0, 1000.0), 100.0);
        let short = "ncols 2\nnrows 2\nxllcorner 120\nyllcorner 30\ncellsize 0.01\n1 2\n3\n";
        assert_eq!(read_asc(short.as_bytes(), &grid, &p).unwrap_err().0, 7);
        let bad = "ncols 2\nnrows 1\nxllcorner 120\nyllcorner 30\ncellsize 0.01\n1 x\n";
        assert_eq!(read_asc(bad.as_bytes(), &grid, &p).unwrap_err(), (6, "`x` is not a number".into()));
    }

    #[test]
    fn csv_points_go_to_their_cells() {
        let p = LocalProjection::centred_on(30.0, 120.0);
        let grid = Grid::covering(p.project(29.99, 119.99), p.project(30.01, 120.01), 100.0);
        let csv = "latitude,longitude,population\n30.0,120.0,12\n30.0,120.0,3\n45,100,99\n";
        let people = read_csv(csv.as_bytes(), &grid, &p).expect("reads");
        assert!((people.iter().sum::<f64>() - 15.0).abs() < 1e-9);
        assert!(read_csv("latitude,longitude,population\n30,120,-1\n".as_bytes(), &grid, &p).is_err());
    }
}

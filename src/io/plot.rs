//! Line plots rasterised by hand to an RGB PNG (no font files): a title, a framed plot
//! area with tick marks, numeric tick labels and light grid lines, one colour per series
//! (Bresenham lines, 2 px thick), and a legend in the top-right corner.
//!
//! Text uses an embedded 5x7 bitmap font covering digits, A-Z, space and `. - + : _ / ( )
//! % = , ?`. Lowercase letters are drawn as capitals; any other character is drawn as `?`.
//! Non-finite points are skipped (the line breaks there); a point with no finite
//! neighbour is drawn as a 3x3 dot; a constant series gets a non-zero y range.

use std::path::Path;

use crate::error::{Error, Result};

/// The colour of series `i` (cycled): blue, orange, green, red, purple, brown, pink,
/// gray, olive, cyan.
pub fn series_color(i: usize) -> [u8; 3] {
    const PALETTE: [[u8; 3]; 10] = [
        [31, 119, 180],
        [255, 127, 14],
        [44, 160, 44],
        [214, 39, 40],
        [148, 103, 189],
        [140, 86, 75],
        [227, 119, 194],
        [127, 127, 127],
        [188, 189, 34],
        [23, 190, 207],
    ];
    PALETTE[i % PALETTE.len()]
}

const WHITE: [u8; 3] = [255, 255, 255];
const BLACK: [u8; 3] = [0, 0, 0];
const GRID: [u8; 3] = [225, 225, 225];
const LEGEND_BORDER: [u8; 3] = [160, 160, 160];

/// 5x7 glyph rows (bit 4 = leftmost pixel) for `c`; `None` if the font lacks it.
fn glyph(c: char) -> Option<[u8; 7]> {
    let g: [u8; 7] = match c.to_ascii_uppercase() {
        '0' => [0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E],
        '1' => [0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E],
        '2' => [0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F],
        '3' => [0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E],
        '4' => [0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02],
        '5' => [0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E],
        '6' => [0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E],
        '7' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08],
        '8' => [0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E],
        '9' => [0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C],
        'A' => [0x0E, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11],
        'B' => [0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E],
        'C' => [0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E],
        'D' => [0x1C, 0x12, 0x11, 0x11, 0x11, 0x12, 0x1C],
        'E' => [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F],
        'F' => [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10],
        'G' => [0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F],
        'H' => [0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11],
        'I' => [0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E],
        'J' => [0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C],
        'K' => [0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11],
        'L' => [0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F],
        'M' => [0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11],
        'N' => [0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11],
        'O' => [0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E],
        'P' => [0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10],
        'Q' => [0x0E, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0D],
        'R' => [0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11],
        'S' => [0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E],
        'T' => [0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04],
        'U' => [0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E],
        'V' => [0x11, 0x11, 0x11, 0x11, 0x11, 0x0A, 0x04],
        'W' => [0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0A],
        'X' => [0x11, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x11],
        'Y' => [0x11, 0x11, 0x0A, 0x04, 0x04, 0x04, 0x04],
        'Z' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1F],
        ' ' => [0; 7],
        '.' => [0x00, 0x00, 0x00, 0x00, 0x00, 0x0C, 0x0C],
        '-' => [0x00, 0x00, 0x00, 0x1F, 0x00, 0x00, 0x00],
        '+' => [0x00, 0x04, 0x04, 0x1F, 0x04, 0x04, 0x00],
        ':' => [0x00, 0x0C, 0x0C, 0x00, 0x0C, 0x0C, 0x00],
        '_' => [0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x1F],
        '/' => [0x01, 0x01, 0x02, 0x04, 0x08, 0x10, 0x10],
        '(' => [0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02],
        ')' => [0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08],
        '%' => [0x18, 0x19, 0x02, 0x04, 0x08, 0x13, 0x03],
        '=' => [0x00, 0x00, 0x1F, 0x00, 0x1F, 0x00, 0x00],
        ',' => [0x00, 0x00, 0x00, 0x00, 0x0C, 0x04, 0x08],
        '?' => [0x0E, 0x11, 0x01, 0x02, 0x04, 0x00, 0x04],
        _ => return None,
    };
    Some(g)
}

/// An RGB canvas.
struct Canvas {
    w: usize,
    h: usize,
    px: Vec<u8>,
}

impl Canvas {
    fn new(w: usize, h: usize) -> Canvas {
        Canvas {
            w,
            h,
            px: vec![255; w * h * 3],
        }
    }

    fn set(&mut self, x: i64, y: i64, c: [u8; 3]) {
        if x >= 0 && y >= 0 && (x as usize) < self.w && (y as usize) < self.h {
            let i = (y as usize * self.w + x as usize) * 3;
            self.px[i..i + 3].copy_from_slice(&c);
        }
    }

    fn fill_rect(&mut self, x0: i64, y0: i64, x1: i64, y1: i64, c: [u8; 3]) {
        for y in y0..=y1 {
            for x in x0..=x1 {
                self.set(x, y, c);
            }
        }
    }

    fn hline(&mut self, x0: i64, x1: i64, y: i64, c: [u8; 3]) {
        self.fill_rect(x0.min(x1), y, x0.max(x1), y, c);
    }

    fn vline(&mut self, x: i64, y0: i64, y1: i64, c: [u8; 3]) {
        self.fill_rect(x, y0.min(y1), x, y0.max(y1), c);
    }

    /// Bresenham line, `thick` = 1 or 2 (2 adds the pixel right and below), clipped to `clip`
    /// (x0, y0, x1, y1 inclusive).
    fn line(&mut self, a: (i64, i64), b: (i64, i64), c: [u8; 3], clip: (i64, i64, i64, i64)) {
        let (mut x, mut y) = a;
        let dx = (b.0 - a.0).abs();
        let dy = -(b.1 - a.1).abs();
        let sx = if a.0 < b.0 { 1 } else { -1 };
        let sy = if a.1 < b.1 { 1 } else { -1 };
        let mut err = dx + dy;
        let plot = |cv: &mut Canvas, x: i64, y: i64| {
            for (ox, oy) in [(0, 0), (1, 0), (0, 1)] {
                let (px, py) = (x + ox, y + oy);
                if px >= clip.0 && px <= clip.2 && py >= clip.1 && py <= clip.3 {
                    cv.set(px, py, c);
                }
            }
        };
        loop {
            plot(self, x, y);
            if x == b.0 && y == b.1 {
                break;
            }
            let e2 = 2 * err;
            if e2 >= dy {
                err += dy;
                x += sx;
            }
            if e2 <= dx {
                err += dx;
                y += sy;
            }
        }
    }

    /// Draw `text` with its top-left corner at (x, y), each font pixel `scale`x`scale`.
    fn text(&mut self, x: i64, y: i64, text: &str, scale: i64, c: [u8; 3]) {
        let mut cx = x;
        for ch in text.chars() {
            let g = glyph(ch).or_else(|| glyph('?')).unwrap_or([0; 7]);
            for (row, bits) in g.iter().enumerate() {
                for col in 0..5 {
                    if bits & (0x10 >> col) != 0 {
                        let px = cx + col * scale;
                        let py = y + row as i64 * scale;
                        self.fill_rect(px, py, px + scale - 1, py + scale - 1, c);
                    }
                }
            }
            cx += 6 * scale;
        }
    }
}

/// Width in pixels of `text` at `scale` (6 px advance per character, no trailing gap).
fn text_width(text: &str, scale: i64) -> i64 {
    let n = text.chars().count() as i64;
    if n == 0 {
        0
    } else {
        (6 * n - 1) * scale
    }
}

/// "Nice" tick positions (steps of 1, 2 or 5 x 10^k) covering [lo, hi], about `target` of them.
pub fn nice_ticks(lo: f64, hi: f64, target: usize) -> (Vec<f64>, f64) {
    let span = hi - lo;
    if !span.is_finite() || span <= 0.0 {
        return (vec![lo], 1.0);
    }
    let raw = span / target.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let norm = raw / mag;
    let step = if norm < 1.5 {
        1.0
    } else if norm < 3.0 {
        2.0
    } else if norm < 7.0 {
        5.0
    } else {
        10.0
    } * mag;
    let first = (lo / step).ceil();
    let last = (hi / step).floor();
    let mut ticks = Vec::new();
    let mut k = first;
    while k <= last && ticks.len() < 100 {
        ticks.push(k * step);
        k += 1.0;
    }
    (ticks, step)
}

/// Format a tick value for a tick spacing of `step`: fixed point with just enough
/// decimals, or scientific (`1.5E-5`) for very large or small magnitudes.
pub fn format_tick(v: f64, step: f64) -> String {
    let v = if v.abs() < step * 1e-9 { 0.0 } else { v };
    let big = v.abs().max(step);
    if big >= 1e6 || step < 1e-4 {
        let s = format!("{v:.2e}").to_uppercase();
        // `1.50E-5` -> `1.5E-5`
        match s.split_once('E') {
            Some((m, e)) => {
                let m = if m.contains('.') {
                    m.trim_end_matches('0').trim_end_matches('.')
                } else {
                    m
                };
                format!("{m}E{e}")
            }
            None => s,
        }
    } else {
        let decimals = (-step.log10().floor()).max(0.0) as usize;
        format!("{v:.decimals$}")
    }
}

/// Data range of the finite points, widened so it is never empty.
fn range(values: impl Iterator<Item = f64>, pad_frac: f64) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if lo > hi {
        return (0.0, 1.0);
    }
    if !(hi - lo).is_finite() {
        // Spans beyond f64: clamp to something drawable.
        return (lo.max(-f64::MAX / 4.0), hi.min(f64::MAX / 4.0));
    }
    if hi - lo <= f64::EPSILON * lo.abs().max(hi.abs()).max(1e-300) {
        let d = if lo == 0.0 { 1.0 } else { lo.abs() * 0.1 };
        return (lo - d, hi + d);
    }
    let pad = (hi - lo) * pad_frac;
    (lo - pad, hi + pad)
}

/// Render the plot (see the module docs) to `width * height * 3` RGB bytes.
pub fn render_line_plot(
    title: &str,
    series: &[(&str, &[(f64, f64)])],
    width: usize,
    height: usize,
) -> Result<Vec<u8>> {
    if width < 120 || height < 90 || width > 16384 || height > 16384 {
        return Err(Error::invalid(format!(
            "plot size {width}x{height} is out of range (120x90 to 16384x16384)"
        )));
    }
    let mut cv = Canvas::new(width, height);
    let s: i64 = if width >= 800 && height >= 500 { 2 } else { 1 };
    let (w, h) = (width as i64, height as i64);
    let gh = 7 * s; // glyph height

    let (xlo, xhi) = range(series.iter().flat_map(|(_, p)| p.iter().map(|q| q.0)), 0.0);
    let (ylo, yhi) = range(series.iter().flat_map(|(_, p)| p.iter().map(|q| q.1)), 0.05);
    let (xticks, xstep) = nice_ticks(xlo, xhi, 6);
    let (yticks, ystep) = nice_ticks(ylo, yhi, 5);
    let ylabels: Vec<String> = yticks.iter().map(|v| format_tick(*v, ystep)).collect();
    let ylabel_w = ylabels.iter().map(|l| text_width(l, s)).max().unwrap_or(0);

    // Plot area (inclusive pixel bounds).
    let left = ylabel_w + 6 * s + 8;
    let top = if title.is_empty() { 8 } else { gh + 8 * s + 4 };
    let right = w - 1 - 6 * s - 10;
    let bottom = h - 1 - (gh + 6 * s + 8);
    if right - left < 20 || bottom - top < 20 {
        return Err(Error::invalid(format!(
            "plot size {width}x{height} leaves no room for the plot area"
        )));
    }
    let map_x = |x: f64| left as f64 + (x - xlo) / (xhi - xlo) * (right - left) as f64;
    let map_y = |y: f64| bottom as f64 - (y - ylo) / (yhi - ylo) * (bottom - top) as f64;

    // Title, centred.
    if !title.is_empty() {
        let tw = text_width(title, s);
        cv.text(((w - tw) / 2).max(2), 4 * s, title, s, BLACK);
    }
    // Grid lines, ticks and labels.
    for (v, label) in yticks.iter().zip(&ylabels) {
        let y = map_y(*v).round() as i64;
        cv.hline(left + 1, right - 1, y, GRID);
        cv.hline(left - 5, left - 1, y, BLACK);
        let lw = text_width(label, s);
        cv.text(left - 8 - lw, y - gh / 2, label, s, BLACK);
    }
    for v in &xticks {
        let x = map_x(*v).round() as i64;
        cv.vline(x, top + 1, bottom - 1, GRID);
        cv.vline(x, bottom + 1, bottom + 5, BLACK);
        let label = format_tick(*v, xstep);
        let lw = text_width(&label, s);
        let lx = (x - lw / 2).clamp(0, w - lw - 1);
        cv.text(lx, bottom + 8, &label, s, BLACK);
    }
    // Frame.
    cv.hline(left, right, top, BLACK);
    cv.hline(left, right, bottom, BLACK);
    cv.vline(left, top, bottom, BLACK);
    cv.vline(right, top, bottom, BLACK);

    // Series.
    let clip = (left + 1, top + 1, right - 1, bottom - 1);
    for (i, (_, pts)) in series.iter().enumerate() {
        let c = series_color(i);
        let mapped: Vec<Option<(i64, i64)>> = pts
            .iter()
            .map(|&(x, y)| {
                if x.is_finite() && y.is_finite() {
                    let (px, py) = (map_x(x), map_y(y));
                    if px.is_finite() && py.is_finite() {
                        return Some((px.round() as i64, py.round() as i64));
                    }
                }
                None
            })
            .collect();
        for k in 0..mapped.len() {
            let Some(p) = mapped[k] else { continue };
            let prev = k > 0 && mapped[k - 1].is_some();
            let next = mapped.get(k + 1).is_some_and(|q| q.is_some());
            if let Some(Some(q)) = mapped.get(k + 1) {
                cv.line(p, *q, c, clip);
            }
            if !prev && !next {
                for oy in -1..=1 {
                    for ox in -1..=1 {
                        let (x, y) = (p.0 + ox, p.1 + oy);
                        if x >= clip.0 && x <= clip.2 && y >= clip.1 && y <= clip.3 {
                            cv.set(x, y, c);
                        }
                    }
                }
            }
        }
    }

    // Legend (top-right inside the plot area).
    let named: Vec<(usize, &str)> = series
        .iter()
        .enumerate()
        .filter(|(_, (l, _))| !l.is_empty())
        .map(|(i, (l, _))| (i, *l))
        .collect();
    if !named.is_empty() {
        let swatch = 12 * s;
        let row_h = gh + 4 * s;
        let tw = named
            .iter()
            .map(|(_, l)| text_width(l, s))
            .max()
            .unwrap_or(0);
        let bw = swatch + tw + 6 * s + 8;
        let bh = row_h * named.len() as i64 + 4 * s;
        let bx1 = right - 6;
        let bx0 = (bx1 - bw).max(left + 2);
        let by0 = top + 6;
        let by1 = (by0 + bh).min(bottom - 2);
        cv.fill_rect(bx0, by0, bx1, by1, WHITE);
        cv.hline(bx0, bx1, by0, LEGEND_BORDER);
        cv.hline(bx0, bx1, by1, LEGEND_BORDER);
        cv.vline(bx0, by0, by1, LEGEND_BORDER);
        cv.vline(bx1, by0, by1, LEGEND_BORDER);
        for (row, (i, label)) in named.iter().enumerate() {
            let y = by0 + 3 * s + row as i64 * row_h;
            if y + gh > by1 {
                break;
            }
            let c = series_color(*i);
            let mid = y + gh / 2;
            cv.fill_rect(bx0 + 4, mid - s, bx0 + 4 + swatch, mid, c);
            cv.text(bx0 + 4 + swatch + 4 * s, y, label, s, BLACK);
        }
    }
    Ok(cv.px)
}

/// Render a line plot of `series` (label, points) with `title` to an RGB PNG of
/// `width`x`height` pixels at `path` (atomically). Sizes from 120x90 to 16384x16384;
/// text is drawn at 2x scale from 800x500 up.
pub fn save_line_plot(
    path: impl AsRef<Path>,
    title: &str,
    series: &[(&str, &[(f64, f64)])],
    width: usize,
    height: usize,
) -> Result<()> {
    let path = path.as_ref();
    let px = render_line_plot(title, series, width, height)
        .map_err(|e| Error::invalid(format!("{}: {e}", path.display())))?;
    super::image::save_png_rgb(path, width, height, &px)
}

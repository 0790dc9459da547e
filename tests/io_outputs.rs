//! Output files for `duel train` (src/io/{image,plot,metrics,progress}.rs): sample-grid
//! PNGs (exact bytes), the loss plot (decodes, size, series colours where the data map,
//! not blank, degenerate inputs), the JSON Lines metrics log (round trip, corrupt line,
//! resume), and progress-line formatting.

use std::path::PathBuf;

use duel::io::image::{grid_size, save_grid, save_png_gray, save_png_rgb, to_u8};
use duel::io::metrics::{read_metrics, series, MetricsLog};
use duel::io::plot::{format_tick, nice_ticks, render_line_plot, save_line_plot, series_color};
use duel::io::progress::{eta_secs, format_eta, format_line};
use duel::{Device, Tensor};

fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("duel_io_{tag}_{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Decode a PNG: (width, height, color type, bytes).
fn decode(path: &std::path::Path) -> (usize, usize, png::ColorType, Vec<u8>) {
    let dec = png::Decoder::new(std::fs::File::open(path).unwrap());
    let mut reader = dec.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!(info.bit_depth, png::BitDepth::Eight);
    buf.truncate(info.buffer_size());
    (
        info.width as usize,
        info.height as usize,
        info.color_type,
        buf,
    )
}

fn no_temp_files(dir: &std::path::Path) {
    for e in std::fs::read_dir(dir).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        assert!(!name.contains(".tmp."), "temp file left behind: {name}");
    }
}

#[test]
fn io_pixel_mapping() {
    assert_eq!(to_u8(-1.0), 0);
    assert_eq!(to_u8(1.0), 255);
    assert_eq!(to_u8(0.0), 128);
    assert_eq!(to_u8(-7.0), 0);
    assert_eq!(to_u8(3.0), 255);
    assert_eq!(to_u8(f64::NAN), 0);
    assert_eq!(to_u8(f64::INFINITY), 255);
    assert_eq!(to_u8(0.5), 191); // 0.75 * 255 = 191.25
}

#[test]
fn io_grid_gray_exact_pixels() {
    let dir = tmpdir("grid_gray");
    // 4 images 2x2; image k has pixels [a, b; c, d] with distinct values.
    let vals: Vec<f32> = vec![
        -1.0, 1.0, 0.0, -1.0, // img 0
        1.0, 1.0, 1.0, 1.0, // img 1
        -1.0, -1.0, -1.0, -1.0, // img 2
        0.0, -5.0, 5.0, 0.5, // img 3 (clamped)
    ];
    let t = Tensor::from_vec(vals, [4, 1, 2, 2], &Device::Cpu).unwrap();
    let p = dir.join("grid.png");
    save_grid(&p, &t, 2, 1).unwrap();
    let (w, h, ct, px) = decode(&p);
    assert_eq!((w, h), (7, 7));
    assert_eq!((w, h), grid_size(4, 2, 2, 2, 1));
    assert_eq!(ct, png::ColorType::Grayscale);
    #[rustfmt::skip]
    let expected: Vec<u8> = vec![
        255, 255, 255, 255, 255, 255, 255,
        255,   0, 255, 255, 255, 255, 255,
        255, 128,   0, 255, 255, 255, 255,
        255, 255, 255, 255, 255, 255, 255,
        255,   0,   0, 255, 128,   0, 255,
        255,   0,   0, 255, 255, 191, 255,
        255, 255, 255, 255, 255, 255, 255,
    ];
    assert_eq!(px, expected);
    no_temp_files(&dir);
}

#[test]
fn io_grid_rgb_partial_row_and_f64() {
    let dir = tmpdir("grid_rgb");
    // 3 images of 1x1 RGB, nrow 2 -> 2 columns, 2 rows; the 4th cell stays padding.
    let vals: Vec<f64> = vec![1.0, -1.0, -1.0, -1.0, 1.0, -1.0, -1.0, -1.0, 1.0];
    let t = Tensor::from_vec(vals, [3, 3, 1, 1], &Device::Cpu).unwrap();
    let p = dir.join("rgb.png");
    save_grid(&p, &t, 2, 2).unwrap();
    let (w, h, ct, px) = decode(&p);
    assert_eq!((w, h), (2 * 3 + 2, 2 * 3 + 2));
    assert_eq!(ct, png::ColorType::Rgb);
    let at = |x: usize, y: usize| &px[(y * w + x) * 3..(y * w + x) * 3 + 3];
    assert_eq!(at(2, 2), &[255, 0, 0]);
    assert_eq!(at(5, 2), &[0, 255, 0]);
    assert_eq!(at(2, 5), &[0, 0, 255]);
    assert_eq!(at(5, 5), &[255, 255, 255]); // empty cell
    assert_eq!(at(0, 0), &[255, 255, 255]);
    // nrow larger than N: one row.
    save_grid(&p, &t, 10, 0).unwrap();
    let (w, h, _, px) = decode(&p);
    assert_eq!((w, h), (3, 1));
    assert_eq!(px, vec![255, 0, 0, 0, 255, 0, 0, 0, 255]);
}

#[test]
fn io_grid_errors_name_the_path() {
    let dir = tmpdir("grid_err");
    let p = dir.join("x.png");
    let t3 = Tensor::zeros([2, 4, 4], duel::DType::F32, &Device::Cpu).unwrap();
    let e = save_grid(&p, &t3, 2, 1).unwrap_err().to_string();
    assert!(e.contains("x.png") && e.contains("[N, C, H, W]"), "{e}");
    let t2c = Tensor::zeros([2, 2, 4, 4], duel::DType::F32, &Device::Cpu).unwrap();
    let e = save_grid(&p, &t2c, 2, 1).unwrap_err().to_string();
    assert!(e.contains("x.png") && e.contains("1 or 3 channels"), "{e}");
    let t = Tensor::zeros([2, 1, 4, 4], duel::DType::F32, &Device::Cpu).unwrap();
    let e = save_grid(&p, &t, 0, 1).unwrap_err().to_string();
    assert!(e.contains("x.png") && e.contains("nrow"), "{e}");
    let bad = dir.join("no_such_dir").join("g.png");
    let e = save_grid(&bad, &t, 2, 1).unwrap_err().to_string();
    assert!(e.contains("no_such_dir/g.png"), "{e}");
    let e = save_png_gray(&p, 2, 2, &[0; 3]).unwrap_err().to_string();
    assert!(e.contains("x.png") && e.contains("needs 4 bytes"), "{e}");
    assert!(!p.exists());
}

#[test]
fn io_png_helpers() {
    let dir = tmpdir("png");
    let p = dir.join("g.png");
    save_png_gray(&p, 3, 2, &[0, 1, 2, 3, 4, 5]).unwrap();
    let (w, h, ct, px) = decode(&p);
    assert_eq!((w, h, ct), (3, 2, png::ColorType::Grayscale));
    assert_eq!(px, vec![0, 1, 2, 3, 4, 5]);
    let p = dir.join("c.png");
    let data: Vec<u8> = (0..12).collect();
    save_png_rgb(&p, 2, 2, &data).unwrap();
    let (w, h, ct, px) = decode(&p);
    assert_eq!((w, h, ct), (2, 2, png::ColorType::Rgb));
    assert_eq!(px, data);
    no_temp_files(&dir);
}

fn count_color(px: &[u8], c: [u8; 3]) -> usize {
    px.chunks(3).filter(|p| *p == c).count()
}

/// Does a pixel of colour `c` lie within `r` pixels of (x, y)?
fn color_near(px: &[u8], w: usize, x: usize, y: usize, r: usize, c: [u8; 3]) -> bool {
    let h = px.len() / 3 / w;
    for yy in y.saturating_sub(r)..(y + r + 1).min(h) {
        for xx in x.saturating_sub(r)..(x + r + 1).min(w) {
            if px[(yy * w + xx) * 3..(yy * w + xx) * 3 + 3] == c {
                return true;
            }
        }
    }
    false
}

#[test]
fn io_plot_png_colours_where_data_map() {
    let dir = tmpdir("plot");
    let d: Vec<(f64, f64)> = (0..=200)
        .map(|i| (i as f64, 1.0 + (i as f64 / 20.0).sin()))
        .collect();
    let g: Vec<(f64, f64)> = (0..=200)
        .map(|i| (i as f64, 2.5 - i as f64 / 100.0))
        .collect();
    let p = dir.join("loss.png");
    save_line_plot(
        &p,
        "losses step 0-200",
        &[("d_loss", &d), ("g_loss", &g)],
        640,
        400,
    )
    .unwrap();
    let (w, h, ct, px) = decode(&p);
    assert_eq!((w, h, ct), (640, 400, png::ColorType::Rgb));
    let (c0, c1) = (series_color(0), series_color(1));
    assert_ne!(c0, c1);
    assert!(count_color(&px, c0) > 300, "series 0 drawn");
    assert!(count_color(&px, c1) > 300, "series 1 drawn");
    assert!(count_color(&px, [0, 0, 0]) > 200, "axes and text drawn");
    assert!(
        count_color(&px, [255, 255, 255]) > 640 * 400 / 2,
        "mostly white"
    );
    // Locate the plot frame: the longest black row and column runs.
    let black = |x: usize, y: usize| px[(y * w + x) * 3..(y * w + x) * 3 + 3] == [0, 0, 0];
    let frame_rows: Vec<usize> = (0..h)
        .filter(|&y| (0..w).filter(|&x| black(x, y)).count() > w / 2)
        .collect();
    let frame_cols: Vec<usize> = (0..w)
        .filter(|&x| (0..h).filter(|&y| black(x, y)).count() > h / 2)
        .collect();
    let (top, bottom) = (*frame_rows.first().unwrap(), *frame_rows.last().unwrap());
    let (left, right) = (*frame_cols.first().unwrap(), *frame_cols.last().unwrap());
    assert!(bottom - top > h / 2 && right - left > w / 2);
    // Check the g series (a straight line) at several x: y range of all data = [0, 2.5]
    // padded by 5% each side; x range [0, 200] exactly.
    let (ylo, yhi) = (0.0 - 0.125, 2.5 + 0.125);
    for &i in &[10usize, 60, 120, 190] {
        let (x, y) = g[i];
        let px_x = left as f64 + x / 200.0 * (right - left) as f64;
        let px_y = bottom as f64 - (y - ylo) / (yhi - ylo) * (bottom - top) as f64;
        assert!(
            color_near(&px, w, px_x.round() as usize, px_y.round() as usize, 2, c1),
            "g_loss colour near data point {i} at ({px_x:.0},{px_y:.0})"
        );
    }
    no_temp_files(&dir);
}

#[test]
fn io_plot_degenerate_inputs() {
    let c0 = series_color(0);
    // NaN / inf points skipped, a single finite point, a constant series, negatives.
    let nan: Vec<(f64, f64)> = vec![
        (0.0, f64::NAN),
        (1.0, f64::INFINITY),
        (2.0, -3.0),
        (f64::NAN, 1.0),
    ];
    let px = render_line_plot("nan", &[("x", &nan)], 320, 240).unwrap();
    assert!(count_color(&px, c0) >= 9, "single point drawn as a dot");
    let constant: Vec<(f64, f64)> = (0..50).map(|i| (i as f64, 0.7)).collect();
    let px = render_line_plot("const", &[("c", &constant)], 320, 240).unwrap();
    assert!(count_color(&px, c0) > 100);
    let neg: Vec<(f64, f64)> = (0..50).map(|i| (-(i as f64), -1e-6 * i as f64)).collect();
    let px = render_line_plot("neg", &[("n", &neg)], 320, 240).unwrap();
    assert!(count_color(&px, c0) > 100);
    let many: Vec<(f64, f64)> = (0..200_000)
        .map(|i| (i as f64, ((i * 7919) % 1000) as f64))
        .collect();
    let px = render_line_plot("many", &[("m", &many)], 320, 240).unwrap();
    assert!(count_color(&px, c0) > 1000);
    let px = render_line_plot("", &[], 320, 240).unwrap();
    assert_eq!(px.len(), 320 * 240 * 3);
    let all_nan: Vec<(f64, f64)> = vec![(f64::NAN, f64::NAN)];
    render_line_plot("all nan", &[("a", &all_nan)], 320, 240).unwrap();
    let e = save_line_plot("/nonexistent_dir_duel/p.png", "t", &[], 10, 10).unwrap_err();
    assert!(e.to_string().contains("p.png"), "{e}");
}

#[test]
fn io_plot_ticks() {
    let (t, s) = nice_ticks(0.0, 1.0, 5);
    assert_eq!(s, 0.2);
    assert_eq!(t.len(), 6);
    assert_eq!(format_tick(0.4, 0.2), "0.4");
    assert_eq!(format_tick(1500.0, 500.0), "1500");
    assert_eq!(format_tick(-2.0, 1.0), "-2");
    assert_eq!(format_tick(1.5e-5, 5e-6), "1.5E-5");
    assert_eq!(format_tick(1e-17, 0.5), "0.0");
}

#[test]
fn io_metrics_round_trip_and_resume() {
    let dir = tmpdir("metrics");
    let p = dir.join("metrics.jsonl");
    let mut log = MetricsLog::create(&p).unwrap();
    for step in 1..=5u64 {
        log.log(&[
            ("step", step as f64),
            ("d_loss", 1.0 / step as f64),
            ("g_loss", 0.1 + step as f64 * 1e-7),
            ("img/s", 512.25),
        ])
        .unwrap();
    }
    log.log(&[("step", 6.0), ("d_loss", f64::NAN)]).unwrap();
    drop(log);
    let text = std::fs::read_to_string(&p).unwrap();
    assert_eq!(text.lines().count(), 6);
    assert!(text.starts_with("{\"step\":1,\"d_loss\":1,"), "{text}");
    let rows = read_metrics(&p).unwrap();
    assert_eq!(rows.len(), 6);
    assert_eq!(rows[2]["step"], 3.0);
    assert_eq!(rows[2]["d_loss"], 1.0 / 3.0); // exact round trip
    assert_eq!(rows[2]["g_loss"], 0.1 + 3.0 * 1e-7);
    assert_eq!(rows[2]["img/s"], 512.25);
    assert!(rows[5]["d_loss"].is_nan());
    let d = series(&rows, "step", "d_loss");
    assert_eq!(d.len(), 6);
    assert_eq!(d[1], (2.0, 0.5));
    assert_eq!(series(&rows, "step", "img/s").len(), 5);
    // Resume at step 3: later rows dropped, appends continue.
    let (mut log, kept) = MetricsLog::resume(&p, 3).unwrap();
    assert_eq!(kept.len(), 3);
    log.log(&[("step", 4.0), ("d_loss", 0.5)]).unwrap();
    drop(log);
    let rows = read_metrics(&p).unwrap();
    assert_eq!(rows.len(), 4);
    assert_eq!(rows[3]["d_loss"], 0.5);
    // Append mode.
    let mut log = MetricsLog::append(&p).unwrap();
    log.log(&[("step", 5.0)]).unwrap();
    drop(log);
    assert_eq!(read_metrics(&p).unwrap().len(), 5);
    no_temp_files(&dir);
}

#[test]
fn io_metrics_corrupt_line() {
    let dir = tmpdir("metrics_bad");
    let p = dir.join("m.jsonl");
    std::fs::write(&p, "{\"step\":1}\n{\"step\":2,\"d\n{\"step\":3}\n").unwrap();
    let e = read_metrics(&p).unwrap_err().to_string();
    assert!(e.contains("m.jsonl") && e.contains("line 2"), "{e}");
    std::fs::write(&p, "{\"step\":1}\n[1,2]\n").unwrap();
    let e = read_metrics(&p).unwrap_err().to_string();
    assert!(e.contains("line 2") && e.contains("object"), "{e}");
    std::fs::write(&p, "{\"step\":1}\n{\"tag\":\"x\"}\n").unwrap();
    let e = read_metrics(&p).unwrap_err().to_string();
    assert!(e.contains("line 2") && e.contains("tag"), "{e}");
    // A torn last line (no newline: a crash mid-write) is skipped.
    std::fs::write(&p, "{\"step\":1}\n\n{\"step\":2,\"d_lo").unwrap();
    assert_eq!(read_metrics(&p).unwrap().len(), 1);
    let e = read_metrics(dir.join("missing.jsonl"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("missing.jsonl"), "{e}");
}

#[test]
fn io_progress_formatting() {
    assert_eq!(format_eta(0.0), "0s");
    assert_eq!(format_eta(45.4), "45s");
    assert_eq!(format_eta(192.0), "3m12s");
    assert_eq!(format_eta(3600.0 + 5.0 * 60.0 + 10.0), "1h05m");
    assert_eq!(format_eta(f64::NAN), "?");
    assert_eq!(eta_secs(120, 2000, 12.0), 188.0);
    assert!(eta_secs(0, 2000, 1.0).is_nan());
    let line = format_line(
        120,
        2000,
        &[("d", 1.2345), ("g", 0.87), ("img/s", 512.4)],
        192.0,
    );
    assert_eq!(
        line,
        "step 120/2000 [#...................] 6% d 1.234 g 0.870 | 512 img/s | ETA 3m12s"
    );
    let line = format_line(2000, 2000, &[], 0.0);
    assert_eq!(line, "step 2000/2000 [####################] 100% | ETA 0s");
}

#[test]
fn io_grid_28x28_layout() {
    // 10 rings of growing radius on a -1 background, nrow 4: 4 columns, 3 rows.
    let dir = tmpdir("grid_rings");
    let (n, s) = (10usize, 28usize);
    let mut v = vec![-1.0f32; n * s * s];
    for k in 0..n {
        let r = 3.0 + k as f32;
        for y in 0..s {
            for x in 0..s {
                let d = ((x as f32 - 13.5).powi(2) + (y as f32 - 13.5).powi(2)).sqrt();
                if (d - r).abs() < 1.5 {
                    v[k * s * s + y * s + x] = 1.0;
                }
            }
        }
    }
    let t = Tensor::from_vec(v, [n, 1, s, s], &Device::Cpu).unwrap();
    let p = dir.join("rings.png");
    save_grid(&p, &t, 4, 2).unwrap();
    let (w, h, _, px) = decode(&p);
    assert_eq!((w, h), (4 * 30 + 2, 3 * 30 + 2));
    // Corner of image k = 5 (row 1, col 1) is background black; the last row's empty
    // cells (k = 10, 11) are padding white.
    assert_eq!(px[(2 + 30) * w + 2 + 30], 0);
    assert_eq!(px[(2 + 60 + 10) * w + 2 + 60 + 10], 255);
    assert!(px.iter().filter(|&&b| b == 255).count() > 1000);
}

#[test]
fn io_plot_large_mixed() {
    // 2x text scale; a negative series with a NaN gap, a constant one and a single point.
    let dir = tmpdir("plot_large");
    let a: Vec<(f64, f64)> = (0..300)
        .map(|i| {
            let y = if (140..150).contains(&i) {
                f64::NAN
            } else {
                -0.02 * i as f64
            };
            (i as f64 * 10.0, y)
        })
        .collect();
    let b: Vec<(f64, f64)> = (0..300).map(|i| (i as f64 * 10.0, -1.5)).collect();
    let c: Vec<(f64, f64)> = vec![(1500.0, -4.0)];
    let p = dir.join("mixed.png");
    save_line_plot(
        &p,
        "Mixed: d(x)=-0.02x",
        &[("a", &a), ("const", &b), ("one", &c)],
        900,
        560,
    )
    .unwrap();
    let (w, h, _, px) = decode(&p);
    assert_eq!((w, h), (900, 560));
    for i in 0..3 {
        assert!(count_color(&px, series_color(i)) >= 9, "series {i}");
    }
}

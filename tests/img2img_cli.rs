//! The image-to-image command line: bad image folders give one clear error (exit 2, one
//! `error:` line naming the file and the fix), a tiny run trains from one command, resumes
//! through plain `duel train --resume`, and `duel translate` writes its grid.

mod common;
use common::{duel, png_size, TempDir};

fn write_png(path: &std::path::Path, w: u32, h: u32, color: png::ColorType) {
    let channels = if color == png::ColorType::Rgb { 3 } else { 1 };
    let file = std::fs::File::create(path).unwrap();
    let mut enc = png::Encoder::new(std::io::BufWriter::new(file), w, h);
    enc.set_color(color);
    enc.set_depth(png::BitDepth::Eight);
    let data: Vec<u8> = (0..w * h * channels).map(|i| (i * 7 % 256) as u8).collect();
    enc.write_header().unwrap().write_image_data(&data).unwrap();
}

/// Runs `duel train <model> --data DIR` and returns its one error line.
fn refused(model: &str, data: &std::path::Path, runs: &TempDir) -> String {
    let out = duel(&[
        "--device",
        "cpu",
        "train",
        model,
        "--data",
        data.to_str().unwrap(),
        "--runs-dir",
        &runs.arg("runs"),
        "--quiet",
    ]);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(2), "{err}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line expected: {err}");
    assert!(lines[0].starts_with("error: "), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    lines[0].to_string()
}

#[test]
fn img2img_cli_bad_image_folders_give_one_clear_error() {
    let t = TempDir::new("img2img-folders");
    // Empty folder.
    let empty = t.path("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let e = refused("pix2pix", &empty, &t);
    assert!(e.contains("no PNG images") && e.contains("empty"), "{e}");
    // Mismatched sizes: the file is named with both sizes.
    let mixed = t.path("mixed");
    std::fs::create_dir_all(&mixed).unwrap();
    write_png(&mixed.join("a.png"), 64, 32, png::ColorType::Grayscale);
    write_png(&mixed.join("b.png"), 64, 30, png::ColorType::Grayscale);
    let e = refused("pix2pix", &mixed, &t);
    assert!(
        e.contains("b.png") && e.contains("64×30") && e.contains("64×32"),
        "{e}"
    );
    // Odd width for side-by-side pairs.
    let odd = t.path("odd");
    std::fs::create_dir_all(&odd).unwrap();
    write_png(&odd.join("a.png"), 33, 16, png::ColorType::Grayscale);
    let e = refused("pix2pix", &odd, &t);
    assert!(e.contains("width must be even"), "{e}");
    // A/ without B/.
    let half = t.path("half");
    std::fs::create_dir_all(half.join("A")).unwrap();
    write_png(&half.join("A/x.png"), 16, 16, png::ColorType::Grayscale);
    let e = refused("cyclegan", &half, &t);
    assert!(e.contains("B") && e.contains("is missing"), "{e}");
    // A file that is not a PNG.
    let junk = t.path("junk");
    std::fs::create_dir_all(&junk).unwrap();
    std::fs::write(junk.join("broken.png"), b"not a png at all").unwrap();
    let e = refused("pix2pix", &junk, &t);
    assert!(
        e.contains("broken.png") && e.contains("not a readable PNG"),
        "{e}"
    );
    // Domains of different sizes.
    let sizes = t.path("sizes");
    for (d, s) in [("A", 16), ("B", 20)] {
        std::fs::create_dir_all(sizes.join(d)).unwrap();
        write_png(&sizes.join(d).join("x.png"), s, s, png::ColorType::Rgb);
    }
    let e = refused("cyclegan", &sizes, &t);
    assert!(e.contains("same size"), "{e}");
    // Unpaired data given to pix2pix.
    let e = refused("pix2pix", std::path::Path::new("thicken-unpaired"), &t);
    assert!(e.contains("pix2pix needs paired data"), "{e}");
    assert!(!t.path("runs").exists() || std::fs::read_dir(t.path("runs")).unwrap().count() == 0);
}

#[test]
fn img2img_cli_user_folder_trains_resumes_and_translates() {
    let t = TempDir::new("img2img-user");
    // 20 paired RGB images of 32×32 (A|B side by side): 16 train, 2 held out.
    let data = t.path("pairs");
    std::fs::create_dir_all(&data).unwrap();
    for i in 0..20 {
        write_png(
            &data.join(format!("{i:02}.png")),
            64,
            32,
            png::ColorType::Rgb,
        );
    }
    let run = t.arg("runs/p");
    let tiny = [
        "--ngf",
        "2",
        "--ndf",
        "2",
        "--batch-size",
        "2",
        "--quiet",
        "--sample-every",
        "1",
    ];
    let mut args = vec![
        "--device",
        "cpu",
        "train",
        "pix2pix",
        "--data",
        data.to_str().unwrap(),
    ];
    args.extend(["--steps", "2", "--name", "p", "--runs-dir"]);
    let runs = t.arg("runs");
    args.push(&runs);
    args.extend(tiny);
    let out = duel(&args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("A → B"), "{stdout}");
    // Plain `duel train --resume` continues an image-to-image run.
    let out = duel(&[
        "--device", "cpu", "train", "--resume", &run, "--steps", "3", "--quiet",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows = std::fs::read_to_string(t.path("runs/p/metrics.jsonl")).unwrap();
    assert_eq!(rows.lines().count(), 3);
    // Translate the held-out pairs (RGB: input | output | target).
    let grid = t.arg("grid.png");
    let out = duel(&[
        "--device",
        "cpu",
        "translate",
        "--checkpoint",
        &run,
        "--out",
        &grid,
        "--n",
        "2",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(png_size(&t.path("grid.png")), (3 * 34 + 2, 2 * 34 + 2));
    let err = duel(&[
        "--device",
        "cpu",
        "translate",
        "--checkpoint",
        &run,
        "--direction",
        "b2a",
    ]);
    assert_eq!(err.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&err.stderr).contains("translates A → B only"));
}

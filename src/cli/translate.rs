//! `duel translate`: apply a trained pix2pix or CycleGAN generator to images.

use std::path::PathBuf;

use clap::Args;
use duel::data::image_folder::{png_files, read_png};
use duel::data::translation::ImageSet;
use duel::device::DeviceSpec;
use duel::gan::img2img::run::{interleave, spread};
use duel::gan::img2img::{Img2ImgTrainer, TestMode};
use duel::io::image::save_grid;
use duel::Device;

use crate::Failure;

#[derive(Args, Debug)]
pub struct TranslateArgs {
    /// A run directory written by duel train pix2pix|cyclegan (or its checkpoint.safetensors)
    #[arg(long, value_name = "RUN")]
    checkpoint: PathBuf,
    /// `builtin` (the run's held-out images, shown with their targets) or a folder of PNGs
    #[arg(long, value_name = "DIR|builtin", default_value = "builtin")]
    input: String,
    /// Where to write the grid: rows input | output (| target)
    #[arg(long, value_name = "FILE", default_value = "translated.png")]
    out: PathBuf,
    /// a2b (G, or CycleGAN's G_A) or b2a (CycleGAN's G_B)
    #[arg(long, default_value = "a2b")]
    direction: String,
    /// How many images (builtin: spread over the held-out set; folder: the first N by name)
    #[arg(long, default_value_t = 16)]
    n: usize,
    /// eval or paper (see duel train pix2pix --help) [the run's]
    #[arg(long)]
    test_mode: Option<String>,
}

pub fn translate(spec: DeviceSpec, args: &TranslateArgs) -> Result<(), Failure> {
    let usage = |m: String| Failure(m, 2);
    let forward = match args.direction.as_str() {
        "a2b" => true,
        "b2a" => false,
        o => return Err(usage(format!("--direction '{o}': choose a2b or b2a"))),
    };
    if args.n == 0 || args.n > 1024 {
        return Err(usage(format!("--n {}: use 1 to 1024 images", args.n)));
    }
    let ckpt = if args.checkpoint.is_dir() {
        args.checkpoint.join(duel::gan::run::CHECKPOINT)
    } else {
        args.checkpoint.clone()
    };
    if !ckpt.is_file() {
        return Err(usage(format!(
            "--checkpoint {}: no such file; give a run directory of duel train pix2pix|cyclegan",
            ckpt.display()
        )));
    }
    let device = spec.open()?;
    let mut t = Img2ImgTrainer::load(&ckpt, &device, None).map_err(|e| usage(e.to_string()))?;
    if let Some(m) = &args.test_mode {
        t.config.test_mode = TestMode::parse(m).map_err(|e| usage(e.to_string()))?;
    }
    if !forward && t.g_b.is_none() {
        return Err(usage(
            "--direction b2a: this is a pix2pix run, which translates A → B only".into(),
        ));
    }
    let ([ca, h, w], [cb, ..]) = t.data.shapes();
    let c_in = if forward { ca } else { cb };
    let (input, target) = if args.input == "builtin" {
        let d = &t.data;
        let (src, dst) = if forward {
            (&d.test_a, &d.test_b)
        } else {
            (&d.test_b, &d.test_a)
        };
        if src.is_empty() {
            return Err(usage(format!(
                "{} holds no held-out images; give --input DIR",
                d.name
            )));
        }
        let idx = spread(src.len(), args.n);
        let target = d.test_aligned.then(|| dst.batch(&idx, &Device::Cpu));
        (src.batch(&idx, &Device::Cpu)?, target.transpose()?)
    } else {
        let dir = PathBuf::from(&args.input);
        if !dir.is_dir() {
            return Err(usage(format!(
                "--input {}: not a directory of PNG images (or give builtin)",
                dir.display()
            )));
        }
        let files = png_files(&dir)?;
        if files.is_empty() {
            return Err(usage(format!(
                "--input {}: no .png files there",
                dir.display()
            )));
        }
        let mut set = ImageSet::empty(c_in, h, w);
        for f in files.iter().take(args.n) {
            let png = read_png(f)?;
            if (png.width, png.height) != (w, h) {
                return Err(usage(format!(
                    "{}: is {}×{}, but the model was trained on {w}×{h} images",
                    f.display(),
                    png.width,
                    png.height
                )));
            }
            let mut v = vec![0f32; c_in * h * w];
            for ch in 0..c_in {
                for p in 0..h * w {
                    let s = png.samples[p * png.channels + ch.min(png.channels - 1)];
                    v[ch * h * w + p] = duel::data::idx::pixel_to_f32(s);
                }
            }
            set.push(&v);
        }
        (
            set.batch(&(0..set.len()).collect::<Vec<_>>(), &Device::Cpu)?,
            None,
        )
    };
    let output = t.translate(forward, &input)?;
    let mut cols = vec![input, output];
    cols.extend(target);
    let n = cols[0].dims()[0];
    save_grid(&args.out, &interleave(&cols)?, cols.len(), 2)?;
    println!(
        "{n} images translated {} ({} mode) into {} (columns: input | output{})",
        if forward { "A → B" } else { "B → A" },
        duel::gan::img2img::trainer::test_mode_name(t.config.test_mode),
        args.out.display(),
        if cols.len() == 3 { " | target" } else { "" }
    );
    Ok(())
}

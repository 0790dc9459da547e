//! pix2pix and CycleGAN training: short cpu runs write every output with finite losses,
//! resume is bit for bit (dropout streams, batch-norm statistics, image pools and the LR
//! schedule carried over), a tiny step on the emulator matches the cpu, and the pieces
//! (schedule, pool, similarity, built-in tasks) give hand-checked values.

use duel::data::translation::{task_pair, TranslationData};
use duel::eval::similarity::{similarity, PSNR_CAP};
use duel::gan::img2img::pool::ImagePool;
use duel::gan::img2img::run::{self, EVAL};
use duel::gan::img2img::{GeneratorKind, Img2ImgConfig, Img2ImgTrainer, Model, Norm};
use duel::io::checkpoint::read_header;
use duel::io::metrics::read_metrics;
use duel::nn::Module;
use duel::{Device, Tensor};

mod common;
use common::{bits, png_size, TempDir};

/// Networks of a few hundred parameters, so each step takes milliseconds.
fn tiny(model: Model) -> Img2ImgConfig {
    let mut c = Img2ImgConfig::defaults(model);
    c.ngf = 2;
    c.ndf = 2;
    c.n_blocks = 1;
    c.batch_size = 2;
    c.pool_size = 3;
    c.steps = 6;
    c.decay_steps = 4;
    c
}

fn all_state(t: &Img2ImgTrainer) -> Vec<(String, Vec<u64>)> {
    let mut v: Vec<(String, Vec<u64>)> = t
        .state_tensors()
        .unwrap()
        .into_iter()
        .map(|(n, x)| (n, bits(&x)))
        .collect();
    v.sort();
    v
}

fn resume_is_bitwise(config: Img2ImgConfig) {
    let dev = Device::Cpu;
    let dir = TempDir::new("img2img-resume");
    let path = dir.path("ckpt.safetensors");
    let mut straight = Img2ImgTrainer::new(config.clone(), &dev).unwrap();
    let mut logs = Vec::new();
    for _ in 0..config.steps {
        logs.push(straight.train_step().unwrap());
    }
    let mut first = Img2ImgTrainer::new(config.clone(), &dev).unwrap();
    for _ in 0..3 {
        first.train_step().unwrap();
    }
    first.save(&path).unwrap();
    drop(first);
    let mut resumed = Img2ImgTrainer::load(&path, &dev, None).unwrap();
    assert_eq!(resumed.step, 3);
    for log in &logs[3..] {
        let again = resumed.train_step().unwrap();
        let b = |l: &Vec<(&str, f64)>| {
            l.iter()
                .map(|(k, v)| (k.to_string(), v.to_bits()))
                .collect::<Vec<_>>()
        };
        assert_eq!(b(&again), b(log), "step {} after the resume", resumed.step);
    }
    assert_eq!(all_state(&resumed), all_state(&straight));
    // The schedule ran into its decay: constant 2e-4 for 2 steps, then 4/4 … 1/4 of it.
    let lrs: Vec<f64> = logs
        .iter()
        .map(|l| l.iter().find(|(k, _)| *k == "lr").unwrap().1)
        .collect();
    for (lr, want) in lrs.iter().zip([2e-4, 2e-4, 2e-4, 1.5e-4, 1e-4, 5e-5]) {
        assert!(
            (lr - want).abs() < 1e-18,
            "lr {lr} where {want} was due: {lrs:?}"
        );
    }
}

#[test]
fn img2img_train_pix2pix_resume_is_bitwise_with_dropout_and_batch_norm() {
    let c = tiny(Model::Pix2pix);
    assert!(c.dropout && c.norm == Norm::Batch);
    resume_is_bitwise(c);
}

#[test]
fn img2img_train_cyclegan_resume_is_bitwise_with_pools_and_decay() {
    let c = tiny(Model::Cyclegan);
    // 6 steps of 2 images: the pools (capacity 3) fill at step 2 and then swap.
    let mut t = Img2ImgTrainer::new(c.clone(), &Device::Cpu).unwrap();
    for _ in 0..3 {
        t.train_step().unwrap();
    }
    assert_eq!((t.pool_a.len(), t.pool_a.offered()), (3, 6));
    assert!(t
        .state_tensors()
        .unwrap()
        .iter()
        .any(|(n, x)| n == "pool_B.images" && x.dims() == [3, 1, 32, 32]));
    resume_is_bitwise(c);
}

fn short_run(model: Model, columns: usize) {
    let dir = TempDir::new("img2img-run");
    let mut c = tiny(model);
    c.steps = 4;
    c.decay_steps = 2;
    let mut t = Img2ImgTrainer::new(c, &Device::Cpu).unwrap();
    duel::gan::run::start(dir.dir()).unwrap();
    let s = run::run(&mut t, dir.dir(), 2, 2, true).unwrap();
    assert_eq!(s.step, 4);
    let rows = read_metrics(dir.path("metrics.jsonl")).unwrap();
    assert_eq!(rows.len(), 4);
    let terms: &[&str] = match model {
        Model::Pix2pix => &[
            "d_loss", "d_real", "d_fake", "g_loss", "g_gan", "g_l1", "lr",
        ],
        Model::Cyclegan => &[
            "d_a", "d_b", "g_loss", "g_a", "g_b", "cycle_a", "cycle_b", "idt_a", "idt_b", "lr",
        ],
    };
    for r in &rows {
        for k in terms {
            assert!(r[*k].is_finite(), "{k} = {} in {r:?}", r[*k]);
        }
    }
    // Grid: 10 held-out rows per direction of 34-pixel cells (32 + padding 2), plus 2.
    let rows_shown = if model == Model::Pix2pix { 10 } else { 20 };
    assert_eq!(
        png_size(&dir.path("samples/final.png")),
        (columns as u32 * 34 + 2, rows_shown * 34 + 2)
    );
    assert!(dir.path("samples/step-000002.png").is_file());
    assert!(dir.path("loss.png").is_file());
    let eval: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path(EVAL)).unwrap()).unwrap();
    assert_eq!(eval["heldout_a"], 500);
    let n_rows = if model == Model::Pix2pix { 2 } else { 4 };
    assert_eq!(eval["rows"].as_array().unwrap().len(), n_rows);
    assert_eq!(s.evaluation.len(), n_rows);
    // The exported generators carry exactly their module's PyTorch names.
    let files: &[(&str, &dyn Module)] = match &t.g_b {
        None => &[("net_G.safetensors", t.g_a.module.as_ref())],
        Some(g_b) => &[
            ("net_G_A.safetensors", t.g_a.module.as_ref()),
            ("net_G_B.safetensors", g_b.module.as_ref()),
        ],
    };
    for (file, net) in files {
        let mut names: Vec<String> = read_header(dir.path(file))
            .unwrap()
            .into_iter()
            .map(|(n, ..)| n)
            .collect();
        let mut own: Vec<String> = net.state_entries().into_iter().map(|(n, _)| n).collect();
        names.sort();
        own.sort();
        assert_eq!(names, own, "{file}");
        assert!(names[0].starts_with("model."), "{file}: {}", names[0]);
    }
}

#[test]
fn img2img_train_pix2pix_short_run_writes_every_output() {
    short_run(Model::Pix2pix, 3);
}

#[test]
fn img2img_train_cyclegan_short_run_writes_every_output() {
    short_run(Model::Cyclegan, 4);
}

/// Two steps on cpu and on emu from the same start: every loss term and G's output on
/// held-out images agree. Tolerance: the kernels' f32 reductions (conv, norm statistics,
/// means) add in another order than the cpu's; after two Adam steps the loss terms agree
/// to ~1e-6 relative. Biases right before an instance norm get an exact-zero gradient that
/// each device computes as rounding noise (Adam then moves them by up to lr), but the norm
/// removes them from every output, so outputs and losses are unaffected.
fn emu_matches_cpu(model: Model) {
    let emu = Device::emu().expect("the emu device must be available for the img2img emu tests");
    let mut c = tiny(model);
    c.steps = 2;
    c.decay_steps = 0;
    let run = |dev: &Device| {
        let mut t = Img2ImgTrainer::new(c.clone(), dev).unwrap();
        let logs: Vec<_> = (0..2).map(|_| t.train_step().unwrap()).collect();
        let x = t.data.test_a.batch(&[0, 250], dev).unwrap();
        (logs, t.translate(true, &x).unwrap().to_f64_vec().unwrap())
    };
    let (cpu_logs, cpu_out) = run(&Device::Cpu);
    let (emu_logs, emu_out) = run(&emu);
    for (a, b) in cpu_logs.iter().flatten().zip(emu_logs.iter().flatten()) {
        assert_eq!(a.0, b.0);
        let rel = (a.1 - b.1).abs() / a.1.abs().max(1e-3);
        assert!(rel < 2e-5, "{}: cpu {} emu {} (rel {rel:e})", a.0, a.1, b.1);
    }
    let diff = cpu_out
        .iter()
        .zip(&emu_out)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    assert!(diff < 1e-4, "G(x) differs by {diff:e}");
}

#[test]
fn img2img_train_pix2pix_step_on_emu_matches_cpu() {
    emu_matches_cpu(Model::Pix2pix);
}

#[test]
fn img2img_train_cyclegan_step_on_emu_matches_cpu() {
    emu_matches_cpu(Model::Cyclegan);
}

#[test]
fn img2img_train_lr_schedule_is_constant_then_linear_to_zero() {
    let mut c = Img2ImgConfig::defaults(Model::Cyclegan);
    c.steps = 10;
    c.decay_steps = 4;
    let f: Vec<f64> = (0..=10).map(|s| c.lr_factor(s)).collect();
    assert_eq!(f, [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.75, 0.5, 0.25, 0.0]);
    c.decay_steps = 0;
    assert_eq!(c.lr_factor(9), 1.0);
    c.decay_steps = 11;
    assert!(c
        .validate()
        .unwrap_err()
        .to_string()
        .contains("--decay-steps 11"));
}

#[test]
fn img2img_train_pool_fills_then_swaps_with_probability_one_half() {
    let dev = Device::Cpu;
    let mut pool = ImagePool::new(4, 7);
    let img = |v: f32| Tensor::from_vec(vec![v; 2], [1, 2, 1, 1], &dev).unwrap();
    // While filling, every image comes straight back.
    for k in 0..4 {
        assert_eq!(
            pool.query(&img(k as f32)).unwrap().to_f64_vec().unwrap(),
            [k as f64; 2]
        );
    }
    // Then about half of the queries return a stored (older) image instead.
    let mut swapped = 0;
    for k in 4..1004 {
        let out = pool.query(&img(k as f32)).unwrap().to_f64_vec().unwrap()[0];
        if out != k as f64 {
            assert!(out < k as f64, "a pool returns only images offered before");
            swapped += 1;
        }
    }
    // 1000 fair coins: 500 ± 16 (1 std); the bound is 5 std.
    assert!((420..=580).contains(&swapped), "{swapped} swaps in 1000");
    let (state, offered) = pool.state(&[2, 1, 1]).unwrap();
    let mut back = ImagePool::new(4, 7);
    back.restore(state.as_ref(), offered).unwrap();
    for k in 0..50 {
        let x = img(2000.0 + k as f32);
        assert_eq!(
            pool.query(&x).unwrap().to_f64_vec().unwrap(),
            back.query(&x).unwrap().to_f64_vec().unwrap()
        );
    }
}

#[test]
fn img2img_train_similarity_hand_checked_values() {
    // Pixel values −1 and 1 are 0 and 1 in [0, 1].
    let n = 16 * 16;
    let a = vec![-1f32; n];
    let mut b = vec![-1f32; n];
    for v in b.iter_mut().take(n / 4) {
        *v = 1.0;
    }
    let s = similarity(&a, &b, [1, 1, 16, 16]).unwrap();
    // A quarter of the pixels differ by 1: L1 0.25, MSE 0.25, PSNR 10·log10(4) = 6.0206.
    assert!((s.l1 - 0.25).abs() < 1e-12);
    assert!((s.psnr - 10.0 * 4f64.log10()).abs() < 1e-9);
    let same = similarity(&b, &b, [1, 1, 16, 16]).unwrap();
    assert_eq!((same.l1, same.psnr), (0.0, PSNR_CAP));
    assert!((same.ssim - 1.0).abs() < 1e-12);
    // A constant image against one 0.1 brighter (in [0, 1]): SSIM is the luminance term
    // (2·μa·μb + C1) / (μa² + μb² + C1) with μa = 0.5, μb = 0.6, C1 = 1e-4.
    let (c, d) = (vec![0f32; n], vec![0.2f32; n]);
    let s = similarity(&c, &d, [1, 1, 16, 16]).unwrap();
    let expect = (2.0 * 0.5 * 0.6 + 1e-4) / (0.25 + 0.36 + 1e-4);
    assert!((s.ssim - expect).abs() < 1e-7, "{} vs {expect}", s.ssim);
    assert!(
        (s.psnr - 20.0).abs() < 1e-4,
        "MSE 0.01 is 20 dB, got {}",
        s.psnr
    );
}

#[test]
fn img2img_train_builtin_tasks_have_exact_ground_truth_and_hold_out_ten_percent() {
    // A 5×5 image with one lit pixel in the middle (at 28×28 the same rule applies).
    let mut digit = vec![0u8; 28 * 28];
    digit[14 * 28 + 14] = 200;
    let (a, b) = task_pair("thicken", &digit, 28);
    let lit = |v: &[f32]| v.iter().filter(|&&x| x > -1.0).count();
    assert_eq!((lit(&a), lit(&b)), (1, 9), "dilation by a 3×3 square");
    // Padded by 2: pixel (14, 14) is (16, 16) of the 32×32 image.
    assert_eq!(b[15 * 32 + 15], 200.0 / 127.5 - 1.0);
    let (edges, target) = task_pair("edges2digits", &digit, 28);
    assert_eq!(target, a, "edges2digits' target is the digit itself");
    assert_eq!(
        lit(&edges),
        9,
        "max − min of a single dot is the dilated dot"
    );
    for task in ["edges2digits", "thicken", "thicken-unpaired"] {
        let d = TranslationData::open(task).unwrap();
        assert_eq!((d.test_a.len(), d.test_b.len()), (500, 500), "{task}");
        assert!(d.test_aligned);
        let train = d.train_a.len() + if d.paired { 0 } else { d.train_b.len() };
        assert_eq!(train, 4000, "{task}: the train split");
        if !d.paired {
            assert_eq!((d.train_a.len(), d.train_b.len()), (2000, 2000));
        }
    }
    let unet_only = Img2ImgConfig {
        generator: GeneratorKind::Unet,
        ..tiny(Model::Pix2pix)
    };
    let err = Img2ImgTrainer::new(
        Img2ImgConfig {
            data: "thicken-unpaired".into(),
            ..unet_only
        },
        &Device::Cpu,
    )
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("pix2pix needs paired data"), "{err}");
}

//! Who touches what in a GAN step (the requirement (b)): the D step leaves G's
//! parameters, G's gradients and G's optimizer state (buffers, per-parameter step counts,
//! step count) bit for bit as they were, and the G step leaves D's — while each step does
//! move its own network (so the checks can fail). WGAN's weight clipping touches D only.
//! The G step freezes D ([`duel::autograd::freeze`]): no gradient is even created for D.
//!
//! Batch-norm running statistics are buffers, not parameters: a forward pass in training
//! mode advances them (the D step runs G to make its fakes, as the PyTorch DCGAN reference
//! does), so they are not part of these checks; `tests/gan_resume.rs` checks that they
//! resume exactly.

use duel::gan::{Arch, DataSpec, OptimizerKind, TrainConfig, Trainer, Variant};
use duel::ops::loss::LsCoding;
use duel::optim::Optimizer;
use duel::{Device, Tensor};

mod common;
use common::bits;

/// One network's side of the training state, as exact bits.
#[derive(Clone, Debug, PartialEq)]
struct Side {
    params: Vec<Vec<u64>>,
    grads: Vec<Option<Vec<u64>>>,
    opt_state: Vec<(String, Vec<u64>)>,
    param_steps: Vec<Option<u64>>,
    steps: u64,
}

fn side(params: &[Tensor], opt: &dyn Optimizer) -> Side {
    Side {
        params: params.iter().map(bits).collect(),
        grads: params.iter().map(|p| p.grad().map(|g| bits(&g))).collect(),
        opt_state: opt
            .state()
            .iter()
            .map(|(n, t)| (n.clone(), bits(t)))
            .collect(),
        param_steps: opt.param_steps(),
        steps: opt.steps(),
    }
}

fn g_side(t: &Trainer) -> Side {
    side(&t.g.parameters(), &*t.opt_g)
}

fn d_side(t: &Trainer) -> Side {
    side(&t.d.parameters(), &*t.opt_d)
}

/// What differs between two snapshots of one side, one line per item.
fn differences(a: &Side, b: &Side) -> Vec<String> {
    let mut v = Vec::new();
    if a.params.len() != b.params.len() {
        v.push("number of parameters".to_string());
    }
    for (i, (x, y)) in a.params.iter().zip(&b.params).enumerate() {
        if x != y {
            v.push(format!("parameter #{i}"));
        }
    }
    for (i, (x, y)) in a.grads.iter().zip(&b.grads).enumerate() {
        match (x, y) {
            (None, None) => {}
            (Some(_), None) => v.push(format!("grad #{i} was cleared")),
            (None, Some(_)) => v.push(format!("grad #{i} was created")),
            (Some(x), Some(y)) if x != y => v.push(format!("grad #{i}")),
            _ => {}
        }
    }
    let names = |s: &Side| s.opt_state.iter().map(|e| e.0.clone()).collect::<Vec<_>>();
    if names(a) != names(b) {
        v.push(format!(
            "optimizer state names {:?} -> {:?}",
            names(a),
            names(b)
        ));
    } else {
        for (x, y) in a.opt_state.iter().zip(&b.opt_state) {
            if x.1 != y.1 {
                v.push(format!("optimizer state {}", x.0));
            }
        }
    }
    if a.param_steps != b.param_steps {
        v.push("optimizer param_steps".to_string());
    }
    if a.steps != b.steps {
        v.push("optimizer steps".to_string());
    }
    v
}

fn changed_params(a: &Side, b: &Side) -> usize {
    a.params
        .iter()
        .zip(&b.params)
        .filter(|(x, y)| x != y)
        .count()
}

fn tiny_dcgan(variant: Variant, conditional: bool) -> TrainConfig {
    let mut c = TrainConfig::defaults(variant, Arch::Dcgan28, DataSpec::Digits);
    c.width = 4;
    c.batch_size = 8;
    c.nz = 8;
    c.conditional = conditional;
    c
}

fn toy(variant: Variant) -> TrainConfig {
    let mut c = TrainConfig::defaults(variant, Arch::Mlp, DataSpec::Ring8);
    c.batch_size = 32;
    c.width = 16;
    c.nz = 4;
    c
}

/// The optimizers hold the networks' own parameter leaves (so freezing `opt_d.params()`
/// freezes D, and stepping `opt_g` moves G).
fn check_optimizers_hold_the_nets_parameters(t: &Trainer) {
    for (name, net, opt) in [
        ("G", t.g.parameters(), t.opt_g.params()),
        ("D", t.d.parameters(), t.opt_d.params()),
    ] {
        assert_eq!(net.len(), opt.len(), "{name}");
        assert!(!net.is_empty(), "{name}");
        for (i, (p, q)) in net.iter().zip(opt).enumerate() {
            assert!(p.shares_storage(q), "{name} parameter #{i}");
            assert!(p.is_leaf() && p.requires_grad(), "{name} parameter #{i}");
        }
    }
}

/// One iteration to populate every gradient and optimizer buffer, then: the D step leaves
/// G alone and moves D; the G step leaves D alone and moves G.
fn check_isolation(name: &str, config: TrainConfig) {
    let mut t = Trainer::new(config, &Device::Cpu).unwrap();
    check_optimizers_hold_the_nets_parameters(&t);
    t.train_step().unwrap();
    for _ in 0..2 {
        // ---- the D step ----
        let g0 = g_side(&t);
        let d0 = d_side(&t);
        assert!(
            g0.grads.iter().all(Option::is_some),
            "{name}: G should hold its last step's gradients (so their survival is tested)"
        );
        assert!(
            !g0.opt_state.is_empty() && g0.param_steps.iter().all(Option::is_some),
            "{name}: G's optimizer state should be populated"
        );
        t.d_step().unwrap();
        let g1 = g_side(&t);
        let d1 = d_side(&t);
        assert_eq!(
            differences(&g0, &g1),
            Vec::<String>::new(),
            "{name}: the D step touched G"
        );
        assert!(
            changed_params(&d0, &d1) > 0,
            "{name}: the D step did not move D"
        );
        assert_eq!(d1.steps, d0.steps + 1, "{name}: opt_d steps");
        if !d0.opt_state.is_empty() {
            assert!(
                d0.opt_state != d1.opt_state,
                "{name}: the D step did not update D's optimizer state"
            );
        }

        // ---- the G step ----
        t.g_step().unwrap();
        let g2 = g_side(&t);
        let d2 = d_side(&t);
        assert_eq!(
            differences(&d1, &d2),
            Vec::<String>::new(),
            "{name}: the G step touched D"
        );
        assert!(
            changed_params(&g1, &g2) > 0,
            "{name}: the G step did not move G"
        );
        assert_eq!(g2.steps, g1.steps + 1, "{name}: opt_g steps");
        assert!(
            g1.opt_state != g2.opt_state,
            "{name}: the G step did not update G's optimizer state"
        );
        // the freeze ended with the G step
        assert!(
            t.d.parameters().iter().all(Tensor::requires_grad),
            "{name}: D is still frozen after the G step"
        );
    }
}

#[test]
fn gan_isolation_nsgan_dcgan28() {
    check_isolation("nsgan dcgan28", tiny_dcgan(Variant::NsGan, false));
}

#[test]
fn gan_isolation_conditional_dcgan28() {
    check_isolation("cond dcgan28", tiny_dcgan(Variant::NsGan, true));
}

#[test]
fn gan_isolation_wgan_dcgan28_and_toy() {
    check_isolation(
        "wgan dcgan28",
        tiny_dcgan(Variant::WGan { clip: 0.01 }, false),
    );
    check_isolation("wgan toy", toy(Variant::WGan { clip: 0.01 }));
}

#[test]
fn gan_isolation_lsgan_sgd_toy() {
    let mut c = toy(Variant::LsGan(LsCoding::BINARY));
    c.optimizer = OptimizerKind::Sgd;
    c.lr_g = 0.01;
    c.lr_d = 0.01;
    check_isolation("lsgan sgd toy", c);
}

#[test]
fn gan_isolation_wgan_clipping_touches_d_only() {
    let clip = 0.01;
    let mut t = Trainer::new(tiny_dcgan(Variant::WGan { clip }, false), &Device::Cpu).unwrap();
    let max_abs = |ps: &[Tensor]| {
        ps.iter()
            .flat_map(|p| p.to_f64_vec().unwrap())
            .fold(0.0f64, |m, v| m.max(v.abs()))
    };
    // Both networks start with weights beyond the clip (batch-norm scales near 1), so a
    // clip applied to G would show.
    assert!(max_abs(&t.g.parameters()) > 0.5);
    assert!(max_abs(&t.d.parameters()) > 0.5);
    let g0 = g_side(&t);
    t.d_step().unwrap();
    assert!(
        max_abs(&t.d.parameters()) <= clip as f32 as f64,
        "D is not clipped: {}",
        max_abs(&t.d.parameters())
    );
    assert_eq!(differences(&g0, &g_side(&t)), Vec::<String>::new());
    assert!(max_abs(&t.g.parameters()) > 0.5, "G was clipped");
    // a full iteration (5 critic steps, one G step): G is still unclipped after its step
    t.train_step().unwrap();
    assert!(max_abs(&t.g.parameters()) > 0.5, "G was clipped");
    assert!(max_abs(&t.d.parameters()) <= clip as f32 as f64);
}

#[test]
fn gan_isolation_g_step_creates_no_d_gradients() {
    for (name, c) in [
        ("nsgan dcgan28", tiny_dcgan(Variant::NsGan, false)),
        ("cond dcgan28", tiny_dcgan(Variant::NsGan, true)),
        ("wgan toy", toy(Variant::WGan { clip: 0.01 })),
    ] {
        let mut t = Trainer::new(c, &Device::Cpu).unwrap();
        t.train_step().unwrap();
        assert!(t.d.parameters().iter().all(|p| p.grad().is_some()));
        t.opt_d.zero_grad();
        t.g_step().unwrap();
        for (i, p) in t.d.parameters().iter().enumerate() {
            assert!(
                p.grad().is_none(),
                "{name}: the G step created a gradient for D parameter #{i}"
            );
        }
        // and G did get its gradients through D
        assert!(
            t.g.parameters().iter().all(|p| p.grad().is_some()),
            "{name}"
        );
    }
}

#[test]
fn gan_isolation_d_step_creates_no_g_gradients() {
    let mut t = Trainer::new(tiny_dcgan(Variant::NsGan, false), &Device::Cpu).unwrap();
    t.train_step().unwrap();
    t.opt_g.zero_grad();
    t.d_step().unwrap();
    assert!(t.g.parameters().iter().all(|p| p.grad().is_none()));
    assert!(t.d.parameters().iter().all(|p| p.grad().is_some()));
}

#[test]
fn gan_isolation_snapshot_comparison_detects_changes() {
    // Negative controls: the helper that says "untouched" does report each kind of change.
    let mut t = Trainer::new(tiny_dcgan(Variant::NsGan, false), &Device::Cpu).unwrap();
    t.train_step().unwrap();
    let g0 = g_side(&t);
    assert!(differences(&g0, &g_side(&t)).is_empty());

    // stepping G's optimizer directly: parameters, optimizer state and counters change
    t.opt_g.step().unwrap();
    let diff = differences(&g0, &g_side(&t));
    assert!(
        diff.iter().any(|d| d.starts_with("parameter #")),
        "{diff:?}"
    );
    assert!(
        diff.iter().any(|d| d.starts_with("optimizer state")),
        "{diff:?}"
    );
    assert!(diff.contains(&"optimizer steps".to_string()), "{diff:?}");
    assert!(
        diff.contains(&"optimizer param_steps".to_string()),
        "{diff:?}"
    );

    // clearing one gradient is reported
    let g1 = g_side(&t);
    t.g.parameters()[0].zero_grad();
    assert_eq!(differences(&g1, &g_side(&t)), ["grad #0 was cleared"]);

    // creating one is reported too
    let g2 = g_side(&t);
    t.g_step().unwrap();
    let diff = differences(&g2, &g_side(&t));
    assert!(
        diff.contains(&"grad #0 was created".to_string()),
        "{diff:?}"
    );

    // a changed gradient value (same Some-ness) is reported
    let d0 = d_side(&t);
    t.d_step().unwrap();
    let diff = differences(&d0, &d_side(&t));
    assert!(diff.iter().any(|d| d.starts_with("grad #")), "{diff:?}");
}

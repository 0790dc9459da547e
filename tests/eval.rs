//! Mode coverage (THEORY.md "Mode collapse and how it is measured") on the toy mixtures.

use duel::data::toy::Mixture;
use duel::eval::mode_coverage;
use duel::{Device, Tensor};

fn t(rows: &[[f32; 2]]) -> Tensor {
    let v: Vec<f32> = rows.iter().flatten().copied().collect();
    Tensor::from_vec(v, [rows.len(), 2], &Device::Cpu).unwrap()
}

#[test]
fn eval_toy_shapes_and_modes() {
    let ring = Mixture::ring8();
    assert_eq!(ring.modes().len(), 8);
    assert_eq!(ring.std(), 0.02);
    for m in ring.modes() {
        assert!(((m[0] * m[0] + m[1] * m[1]).sqrt() - 2.0).abs() < 1e-12);
    }
    assert!((ring.modes()[2][0]).abs() < 1e-12 && (ring.modes()[2][1] - 2.0).abs() < 1e-12);
    let grid = Mixture::grid25();
    assert_eq!(grid.modes().len(), 25);
    assert_eq!(grid.std(), 0.05);
    let axis = [-4.0, -2.0, 0.0, 2.0, 4.0];
    for m in grid.modes() {
        assert!(axis.contains(&m[0]) && axis.contains(&m[1]), "{m:?}");
    }
    let s = grid.sample(100, 1, 0).unwrap();
    assert_eq!(s.dims(), &[100, 2]);
    let one_d = Mixture::mixture_1d(&[-3.0, 0.0, 3.0], 0.1).unwrap();
    assert_eq!(one_d.sample(40, 1, 0).unwrap().dims(), &[40, 1]);
    assert!(Mixture::new(vec![], 1.0).is_err());
    assert!(Mixture::ring(8, 2.0, f64::NAN).is_err());
}

#[test]
fn eval_toy_sampling_reproducible_with_offset() {
    let ring = Mixture::ring8();
    let a = ring.sample(300, 9, 0).unwrap().to_vec::<f32>().unwrap();
    let b = ring.sample(300, 9, 0).unwrap().to_vec::<f32>().unwrap();
    assert_eq!(a, b);
    let tail = ring.sample(100, 9, 200).unwrap().to_vec::<f32>().unwrap();
    assert_eq!(&a[400..], &tail[..]);
    let c = ring.sample(300, 10, 0).unwrap().to_vec::<f32>().unwrap();
    assert_ne!(a, c);
}

#[test]
fn eval_true_ring_samples_cover_all_modes() {
    let ring = Mixture::ring8();
    let n = 10_000;
    let s = ring.sample(n, 2026, 0).unwrap();
    let m = mode_coverage(&s, ring.modes(), ring.std()).unwrap();
    eprintln!("ring8, {n} true samples: {m:?}");
    // 2-D isotropic Gaussian: P(r ≤ 3σ) = 1 − e^{−9/2} ≈ 0.9889 (not 0.997: that is 1-D).
    assert!(
        (m.high_quality_fraction - 0.9889).abs() < 0.005,
        "{}",
        m.high_quality_fraction
    );
    assert_eq!(m.modes_captured, 8);
    assert_eq!(m.n_samples, n);
    // Multinomial with ~9,900 draws over 8 bins: KL ≈ (K−1)/(2N) ≈ 3.5e-4 in expectation.
    assert!(m.kl_to_uniform < 3e-3, "{}", m.kl_to_uniform);
    // Grid and 1-D mixtures behave the same.
    let grid = Mixture::grid25();
    let g = mode_coverage(&grid.sample(n, 5, 0).unwrap(), grid.modes(), grid.std()).unwrap();
    assert_eq!(g.modes_captured, 25);
    assert!((g.high_quality_fraction - 0.9889).abs() < 0.005);
    assert!(g.kl_to_uniform < 1e-2, "{}", g.kl_to_uniform);
    let one_d = Mixture::mixture_1d(&[-3.0, 0.0, 3.0], 0.1).unwrap();
    let o = mode_coverage(&one_d.sample(n, 5, 0).unwrap(), one_d.modes(), 0.1).unwrap();
    assert_eq!(o.modes_captured, 3);
    // 1-D: P(|x| ≤ 3σ) ≈ 0.9973.
    assert!((o.high_quality_fraction - 0.9973).abs() < 0.003);
}

#[test]
fn eval_collapse_onto_one_mode() {
    let ring = Mixture::ring8();
    let c = &ring.modes()[3];
    let (cx, cy) = (c[0] as f32, c[1] as f32);
    let s = t(&[
        [cx, cy],
        [cx + 0.01, cy],
        [cx, cy - 0.03],
        [cx + 0.02, cy + 0.02],
    ]);
    let m = mode_coverage(&s, ring.modes(), ring.std()).unwrap();
    assert_eq!(m.high_quality_fraction, 1.0);
    assert_eq!(m.modes_captured, 1);
    assert_eq!(m.counts[3], 4);
    assert!((m.kl_to_uniform - 8f64.ln()).abs() < 1e-12);
}

#[test]
fn eval_hand_checked_histogram() {
    // Two modes on a line at 0 and 10, std 1. Samples: 3 near mode 0, 1 near mode 1,
    // 1 at 5.5 (nearest mode 1, distance 4.5 > 3: not high quality).
    let modes = vec![vec![0.0, 0.0], vec![10.0, 0.0]];
    let s = t(&[[0.0, 0.0], [1.0, 1.0], [-2.9, 0.0], [10.0, 2.0], [5.5, 0.0]]);
    let m = mode_coverage(&s, &modes, 1.0).unwrap();
    assert_eq!(m.high_quality_fraction, 0.8);
    assert_eq!(m.counts, vec![3, 1]);
    assert_eq!(m.modes_captured, 2);
    // p = (3/4, 1/4): KL = 3/4 ln(3/2) + 1/4 ln(1/2).
    let want = 0.75 * 1.5f64.ln() + 0.25 * 0.5f64.ln();
    assert!((m.kl_to_uniform - want).abs() < 1e-12);
}

#[test]
fn eval_far_away_samples_are_not_high_quality() {
    let ring = Mixture::ring8();
    // The origin is 2 from every mode = 100 std; (10, 10) is further still; NaN never counts.
    let s = t(&[[0.0, 0.0], [10.0, 10.0], [1.0, 0.0], [f32::NAN, 0.0]]);
    let m = mode_coverage(&s, ring.modes(), ring.std()).unwrap();
    assert_eq!(m.high_quality_fraction, 0.0);
    assert_eq!(m.modes_captured, 0);
    assert_eq!(m.counts, vec![0; 8]);
    assert!((m.kl_to_uniform - 8f64.ln()).abs() < 1e-12);
    // Shape mismatch is an error, not a panic.
    let bad = Tensor::from_vec(vec![0f32; 6], [2, 3], &Device::Cpu).unwrap();
    assert!(mode_coverage(&bad, ring.modes(), ring.std()).is_err());
    assert!(mode_coverage(&s, ring.modes(), 0.0).is_err());
}

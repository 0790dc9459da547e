//! `duel trace`'s demo model: a small MLP whose tape the command prints, exports as DOT
//! and steps through (and `duel check` differentiates on each device).

use duel::autograd::no_grad;
use duel::device::Device;
use duel::error::Result;
use duel::tensor::Tensor;

/// A two-layer MLP and its loss, built for studying the tape (`duel trace`):
/// `x[8, 2] → matmul w1[2, 16] + b1 → relu → matmul w2[16, 1] + b2 → mean((· − y)²)`.
/// Inputs and parameters come from fixed Philox seeds, so every run prints the same tape.
pub struct MlpExample {
    pub loss: Tensor,
    /// (name, leaf) for w1, b1, w2, b2.
    pub params: Vec<(String, Tensor)>,
}

pub fn example_mlp(device: &Device) -> Result<MlpExample> {
    let param = |name: &str, shape: &[usize], seed: u64, scale: f64| -> Result<(String, Tensor)> {
        let t = no_grad(|| Tensor::randn(shape, seed, 0, device)?.mul_scalar(scale))?;
        Ok((name.to_string(), t.with_requires_grad_named(name)))
    };
    let params = vec![
        param("w1", &[2, 16], 11, 0.7)?,
        param("b1", &[16], 12, 0.1)?,
        param("w2", &[16, 1], 13, 0.25)?,
        param("b2", &[1], 14, 0.1)?,
    ];
    let [w1, b1, w2, b2] = [&params[0].1, &params[1].1, &params[2].1, &params[3].1];
    let x = Tensor::randn([8, 2], 15, 0, device)?;
    let y = Tensor::rand([8, 1], 16, 0, device)?;
    let hidden = x.matmul(w1)?.add(b1)?.relu()?;
    let out = hidden.matmul(w2)?.add(b2)?;
    let loss = out.sub(&y)?.powf(2.0)?.mean_all()?;
    Ok(MlpExample { loss, params })
}

//! Adam (`torch.optim.Adam` semantics, L2 weight decay, no amsgrad).

use super::{
    check_loaded_names, check_param, f32_arg, flag, launch_1d, loaded_buffer, missing,
    non_negative, param_grad, ptr, slice, slice_mut, zeros_like, Optimizer, ParamGroup, Real,
    UPDATE_RUN,
};
use crate::device::simt::Arg;
use crate::error::{Error, Result};
use crate::tensor::{DType, Tensor};
use rayon::prelude::*;

/// Hyper-parameters of [`Adam`]; defaults as PyTorch (β = (0.9, 0.999), eps 1e-8, no
/// weight decay). DCGAN used lr 2e-4, β1 0.5.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamConfig {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl AdamConfig {
    pub fn new(lr: f64) -> Self {
        AdamConfig {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }
    pub fn betas(self, beta1: f64, beta2: f64) -> Self {
        AdamConfig {
            beta1,
            beta2,
            ..self
        }
    }
    pub fn eps(self, eps: f64) -> Self {
        AdamConfig { eps, ..self }
    }
    pub fn weight_decay(self, weight_decay: f64) -> Self {
        AdamConfig {
            weight_decay,
            ..self
        }
    }
}

/// Adam over one parameter group. Per element at the parameter's update number `t`
/// (1, 2, …), with `d = g + weight_decay·p`:
/// `m = β1·m + (1−β1)·d`, `v = β2·v + (1−β2)·d²`,
/// `p −= step_size · m / (√v / bc2_sqrt + eps)` where the host computes, in f64,
/// `step_size = lr / (1 − β1^t)` and `bc2_sqrt = √(1 − β2^t)` (PyTorch's arrangement of
/// `m̂ / (√v̂ + eps)`).
///
/// PyTorch ≥ 1.13 writes the first moment as `m.lerp_(d, 1 − β1)` (= `m + (1−β1)·(d − m)`);
/// that differs from `β1·m + (1−β1)·d` by rounding only (an ulp of m), not in value.
pub struct Adam {
    config: AdamConfig,
    group: ParamGroup,
    /// `(exp_avg, exp_avg_sq)` per parameter, after its first update.
    moments: Vec<Option<(Tensor, Tensor)>>,
}

impl Adam {
    pub fn new(params: Vec<Tensor>, config: AdamConfig) -> Result<Adam> {
        let c = &config;
        if !non_negative(c.lr)
            || !non_negative(c.eps)
            || !non_negative(c.weight_decay)
            || !(0.0..1.0).contains(&c.beta1)
            || !(0.0..1.0).contains(&c.beta2)
        {
            return Err(Error::invalid(format!(
                "Adam: need lr, eps, weight_decay >= 0 and betas in [0, 1), got {config:?}"
            )));
        }
        let group = ParamGroup::new("Adam", params)?;
        let n = group.len();
        Ok(Adam {
            config,
            group,
            moments: vec![None; n],
        })
    }

    pub fn config(&self) -> &AdamConfig {
        &self.config
    }
}

/// The host-side scalars of update number `t`: `(step_size, bc2_sqrt)`.
fn corrections(c: &AdamConfig, t: u64) -> (f64, f64) {
    // `powf` is C's pow, as Python's `beta ** step` in torch.optim.Adam.
    let bc1 = 1.0 - c.beta1.powf(t as f64);
    let bc2 = 1.0 - c.beta2.powf(t as f64);
    (c.lr / bc1, bc2.sqrt())
}

#[allow(clippy::too_many_arguments)]
fn update<T: Real + bytemuck::Pod + Send + Sync>(
    c: &AdamConfig,
    step_size: f64,
    bc2_sqrt: f64,
    p: &mut [T],
    g: &[T],
    m: &mut [T],
    v: &mut [T],
) {
    let b1 = T::from_f64(c.beta1);
    let omb1 = T::from_f64(1.0 - c.beta1);
    let b2 = T::from_f64(c.beta2);
    let omb2 = T::from_f64(1.0 - c.beta2);
    let step_size = T::from_f64(step_size);
    let bc2_sqrt = T::from_f64(bc2_sqrt);
    let eps = T::from_f64(c.eps);
    let wd = T::from_f64(c.weight_decay);
    let has_wd = c.weight_decay != 0.0;
    let run = |p: &mut [T], g: &[T], m: &mut [T], v: &mut [T]| {
        for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
            let d = if has_wd { g + wd * *p } else { g };
            let mi = b1 * *m + omb1 * d;
            let vi = b2 * *v + omb2 * (d * d);
            *m = mi;
            *v = vi;
            let denom = vi.sqrt() / bc2_sqrt + eps;
            *p = *p - step_size * (mi / denom);
        }
    };
    // Every element is updated on its own, so splitting the tensor over the pool changes
    // no bit; one thread updating them all was 0.5% of a dcgan28 step with the other idle.
    if p.len() < 2 * UPDATE_RUN {
        return run(p, g, m, v);
    }
    p.par_chunks_mut(UPDATE_RUN)
        .zip(g.par_chunks(UPDATE_RUN))
        .zip(m.par_chunks_mut(UPDATE_RUN))
        .zip(v.par_chunks_mut(UPDATE_RUN))
        .for_each(|(((p, g), m), v)| run(p, g, m, v));
}

impl Optimizer for Adam {
    fn step(&mut self) -> Result<()> {
        let _p = crate::profile::update("adam");
        const OP: &str = "Adam";
        let c = self.config;
        for (i, p) in self.group.params.iter().enumerate() {
            check_param(OP, i, p)?;
            let Some(g) = param_grad(OP, i, p)? else {
                continue;
            };
            if self.moments[i].is_none() {
                self.moments[i] = Some((zeros_like(p)?, zeros_like(p)?));
            }
            let (m, v) = self.moments[i].as_ref().expect("created above");
            let t = self.group.param_steps[i].unwrap_or(0) + 1;
            let (step_size, bc2_sqrt) = corrections(&c, t);
            match p.device().simt() {
                None => {
                    let mut pb = p.cpu_buffer_mut(OP)?;
                    let gb = g.cpu_buffer(OP)?;
                    let mut mb = m.cpu_buffer_mut(OP)?;
                    let mut vb = v.cpu_buffer_mut(OP)?;
                    match p.dtype() {
                        DType::F32 => update::<f32>(
                            &c,
                            step_size,
                            bc2_sqrt,
                            slice_mut(&mut pb, p),
                            slice(&gb, &g),
                            slice_mut(&mut mb, m),
                            slice_mut(&mut vb, v),
                        ),
                        _ => update::<f64>(
                            &c,
                            step_size,
                            bc2_sqrt,
                            slice_mut(&mut pb, p),
                            slice(&gb, &g),
                            slice_mut(&mut mb, m),
                            slice_mut(&mut vb, v),
                        ),
                    }
                }
                Some(simt) => {
                    let n = p.numel();
                    launch_1d(
                        simt,
                        OP,
                        "adam_f32",
                        n,
                        &[
                            Arg::ptr(ptr(OP, p)?),
                            Arg::ptr(ptr(OP, &g)?),
                            Arg::ptr(ptr(OP, m)?),
                            Arg::ptr(ptr(OP, v)?),
                            Arg::val(n as i32),
                            f32_arg(c.beta1),
                            f32_arg(1.0 - c.beta1),
                            f32_arg(c.beta2),
                            f32_arg(1.0 - c.beta2),
                            f32_arg(step_size),
                            f32_arg(bc2_sqrt),
                            f32_arg(c.eps),
                            f32_arg(c.weight_decay),
                            flag(c.weight_decay != 0.0),
                        ],
                    )?;
                }
            }
            self.group.param_steps[i] = Some(t);
        }
        self.group.steps += 1;
        Ok(())
    }

    fn group(&self) -> &ParamGroup {
        &self.group
    }
    fn lr(&self) -> f64 {
        self.config.lr
    }
    fn set_lr(&mut self, lr: f64) {
        self.config.lr = lr;
    }
    fn state(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        for (i, s) in self.moments.iter().enumerate() {
            if let Some((m, v)) = s {
                out.push((format!("{i}.exp_avg"), m.clone()));
                out.push((format!("{i}.exp_avg_sq"), v.clone()));
            }
        }
        out
    }
    fn load_state(
        &mut self,
        state: &[(String, Tensor)],
        param_steps: &[Option<u64>],
        steps: u64,
    ) -> Result<()> {
        const OP: &str = "Adam";
        check_loaded_names(
            OP,
            self.group.len(),
            state,
            param_steps,
            &["exp_avg", "exp_avg_sq"],
        )?;
        let mut moments = Vec::with_capacity(self.group.len());
        for (i, p) in self.group.params.iter().enumerate() {
            let m = loaded_buffer(OP, state, i, "exp_avg", p)?;
            let v = loaded_buffer(OP, state, i, "exp_avg_sq", p)?;
            moments.push(match (m, v, param_steps[i]) {
                (Some(m), Some(v), Some(_)) => Some((m, v)),
                (None, None, None) => None,
                (m, _, _) => {
                    let what = if m.is_none() { "exp_avg" } else { "exp_avg_sq" };
                    if param_steps[i].is_none() {
                        return Err(Error::invalid(format!(
                            "{OP}: the loaded state has moments for parameter #{i} but no step count"
                        )));
                    }
                    return Err(missing(OP, i, what));
                }
            });
        }
        self.moments = moments;
        self.group.restore(param_steps, steps);
        Ok(())
    }
}

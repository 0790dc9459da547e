//! RMSProp (`torch.optim.RMSprop` semantics, not centered) — WGAN's optimizer.

use super::{
    check_loaded_names, check_param, f32_arg, flag, launch_1d, loaded_buffer, missing,
    non_negative, param_grad, ptr, slice, slice_mut, zeros_like, Optimizer, ParamGroup, Real,
    UPDATE_RUN,
};
use crate::device::simt::Arg;
use crate::error::{Error, Result};
use crate::tensor::{DType, Tensor};
use rayon::prelude::*;

/// Hyper-parameters of [`RmsProp`]; defaults as PyTorch (alpha 0.99, eps 1e-8, no momentum,
/// no weight decay). WGAN: `RmsPropConfig::new(5e-5)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RmsPropConfig {
    pub lr: f64,
    pub alpha: f64,
    pub eps: f64,
    pub momentum: f64,
    pub weight_decay: f64,
}

impl RmsPropConfig {
    pub fn new(lr: f64) -> Self {
        RmsPropConfig {
            lr,
            alpha: 0.99,
            eps: 1e-8,
            momentum: 0.0,
            weight_decay: 0.0,
        }
    }
    pub fn alpha(self, alpha: f64) -> Self {
        RmsPropConfig { alpha, ..self }
    }
    pub fn eps(self, eps: f64) -> Self {
        RmsPropConfig { eps, ..self }
    }
    pub fn momentum(self, momentum: f64) -> Self {
        RmsPropConfig { momentum, ..self }
    }
    pub fn weight_decay(self, weight_decay: f64) -> Self {
        RmsPropConfig {
            weight_decay,
            ..self
        }
    }
}

/// RMSProp over one parameter group. Per element, with `d = g + weight_decay·p`:
/// `sq = α·sq + (1−α)·d²`, `a = √sq + eps`; without momentum `p −= lr·(d/a)`, with it
/// `buf = momentum·buf + d/a` (buf starts at 0) and `p −= lr·buf`.
pub struct RmsProp {
    config: RmsPropConfig,
    group: ParamGroup,
    /// `(square_avg, momentum_buffer)` per parameter, after its first update.
    states: Vec<Option<(Tensor, Option<Tensor>)>>,
}

impl RmsProp {
    pub fn new(params: Vec<Tensor>, config: RmsPropConfig) -> Result<RmsProp> {
        let c = &config;
        if !non_negative(c.lr)
            || !non_negative(c.eps)
            || !non_negative(c.weight_decay)
            || !non_negative(c.momentum)
            || !non_negative(c.alpha)
        {
            return Err(Error::invalid(format!(
                "RMSProp: need lr, alpha, eps, momentum, weight_decay >= 0, got {config:?}"
            )));
        }
        let group = ParamGroup::new("RMSProp", params)?;
        let n = group.len();
        Ok(RmsProp {
            config,
            group,
            states: vec![None; n],
        })
    }

    pub fn config(&self) -> &RmsPropConfig {
        &self.config
    }
}

fn update<T: Real + bytemuck::Pod + Send + Sync>(
    c: &RmsPropConfig,
    p: &mut [T],
    g: &[T],
    sq: &mut [T],
    buf: Option<&mut [T]>,
) {
    let lr = T::from_f64(c.lr);
    let alpha = T::from_f64(c.alpha);
    let oma = T::from_f64(1.0 - c.alpha);
    let eps = T::from_f64(c.eps);
    let mom = T::from_f64(c.momentum);
    let wd = T::from_f64(c.weight_decay);
    let has_wd = c.weight_decay != 0.0;
    let run = |p: &mut [T], g: &[T], sq: &mut [T], mut buf: Option<&mut [T]>| {
        for (i, ((p, &g), sq)) in p.iter_mut().zip(g).zip(sq.iter_mut()).enumerate() {
            let d = if has_wd { g + wd * *p } else { g };
            let s = alpha * *sq + oma * (d * d);
            *sq = s;
            let a = s.sqrt() + eps;
            let mut u = d / a;
            if let Some(buf) = buf.as_deref_mut() {
                u = mom * buf[i] + u;
                buf[i] = u;
            }
            *p = *p - lr * u;
        }
    };
    // Elementwise, so chunks on the pool change no bit (as Adam's).
    if p.len() < 2 * UPDATE_RUN {
        return run(p, g, sq, buf);
    }
    let chunks = p
        .par_chunks_mut(UPDATE_RUN)
        .zip(g.par_chunks(UPDATE_RUN))
        .zip(sq.par_chunks_mut(UPDATE_RUN));
    match buf {
        Some(buf) => chunks
            .zip(buf.par_chunks_mut(UPDATE_RUN))
            .for_each(|(((p, g), sq), b)| run(p, g, sq, Some(b))),
        None => chunks.for_each(|((p, g), sq)| run(p, g, sq, None)),
    }
}

impl Optimizer for RmsProp {
    fn step(&mut self) -> Result<()> {
        let _p = crate::profile::update("rmsprop");
        const OP: &str = "RMSProp";
        let c = self.config;
        let use_momentum = c.momentum != 0.0;
        for (i, p) in self.group.params.iter().enumerate() {
            check_param(OP, i, p)?;
            let Some(g) = param_grad(OP, i, p)? else {
                continue;
            };
            if self.states[i].is_none() {
                self.states[i] = Some((zeros_like(p)?, None));
            }
            let state = self.states[i].as_mut().expect("created above");
            // the momentum buffer starts at zero at the first update that uses it
            if use_momentum && state.1.is_none() {
                state.1 = Some(zeros_like(p)?);
            }
            let (sq, buf) = self.states[i].as_ref().expect("created above");
            let buf = if use_momentum { buf.as_ref() } else { None };
            match p.device().simt() {
                None => {
                    let mut pb = p.cpu_buffer_mut(OP)?;
                    let gb = g.cpu_buffer(OP)?;
                    let mut sb = sq.cpu_buffer_mut(OP)?;
                    let mut bb = match buf {
                        Some(b) => Some(b.cpu_buffer_mut(OP)?),
                        None => None,
                    };
                    match p.dtype() {
                        DType::F32 => update::<f32>(
                            &c,
                            slice_mut(&mut pb, p),
                            slice(&gb, &g),
                            slice_mut(&mut sb, sq),
                            bb.as_mut().zip(buf).map(|(b, t)| slice_mut::<f32>(b, t)),
                        ),
                        _ => update::<f64>(
                            &c,
                            slice_mut(&mut pb, p),
                            slice(&gb, &g),
                            slice_mut(&mut sb, sq),
                            bb.as_mut().zip(buf).map(|(b, t)| slice_mut::<f64>(b, t)),
                        ),
                    }
                }
                Some(simt) => {
                    let n = p.numel();
                    let buf_ptr = match buf {
                        Some(b) => ptr(OP, b)?,
                        None => 0,
                    };
                    launch_1d(
                        simt,
                        OP,
                        "rmsprop_f32",
                        n,
                        &[
                            Arg::ptr(ptr(OP, p)?),
                            Arg::ptr(ptr(OP, &g)?),
                            Arg::ptr(ptr(OP, sq)?),
                            Arg::ptr(buf_ptr),
                            Arg::val(n as i32),
                            f32_arg(c.lr),
                            f32_arg(c.alpha),
                            f32_arg(1.0 - c.alpha),
                            f32_arg(c.eps),
                            f32_arg(c.momentum),
                            f32_arg(c.weight_decay),
                            flag(c.weight_decay != 0.0),
                            flag(use_momentum),
                        ],
                    )?;
                }
            }
            self.group.param_steps[i] = Some(self.group.param_steps[i].unwrap_or(0) + 1);
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
        for (i, s) in self.states.iter().enumerate() {
            if let Some((sq, buf)) = s {
                out.push((format!("{i}.square_avg"), sq.clone()));
                if let Some(b) = buf {
                    out.push((format!("{i}.momentum_buffer"), b.clone()));
                }
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
        const OP: &str = "RMSProp";
        check_loaded_names(
            OP,
            self.group.len(),
            state,
            param_steps,
            &["square_avg", "momentum_buffer"],
        )?;
        let mut states = Vec::with_capacity(self.group.len());
        for (i, p) in self.group.params.iter().enumerate() {
            let sq = loaded_buffer(OP, state, i, "square_avg", p)?;
            let buf = loaded_buffer(OP, state, i, "momentum_buffer", p)?;
            states.push(match (sq, param_steps[i]) {
                (Some(sq), Some(_)) => {
                    if buf.is_none() && self.config.momentum != 0.0 {
                        return Err(missing(OP, i, "momentum_buffer"));
                    }
                    Some((sq, buf))
                }
                (None, None) if buf.is_none() => None,
                _ => return Err(missing(OP, i, "square_avg")),
            });
        }
        self.states = states;
        self.group.restore(param_steps, steps);
        Ok(())
    }
}

//! Stochastic gradient descent with momentum (`torch.optim.SGD` semantics).

use super::{
    check_loaded_names, check_param, f32_arg, flag, launch_1d, loaded_buffer, missing,
    non_negative, param_grad, ptr, slice, slice_mut, zeros_like, Optimizer, ParamGroup, Real,
};
use crate::device::simt::Arg;
use crate::error::{Error, Result};
use crate::tensor::{DType, Tensor};

/// Hyper-parameters of [`Sgd`]; defaults as PyTorch (`lr` must be given).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SgdConfig {
    pub lr: f64,
    pub momentum: f64,
    pub dampening: f64,
    pub weight_decay: f64,
    pub nesterov: bool,
}

impl SgdConfig {
    pub fn new(lr: f64) -> Self {
        SgdConfig {
            lr,
            momentum: 0.0,
            dampening: 0.0,
            weight_decay: 0.0,
            nesterov: false,
        }
    }
    pub fn momentum(self, momentum: f64) -> Self {
        SgdConfig { momentum, ..self }
    }
    pub fn dampening(self, dampening: f64) -> Self {
        SgdConfig { dampening, ..self }
    }
    pub fn weight_decay(self, weight_decay: f64) -> Self {
        SgdConfig {
            weight_decay,
            ..self
        }
    }
    pub fn nesterov(self, nesterov: bool) -> Self {
        SgdConfig { nesterov, ..self }
    }
}

/// SGD over one parameter group. Per element, with `d = g + weight_decay·p`:
/// `buf = d` on the parameter's first update, else `buf = momentum·buf + (1 − dampening)·d`;
/// `d = nesterov ? d + momentum·buf : buf` (only when `momentum ≠ 0`); `p −= lr·d`.
pub struct Sgd {
    config: SgdConfig,
    group: ParamGroup,
    buffers: Vec<Option<Tensor>>,
}

impl Sgd {
    pub fn new(params: Vec<Tensor>, config: SgdConfig) -> Result<Sgd> {
        if !non_negative(config.lr)
            || !non_negative(config.momentum)
            || !non_negative(config.weight_decay)
        {
            return Err(Error::invalid(format!(
                "SGD: lr, momentum and weight_decay must be >= 0, got {config:?}"
            )));
        }
        if config.nesterov && (config.momentum <= 0.0 || config.dampening != 0.0) {
            return Err(Error::invalid(
                "SGD: nesterov momentum requires momentum > 0 and dampening = 0",
            ));
        }
        let group = ParamGroup::new("SGD", params)?;
        let n = group.len();
        Ok(Sgd {
            config,
            group,
            buffers: vec![None; n],
        })
    }

    pub fn config(&self) -> &SgdConfig {
        &self.config
    }
}

fn update<T: Real + bytemuck::Pod>(
    c: &SgdConfig,
    p: &mut [T],
    g: &[T],
    buf: Option<&mut [T]>,
    first: bool,
) {
    let lr = T::from_f64(c.lr);
    let mom = T::from_f64(c.momentum);
    let omd = T::from_f64(1.0 - c.dampening);
    let wd = T::from_f64(c.weight_decay);
    let has_wd = c.weight_decay != 0.0;
    match buf {
        None => {
            for (p, &g) in p.iter_mut().zip(g) {
                let d = if has_wd { g + wd * *p } else { g };
                *p = *p - lr * d;
            }
        }
        Some(buf) => {
            for ((p, &g), b) in p.iter_mut().zip(g).zip(buf.iter_mut()) {
                let mut d = if has_wd { g + wd * *p } else { g };
                let nb = if first { d } else { mom * *b + omd * d };
                *b = nb;
                d = if c.nesterov { d + mom * nb } else { nb };
                *p = *p - lr * d;
            }
        }
    }
}

impl Optimizer for Sgd {
    fn step(&mut self) -> Result<()> {
        let _p = crate::profile::update("sgd");
        const OP: &str = "SGD";
        let c = self.config;
        let use_momentum = c.momentum != 0.0;
        for (i, p) in self.group.params.iter().enumerate() {
            check_param(OP, i, p)?;
            let Some(g) = param_grad(OP, i, p)? else {
                continue;
            };
            // PyTorch: the buffer starts as a copy of d when the parameter has none yet
            let first = self.buffers[i].is_none();
            if use_momentum && self.buffers[i].is_none() {
                self.buffers[i] = Some(zeros_like(p)?);
            }
            let buf = if use_momentum {
                self.buffers[i].as_ref()
            } else {
                None
            };
            match p.device().simt() {
                None => {
                    let mut pb = p.cpu_buffer_mut(OP)?;
                    let gb = g.cpu_buffer(OP)?;
                    let mut bb = match buf {
                        Some(b) => Some(b.cpu_buffer_mut(OP)?),
                        None => None,
                    };
                    match p.dtype() {
                        DType::F32 => update::<f32>(
                            &c,
                            slice_mut(&mut pb, p),
                            slice(&gb, &g),
                            bb.as_mut().zip(buf).map(|(b, t)| slice_mut::<f32>(b, t)),
                            first,
                        ),
                        _ => update::<f64>(
                            &c,
                            slice_mut(&mut pb, p),
                            slice(&gb, &g),
                            bb.as_mut().zip(buf).map(|(b, t)| slice_mut::<f64>(b, t)),
                            first,
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
                        "sgd_f32",
                        n,
                        &[
                            Arg::ptr(ptr(OP, p)?),
                            Arg::ptr(ptr(OP, &g)?),
                            Arg::ptr(buf_ptr),
                            Arg::val(n as i32),
                            f32_arg(c.lr),
                            f32_arg(c.momentum),
                            f32_arg(1.0 - c.dampening),
                            f32_arg(c.weight_decay),
                            flag(c.weight_decay != 0.0),
                            flag(use_momentum),
                            flag(c.nesterov),
                            flag(first),
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
        self.buffers
            .iter()
            .enumerate()
            .filter_map(|(i, b)| b.clone().map(|b| (format!("{i}.momentum_buffer"), b)))
            .collect()
    }
    fn load_state(
        &mut self,
        state: &[(String, Tensor)],
        param_steps: &[Option<u64>],
        steps: u64,
    ) -> Result<()> {
        const OP: &str = "SGD";
        check_loaded_names(
            OP,
            self.group.len(),
            state,
            param_steps,
            &["momentum_buffer"],
        )?;
        let mut buffers = Vec::with_capacity(self.group.len());
        for (i, p) in self.group.params.iter().enumerate() {
            let b = loaded_buffer(OP, state, i, "momentum_buffer", p)?;
            if b.is_none() && param_steps[i].is_some() && self.config.momentum != 0.0 {
                return Err(missing(OP, i, "momentum_buffer"));
            }
            buffers.push(b);
        }
        self.buffers = buffers;
        self.group.restore(param_steps, steps);
        Ok(())
    }
}

//! PyTorch-shaped layers over the recorded ops: [`Linear`], [`Conv2d`],
//! [`ConvTranspose2d`], [`BatchNorm1d`]/[`BatchNorm2d`], [`InstanceNorm2d`], [`ReLU`],
//! [`LeakyReLU`], [`Tanh`], [`Sigmoid`], [`Dropout`], [`Reshape`] and [`Sequential`];
//! initialisers in [`init`].
//!
//! # Naming (PyTorch's `state_dict`)
//! * Parameters are leaves (`with_requires_grad_named`) held by the layer; an optimizer
//!   updates them in place (their storage), so the layer sees the new values.
//!   A layer's parameters are `weight` and `bias`; inside a [`Sequential`] child `i`
//!   prefixes its names with `"i."` (`0.weight`, `1.running_mean`), nested Sequentials
//!   compose (`0.1.weight`). The leaves' trace names are the full names.
//! * Buffers are `running_mean`, `running_var` (f32, on the module's device) and
//!   `num_batches_tracked` — a **cpu f64 scalar** (shape `[]`, exact to 2^53) counting the
//!   training-mode forwards, as PyTorch's int64 buffer. [`crate::io::checkpoint`] writes it
//!   as safetensors `I64` in model checkpoints so PyTorch's `load_state_dict(strict=True)`
//!   accepts the file; reading an `I64` gives back an f64 tensor.
//! * [`state_dict`] lists entries in PyTorch's order (per module: parameters, then
//!   buffers; children in order). [`load_state_dict`] checks keys and shapes first and
//!   reports every missing key, unexpected key and shape mismatch in one error, then
//!   copies the values in place (converted to each destination's dtype and device).

pub mod init;
mod layers;
mod norm;
mod simple;

pub use init::ParamRng;
pub use layers::{
    Conv2d, Conv2dOptions, ConvTranspose2d, ConvTranspose2dOptions, Linear, LinearOptions,
};
pub use norm::{BatchNorm1d, BatchNorm2d, InstanceNorm2d};
pub use simple::{Dropout, LeakyReLU, ReLU, ReflectionPad2d, Reshape, Sigmoid, Tanh};

use std::collections::{BTreeMap, HashMap};

use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// A layer or a container of layers.
pub trait Module: Send + Sync {
    fn forward(&self, x: &Tensor) -> Result<Tensor>;
    /// Named parameters (PyTorch names, including the prefix given by a container).
    fn parameters(&self) -> Vec<(String, Tensor)> {
        Vec::new()
    }
    /// Named buffers (not trained: running statistics, counters).
    fn buffers(&self) -> Vec<(String, Tensor)> {
        Vec::new()
    }
    /// Parameters then buffers in PyTorch's `state_dict` order.
    fn state_entries(&self) -> Vec<(String, Tensor)> {
        let mut v = self.parameters();
        v.extend(self.buffers());
        v
    }
    /// Training (batch statistics, dropout active) or eval mode.
    fn set_training(&mut self, _training: bool) {}
    fn is_training(&self) -> bool {
        true
    }
    /// Set the name prefix (`"0."`, `"1.2."`, or `""`) of this module's entries; containers
    /// call it on their children. Parameters are re-made as leaves with the full names.
    fn set_prefix(&mut self, _prefix: &str) {}
    /// A short description (`Linear(100, 6272)`).
    fn describe(&self) -> String;
}

/// Re-make a parameter leaf with a new trace name (same storage).
pub(crate) fn rename_leaf(t: &Tensor, name: String) -> Tensor {
    t.detach().with_requires_grad_named(name)
}

/// Children run in order; child `i`'s entries are named `"i.<name>"`.
pub struct Sequential {
    children: Vec<Box<dyn Module>>,
    prefix: String,
    training: bool,
}

impl Sequential {
    pub fn new(children: Vec<Box<dyn Module>>) -> Self {
        let mut s = Sequential {
            children,
            prefix: String::new(),
            training: true,
        };
        s.set_prefix("");
        s
    }
    /// Append a child (it becomes `len()`).
    pub fn push(&mut self, child: Box<dyn Module>) {
        self.children.push(child);
        let p = self.prefix.clone();
        self.set_prefix(&p);
    }
    pub fn len(&self) -> usize {
        self.children.len()
    }
    pub fn is_empty(&self) -> bool {
        self.children.is_empty()
    }
    pub fn children(&self) -> &[Box<dyn Module>] {
        &self.children
    }
}

impl Module for Sequential {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut h = x.clone();
        for c in &self.children {
            h = c.forward(&h)?;
        }
        Ok(h)
    }
    fn parameters(&self) -> Vec<(String, Tensor)> {
        self.children.iter().flat_map(|c| c.parameters()).collect()
    }
    fn buffers(&self) -> Vec<(String, Tensor)> {
        self.children.iter().flat_map(|c| c.buffers()).collect()
    }
    fn state_entries(&self) -> Vec<(String, Tensor)> {
        self.children
            .iter()
            .flat_map(|c| c.state_entries())
            .collect()
    }
    fn set_training(&mut self, training: bool) {
        self.training = training;
        for c in &mut self.children {
            c.set_training(training);
        }
    }
    fn is_training(&self) -> bool {
        self.training
    }
    fn set_prefix(&mut self, prefix: &str) {
        self.prefix = prefix.to_string();
        for (i, c) in self.children.iter_mut().enumerate() {
            c.set_prefix(&format!("{prefix}{i}."));
        }
    }
    fn describe(&self) -> String {
        let inner: Vec<String> = self
            .children
            .iter()
            .enumerate()
            .map(|(i, c)| format!("  ({i}): {}", c.describe()))
            .collect();
        format!("Sequential(\n{}\n)", inner.join("\n"))
    }
}

/// The module's parameters and buffers by PyTorch name, in `state_dict` order.
pub fn state_dict(module: &dyn Module) -> Vec<(String, Tensor)> {
    module.state_entries()
}

/// [`state_dict`] as a map.
pub fn state_dict_map(module: &dyn Module) -> HashMap<String, Tensor> {
    module.state_entries().into_iter().collect()
}

/// Copy `entries` into the module's parameters and buffers, in place. Every key must
/// match exactly (PyTorch's `strict=True`); all problems (missing keys, unexpected keys,
/// shape mismatches naming the tensor and both shapes) are reported in one error before
/// anything is written.
pub fn load_state_dict(module: &dyn Module, entries: &HashMap<String, Tensor>) -> Result<()> {
    let own = module.state_entries();
    let own_names: BTreeMap<&str, &Tensor> = own.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let mut missing = Vec::new();
    let mut mismatched = Vec::new();
    for (name, dst) in &own {
        match entries.get(name) {
            None => missing.push(name.clone()),
            Some(src) => {
                if src.dims() != dst.dims() {
                    mismatched.push(format!(
                        "{name}: the checkpoint has shape {} but the model has {}",
                        src.shape(),
                        dst.shape()
                    ));
                }
            }
        }
    }
    let mut unexpected: Vec<String> = entries
        .keys()
        .filter(|k| !own_names.contains_key(k.as_str()))
        .cloned()
        .collect();
    unexpected.sort();
    if !missing.is_empty() || !unexpected.is_empty() || !mismatched.is_empty() {
        let mut parts = Vec::new();
        if !missing.is_empty() {
            parts.push(format!("missing keys: {}", missing.join(", ")));
        }
        if !unexpected.is_empty() {
            parts.push(format!("unexpected keys: {}", unexpected.join(", ")));
        }
        if !mismatched.is_empty() {
            parts.push(format!("shape mismatch: {}", mismatched.join("; ")));
        }
        return Err(Error::invalid(format!(
            "load_state_dict: {}",
            parts.join("; ")
        )));
    }
    for (name, dst) in &own {
        init::assign(dst, &entries[name])
            .map_err(|e| Error::invalid(format!("load_state_dict: could not copy {name}: {e}")))?;
    }
    Ok(())
}

/// Set every parameter's gradient to none.
pub fn zero_grad(module: &dyn Module) {
    for (_, p) in module.parameters() {
        p.zero_grad();
    }
}

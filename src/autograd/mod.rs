//! Reverse-mode automatic differentiation, small enough to read in one sitting.
//!
//! **Recording.** Every op computes its output first, then calls [`record`]. If gradients
//! are enabled and some input requires a gradient, `record` appends a [`Node`] to the tape:
//! the op's name, an [`Edge`] per input (where that input's gradient must go), and a
//! [`Backward`] value holding exactly what the op's hand-written backward rule needs. The
//! output tensor points at its node. Leaves made with [`Tensor::with_requires_grad`] point
//! at a [`Leaf`], whose `.grad` accumulates.
//!
//! **The tape.** Nodes are numbered in creation order from one global counter. An op's
//! inputs always exist before it runs, so sorting the nodes reachable from a loss by
//! descending number is a valid reverse topological order: that sorted list *is* the
//! Wengert list of the loss, walked backwards ([`tape`] returns it, [`trace`] prints it).
//! Recording (`record`, the node types, `no_grad`, `freeze`) is written in
//! `crate::tensor::tape`, below the ops that call it, and re-exported here; this module
//! holds what reads the tape: the backward walk, gradcheck and the trace.
//!
//! **Backward.** [`Tensor::backward`] seeds the loss with 1, visits the reachable nodes from
//! last to first, hands each its output gradient, and routes the gradients it returns to
//! the nodes or leaves its inputs came from, summing where paths meet (a parameter used
//! twice gets both contributions). Each node's saved tensors are dropped as soon as its
//! rule has run. Backward rules run with recording off: this engine is first-order.
//!
//! **Semantics GAN training relies on.** [`no_grad`] records nothing; [`Tensor::detach`]
//! cuts the graph, so the discriminator step on `G(z).detach()` never reaches G's leaves;
//! gradients accumulate across backward calls until [`Tensor::zero_grad`]; a leaf created
//! without `with_requires_grad` never receives a gradient; [`freeze`] makes some leaves act
//! as constants for a while (the generator step freezes the discriminator, so backward
//! computes no discriminator weight gradients: PyTorch's `requires_grad_(False)`).

pub mod gradcheck;
pub mod trace;

pub use trace::{tape, TapeEntry};
// The recording half of the tape sits below the ops, which call it (see its doc).
pub use crate::tensor::tape::{
    freeze, is_grad_enabled, memory, no_grad, record, reset_peak_memory, save, Backward, Edge,
    FreezeGuard, Leaf, MemoryStats, NoGradGuard, Node, NodeInput,
};

use crate::error::{Error, Result};
use crate::profile;
use crate::tensor::tape::lock;
use crate::tensor::Tensor;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

impl Tensor {
    /// The gradient accumulated in a leaf (None before any backward, after `zero_grad`,
    /// and always for tensors that are not leaves).
    pub fn grad(&self) -> Option<Tensor> {
        match self.edge() {
            Edge::Leaf(leaf) => lock(&leaf.grad).clone(),
            _ => None,
        }
    }

    /// Forget a leaf's accumulated gradient.
    pub fn zero_grad(&self) {
        if let Edge::Leaf(leaf) = self.edge() {
            *lock(&leaf.grad) = None;
        }
    }

    /// Backpropagate from a one-element tensor (a loss), seeding its gradient with 1.
    pub fn backward(&self) -> Result<()> {
        if self.numel() != 1 {
            return Err(Error::shape(
                "backward",
                format!(
                    "backward() needs a one-element loss, got shape {}; reduce it (e.g. .mean_all()) or use backward_with(grad)",
                    self.shape()
                ),
            ));
        }
        let seed = no_grad(|| Tensor::ones(self.shape().clone(), self.dtype(), self.device()))?;
        self.backward_with(&seed)
    }

    /// Backpropagate `grad` (the gradient of some scalar with respect to `self`).
    pub fn backward_with(&self, grad: &Tensor) -> Result<()> {
        if grad.shape() != self.shape() || grad.dtype() != self.dtype() {
            return Err(Error::shape(
                "backward",
                format!(
                    "the seed gradient is {} {} but the tensor is {} {}",
                    grad.shape(),
                    grad.dtype(),
                    self.shape(),
                    self.dtype()
                ),
            ));
        }
        let _guard = NoGradGuard::new();
        let grad = grad.detach();
        match self.edge() {
            Edge::None => Err(Error::invalid(
                "backward() on a tensor that does not require grad: none of the tensors it was \
                 computed from was made with .with_requires_grad(), or it was detached or computed under no_grad",
            )),
            Edge::Leaf(leaf) => accumulate_leaf(leaf, grad),
            Edge::Node(root) => run_backward(root, grad),
        }
    }
}

fn accumulate_leaf(leaf: &Leaf, grad: Tensor) -> Result<()> {
    let mut slot = lock(&leaf.grad);
    *slot = Some(match slot.take() {
        Some(sum) => sum.add(&grad)?,
        None => grad,
    });
    Ok(())
}

/// The nodes reachable from `root`, last-recorded first: the tape walked backwards.
pub(crate) fn reachable_nodes(root: &Arc<Node>) -> Vec<Arc<Node>> {
    let mut seen = HashSet::new();
    let mut stack = vec![root.clone()];
    let mut nodes = Vec::new();
    while let Some(node) = stack.pop() {
        if !seen.insert(node.seq) {
            continue;
        }
        for input in &node.inputs {
            if let Edge::Node(parent) = &input.edge {
                stack.push(parent.clone());
            }
        }
        nodes.push(node);
    }
    nodes.sort_by_key(|n| std::cmp::Reverse(n.seq));
    nodes
}

fn run_backward(root: &Arc<Node>, seed: Tensor) -> Result<()> {
    let mut pending: HashMap<u64, Tensor> = HashMap::from([(root.seq, seed)]);
    for node in reachable_nodes(root) {
        let Some(grad_output) = pending.remove(&node.seq) else {
            continue; // no gradient reached this node (e.g. every path was detached)
        };
        let saved = lock(&node.rule).take().ok_or_else(|| {
            Error::invalid(format!(
                "backward ran through {} (tape #{}) a second time, but its saved tensors were \
                 freed after the first; run the forward pass again",
                node.op, node.seq
            ))
        })?;
        let grads = {
            let _p = profile::scope(node.op, profile::Direction::Backward);
            saved.rule.backward(&grad_output)?
        };
        drop(saved); // release what the op saved as soon as its rule has run
        if grads.len() != node.inputs.len() {
            return Err(Error::invalid(format!(
                "backward of {} returned {} gradients for {} inputs (a bug in its rule)",
                node.op,
                grads.len(),
                node.inputs.len()
            )));
        }
        // Summing gradients at fan-outs and into leaves is backward work, not forward adds.
        let _p = profile::scope("accumulate_grad", profile::Direction::Backward);
        for (input, grad) in node.inputs.iter().zip(grads) {
            let Some(grad) = grad else { continue };
            if grad.shape() != &input.shape || grad.dtype() != input.dtype {
                return Err(Error::shape(
                    "backward",
                    format!(
                        "the rule of {} gave a {} {} gradient for a {} {} input (a bug in its rule)",
                        node.op,
                        grad.shape(),
                        grad.dtype(),
                        input.shape,
                        input.dtype
                    ),
                ));
            }
            match &input.edge {
                Edge::None => {}
                Edge::Leaf(leaf) => accumulate_leaf(leaf, grad)?,
                Edge::Node(parent) => {
                    let sum = match pending.remove(&parent.seq) {
                        Some(sum) => sum.add(&grad)?,
                        None => grad,
                    };
                    pending.insert(parent.seq, sum);
                }
            }
        }
    }
    Ok(())
}

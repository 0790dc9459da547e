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
pub mod profile;
pub mod trace;

pub use trace::{tape, TapeEntry};

use crate::error::{Error, Result};
use crate::tensor::{DType, Shape, Tensor};
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// An op's hand-written backward rule and the tensors it saved for it.
pub trait Backward: Send + Sync + 'static {
    /// Given the gradient of the op's output, the gradient of each recorded input, in
    /// recording order (`None` where an input gets none). Each must have its input's
    /// shape and dtype. Runs with recording disabled.
    fn backward(&self, grad_output: &Tensor) -> Result<Vec<Option<Tensor>>>;
    /// Bytes of the tensors held for backward (shown by the trace, counted in [`memory`]).
    fn saved_bytes(&self) -> usize;
}

/// Where the gradient of a tensor goes.
#[derive(Clone, Default)]
pub enum Edge {
    /// Nowhere: a constant, a detached tensor, or anything computed under `no_grad`.
    #[default]
    None,
    /// Into a leaf's `.grad`.
    Leaf(Arc<Leaf>),
    /// Into the tape node of the op that produced the tensor.
    Node(Arc<Node>),
}

/// A tensor the user asked gradients for (a parameter, or an input under study).
pub struct Leaf {
    pub id: u64,
    pub name: String,
    pub shape: Shape,
    grad: Mutex<Option<Tensor>>,
}

/// One recorded op: an entry of the tape.
pub struct Node {
    /// Position on the tape (creation order).
    pub seq: u64,
    pub op: &'static str,
    pub inputs: Vec<NodeInput>,
    pub output_shape: Shape,
    pub output_dtype: DType,
    pub saved_bytes: usize,
    /// Taken (and so freed) when backward runs through this node.
    rule: Mutex<Option<SavedRule>>,
}

/// What a node knows about one of its inputs.
pub struct NodeInput {
    pub edge: Edge,
    pub shape: Shape,
    pub dtype: DType,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);
static SAVED_LIVE: AtomicUsize = AtomicUsize::new(0);
static SAVED_PEAK: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static NO_GRAD_DEPTH: Cell<u32> = const { Cell::new(0) };
    /// Leaf id → number of live [`FreezeGuard`]s on this thread that freeze it.
    static FROZEN: RefCell<HashMap<u64, u32>> = RefCell::new(HashMap::new());
}

fn next_id() -> u64 {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

/// A backward rule plus the bookkeeping of the bytes it keeps alive.
struct SavedRule {
    rule: Box<dyn Backward>,
    bytes: usize,
}

impl SavedRule {
    fn new(rule: Box<dyn Backward>) -> Self {
        let bytes = rule.saved_bytes();
        let live = SAVED_LIVE.fetch_add(bytes, Ordering::Relaxed) + bytes;
        SAVED_PEAK.fetch_max(live, Ordering::Relaxed);
        SavedRule { rule, bytes }
    }
}

impl Drop for SavedRule {
    fn drop(&mut self) {
        SAVED_LIVE.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

/// Bytes held for backward by all live tape nodes, and the peak since the last reset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryStats {
    pub saved_bytes_live: usize,
    pub saved_bytes_peak: usize,
}

pub fn memory() -> MemoryStats {
    MemoryStats {
        saved_bytes_live: SAVED_LIVE.load(Ordering::Relaxed),
        saved_bytes_peak: SAVED_PEAK.load(Ordering::Relaxed),
    }
}

/// Start measuring the peak again from what is live now.
pub fn reset_peak_memory() {
    SAVED_PEAK.store(SAVED_LIVE.load(Ordering::Relaxed), Ordering::Relaxed);
}

/// True unless inside [`no_grad`] on this thread.
pub fn is_grad_enabled() -> bool {
    NO_GRAD_DEPTH.with(|d| d.get() == 0)
}

/// While alive, ops on this thread record nothing.
pub struct NoGradGuard(());

impl NoGradGuard {
    pub fn new() -> Self {
        NO_GRAD_DEPTH.with(|d| d.set(d.get() + 1));
        NoGradGuard(())
    }
}

impl Default for NoGradGuard {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for NoGradGuard {
    fn drop(&mut self) {
        NO_GRAD_DEPTH.with(|d| d.set(d.get() - 1));
    }
}

/// Run `f` without recording anything on the tape.
pub fn no_grad<T>(f: impl FnOnce() -> T) -> T {
    let _guard = NoGradGuard::new();
    f()
}

/// While alive, the given leaves act as constants on this thread: they report
/// `requires_grad() == false`, ops record no edge to them, and rules skip their gradients
/// (a conv or matmul then skips its weight-gradient GEMM). Their `.grad` is left as it was.
/// Guards nest. Tensors that are not leaves are ignored.
#[must_use = "the leaves are frozen only while the guard is alive"]
pub struct FreezeGuard {
    ids: Vec<u64>,
}

/// Freeze `leaves` until the returned guard drops (see [`FreezeGuard`]).
pub fn freeze(leaves: &[Tensor]) -> FreezeGuard {
    let ids: Vec<u64> = leaves
        .iter()
        .filter_map(|t| match t.edge() {
            Edge::Leaf(leaf) => Some(leaf.id),
            _ => None,
        })
        .collect();
    FROZEN.with(|f| {
        let mut f = f.borrow_mut();
        for &id in &ids {
            *f.entry(id).or_insert(0) += 1;
        }
    });
    FreezeGuard { ids }
}

impl Drop for FreezeGuard {
    fn drop(&mut self) {
        FROZEN.with(|f| {
            let mut f = f.borrow_mut();
            for id in &self.ids {
                if let Some(n) = f.get_mut(id) {
                    *n -= 1;
                    if *n == 0 {
                        f.remove(id);
                    }
                }
            }
        });
    }
}

fn is_frozen(leaf: &Leaf) -> bool {
    FROZEN.with(|f| {
        let f = f.borrow();
        !f.is_empty() && f.contains_key(&leaf.id)
    })
}

/// A tensor to keep for backward: detached, so a saved output cannot hold its own node
/// alive in a cycle.
pub fn save(t: &Tensor) -> Tensor {
    t.detach()
}

/// Put `output` on the tape as the result of `op` applied to `inputs`, when gradients are
/// enabled and some input requires one. `make_rule` is only called in that case, so ops
/// save nothing when no gradient is wanted.
pub fn record<B: Backward>(
    op: &'static str,
    inputs: &[&Tensor],
    output: Tensor,
    make_rule: impl FnOnce() -> B,
) -> Tensor {
    if !is_grad_enabled() || !inputs.iter().any(|t| t.requires_grad()) {
        return output;
    }
    let rule = SavedRule::new(Box::new(make_rule()));
    let node = Node {
        seq: next_id(),
        op,
        inputs: inputs
            .iter()
            .map(|t| NodeInput {
                edge: if t.requires_grad() {
                    t.edge().clone()
                } else {
                    Edge::None
                },
                shape: t.shape().clone(),
                dtype: t.dtype(),
            })
            .collect(),
        output_shape: output.shape().clone(),
        output_dtype: output.dtype(),
        saved_bytes: rule.bytes,
        rule: Mutex::new(Some(rule)),
    };
    output.with_edge(Edge::Node(Arc::new(node)))
}

impl Tensor {
    /// A leaf sharing this data that requires a gradient (PyTorch's `requires_grad_()`).
    pub fn with_requires_grad(&self) -> Tensor {
        self.with_requires_grad_named("")
    }

    /// As [`Tensor::with_requires_grad`], with a name shown by the trace.
    pub fn with_requires_grad_named(&self, name: impl Into<String>) -> Tensor {
        let leaf = Leaf {
            id: next_id(),
            name: name.into(),
            shape: self.shape().clone(),
            grad: Mutex::new(None),
        };
        self.with_edge(Edge::Leaf(Arc::new(leaf)))
    }

    /// True for leaves that require a gradient (and are not [`freeze`]-frozen) and for
    /// results recorded on the tape.
    pub fn requires_grad(&self) -> bool {
        match self.edge() {
            Edge::None => false,
            Edge::Leaf(leaf) => !is_frozen(leaf),
            Edge::Node(_) => true,
        }
    }

    /// True for tensors made by `with_requires_grad` (they accumulate `.grad`).
    pub fn is_leaf(&self) -> bool {
        matches!(self.edge(), Edge::Leaf(_))
    }

    /// The same data, cut from the graph: no gradient flows through it.
    pub fn detach(&self) -> Tensor {
        self.with_edge(Edge::None)
    }

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

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
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

//! The tape's recording half, the part every op calls: an op computes its output, then
//! [`record`]s it with its inputs' [`Edge`]s and a [`Backward`] rule. It lives with
//! `Tensor` (which holds an `Edge`) so that ops depend on nothing above them; the backward
//! walk, gradcheck and trace that read the tape live in `crate::autograd`, above the ops.
//! The whole story of the tape is told in `crate::autograd`'s module doc.

use crate::error::Result;
use crate::tensor::{DType, Shape, Tensor};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
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
    pub(crate) grad: Mutex<Option<Tensor>>,
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
    pub(crate) rule: Mutex<Option<SavedRule>>,
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
pub(crate) struct SavedRule {
    pub(crate) rule: Box<dyn Backward>,
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
}

/// A poisoned lock still holds valid data here (a panicking rule leaves no half-written
/// gradient), so take it.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

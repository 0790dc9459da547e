//! Shapes, strides and layouts. Conventions follow PyTorch: row-major (C order)
//! contiguous strides, images as NCHW, broadcasting aligned from the trailing dim.

use crate::error::{Error, Result};
use std::fmt;

/// The largest rank a tensor may have. Kernels receive layouts as a fixed-size
/// struct (`TensorLayout` in kernels/common.cuh), so the limit is shared with them.
pub const MAX_RANK: usize = 6;

#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct Shape(Vec<usize>);

impl Shape {
    pub fn new(dims: impl Into<Vec<usize>>) -> Self {
        Shape(dims.into())
    }
    pub fn scalar() -> Self {
        Shape(Vec::new())
    }
    pub fn dims(&self) -> &[usize] {
        &self.0
    }
    pub fn rank(&self) -> usize {
        self.0.len()
    }
    pub fn numel(&self) -> usize {
        self.0.iter().product()
    }
    /// The element count, or None when it does not fit a `usize` (shapes from files and
    /// flags reach creation ops before anything checks them).
    pub fn checked_numel(&self) -> Option<usize> {
        self.0.iter().try_fold(1usize, |a, &d| a.checked_mul(d))
    }
    pub fn dim(&self, axis: usize) -> usize {
        self.0[axis]
    }
    /// Row-major strides (in elements) of a contiguous tensor of this shape.
    pub fn contiguous_strides(&self) -> Vec<usize> {
        let mut strides = vec![1usize; self.rank()];
        for i in (0..self.rank().saturating_sub(1)).rev() {
            strides[i] = strides[i + 1] * self.0[i + 1];
        }
        strides
    }
    /// Resolve a possibly negative axis (`-1` is the last) for an op named `op`.
    pub fn axis(&self, op: &'static str, axis: isize) -> Result<usize> {
        let rank = self.rank() as isize;
        let resolved = if axis < 0 { axis + rank } else { axis };
        if resolved < 0 || resolved >= rank {
            return Err(Error::shape(
                op,
                format!("axis {axis} is out of range for shape {self} (rank {rank})"),
            ));
        }
        Ok(resolved as usize)
    }
    /// The shape two operands broadcast to (NumPy/PyTorch rules).
    pub fn broadcast(op: &'static str, a: &Shape, b: &Shape) -> Result<Shape> {
        let rank = a.rank().max(b.rank());
        // Dim i of an operand counted from the right; missing leading dims are 1.
        let dim = |s: &Shape, i: usize| {
            if i < rank - s.rank() {
                1
            } else {
                s.0[i - (rank - s.rank())]
            }
        };
        let mut out = Vec::with_capacity(rank);
        for i in 0..rank {
            let (da, db) = (dim(a, i), dim(b, i));
            out.push(match (da, db) {
                (x, y) if x == y => x,
                (1, y) => y,
                (x, 1) => x,
                _ => {
                    return Err(Error::shape(
                        op,
                        format!("shapes {a} and {b} cannot be broadcast (dim {i}: {da} vs {db})"),
                    ))
                }
            });
        }
        Ok(Shape(out))
    }
}

impl From<Vec<usize>> for Shape {
    fn from(v: Vec<usize>) -> Self {
        Shape(v)
    }
}
impl From<&[usize]> for Shape {
    fn from(v: &[usize]) -> Self {
        Shape(v.to_vec())
    }
}
impl<const N: usize> From<[usize; N]> for Shape {
    fn from(v: [usize; N]) -> Self {
        Shape(v.to_vec())
    }
}
impl From<&Shape> for Shape {
    fn from(s: &Shape) -> Self {
        s.clone()
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[")?;
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                write!(f, ", ")?;
            }
            write!(f, "{d}")?;
        }
        write!(f, "]")
    }
}
impl fmt::Debug for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Where a tensor's elements sit in its storage: element `idx` (a multi-index) lives at
/// `offset + Σ idx[i]·strides[i]`. Strides are in elements; a stride of 0 broadcasts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    pub shape: Shape,
    pub strides: Vec<usize>,
    pub offset: usize,
}

impl Layout {
    pub fn contiguous(shape: impl Into<Shape>) -> Self {
        let shape = shape.into();
        let strides = shape.contiguous_strides();
        Layout {
            shape,
            strides,
            offset: 0,
        }
    }
    pub fn is_contiguous(&self) -> bool {
        let mut expected = 1;
        for (&d, &s) in self.shape.dims().iter().zip(&self.strides).rev() {
            if d != 1 && s != expected {
                return false;
            }
            expected *= d;
        }
        true
    }
    pub fn numel(&self) -> usize {
        self.shape.numel()
    }
    /// One past the largest storage index this layout touches (0 when empty).
    pub fn storage_span(&self) -> usize {
        if self.numel() == 0 {
            return 0;
        }
        self.offset
            + self
                .shape
                .dims()
                .iter()
                .zip(&self.strides)
                .map(|(&d, &s)| (d - 1) * s)
                .sum::<usize>()
            + 1
    }
    /// Storage index of every element, in row-major order of the logical shape.
    pub fn indices(&self) -> StridedIndices<'_> {
        StridedIndices::new(self)
    }
    /// Swap two axes (a view).
    pub fn transpose(&self, a: usize, b: usize) -> Layout {
        let mut out = self.clone();
        let mut dims = out.shape.0.clone();
        dims.swap(a, b);
        out.shape = Shape(dims);
        out.strides.swap(a, b);
        out
    }
    /// Reorder axes: output axis i is input axis `perm[i]` (a view).
    pub fn permute(&self, op: &'static str, perm: &[usize]) -> Result<Layout> {
        let rank = self.shape.rank();
        let mut seen = vec![false; rank];
        if perm.len() != rank
            || perm
                .iter()
                .any(|&p| p >= rank || std::mem::replace(&mut seen[p], true))
        {
            return Err(Error::shape(
                op,
                format!(
                    "{perm:?} is not a permutation of the {rank} axes of {}",
                    self.shape
                ),
            ));
        }
        Ok(Layout {
            shape: Shape(perm.iter().map(|&p| self.shape.0[p]).collect()),
            strides: perm.iter().map(|&p| self.strides[p]).collect(),
            offset: self.offset,
        })
    }
    /// Keep `len` entries of `axis` starting at `start` (a view).
    pub fn narrow(
        &self,
        op: &'static str,
        axis: usize,
        start: usize,
        len: usize,
    ) -> Result<Layout> {
        let size = self.shape.0[axis];
        if start + len > size {
            return Err(Error::shape(
                op,
                format!(
                    "slice {start}..{} of axis {axis} exceeds its size {size} (shape {})",
                    start + len,
                    self.shape
                ),
            ));
        }
        let mut out = self.clone();
        out.shape.0[axis] = len;
        if len > 0 {
            out.offset += start * self.strides[axis];
        }
        Ok(out)
    }
    /// View this layout as `target` by broadcasting (stride 0 on expanded dims).
    pub fn broadcast_to(&self, op: &'static str, target: &Shape) -> Result<Layout> {
        let (rank, own) = (target.rank(), self.shape.rank());
        if own > rank {
            return Err(Error::shape(
                op,
                format!(
                    "cannot broadcast {} to the smaller rank {target}",
                    self.shape
                ),
            ));
        }
        let mut strides = vec![0; rank];
        for i in 0..own {
            let (d, t) = (self.shape.0[i], target.0[rank - own + i]);
            strides[rank - own + i] = if d == t {
                self.strides[i]
            } else if d == 1 {
                0
            } else {
                return Err(Error::shape(
                    op,
                    format!("cannot broadcast {} to {target}", self.shape),
                ));
            };
        }
        Ok(Layout {
            shape: target.clone(),
            strides,
            offset: self.offset,
        })
    }
}

/// Iterates the storage indices of a strided layout in logical row-major order.
pub struct StridedIndices<'a> {
    layout: &'a Layout,
    index: Vec<usize>,
    next: usize,
    remaining: usize,
}

impl<'a> StridedIndices<'a> {
    fn new(layout: &'a Layout) -> Self {
        StridedIndices {
            layout,
            index: vec![0; layout.shape.rank()],
            next: layout.offset,
            remaining: layout.numel(),
        }
    }
}

impl Iterator for StridedIndices<'_> {
    type Item = usize;
    fn next(&mut self) -> Option<usize> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        let current = self.next;
        let dims = self.layout.shape.dims();
        for axis in (0..dims.len()).rev() {
            self.index[axis] += 1;
            self.next += self.layout.strides[axis];
            if self.index[axis] < dims[axis] {
                break;
            }
            self.next -= self.index[axis] * self.layout.strides[axis];
            self.index[axis] = 0;
        }
        Some(current)
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}
impl ExactSizeIterator for StridedIndices<'_> {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcast_follows_trailing_alignment() {
        let s = Shape::broadcast("t", &Shape::new([4, 1, 3]), &Shape::new([2, 1])).unwrap();
        assert_eq!(s.dims(), &[4, 2, 3]);
        assert!(Shape::broadcast("t", &Shape::new([3]), &Shape::new([4])).is_err());
        let s = Shape::broadcast("t", &Shape::new([0, 1]), &Shape::new([1, 5])).unwrap();
        assert_eq!(s.dims(), &[0, 5]);
    }

    #[test]
    fn strided_indices_walk_a_transpose() {
        let l = Layout::contiguous([2, 3]).transpose(0, 1);
        assert_eq!(l.indices().collect::<Vec<_>>(), vec![0, 3, 1, 4, 2, 5]);
        assert!(!l.is_contiguous());
        let b = Layout::contiguous([3])
            .broadcast_to("t", &Shape::new([2, 3]))
            .unwrap();
        assert_eq!(b.indices().collect::<Vec<_>>(), vec![0, 1, 2, 0, 1, 2]);
        let n = Layout::contiguous([4, 5]).narrow("t", 1, 2, 2).unwrap();
        assert_eq!(
            n.indices().collect::<Vec<_>>(),
            vec![2, 3, 7, 8, 12, 13, 17, 18]
        );
        assert_eq!(n.storage_span(), 19);
    }
}

//! Counting what the cpu device takes from the system allocator.
//!
//! The cpu keeps tensors in ordinary `Vec`s, so its allocations are the process's heap
//! allocations. [`CountingAlloc`] wraps [`std::alloc::System`] and counts them; the `duel`
//! binary installs it as `#[global_allocator]` (so do the bench tests), and a library user
//! may. [`read`] says `None` when it is not installed: the counts are then unknown, never
//! zero.
//!
//! Counted: every `alloc`, `alloc_zeroed` and `realloc` (a realloc is a new request to the
//! system allocator, with its new size), cumulatively; frees are not subtracted, so the
//! difference between two readings is what a piece of work requested. Requests of at least
//! [`TENSOR_SIZED`] bytes are counted again apart: those are the tensor buffers, the rest
//! is bookkeeping (tape nodes, shapes, strings). Cost: two relaxed atomic adds per request
//! (four for a tensor-sized one), beside an allocation that costs 20–100 ns.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Requests of at least this many bytes (4 KiB, 1,024 f32) count as tensor-sized.
pub const TENSOR_SIZED: usize = 4096;

static ALL_COUNT: AtomicU64 = AtomicU64::new(0);
static ALL_BYTES: AtomicU64 = AtomicU64::new(0);
static TENSOR_COUNT: AtomicU64 = AtomicU64::new(0);
static TENSOR_BYTES: AtomicU64 = AtomicU64::new(0);

/// [`System`], counting every request (install with `#[global_allocator]`).
pub struct CountingAlloc;

#[inline]
fn count(size: usize) {
    ALL_COUNT.fetch_add(1, Relaxed);
    ALL_BYTES.fetch_add(size as u64, Relaxed);
    if size >= TENSOR_SIZED {
        TENSOR_COUNT.fetch_add(1, Relaxed);
        TENSOR_BYTES.fetch_add(size as u64, Relaxed);
    }
}

// SAFETY: every method forwards to `System` unchanged; the counting touches only atomics
// and never allocates.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        System.alloc_zeroed(layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size);
        System.realloc(ptr, layout, new_size)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

/// Cumulative counts since the process started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Every request, and its bytes.
    pub allocations: u64,
    pub bytes: u64,
    /// The requests of at least [`TENSOR_SIZED`] bytes, and their bytes.
    pub tensor_allocations: u64,
    pub tensor_bytes: u64,
}

/// The counts so far, or `None` when [`CountingAlloc`] is not the global allocator.
pub fn read() -> Option<Counts> {
    installed().then(|| Counts {
        allocations: ALL_COUNT.load(Relaxed),
        bytes: ALL_BYTES.load(Relaxed),
        tensor_allocations: TENSOR_COUNT.load(Relaxed),
        tensor_bytes: TENSOR_BYTES.load(Relaxed),
    })
}

/// Whether the counter sees allocations: one boxed probe must move it. (Other threads can
/// only move it when it is installed, so a move is proof either way.)
fn installed() -> bool {
    let before = ALL_COUNT.load(Relaxed);
    drop(std::hint::black_box(Box::new(std::hint::black_box(0u64))));
    ALL_COUNT.load(Relaxed) != before
}

#[cfg(test)]
mod tests {
    /// The library's unit-test binary keeps the default allocator: the counts are unknown.
    #[test]
    fn without_the_counting_allocator_the_counts_are_unknown() {
        assert_eq!(super::read(), None);
        assert_eq!(
            crate::device::Device::Cpu.alloc_stats(),
            crate::device::AllocStats::default()
        );
    }
}

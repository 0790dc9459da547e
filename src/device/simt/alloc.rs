//! The caching allocator under both SIMT devices. Every op result and temporary is a
//! device allocation; on a GPU `cuMemFree` synchronises the device, so freed blocks are
//! kept in size buckets and handed out again. The runtime is told each time a block is
//! lent and reclaimed ([`Runtime::lend`], [`Runtime::reclaim`]): the emulator poisons
//! every block it lends with 0xFF, reused ones too, and bounds-checks copies against the
//! size asked for rather than the bucket's.

use super::runtime::{DevicePtr, Runtime};
use crate::device::AllocStats;
use crate::error::Result;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Smallest block: what cudaMalloc aligns to, so small tensors share one bucket.
const MIN_BLOCK: usize = 256;
/// Freed blocks beyond this many cached bytes go back to the system, so a run whose
/// sizes keep changing holds at most this much memory it is not using.
const MAX_CACHED_BYTES: usize = 1 << 30;

/// The bucket a request of `bytes` is served from: at least `MIN_BLOCK`, else the next
/// of 2^k · {1, 1.25, 1.5, 1.75}, so a block wastes at most a fifth of itself.
pub fn bucket_size(bytes: usize) -> usize {
    if bytes <= MIN_BLOCK {
        return MIN_BLOCK;
    }
    let top = usize::BITS - 1 - bytes.leading_zeros(); // 2^top <= bytes
    let quarter = 1usize << (top - 2); // top >= 8 here
    bytes.div_ceil(quarter) * quarter
}

/// Freed blocks by bucket size, plus the counts [`AllocStats`] reports.
pub struct CachingAllocator {
    runtime: Arc<dyn Runtime>,
    free: Mutex<FreeBlocks>,
    requests: AtomicU64,
    system_allocations: AtomicU64,
    system_bytes: AtomicU64,
}

#[derive(Default)]
struct FreeBlocks {
    by_size: HashMap<usize, Vec<DevicePtr>>,
    bytes: usize,
}

impl CachingAllocator {
    pub fn new(runtime: Arc<dyn Runtime>) -> Self {
        CachingAllocator {
            runtime,
            free: Mutex::new(FreeBlocks::default()),
            requests: AtomicU64::new(0),
            system_allocations: AtomicU64::new(0),
            system_bytes: AtomicU64::new(0),
        }
    }

    pub fn runtime(&self) -> &Arc<dyn Runtime> {
        &self.runtime
    }

    /// A block of at least `bytes` bytes: a cached one of the right bucket, else a new one
    /// from the runtime (after releasing the cache once if the runtime is out of memory).
    fn take(&self, bytes: usize) -> Result<(DevicePtr, usize)> {
        let size = bucket_size(bytes);
        self.requests.fetch_add(1, Ordering::Relaxed);
        let cached = {
            let mut free = self.lock();
            let ptr = free.by_size.get_mut(&size).and_then(Vec::pop);
            if ptr.is_some() {
                free.bytes -= size;
            }
            ptr
        };
        let ptr = match cached {
            Some(ptr) => ptr,
            None => {
                let ptr = match self.runtime.alloc(size) {
                    Ok(ptr) => ptr,
                    Err(_) if self.release_cached() > 0 => self.runtime.alloc(size)?,
                    Err(e) => return Err(e),
                };
                self.system_allocations.fetch_add(1, Ordering::Relaxed);
                self.system_bytes.fetch_add(size as u64, Ordering::Relaxed);
                ptr
            }
        };
        self.runtime.lend(ptr, bytes);
        Ok((ptr, size))
    }

    /// Return a block taken with [`take`](Self::take) to the cache (or the system when
    /// the cache is full).
    fn give_back(&self, ptr: DevicePtr, size: usize) {
        self.runtime.reclaim(ptr);
        let mut free = self.lock();
        if free.bytes + size <= MAX_CACHED_BYTES {
            free.by_size.entry(size).or_default().push(ptr);
            free.bytes += size;
        } else {
            drop(free);
            // SAFETY: `ptr` came from this runtime's `alloc` and its buffer is gone.
            unsafe { self.runtime.free(ptr) };
        }
    }

    /// Free every cached block; returns how many bytes went back to the system.
    pub fn release_cached(&self) -> usize {
        let blocks = std::mem::take(&mut *self.lock());
        for ptr in blocks.by_size.into_values().flatten() {
            // SAFETY: cached blocks came from this runtime's `alloc` and no buffer holds them.
            unsafe { self.runtime.free(ptr) };
        }
        blocks.bytes
    }

    /// Cumulative allocations (and their bytes) that went to the runtime: cache misses.
    pub fn stats(&self) -> AllocStats {
        AllocStats {
            allocations: self.system_allocations.load(Ordering::Relaxed),
            bytes: self.system_bytes.load(Ordering::Relaxed),
        }
    }

    /// Every block asked for so far, served from the cache or not (without the cache
    /// each would have been a system allocation).
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FreeBlocks> {
        self.free.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for CachingAllocator {
    fn drop(&mut self) {
        self.release_cached();
    }
}

/// Device memory lent by a [`CachingAllocator`], returned to it on drop.
pub struct DeviceBuffer {
    ptr: DevicePtr,
    bytes: usize,
    block: usize,
    allocator: Arc<CachingAllocator>,
}

impl DeviceBuffer {
    /// At least `bytes` bytes (zero-byte tensors still get a distinct, valid block so
    /// pointers stay non-null).
    pub fn new(allocator: &Arc<CachingAllocator>, bytes: usize) -> Result<Self> {
        let (ptr, block) = allocator.take(bytes)?;
        Ok(DeviceBuffer {
            ptr,
            bytes,
            block,
            allocator: allocator.clone(),
        })
    }
    pub fn ptr(&self) -> DevicePtr {
        self.ptr
    }
    pub fn bytes(&self) -> usize {
        self.bytes
    }
    pub fn runtime(&self) -> &Arc<dyn Runtime> {
        self.allocator.runtime()
    }
}

impl Drop for DeviceBuffer {
    fn drop(&mut self) {
        self.allocator.give_back(self.ptr, self.block);
    }
}

impl std::fmt::Debug for DeviceBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "DeviceBuffer({} bytes on {})",
            self.bytes,
            self.runtime().name()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::bucket_size;

    #[test]
    fn buckets_round_up_by_at_most_a_quarter_step() {
        assert_eq!(bucket_size(0), 256);
        assert_eq!(bucket_size(256), 256);
        assert_eq!(bucket_size(257), 320);
        assert_eq!(bucket_size(320), 320);
        assert_eq!(bucket_size(321), 384);
        assert_eq!(bucket_size(448), 448);
        assert_eq!(bucket_size(449), 512);
        assert_eq!(bucket_size(1 << 20), 1 << 20);
        assert_eq!(bucket_size((1 << 20) + 1), (1 << 20) + (1 << 18));
        for n in [300usize, 1000, 4097, 123_456, 10_000_000] {
            let b = bucket_size(n);
            assert!(b >= n && (b - n) * 4 < b, "{n} -> {b}");
        }
    }
}

//! The cpu allocation counter the step rows of `duel bench` report: installed here as the
//! global allocator (as the `duel` binary does), it sees every tensor buffer, and more
//! work means more counted bytes. One test: the counts are process-wide, and parallel
//! tests would add their own allocations to another's difference.

use duel::device::cpu::alloc_counter::{self, CountingAlloc, Counts, TENSOR_SIZED};
use duel::{DType, Device, Tensor};

#[global_allocator]
static COUNTER: CountingAlloc = CountingAlloc;

fn read() -> Counts {
    alloc_counter::read().expect("CountingAlloc is this test's global allocator")
}

/// The counts a closure's work added.
fn counted(work: impl FnOnce()) -> Counts {
    let before = read();
    work();
    let after = read();
    Counts {
        allocations: after.allocations - before.allocations,
        bytes: after.bytes - before.bytes,
        tensor_allocations: after.tensor_allocations - before.tensor_allocations,
        tensor_bytes: after.tensor_bytes - before.tensor_bytes,
    }
}

#[test]
fn cpu_allocations_are_counted_and_grow_with_the_work() {
    let cpu = Device::Cpu;
    let tensor = |elements: usize| {
        let t = Tensor::zeros([elements], DType::F32, &cpu).unwrap();
        assert_eq!(t.to_f64_vec().unwrap().len(), elements);
    };
    // A 1 MiB buffer is tensor-sized: at least its 4 · 2^18 bytes, in at least one request
    // (to_f64_vec adds its own 2 MiB copy).
    let small = counted(|| tensor(1 << 18));
    assert!(small.allocations > 0, "{small:?}");
    assert!(small.tensor_allocations >= 1, "{small:?}");
    assert!(small.tensor_bytes >= 4 << 18, "{small:?}");
    // Four times the elements: four times the bytes, in the same number of buffers.
    let big = counted(|| tensor(1 << 20));
    assert_eq!(
        big.tensor_allocations, small.tensor_allocations,
        "{big:?} {small:?}"
    );
    assert!(
        big.tensor_bytes >= 4 * small.tensor_bytes,
        "{big:?} vs {small:?}"
    );
    // A 100-element tensor is bookkeeping-sized: counted, but not as a tensor.
    let tiny = counted(|| tensor(100));
    assert!(tiny.allocations > 0, "{tiny:?}");
    assert!(
        tiny.bytes < TENSOR_SIZED as u64 * tiny.allocations,
        "{tiny:?}"
    );
    // Device::alloc_stats reports the tensor-sized counts, cumulatively.
    let stats = cpu.alloc_stats();
    assert!(stats.allocations >= small.tensor_allocations + big.tensor_allocations);
    assert!(stats.bytes >= small.tensor_bytes + big.tensor_bytes);
    let before = cpu.alloc_stats();
    tensor(1 << 16);
    let after = cpu.alloc_stats();
    assert!(
        after.bytes - before.bytes >= 4 << 16,
        "{before:?} {after:?}"
    );
}

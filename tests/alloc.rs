//! The caching allocator under the SIMT devices, on the emulator: blocks are reused
//! (a dcgan28 training step after the first makes almost no system allocations), every
//! block lent is poisoned with 0xFF again, and a block back in the cache is not live.

use duel::device::emu::{EmuOptions, Schedule};
use duel::device::simt::SimtDevice;
use duel::gan::config::{DataSpec, TrainConfig};
use duel::gan::{Arch, Trainer, Variant};
use duel::Device;
use std::sync::Arc;

/// A fresh emulator, so its counts are this test's alone.
fn fresh_emu() -> (Device, Arc<SimtDevice>) {
    let device = Device::emu_with(EmuOptions {
        schedule: Schedule::Forward,
        ..EmuOptions::from_env()
    })
    .expect("the emu device must be available for the allocator tests");
    let simt = device.simt().expect("emu is a simt device").clone();
    (device, simt)
}

#[test]
fn dcgan28_steps_reuse_cached_blocks() {
    let (device, simt) = fresh_emu();
    let mut config = TrainConfig::defaults(Variant::NsGan, Arch::Dcgan28, DataSpec::Digits);
    // The allocation pattern depends on the layers, not on their width or the batch size.
    config.width = 2;
    config.batch_size = 4;
    config.nz = 4;
    let mut trainer = Trainer::new(config, &device).unwrap();
    trainer.train_step().unwrap(); // fills the cache
    let (requests0, stats0) = (simt.alloc_requests(), device.alloc_stats());
    const STEPS: u64 = 3;
    for _ in 0..STEPS {
        trainer.train_step().unwrap();
    }
    let requests = (simt.alloc_requests() - requests0) / STEPS;
    let stats = device.alloc_stats();
    let system = (stats.allocations - stats0.allocations) as f64 / STEPS as f64;
    eprintln!(
        "dcgan28 step on emu: {requests} blocks requested (each a system allocation \
         without the cache), {system:.1} system allocations with it"
    );
    assert!(requests > 100, "a dcgan28 step asks for {requests} blocks");
    assert!(
        system * 10.0 <= requests as f64,
        "{system} system allocations per step for {requests} requests: the cache saves < 90%"
    );
}

#[test]
fn reused_blocks_are_poisoned_again() {
    let (_device, simt) = fresh_emu();
    let rt = simt.runtime().clone();
    let first = simt.alloc(100).unwrap();
    let ptr = first.ptr();
    rt.copy_to_device(ptr, &[7u8; 100]).unwrap();
    drop(first);
    let before = simt.alloc_stats();
    let second = simt.alloc(90).unwrap();
    assert_eq!(second.ptr(), ptr, "a block of the same bucket is reused");
    assert_eq!(
        simt.alloc_stats(),
        before,
        "a cache hit is not a system allocation"
    );
    let mut host = [0u8; 90];
    rt.copy_to_host(second.ptr(), &mut host).unwrap();
    assert!(host.iter().all(|&b| b == 0xFF), "{host:?}");
    // Copies are checked against the 90 bytes asked for, not the 256-byte block.
    let e = rt
        .copy_to_device(second.ptr() + 80, &[0u8; 16])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("runs past the end of its 90-byte allocation"),
        "{e}"
    );
}

#[test]
fn cached_blocks_are_not_live() {
    let (_device, simt) = fresh_emu();
    let buf = simt.alloc(64).unwrap();
    let ptr = buf.ptr();
    drop(buf);
    let mut host = [0u8; 4];
    let e = simt
        .runtime()
        .copy_to_host(ptr, &mut host)
        .unwrap_err()
        .to_string();
    assert!(e.contains("not inside any live allocation"), "{e}");
    assert!(simt.release_cached() >= 64);
    let before = simt.alloc_stats();
    let _again = simt.alloc(64).unwrap();
    let after = simt.alloc_stats();
    assert_eq!(after.allocations, before.allocations + 1);
    assert_eq!(after.bytes, before.bytes + 256);
}

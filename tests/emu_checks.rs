//! The emulator catches what a GPU would fault on or get wrong: each bug class of
//! kernels/emu/checks.cu, planted by a flag, must stop the launch with a message naming
//! kernel, block, thread and place; the same kernel without the bug must run clean.

use duel::device::emu::{EmuOptions, Schedule};
use duel::device::simt::{Arg, DeviceBuffer, LaunchConfig, SimtDevice};
use duel::Device;
use std::sync::Arc;

fn emu_with(schedule: Schedule, races: bool) -> Arc<SimtDevice> {
    let device = Device::emu_with(EmuOptions {
        schedule,
        races,
        ..EmuOptions::from_env() // keep DUEL_EMU_TRACE so CI counts these launches
    })
    .expect("emulator");
    device.simt().expect("emu is a SIMT device").clone()
}

fn emu() -> Arc<SimtDevice> {
    emu_with(Schedule::Forward, false)
}

fn upload<T: bytemuck::Pod>(dev: &SimtDevice, data: &[T]) -> DeviceBuffer {
    let bytes: &[u8] = bytemuck::cast_slice(data);
    let buf = dev.alloc(bytes.len()).unwrap();
    dev.runtime().copy_to_device(buf.ptr(), bytes).unwrap();
    buf
}

fn download<T: bytemuck::Pod + Default>(dev: &SimtDevice, buf: &DeviceBuffer, n: usize) -> Vec<T> {
    let mut out = vec![T::default(); n];
    dev.runtime()
        .copy_to_host(buf.ptr(), bytemuck::cast_slice_mut(&mut out))
        .unwrap();
    out
}

fn threads(n: u32, shared_bytes: u32) -> LaunchConfig {
    LaunchConfig {
        grid: (1, 1, 1),
        block: (n, 1, 1),
        shared_bytes,
    }
}

/// The launch fails and its message contains every one of `parts`.
fn fails(dev: &SimtDevice, kernel: &str, c: LaunchConfig, args: &[Arg], parts: &[&str]) {
    let e = dev
        .launch(kernel, &c, args)
        .expect_err("the planted bug must stop the launch")
        .to_string();
    for p in parts {
        assert!(e.contains(p), "`{p}` missing from: {e}");
    }
}

#[test]
fn float4_load_past_the_end_is_out_of_bounds() {
    let dev = emu();
    for n in [5usize, 6, 7] {
        let x = upload(&dev, &vec![1.0f32; n]);
        let y = upload(&dev, &[0.0f32; 8]);
        let args = |overrun: i32| {
            [
                Arg::ptr(x.ptr()),
                Arg::ptr(y.ptr()),
                Arg::val(n as i32),
                Arg::val(overrun),
            ]
        };
        dev.launch("emu_check_float4_tail", &threads(1, 0), &args(0))
            .unwrap();
        fails(
            &dev,
            "emu_check_float4_tail",
            threads(1, 0),
            &args(1),
            &[
                "out-of-bounds read",
                "kernel emu_check_float4_tail block (0,0,0) thread (0,0,0)",
                &format!("byte offset {} of parameter 0 `const float* x`", 4 * n),
                &format!("a {}-byte buffer", 4 * n),
            ],
        );
    }
}

#[test]
fn misaligned_float4_load_is_reported() {
    let dev = emu();
    let x = upload(&dev, &[1.0f32; 12]);
    let y = upload(&dev, &[0.0f32; 1]);
    let args = |offset: i32| [Arg::ptr(x.ptr()), Arg::ptr(y.ptr()), Arg::val(offset)];
    dev.launch("emu_check_misaligned", &threads(1, 0), &args(4))
        .unwrap();
    assert_eq!(download::<f32>(&dev, &y, 1), [4.0]);
    for offset in [1, 2, 3] {
        fails(
            &dev,
            "emu_check_misaligned",
            threads(1, 0),
            &args(offset),
            &[
                "misaligned address at checks.cu:",
                "which needs 16-byte alignment for type 'const struct float4'",
                "kernel emu_check_misaligned block (0,0,0) thread (0,0,0)",
                &format!("byte offset {} of parameter 0", 4 * offset),
            ],
        );
    }
}

#[test]
fn write_past_dynamic_shared_memory_is_out_of_bounds() {
    let dev = emu();
    let y = upload(&dev, &[0.0f32; 64]);
    let args = |shift: i32| [Arg::ptr(y.ptr()), Arg::val(shift)];
    dev.launch("emu_check_shared_overflow", &threads(64, 256), &args(0))
        .unwrap();
    assert_eq!(download::<f32>(&dev, &y, 64)[63], 63.0);
    fails(
        &dev,
        "emu_check_shared_overflow",
        threads(64, 256),
        &args(1),
        &[
            "out-of-bounds write of 4 bytes",
            "thread (63,0,0)",
            "byte offset 256 of dynamic shared memory (256 bytes)",
        ],
    );
}

#[test]
fn static_shared_memory_is_poisoned_at_every_block_start() {
    let dev = emu();
    let y = upload(&dev, &[0.0f32; 64]);
    for written in [64, 63, 64, 0] {
        dev.launch(
            "emu_check_static_poison",
            &threads(64, 0),
            &[Arg::ptr(y.ptr()), Arg::val(written)],
        )
        .unwrap();
        let got = download::<f32>(&dev, &y, 64);
        for (t, v) in got.iter().enumerate() {
            if t < written as usize {
                assert_eq!(*v, t as f32);
            } else {
                // Not what the previous launch left there: 0xFFFFFFFF, a NaN.
                assert_eq!(v.to_bits(), 0xFFFF_FFFF, "slot {t} with {written} written");
            }
        }
    }
}

#[test]
fn write_past_a_static_shared_array_is_out_of_bounds() {
    let dev = emu();
    let y = upload(&dev, &[0.0f32; 64]);
    let args = |shift: i32| [Arg::ptr(y.ptr()), Arg::val(shift)];
    dev.launch("emu_check_static_overflow", &threads(64, 0), &args(0))
        .unwrap();
    fails(
        &dev,
        "emu_check_static_overflow",
        threads(64, 0),
        &args(1),
        &[
            "out-of-bounds write of 4 bytes",
            "thread (63,0,0)",
            "byte offset 256 of static __shared__ `s` (256 bytes, checks.cu:",
        ],
    );
}

#[test]
fn wild_reads_are_out_of_bounds() {
    let dev = emu();
    let y = upload(&dev, &[0.0f32; 1]);
    let args = |i: i32| [Arg::ptr(y.ptr()), Arg::ptr(y.ptr()), Arg::val(i)];
    fails(
        &dev,
        "emu_check_wild",
        threads(1, 0),
        &args(-1000),
        &[
            "out-of-bounds read of 4 bytes",
            "outside every buffer of the launch, shared memory and the thread's stack",
        ],
    );
    fails(
        &dev,
        "emu_check_wild",
        threads(1, 0),
        &args(-1),
        &["byte offset -4 of parameter 0 `const float* x`"],
    );
}

#[test]
fn pointer_arguments_must_point_into_live_allocations() {
    let dev = emu();
    let y = upload(&dev, &[0.0f32; 1]);
    let freed = upload(&dev, &[0.0f32; 1]).ptr();
    fails(
        &dev,
        "emu_check_wild",
        threads(1, 0),
        &[Arg::ptr(freed), Arg::ptr(y.ptr()), Arg::val(0)],
        &[
            "kernel emu_check_wild parameter 0 (const float*)",
            "inside no live allocation of this device",
        ],
    );
    // Null is passed on (kernels may take optional pointers); using it faults.
    fails(
        &dev,
        "emu_check_wild",
        threads(1, 0),
        &[Arg::ptr(0), Arg::ptr(y.ptr()), Arg::val(0)],
        &["out-of-bounds read", "address 0x0,"],
    );
}

#[test]
fn shared_counter_race_is_reported_and_atomics_are_not() {
    for schedule in [Schedule::Forward, Schedule::Reverse, Schedule::Random(1)] {
        let dev = emu_with(schedule, true);
        let y = upload(&dev, &[0.0f32; 1]);
        dev.launch(
            "emu_check_shared_counter",
            &threads(128, 0),
            &[Arg::ptr(y.ptr()), Arg::val(1)],
        )
        .unwrap();
        assert_eq!(download::<f32>(&dev, &y, 1), [128.0]);
        fails(
            &dev,
            "emu_check_shared_counter",
            threads(128, 0),
            &[Arg::ptr(y.ptr()), Arg::val(0)],
            &[
                "data race in kernel emu_check_shared_counter block (0,0,0)",
                "of static __shared__ `total` (4 bytes, checks.cu:",
                "in one barrier interval",
            ],
        );
    }
    // Without race detection fibers never interleave inside an interval, so the plain
    // `+=` loses no update: exactly why the detector is needed.
    let dev = emu_with(Schedule::Forward, false);
    let y = upload(&dev, &[0.0f32; 1]);
    dev.launch(
        "emu_check_shared_counter",
        &threads(128, 0),
        &[Arg::ptr(y.ptr()), Arg::val(0)],
    )
    .unwrap();
    assert_eq!(download::<f32>(&dev, &y, 1), [128.0]);
}

#[test]
fn global_write_race_is_reported() {
    let dev = emu_with(Schedule::Forward, true);
    let y = upload(&dev, &[0i32; 64]);
    dev.launch(
        "emu_check_global_race",
        &threads(64, 0),
        &[Arg::ptr(y.ptr()), Arg::val(1)],
    )
    .unwrap();
    fails(
        &dev,
        "emu_check_global_race",
        threads(64, 0),
        &[Arg::ptr(y.ptr()), Arg::val(0)],
        &[
            "data race",
            "thread (0,0,0) did a write and thread (1,0,0) a write",
            "byte offset 0 of parameter 0 `int* y`",
        ],
    );
}

#[test]
fn warp_operations_order_lanes_for_the_race_detector() {
    let dev = emu_with(Schedule::Random(7), true);
    let y = upload(&dev, &[0.0f32; 32]);
    dev.launch(
        "emu_check_warp_sync",
        &threads(32, 0),
        &[Arg::ptr(y.ptr()), Arg::val(1)],
    )
    .unwrap();
    let want: Vec<f32> = (0..32).map(|l| ((l + 1) % 32) as f32).collect();
    assert_eq!(download::<f32>(&dev, &y, 32), want);
    fails(
        &dev,
        "emu_check_warp_sync",
        threads(32, 0),
        &[Arg::ptr(y.ptr()), Arg::val(0)],
        &["data race", "of static __shared__ `s`"],
    );
}

#[test]
fn launch_limits_are_checked_before_running() {
    let dev = emu();
    let y = upload(&dev, &[0i32; 128]);
    dev.launch("emu_check_bounded", &threads(64, 0), &[Arg::ptr(y.ptr())])
        .unwrap();
    fails(
        &dev,
        "emu_check_bounded",
        threads(65, 0),
        &[Arg::ptr(y.ptr())],
        &[
            "invalid configuration argument launching emu_check_bounded",
            "65 threads; the kernel allows 64",
        ],
    );
    let f = upload(&dev, &[0.0f32; 32]);
    dev.launch(
        "emu_check_big_static",
        &threads(32, 8 * 1024),
        &[Arg::ptr(f.ptr())],
    )
    .unwrap();
    fails(
        &dev,
        "emu_check_big_static",
        threads(32, 8 * 1024 + 4),
        &[Arg::ptr(f.ptr())],
        &[
            "too much shared memory in kernel emu_check_big_static",
            "static total to 40960 bytes, plus 8196 dynamic; the launch may use 49152",
        ],
    );
    fails(
        &dev,
        "emu_check_big_static",
        threads(32, 48 * 1024 + 1),
        &[Arg::ptr(f.ptr())],
        &["exceed the 49152 bytes a block may use without opting in"],
    );
}

#[test]
fn random_schedules_expose_a_missing_barrier_in_both_directions() {
    // emu_missing_barrier reads the right neighbour's slot: forward order shows it for
    // every thread but the last, reverse order only for the last. A random order shows
    // both kinds of wrong reads in one run.
    let n = 64usize;
    let dev = emu_with(Schedule::Random(12345), false);
    let out = upload(&dev, &vec![0.0f32; n]);
    let c = threads(n as u32, (n * 4) as u32);
    dev.launch(
        "emu_missing_barrier",
        &c,
        &[Arg::ptr(out.ptr()), Arg::val(0i32)],
    )
    .unwrap();
    let got = download::<f32>(&dev, &out, n);
    let stale = got.iter().filter(|v| v.is_nan()).count();
    assert!(
        stale > 0 && stale < n - 1,
        "{stale} of {n} threads read an unwritten slot: {got:?}"
    );
    // Same seed, same order: a failure in CI reproduces with the printed seed.
    let again = upload(&dev, &vec![0.0f32; n]);
    dev.launch(
        "emu_missing_barrier",
        &c,
        &[Arg::ptr(again.ptr()), Arg::val(0i32)],
    )
    .unwrap();
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&download::<f32>(&dev, &again, n)), bits(&got));
}

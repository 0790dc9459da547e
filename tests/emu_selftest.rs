//! The emulator's own proof of CUDA semantics: kernels/emu/selftest.cu launched through
//! the SIMT launch layer on `emu`, checked against values worked out here in Rust.
//! Run with `--nocapture` to see the overhead numbers (barrier cost, launch rate, matmul).

use duel::device::emu::{EmuOptions, Schedule};
use duel::device::simt::{Arg, DeviceBuffer, LaunchConfig, SimtDevice};
use duel::Device;
use half::{bf16, f16};
use std::sync::Arc;
use std::time::Instant;

const SCHEDULES: [Schedule; 2] = [Schedule::Forward, Schedule::Reverse];

fn emu(schedule: Schedule) -> Arc<SimtDevice> {
    emu_workers(schedule, EmuOptions::from_env().workers)
}

fn emu_workers(schedule: Schedule, workers: usize) -> Arc<SimtDevice> {
    let device = Device::emu_with(EmuOptions {
        schedule,
        workers,
        races: false, // some kernels here race on purpose (emu_missing_barrier)
        ..EmuOptions::from_env()  // keep DUEL_EMU_TRACE so CI counts these launches
    })
    .expect("emulator");
    device.simt().expect("emu is a SIMT device").clone()
}

fn upload<T: bytemuck::Pod>(dev: &SimtDevice, data: &[T]) -> DeviceBuffer {
    let bytes: &[u8] = bytemuck::cast_slice(data);
    let buf = dev.alloc(bytes.len()).unwrap();
    dev.runtime().copy_to_device(buf.ptr(), bytes).unwrap();
    buf
}

fn zeros<T: bytemuck::Pod + Default>(dev: &SimtDevice, n: usize) -> DeviceBuffer {
    upload(dev, &vec![T::default(); n])
}

fn download<T: bytemuck::Pod + Default>(dev: &SimtDevice, buf: &DeviceBuffer, n: usize) -> Vec<T> {
    let mut out = vec![T::default(); n];
    dev.runtime()
        .copy_to_host(buf.ptr(), bytemuck::cast_slice_mut(&mut out))
        .unwrap();
    out
}

fn cfg(grid: (u32, u32, u32), block: (u32, u32, u32), shared_bytes: u32) -> LaunchConfig {
    LaunchConfig {
        grid,
        block,
        shared_bytes,
    }
}

#[test]
fn missing_barrier_changes_result_between_schedules() {
    let n = 64usize;
    let mut results = Vec::new();
    for schedule in SCHEDULES {
        let dev = emu(schedule);
        let out = zeros::<f32>(&dev, n);
        let c = cfg((1, 1, 1), (n as u32, 1, 1), (n * 4) as u32);
        // With the barrier: every thread sees its neighbour's value, in both orders.
        dev.launch(
            "emu_missing_barrier",
            &c,
            &[Arg::ptr(out.ptr()), Arg::val(1i32)],
        )
        .unwrap();
        let want: Vec<f32> = (0..n).map(|t| ((t + 1) % n + 1) as f32).collect();
        assert_eq!(
            download::<f32>(&dev, &out, n),
            want,
            "{schedule:?} with barrier"
        );
        dev.launch(
            "emu_missing_barrier",
            &c,
            &[Arg::ptr(out.ptr()), Arg::val(0i32)],
        )
        .unwrap();
        results.push(download::<f32>(&dev, &out, n));
    }
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_ne!(
        bits(&results[0]),
        bits(&results[1]),
        "a missing barrier must give different results in forward and reverse order"
    );
    // Forward: thread t reads slot t+1 before thread t+1 wrote it (poison, NaN).
    assert!(results[0][0].is_nan() && results[0][n - 1] == 1.0);
    // Reverse: thread t+1 ran first, so all but the last thread see the value.
    assert_eq!(results[1][0], 2.0);
    assert!(results[1][n - 1].is_nan());
}

#[test]
fn divergent_barrier_is_an_error_not_a_hang() {
    for schedule in SCHEDULES {
        let dev = emu(schedule);
        let out = zeros::<i32>(&dev, 64);
        let c = cfg((2, 1, 1), (64, 1, 1), 0);
        let err = dev
            .launch(
                "emu_divergent_barrier",
                &c,
                &[Arg::ptr(out.ptr()), Arg::val(0i32)],
            )
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("divergent __syncthreads")
                && err.contains("emu_divergent_barrier")
                && err.contains("block (")
                && err.contains("32 of 64 threads waiting")
                && err.contains("32 exited"),
            "{schedule:?}: {err}"
        );
        println!("{schedule:?}: {err}");
        let err = dev
            .launch(
                "emu_divergent_barrier",
                &c,
                &[Arg::ptr(out.ptr()), Arg::val(1i32)],
            )
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("divergent __syncthreads") && err.matches("selftest.cu:").count() == 2,
            "{schedule:?}: {err}"
        );
        println!("{schedule:?}: {err}");
        // The emulator is usable after a failed launch.
        dev.launch("emu_empty", &cfg((1, 1, 1), (64, 1, 1), 0), &[])
            .unwrap();
    }
}

#[test]
fn warp_op_with_exited_lanes_is_an_error() {
    for schedule in SCHEDULES {
        let dev = emu(schedule);
        let out = zeros::<i32>(&dev, 64);
        let err = dev
            .launch(
                "emu_warp_deadlock",
                &cfg((1, 1, 1), (64, 1, 1), 0),
                &[Arg::ptr(out.ptr())],
            )
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("warp")
                && err.contains("emu_warp_deadlock")
                && err.contains("selftest.cu:"),
            "{schedule:?}: {err}"
        );
        println!("{schedule:?}: {err}");
    }
}

#[test]
fn syncthreads_count_and_or() {
    for schedule in SCHEDULES {
        let dev = emu(schedule);
        let n = 100;
        let out = zeros::<i32>(&dev, 3 * n);
        dev.launch(
            "emu_sync_reductions",
            &cfg((1, 1, 1), (n as u32, 1, 1), 0),
            &[Arg::ptr(out.ptr())],
        )
        .unwrap();
        let got = download::<i32>(&dev, &out, 3 * n);
        let count = (0..n).filter(|t| t % 3 == 0).count() as i32;
        for t in 0..n {
            assert_eq!(&got[3 * t..3 * t + 3], &[count, 1, 1], "thread {t}");
        }
    }
}

/// The source lane of each shuffle, by the PTX rules (segments of `width` lanes).
fn shfl(vals: &[i32], lane: usize, src: Option<usize>) -> i32 {
    vals[src.unwrap_or(lane)]
}

#[test]
fn warp_intrinsics_match_hand_computed_values() {
    let threads = 64;
    let blocks = 3;
    let n = threads * blocks;
    let input: Vec<i32> = (0..n as i32).map(|i| (i * 37 + 11) % 101).collect();
    for schedule in SCHEDULES {
        let dev = emu(schedule);
        let inp = upload(&dev, &input);
        let out = zeros::<i32>(&dev, n * 16);
        dev.launch(
            "emu_warp_ops",
            &cfg((blocks as u32, 1, 1), (threads as u32, 1, 1), 0),
            &[Arg::ptr(inp.ptr()), Arg::ptr(out.ptr())],
        )
        .unwrap();
        let got = download::<i32>(&dev, &out, n * 16);
        for warp in 0..n / 32 {
            let v = &input[warp * 32..warp * 32 + 32];
            let ballot = (0..32)
                .filter(|&l| v[l] % 3 == 0)
                .fold(0u32, |m, l| m | 1 << l);
            let total: i32 = v.iter().sum();
            for lane in 0..32 {
                let seg = |w: usize| lane / w * w; // first lane of the lane's segment
                let want = [
                    v[3],
                    shfl(v, lane, Some(seg(8) + (lane + 1) % 8)),
                    shfl(v, lane, lane.checked_sub(2)),
                    shfl(v, lane, (lane % 16 >= 1).then(|| lane - 1)),
                    shfl(v, lane, (lane + 5 < 32).then_some(lane + 5)),
                    shfl(v, lane, (lane % 8 + 3 < 8).then_some(lane + 3)),
                    v[lane ^ 5],
                    // xor 9 within width 8: later segments give the own value.
                    shfl(v, lane, ((lane ^ 9) < seg(8) + 8).then_some(lane ^ 9)),
                    ballot as i32,
                    v.iter().any(|&x| x > 1000) as i32,
                    1,
                    v[lane ^ 1],
                    total,
                    if lane < 16 { v[lane ^ 1] } else { -1 },
                    shfl(v, lane, (lane < 31).then_some(lane + 1)),
                    -1, // __activemask: all 32 lanes
                ];
                let t = warp * 32 + lane;
                assert_eq!(
                    &got[t * 16..t * 16 + 16],
                    &want,
                    "{schedule:?} warp {warp} lane {lane}"
                );
            }
        }
    }
}

#[test]
fn atomics_are_exact_across_concurrent_blocks() {
    let n = 200_000i32;
    let dev = emu_workers(Schedule::Forward, 4);
    let isum = zeros::<i32>(&dev, 1);
    let fsum = zeros::<f32>(&dev, 1);
    let umax = zeros::<u32>(&dev, 1);
    let cas = zeros::<i32>(&dev, 1);
    let c = LaunchConfig::linear(n as usize, 256).unwrap();
    dev.launch(
        "emu_atomics",
        &c,
        &[
            Arg::ptr(isum.ptr()),
            Arg::ptr(fsum.ptr()),
            Arg::ptr(umax.ptr()),
            Arg::ptr(cas.ptr()),
            Arg::val(n),
        ],
    )
    .unwrap();
    let want_isum: i32 = (0..n).map(|i| i % 1000).sum();
    let want_max = (0..n as i64)
        .map(|i| (i * 7919 % 100003) as u32)
        .max()
        .unwrap();
    assert_eq!(download::<i32>(&dev, &isum, 1)[0], want_isum);
    assert_eq!(download::<f32>(&dev, &fsum, 1)[0], n as f32); // exact below 2^24
    assert_eq!(download::<u32>(&dev, &umax, 1)[0], want_max);
    assert_eq!(download::<i32>(&dev, &cas, 1)[0], n);
}

#[test]
fn three_dimensional_grid_and_block_indices() {
    let (grid, block) = ((3u32, 2u32, 2u32), (8u32, 4u32, 2u32));
    let (w, h, d) = (grid.0 * block.0, grid.1 * block.1, grid.2 * block.2);
    let n = (w * h * d) as usize;
    for schedule in SCHEDULES {
        let dev = emu(schedule);
        let out = zeros::<i32>(&dev, n);
        dev.launch("emu_index3d", &cfg(grid, block, 0), &[Arg::ptr(out.ptr())])
            .unwrap();
        let got = download::<i32>(&dev, &out, n);
        for z in 0..d {
            for y in 0..h {
                for x in 0..w {
                    let (bx, by, bz) = (x / block.0, y / block.1, z / block.2);
                    let (tx, ty, tz) = (x % block.0, y % block.1, z % block.2);
                    let want = bx | by << 4 | bz << 8 | tx << 12 | ty << 18 | tz << 24;
                    assert_eq!(
                        got[((z * h + y) * w + x) as usize],
                        want as i32,
                        "({x},{y},{z})"
                    );
                }
            }
        }
    }
}

#[test]
fn dynamic_shared_memory_is_per_block_and_poisoned() {
    let (threads, blocks) = (128usize, 40usize);
    let n = threads * blocks;
    let input: Vec<f32> = (0..n).map(|i| i as f32 * 0.5).collect();
    for schedule in SCHEDULES {
        let dev = emu_workers(schedule, 3);
        let inp = upload(&dev, &input);
        let out = zeros::<f32>(&dev, n);
        let before = zeros::<u32>(&dev, n);
        dev.launch(
            "emu_dynamic_shared",
            &cfg(
                (blocks as u32, 1, 1),
                (threads as u32, 1, 1),
                (threads * 4) as u32,
            ),
            &[
                Arg::ptr(inp.ptr()),
                Arg::ptr(out.ptr()),
                Arg::ptr(before.ptr()),
            ],
        )
        .unwrap();
        let got = download::<f32>(&dev, &out, n);
        let poison = download::<u32>(&dev, &before, n);
        for b in 0..blocks {
            for t in 0..threads {
                assert_eq!(got[b * threads + t], input[b * threads + threads - 1 - t]);
            }
        }
        assert!(
            poison.iter().all(|&p| p == 0xFFFF_FFFF),
            "shared memory not poisoned"
        );
    }
}

#[test]
fn tiled_matmul_128_matches_triple_loop() {
    let (m, n, k) = (128usize, 128usize, 128usize);
    let a: Vec<f32> = (0..m * k)
        .map(|i| ((i * 31 % 97) as f32 - 48.0) / 32.0)
        .collect();
    let b: Vec<f32> = (0..k * n)
        .map(|i| ((i * 17 % 89) as f32 - 44.0) / 32.0)
        .collect();
    let mut want = vec![0f32; m * n];
    for i in 0..m {
        for j in 0..n {
            // Same summation order as the kernel, so the results agree to the last bit.
            want[i * n + j] = (0..k).fold(0.0f32, |acc, p| acc + a[i * k + p] * b[p * n + j]);
        }
    }
    for schedule in SCHEDULES {
        let dev = emu(schedule);
        let (da, db) = (upload(&dev, &a), upload(&dev, &b));
        let dc = zeros::<f32>(&dev, m * n);
        let c = cfg(((n / 16) as u32, (m / 16) as u32, 1), (16, 16, 1), 0);
        let args = [
            Arg::ptr(da.ptr()),
            Arg::ptr(db.ptr()),
            Arg::ptr(dc.ptr()),
            Arg::val(m as i32),
            Arg::val(n as i32),
            Arg::val(k as i32),
        ];
        let start = Instant::now();
        dev.launch("emu_matmul_tiled", &c, &args).unwrap();
        let secs = start.elapsed().as_secs_f64();
        println!(
            "emu 128x128x128 tiled matmul ({schedule:?}): {:.1} ms",
            secs * 1e3
        );
        assert!(secs < 1.0, "128^3 matmul took {secs:.2} s on emu");
        assert_eq!(download::<f32>(&dev, &dc, m * n), want);
    }
}

/// f32 values covering every rounding case of f16 and bf16: specials, boundaries,
/// subnormals of both formats, ties, and a dense pseudo-random sweep of bit patterns.
fn conversion_inputs() -> Vec<f32> {
    let mut v: Vec<f32> = vec![
        0.0,
        -0.0,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        -f32::NAN,
        f32::from_bits(0x7F80_0001), // signalling NaN
        f32::from_bits(0x7FBF_FFFF),
        f32::from_bits(0xFFC0_1234),
        f32::MAX,
        f32::MIN_POSITIVE,
        f32::from_bits(1),  // smallest f32 subnormal
        65504.0,            // f16 max
        65519.99,           // rounds to f16 max
        65520.0,            // rounds to f16 inf
        6.1035156e-5,       // f16 min normal
        5.9604645e-8,       // f16 min subnormal
        2.9802322e-8,       // half of it: tie to zero
        2.9802326e-8,       // just above: rounds up
        1.0 + 1.0 / 2048.0, // f16 tie to even (down)
        1.0 + 3.0 / 2048.0, // f16 tie to even (up)
        1.0 + 1.0 / 256.0,  // bf16 tie
    ];
    let mut x = 0x1234_5678u32;
    for _ in 0..200_000 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        v.push(f32::from_bits(x));
    }
    // Every f32 whose top bits fall in the f16 subnormal/normal boundary region.
    for e in 100u32..=145 {
        for m in (0..1u32 << 23).step_by(4099) {
            v.push(f32::from_bits(e << 23 | m));
            v.push(f32::from_bits(1 << 31 | e << 23 | m));
        }
    }
    v
}

#[test]
fn half_and_bfloat16_conversions_match_the_half_crate_bit_for_bit() {
    let mut floats = conversion_inputs();
    let bits: Vec<u16> = (0..=u16::MAX).collect();
    let n = floats.len().max(bits.len());
    floats.resize(n, 1.5);
    let bits: Vec<u16> = (0..n).map(|i| bits[i % bits.len()]).collect();
    let dev = emu(Schedule::Forward);
    let (df, db) = (upload(&dev, &floats), upload(&dev, &bits));
    let outs: Vec<DeviceBuffer> = (0..2).map(|_| zeros::<u16>(&dev, n)).collect();
    let fouts: Vec<DeviceBuffer> = (0..2).map(|_| zeros::<f32>(&dev, n)).collect();
    dev.launch(
        "emu_half_convert",
        &cfg((64, 1, 1), (256, 1, 1), 0),
        &[
            Arg::ptr(df.ptr()),
            Arg::ptr(db.ptr()),
            Arg::val(n as i32),
            Arg::ptr(outs[0].ptr()),
            Arg::ptr(outs[1].ptr()),
            Arg::ptr(fouts[0].ptr()),
            Arg::ptr(fouts[1].ptr()),
        ],
    )
    .unwrap();
    let f2h = download::<u16>(&dev, &outs[0], n);
    let f2bf = download::<u16>(&dev, &outs[1], n);
    let h2f = download::<f32>(&dev, &fouts[0], n);
    let bf2f = download::<f32>(&dev, &fouts[1], n);
    for i in 0..n {
        let f = floats[i];
        assert_eq!(
            f2h[i],
            f16::from_f32(f).to_bits(),
            "f16 of {f:e} ({:#010x})",
            f.to_bits()
        );
        assert_eq!(
            f2bf[i],
            bf16::from_f32(f).to_bits(),
            "bf16 of {f:e} ({:#010x})",
            f.to_bits()
        );
        let h = f16::from_bits(bits[i]).to_f32();
        let b = bf16::from_bits(bits[i]).to_f32();
        assert_eq!(h2f[i].to_bits(), h.to_bits(), "f16 {:#06x} to f32", bits[i]);
        assert_eq!(
            bf2f[i].to_bits(),
            b.to_bits(),
            "bf16 {:#06x} to f32",
            bits[i]
        );
    }
}

#[test]
fn half_arithmetic_rounds_like_the_half_crate() {
    let n = 4096;
    let a: Vec<f32> = (0..n).map(|i| (i as f32 - 2000.0) * 0.37).collect();
    let b: Vec<f32> = (0..n)
        .map(|i| ((i * 13 % 211) as f32 - 100.0) * 0.011)
        .collect();
    let dev = emu(Schedule::Forward);
    let (da, db) = (upload(&dev, &a), upload(&dev, &b));
    let (h, bf) = (zeros::<u16>(&dev, n), zeros::<u16>(&dev, n));
    dev.launch(
        "emu_half_arith",
        &LaunchConfig::linear(n, 128).unwrap(),
        &[
            Arg::ptr(da.ptr()),
            Arg::ptr(db.ptr()),
            Arg::val(n as i32),
            Arg::ptr(h.ptr()),
            Arg::ptr(bf.ptr()),
        ],
    )
    .unwrap();
    let (gh, gbf) = (download::<u16>(&dev, &h, n), download::<u16>(&dev, &bf, n));
    for i in 0..n {
        let (ha, hb) = (f16::from_f32(a[i]), f16::from_f32(b[i]));
        let want = f16::from_f32(f16::from_f32(ha.to_f32() * hb.to_f32()).to_f32() + ha.to_f32());
        assert_eq!(gh[i], want.to_bits(), "f16 a*b+a at {i}");
        let (ba, bb) = (bf16::from_f32(a[i]), bf16::from_f32(b[i]));
        let want = bf16::from_f32(bf16::from_f32(ba.to_f32() * bb.to_f32()).to_f32() + ba.to_f32());
        assert_eq!(gbf[i], want.to_bits(), "bf16 a*b+a at {i}");
    }
}

#[test]
fn float4_loads_and_stores() {
    let n4 = 1000;
    let input: Vec<f32> = (0..4 * n4).map(|i| i as f32).collect();
    let dev = emu(Schedule::Forward);
    let (inp, out) = (upload(&dev, &input), zeros::<f32>(&dev, 4 * n4));
    dev.launch(
        "emu_float4",
        &LaunchConfig::linear(n4, 128).unwrap(),
        &[
            Arg::ptr(inp.ptr()),
            Arg::ptr(out.ptr()),
            Arg::val(n4 as i32),
        ],
    )
    .unwrap();
    let want: Vec<f32> = input.iter().map(|x| x * 2.0).collect();
    assert_eq!(download::<f32>(&dev, &out, 4 * n4), want);
}

#[test]
fn bad_launches_are_rejected_with_clear_errors() {
    let dev = emu(Schedule::Forward);
    let out = zeros::<i32>(&dev, 64);
    let one = cfg((1, 1, 1), (32, 1, 1), 0);
    let err = |kernel: &str, c: &LaunchConfig, args: &[Arg]| {
        dev.launch(kernel, c, args).unwrap_err().to_string()
    };
    let e = err("no_such_kernel", &one, &[]);
    assert!(
        e.contains("no_such_kernel") && e.contains("not in the kernel manifest"),
        "{e}"
    );
    let e = err("emu_divergent_barrier", &one, &[Arg::ptr(out.ptr())]);
    assert!(
        e.contains("emu_divergent_barrier takes 2 arguments, launch passed 1"),
        "{e}"
    );
    let e = err(
        "emu_divergent_barrier",
        &one,
        &[Arg::ptr(out.ptr()), Arg::val(0i64)],
    );
    assert!(
        e.contains("emu_divergent_barrier parameter 1 (int) is 4 bytes, the argument is 8 bytes"),
        "{e}"
    );
    let e = err("emu_empty", &cfg((1, 1, 1), (1025, 1, 1), 0), &[]);
    assert!(
        e.contains("invalid configuration argument") && e.contains("1025 threads"),
        "{e}"
    );
    let e = err("emu_empty", &cfg((1, 1, 1), (0, 1, 1), 0), &[]);
    assert!(e.contains("invalid configuration argument"), "{e}");
    let e = err("emu_empty", &cfg((0, 1, 1), (32, 1, 1), 0), &[]);
    assert!(e.contains("zero dimension"), "{e}");
    let e = err("emu_empty", &cfg((1, 1, 1), (32, 1, 1), 300 * 1024), &[]);
    assert!(e.contains("dynamic shared memory"), "{e}");
}

#[test]
fn copies_are_bounds_checked() {
    let dev = emu(Schedule::Forward);
    let buf = dev.alloc(16).unwrap();
    let rt = dev.runtime();
    assert!(rt.copy_to_device(buf.ptr(), &[0u8; 16]).is_ok());
    let e = rt
        .copy_to_device(buf.ptr() + 8, &[0u8; 16])
        .unwrap_err()
        .to_string();
    assert!(e.contains("runs past the end"), "{e}");
    let mut host = [0u8; 4];
    let e = rt.copy_to_host(8, &mut host).unwrap_err().to_string();
    assert!(e.contains("not inside any live allocation"), "{e}");
    assert!(rt.copy_on_device(buf.ptr(), buf.ptr() + 4, 12).is_ok());
}

#[test]
fn trace_records_each_launch() {
    let path = std::env::temp_dir().join(format!("duel-emu-trace-{}.txt", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let device = Device::emu_with(EmuOptions {
        trace: Some(path.clone()),
        ..EmuOptions::from_env()
    })
    .unwrap();
    let dev = device.simt().unwrap();
    dev.launch("emu_empty", &cfg((3, 2, 1), (32, 4, 1), 128), &[])
        .unwrap();
    dev.launch("emu_empty", &cfg((1, 1, 1), (1, 1, 1), 0), &[])
        .unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let _ = std::fs::remove_file(&path);
    assert_eq!(
        text,
        "kernel=emu_empty grid=3,2,1 block=32,4,1 shared=128\n\
         kernel=emu_empty grid=1,1,1 block=1,1,1 shared=0\n"
    );
}

#[test]
fn manifest_lists_self_test_kernels() {
    let k = duel::kernels::find("emu_matmul_tiled").expect("in manifest");
    assert_eq!(k.file, "selftest");
    assert!(!k.product);
    assert_eq!(
        k.params,
        &[
            "const float* __restrict__",
            "const float* __restrict__",
            "float* __restrict__",
            "int",
            "int",
            "int"
        ]
    );
    assert!(duel::kernels::product_kernels().all(|k| k.file != "selftest"));
}

/// Seconds this thread has run on a CPU (Linux schedstat), else wall-clock seconds: the
/// numbers below should not depend on how busy the machine is.
fn thread_seconds(wall: Instant) -> f64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .map_or_else(|| wall.elapsed().as_secs_f64(), |ns| ns as f64 * 1e-9)
}

#[test]
fn overhead_of_barriers_and_launches() {
    // Untraced: 200k trace lines would flood CI's coverage file and skew the rate. The
    // kernels are traced by other tests.
    let device = Device::emu_with(EmuOptions {
        trace: None,
        ..EmuOptions::from_env()
    })
    .unwrap();
    let dev = device.simt().unwrap().clone();
    let out = zeros::<i32>(&dev, 1);
    let iters = 2000;
    let c = cfg((1, 1, 1), (256, 1, 1), 0);
    let epoch = Instant::now();
    // One block runs on the launching thread, so its CPU time is the emulator's.
    let t0 = thread_seconds(epoch);
    dev.launch(
        "emu_barrier_loop",
        &c,
        &[Arg::val(iters), Arg::ptr(out.ptr())],
    )
    .unwrap();
    let per_barrier = (thread_seconds(epoch) - t0) / iters as f64;
    assert_eq!(download::<i32>(&dev, &out, 1)[0], iters * (iters - 1) / 2);
    let launches = 200_000;
    let one = cfg((1, 1, 1), (1, 1, 1), 0);
    let (wall, t0) = (Instant::now(), thread_seconds(epoch));
    for _ in 0..launches {
        dev.launch("emu_empty", &one, &[]).unwrap();
    }
    let cpu = thread_seconds(epoch) - t0;
    // schedstat advances at scheduler ticks; fall back to the wall clock if it did not.
    let rate = launches as f64
        / if cpu > 0.0 {
            cpu
        } else {
            wall.elapsed().as_secs_f64()
        };
    println!(
        "emu overhead: {:.2} us per __syncthreads of 256 threads, {:.0} empty launches/s",
        per_barrier * 1e6,
        rate
    );
}

#[test]
fn concurrent_launches_from_several_threads() {
    // One device shared by threads, as the process-wide `Device::emu()` is in tests.
    let dev = emu_workers(Schedule::Reverse, 2);
    let n = 64usize;
    let a: Vec<f32> = (0..n * n).map(|i| (i % 7) as f32).collect();
    let mut want = vec![0f32; n * n];
    for i in 0..n {
        for j in 0..n {
            want[i * n + j] = (0..n).fold(0.0f32, |acc, p| acc + a[i * n + p] * a[p * n + j]);
        }
    }
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                let da = upload(&dev, &a);
                let dc = zeros::<f32>(&dev, n * n);
                for _ in 0..5 {
                    dev.launch(
                        "emu_matmul_tiled",
                        &cfg((4, 4, 1), (16, 16, 1), 0),
                        &[
                            Arg::ptr(da.ptr()),
                            Arg::ptr(da.ptr()),
                            Arg::ptr(dc.ptr()),
                            Arg::val(n as i32),
                            Arg::val(n as i32),
                            Arg::val(n as i32),
                        ],
                    )
                    .unwrap();
                    assert_eq!(download::<f32>(&dev, &dc, n * n), want);
                }
            });
        }
    });
}

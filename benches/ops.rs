//! Criterion benches of every op family `duel bench` measures (conv2d, conv_transpose2d,
//! matmul, batch norm, losses, optimizers, elementwise and reductions), on cpu and emu
//! (and cuda when a GPU is present), from the same cases (src/bench/cases.rs): the same
//! shapes, the same timed region (backward rows time only the backward walk), and the
//! throughput set to the case's FLOPs (conv, matmul: criterion's "elem/s" reads as
//! FLOP/s) or its compulsory bytes (the rest), so a regression shows as criterion's
//! change %. `cargo bench --bench ops -- conv2d/cpu` runs a subset. The CI-sized dcgan28
//! shapes only (`duel bench` has the rest).

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use duel::bench::cases::all_cases;
use duel::bench::timing::Stopwatch;
use duel::{DType, Device};

fn devices() -> Vec<Device> {
    let mut out = vec![Device::Cpu];
    if let Ok(emu) = Device::emu() {
        out.push(emu);
    }
    if let Ok(cuda) = Device::cuda(0) {
        out.push(cuda);
    }
    out
}

fn ops(c: &mut Criterion) {
    for device in devices() {
        for case in all_cases(&device).into_iter().filter(|c| !c.full_only) {
            let mut group = c.benchmark_group(format!("{}/{}", case.op, case.direction));
            if case.op.starts_with("conv") || case.op == "matmul" {
                group.throughput(Throughput::Elements(case.flops as u64));
            } else {
                group.throughput(Throughput::Bytes(case.bytes as u64));
            }
            if device.simt().is_some() || case.flops > 1e9 {
                group
                    .sample_size(10)
                    .warm_up_time(Duration::from_millis(200))
                    .measurement_time(Duration::from_secs(1));
            }
            let mut work = (case.build)(&device, DType::F32).expect("building the case");
            let mut sw = Stopwatch::new(&device);
            let id = BenchmarkId::new(
                device.to_string(),
                format!("{} {} {}", case.label, case.shape, case.kernel),
            );
            group.bench_function(id, |b| {
                b.iter_custom(|iters| {
                    for _ in 0..iters {
                        work(&mut sw).expect("running the case");
                    }
                    sw.take()
                })
            });
            group.finish();
        }
    }
}

criterion_group!(benches, ops);
criterion_main!(benches);

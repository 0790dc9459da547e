//! Throughput of the first op family per backend: elementwise (GB/s of bytes moved),
//! reductions and Philox RNG. `cargo bench --bench kernels`; criterion prints the rate.
//! The emu rows measure the emulator, not a GPU: they show what a test run costs.
//! cuda rows appear only on a machine with a GPU.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use duel::{DType, Device, Tensor};

fn devices() -> Vec<(Device, usize)> {
    // (device, element count): the emulator runs every CUDA thread as a fiber, so it
    // gets a smaller problem.
    let mut out = vec![(Device::Cpu, 1 << 22)];
    if let Ok(emu) = Device::emu() {
        out.push((emu, 1 << 16));
    }
    if let Ok(cuda) = Device::cuda(0) {
        out.push((cuda, 1 << 24));
    }
    out
}

fn elementwise(c: &mut Criterion) {
    let mut group = c.benchmark_group("elementwise");
    for (device, n) in devices() {
        let a = Tensor::randn([n], 1, 0, &device).unwrap();
        let b = Tensor::randn([n], 2, 0, &device).unwrap();
        // add reads two f32 and writes one.
        group.throughput(Throughput::Bytes((3 * 4 * n) as u64));
        group.bench_with_input(BenchmarkId::new("add", &device), &n, |bench, _| {
            bench.iter(|| a.add(&b).unwrap())
        });
        group.throughput(Throughput::Bytes((2 * 4 * n) as u64));
        group.bench_with_input(BenchmarkId::new("exp", &device), &n, |bench, _| {
            bench.iter(|| a.exp().unwrap())
        });
        let at = a.reshape([n / 256, 256]).unwrap().t().unwrap();
        group.bench_with_input(
            BenchmarkId::new("copy_transposed", &device),
            &n,
            |bench, _| bench.iter(|| at.contiguous().unwrap()),
        );
    }
    group.finish();
}

fn reductions(c: &mut Criterion) {
    let mut group = c.benchmark_group("reduce");
    for (device, n) in devices() {
        let x = Tensor::randn([n / 256, 256], 3, 0, &device).unwrap();
        group.throughput(Throughput::Bytes((4 * n) as u64));
        group.bench_with_input(BenchmarkId::new("sum_all", &device), &n, |bench, _| {
            bench.iter(|| x.sum_all().unwrap())
        });
        group.bench_with_input(BenchmarkId::new("sum_rows", &device), &n, |bench, _| {
            bench.iter(|| x.sum(&[1], false).unwrap())
        });
        group.bench_with_input(BenchmarkId::new("max_cols", &device), &n, |bench, _| {
            bench.iter(|| x.max(&[0], false).unwrap())
        });
    }
    group.finish();
}

fn rng_and_cast(c: &mut Criterion) {
    let mut group = c.benchmark_group("rng_cast");
    for (device, n) in devices() {
        group.throughput(Throughput::Bytes((4 * n) as u64));
        group.bench_with_input(BenchmarkId::new("randn", &device), &n, |bench, _| {
            bench.iter(|| Tensor::randn([n], 7, 0, &device).unwrap())
        });
        group.bench_with_input(BenchmarkId::new("rand", &device), &n, |bench, _| {
            bench.iter(|| Tensor::rand([n], 7, 0, &device).unwrap())
        });
        let x = Tensor::randn([n], 8, 0, &device).unwrap();
        group.bench_with_input(BenchmarkId::new("cast_f16", &device), &n, |bench, _| {
            bench.iter(|| x.to_dtype(DType::F16).unwrap())
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).warm_up_time(std::time::Duration::from_millis(500))
        .measurement_time(std::time::Duration::from_secs(2));
    targets = elementwise, reductions, rng_and_cast
}
criterion_main!(benches);

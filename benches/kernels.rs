//! Kernel throughput per backend: elementwise and reductions (GB/s of bytes moved),
//! Philox RNG and casts, the matmul variants (sgemm at 1024 and the cpu/simt kernels the
//! dispatcher picks from) and conv2d / conv_transpose2d forward and backward at dcgan
//! shapes (FLOP/s: criterion's "elem/s"). `cargo bench --bench kernels`; criterion
//! prints the rate. The emu rows measure the emulator, not a GPU: they show what a test
//! run costs. cuda rows appear only on a machine with a GPU.

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

/// GEMM throughput (criterion's elements/s is FLOP/s: 2·m·n·k per product). cpu: SGEMM
/// 1024³ and the DCGAN im2col-like thin shape m×n×k = 16×12544×64 in all four transpose
/// combinations (transposed operands are views, not copies); emu: every kernel version of
/// kernels/matmul.cu at 128³ (what a test costs); cuda: every version at 1024³.
fn matmul(c: &mut Criterion) {
    use duel::ops::matmul::{matmul_with, MatmulKernel};
    let mut group = c.benchmark_group("matmul");
    let flops = |m: usize, n: usize, k: usize| Throughput::Elements((2 * m * n * k) as u64);
    // (label, operand a, operand b) for m×n×k, with a/b stored transposed when flagged.
    let operands = |device: &Device, m: usize, n: usize, k: usize, ta: bool, tb: bool| {
        let a = if ta {
            Tensor::randn([k, m], 1, 0, device).unwrap().t().unwrap()
        } else {
            Tensor::randn([m, k], 1, 0, device).unwrap()
        };
        let b = if tb {
            Tensor::randn([n, k], 2, 0, device).unwrap().t().unwrap()
        } else {
            Tensor::randn([k, n], 2, 0, device).unwrap()
        };
        (a, b)
    };
    let cpu = Device::Cpu;
    let (a, b) = operands(&cpu, 1024, 1024, 1024, false, false);
    group.throughput(flops(1024, 1024, 1024));
    group.bench_function(BenchmarkId::new("sgemm_1024", &cpu), |bench| {
        bench.iter(|| a.matmul(&b).unwrap())
    });
    let (m, n, k) = (16, 12544, 64);
    group.throughput(flops(m, n, k));
    for (ta, tb, label) in [
        (false, false, "16x12544x64_NN"),
        (true, false, "16x12544x64_TN"),
        (false, true, "16x12544x64_NT"),
        (true, true, "16x12544x64_TT"),
    ] {
        let (a, b) = operands(&cpu, m, n, k, ta, tb);
        group.bench_function(BenchmarkId::new(label, &cpu), |bench| {
            bench.iter(|| a.matmul(&b).unwrap())
        });
    }
    let mut simt = Vec::new();
    if let Ok(emu) = Device::emu() {
        simt.push((emu, 128));
    }
    if let Ok(cuda) = Device::cuda(0) {
        simt.push((cuda, 1024));
    }
    for (device, size) in simt {
        let (a, b) = operands(&device, size, size, size, false, false);
        group.throughput(flops(size, size, size));
        for kernel in MatmulKernel::ALL {
            let label = format!("{}_{size}", kernel.name());
            group.bench_function(BenchmarkId::new(label, &device), |bench| {
                bench.iter(|| matmul_with(&a, &b, kernel).unwrap())
            });
        }
    }
    group.finish();
}

/// conv2d / conv_transpose2d on cpu at the 28x28 DCGAN's layer shapes, batch 64:
/// forward alone and forward + backward (input, weight and bias gradients).
fn conv(c: &mut Criterion) {
    use duel::ops::conv::{conv2d, conv_transpose2d, Conv2dParams, ConvTranspose2dParams};
    let mut group = c.benchmark_group("conv");
    let cpu = Device::Cpu;
    let n = 64;
    let s2 = Conv2dParams {
        stride: (2, 2),
        padding: (1, 1),
        dilation: (1, 1),
    };
    let t2 = ConvTranspose2dParams {
        stride: (2, 2),
        padding: (1, 1),
        output_padding: (0, 0),
        dilation: (1, 1),
    };
    // (name, transposed, input shape, weight shape)
    let layers: [(&str, bool, [usize; 4], [usize; 4]); 4] = [
        ("conv_1to64_28to14", false, [n, 1, 28, 28], [64, 1, 4, 4]),
        (
            "conv_64to128_14to7",
            false,
            [n, 64, 14, 14],
            [128, 64, 4, 4],
        ),
        ("convT_128to64_7to14", true, [n, 128, 7, 7], [128, 64, 4, 4]),
        ("convT_64to1_14to28", true, [n, 64, 14, 14], [64, 1, 4, 4]),
    ];
    for (name, transposed, xs, ws) in layers {
        let x = Tensor::randn(xs, 1, 0, &cpu).unwrap();
        let w = Tensor::randn(ws, 2, 0, &cpu)
            .unwrap()
            .mul_scalar(0.05)
            .unwrap();
        let b = Tensor::zeros([if transposed { ws[1] } else { ws[0] }], DType::F32, &cpu).unwrap();
        let fwd = |x: &Tensor, w: &Tensor, b: &Tensor| {
            if transposed {
                conv_transpose2d(x, w, Some(b), &t2).unwrap()
            } else {
                conv2d(x, w, Some(b), &s2).unwrap()
            }
        };
        let y = fwd(&x, &w, &b);
        // Multiply-adds of the forward product: output elements x (Cin_per_out x kh x kw).
        let macs = if transposed {
            x.numel() * ws[1] * ws[2] * ws[3]
        } else {
            y.numel() * ws[1] * ws[2] * ws[3]
        };
        group.throughput(Throughput::Elements((2 * macs) as u64));
        group.bench_function(BenchmarkId::new(format!("{name}_forward"), &cpu), |bench| {
            bench.iter(|| duel::autograd::no_grad(|| fwd(&x, &w, &b)))
        });
        let (xg, wg, bg) = (
            x.with_requires_grad(),
            w.with_requires_grad(),
            b.with_requires_grad(),
        );
        let seed = Tensor::ones(y.shape().clone(), DType::F32, &cpu).unwrap();
        group.throughput(Throughput::Elements((6 * macs) as u64));
        group.bench_function(
            BenchmarkId::new(format!("{name}_forward_backward"), &cpu),
            |bench| {
                bench.iter(|| {
                    let y = fwd(&xg, &wg, &bg);
                    y.backward_with(&seed).unwrap();
                    for t in [&xg, &wg, &bg] {
                        t.zero_grad();
                    }
                })
            },
        );
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).warm_up_time(std::time::Duration::from_millis(500))
        .measurement_time(std::time::Duration::from_secs(2));
    targets = elementwise, reductions, rng_and_cast, conv, matmul
}
criterion_main!(benches);

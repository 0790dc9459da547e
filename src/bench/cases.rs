//! The op rows of `duel bench`: one [`Case`] per (op, direction, shape), with its FLOP and
//! byte counts and a builder that makes the timed work on any device.
//!
//! **Counting.** FLOPs count multiply and add separately (an FMA is 2): a convolution or
//! matmul direction is `2·M·N·K` of the GEMM it is; elementwise and normalisation rows
//! count the arithmetic of the formula per element (stated beside each). Bytes are the
//! compulsory traffic: every input read once, every output written once, in the dtype's
//! size; a kernel that moves more shows it as a lower GB/s, never as a bigger count.
//!
//! **Directions.** `forward`; `input-grad` and `weight-grad` run the real backward rule
//! through the tape with only that operand requiring a gradient (the forward pass that
//! records the node is not timed); `backward` is every gradient of the op; `update` is an
//! optimizer step.

use crate::autograd::no_grad;
use crate::device::Device;
use crate::error::Result;
use crate::ops::matmul::MatmulKernel;
use crate::ops::precision::{with_precision, Precision};
use crate::optim::{Adam, AdamConfig, Optimizer, RmsProp, RmsPropConfig};
use crate::tensor::{DType, Tensor};

use super::timing::Stopwatch;

/// The timed work of one row: each call runs the op once (timing what `sw` brackets) and
/// returns the result tensors that the check compares.
pub type Work = Box<dyn FnMut(&mut Stopwatch) -> Result<Vec<Tensor>>>;
type Build = Box<dyn Fn(&Device, DType) -> Result<Work>>;

/// One row to measure.
pub struct Case {
    pub op: &'static str,
    pub direction: &'static str,
    /// Where the shape comes from: `dcgan28 D.conv2`, `square`, `generic`.
    pub label: String,
    pub shape: String,
    /// The kernel version (simt matmul variants; `default` elsewhere).
    pub kernel: &'static str,
    pub flops: f64,
    /// Compulsory traffic at 4 bytes per element (f32).
    pub bytes: f64,
    /// Left out by `--quick`.
    pub full_only: bool,
    pub build: Build,
}

impl Case {
    /// The key rows are matched by across tools (`--against`): op, direction, label, shape.
    pub fn key(&self) -> String {
        format!(
            "{}/{}/{}/{}",
            self.op, self.direction, self.label, self.shape
        )
    }
}

/// Problem sizes for a device: the emulator runs every CUDA thread as a fiber, so it gets
/// batch 2 and small generic sizes (its rows show what a test run costs, not a GPU).
#[derive(Clone, Copy, Debug)]
pub struct Sizes {
    pub batch: usize,
    pub elements: usize,
    pub squares: &'static [usize],
}

impl Sizes {
    pub fn for_device(device: &Device) -> Sizes {
        match device {
            Device::Emu(_) => Sizes {
                batch: 2,
                elements: 1 << 14,
                squares: &[64, 128],
            },
            _ => Sizes {
                batch: 64,
                elements: 1 << 22,
                squares: &[256, 512, 1024, 2048],
            },
        }
    }
}

/// The same values on every device and dtype: Philox normals made in f32 on the cpu.
pub(super) fn input(shape: &[usize], seed: u64, dev: &Device, dtype: DType) -> Result<Tensor> {
    Tensor::randn(shape.to_vec(), seed, 0, &Device::Cpu)?
        .to_dtype(dtype)?
        .to_device(dev)
}

pub(super) fn dims(s: &[usize]) -> String {
    let v: Vec<String> = s.iter().map(|d| d.to_string()).collect();
    format!("[{}]", v.join(","))
}

/// Time only the backward walk of `y` seeded with `dy`.
pub(super) fn backward_timed(sw: &mut Stopwatch, y: &Tensor, dy: &Tensor) -> Result<()> {
    sw.start()?;
    y.backward_with(dy)?;
    sw.stop()
}

pub(super) fn grad_of(leaf: &Tensor) -> Result<Tensor> {
    leaf.grad().ok_or_else(|| {
        crate::error::Error::invalid(
            "the benchmarked backward gave no gradient (a bug in the case)",
        )
    })
}

/// The row of an `s x s x s` matmul forward (`2s³` FLOPs, `3s²` values of traffic); the
/// largest sizes (and `full_only`) only in a full run.
fn square_case(s: usize, label: &str, kernel: &'static str, full_only: bool, build: Build) -> Case {
    Case {
        op: "matmul",
        direction: "forward",
        label: label.into(),
        shape: format!("{s}x{s}x{s}"),
        kernel,
        flops: 2.0 * (s * s * s) as f64,
        bytes: 4.0 * 3.0 * (s * s) as f64,
        full_only: s > 512 || full_only,
        build,
    }
}

/// A cpu GEMM row on `s x s` row-major f32 matrices: `product(a, b, c, threads)` is timed
/// on the f32 cpu build; the reference builds (f64 or another device) run the plain
/// matmul of the same operands, the product the check compares against.
fn cpu_square_case(
    s: usize,
    label: &str,
    kernel: &'static str,
    full_only: bool,
    product: impl Fn(&[f32], &[f32], &mut [f32], usize) + Copy + 'static,
) -> Case {
    square_case(
        s,
        label,
        kernel,
        full_only,
        Box::new(move |dev, dt| {
            let a = input(&[s, s], 21, dev, dt)?;
            let b = input(&[s, s], 22, dev, dt)?;
            if dt != DType::F32 || !dev.is_cpu() {
                return Ok(Box::new(move |sw: &mut Stopwatch| {
                    sw.start()?;
                    let c = a.matmul(&b)?;
                    sw.stop()?;
                    Ok(vec![c])
                }) as Work);
            }
            let (a, b) = (a.to_vec::<f32>()?, b.to_vec::<f32>()?);
            Ok(Box::new(move |sw: &mut Stopwatch| {
                let mut c = vec![0f32; s * s];
                let threads = rayon::current_num_threads();
                sw.start()?;
                product(&a, &b, &mut c, threads);
                sw.stop()?;
                Ok(vec![Tensor::from_vec(c, vec![s, s], &Device::Cpu)?])
            }) as Work)
        }),
    )
}

/// The cpu bf16 GEMM (`ops::gemm_bf16`) on square matrices, one row per path this CPU has
/// (after `DUEL_CPU_ISA`), m split over the pool's threads (bitwise the same on any count),
/// keyed apart from the f32 rows so --filter and --against tell them apart. The check is
/// against the product of the unrounded operands, with [`super::BF16_TOLERANCE`].
fn bf16_gemm_cases(sizes: Sizes, out: &mut Vec<Case>) {
    use crate::ops::gemm_bf16::{gemm_bf16_parallel, Bf16Path, MatRef};
    for &s in sizes.squares {
        for path in Bf16Path::ALL.into_iter().filter(|p| p.available()) {
            // portable: ~1 s a call at 2048
            let slow = path == Bf16Path::Portable && s > 256;
            out.push(cpu_square_case(
                s,
                "square bf16",
                path.kernel_name(),
                slow,
                move |a, b, c, threads| {
                    let (a, b) = (MatRef::row_major(a, s), MatRef::row_major(b, s));
                    gemm_bf16_parallel(path, threads, s, s, s, c, false, a, b)
                },
            ));
        }
    }
}

/// The cpu f32 GEMM engines side by side on square matrices: the `gemm` crate and, where
/// the CPU runs it, duel's own (`ops::sgemm`, each loop version it has), keyed apart from
/// the plain `square` row (which runs whichever engine `cpu_gemm` picks).
fn f32_engine_cases(sizes: Sizes, out: &mut Vec<Case>) {
    use crate::ops::sgemm::Loops;
    let mut engines = vec![None];
    engines.extend(Loops::ALL.into_iter().filter(|l| l.available()).map(Some));
    for &s in sizes.squares {
        for &engine in &engines {
            // portable: scalar FMA calls, ~1 GFLOP/s
            let slow = engine == Some(Loops::Portable) && s > 128;
            let kernel = engine.map_or("gemm-crate", Loops::name);
            out.push(cpu_square_case(
                s,
                "square f32 engine",
                kernel,
                slow,
                move |a, b, c, threads| {
                    let (lhs, rhs) = ((a.as_ptr(), s, 1), (b.as_ptr(), s, 1));
                    // SAFETY: s x s row-major operands and output; the loops are available.
                    unsafe {
                        match engine {
                            Some(l) => crate::ops::sgemm::sgemm(
                                l,
                                (s, s, s),
                                (c.as_mut_ptr(), s),
                                false,
                                lhs,
                                rhs,
                                threads,
                            ),
                            None => crate::ops::cpu_gemm::gemm_crate(
                                s,
                                s,
                                s,
                                (c, s),
                                false,
                                lhs,
                                rhs,
                                gemm::Parallelism::Rayon(threads),
                            ),
                        }
                    }
                },
            ));
        }
    }
}

/// The simt tensor-core rows (kernels/matmul_mma.cu): the square products under
/// `Precision::Bf16` / `F16`, keyed apart from the f32 rows. The cpu reference run computes
/// the unrounded product (the check's bf16 tolerance covers both roundings).
fn mma_cases(sizes: Sizes, out: &mut Vec<Case>) {
    use crate::ops::precision::{with_precision, Precision};
    for &s in sizes.squares {
        for (label, kernel, precision) in [
            ("square bf16", "bf16-mma", Precision::Bf16),
            ("square f16", "f16-mma", Precision::F16),
        ] {
            out.push(square_case(
                s,
                label,
                kernel,
                false,
                Box::new(move |dev, dt| {
                    let a = input(&[s, s], 21, dev, dt)?;
                    let b = input(&[s, s], 22, dev, dt)?;
                    let p = if dev.is_cpu() {
                        Precision::F32
                    } else {
                        precision
                    };
                    Ok(Box::new(move |sw: &mut Stopwatch| {
                        sw.start()?;
                        let c = with_precision(p, || a.matmul(&b))?;
                        sw.stop()?;
                        Ok(vec![c])
                    }) as Work)
                }),
            ));
        }
    }
}

fn matmul_cases(sizes: Sizes, device: &Device, out: &mut Vec<Case>) {
    let kernels: Vec<(&'static str, MatmulKernel)> = if device.is_cpu() {
        vec![("default", MatmulKernel::default())]
    } else {
        MatmulKernel::ALL.iter().map(|k| (k.name(), *k)).collect()
    };
    for &s in sizes.squares {
        for &(kname, kernel) in &kernels {
            out.push(square_case(
                s,
                "square",
                kname,
                false,
                Box::new(move |dev, dt| {
                    let a = input(&[s, s], 21, dev, dt)?;
                    let b = input(&[s, s], 22, dev, dt)?;
                    Ok(Box::new(move |sw: &mut Stopwatch| {
                        sw.start()?;
                        let c = crate::ops::matmul::matmul_with(&a, &b, kernel)?;
                        sw.stop()?;
                        Ok(vec![c])
                    }) as Work)
                }),
            ));
        }
    }
    if device.is_cpu() {
        f32_engine_cases(sizes, out);
        bf16_gemm_cases(sizes, out);
    } else {
        mma_cases(sizes, out);
    }
    // The DCGAN linear layers, as nn::Linear runs them: x[n, in] @ w[out, in]ᵀ, in f32
    // and under `--precision bf16` (kernel `bf16`, the label with the precision appended,
    // as the conv rows).
    let n = sizes.batch;
    let layers = [
        ("dcgan28 G.fc", 100, 2 * 64 * 7 * 7),
        ("dcgan28 D.fc", 2 * 64 * 7 * 7, 1),
    ];
    let precisions = [(Precision::F32, "default"), (Precision::Bf16, "bf16")];
    for ((name, fan_in, fan_out), (precision, kernel)) in
        layers.into_iter().flat_map(|l| precisions.map(|p| (l, p)))
    {
        let label = match precision {
            Precision::F32 => name.to_string(),
            p => format!("{name} {p}"),
        };
        let flops = 2.0 * (n * fan_in * fan_out) as f64;
        let bytes = 4.0 * (n * fan_in + fan_in * fan_out + n * fan_out) as f64;
        for direction in ["forward", "input-grad", "weight-grad"] {
            out.push(Case {
                op: "matmul",
                direction,
                label: label.clone(),
                shape: format!("x[{n},{fan_in}] w[{fan_out},{fan_in}]"),
                kernel,
                flops,
                bytes,
                full_only: false,
                build: Box::new(move |dev, dt| {
                    let x = input(&[n, fan_in], 31, dev, dt)?;
                    let w = input(&[fan_out, fan_in], 32, dev, dt)?;
                    let dy = input(&[n, fan_out], 33, dev, dt)?;
                    if direction == "forward" {
                        return Ok(Box::new(move |sw: &mut Stopwatch| {
                            sw.start()?;
                            let y = no_grad(|| with_precision(precision, || x.matmul(&w.t()?)))?;
                            sw.stop()?;
                            Ok(vec![y])
                        }) as Work);
                    }
                    let wrt_input = direction == "input-grad";
                    let (x, w) = if wrt_input {
                        (x.with_requires_grad(), w)
                    } else {
                        (x, w.with_requires_grad())
                    };
                    Ok(Box::new(move |sw: &mut Stopwatch| {
                        let leaf = if wrt_input { &x } else { &w };
                        leaf.zero_grad();
                        // The node keeps the precision for the timed backward.
                        let y = with_precision(precision, || x.matmul(&w.t()?))?;
                        backward_timed(sw, &y, &dy)?;
                        Ok(vec![grad_of(leaf)?])
                    }) as Work)
                }),
            });
        }
    }
}

/// Batch norm (training mode) at the DCGAN shapes: forward ≈ 8 FLOPs per element (mean,
/// variance, normalise, scale and shift); backward ≈ 10 (the two reductions of dy and
/// dy·x̂, then dx).
fn norm_cases(sizes: Sizes, out: &mut Vec<Case>) {
    let n = sizes.batch;
    let shapes: Vec<(&str, Vec<usize>, bool)> = vec![
        ("dcgan28 G.bn1", vec![n, 2 * 64 * 7 * 7], false),
        ("dcgan28 G.bn2", vec![n, 64, 14, 14], false),
        ("dcgan28 D.bn", vec![n, 128, 7, 7], false),
        ("dcgan64 G.bn4", vec![n, 64, 32, 32], true),
        ("dcgan64 D.bn1", vec![n, 128, 16, 16], true),
    ];
    for (label, shape, full_only) in shapes {
        let numel: usize = shape.iter().product();
        let c = shape[1];
        for (direction, flops_per, bytes_per) in [("forward", 8.0, 2.0), ("backward", 10.0, 3.0)] {
            let shape = shape.clone();
            out.push(Case {
                op: "batch_norm",
                direction,
                label: label.into(),
                shape: dims(&shape),
                kernel: "default",
                flops: flops_per * numel as f64,
                // forward reads x, writes y; backward reads dy and x, writes dx.
                bytes: 4.0 * bytes_per * numel as f64,
                full_only,
                build: Box::new(move |dev, dt| {
                    let x = input(&shape, 41, dev, dt)?;
                    let dy = input(&shape, 42, dev, dt)?;
                    let rm = Tensor::zeros([c], dt, dev)?;
                    let rv = Tensor::ones([c], dt, dev)?;
                    let gamma = Tensor::ones([c], dt, dev)?.with_requires_grad();
                    let beta = Tensor::zeros([c], dt, dev)?.with_requires_grad();
                    let x = x.with_requires_grad();
                    let bn = move |x: &Tensor| {
                        crate::ops::norm::batch_norm(
                            x,
                            Some(&rm),
                            Some(&rv),
                            Some(&gamma),
                            Some(&beta),
                            true,
                            0.1,
                            1e-5,
                        )
                    };
                    let forward = direction == "forward";
                    Ok(Box::new(move |sw: &mut Stopwatch| {
                        if forward {
                            sw.start()?;
                            let y = no_grad(|| bn(&x))?;
                            sw.stop()?;
                            return Ok(vec![y]);
                        }
                        x.zero_grad();
                        let y = bn(&x)?;
                        backward_timed(sw, &y, &dy)?;
                        Ok(vec![grad_of(&x)?])
                    }) as Work)
                }),
            });
        }
    }
}

/// The GAN losses at D's output shape `[n, 1]` and at a large generic size. BCE with
/// logits ≈ 6 FLOPs per element (max, multiply-subtract, exp, log1p, mean), least squares 3.
fn loss_cases(sizes: Sizes, out: &mut Vec<Case>) {
    type LossFn = fn(&Tensor) -> Result<Tensor>;
    let losses: [(&'static str, f64, LossFn); 2] = [
        ("bce_with_logits", 6.0, |x| {
            crate::ops::loss::bce_with_logits_scalar(x, 1.0)
        }),
        ("least_squares", 3.0, |x| {
            crate::ops::loss::least_squares(x, 1.0)
        }),
    ];
    for (op, flops_per, f) in losses {
        for (label, len) in [("dcgan D.out", sizes.batch), ("generic", sizes.elements)] {
            // forward reads x; backward reads x and writes dx.
            for (direction, bytes_per) in [("forward", 1.0), ("backward", 2.0)] {
                out.push(Case {
                    op,
                    direction,
                    label: label.into(),
                    shape: dims(&[len, 1]),
                    kernel: "default",
                    flops: flops_per * len as f64,
                    bytes: 4.0 * bytes_per * len as f64,
                    full_only: false,
                    build: Box::new(move |dev, dt| {
                        let x = input(&[len, 1], 51, dev, dt)?.with_requires_grad();
                        let forward = direction == "forward";
                        Ok(Box::new(move |sw: &mut Stopwatch| {
                            if forward {
                                sw.start()?;
                                let l = no_grad(|| f(&x))?;
                                sw.stop()?;
                                return Ok(vec![l]);
                            }
                            x.zero_grad();
                            let l = f(&x)?;
                            sw.start()?;
                            l.backward()?;
                            sw.stop()?;
                            Ok(vec![grad_of(&x)?])
                        }) as Work)
                    }),
                });
            }
        }
    }
}

/// One optimizer step over parameters shaped like dcgan28's generator (0.77 M values).
/// Adam ≈ 12 FLOPs per value and reads p, g, m, v and writes p, m, v (7 × 4 bytes);
/// RMSProp with momentum ≈ 9 FLOPs, the same traffic (v and the momentum buffer).
fn optimizer_cases(sizes: Sizes, out: &mut Vec<Case>) {
    let shapes: Vec<Vec<usize>> = if sizes.batch < 64 {
        vec![vec![1000, 100], vec![64, 64, 4, 4]] // emulator: small
    } else {
        vec![
            vec![6272, 100],
            vec![6272],
            vec![6272],
            vec![128, 64, 4, 4],
            vec![64],
            vec![64],
            vec![64, 1, 4, 4],
            vec![1],
        ]
    };
    let total: usize = shapes.iter().map(|s| s.iter().product::<usize>()).sum();
    for (op, flops_per) in [("adam", 12.0), ("rmsprop", 9.0)] {
        let shapes = shapes.clone();
        out.push(Case {
            op,
            direction: "update",
            label: if sizes.batch < 64 {
                "small".into()
            } else {
                "dcgan28 G params".into()
            },
            shape: format!("{total} values in {} tensors", shapes.len()),
            kernel: "default",
            flops: flops_per * total as f64,
            bytes: 4.0 * 7.0 * total as f64,
            full_only: false,
            build: Box::new(move |dev, dt| {
                let mut params = Vec::new();
                for (i, s) in shapes.iter().enumerate() {
                    let p = input(s, 60 + i as u64, dev, dt)?.with_requires_grad();
                    let g = input(s, 80 + i as u64, dev, dt)?;
                    // d/dp Σ p·g = g: every parameter gets a fixed gradient.
                    p.mul(&g)?.sum_all()?.backward()?;
                    params.push(p);
                }
                let mut opt: Box<dyn Optimizer> = if op == "adam" {
                    Box::new(Adam::new(
                        params.clone(),
                        AdamConfig::new(2e-4).betas(0.5, 0.999),
                    )?)
                } else {
                    Box::new(RmsProp::new(
                        params.clone(),
                        RmsPropConfig::new(5e-5).alpha(0.99).momentum(0.5),
                    )?)
                };
                Ok(Box::new(move |sw: &mut Stopwatch| {
                    sw.start()?;
                    opt.step()?;
                    sw.stop()?;
                    params.iter().map(|p| p.detach().contiguous()).collect()
                }) as Work)
            }),
        });
    }
}

/// Elementwise ops and reductions on `elements` f32 values: binary ops read 2 and write 1
/// value, unary ops read 1 and write 1, reductions read 1; 1 FLOP per element except
/// where stated (transcendentals are counted as 1: these rows are judged by GB/s).
fn elementwise_cases(sizes: Sizes, out: &mut Vec<Case>) {
    type UnaryFn = fn(&Tensor, &Tensor) -> Result<Tensor>;
    let n = sizes.elements;
    let rows = n / 256;
    let ops: [(&'static str, &'static str, f64, UnaryFn); 9] = [
        ("add", "[n] + [n]", 3.0, |a, b| a.add(b)),
        ("mul", "[n/256,256] * [1,256]", 2.0, |a, b| {
            a.mul(&b.narrow(0, 0, 1)?)
        }),
        ("relu", "[n]", 2.0, |a, _| a.relu()),
        ("leaky_relu", "[n]", 2.0, |a, _| a.leaky_relu(0.2)),
        ("tanh", "[n]", 2.0, |a, _| a.tanh()),
        ("sigmoid", "[n]", 2.0, |a, _| a.sigmoid()),
        ("sum", "[n/256,256] over axis 1", 1.0, |a, _| {
            a.sum(&[1], false)
        }),
        ("mean", "[n/256,256] over axis 0", 1.0, |a, _| {
            a.mean(&[0], false)
        }),
        ("sum_all", "[n]", 1.0, |a, _| a.sum_all()),
    ];
    for (op, what, values_moved, f) in ops {
        out.push(Case {
            op,
            direction: "forward",
            label: "generic".into(),
            shape: what.replace('n', &n.to_string()),
            kernel: "default",
            flops: n as f64,
            bytes: 4.0 * values_moved * n as f64,
            full_only: false,
            build: Box::new(move |dev, dt| {
                let a = input(&[rows, 256], 91, dev, dt)?;
                let b = input(&[rows, 256], 92, dev, dt)?;
                Ok(Box::new(move |sw: &mut Stopwatch| {
                    sw.start()?;
                    let y = f(&a, &b)?;
                    sw.stop()?;
                    Ok(vec![y])
                }) as Work)
            }),
        });
    }
}

/// Every op row for `device`, in table order.
pub fn all_cases(device: &Device) -> Vec<Case> {
    let sizes = Sizes::for_device(device);
    let mut out = Vec::new();
    super::conv_cases::conv_cases(sizes, &mut out);
    matmul_cases(sizes, device, &mut out);
    norm_cases(sizes, &mut out);
    loss_cases(sizes, &mut out);
    optimizer_cases(sizes, &mut out);
    elementwise_cases(sizes, &mut out);
    out
}

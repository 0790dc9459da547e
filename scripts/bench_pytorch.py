#!/usr/bin/env python3
"""The rows and whole steps of `duel bench`, measured in PyTorch, as duel-bench/1 JSON.

    python3 scripts/bench_pytorch.py [--quick] [--threads N] [--filter PATTERN] > torch.json
    cargo run --release -- bench --device cpu --against torch.json

Same shapes, keys, FLOP/byte counts and sampling budget as src/bench/cases.rs and
src/bench/timing.rs; the whole steps are the same networks as src/gan/arch.rs (DCGAN
N(0, 0.02) init, batch-norm weights N(1, 0.02)), the same losses (BCE with logits,
non-saturating G), Adam (lr, betas) as `duel train`'s defaults, one D step then one G step
with D frozen, the gradient norms and the .item() reads duel's trainer makes. Runs on the
cpu only (duel's comparison point on a machine without a GPU). PyTorch is not a
dependency of duel: install it with
    pip install torch
"""

import argparse
import contextlib
import datetime
import json
import os
import platform
import statistics
import sys
import time

try:
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except ImportError:
    sys.stderr.write(
        "error: PyTorch is not installed; install it with\n"
        "  pip install torch\n"
        "then rerun: python3 scripts/bench_pytorch.py > torch.json\n"
    )
    sys.exit(2)

SCHEMA = "duel-bench/1"
BATCH = 64
ELEMENTS = 1 << 22
SQUARES = [256, 512, 1024, 2048]


class Budget:
    """src/bench/timing.rs's Budget: min samples and time, max samples or time."""

    def __init__(self, quick):
        if quick:
            self.min_samples, self.max_samples, self.min_time, self.max_time = 3, 20, 0.05, 0.5
        else:
            self.min_samples, self.max_samples, self.min_time, self.max_time = 5, 200, 0.4, 3.0

    def done(self, n, spent):
        return (
            n >= self.max_samples
            or (n >= self.min_samples and spent >= self.min_time)
            or (n >= 1 and spent >= self.max_time)
        )


def spread(samples):
    s = sorted(samples)

    def at(q):
        return s[int(round((len(s) - 1) * q))]

    return statistics.median(s), at(0.1), at(0.9)


def dims(shape):
    return "[" + ",".join(str(d) for d in shape) + "]"


def randn(shape):
    return torch.randn(*shape, dtype=torch.float32)


class Case:
    def __init__(self, op, direction, label, shape, flops, nbytes, full_only, build):
        self.op, self.direction, self.label, self.shape = op, direction, label, shape
        self.flops, self.bytes, self.full_only, self.build = flops, nbytes, full_only, build

    @property
    def key(self):
        return f"{self.op}/{self.direction}/{self.label}/{self.shape}"


def timed(fn):
    """fn(start, stop) brackets the timed part; returns the bracketed seconds."""
    box = {}

    def start():
        box["t"] = time.perf_counter()

    def stop():
        box["e"] = time.perf_counter() - box["t"]

    fn(start, stop)
    return box["e"]


# (arch, name, transposed, cin, cout, h, k, stride, pad, full_only): src/bench/cases.rs.
CONV_LAYERS = [
    ("dcgan28", "G.convt1", True, 128, 64, 7, 4, 2, 1, False),
    ("dcgan28", "G.convt2", True, 64, 1, 14, 4, 2, 1, False),
    ("dcgan28", "D.conv1", False, 1, 64, 28, 4, 2, 1, False),
    ("dcgan28", "D.conv2", False, 64, 128, 14, 4, 2, 1, False),
    ("dcgan64", "G.convt1", True, 100, 512, 1, 4, 1, 0, True),
    ("dcgan64", "G.convt2", True, 512, 256, 4, 4, 2, 1, True),
    ("dcgan64", "G.convt3", True, 256, 128, 8, 4, 2, 1, True),
    ("dcgan64", "G.convt4", True, 128, 64, 16, 4, 2, 1, True),
    ("dcgan64", "G.convt5", True, 64, 1, 32, 4, 2, 1, True),
    ("dcgan64", "D.conv1", False, 1, 64, 64, 4, 2, 1, True),
    ("dcgan64", "D.conv2", False, 64, 128, 32, 4, 2, 1, True),
    ("dcgan64", "D.conv3", False, 128, 256, 16, 4, 2, 1, True),
    ("dcgan64", "D.conv4", False, 256, 512, 8, 4, 2, 1, True),
    ("dcgan64", "D.conv5", False, 512, 1, 4, 4, 1, 0, True),
    ("generic", "3x3/1", False, 64, 64, 32, 3, 1, 1, True),
    ("generic", "3x3/1", False, 256, 256, 8, 3, 1, 1, True),
]


def conv_cases(out):
    n = BATCH
    for arch, name, tr, cin, cout, h, k, s, p, full_only in CONV_LAYERS:
        ho = (h - 1) * s + k - 2 * p if tr else (h + 2 * p - k) // s + 1
        wd = [cin, cout, k, k] if tr else [cout, cin, k, k]
        xd, yd = [n, cin, h, h], [n, cout, ho, ho]
        grid = h if tr else ho
        flops = 2.0 * n * cin * cout * k * k * grid * grid
        numel = lambda d: float(torch.Size(d).numel())
        xn, wn, yn = numel(xd), numel(wd), numel(yd)
        op = "conv_transpose2d" if tr else "conv2d"

        def run(x, w, tr=tr, s=s, p=p):
            return F.conv_transpose2d(x, w, None, s, p) if tr else F.conv2d(x, w, None, s, p)

        for direction in ["forward", "input-grad", "weight-grad"]:
            def build(direction=direction, xd=xd, wd=wd, yd=yd, run=run):
                x, w, dy = randn(xd), randn(wd), randn(yd)
                if direction == "forward":
                    def work(start, stop):
                        with torch.no_grad():
                            start()
                            run(x, w)
                            stop()
                    return work
                leaf = x if direction == "input-grad" else w
                leaf.requires_grad_(True)

                def work(start, stop):
                    leaf.grad = None
                    y = run(x, w)
                    start()
                    y.backward(dy)
                    stop()
                return work

            out.append(Case(op, direction, f"{arch} {name}", f"x{dims(xd)} w{dims(wd)}",
                            flops, 4.0 * (xn + wn + yn), full_only, build))


def matmul_cases(out):
    for s in SQUARES:
        def build(s=s):
            a, b = randn([s, s]), randn([s, s])

            def work(start, stop):
                with torch.no_grad():
                    start()
                    torch.mm(a, b)
                    stop()
            return work
        out.append(Case("matmul", "forward", "square", f"{s}x{s}x{s}", 2.0 * s ** 3,
                        12.0 * s * s, s > 512, build))
    n = BATCH
    for label, fin, fout in [("dcgan28 G.fc", 100, 6272), ("dcgan28 D.fc", 6272, 1)]:
        for direction in ["forward", "input-grad", "weight-grad"]:
            def build(direction=direction, fin=fin, fout=fout):
                x, w, dy = randn([n, fin]), randn([fout, fin]), randn([n, fout])
                if direction == "forward":
                    def work(start, stop):
                        with torch.no_grad():
                            start()
                            x @ w.t()
                            stop()
                    return work
                leaf = x if direction == "input-grad" else w
                leaf.requires_grad_(True)

                def work(start, stop):
                    leaf.grad = None
                    y = x @ w.t()
                    start()
                    y.backward(dy)
                    stop()
                return work
            out.append(Case("matmul", direction, label, f"x[{n},{fin}] w[{fout},{fin}]",
                            2.0 * n * fin * fout, 4.0 * (n * fin + fin * fout + n * fout),
                            False, build))


def norm_cases(out):
    n = BATCH
    shapes = [
        ("dcgan28 G.bn1", [n, 6272], False),
        ("dcgan28 G.bn2", [n, 64, 14, 14], False),
        ("dcgan28 D.bn", [n, 128, 7, 7], False),
        ("dcgan64 G.bn4", [n, 64, 32, 32], True),
        ("dcgan64 D.bn1", [n, 128, 16, 16], True),
    ]
    for label, shape, full_only in shapes:
        numel = float(torch.Size(shape).numel())
        for direction, fpe, bpe in [("forward", 8.0, 2.0), ("backward", 10.0, 3.0)]:
            def build(direction=direction, shape=shape):
                c = shape[1]
                x, dy = randn(shape).requires_grad_(True), randn(shape)
                rm, rv = torch.zeros(c), torch.ones(c)
                gamma = torch.ones(c, requires_grad=True)
                beta = torch.zeros(c, requires_grad=True)

                def bn(x):
                    return F.batch_norm(x, rm, rv, gamma, beta, True, 0.1, 1e-5)

                def work(start, stop):
                    if direction == "forward":
                        with torch.no_grad():
                            start()
                            bn(x)
                            stop()
                        return
                    x.grad = None
                    y = bn(x)
                    start()
                    y.backward(dy)
                    stop()
                return work
            out.append(Case("batch_norm", direction, label, dims(shape), fpe * numel,
                            4.0 * bpe * numel, full_only, build))


def loss_cases(out):
    losses = [
        ("bce_with_logits", 6.0,
         lambda x: F.binary_cross_entropy_with_logits(x, torch.ones_like(x))),
        ("least_squares", 3.0, lambda x: 0.5 * ((x - 1.0) ** 2).mean()),
    ]
    for op, fpe, f in losses:
        for label, n in [("dcgan D.out", BATCH), ("generic", ELEMENTS)]:
            for direction, bpe in [("forward", 1.0), ("backward", 2.0)]:
                def build(direction=direction, n=n, f=f):
                    x = randn([n, 1]).requires_grad_(True)

                    def work(start, stop):
                        if direction == "forward":
                            with torch.no_grad():
                                start()
                                f(x)
                                stop()
                            return
                        x.grad = None
                        loss = f(x)
                        start()
                        loss.backward()
                        stop()
                    return work
                out.append(Case(op, direction, label, dims([n, 1]), fpe * n, 4.0 * bpe * n,
                                False, build))


def optimizer_cases(out):
    shapes = [[6272, 100], [6272], [6272], [128, 64, 4, 4], [64], [64], [64, 1, 4, 4], [1]]
    total = sum(torch.Size(s).numel() for s in shapes)
    for op, fpe in [("adam", 12.0), ("rmsprop", 9.0)]:
        def build(op=op):
            params = []
            for s in shapes:
                p = randn(s).requires_grad_(True)
                p.grad = randn(s)
                params.append(p)
            if op == "adam":
                opt = torch.optim.Adam(params, lr=2e-4, betas=(0.5, 0.999))
            else:
                opt = torch.optim.RMSprop(params, lr=5e-5, alpha=0.99, momentum=0.5)

            def work(start, stop):
                start()
                opt.step()
                stop()
            return work
        out.append(Case(op, "update", "dcgan28 G params",
                        f"{total} values in {len(shapes)} tensors", fpe * total,
                        28.0 * total, False, build))


def elementwise_cases(out):
    n = ELEMENTS
    rows = n // 256
    ops = [
        ("add", "[n] + [n]", 3.0, lambda a, b: a + b),
        ("mul", "[n/256,256] * [1,256]", 2.0, lambda a, b: a * b[0:1]),
        ("relu", "[n]", 2.0, lambda a, b: torch.relu(a)),
        ("leaky_relu", "[n]", 2.0, lambda a, b: F.leaky_relu(a, 0.2)),
        ("tanh", "[n]", 2.0, lambda a, b: torch.tanh(a)),
        ("sigmoid", "[n]", 2.0, lambda a, b: torch.sigmoid(a)),
        ("sum", "[n/256,256] over axis 1", 1.0, lambda a, b: a.sum(1)),
        ("mean", "[n/256,256] over axis 0", 1.0, lambda a, b: a.mean(0)),
        ("sum_all", "[n]", 1.0, lambda a, b: a.sum()),
    ]
    for op, what, moved, f in ops:
        def build(f=f):
            a, b = randn([rows, 256]), randn([rows, 256])

            def work(start, stop):
                with torch.no_grad():
                    start()
                    f(a, b)
                    stop()
            return work
        out.append(Case(op, "forward", "generic", what.replace("n", str(n)), float(n),
                        4.0 * moved * n, False, build))


# ---- whole steps: src/gan/arch.rs's networks, src/gan/trainer.rs's step ----

def dcgan_init(m):
    for name, p in m.named_parameters():
        with torch.no_grad():
            if name.endswith("bias"):
                p.zero_()
            elif p.dim() >= 2:
                p.normal_(0.0, 0.02)
            else:
                p.normal_(1.0, 0.02)


def dcgan28(nz=100, w=64, c=1):
    g = nn.Sequential(
        nn.Linear(nz, 2 * w * 49, bias=False), nn.BatchNorm1d(2 * w * 49), nn.ReLU(),
        nn.Unflatten(1, (2 * w, 7, 7)),
        nn.ConvTranspose2d(2 * w, w, 4, 2, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU(),
        nn.ConvTranspose2d(w, c, 4, 2, 1), nn.Tanh())
    d = nn.Sequential(
        nn.Conv2d(c, w, 4, 2, 1), nn.LeakyReLU(0.2),
        nn.Conv2d(w, 2 * w, 4, 2, 1, bias=False), nn.BatchNorm2d(2 * w), nn.LeakyReLU(0.2),
        nn.Flatten(), nn.Linear(2 * w * 49, 1))
    dcgan_init(g)
    dcgan_init(d)
    return g, d, [c, 28, 28], nz


def dcgan64(nz=100, w=64, c=1):
    layers = [nn.Unflatten(1, (nz, 1, 1)), nn.ConvTranspose2d(nz, 8 * w, 4, 1, 0, bias=False),
              nn.BatchNorm2d(8 * w), nn.ReLU()]
    for m in [8, 4, 2]:
        layers += [nn.ConvTranspose2d(m * w, m * w // 2, 4, 2, 1, bias=False),
                   nn.BatchNorm2d(m * w // 2), nn.ReLU()]
    layers += [nn.ConvTranspose2d(w, c, 4, 2, 1, bias=False), nn.Tanh()]
    g = nn.Sequential(*layers)
    layers = [nn.Conv2d(c, w, 4, 2, 1, bias=False), nn.LeakyReLU(0.2)]
    for m in [1, 2, 4]:
        layers += [nn.Conv2d(m * w, 2 * m * w, 4, 2, 1, bias=False),
                   nn.BatchNorm2d(2 * m * w), nn.LeakyReLU(0.2)]
    layers += [nn.Conv2d(8 * w, 1, 4, 1, 0, bias=False), nn.Flatten()]
    d = nn.Sequential(*layers)
    dcgan_init(g)
    dcgan_init(d)
    return g, d, [c, 64, 64], nz


def mlp(nz=16, h=128, dim=2):
    g = nn.Sequential(nn.Linear(nz, h), nn.ReLU(), nn.Linear(h, h), nn.ReLU(), nn.Linear(h, dim))
    d = nn.Sequential(nn.Linear(dim, h), nn.LeakyReLU(0.2), nn.Linear(h, h), nn.LeakyReLU(0.2),
                      nn.Linear(h, 1))
    return g, d, [dim], nz


# (arch, builder, batch, lr): `duel train`'s defaults (TrainConfig::defaults).
STEPS = [("dcgan28", dcgan28, 64, 2e-4), ("dcgan64", dcgan64, 64, 2e-4),
         ("mlp", mlp, 256, 1e-3)]


# Each DCGAN in f32 and under bf16 autocast; the MLP in f32 (as src/bench/step.rs).
STEP_ROWS = [(arch, builder, batch, lr, precision)
             for arch, builder, batch, lr in STEPS
             for precision in (["f32", "bf16"] if arch != "mlp" else ["f32"])]


def grad_norm(params):
    return torch.sqrt(sum((p.grad.double() ** 2).sum() for p in params
                          if p.grad is not None)).item()


def key_matches(key, pattern):
    """duel bench's --filter: PATTERN in key, or with a trailing $, key ends with the rest."""
    if pattern is None:
        return True
    if pattern.endswith("$"):
        return key.endswith(pattern[:-1])
    return pattern in key


def measure_step(builder, batch, lr, warmup, steps, precision="f32"):
    """Time the step; precision "bf16" runs the forward passes and losses under
    torch.autocast('cpu', dtype=torch.bfloat16) (backward outside it, as the autocast
    recipe has it): what `duel train --precision bf16` is compared with."""
    g, d, sample, nz = builder()
    autocast = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if precision == "bf16" \
        else contextlib.nullcontext
    opt_g = torch.optim.Adam(g.parameters(), lr=lr, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(d.parameters(), lr=lr, betas=(0.5, 0.999))
    bce = F.binary_cross_entropy_with_logits
    d_params = list(d.parameters())

    def step():
        x = torch.rand(batch, *sample) * 2 - 1
        z = torch.randn(batch, nz)
        with torch.no_grad(), autocast():
            fake = g(z)
        opt_d.zero_grad()
        with autocast():
            real_out, fake_out = d(x), d(fake)
            loss = bce(real_out, torch.ones_like(real_out)) + bce(fake_out, torch.zeros_like(fake_out))
        loss.backward()
        grad_norm(d_params)
        opt_d.step()
        loss.item(), torch.sigmoid(real_out).mean().item(), torch.sigmoid(fake_out).mean().item()
        z = torch.randn(batch, nz)
        opt_g.zero_grad()
        for p in d_params:
            p.requires_grad_(False)
        with autocast():
            out = d(g(z))
            g_loss = bce(out, torch.ones_like(out))
        g_loss.backward()
        for p in d_params:
            p.requires_grad_(True)
        grad_norm(list(g.parameters()))
        opt_g.step()
        g_loss.item()

    for _ in range(warmup):
        step()
    samples = []
    for _ in range(steps):
        t = time.perf_counter()
        step()
        samples.append(time.perf_counter() - t)
    return samples


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="CI-sized, as duel bench --quick")
    ap.add_argument("--threads", type=int, default=os.cpu_count(),
                    help="torch.set_num_threads [all logical CPUs]")
    ap.add_argument("--filter", default=None,
                    help="only keys containing PATTERN (ending in $: keys ending in the rest)")
    ap.add_argument("--no-steps", action="store_true", help="leave out the whole steps")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(1)
    budget = Budget(args.quick)
    cases = []
    for make in [conv_cases, matmul_cases, norm_cases, loss_cases, optimizer_cases,
                 elementwise_cases]:
        make(cases)
    rows = []
    for c in cases:
        if (args.quick and c.full_only) or not key_matches(c.key, args.filter):
            continue
        sys.stderr.write(f"\rmeasuring {c.key}\x1b[K")
        work = c.build()
        timed(work)  # warm-up, as duel's check call
        samples, started = [], time.perf_counter()
        while not budget.done(len(samples), time.perf_counter() - started):
            samples.append(timed(work))
        med, p10, p90 = spread(samples)
        rows.append({
            "key": c.key, "op": c.op, "direction": c.direction, "label": c.label,
            "shape": c.shape, "dtype": "f32", "device": "cpu", "kernel": "torch",
            "samples_s": samples, "median_s": med, "p10_s": p10, "p90_s": p90,
            "flops": c.flops, "bytes": c.bytes, "gflops": c.flops / med / 1e9,
            "gbps": c.bytes / med / 1e9,
        })
    steps = []
    for arch, builder, batch, lr, precision in ([] if args.no_steps else STEP_ROWS):
        # The keys of duel's step rows: step/<arch> in f32, step/<arch>/<precision> else.
        key = f"step/{arch}" if precision == "f32" else f"step/{arch}/{precision}"
        if not key_matches(key, args.filter):
            continue
        if args.quick and arch == "dcgan64":
            continue
        sys.stderr.write(f"\rmeasuring {key}\x1b[K")
        warmup, n = (1, 5) if args.quick else ((2, 8) if arch == "dcgan64" else (3, 30))
        samples = measure_step(builder, batch, lr, warmup, n, precision)
        med, p10, p90 = spread(samples)
        steps.append({
            "key": key, "arch": arch, "precision": precision, "batch": batch, "device": "cpu",
            "samples_s": samples,
            "median_s": med, "p10_s": p10, "p90_s": p90, "ms_per_step": med * 1e3,
            "img_per_s": batch / med,
        })
    sys.stderr.write("\r\x1b[K")
    json.dump({
        "schema": SCHEMA,
        "tool": f"pytorch {torch.__version__.split('+')[0]}",
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M"),
        "command": " ".join(sys.argv),
        "machine": {"cpu": cpu_model(), "threads": args.threads, "device": "cpu",
                    "torch": torch.__version__},
        "rows": rows,
        "steps": steps,
    }, sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()

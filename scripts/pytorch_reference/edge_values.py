#!/usr/bin/env python3
"""PyTorch's results at the values where implementations disagree: NaN, ±inf, exact zeros,
values exactly at a clamp bound, ties of max/min. Writes tests/data/pytorch/edge_values.json
for tests/edge_values.rs. Every case is f32 on the cpu; the sum of the output is the loss,
so each gradient is d(sum y)/dx. Non-finite numbers are written as the strings "nan",
"inf", "-inf" (JSON has no literal for them).

Usage: python3 scripts/pytorch_reference/edge_values.py   (needs torch)
"""
import json
import math
import pathlib

import torch
import torch.nn.functional as F

ROOT = pathlib.Path(__file__).resolve().parents[2]
OUT = ROOT / "tests" / "data" / "pytorch" / "edge_values.json"

# 14 values (not a multiple of 4, so vectorised kernels run their scalar tail too).
X = [math.nan, math.inf, -math.inf, 0.0, -0.0, 1.0, -1.0, 0.5, -0.5, 1.5, -1.5, 1e-30, 100.0, -100.0]


def enc(values):
    out = []
    for v in values:
        if math.isnan(v):
            out.append("nan")
        elif math.isinf(v):
            out.append("inf" if v > 0 else "-inf")
        else:
            out.append(v)
    return out


def unary_case(name, fn, x, **params):
    t = torch.tensor(x, dtype=torch.float32, requires_grad=True)
    y = fn(t)
    y.sum().backward()
    return {"op": name, "params": params, "x": enc(x), "y": enc(y.reshape(-1).tolist()),
            "dx": enc(t.grad.tolist())}


def main():
    cases = [
        unary_case("relu", torch.relu, X),
        unary_case("leaky_relu", lambda t: F.leaky_relu(t, 0.2), X, slope=0.2),
        unary_case("sigmoid", torch.sigmoid, X),
        unary_case("tanh", torch.tanh, X),
        unary_case("abs", torch.abs, X),
        unary_case("neg", torch.neg, X),
        unary_case("exp", torch.exp, X),
        unary_case("clamp", lambda t: torch.clamp(t, -0.5, 1.5), X, min=-0.5, max=1.5),
    ]
    # Full max reductions: ties share the gradient evenly (torch.amax), NaN wins.
    for x in ([1.0, 3.0, 3.0, -math.inf, 2.0, 3.0, 0.0], [1.0, math.nan, 5.0, 2.0, math.nan], [-math.inf] * 5):
        cases.append(unary_case("max_all", lambda t: torch.amax(t), x))
    # Row maxima of a 3x5 matrix with ties in rows.
    m = [[2.0, 7.0, 7.0, 1.0, 0.0], [-1.0, -1.0, -1.0, -1.0, -1.0], [0.0, math.nan, 3.0, 3.0, 1.0]]
    t = torch.tensor(m, dtype=torch.float32, requires_grad=True)
    y = torch.amax(t, dim=1)
    y.sum().backward()
    cases.append({"op": "max_rows", "params": {}, "x": enc(sum(m, [])), "shape": [3, 5],
                  "y": enc(y.tolist()), "dx": enc(sum(t.grad.tolist(), []))})
    # Losses at exact zeros (x == target: L1's gradient is sign(0) = 0) and at ±inf logits.
    a = [0.5, -1.0, 2.0, 2.0, 0.0, -3.0, 1e-20]
    b = [0.5, -1.0, 1.0, 3.0, 0.0, -2.0, 0.0]
    for name, fn in (("l1", F.l1_loss), ("mse", F.mse_loss)):
        ta = torch.tensor(a, dtype=torch.float32, requires_grad=True)
        loss = fn(ta, torch.tensor(b, dtype=torch.float32))
        loss.backward()
        cases.append({"op": name, "params": {}, "x": enc(a), "target": enc(b), "y": enc([loss.item()]),
                      "dx": enc(ta.grad.tolist())})
    logits = [math.inf, -math.inf, 0.0, 100.0, -100.0, 30.0]
    for target in (1.0, 0.0):
        tl = torch.tensor(logits, dtype=torch.float32, requires_grad=True)
        loss = F.binary_cross_entropy_with_logits(tl, torch.full_like(tl, target))
        loss.backward()
        cases.append({"op": "bce_with_logits", "params": {"target": target}, "x": enc(logits),
                      "y": enc([loss.item()]), "dx": enc(tl.grad.tolist())})
    # WGAN weight clipping: in-place clamp to [-c, c]; NaN stays NaN.
    w = [math.nan, 2.0, -2.0, 0.005, math.inf, -math.inf, 0.01, -0.01, 0.0]
    tw = torch.tensor(w, dtype=torch.float32)
    tw.clamp_(-0.01, 0.01)
    cases.append({"op": "clip_weights", "params": {"c": 0.01}, "x": enc(w), "y": enc(tw.tolist())})

    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"torch": torch.__version__, "script": "scripts/pytorch_reference/edge_values.py",
                               "cases": cases}, indent=1) + "\n")
    print(f"wrote {OUT.relative_to(ROOT)} ({len(cases)} cases)")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Reference outputs and gradients of conv2d / conv_transpose2d from PyTorch, for
tests/conv_pytorch.rs (which checks duel against them without PyTorch at test time).

Run with any PyTorch (e.g. a venv outside the repo):
    /root/.cache/duel/torch-venv/bin/python scripts/pytorch_reference/conv.py
It writes tests/data/pytorch/conv.json.

Inputs are deterministic formulas, not torch's RNG, so the data can be regenerated
anywhere bit for bit:
    x[i]    = sin(0.37 * i + 0.1)
    w[i]    = cos(0.23 * i + 0.2) * 0.5
    bias[i] = 0.1 * i - 0.05
    r[i]    = sin(0.11 * i + 0.3)          (weights of the loss)
over the flat row-major index i. The loss is L = sum(y * r); the gradients are dL/dx,
dL/dw, dL/dbias. Everything is computed in float64.
Each case: op, x/w shapes, bias (bool), stride, padding, dilation (and output_padding
for conv_transpose2d), then flat lists x, w, bias, r, y (with y_shape), dx, dw, dbias.
"""
import json
import math
import os
import sys

import torch
import torch.nn.functional as F

CASES = [
    # conv2d
    dict(op="conv2d", x=[2, 2, 5, 6], w=[3, 2, 3, 2], bias=True, stride=[1, 1], padding=[0, 0], dilation=[1, 1]),
    dict(op="conv2d", x=[2, 2, 5, 6], w=[3, 2, 3, 3], bias=True, stride=[2, 2], padding=[1, 1], dilation=[1, 1]),
    dict(op="conv2d", x=[1, 3, 7, 6], w=[2, 3, 3, 2], bias=False, stride=[1, 1], padding=[1, 1], dilation=[2, 2]),
    dict(op="conv2d", x=[1, 2, 9, 7], w=[4, 2, 2, 3], bias=True, stride=[3, 2], padding=[0, 2], dilation=[1, 2]),
    dict(op="conv2d", x=[2, 1, 8, 8], w=[4, 1, 4, 4], bias=True, stride=[2, 2], padding=[1, 1], dilation=[1, 1]),
    # conv_transpose2d
    dict(op="conv_transpose2d", x=[2, 2, 3, 4], w=[2, 3, 3, 2], bias=True, stride=[1, 1], padding=[0, 0], output_padding=[0, 0], dilation=[1, 1]),
    dict(op="conv_transpose2d", x=[2, 2, 3, 4], w=[2, 3, 3, 3], bias=True, stride=[2, 2], padding=[1, 1], output_padding=[1, 1], dilation=[1, 1]),
    dict(op="conv_transpose2d", x=[1, 3, 3, 5], w=[3, 2, 3, 2], bias=False, stride=[1, 1], padding=[1, 1], output_padding=[0, 0], dilation=[2, 2]),
    dict(op="conv_transpose2d", x=[1, 2, 3, 2], w=[2, 3, 2, 3], bias=True, stride=[2, 3], padding=[1, 0], output_padding=[1, 2], dilation=[1, 1]),
    dict(op="conv_transpose2d", x=[2, 3, 4, 4], w=[3, 1, 4, 4], bias=True, stride=[2, 2], padding=[1, 1], output_padding=[0, 0], dilation=[1, 1]),
    dict(op="conv_transpose2d", x=[1, 2, 3, 3], w=[2, 2, 3, 3], bias=True, stride=[1, 1], padding=[1, 1], output_padding=[1, 1], dilation=[2, 2]),
]


def formula(shape, f):
    n = math.prod(shape)
    return torch.tensor([f(i) for i in range(n)], dtype=torch.float64).reshape(shape)


def run(case):
    x = formula(case["x"], lambda i: math.sin(0.37 * i + 0.1)).requires_grad_()
    w = formula(case["w"], lambda i: math.cos(0.23 * i + 0.2) * 0.5).requires_grad_()
    nb = case["w"][0] if case["op"] == "conv2d" else case["w"][1]
    b = formula([nb], lambda i: 0.1 * i - 0.05).requires_grad_() if case["bias"] else None
    if case["op"] == "conv2d":
        y = F.conv2d(x, w, b, stride=case["stride"], padding=case["padding"], dilation=case["dilation"])
    else:
        y = F.conv_transpose2d(x, w, b, stride=case["stride"], padding=case["padding"],
                               output_padding=case["output_padding"], dilation=case["dilation"])
    r = formula(list(y.shape), lambda i: math.sin(0.11 * i + 0.3))
    (y * r).sum().backward()
    out = dict(case)
    flat = lambda t: [float(v) for v in t.detach().reshape(-1).tolist()]
    out.update(
        x_data=flat(x), w_data=flat(w), bias_data=flat(b) if b is not None else [],
        r=flat(r), y_shape=list(y.shape), y=flat(y), dx=flat(x.grad), dw=flat(w.grad),
        dbias=flat(b.grad) if b is not None else [],
    )
    return out


def main():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    path = os.path.join(root, "tests", "data", "pytorch", "conv.json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    doc = {
        "generator": "scripts/pytorch_reference/conv.py",
        "torch_version": torch.__version__,
        "dtype": "float64",
        "loss": "sum(y * r)",
        "cases": [run(c) for c in CASES],
    }
    with open(path, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    print(f"wrote {len(doc['cases'])} cases to {path}", file=sys.stderr)


if __name__ == "__main__":
    main()

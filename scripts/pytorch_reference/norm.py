#!/usr/bin/env python3
"""Reference outputs and gradients of batch norm, instance norm, nearest upsampling and
2-D padding from PyTorch, for tests/norm_pytorch.rs (which checks duel against them
without PyTorch at test time).

Run with any PyTorch (e.g. a venv outside the repo):
    /root/.cache/duel/torch-venv/bin/python scripts/pytorch_reference/norm.py
It writes tests/data/pytorch/norm.json.

Inputs are deterministic formulas, not torch's RNG, so the data can be regenerated
anywhere bit for bit (flat row-major index i):
    x[i]            = sin(0.37 * i + 0.1) * 2 + 0.03 * i
    weight[i]       = 1 + 0.25 * i        bias[i] = 0.1 * i - 0.05
    running_mean[i] = 0.2 * i - 0.1       running_var[i] = 0.5 + 0.3 * i
    r[i]            = sin(0.11 * i + 0.3)          (weights of the loss)
The loss is L = sum(y * r); the gradients are dL/dx, dL/dweight, dL/dbias. Everything
is computed in float64.
Each case: op, x_shape, params, then flat lists x, r, y (with y_shape), dx, and where
present weight, bias, dweight, dbias, running_mean_in, running_var_in,
running_mean_out, running_var_out.
"""
import json
import math
import os

import torch
import torch.nn.functional as F

CASES = [
    dict(op="batch_norm", x=[4, 3], affine=True, training=True, running=True, momentum=0.1, eps=1e-5),
    dict(op="batch_norm", x=[3, 2, 3, 4], affine=True, training=True, running=True, momentum=0.3, eps=1e-3),
    dict(op="batch_norm", x=[2, 3, 5], affine=False, training=True, running=True, momentum=0.1, eps=1e-5),
    dict(op="batch_norm", x=[1, 2, 2, 3], affine=True, training=True, running=False, momentum=0.1, eps=1e-5),
    dict(op="batch_norm", x=[3, 2, 2, 3], affine=True, training=False, running=True, momentum=0.1, eps=1e-5),
    dict(op="instance_norm2d", x=[2, 3, 3, 4], affine=True, eps=1e-5),
    dict(op="instance_norm2d", x=[1, 2, 5, 2], affine=False, eps=1e-5),
    dict(op="upsample_nearest2d", x=[1, 2, 3, 4], scale=2),
    dict(op="upsample_nearest2d", x=[2, 1, 2, 3], scale=3),
    dict(op="pad2d", x=[1, 2, 3, 4], pads=[1, 2, 2, 0], mode="zero"),
    dict(op="pad2d", x=[1, 2, 3, 4], pads=[1, 2, 2, 0], mode="reflect"),
    dict(op="pad2d", x=[2, 1, 4, 5], pads=[4, 3, 3, 3], mode="reflect"),
    dict(op="pad2d", x=[1, 1, 9, 9], pads=[3, 3, 3, 3], mode="reflect"),
]


def formula(shape, f):
    n = math.prod(shape)
    return torch.tensor([f(i) for i in range(n)], dtype=torch.float64).reshape(shape)


def flat(t):
    return [float(v) for v in t.detach().reshape(-1).tolist()]


def run(case):
    x = formula(case["x"], lambda i: math.sin(0.37 * i + 0.1) * 2 + 0.03 * i).requires_grad_()
    c = case["x"][1]
    out = dict(case)
    out["x_shape"] = out.pop("x")
    out["x"] = flat(x)
    w = b = None
    if case.get("affine"):
        w = formula([c], lambda i: 1 + 0.25 * i).requires_grad_()
        b = formula([c], lambda i: 0.1 * i - 0.05).requires_grad_()
        out["weight"], out["bias"] = flat(w), flat(b)
    op = case["op"]
    if op == "batch_norm":
        rm = rv = None
        if case["running"]:
            rm = formula([c], lambda i: 0.2 * i - 0.1)
            rv = formula([c], lambda i: 0.5 + 0.3 * i)
            out["running_mean_in"], out["running_var_in"] = flat(rm), flat(rv)
        y = F.batch_norm(x, rm, rv, w, b, training=case["training"],
                         momentum=case["momentum"], eps=case["eps"])
        if case["running"]:
            out["running_mean_out"], out["running_var_out"] = flat(rm), flat(rv)
    elif op == "instance_norm2d":
        y = F.instance_norm(x, weight=w, bias=b, eps=case["eps"])
    elif op == "upsample_nearest2d":
        y = F.interpolate(x, scale_factor=case["scale"], mode="nearest")
    elif op == "pad2d":
        mode = "constant" if case["mode"] == "zero" else "reflect"
        y = F.pad(x, tuple(case["pads"]), mode=mode)
    else:
        raise ValueError(op)
    r = formula(list(y.shape), lambda i: math.sin(0.11 * i + 0.3))
    (y * r).sum().backward()
    out["r"] = flat(r)
    out["y_shape"] = list(y.shape)
    out["y"] = flat(y)
    out["dx"] = flat(x.grad)
    if w is not None:
        out["dweight"], out["dbias"] = flat(w.grad), flat(b.grad)
    return out


def main():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    path = os.path.join(root, "tests", "data", "pytorch", "norm.json")
    data = dict(torch_version=torch.__version__, cases=[run(c) for c in CASES])
    with open(path, "w") as f:
        json.dump(data, f, indent=1)
        f.write("\n")
    print(f"wrote {len(CASES)} cases to {path}")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""PyTorch loadability of duel's DCGAN 28x28 generator checkpoint, for
tests/checkpoint_pytorch.rs (which checks names, shapes and dtypes without PyTorch).

1. Build duel's file (outside PyTorch):
       DUEL_PYTORCH_EXPORT=/tmp/duel_dcgan_g.safetensors \
           cargo test --release --test checkpoint_pytorch
   (the test then also writes /tmp/duel_dcgan_g.safetensors.io.safetensors: an input z
   and duel's eval-mode output y).
2. Run with any PyTorch + safetensors (e.g. a venv outside the repo):
       /root/.cache/duel/torch-venv/bin/python scripts/pytorch_reference/dcgan_checkpoint.py \
           /tmp/duel_dcgan_g.safetensors
It builds the twin of `duel::nn::dcgan_generator_28(100, ..)` as nn.Sequential, records
PyTorch's state_dict (name, shape, dtype in safetensors spelling), loads duel's file with
safetensors.torch.load_file + load_state_dict(strict=True), compares the eval-mode
outputs on duel's z, and writes tests/data/pytorch/dcgan_generator_state_dict.json.
A failed load raises: the JSON is only written when loading succeeded.
"""
import json
import os
import sys

import safetensors
import torch
import torch.nn as nn
from safetensors.torch import load_file

NZ = 100

DTYPES = {torch.float32: "F32", torch.float64: "F64", torch.float16: "F16",
          torch.bfloat16: "BF16", torch.int64: "I64"}


def generator():
    return nn.Sequential(
        nn.Linear(NZ, 128 * 7 * 7, bias=False),
        nn.BatchNorm1d(128 * 7 * 7),
        nn.ReLU(),
        nn.Unflatten(1, (128, 7, 7)),
        nn.ConvTranspose2d(128, 64, 4, 2, 1, bias=False),
        nn.BatchNorm2d(64),
        nn.ReLU(),
        nn.ConvTranspose2d(64, 1, 4, 2, 1),
        nn.Tanh(),
    )


def main():
    duel_file = sys.argv[1] if len(sys.argv) > 1 else "/tmp/duel_dcgan_g.safetensors"
    g = generator()
    sd = g.state_dict()
    entries = [dict(name=k, shape=list(v.shape), dtype=DTYPES[v.dtype]) for k, v in sd.items()]

    loaded = load_file(duel_file)
    result = g.load_state_dict(loaded, strict=True)
    assert not result.missing_keys and not result.unexpected_keys, result
    for k, v in g.state_dict().items():
        assert torch.equal(v, loaded[k].to(v.dtype)), k
    out = {}
    io_file = duel_file + ".io.safetensors"
    if os.path.exists(io_file):
        io = load_file(io_file)
        g.eval()
        with torch.no_grad():
            y = g(io["z"])
        diff = (y - io["y"]).abs().max().item()
        assert diff < 1e-4, f"eval outputs differ by {diff}"
        out["eval_output_max_abs_diff"] = diff

    doc = dict(
        what="PyTorch state_dict of the DCGAN 28x28 generator twin of "
             "duel::nn::dcgan_generator_28(100, ..), in state_dict order; "
             "dtype in safetensors spelling",
        module=str(g),
        torch_version=torch.__version__,
        safetensors_version=safetensors.__version__,
        state_dict=entries,
        loaded_with_torch=True,
        strict=True,
        loaded_num_batches_tracked=int(loaded["1.num_batches_tracked"].item()),
        **out,
    )
    here = os.path.dirname(os.path.abspath(__file__))
    path = os.path.join(here, "..", "..", "tests", "data", "pytorch", "dcgan_generator_state_dict.json")
    with open(path, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    print("wrote", os.path.normpath(path), out)


if __name__ == "__main__":
    main()

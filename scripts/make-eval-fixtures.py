#!/usr/bin/env python3
"""Make the generator fixtures of tests/eval_quality.rs: a duel generator.safetensors with
every F32 tensor rounded to F16 (half the size; the metadata that duel needs to rebuild the
network is kept). numpy only.

    duel train --name s100 --steps 100
    duel train --name s1000 --steps 1000        # the default run's first 1,000 steps
    duel train --name s3000                     # the default run (3,000 steps)
    python3 scripts/make-eval-fixtures.py runs/s100/generator.safetensors tests/data/eval/g-step100.safetensors
    python3 scripts/make-eval-fixtures.py runs/s1000/generator.safetensors tests/data/eval/g-step1000.safetensors
    python3 scripts/make-eval-fixtures.py runs/s3000/generator.safetensors tests/data/eval/g-step3000.safetensors
"""
import json
import struct
import sys

import numpy as np


def main(src, dst):
    raw = open(src, "rb").read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    body = raw[8 + n :]
    meta = header.pop("__metadata__", None)
    out_header, chunks, offset = {}, [], 0
    for name, info in header.items():
        a, b = info["data_offsets"]
        data = body[a:b]
        dtype = info["dtype"]
        if dtype == "F32":
            data = np.frombuffer(data, dtype="<f4").astype("<f2").tobytes()
            dtype = "F16"
        out_header[name] = {
            "dtype": dtype,
            "shape": info["shape"],
            "data_offsets": [offset, offset + len(data)],
        }
        chunks.append(data)
        offset += len(data)
    if meta is not None:
        # The checksum is of the f32 data; rounding changes the data, so it goes (files
        # without one load, as those written before duel kept checksums).
        meta.pop("duel.data_crc32", None)
        out_header["__metadata__"] = meta
    h = json.dumps(out_header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(dst, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(chunks))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])

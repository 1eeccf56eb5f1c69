#!/usr/bin/env python3
"""The portable weight generator, reimplemented from docs/generator.md alone (numpy only).

    python3 docs/examples/generator.py GOLDEN_SET_DIR [--show NAME]

Regenerates every tensor of GOLDEN_SET_DIR/model.safetensors from the manifest's seed and the
tensor names and shapes in the file, and checks that each one matches bit for bit. Exit status
0 when every tensor matches.
"""
import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from load_golden import read_safetensors  # noqa: E402

MASK = (1 << 64) - 1


def fnv1a64(name):
    h = 0xCBF29CE484222325
    for b in name.encode("utf-8"):
        h = ((h ^ b) * 0x100000001B3) & MASK
    return h


def generate(seed, name, shape):
    """Every element of tensor `name` with checkpoint shape `shape`, as float32, row-major."""
    n = int(np.prod(shape, dtype=np.uint64)) if len(shape) else 1
    return generate_range(seed, name, shape, 0, n).reshape(shape)


def generate_rows(seed, name, shape, first, count):
    """Rows first .. first+count-1 of a 2-D tensor [rows, cols], as float32 [count, cols]: what a
    full-scale check needs of a table too large to generate whole (the V3 LM head is 0.9e9 values)."""
    cols = shape[1]
    return generate_range(seed, name, shape, first * cols, count * cols).reshape(count, cols)


def generate_range(seed, name, shape, start, n):
    """Elements start .. start+n-1 (row-major index) of tensor `name` of checkpoint shape `shape`."""
    last = shape[-1] if len(shape) else 1
    with np.errstate(over="ignore"):
        index = np.arange(start, start + n, dtype=np.uint64)
        state = (np.uint64((seed * 0x9E3779B97F4A7C15 + fnv1a64(name)) & MASK)
                 + index * np.uint64(0xD1B54A32D192ED03))
        z = state
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    u = (z >> np.uint64(40)).astype(np.float64) / 16777216.0
    r = 2.0 * u - 1.0
    if name.endswith("norm.weight"):
        f = 1.0 + r / 4.0
    elif name.endswith("e_score_correction_bias"):
        f = r / 16.0
    elif name.endswith("weight_scale_inv"):
        f = np.ldexp(1.0 + (r + 1.0) / 2.0, -8)
    else:
        f = r / np.sqrt(np.float64(max(last, 1)))
    return f.astype(np.float32)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("golden_set")
    ap.add_argument("--show", help="print the first values of this tensor, generated and stored")
    args = ap.parse_args()
    with open(os.path.join(args.golden_set, "manifest.json")) as f:
        seed = json.load(f)["seed"]
    stored = read_safetensors(os.path.join(args.golden_set, "model.safetensors"))
    bad = 0
    for name, want in stored.items():
        got = generate(seed, name, list(want.shape))
        if want.dtype != np.float32 or got.tobytes() != want.tobytes():
            bad += 1
            print(f"MISMATCH {name}")
        if args.show == name:
            print(f"{name}: generated {got.ravel()[:4]} stored {want.ravel()[:4]}")
    print(f"{len(stored) - bad} of {len(stored)} tensors reproduced bit for bit (seed {seed})")
    return 0 if bad == 0 and stored else 1


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Load a dsr1 golden set with numpy only: manifest, inputs, weights and traced tensors.

    python3 docs/examples/load_golden.py GOLDEN_SET_DIR [--dump-npz OUT.npz]

Prints the set's config name, seed and tokens, then each traced tensor in computation order
with its shape and meaning. --dump-npz writes every traced tensor to one .npz, the format your
own implementation can write its intermediates in for `dsr1 compare`.
"""
import argparse
import json
import os
import struct
import sys

import numpy as np

DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4", "U8": "u1"}


def read_safetensors(path):
    """{name: ndarray} in file order. BF16 is widened to float32 exactly."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    if n > len(data) - 8:
        raise ValueError(f"{path}: header length {n} runs past the file")
    header = json.loads(data[8:8 + n])
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        raw = data[base + begin: base + end]
        if info["dtype"] == "BF16":
            bits = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
            arr = bits.view(np.float32)
        elif info["dtype"] in DTYPES:
            arr = np.frombuffer(raw, dtype=DTYPES[info["dtype"]])
        else:
            raise ValueError(f"{path}: tensor {name}: dtype {info['dtype']} not handled here")
        out[name] = arr.reshape(info["shape"])
    return out


def load_golden(path):
    """(manifest, tokens, traced tensors in manifest order as {name: ndarray})."""
    with open(os.path.join(path, "manifest.json")) as f:
        manifest = json.load(f)
    inputs = read_safetensors(os.path.join(path, manifest["inputs"]["file"]))
    tokens = inputs[manifest["inputs"]["name"]]
    files = {}
    tensors = {}
    for t in sorted(manifest["tensors"], key=lambda t: t["order"]):
        if t["file"] not in files:
            files[t["file"]] = read_safetensors(os.path.join(path, t["file"]))
        arr = files[t["file"]][t["name"]]
        assert list(arr.shape) == t["shape"], t["name"]
        tensors[t["name"]] = arr
    return manifest, tokens, tensors


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("golden_set")
    ap.add_argument("--dump-npz")
    args = ap.parse_args()
    manifest, tokens, tensors = load_golden(args.golden_set)
    print(f"{manifest['config_name']}: seed {manifest['seed']}, tokens {tokens.tolist()}, "
          f"decode from {manifest['decode_from']}, {len(tensors)} traced tensors")
    meaning = {t["name"]: t["meaning"] for t in manifest["tensors"]}
    for name, arr in list(tensors.items())[:12]:
        print(f"  {name:32s} {str(list(arr.shape)):16s} {meaning[name]}")
    # Sanity checks a user can rely on: incremental decoding reproduces the one-pass logits,
    # and the attention probabilities sum to one over the keys.
    assert np.allclose(tensors["incremental.logits"], tensors["logits"], rtol=1e-12, atol=1e-12)
    probs = tensors["layers.0.attn.probs"]
    assert np.allclose(probs.sum(axis=-1), 1.0, rtol=0, atol=1e-12)
    if args.dump_npz:
        np.savez(args.dump_npz, **tensors)
        print(f"wrote {args.dump_npz}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

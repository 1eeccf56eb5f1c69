#!/usr/bin/env python3
"""Independent check of the checked-in golden sets: the numpy implementation written from the
spec alone (tests/independent/deepseek_np.py) recomputes each set's logits (and MTP logits) from
its config.json and model.safetensors, and they must agree with the stored float64 values.

    python3 tests/golden_independent.py golden/sets/v3 [more sets...]

Per row t: err_t = max_v |golden - numpy| / max_v |numpy|; passes iff every err_t <= 1e-12.
"""
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "independent"))
sys.path.insert(0, os.path.join(HERE, "..", "docs", "examples"))
import deepseek_np as ds  # noqa: E402
from load_golden import load_golden  # noqa: E402

RTOL = 1e-12


def row_error(got, want):
    return float(np.max(np.max(np.abs(got - want), axis=1) / np.max(np.abs(want), axis=1)))


def main(dirs):
    ok = True
    for d in dirs:
        manifest, tokens, tensors = load_golden(d)
        model = ds.Model(d)
        want, h_final = model.forward([int(t) for t in tokens], return_hidden=True)
        err = row_error(tensors["logits"], want)
        good = err <= RTOL
        print(f"{d}: logits max row error {err:.3e} ({'ok' if good else 'FAIL'})")
        ok = ok and good
        if "mtp.logits" in tensors and model.has_mtp():
            e2 = row_error(tensors["mtp.logits"], model.mtp_forward([int(t) for t in tokens], h_final))
            print(f"{d}: mtp.logits max row error {e2:.3e} ({'ok' if e2 <= RTOL else 'FAIL'})")
            ok = ok and e2 <= RTOL
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

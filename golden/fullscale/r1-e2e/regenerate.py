#!/usr/bin/env python3
"""Recomputes golden/fullscale/r1-e2e with `dsr1 run` (the arguments are in manifest.json).

    regenerate.py --dsr1 build/dsr1 --out FILE.safetensors

Runs DeepSeek-R1 at full scale (61 layers, 256 experts, generated weights fetched layer by layer)
on the manifest's tokens and writes the dump to FILE; prints the run's time and peak memory. With
--write-set it also replaces the checked-in r1-e2e.safetensors (after a deliberate change of the
reference, checked by check_independent.py and reviewed).
"""
import argparse
import json
import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dsr1", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--write-set", action="store_true")
    a = ap.parse_args()
    with open(os.path.join(HERE, "manifest.json")) as f:
        man = json.load(f)
    jsonl = a.out + ".jsonl"
    cmd = [a.dsr1, "run", *man["dsr1_args"], "--jsonl", jsonl, "--dump", a.out, "--json", "--progress"]
    print(" ".join(cmd), flush=True)
    out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout
    report = json.loads(out)
    print(f"r1-e2e: {report['seconds']:.0f} s, peak RSS {report['peak_rss_bytes'] / 1e9:.2f} GB, "
          f"{report['values_generated']:.4g} values generated, {report['experts_fetched']} experts fetched, "
          f"argmax {report['argmax_next']}")
    if a.write_set:
        shutil.copyfile(a.out, os.path.join(HERE, man["file"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())

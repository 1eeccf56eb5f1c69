#!/usr/bin/env python3
"""Every golden set under golden/ is a golden set to the comparator.

    check_golden_dirs.py --dsr1 build/dsr1 GOLDEN_DIR

Walks GOLDEN_DIR: every directory that holds a manifest.json or a .safetensors file must be a
golden set (manifest.json listing its tensors, reference/tools/compare.hpp), and
`dsr1 compare D D` must pass on it, every tensor compared and none missing. Fails if no set is
found at all, so the check cannot pass by finding nothing.
"""
import argparse
import os
import re
import subprocess
import sys


def golden_dirs(root):
    out = []
    for d, _, files in sorted(os.walk(root)):
        if "manifest.json" in files or any(f.endswith(".safetensors") for f in files):
            out.append(d)
    return sorted(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dsr1", required=True)
    ap.add_argument("root")
    a = ap.parse_args()
    dirs = golden_dirs(a.root)
    failures = []
    for d in dirs:
        if not os.path.exists(os.path.join(d, "manifest.json")):
            failures.append(f"{d}: holds .safetensors files but no manifest.json (not a golden set)")
            continue
        r = subprocess.run([a.dsr1, "compare", d, d], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        m = re.search(r"(\d+) tensors compared: (\d+) passed, (\d+) failed; (\d+) in the reference but missing", r.stdout)
        if r.returncode != 0 or "RESULT: PASS" not in r.stdout or not m:
            failures.append(f"{d}: dsr1 compare {d} {d} exited {r.returncode}:\n{r.stdout}")
            continue
        compared, passed, failed, missing = map(int, m.groups())
        if compared == 0 or passed != compared or failed or missing:
            failures.append(f"{d}: {m.group(0)}")
            continue
        print(f"{d}: {compared} tensors compared with themselves, all pass")
    if not dirs:
        failures.append(f"{a.root}: no golden set found")
    for f in failures:
        print("FAIL:", f)
    print(f"{len(dirs)} golden sets, {len(failures)} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

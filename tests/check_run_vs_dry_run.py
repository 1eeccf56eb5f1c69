#!/usr/bin/env python3
"""`dsr1 run` computes what `dsr1 dry-run` says it will: the same stages, the same shapes, and the
same weight bytes per layer.

Runs, for one model and T tokens,
    dsr1 dry-run ARGS --tokens T --json                       (no weight is allocated)
    dsr1 run ARGS --tokens t_0,..,t_{T-1} --trace '*' --jsonl F --json   (weights fetched layer by layer)
and checks:
  1. the stage lists agree: every stage of the dry run is traced by the run, with the same shape,
     and the run traces no stage the dry run does not list;
  2. per layer, the weight bytes the run fetched (values handed out by the weight store, at the
     checkpoint's dtype: torch_dtype, the gate bias F32) equal the dry run's weight bytes of that
     layer, except for the routed experts: the dry run counts the most a layer can touch,
     min(N_r, T*K) experts, the run the distinct experts its router chose, which this script reads
     from the run's own `moe.experts` trace. So: run == dry - dry_routed + chosen * expert_bytes,
     and chosen <= min(N_r, T*K).
Exit 0 when all agree; otherwise the differences are printed and the exit status is 1.

Usage: check_run_vs_dry_run.py --dsr1 build/dsr1 --workdir DIR --tokens 3,17 [--mtp] -- MODEL ARGS
       (MODEL ARGS: --preset NAME | --config FILE | --model DIR)
"""
import argparse
import json
import os
import subprocess
import sys


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dsr1", required=True)
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--tokens", required=True)
    ap.add_argument("--mtp", action="store_true")
    ap.add_argument("model", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    model = [m for m in a.model if m != "--"]
    os.makedirs(a.workdir, exist_ok=True)
    T = len(a.tokens.split(","))

    dry_args = [a.dsr1, "dry-run", *model, "--tokens", str(T), "--json"]
    if not a.mtp:
        dry_args.append("--no-mtp")
    dry = json.loads(subprocess.run(dry_args, check=True, capture_output=True, text=True).stdout)
    jsonl = os.path.join(a.workdir, "run.jsonl")
    run_args = [a.dsr1, "run", *model, "--tokens", a.tokens, "--trace", "*", "--jsonl", jsonl, "--json"]
    if a.mtp:
        run_args.append("--mtp")
    run = json.loads(subprocess.run(run_args, check=True, capture_output=True, text=True).stdout)
    traced = {}
    with open(jsonl) as f:
        for line in f:
            r = json.loads(line)
            traced[r["name"]] = r

    problems = []
    # 1. Stage list and shapes.
    stages = {s["name"]: s for s in dry["stages"]}
    for name, s in stages.items():
        if name not in traced:
            problems.append(f"stage {name}: in the dry run, not traced by the run")
        elif list(traced[name]["shape"]) != list(s["shape"]):
            problems.append(f"stage {name}: dry run shape {s['shape']}, run shape {traced[name]['shape']}")
    for name in traced:
        if name not in stages:
            problems.append(f"stage {name}: traced by the run, not in the dry run")

    # 2. Weight bytes per layer (main layers; the run's first pass).
    d = stages["embed.h"]["shape"][1]
    plain = stages["embed.h"]["weight_bytes"] / (T * d)  # bytes per stored non-FP8 value
    layers = [acc for acc in run["layers"]]
    n_layers = max(acc["layer"] for acc in layers) + 1
    checked = 0
    for acc in layers[:n_layers]:
        l = acc["layer"]
        prefix = f"layers.{l}."
        dry_bytes = sum(s["weight_bytes"] for n, s in stages.items() if n.startswith(prefix))
        routed = stages.get(prefix + "moe.routed")
        run_bytes = acc["values_fetched"] * plain
        if prefix + "moe.s_tilde" in stages:  # the gate bias is stored as F32, not torch_dtype
            n_bias = stages[prefix + "moe.s_tilde"]["weight_bytes"] / 4
            run_bytes += n_bias * (4 - plain)
        if routed is not None:
            chosen = len({int(e) for e in traced[prefix + "moe.experts"]["data"]})
            if chosen != acc["experts_fetched"]:
                problems.append(f"layer {l}: {chosen} distinct experts chosen, {acc['experts_fetched']} fetched")
            K = stages[prefix + "moe.experts"]["shape"][1]
            N_r = stages[prefix + "moe.ell"]["shape"][1]
            touched = min(N_r, T * K)
            expert_bytes = routed["weight_bytes"] / touched
            if chosen > touched:
                problems.append(f"layer {l}: {chosen} experts chosen, more than min(N_r, T*K) = {touched}")
            dry_bytes = dry_bytes - routed["weight_bytes"] + chosen * expert_bytes
        if abs(run_bytes - dry_bytes) > 1e-9 * max(1.0, dry_bytes):
            problems.append(f"layer {l}: run fetched {run_bytes:.0f} weight bytes, dry run says {dry_bytes:.0f}")
        checked += 1

    for p in problems:
        print(p)
    print(f"run vs dry-run: {len(stages)} stages, {checked} layers compared, {len(problems)} problem(s); "
          f"run took {run['seconds']:.1f} s, peak RSS {run['peak_rss_bytes'] / 1e9:.2f} GB")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

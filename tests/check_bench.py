"""dsr1 bench --quick --json: the report a user reads carries what docs/fast-path.md promises.

Not a performance test (tests never assert speed): it checks that the benchmark runs, that
every summary key is present and finite, that its own thread-invariance check found 1 and 2
threads bit-identical (a correctness property the benchmark measures on the medium config),
that the stage times of a pass do not overlap (stage_times.hpp: they add up to no more than
the pass), and that --checkpoint reports the whole-run figures on a mapped checkpoint.
Usage: check_bench.py DSR1 WORKDIR [--checkpoint-only]
(--checkpoint-only: the sanitized build, where the medium-config benchmark, its reference run
and its 1 GiB bandwidth probe take minutes under AddressSanitizer instead of seconds.)
"""
import json
import math
import os
import shutil
import subprocess
import sys

dsr1, work = sys.argv[1], sys.argv[2]
checkpoint_only = "--checkpoint-only" in sys.argv[3:]


def run(*args):
    out = subprocess.run([dsr1, *args], check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def finite(d, key):
    assert key in d, f"missing key {key}"
    assert isinstance(d[key], (int, float)) and math.isfinite(d[key]), f"{key} = {d[key]!r}"


def check_stages(stages, what):
    want = {"attention_core", "attention_projections", "norms", "dense_ffn", "router", "experts", "combine", "head",
            "other"}
    assert want <= set(stages), f"{what}: stages {sorted(stages)}"
    # "other" is the pass's time that no stage covers: negative would mean two timers counted
    # the same time (a stage nested in another), i.e. the breakdown would not be a breakdown.
    assert stages["other"]["seconds"] >= -1e-6, f"{what}: stages overlap ({stages['other']['seconds']} s left)"
    for k in want - {"other"}:
        assert stages[k]["seconds"] > 0, f"{what}: stage {k} took no time"
    for k in ["attention_core", "attention_projections", "dense_ffn", "experts", "head"]:
        finite(stages[k], "fraction_of_fma_peak")


def check_report():
    d = run("bench", "--quick", "--json", "--threads", "2")
    for key in ["fma_peak_gflops", "read_bandwidth_gbs", "prefill_fraction_of_fma_peak", "gemm_fraction_of_fma_peak",
                "decode_fp8_speedup_vs_f32", "decode_fraction_of_bandwidth_512", "decode_fraction_of_bandwidth_8192",
                "decode_fp8_fraction_of_bandwidth_512", "decode_fp8_fraction_of_bandwidth_8192", "speedup_vs_reference"]:
        finite(d, key)
    assert d["thread_invariant"] is True, "1 vs 2 threads gave different bits"
    assert set(d["prefill_fraction_of_fma_peak_per_stage"]) == {"attention", "dense_ffn", "experts", "head"}
    check_stages(d["prefill_stages"], "prefill")
    for table in ("decode", "decode_fp8"):
        for row in d[table]:
            check_stages(row["stages"], f"{table} {row['cached_tokens']}")
            finite(row["stages"]["weights_phase"], "fraction_of_bandwidth")


if not checkpoint_only:
    check_report()

# The whole-run figures on a checkpoint used where it lies.
model = os.path.join(work, "bench-fp8")
shutil.rmtree(model, ignore_errors=True)
subprocess.run([dsr1, "init-model", "--preset", "tiny-v3", "--dtype", "fp8", "--out", model, "--quiet"], check=True)
c = run("bench", "--checkpoint", model, "--checkpoint-only", "--json")
for key in ["checkpoint_ttft_seconds", "checkpoint_decode_tokens_per_s", "checkpoint_private_peak_bytes"]:
    finite(c, key)
assert c["checkpoint"]["mapped"] is True, c["checkpoint"]
print("checkpoint figures present" if checkpoint_only else
      "bench report: every key present; thread-invariant; stage times disjoint; checkpoint figures present")

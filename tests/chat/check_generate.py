#!/usr/bin/env python3
"""dsr1 generate on mini-r1 (docs/generate.md): sampling is deterministic and depends on its seed;
the fast path decodes the same greedy ids as the reference.

  1. `generate --text "The capital of France is" -n 6 --temperature 0.7 --seed 1` twice: the same
     stdout, which starts with the prompt and continues it.
  2. the same with --seed 2: another continuation (so the seed is used).
  3. greedy (--json) on the reference and with --fast: the same ids, each token's probability in
     (0, 1], and the timings present.
Usage: check_generate.py DSR1
"""
import json
import subprocess
import sys

PROMPT = "The capital of France is"


def run(dsr1, *args):
    done = subprocess.run([dsr1, "generate", "--preset", "mini-r1", "--text", PROMPT, *args],
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"dsr1 generate {' '.join(args)} failed ({done.returncode}): {done.stderr}")
    return done


def main():
    dsr1 = sys.argv[1]
    problems = []
    sampled = ["-n", "6", "--temperature", "0.7"]
    a = run(dsr1, *sampled, "--seed", "1").stdout
    b = run(dsr1, *sampled, "--seed", "1").stdout
    c = run(dsr1, *sampled, "--seed", "2").stdout
    if a != b:
        problems.append(f"the same seed printed two texts:\n  {a!r}\n  {b!r}")
    if not a.startswith(PROMPT) or len(a.strip()) <= len(PROMPT):
        problems.append(f"the output does not continue the prompt: {a!r}")
    if a == c:
        problems.append(f"seeds 1 and 2 printed the same text: {a!r}")
    greedy = ["-n", "6", "--json"]
    ref = json.loads(run(dsr1, *greedy).stdout)
    fast = json.loads(run(dsr1, *greedy, "--fast").stdout)
    if ref["ids"] != fast["ids"] or len(ref["ids"]) != 6:
        problems.append(f"greedy ids differ: reference {ref['ids']}, fast {fast['ids']}")
    for t in ref["tokens"]:
        if not 0 < t["probability"] <= 1 or t["sampling_probability"] != 1:
            problems.append(f"token {t}: probability outside (0, 1] or greedy drawn with probability != 1")
    if "time_to_first_token_seconds" not in ref["timings"] or "text" not in ref:
        problems.append(f"--json lacks timings or text: {sorted(ref)}")
    for p in problems:
        print(p)
    if not problems:
        print(f"seed 1 twice: {a.strip()!r}; seed 2: {c.strip()!r}; greedy ids (reference = fast): {ref['ids']}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

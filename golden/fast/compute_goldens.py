#!/usr/bin/env python3
"""Writes golden/fast/blocked_softmax.json: a softmax-weighted sum over six keys computed
directly, by blocks merged afterwards (the fast path's decode), and online block by block (the
fast path's prefill), with and without masked keys, independently of the C++ code.

Plain Python `math` in double precision, from the formulas of reference/deepseek/blocked_softmax.hpp:
  direct   p_j = exp(s_j - M) / sum_k exp(s_k - M);  z = sum_j p_j c_j
  block    m_b = max s_j, l_b = sum exp(s_j - m_b), z_b = sum exp(s_j - m_b) c_j
  merge    m = max m_b, w_b = exp(m_b - m), z = sum w_b z_b / sum w_b l_b
  online   m' = max(m, m_b), alpha = exp(m - m'), l' = alpha l + sum exp(s_j - m'),
           z' = alpha z + sum exp(s_j - m') c_j, result z / l
A masked key (s = -inf) has weight 0; a block with every key masked has m_b = -inf, l_b = 0.

Run:  python3 golden/fast/compute_goldens.py        (rewrites the JSON next to it)
"""
import json
import math
import os

HERE = os.path.dirname(os.path.abspath(__file__))
NEG_INF = float("-inf")

# One query, six keys. Scores chosen so every exponent is a small integer; latents of size 2.
S = [1.0, 3.0, 0.0, 2.0, -1.0, 4.0]
S_MASKED = [1.0, 3.0, 0.0, 2.0, NEG_INF, NEG_INF]  # a query at position 3: keys 4, 5 are future
C = [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [2.0, 0.0], [0.0, 2.0], [1.0, -1.0]]
BLOCK = 2


def w(s, m):
    return 0.0 if s == NEG_INF else math.exp(s - m)


def direct(s):
    M = max(s)
    e = [w(x, M) for x in s]
    total = sum(e)
    p = [x / total for x in e]
    z = [sum(p[j] * C[j][i] for j in range(len(s))) for i in range(2)]
    return {"p": p, "z": z}


def block(s, j0, j1):
    m = max(s[j0:j1])
    if m == NEG_INF:
        return {"m": NEG_INF, "l": 0.0, "z": [0.0, 0.0]}
    e = [w(s[j], m) for j in range(j0, j1)]
    z = [sum(e[k] * C[j0 + k][i] for k in range(j1 - j0)) for i in range(2)]
    return {"m": m, "l": sum(e), "z": z}


def merge(blocks):
    m = max(b["m"] for b in blocks)
    ws = [0.0 if b["m"] == NEG_INF else math.exp(b["m"] - m) for b in blocks]
    l = sum(wb * b["l"] for wb, b in zip(ws, blocks))
    z = [sum(wb * b["z"][i] for wb, b in zip(ws, blocks)) / l for i in range(2)]
    return {"m": m, "w": ws, "l": l, "z": z}


def online(s):
    m, l, z, steps = NEG_INF, 0.0, [0.0, 0.0], []
    for j0 in range(0, len(s), BLOCK):
        j1 = min(len(s), j0 + BLOCK)
        m_new = max([m] + s[j0:j1])
        alpha = 0.0 if m == NEG_INF else math.exp(m - m_new)
        e = [w(s[j], m_new) for j in range(j0, j1)]
        l = alpha * l + sum(e)
        z = [alpha * z[i] + sum(e[k] * C[j0 + k][i] for k in range(j1 - j0)) for i in range(2)]
        m = m_new
        steps.append({"m": m, "alpha": alpha, "l": l, "z": list(z)})
    return {"steps": steps, "z": [x / l for x in z]}


def json_number(x):
    return "-inf" if x == NEG_INF else x


def clean(obj):
    if isinstance(obj, dict):
        return {k: clean(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [clean(v) for v in obj]
    return json_number(obj)


def main():
    blocks = [block(S, j, j + BLOCK) for j in range(0, len(S), BLOCK)]
    blocks_masked = [block(S_MASKED, j, j + BLOCK) for j in range(0, len(S), BLOCK)]
    e = math.e
    obj = {
        "section": "docs/fast-path.md (attention)",
        "title": "Softmax-weighted sum over 6 keys: direct, 3 blocks merged, online; then keys 4-5 masked",
        "inputs": {"scores": S, "scores_masked": S_MASKED, "latents": C},
        "parameters": {"block": BLOCK},
        "expected": {
            "direct": direct(S),
            "blocks": blocks,
            "merged": merge(blocks),
            "online": online(S),
            "direct_masked": direct(S_MASKED),
            "blocks_masked": blocks_masked,
            "merged_masked": merge(blocks_masked),
            "online_masked": online(S_MASKED),
        },
        "doc_printed": {},
        "tolerance": {"abs": 1e-15, "rel": 1e-13,
                      "why": "float64; a few exp and a dozen additions per value, a few ulps"},
        "check": (
            "By hand, with blocks of 2 keys: block 0 (s = 1, 3): m = 3, l = 1 + e^-2, "
            "z = e^-2 (1,0) + (0,1) = (e^-2, 1). Block 1 (s = 0, 2): m = 2, l = 1 + e^-2, "
            "z = e^-2 (1,1) + (2,0) = (2 + e^-2, e^-2). Block 2 (s = -1, 4): m = 4, l = 1 + e^-5, "
            "z = e^-5 (0,2) + (1,-1) = (1, 2e^-5 - 1). Merge: m = 4, w = (e^-1, e^-2, 1), "
            "l = e^-1 + e^-3 + e^-2 + e^-4 + 1 + e^-5 = sum_j exp(s_j - 4), the direct denominator "
            f"= {sum(math.exp(x - 4) for x in S):.15f}. Online: alpha = 0 at the first block (nothing "
            "before it), exp(3 - 3) = 1 at the second (the max stays 3), exp(3 - 4) = e^-1 at the "
            "third. Masked (a query at position 3): block 2 has m = -inf, l = 0, w = 0, and the "
            "result is the softmax over keys 0..3 alone."
        ),
    }
    assert abs(e ** -1 + e ** -3 + e ** -2 + e ** -4 + 1 + e ** -5 - obj["expected"]["merged"]["l"]) < 1e-15
    path = os.path.join(HERE, "blocked_softmax.json")
    with open(path, "w") as f:
        json.dump(clean(obj), f, indent=2)
        f.write("\n")
    print("wrote", path)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Writes golden/mla/*.json: a hand-sized MLA case and the latent KV cache growing token by token,
computed independently of the C++ code.

Everything below is plain Python `math` in double precision, written in the paper's form
(spec §4.1): per-head keys k = [k_nope; k_rope] and values v are built from the latent and the
attention is the textbook softmax(s_eff q·k) v. The C++ reference computes the same numbers in two
other ways (its naive form with its own loops, and the absorbed form of spec §4.3), so a match
is two routes to one result. Every step is small enough to redo by hand; the "check" field of
each file says how.

The case: d = 2, one head, d_nope = 2, d_rope = 2 (a single RoPE pair with θ_0 = 1, so the rotation
angle is simply the position in radians), d_v = 2, r_kv = 2, no query compression (q_lora_rank 0,
as in V2-Lite), YaRN factor 40 with mscale = mscale_all_dim = 1 (V3's values), so
s_eff = (2 + 2)^(-1/2) * (0.1 ln 40 + 1)^2 = 0.5 * 1.3688879...^2 = 0.93692...
With a single pair, θ' = θ (the pair is a "fast" pair that YaRN keeps), so the rotation stays
exactly pos radians. Weights are small integers (and one 0.5 norm gain).

Run:  python3 golden/mla/compute_goldens.py        (rewrites the JSON files next to it)
Layout on disk (docs/trace-names.md): a [d, T] matrix of the code is T lists of d numbers; a cube
[T_k, T, n_h] is [n_h][T][T_k]; weights are lists of rows ([out][in]); masked scores are "-inf".
"""
import json
import math
import os

HERE = os.path.dirname(os.path.abspath(__file__))
NEG_INF = "-inf"

# ---- the case ------------------------------------------------------------------------------
EPS = 1e-6
FACTOR = 40.0
W_UQ = [[1.0, 1.0], [0.0, 1.0]]    # q_nope = W_UQ x          (no q-LoRA: acts on x)
W_QR = [[1.0, 0.0], [0.0, 2.0]]    # q_rope_pre = W_QR x
W_DKV = [[1.0, 1.0], [1.0, -1.0]]  # c_kv = W_DKV x
w_kv = [1.0, 0.5]                  # RMSNorm_kv gain
W_KR = [[0.0, 1.0], [1.0, 0.0]]    # k_rope_pre = W_KR x
W_UK = [[1.0, 0.0], [1.0, 1.0]]    # k_nope = W_UK c_kv_hat
W_UV = [[2.0, 0.0], [0.0, 1.0]]    # v = W_UV c_kv_hat
W_O = [[1.0, 1.0], [0.0, 1.0]]     # u = W_O o
X = [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]  # three tokens, d = 2 each


def dot(a, b):
    return sum(x * y for x, y in zip(a, b))


def matvec(W, x):
    return [dot(row, x) for row in W]


def rmsnorm(x, w):
    inv_rms = 1.0 / math.sqrt(sum(v * v for v in x) / len(x) + EPS)
    return [wi * xi * inv_rms for wi, xi in zip(w, x)]


def rotate(x, pos):
    # One interleaved pair (x0, x1), θ' = 1: angle = pos radians.
    c, s = math.cos(pos), math.sin(pos)
    return [x[0] * c - x[1] * s, x[0] * s + x[1] * c]


MSCALE = 0.1 * 1.0 * math.log(FACTOR) + 1.0
S_EFF = (2 + 2) ** -0.5 * MSCALE * MSCALE


def token_steps(x, pos):
    """Everything MLA computes for one token at absolute position pos (before attention)."""
    c_kv = matvec(W_DKV, x)
    c_kv_hat = rmsnorm(c_kv, w_kv)
    return {
        "q_nope": matvec(W_UQ, x),
        "q_rope_pre": matvec(W_QR, x),
        "q_rope": rotate(matvec(W_QR, x), pos),
        "c_kv": c_kv,
        "c_kv_hat": c_kv_hat,
        "k_rope_pre": matvec(W_KR, x),
        "k_rope": rotate(matvec(W_KR, x), pos),
        "k_nope": matvec(W_UK, c_kv_hat),
        "v": matvec(W_UV, c_kv_hat),
    }


def attend(query, keys, q_pos, key_positions):
    """Paper form: score_j = s_eff [q_nope; q_rope]·[k_nope; k_rope]_j for visible j, softmax,
    o = sum_j p_j v_j, u = W_O o. The softmax is written as p_j = 1 / sum_l exp(s_l - s_j)
    (no max subtraction, no shared code with reference/deepseek/softmax.hpp)."""
    scores = []
    for key, kp in zip(keys, key_positions):
        if kp <= q_pos:  # spec §4.4: key visible iff its position <= the query's
            scores.append(S_EFF * (dot(query["q_nope"], key["k_nope"]) +
                                   dot(query["q_rope"], key["k_rope"])))
        else:
            scores.append(None)
    probs = []
    for s_j in scores:
        if s_j is None:
            probs.append(0.0)
        else:
            probs.append(1.0 / sum(math.exp(s_l - s_j) for s_l in scores if s_l is not None))
    o = [sum(p * key["v"][c] for p, key in zip(probs, keys)) for c in range(2)]
    u = matvec(W_O, o)
    return [NEG_INF if s is None else s for s in scores], probs, o, u


def write(name, obj):
    path = os.path.join(HERE, name)
    with open(path, "w") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")
    print("wrote", path)


CONFIG = {
    "hidden_size": 2, "num_attention_heads": 1, "qk_nope_head_dim": 2, "qk_rope_head_dim": 2,
    "v_head_dim": 2, "kv_lora_rank": 2, "q_lora_rank": 0, "rms_norm_eps": EPS,
    "rope_theta": 10000.0,
    "rope_scaling": {"type": "yarn", "factor": FACTOR, "original_max_position_embeddings": 4096,
                     "beta_fast": 32.0, "beta_slow": 1.0, "mscale": 1.0, "mscale_all_dim": 1.0},
}
WEIGHTS = {"W_UQ": W_UQ, "W_QR": W_QR, "W_DKV": W_DKV, "w_kv": w_kv, "W_KR": W_KR,
           "W_UK": W_UK, "W_UV": W_UV, "W_O": W_O}
TOL = {"abs": 1e-15, "rel": 1e-12,
       "why": "float64 reference against the same formulas evaluated in Python float64: a few "
              "ulps of rounding from a different summation order"}


def hand_case():
    """Three tokens at positions 3, 4, 5 in one call, no cache (a chunk starting at pos0 = 3)."""
    pos0 = 3
    steps = [token_steps(x, pos0 + t) for t, x in enumerate(X)]
    positions = [pos0 + t for t in range(len(X))]
    scores, probs, o, u = [], [], [], []
    for t in range(len(X)):
        s, p, o_t, u_t = attend(steps[t], steps, positions[t], positions)
        scores.append(s); probs.append(p); o.append(o_t); u.append(u_t)
    expected = {k: [st[k] for st in steps] for k in steps[0]}
    expected.update({"s_eff": S_EFF, "mscale": MSCALE, "scores": [scores], "probs": [probs],
                     "o": o, "u": u})
    write("hand_case.json", {
        "section": "spec 4.1-4.5",
        "title": "MLA by hand: d_rope = 2, one head, three tokens at positions 3, 4, 5",
        "inputs": {"x": X, "pos0": pos0},
        "parameters": dict(CONFIG, **WEIGHTS,
                           choice="small integer weights (ours); one RoPE pair with θ = 1 so the "
                                  "angle is the position in radians; YaRN factor 40 so the "
                                  "softmax scale carries mscale^2"),
        "expected": expected,
        "doc_printed": {},
        "tolerance": TOL,
        "check": (
            "Paper form in plain Python (golden/mla/compute_goldens.py). By hand for token 0 "
            "(x = (1, 0), position 3): q_nope = W_UQ x = (1, 0); q_rope_pre = W_QR x = (1, 0), "
            "rotated by 3 rad = (cos 3, sin 3); c_kv = W_DKV x = (1, 1), rms = sqrt((1+1)/2 + 1e-6), "
            "c_kv_hat = (1, 0.5)/rms; k_rope_pre = W_KR x = (0, 1) -> (-sin 3, cos 3); "
            "k_nope = W_UK c_kv_hat = (1, 1.5)/rms. Score(0,0) = s_eff (q_nope·k_nope + q_rope·k_rope) "
            "= s_eff (1/rms + (-cos3 sin3 + sin3 cos3)) = s_eff/rms: the rotation of q and k by the "
            "same angle cancels (relative position 0). Later keys are -inf (positions 4, 5 > 3). "
            "s_eff = 0.5 (0.1 ln 40 + 1)^2. The C++ test also redoes score(0,0) and s_eff inline."),
    })


def kv_cache_decode():
    """The same three tokens decoded one at a time from position 0 through the latent cache."""
    steps = [token_steps(x, t) for t, x in enumerate(X)]
    out = []
    for t in range(len(X)):
        # The cache after appending token t holds c_kv_hat and k_rope of tokens 0..t.
        s, p, o_t, u_t = attend(steps[t], steps[: t + 1], t, list(range(t + 1)))
        out.append({
            "position": t,
            "cache_c_kv_hat": [st["c_kv_hat"] for st in steps[: t + 1]],
            "cache_k_rope": [st["k_rope"] for st in steps[: t + 1]],
            "scores": [[s]], "probs": [[p]], "u": [u_t],
        })
    # Full forward over positions 0..2 in one call: row t must equal step t's u.
    full_u = [attend(steps[t], steps, t, [0, 1, 2])[3] for t in range(len(X))]
    write("kv_cache_decode.json", {
        "section": "spec 4.3-4.4, 5",
        "title": "The latent KV cache growing token by token (same case as hand_case.json, "
                 "positions 0, 1, 2)",
        "inputs": {"x": X, "pos0": 0},
        "parameters": dict(CONFIG, **WEIGHTS,
                           choice="the hand case's weights; one token per call through the cache"),
        "expected": {"steps": out, "full_u": full_u,
                     "elements_per_token": 2 + 2, "naive_elements_per_token": 1 * (2 + 2 + 2)},
        "doc_printed": {},
        "tolerance": TOL,
        "check": (
            "Two routes to one result: step t attends over the cache of tokens 0..t (no mask "
            "needed: every cached key is at or before the query), full_u attends over all three "
            "tokens with the causal rule; both are the same numbers (the test checks the C++ "
            "decode against both). The cache holds r_kv + d_rope = 4 numbers per token; a naive "
            "cache of per-head k (d_nope + d_rope) and v (d_v) would hold 6."),
    })


# The V3/R1 latent-cache accounting of spec §5, for walkthrough 13 (bf16 = 2 bytes).
def v3_cache_bytes():
    L, n_h, d_nope, d_rope, d_v, r_kv = 61, 128, 128, 64, 128, 512
    latent = r_kv + d_rope
    naive = n_h * (d_nope + d_rope + d_v)
    mha = 2 * n_h * d_nope
    ctx = 131072
    write("v3_cache_bytes.json", {
        "section": "spec 5",
        "title": "KV-cache size per token and at 128K for DeepSeek-V3/R1 (bf16)",
        "inputs": {"context": ctx, "bytes_per_element": 2},
        "parameters": {"num_hidden_layers": L, "num_attention_heads": n_h,
                       "qk_nope_head_dim": d_nope, "qk_rope_head_dim": d_rope,
                       "v_head_dim": d_v, "kv_lora_rank": r_kv},
        "expected": {
            "latent_elements_per_token_per_layer": latent,
            "naive_elements_per_token_per_layer": naive,
            "mha_elements_per_token_per_layer": mha,
            "latent_bytes_per_token": latent * L * 2,
            "naive_bytes_per_token": naive * L * 2,
            "mha_bytes_per_token": mha * L * 2,
            "latent_bytes_at_context": latent * L * 2 * ctx,
            "naive_bytes_at_context": naive * L * 2 * ctx,
        },
        "doc_printed": {"latent_bytes_per_token": 70272, "latent_bytes_at_context": 9210691584,
                        "naive_bytes_per_token": 4997120},
        "tolerance": {"abs": 0.0, "rel": 0.0, "why": "integer arithmetic, exact"},
        "check": ("spec §5 table: 576 elements per token per layer, x 61 layers x 2 bytes = 70,272 "
                  "bytes per token, x 131,072 = 9,210,691,584 bytes (8.578 GiB); naive K(192)+V(128) "
                  "per head: 128 x 320 x 61 x 2 = 4,997,120 bytes per token."),
    })


if __name__ == "__main__":
    hand_case()
    kv_cache_decode()
    v3_cache_bytes()

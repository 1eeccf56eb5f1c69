#!/usr/bin/env python3
"""Writes golden/seed/*.json: the explainer document's worked examples, computed independently
of the C++ code.

Every expected value here comes from a closed form written out below (plain Python `math`,
double precision), not from the C++ reference:
  * a two-entry softmax is a sigmoid of the score difference: softmax([a, b]) =
    [sigmoid(a - b), sigmoid(b - a)], so no max-subtraction or exp/sum loop is shared with
    reference/deepseek/softmax.hpp;
  * a three-entry softmax is written as p_i = 1 / sum_j exp(r_j - r_i);
  * GELU is 0.5 * x * (1 + erf(x / sqrt(2))) with math.erf.
The "check" field of each file repeats the derivation in words, so a reader can redo it by hand.

Run:  python3 golden/seed/compute_goldens.py        (rewrites the JSON files next to it)
Tensors are stored as nested lists in the on-disk layout of docs/tracer.md: a matrix with one
token per column in the code, [d, T], is written as T rows of d numbers ([T, d]); a cube
[rows, cols, heads] as [heads][cols][rows]. -inf (masked scores) is written as the string "-inf".
"""
import json
import math
import os

HERE = os.path.dirname(os.path.abspath(__file__))
NEG_INF = "-inf"
SQRT2 = math.sqrt(2.0)


def sigmoid(z):
    return 1.0 / (1.0 + math.exp(-z))


def dot(a, b):
    return sum(x * y for x, y in zip(a, b))


def matvec(W, x):  # W given as a list of rows
    return [dot(row, x) for row in W]


def gelu(x):
    return 0.5 * x * (1.0 + math.erf(x / SQRT2))


def write(name, obj):
    path = os.path.join(HERE, name)
    with open(path, "w") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")
    print("wrote", path)


# --------------------------------------------------------------------------------------------
# §1.1 RMSNorm: h = [2, -2, 1, 1], gamma = 1, eps = 0 (the document: "assuming eps very small").
def rmsnorm_case():
    h = [2.0, -2.0, 1.0, 1.0]
    mean_sq = (4 + 4 + 1 + 1) / 4  # = 2.5 exactly
    rms = math.sqrt(mean_sq)
    y = [x / rms for x in h]
    write("rmsnorm.json", {
        "section": "1.1",
        "title": "RMSNorm of one token, D = 4",
        "inputs": {"h": [h]},
        "parameters": {"gamma": [1.0, 1.0, 1.0, 1.0], "eps": 0.0},
        "expected": {"mean_sq": mean_sq, "rms": rms, "y": [y]},
        "doc_printed": {
            "mean_sq": 2.5, "rms": 1.58, "y": [[1.27, -1.27, 0.63, 0.63]],
            "note": "the document divides by the rounded 1.58: 2/1.58 = 1.2658 -> 1.27, while "
                    "2/sqrt(2.5) = 1.26491 rounds to 1.26; 0.63 and 1.58 agree with the exact "
                    "values to the digits shown (see docs/errata.md)"},
        "tolerance": {"abs": 1e-15, "rel": 1e-12,
                      "why": "float64 reference against a closed form: a sum of 4 squares, one "
                             "sqrt and one division, a few ulps at most"},
        "check": "(1/4)(2^2 + (-2)^2 + 1^2 + 1^2) = 10/4 = 2.5; rms = sqrt(2.5) = 1.5811388; "
                 "y = h / sqrt(2.5) = [2/sqrt(2.5), -2/sqrt(2.5), 1/sqrt(2.5), 1/sqrt(2.5)] = "
                 "[1.2649111, -1.2649111, 0.6324555, 0.6324555] (2/sqrt(2.5) = sqrt(1.6))",
    })


# --------------------------------------------------------------------------------------------
# §1.2 Two-head attention, D = 4, H = 2, d_k = 2, W^Q = W^K = W^V = I (the document), W^O = I
# (our choice: the document gives none). Head i uses dims 2i, 2i+1.
def attention_case():
    h = [[1.0, 2.0, 3.0, 4.0], [2.0, 0.0, 1.0, 0.0]]  # [T, D]
    T, H, dk = 2, 2, 2
    scale = 1.0 / math.sqrt(dk)
    q = k = v = h  # identity projections

    def head(x, i):
        return x[dk * i: dk * (i + 1)]

    out = {}
    for reading in ("causal", "bidirectional"):
        scores, probs, o = [], [], [[0.0] * 4 for _ in range(T)]
        for i in range(H):
            s_i, p_i = [], []
            for t in range(T):
                raw = [dot(head(q[t], i), head(k[j], i)) * scale for j in range(T)]
                if reading == "causal" and t == 0:
                    # token 1 sees only itself: score of key 2 is -inf, weight 0
                    s_row = [raw[0], NEG_INF]
                    p_row = [1.0, 0.0]
                else:
                    s_row = raw
                    p_row = [sigmoid(raw[0] - raw[1]), sigmoid(raw[1] - raw[0])]
                s_i.append(s_row)
                p_i.append(p_row)
                for c in range(dk):
                    o[t][dk * i + c] = sum(p_row[j] * head(v[j], i)[c] for j in range(T))
            scores.append(s_i)
            probs.append(p_i)
        u = o  # W^O = I
        h_after = [[h[t][c] + u[t][c] for c in range(4)] for t in range(T)]
        out[reading] = {"scores": scores, "probs": probs, "o": o, "u": u, "h_after_attn": h_after}

    write("attention_two_head.json", {
        "section": "1.2",
        "title": "Two-head attention on two tokens, causal and bidirectional, plus the residual of 1.3",
        "inputs": {"h": h},
        "parameters": {
            "n_heads": H, "d_k": dk, "scale": scale,
            "W_Q": [[1.0 if r == c else 0.0 for c in range(4)] for r in range(4)],
            "W_K": [[1.0 if r == c else 0.0 for c in range(4)] for r in range(4)],
            "W_V": [[1.0 if r == c else 0.0 for c in range(4)] for r in range(4)],
            "W_O": [[1.0 if r == c else 0.0 for c in range(4)] for r in range(4)],
            "W_O_choice": "identity: the document names W^O but gives no values, so u_t is the "
                          "concatenation of the head outputs",
            "head_split": "head i uses dims i*d_k .. (i+1)*d_k - 1 (head 1 = first half, "
                          "head 2 = second half, as the document says)"},
        "expected": out,
        "doc_printed": {
            "q1": [1, 2, 3, 4], "k1": [1, 2, 3, 4], "v1": [1, 2, 3, 4],
            "q2": [2, 0, 1, 0], "k2": [2, 0, 1, 0], "v2": [2, 0, 1, 0],
            "q1_head1": [1, 2], "k2_head1": [2, 0],
            "note": "the document stops after the projections; scores, weights and outputs "
                    "are not printed there"},
        "tolerance": {"abs": 1e-15, "rel": 1e-12,
                      "why": "float64 reference against closed forms (a two-key softmax is a "
                             "sigmoid of the score difference); values are O(1..20), a few ulps"},
        "check": "Scores are q.k/sqrt(2). Head 1 (dims 1-2): q1.k1 = 1+4 = 5, q1.k2 = 2, "
                 "q2.k1 = 2, q2.k2 = 4. Head 2 (dims 3-4): q1.k1 = 9+16 = 25, q1.k2 = 3, "
                 "q2.k1 = 3, q2.k2 = 1. With two keys softmax([a,b]) = [sigmoid(a-b), "
                 "sigmoid(b-a)]. Causal: token 1 sees only itself (weights [1,0], o1 = v1 = "
                 "[1,2,3,4]); token 2 head 1: weights [sigmoid(-sqrt2), sigmoid(sqrt2)] = "
                 "[0.195570, 0.804430], o = 0.195570*[1,2] + 0.804430*[2,0] = [1.804430, "
                 "0.391141]; head 2: weights [sigmoid(sqrt2), sigmoid(-sqrt2)], o = "
                 "0.804430*[3,4] + 0.195570*[1,0] = [2.608859, 3.217719]. Bidirectional token 1: "
                 "head 1 weights [sigmoid(3/sqrt2), sigmoid(-3/sqrt2)] = [0.892958, 0.107042]; "
                 "head 2 weights [sigmoid(22/sqrt2), ...] = [0.99999983, 1.7e-7]; token 2 equals "
                 "the causal token 2 (it already saw both keys). u = o (W^O = I); "
                 "h_after_attn = h + u (section 1.3).",
    })


# --------------------------------------------------------------------------------------------
# §1.4 MoE with gates [0.7, 0.3, 0.0]: three small GELU experts FFN_r(x) = W2 GELU(W1 x + b1) + b2
# (D = 2, hidden width 3), chosen so that every pre-activation is a small number.
def moe_case():
    h = [1.0, -1.0]
    experts = [
        {"W1": [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], "b1": [0.0, 0.0, 1.0],
         "W2": [[1.0, 0.0, 1.0], [0.0, 1.0, -1.0]], "b2": [0.5, 0.0]},
        {"W1": [[2.0, 0.0], [1.0, -1.0], [0.0, 0.0]], "b1": [0.0, -2.0, 0.0],
         "W2": [[0.0, 1.0, 0.0], [1.0, 0.0, 2.0]], "b2": [0.0, -1.0]},
        {"W1": [[1.0, 1.0], [-1.0, 0.0], [0.0, 2.0]], "b1": [1.0, 0.0, 0.0],
         "W2": [[1.0, 1.0, 1.0], [1.0, -1.0, 0.0]], "b2": [0.0, 0.0]},
    ]
    g = [0.7, 0.3, 0.0]
    pre, act, outs = [], [], []
    for e in experts:
        a = [x + b for x, b in zip(matvec(e["W1"], h), e["b1"])]
        z = [gelu(x) for x in a]
        f = [x + b for x, b in zip(matvec(e["W2"], z), e["b2"])]
        pre.append(a)
        act.append(z)
        outs.append(f)
    f = [sum(g[r] * outs[r][c] for r in range(3)) for c in range(2)]
    h_prime = [h[c] + f[c] for c in range(2)]
    # §2.2/2.3: the same experts combined with the router gates of §2.1 (p_1, 0, p_3), exact p.
    r = [3.4, 1.1, 2.2]
    p = [1.0 / sum(math.exp(rj - ri) for rj in r) for ri in r]
    g_router = [p[0], 0.0, p[2]]
    f_router = [sum(g_router[e] * outs[e][c] for e in range(3)) for c in range(2)]
    write("moe_gating.json", {
        "section": "1.4",
        "title": "MoE feed-forward with gates [0.7, 0.3, 0.0] over three GELU experts",
        "inputs": {"h": [h]},
        "parameters": {"experts": experts, "g": g,
                       "activation": "GELU, exact erf form 0.5*x*(1+erf(x/sqrt(2)))",
                       "choice": "the document gives only the gates; the experts (D = 2, hidden "
                                 "width 3) are ours, with small integer weights"},
        "expected": {"pre_activation": pre, "z": act, "expert_out": outs, "f": [f],
                     "h_prime": [h_prime], "g_router": [g_router], "f_router": [f_router]},
        "doc_printed": {"g": [0.7, 0.3, 0.0],
                        "f": "0.7 * E1(h) + 0.3 * E2(h); expert 3 dormant"},
        "tolerance": {"abs": 1e-15, "rel": 1e-12,
                      "why": "float64 reference against math.erf-based closed forms; the C++ "
                             "uses std::erf, both correctly rounded to ~1 ulp on O(1) inputs"},
        "check": "h = [1, -1]. Expert 1: W1 h + b1 = [1, -1, 1]; GELU = [0.8413447, -0.1586553, "
                 "0.8413447] (GELU(1) = Phi(1) = 0.8413447, GELU(-1) = -(1-Phi(1)) = -0.1586553); "
                 "W2 z + b2 = [0.8413447+0.8413447+0.5, -0.1586553-0.8413447] = [2.1826895, -1]. "
                 "Expert 2: W1 h + b1 = [2, 0, 0]; GELU = [2*Phi(2), 0, 0] = [1.9544997, 0, 0]; "
                 "out = [0, 1.9544997 - 1] = [0, 0.9544997]. Expert 3: W1 h + b1 = [1, -1, -2] "
                 "(dormant, gate 0). f = 0.7*[2.1826895, -1] + 0.3*[0, 0.9544997] = "
                 "[1.5278826, -0.4136501]; h' = h + f. With the router gates of section 2.1 instead "
                 "(g_router = [0.7135451, 0, 0.2149157], see router.json), f_router = "
                 "0.7135451*[2.1826895, -1] + 0.2149157*[0.6371892, 1] (expert 3: W1 h + b1 = "
                 "[1, -1, -2], GELU = [0.8413447, -0.1586553, -0.0455003], out = [0.6371892, 1]) = "
                 "[1.6943894, -0.4986295].",
    })


# --------------------------------------------------------------------------------------------
# §2.1 Router: r = [3.4, 1.1, 2.2], softmax, keep top-2, no renormalisation.
def router_case():
    r = [3.4, 1.1, 2.2]
    p = [1.0 / sum(math.exp(rj - ri) for rj in r) for ri in r]
    g = [p[0], 0.0, p[2]]  # top-2 are experts 1 and 3 (3.4 > 2.2 > 1.1)
    write("router.json", {
        "section": "2.1",
        "title": "Softmax top-k router, N_r = 3, k = 2, no renormalisation",
        "inputs": {"r": [r]},
        "parameters": {"k": 2, "ties": "equal probabilities: the lower expert index wins"},
        "expected": {"p": [p], "g": [g], "experts": [0, 2]},
        "doc_printed": {"p": [[0.70, 0.06, 0.24]], "g": [[0.70, 0.0, 0.24]],
                        "note": "the exact softmax is [0.7135, 0.0715, 0.2149]; each printed "
                                "value is off by 0.01 to 0.03, more than its two-decimal rounding "
                                "(see docs/errata.md); the choice of experts 1 and 3 is right"},
        "tolerance": {"abs": 1e-15, "rel": 1e-12,
                      "why": "float64 softmax of three O(1) logits against the closed form "
                             "1/sum_j exp(r_j - r_i): a few ulps"},
        "check": "p_1 = 1/(1 + e^(1.1-3.4) + e^(2.2-3.4)) = 1/(1 + e^-2.3 + e^-1.2) = "
                 "1/(1 + 0.1002588 + 0.3011942) = 0.7135; p_2 = 1/(e^2.3 + 1 + e^1.1) = "
                 "1/(9.9741825 + 1 + 3.0041660) = 0.0715; p_3 = 1/(e^1.2 + e^-1.1 + 1) = "
                 "1/(3.3201169 + 0.3328711 + 1) = 0.2149; they sum to 1. Top-2 = experts 1 and 3; "
                 "g = [p_1, 0, p_3], sum 0.9285 (not renormalised).",
    })


# --------------------------------------------------------------------------------------------
# §2.4 KV cache: one head, D = 2, three tokens decoded one at a time. Our numbers.
def kv_cache_case():
    W_Q = [[1.0, 0.0], [1.0, 1.0]]
    W_K = [[1.0, 0.0], [0.0, 2.0]]
    W_V = [[0.0, 1.0], [1.0, 0.0]]
    hs = [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]
    scale = 1.0 / math.sqrt(2.0)
    K, V, steps = [], [], []
    for t, h in enumerate(hs):
        q, k, v = matvec(W_Q, h), matvec(W_K, h), matvec(W_V, h)
        K.append(k)
        V.append(v)
        s = [dot(q, kj) * scale for kj in K]
        p = [1.0 / sum(math.exp(sj - si) for sj in s) for si in s]
        o = [sum(p[j] * V[j][c] for j in range(len(K))) for c in range(2)]
        steps.append({"q": [q], "k": [k], "v": [v], "K_cache": [list(x) for x in K],
                      "V_cache": [list(x) for x in V], "scores": [s], "probs": [p], "o": [o]})
    write("kv_cache.json", {
        "section": "2.4",
        "title": "KV cache: append k_t, v_t, then attend over the cached keys and values",
        "inputs": {"h": hs},
        "parameters": {"n_heads": 1, "d_k": 2, "scale": scale, "W_Q": W_Q, "W_K": W_K, "W_V": W_V,
                       "choice": "the document gives no numbers; D = 2, one head, small integer "
                                 "weights (ours), three tokens decoded one at a time"},
        "expected": {"steps": steps},
        "doc_printed": {"note": "the document prints formulas only: k_t = W^K h_t, v_t = W^V h_t, "
                                "Attn(q_t, [k_1..k_t], [v_1..v_t])"},
        "tolerance": {"abs": 1e-15, "rel": 1e-12,
                      "why": "float64 reference against closed forms with at most 3 keys"},
        "check": "q = W_Q h, k = W_K h, v = W_V h: token 1 h=[1,0]: q=[1,1], k=[1,0], v=[0,1]; "
                 "token 2 h=[0,1]: q=[0,1], k=[0,2], v=[1,0]; token 3 h=[1,1]: q=[1,2], k=[1,2], "
                 "v=[1,1]. Step 1: one key, weight 1, o = v1 = [0,1]. Step 2: scores "
                 "[q2.k1, q2.k2]/sqrt2 = [0, 2]/sqrt2, weights [sigmoid(-sqrt2), sigmoid(sqrt2)] = "
                 "[0.195570, 0.804430], o = 0.195570*[0,1] + 0.804430*[1,0] = [0.804430, "
                 "0.195570]. Step 3: scores [1, 4, 5]/sqrt2, weights p_i = 1/sum_j "
                 "exp((s_j - s_i)/sqrt2), o = p1*[0,1] + p2*[1,0] + p3*[1,1]. A second route: the "
                 "same outputs come from causal attention over all three tokens at once (tested).",
    })


# --------------------------------------------------------------------------------------------
# §2.5 The document's compression: k~ = W_k^c k, v~ = W_v^c v, D = 4 -> D' = 2, on the tokens of
# §1.2 (identity W^Q, W^K, W^V). Queries are projected with W_k^c too (our choice, see check).
def compression_case():
    h = [[1.0, 2.0, 3.0, 4.0], [2.0, 0.0, 1.0, 0.0]]
    Wc = [[0.5, 0.5, 0.0, 0.0], [0.0, 0.0, 0.5, 0.5]]
    k = v = q = h
    k_t = [matvec(Wc, x) for x in k]
    v_t = [matvec(Wc, x) for x in v]
    q_t = [matvec(Wc, x) for x in q]
    scale = 1.0 / math.sqrt(2.0)
    scores, probs, o = [], [], []
    for t in range(2):
        raw = [dot(q_t[t], k_t[j]) * scale for j in range(2)]
        if t == 0:
            s, p = [raw[0], NEG_INF], [1.0, 0.0]
        else:
            s, p = raw, [sigmoid(raw[0] - raw[1]), sigmoid(raw[1] - raw[0])]
        scores.append(s)
        probs.append(p)
        o.append([sum(p[j] * v_t[j][c] for j in range(2)) for c in range(2)])
    write("compression.json", {
        "section": "2.5",
        "title": "The document's key/value compression by a projection (NOT how MLA works)",
        "inputs": {"h": h},
        "parameters": {"W_k_compress": Wc, "W_v_compress": Wc, "D": 4, "D_prime": 2,
                       "n_heads": 1, "scale": scale,
                       "W_Q_W_K_W_V": "identity, as in section 1.2",
                       "choice": "W^compress averages neighbouring dims (ours); the document does "
                                 "not say how a D-dim query meets D'-dim keys, so the query is "
                                 "compressed with W_k^compress as well, making q~.k~ a compressed "
                                 "q.k; attention is causal, one head of width D'"},
        "expected": {"k_tilde": k_t, "v_tilde": v_t, "q_tilde": q_t,
                     "scores": [scores], "probs": [probs], "o": o,
                     "cache_numbers_per_token": {"uncompressed": 8, "compressed": 4}},
        "doc_printed": {"note": "the document prints formulas only: k~_t = W_k^compress k_t, "
                                "v~_t = W_v^compress v_t, reducing D to D'"},
        "tolerance": {"abs": 1e-15, "rel": 1e-12,
                      "why": "float64 reference against closed forms; all projections are exact "
                             "in binary (halves)"},
        "check": "k~1 = [(1+2)/2, (3+4)/2] = [1.5, 3.5], k~2 = [(2+0)/2, (1+0)/2] = [1, 0.5]; "
                 "v~ = k~ and q~ = k~ (identity W^Q, W^K, W^V, same W^compress). Token 1 (causal) "
                 "sees only itself: o1 = v~1 = [1.5, 3.5]. Token 2: scores [q~2.k~1, q~2.k~2]/sqrt2 "
                 "= [1.5 + 1.75, 1 + 0.25]/sqrt2 = [3.25, 1.25]/sqrt2; weights "
                 "[sigmoid(2/sqrt2), sigmoid(-2/sqrt2)] = [sigmoid(sqrt2), sigmoid(-sqrt2)] = "
                 "[0.804430, 0.195570]; o2 = 0.804430*[1.5,3.5] + 0.195570*[1,0.5] = [1.402215, "
                 "2.913289]. Cache per token: k and v of D = 4 each = 8 numbers, compressed 2+2 = 4.",
    })


if __name__ == "__main__":
    rmsnorm_case()
    attention_case()
    moe_case()
    router_case()
    kv_cache_case()
    compression_case()

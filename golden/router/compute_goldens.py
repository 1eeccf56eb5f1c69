#!/usr/bin/python3
"""Writes golden/router/v3_routing.json: one token routed under the V3 rules (sigmoid, bias for
selection only, groups ranked by top-2 sums, -inf mask, renormalise, x2.5), the same token under
each router conformance fault, and under the V2 rules (softmax, groups ranked by max, x16, no
renormalisation), computed independently of the C++ code.

NumPy in float64, written from spec §7 rather than from reference/deepseek/router.cpp:
  ell = W_g x;  V3: s = 1 / (1 + exp(-ell)), s_tilde = s + b;  V2: s = exp(ell) / sum exp(ell)
  group score: V3 sum of the two largest s_tilde of the group, V2 the largest s
  keep the topk_group best groups; other experts get -inf; experts = the K largest
  g = s[experts] (/ sum when norm_topk_prob) * routed_scaling_factor
Orders come from np.argsort(-v, kind="stable"): descending, an exact tie keeps the lower index
first (the C++ top_k_indices uses repeated scans instead).

Run:  /usr/bin/python3 golden/router/compute_goldens.py      (rewrites the JSON next to it)
"""
import json
import os

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))

# d = 4, N_r = 8 experts in n_group = 4 groups of 2, topk_group = 2, K = 2.
# W_g has entries in {-1, -0.5, 0, 0.5, 1} so that ell = W_g x is easy to check by hand:
# ell = (2, -1, 0.5, 0, -1.5, 1.5, -0.5, -1).
X = [1.0, -1.0, 2.0, 0.5]
W_G = [
    [0.0, -0.5, 0.5, 1.0],
    [-0.5, -0.5, -0.5, 0.0],
    [0.5, -0.5, 0.0, -1.0],
    [0.5, 1.0, 0.0, 1.0],
    [0.5, 1.0, -0.5, 0.0],
    [1.0, 0.5, 0.5, 0.0],
    [-1.0, 0.5, 0.5, 0.0],
    [-1.0, -1.0, -0.5, 0.0],
]
# Negative biases (overloaded experts pushed down); e5 has the second-largest s but a bias of -0.5.
B = [-0.2, -0.6, -0.7, -0.6, -1.1, -0.5, -0.6, -0.5]
N_R, N_GROUP, TOPK_GROUP, K = 8, 4, 2, 2


def order(v):
    return list(np.argsort(-np.asarray(v), kind="stable"))


def route(ell, rule, b=None, group="top2", mask=-np.inf, bias_in_weights=False, normalise=True, scale=2.5):
    if rule == "sigmoid":
        s = 1.0 / (1.0 + np.exp(-ell))
    else:
        e = np.exp(ell - ell.max())
        s = e / e.sum()
    s_tilde = s + (b if b is not None else 0.0)
    groups = s_tilde.reshape(N_GROUP, N_R // N_GROUP)
    if group == "top2":
        G = np.array([sum(sorted(row, reverse=True)[:2]) for row in groups])
    else:
        G = groups.max(axis=1)
    kept = order(G)[:TOPK_GROUP]
    group_mask = np.array([1.0 if g in kept else 0.0 for g in range(N_GROUP)])
    select = np.array([s_tilde[i] if group_mask[i // (N_R // N_GROUP)] else mask for i in range(N_R)])
    experts = order(select)[:K]
    w = (s_tilde if bias_in_weights else s)[experts]
    if normalise:
        w = w / w.sum()
    g = w * scale
    return dict(s=s, s_tilde=s_tilde, group_scores=G, group_mask=group_mask, experts=experts, g=g)


def tok(v):  # one token: [T = 1][n]
    return [[float(a) for a in v]]


def main():
    x = np.array(X)
    W_g = np.array(W_G)
    b = np.array(B)
    ell = W_g @ x
    v3 = route(ell, "sigmoid", b)
    p4 = route(ell, "sigmoid", b, bias_in_weights=True)
    p5 = route(ell, "sigmoid", b, group="max")
    p6 = route(ell, "sigmoid", b, mask=0.0)
    p17 = route(ell, "sigmoid", b, scale=2.5 * 2.5)
    unbiased = order(1.0 / (1.0 + np.exp(-ell)))[:K]
    v2 = route(ell, "softmax", None, group="max", normalise=False, scale=16.0)
    p8 = route(ell, "softmax", None, group="max", normalise=True, scale=16.0)

    expected = {
        "ell": tok(ell),
        "s": tok(v3["s"]),
        "s_tilde": tok(v3["s_tilde"]),
        "group_scores": tok(v3["group_scores"]),
        "group_mask": tok(v3["group_mask"]),
        "experts": tok(v3["experts"]),
        "g": tok(v3["g"]),
        "unbiased_top_k": tok(unbiased),
        "fault_P4_bias_in_weights_g": tok(p4["g"]),
        "fault_P5_group_score_max_experts": tok(p5["experts"]),
        "fault_P5_group_score_max_g": tok(p5["g"]),
        "fault_P6_group_mask_zero_experts": tok(p6["experts"]),
        "fault_P6_group_mask_zero_g": tok(p6["g"]),
        "fault_P17_double_routed_scaling_g": tok(p17["g"]),
        "v2_s": tok(v2["s"]),
        "v2_group_scores": tok(v2["group_scores"]),
        "v2_group_mask": tok(v2["group_mask"]),
        "v2_experts": tok(v2["experts"]),
        "v2_g": tok(v2["g"]),
        "v2_fault_P8_renormalize_softmax_g": tok(p8["g"]),
    }
    doc = {
        "section": "spec 7.1, 7.2; pitfalls P4, P5, P6, P8, P17",
        "title": "V3 routing of one token: 8 experts, 4 groups of 2, top-2 groups, K = 2, negative biases; "
                 "then the same token under V2 rules",
        "inputs": {"x": [X], "W_g": W_G, "b": B},
        "parameters": {"hidden_size": 4, "n_routed_experts": N_R, "n_group": N_GROUP, "topk_group": TOPK_GROUP,
                       "num_experts_per_tok": K, "v3_routed_scaling_factor": 2.5, "v2_routed_scaling_factor": 16.0},
        "expected": expected,
        "doc_printed": {},
        "tolerance": {"abs": 1e-15, "rel": 1e-12, "why": "float64 on both sides; exp and a few sums, a few ulps"},
        "check": (
            "By hand: ell = W_g x = (2, -1, 0.5, 0, -1.5, 1.5, -0.5, -1). s = sigmoid(ell) = (0.8808, 0.2689, "
            "0.6225, 0.5, 0.1824, 0.8176, 0.3775, 0.2689); s_tilde = s + b = (0.6808, -0.3311, -0.0775, -0.1, "
            "-0.9176, 0.3176, -0.2225, -0.2311). Top-2 group sums (0.3497, -0.1775, -0.6, -0.4535) keep groups "
            "0 and 1, so experts 0 and 2 are chosen (e5, second by s, is in a dropped group). g = 2.5 (0.8808, "
            "0.6225) / 1.5033 = (1.4648, 1.0352). Faults: the max rule keeps groups 0 and 2 (maxima 0.6808, "
            "0.3176) -> experts 0, 5; masking with 0 lets the dropped expert 4 (0 > -0.0775) in -> experts 0, 4; "
            "weights from s_tilde give (2.8213, -0.3213). V2: softmax(ell), group maxima keep groups 0 and 2, "
            "experts 0 and 5, g = 16 (s_0, s_5) without renormalisation. Computed by this script with NumPy."
        ),
    }
    path = os.path.join(HERE, "v3_routing.json")
    with open(path, "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")
    print("wrote", path)
    for k, v in expected.items():
        print(f"{k:40s} {np.round(np.array(v[0]), 4)}")


if __name__ == "__main__":
    main()

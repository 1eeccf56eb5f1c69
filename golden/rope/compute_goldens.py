#!/usr/bin/env python3
"""Writes golden/rope/*.json: RoPE frequencies, the YaRN correction, the mscale factors and
softmax scales of spec §4.5-4.6, and two small rotations, computed independently of the C++ code.

Plain Python `math` in double precision, from the closed forms of the spec:
  θ_i = base^(-2i/D)                                  i = 0 .. D/2-1
  corr_dim(r) = D ln(L0 / (2π r)) / (2 ln base);  low = max(floor(corr_dim(β_fast)), 0),
  high = min(ceil(corr_dim(β_slow)), D-1);  keep_i = 1 - clamp((i-low)/(high-low), 0, 1)
  θ'_i = θ_i / factor · (1 - keep_i) + θ_i · keep_i
  mscale(f, m) = 1 if f <= 1 else 0.1 m ln f + 1;  s_eff = (d_nope + d_rope)^(-1/2) mscale(f, m_all)^2
The rotation uses the complex-number form of model.py (x[2i] + i x[2i+1]) * e^{i pos θ'_i} with
Python's `cmath`, not the cos/sin formula of reference/deepseek/rope.cpp.

Run:  python3 golden/rope/compute_goldens.py        (rewrites the JSON files next to it)
"""
import cmath
import json
import math
import os

HERE = os.path.dirname(os.path.abspath(__file__))


def write(name, obj):
    path = os.path.join(HERE, name)
    with open(path, "w") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")
    print("wrote", path)


def theta(D, base):
    return [base ** (-2.0 * i / D) for i in range(D // 2)]


def yarn(D, base, L0, factor, beta_fast, beta_slow):
    corr = lambda r: D * math.log(L0 / (2 * math.pi * r)) / (2 * math.log(base))
    low = max(math.floor(corr(beta_fast)), 0)
    high = min(math.ceil(corr(beta_slow)), D - 1)
    if low == high:
        high += 0.001
    th = theta(D, base)
    keep = [1 - min(max((i - low) / (high - low), 0.0), 1.0) for i in range(D // 2)]
    prime = [t / factor * (1 - k) + t * k for t, k in zip(th, keep)]
    return corr(beta_fast), corr(beta_slow), low, high, th, keep, prime


def mscale(f, m):
    return 1.0 if f <= 1 else 0.1 * m * math.log(f) + 1.0


def rotate_complex(x, pos, th):
    out = []
    for i, t in enumerate(th):
        z = complex(x[2 * i], x[2 * i + 1]) * cmath.exp(1j * pos * t)
        out += [z.real, z.imag]
    return out


def v3_yarn():
    D, base, L0, factor = 64, 10000.0, 4096, 40.0
    c_fast, c_slow, low, high, th, keep, prime = yarn(D, base, L0, factor, 32.0, 1.0)
    m_v3, m_v2 = mscale(factor, 1.0), mscale(factor, 0.707)
    s_plain = 192 ** -0.5
    pos = 5000  # past original_max_position_embeddings = 4096
    unit = [1.0, 0.0] * (D // 2)  # every pair starts at (1, 0): the result is (cos, sin) of its angle
    write("v3_yarn.json", {
        "section": "spec 4.5-4.6",
        "title": "DeepSeek-V3/R1 RoPE: θ, YaRN θ', mscale and s_eff; a unit vector rotated at 5000",
        "inputs": {"position": pos, "x": [unit]},
        "parameters": {"qk_rope_head_dim": D, "rope_theta": base,
                       "original_max_position_embeddings": L0, "factor": factor,
                       "beta_fast": 32.0, "beta_slow": 1.0, "mscale": 1.0, "mscale_all_dim": 1.0,
                       "qk_nope_head_dim": 128},
        "expected": {
            "corr_dim_beta_fast": c_fast, "corr_dim_beta_slow": c_slow, "low": low, "high": high,
            "theta": th, "keep": keep, "theta_prime": prime,
            "mscale_v3": m_v3, "mscale_v2": m_v2,
            "s_eff_v3": s_plain * m_v3 ** 2, "s_eff_v2": s_plain * m_v2 ** 2,
            "s_eff_plain": s_plain,
            "s_eff_v3_no_mscale": s_plain, "s_eff_v3_mscale_not_squared": s_plain * m_v3,
            "rotated": [rotate_complex(unit, pos, prime)],
        },
        "doc_printed": {"low": 10, "high": 23, "mscale_v3": 1.368888, "mscale_v2": 1.260804,
                        "s_eff_v3": 0.13523378, "s_eff_v2": 0.11472139, "s_eff_plain": 0.07216878,
                        "theta_prime_11": 3.900692657e-02, "theta_prime_16": 5.5e-03,
                        "theta_prime_31": 3.333803580e-06},
        "tolerance": {"abs": 1e-15, "rel": 1e-12,
                      "why": "float64 closed forms evaluated twice (Python, C++): a few ulps; the "
                             "rotation angle 5000 θ' is itself rounded to ~5000 ulp(1) = 1e-12 "
                             "absolute, see the test's own tolerance for the rotation"},
        "check": ("spec §4.6 table: low = 10, high = 23, θ'_11 = 3.900692657e-02, θ'_16 = 5.5e-03, "
                  "θ'_31 = 3.333803580e-06; spec §4.5: s_eff = 0.13523378 (V3), 0.11472139 (V2), "
                  "0.07216878 (plain). The test also derives θ' in closed form inline: θ_i for "
                  "i <= 10, θ_i/40 for i >= 23, and θ_i ((i-10)/13/40 + 1 - (i-10)/13) between."),
    })


def small_rotation():
    D, base = 4, 10000.0
    th = theta(D, base)  # [1, 0.01]
    x = [1.0, 2.0, 3.0, 4.0]
    pos = 1
    # Half-split layout on the de-interleaved vector [x0, x2, x1, x3]: pairs (0, 2) and (1, 3).
    inter = rotate_complex(x, pos, th)
    write("small_rotation.json", {
        "section": "spec 4.6",
        "title": "RoPE of x = (1, 2, 3, 4) at position 1 with d_rope = 4, base 10000 (no YaRN)",
        "inputs": {"x": [x], "position": pos},
        "parameters": {"qk_rope_head_dim": D, "rope_theta": base},
        "expected": {
            "theta": th,
            "interleaved": [inter],
            "deinterleaved_input": [[x[0], x[2], x[1], x[3]]],
            "half_split_of_deinterleaved": [[inter[0], inter[2], inter[1], inter[3]]],
            "half_split_of_raw": [[x[0] * math.cos(pos * th[0]) - x[2] * math.sin(pos * th[0]),
                                   x[1] * math.cos(pos * th[1]) - x[3] * math.sin(pos * th[1]),
                                   x[0] * math.sin(pos * th[0]) + x[2] * math.cos(pos * th[0]),
                                   x[1] * math.sin(pos * th[1]) + x[3] * math.cos(pos * th[1])]],
            "norm": math.sqrt(sum(v * v for v in x)),
        },
        "doc_printed": {},
        "tolerance": {"abs": 1e-15, "rel": 1e-12, "why": "float64, a few ulps"},
        "check": ("θ = (1, 0.01). Pair 0 = 1 + 2i turned by 1 rad: (cos 1 - 2 sin 1, sin 1 + 2 cos 1) "
                  "= (-1.1426, 1.9221); pair 1 = 3 + 4i turned by 0.01 rad: (3 cos .01 - 4 sin .01, "
                  "3 sin .01 + 4 cos .01) = (2.9598, 4.0298). The norm sqrt(30) is unchanged. "
                  "half_split_of_raw is what rotate_half does to the raw (interleaved) vector: "
                  "it pairs x0 with x2 and x1 with x3, the wrong pairs (P1)."),
    })


if __name__ == "__main__":
    v3_yarn()
    small_rotation()

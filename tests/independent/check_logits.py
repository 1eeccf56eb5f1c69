#!/usr/bin/python3
"""Checks `dsr1 run` logits against the independent numpy implementation (deepseek_np.py).

  check_logits.py --dsr1 BUILD/dsr1 --preset tiny-v3 --seed 1 --tokens 3,17,5,99,42,7 --workdir DIR
                  [--dtype f64|f32|f16|bf16|fp8] [--shards N] [--attn naive|absorbed] [--decode-from P]
                  [--rtol R] [--mtp] [--require-past-original] [--dsr1-arg=ARG ...] [--expect-mismatch]
  check_logits.py --own-checkpoint tiny-v3 ... (as above, but the checkpoint is written here, not by dsr1)
                  [--remove-checkpoint]   (delete the checkpoint and the dump afterwards)
  check_logits.py --own-checkpoint v3-width --dtype fp8 --numpy-only [--max-rss-gb G] --tokens ... --workdir DIR
                  (write the checkpoint and run the numpy side alone, naive against absorbed
                  attention: its time and peak memory; --max-rss-gb fails above G GB)
  check_logits.py --self-test [--workdir DIR]

1. dsr1 init-model writes DIR/model (config.json + safetensors, HF names);
2. dsr1 run writes DIR/out.safetensors holding `logits` [T, V] (float64);
3. deepseek_np computes logits from DIR/model; both are compared row by row:
       err_t = max_v |dsr1[t, v] - numpy[t, v]| / max_v |numpy[t, v]|
   and the check passes iff max_t err_t <= rtol and the argmax of every row agrees.
   With --expect-mismatch the exit status is inverted (0 iff the logits disagree): used with
   --dsr1-arg to show that a deliberately wrong dsr1 option is caught.
   If the dump holds `mtp.logits` [T-1, V] and the checkpoint has an MTP layer, it is compared
   the same way. Exit status 0 on agreement, 1 otherwise.
"""

import argparse
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import numpy as np  # noqa: E402

import deepseek_np as ds  # noqa: E402
import safetensors_np as st  # noqa: E402

# Both sides compute in float64 from the same exactly-decoded weights, so they differ only by
# rounding order (BLAS blocking, absorbed vs naive association, cached vs full attention).
# Measured: 1e-15 to 3e-15 row-relative on the tiny models, for every dsr1 option combination
# (docs/independent-check.md). 1e-12 (tests/support/tolerances.hpp same_math_reordered) leaves
# a factor of ~300 for error growth, while a wrong formula shows up at 1e-3 or more.
DEFAULT_RTOL = 1e-12


def row_errors(got, want):
    """err_t = max_v |got - want| / max_v |want|, one value per row t."""
    scale = np.max(np.abs(want), axis=1)
    scale = np.where(scale > 0, scale, 1.0)
    return np.max(np.abs(got - want), axis=1) / scale


def compare(label, got, want, rtol, got_name="dsr1", want_name="numpy"):
    """Prints a summary; returns True iff shapes match, err <= rtol and argmaxes agree."""
    if got.shape != want.shape:
        print(f"FAIL {label}: {got_name} shape {list(got.shape)} != {want_name} shape {list(want.shape)}")
        return False
    if not np.all(np.isfinite(got)):
        print(f"FAIL {label}: {got_name} values are not all finite")
        return False
    err = row_errors(got, want)
    worst = int(np.argmax(err))
    am_got, am_want = np.argmax(got, axis=1), np.argmax(want, axis=1)
    ok_err = bool(np.max(err) <= rtol)
    ok_arg = bool(np.all(am_got == am_want))
    print(f"{label}: T={got.shape[0]} V={got.shape[1]}  max row-relative error {np.max(err):.3e} "
          f"(row {worst}) vs rtol {rtol:.1e}: {'ok' if ok_err else 'TOO LARGE'}")
    print(f"{label}: argmax {got_name:<6} {am_got.tolist()}")
    print(f"{label}: argmax {want_name:<6} {am_want.tolist()}: {'agree' if ok_arg else 'DISAGREE'}")
    if not ok_err:
        for t in range(got.shape[0]):
            v = int(np.argmax(np.abs(got[t] - want[t])))
            print(f"  row {t}: err {err[t]:.3e}  worst v={v}: {got_name} {got[t, v]:.17g} {want_name} {want[t, v]:.17g}")
    return ok_err and ok_arg


def run(cmd):
    print("$ " + " ".join(cmd), flush=True)
    try:
        r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    except OSError as e:
        print(f"FAIL: cannot run {cmd[0]}: {e}")
        sys.exit(1)
    if r.returncode != 0:
        print(r.stdout)
        print(f"FAIL: command exited with status {r.returncode}")
        sys.exit(1)
    return r.stdout


def peak_rss_mb():
    """Peak resident memory of this process so far (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def check_against_dsr1(a):
    """Makes the checkpoint, runs dsr1 and numpy, compares; with --remove-checkpoint the
    checkpoint and the dump are deleted afterwards, pass or fail (a full-width one is 6 GB)."""
    model_dir = os.path.join(a.workdir, "model")
    dump = os.path.join(a.workdir, "out.safetensors")
    try:
        return make_and_compare(a, model_dir, dump)
    finally:
        if a.remove_checkpoint:
            shutil.rmtree(model_dir, ignore_errors=True)
            if os.path.exists(dump):
                os.remove(dump)
            print(f"removed {model_dir} and {dump}")


def make_and_compare(a, model_dir, dump):
    tokens = [int(t) for t in a.tokens.split(",")]
    os.makedirs(a.workdir, exist_ok=True)
    if os.path.exists(model_dir):
        shutil.rmtree(model_dir)
    if os.path.exists(dump):
        os.remove(dump)

    if a.own_checkpoint:
        # The checkpoint comes from this directory's own writer, so dsr1's loader is checked too.
        cfg = OWN_CONFIGS[a.own_checkpoint]
        dtype = {"f64": "F64", "f32": "F32", "bf16": "BF16", "f16": "F16", "fp8": "FP8", None: "F32"}[a.dtype]
        t0 = time.time()
        write_checkpoint(model_dir, cfg, RandomWeights(cfg, a.seed), dtype, a.shards or 1)
        size = sum(os.path.getsize(os.path.join(model_dir, f)) for f in os.listdir(model_dir))
        print(f"wrote {a.own_checkpoint} ({dtype}, {a.shards or 1} file(s), {size / 1e9:.2f} GB) to {model_dir} "
              f"with numpy in {time.time() - t0:.1f} s", flush=True)
    else:
        init = [a.dsr1, "init-model", "--preset", a.preset, "--seed", str(a.seed), "--out", model_dir]
        if a.dtype:
            init += ["--dtype", a.dtype]
        if a.shards:
            init += ["--shards", str(a.shards)]
        run(init)
    if a.numpy_only:
        return numpy_alone(a, model_dir, tokens)
    cmd = [a.dsr1, "run", "--model", model_dir, "--tokens", ",".join(map(str, tokens)), "--dump", dump]
    if a.attn:
        cmd += ["--attn", a.attn]
    if a.decode_from is not None:
        cmd += ["--decode-from", str(a.decode_from)]
    if a.mtp:
        cmd += ["--mtp"]
    cmd += a.dsr1_arg
    t0 = time.time()
    run(cmd)
    print(f"dsr1 run: {time.time() - t0:.1f} s", flush=True)

    out = st.SafetensorsFile(dump)
    if "logits" not in out.entries:
        print(f"FAIL: {dump} holds no tensor named logits")
        return 1
    got = out.raw("logits")

    t0 = time.time()
    model = ds.Model(model_dir)
    c = model.cfg
    want, h_final = model.forward(tokens, return_hidden=True)
    print(f"numpy forward: {time.time() - t0:.2f} s, peak RSS {peak_rss_mb():.0f} MB; {describe(c, len(tokens))}")
    ok = compare("logits", got, want, a.rtol) and within_rss_budget(a)
    if a.expect_mismatch:
        print("expected a mismatch: " + ("none found, FAIL" if ok else "found, PASS"))
        return 1 if ok else 0
    if a.require_past_original:
        L0 = (c.rope_scaling or {}).get("original_max_position_embeddings") if c.yarn else None
        past = L0 is not None and len(tokens) - 1 >= L0
        print(f"positions 0..{len(tokens) - 1} vs original_max_position_embeddings {L0}: "
              f"{'past it' if past else 'NOT past it (or no yarn)'}")
        ok = ok and past

    if model.has_mtp() and "mtp.logits" in out.entries:
        ok = compare("mtp.logits", out.raw("mtp.logits"), model.mtp_forward(tokens, h_final), a.rtol) and ok
    elif a.mtp:
        print("FAIL: --mtp, but the checkpoint has no MTP layer or the dump no mtp.logits")
        ok = False
    elif model.has_mtp():
        print("mtp.logits: not in the dump; MTP not compared")
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


def numpy_alone(a, model_dir, tokens):
    """--numpy-only: the naive forward pass against the absorbed one (AbsorbedModel, spec §4.3),
    both streamed, with their time and the process's peak RSS; no dsr1."""
    t0 = time.time()
    model = ds.Model(model_dir)
    naive = model.forward(tokens)
    print(f"numpy forward: {time.time() - t0:.1f} s, peak RSS {peak_rss_mb():.0f} MB; "
          f"{describe(model.cfg, len(tokens))}", flush=True)
    t0 = time.time()
    absorbed = AbsorbedModel(model_dir).forward(tokens)
    print(f"numpy forward, absorbed attention: {time.time() - t0:.1f} s, peak RSS {peak_rss_mb():.0f} MB")
    ok = compare("logits", absorbed, naive, a.rtol, "absorbed", "naive") and within_rss_budget(a)
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


def within_rss_budget(a):
    """--max-rss-gb: the streaming promise, checked: the process never held more than that."""
    if a.max_rss_gb is None:
        return True
    ok = peak_rss_mb() <= a.max_rss_gb * 1024
    print(f"peak RSS {peak_rss_mb() / 1024:.2f} GB vs --max-rss-gb {a.max_rss_gb}: {'ok' if ok else 'TOO LARGE'}")
    return ok


def describe(c, T):
    parts = [f"{c.model_type} L={c.L} d={c.d} n_h={c.n_h} r_q={c.r_q} r_kv={c.r_kv}"]
    if c.N_r is not None:
        parts.append(f"MoE N_r={c.N_r} K={c.K} {c.scoring_func}/{c.topk_method} groups {c.topk_group}/{c.n_group}"
                     f" norm={c.norm_topk_prob} scale={c.routed_scaling_factor}")
    if c.yarn:
        L0 = c.rope_scaling["original_max_position_embeddings"]
        parts.append(f"yarn factor={c.rope_scaling['factor']} L0={L0} (positions 0..{T - 1}"
                     f"{', past L0' if T - 1 >= L0 else ', all below L0'}) s_eff={c.s_eff:.8f}")
    return "; ".join(parts)


# ============================================================================================
# Self-test: the numpy implementation on checkpoints it writes itself, without dsr1.
# ============================================================================================

class SelfTest:
    def __init__(self):
        self.failures = 0
        self.count = 0

    def check(self, name, ok, detail=""):
        self.count += 1
        if not ok:
            self.failures += 1
        print(f"[{'ok' if ok else 'FAIL'}] {name}" + (f"  ({detail})" if detail else ""), flush=True)

    def close(self, name, got, want, rtol, atol=0.0):
        got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
        if got.shape != want.shape:
            self.check(name, False, f"shape {got.shape} vs {want.shape}")
            return
        err = np.max(np.abs(got - want) - (atol + rtol * np.abs(want))) if got.size else -1
        dev = np.max(np.abs(got - want) / np.maximum(np.abs(want), 1e-300)) if got.size else 0
        self.check(name, err <= 0, f"max rel diff {dev:.2e}, rtol {rtol:.0e}")


# A V3-style tiny config: q-LoRA, sigmoid + bias, 2-of-4 groups, one dense layer, MTP, YaRN
# with a small original context (16), so that a 20-token test runs past it.
TINY_V3 = {
    "model_type": "deepseek_v3", "vocab_size": 50, "hidden_size": 32, "intermediate_size": 48,
    "moe_intermediate_size": 12, "num_hidden_layers": 3, "num_attention_heads": 4,
    "num_key_value_heads": 4, "n_shared_experts": 1, "n_routed_experts": 8, "num_experts_per_tok": 3,
    "n_group": 4, "topk_group": 2, "routed_scaling_factor": 2.5, "first_k_dense_replace": 1,
    "moe_layer_freq": 1, "q_lora_rank": 24, "kv_lora_rank": 16, "qk_nope_head_dim": 8,
    "qk_rope_head_dim": 8, "v_head_dim": 6, "rms_norm_eps": 1e-6,
    # rope_theta 10 with D = 8 and L0 = 16 puts the YaRN blend range at low = 0, high = 2, so
    # pair 0 keeps θ, pair 1 is blended half-way and pairs 2, 3 are divided by the factor.
    "rope_theta": 10.0,
    "rope_scaling": {"type": "yarn", "factor": 8.0, "original_max_position_embeddings": 16,
                     "beta_fast": 32, "beta_slow": 1, "mscale": 1.0, "mscale_all_dim": 1.0},
    "max_position_embeddings": 128, "scoring_func": "sigmoid", "topk_method": "noaux_tc",
    "norm_topk_prob": True, "num_nextn_predict_layers": 1, "tie_word_embeddings": False,
    "hidden_act": "silu",
}
# A V2-Lite-style tiny config: no q-LoRA (q_proj), softmax greedy, no grouping, no bias.
TINY_V2_LITE = dict(TINY_V3, model_type="deepseek_v2", q_lora_rank=None, n_group=1, topk_group=1,
                    n_shared_experts=2, routed_scaling_factor=1.0, scoring_func="softmax",
                    topk_method="greedy", norm_topk_prob=False, num_nextn_predict_layers=0,
                    rope_scaling=dict(TINY_V3["rope_scaling"], mscale=0.707, mscale_all_dim=0.707))
# A V2-style tiny config: softmax group_limited_greedy (group max), factor 16.
TINY_V2 = dict(TINY_V2_LITE, q_lora_rank=24, n_group=4, topk_group=2, routed_scaling_factor=16.0,
               topk_method="group_limited_greedy")


# Wider than one 128x128 FP8 block: hidden 136, dense FFN 260, vocab 140, so the scale grids
# have partial edge blocks (spec §10, P13), e.g. dense up_proj [260, 136] -> scale [3, 2].
TINY_V3_WIDE = dict(TINY_V3, vocab_size=140, hidden_size=136, intermediate_size=260, num_hidden_layers=2,
                    num_attention_heads=2, num_key_value_heads=2, q_lora_rank=130, kv_lora_rank=132, qk_nope_head_dim=64)

# DeepSeek-V3 at its true width (hidden 7168, 128 heads, q/kv ranks 1536/512, head dims
# 128/64/128, dense FFN 18432, expert FFN 2048, vocab 129280, V3's YaRN), cut to 3 layers (one
# dense, two MoE) and 16 routed experts in 4 groups, 2 groups kept, 4 chosen (V3: 256 in 8, 4
# kept, 8 chosen), no MTP layer. Stored as FP8 it is a 6.2 GB checkpoint.
V3_WIDTH = dict(TINY_V3, vocab_size=129280, hidden_size=7168, intermediate_size=18432, moe_intermediate_size=2048,
                num_hidden_layers=3, num_attention_heads=128, num_key_value_heads=128, n_shared_experts=1,
                n_routed_experts=16, num_experts_per_tok=4, n_group=4, topk_group=2, first_k_dense_replace=1,
                q_lora_rank=1536, kv_lora_rank=512, qk_nope_head_dim=128, qk_rope_head_dim=64, v_head_dim=128,
                rope_theta=10000.0, max_position_embeddings=163840, num_nextn_predict_layers=0,
                rope_scaling={"type": "yarn", "factor": 40.0, "original_max_position_embeddings": 4096,
                              "beta_fast": 32, "beta_slow": 1, "mscale": 1.0, "mscale_all_dim": 1.0})
# The same shape of model at a width today's dsr1 holds in memory and CI runs in seconds: hidden
# 1024, 8 heads of V3's head dims, vocab 8000, with the MTP layer; kv_a_proj [224, 1024], dense
# FFN 2800 and expert FFN 200 end in partial 128x128 FP8 blocks.
V3_MID = dict(V3_WIDTH, vocab_size=8000, hidden_size=1024, intermediate_size=2800, moe_intermediate_size=200,
              num_attention_heads=8, num_key_value_heads=8, q_lora_rank=384, kv_lora_rank=160,
              num_nextn_predict_layers=1)
OWN_CONFIGS = {"tiny-v3": TINY_V3, "tiny-v2-lite": TINY_V2_LITE, "tiny-v2": TINY_V2, "tiny-v3-wide": TINY_V3_WIDE,
               "v3-mid": V3_MID, "v3-width": V3_WIDTH}


def checkpoint_shapes(cfg):
    """HF name -> shape for every tensor of a config (§11)."""
    c = ds.Config(cfg)
    d, n_h, dn, dr, dv = c.d, c.n_h, c.d_nope, c.d_rope, c.d_v
    shapes = {"model.embed_tokens.weight": (c.V, d), "model.norm.weight": (d,), "lm_head.weight": (c.V, d)}

    def layer(l):
        p = f"model.layers.{l}."
        s = {p + "input_layernorm.weight": (d,), p + "post_attention_layernorm.weight": (d,)}
        a = p + "self_attn."
        if c.r_q:
            s[a + "q_a_proj.weight"] = (c.r_q, d)
            s[a + "q_a_layernorm.weight"] = (c.r_q,)
            s[a + "q_b_proj.weight"] = (n_h * (dn + dr), c.r_q)
        else:
            s[a + "q_proj.weight"] = (n_h * (dn + dr), d)
        s[a + "kv_a_proj_with_mqa.weight"] = (c.r_kv + dr, d)
        s[a + "kv_a_layernorm.weight"] = (c.r_kv,)
        s[a + "kv_b_proj.weight"] = (n_h * (dn + dv), c.r_kv)
        s[a + "o_proj.weight"] = (d, n_h * dv)
        m = p + "mlp."
        if c.is_moe_layer(l):
            s[m + "gate.weight"] = (c.N_r, d)
            if c.topk_method == "noaux_tc":
                s[m + "gate.e_score_correction_bias"] = (c.N_r,)
            for j in range(c.N_r):
                for nm, sh in (("gate_proj", (c.I_e, d)), ("up_proj", (c.I_e, d)), ("down_proj", (d, c.I_e))):
                    s[f"{m}experts.{j}.{nm}.weight"] = sh
            if c.N_s:
                w = c.N_s * c.I_e
                for nm, sh in (("gate_proj", (w, d)), ("up_proj", (w, d)), ("down_proj", (d, w))):
                    s[f"{m}shared_experts.{nm}.weight"] = sh
        else:
            for nm, sh in (("gate_proj", (c.I, d)), ("up_proj", (c.I, d)), ("down_proj", (d, c.I))):
                s[f"{m}{nm}.weight"] = sh
        return s

    for l in range(c.L):
        shapes.update(layer(l))
    if c.n_mtp:
        p = f"model.layers.{c.L}."
        shapes.update(layer(c.L))
        shapes.update({p + "embed_tokens.weight": (c.V, d), p + "enorm.weight": (d,), p + "hnorm.weight": (d,),
                       p + "eh_proj.weight": (d, 2 * d), p + "shared_head.norm.weight": (d,),
                       p + "shared_head.head.weight": (c.V, d)})
    return shapes


def is_fp8_weight(name):
    """§10: linear weights of attention and FFNs are FP8; embeddings, norms, router, eh_proj are not."""
    if not name.endswith(".weight") or "layernorm" in name or "norm.weight" in name:
        return False
    return any(k in name for k in ("self_attn.", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj",
                                   "mlp.experts.", "mlp.shared_experts."))


# The random FP8 weights are random bytes with bit 6 cleared: e4m3 codes with exponent field
# 0..7, i.e. zero, subnormals and normals up to |1.875|, never NaN (exponent field 15).
E4M3_EXPONENT_TOP_BIT = np.uint8(0x40)
# Weights are made up (and written) 128 rows at a time, one FP8 block row.
ROW_BLOCK = st.FP8_BLOCK


class RandomWeights:
    """Made-up weights for a config, one 128-row block at a time, so that a full-width
    checkpoint is written without holding it. Every value is exact in every storage dtype:
    FP8 linear weights are e4m3 codes times a per-block scale (1 + k/8)·2^-m, everything else is
    rounded to bf16. A block depends only on (seed, tensor name, block index), not on the file,
    the shard or the order it is written in.
    """

    def __init__(self, cfg, seed):
        self.shapes = checkpoint_shapes(cfg)
        self.seed = seed

    def rng(self, name, block):
        return np.random.default_rng([self.seed, zlib.crc32(name.encode()), block])

    def n_blocks(self, name):
        """Matrices come in 128-row blocks; a vector is one block."""
        shape = self.shapes[name]
        return math.ceil(shape[0] / ROW_BLOCK) if len(shape) == 2 else 1

    def block_rows(self, name, block):
        shape = self.shapes[name]
        return (block * ROW_BLOCK, min((block + 1) * ROW_BLOCK, shape[0])) if len(shape) == 2 else (0, shape[0])

    def scale_inv(self, name):
        """FP8 weight [rows, cols]: its scale grid [ceil(rows/128), ceil(cols/128)].
        scale = (1 + k/8) / 2 / 2^round(log2 sqrt(cols)): 4 significant bits, so that code × scale
        is exact in bf16, and the weights have the usual 1/sqrt(in) size."""
        rows, cols = self.shapes[name]
        base = 2.0 ** -round(math.log2(math.sqrt(cols)))
        k = self.rng(name + "_scale_inv", 0).integers(0, 8, size=st.scale_grid(rows, cols))
        return base * (1 + k / 8.0) / 2.0

    def codes(self, name, block):
        """FP8 weight: the e4m3 codes of rows block*128 .. (block+1)*128 - 1."""
        r0, r1 = self.block_rows(name, block)
        codes = self.rng(name, block).integers(0, 256, size=(r1 - r0, self.shapes[name][1]), dtype=np.uint8)
        return codes & ~E4M3_EXPONENT_TOP_BIT

    def values(self, name, block):
        """The float64 values of one block of a tensor (FP8 weights dequantised)."""
        r0, r1 = self.block_rows(name, block)
        if is_fp8_weight(name):
            return st.block_dequant(st.E4M3_TABLE[self.codes(name, block)], self.scale_inv(name), name,
                                    r0, self.shapes[name][0])
        shape = (r1 - r0,) + tuple(self.shapes[name][1:])
        z = self.rng(name, block).standard_normal(shape, dtype=np.float32).astype(np.float64)
        if name.endswith("norm.weight") or "layernorm" in name:
            v = 1.0 + 0.25 * z
        elif name.endswith("e_score_correction_bias"):
            v = 0.5 * z   # includes negative biases (P6)
        elif "embed_tokens" in name:
            v = z
        else:
            v = z / math.sqrt(shape[-1])
        return bf16_round(v)


def bf16_round(v):
    """Truncates to bf16 so that every storage dtype holds the value exactly."""
    bits = np.asarray(v, dtype=np.float32).view(np.uint32) & np.uint32(0xFFFF0000)
    return bits.view(np.float32).astype(np.float64)


def write_checkpoint(directory, cfg, weights, dtype="F32", shards=1):
    """Writes config.json and safetensors in dtype F64/F32/F16/BF16, or FP8 = F8_E4M3 linear
    weights + F32 weight_scale_inv, BF16 for the rest (F32 router bias), as V3 is stored.

    Streams: each tensor is written 128 rows at a time as RandomWeights makes them up. The
    layout is deliberately not the obvious one, as another writer's need not be: the tensors are
    laid out in a shuffled order (a scale may come before its weight, or sit in another shard),
    the headers list them by name, and the index maps names to shards.
    """
    os.makedirs(directory, exist_ok=True)
    if dtype == "FP8":   # as V3's config.json declares its FP8 weights (spec §1.2)
        cfg = dict(cfg, quantization_config={"activation_scheme": "dynamic", "fmt": "e4m3", "quant_method": "fp8",
                                             "weight_block_size": [st.FP8_BLOCK, st.FP8_BLOCK]})
    with open(os.path.join(directory, "config.json"), "w") as f:
        json.dump(cfg, f, indent=1)

    def blocks(name, encode_block):
        return lambda: (encode_block(b) for b in range(weights.n_blocks(name)))

    stored = []   # (name, stored dtype, shape, chunks(): the tensor's bytes block by block)
    for name, shape in weights.shapes.items():
        if dtype == "FP8" and is_fp8_weight(name):
            stored.append((name, "F8_E4M3", shape, blocks(name, lambda b, n=name: weights.codes(n, b).tobytes())))
            scale = weights.scale_inv(name)
            stored.append((name + "_scale_inv", "F32", scale.shape, lambda s=scale: [st.encode(s, "F32")]))
        else:
            kind = dtype if dtype != "FP8" else ("F32" if name.endswith("e_score_correction_bias") else "BF16")
            stored.append((name, kind, shape, blocks(name, lambda b, n=name, k=kind: st.encode(weights.values(n, b), k))))
    order = np.random.default_rng(0).permutation(len(stored))      # one fixed shuffle
    stored = [stored[i] for i in order]
    chunks = {name: make for name, _, _, make in stored}

    if shards <= 1:
        st.write_streaming(os.path.join(directory, "model.safetensors"),
                           [(n, dt, sh) for n, dt, sh, _ in stored], lambda n: chunks[n]())
        return
    weight_map = {}
    per = math.ceil(len(stored) / shards)
    for k in range(shards):
        part = stored[k * per:(k + 1) * per]
        fname = f"model-{k + 1:05d}-of-{shards:05d}.safetensors"
        st.write_streaming(os.path.join(directory, fname), [(n, dt, sh) for n, dt, sh, _ in part],
                           lambda n: chunks[n]())
        weight_map.update({n: fname for n, _, _, _ in part})
    with open(os.path.join(directory, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {}, "weight_map": dict(sorted(weight_map.items()))}, f, indent=1)


class AbsorbedModel(ds.Model):
    """The same model with MLA in the absorbed form (spec §4.3): a second route to the same
    attention output, used only to cross-check the naive form's head slicing."""

    def attention(self, x, prefix, positions):
        c = self.cfg
        T = x.shape[0]
        n_h, dn, dr, dv, r_kv = c.n_h, c.d_nope, c.d_rope, c.d_v, c.r_kv
        p = prefix + "self_attn."
        if c.r_q:
            c_q_hat = ds.rmsnorm(self.linear(x, p + "q_a_proj.weight"), self.w(p + "q_a_layernorm.weight"), c.eps)
            q = self.linear(c_q_hat, p + "q_b_proj.weight").reshape(T, n_h, dn + dr)
        else:
            q = self.linear(x, p + "q_proj.weight").reshape(T, n_h, dn + dr)
        kv_a = self.linear(x, p + "kv_a_proj_with_mqa.weight")
        c_kv_hat = ds.rmsnorm(kv_a[:, :r_kv], self.w(p + "kv_a_layernorm.weight"), c.eps)
        k_rope = ds.rope_interleaved(kv_a[:, r_kv:], positions, c.theta_prime, c.rope_amp)
        q_rope = ds.rope_interleaved(q[:, :, dn:], positions, c.theta_prime, c.rope_amp)
        W_kvb = self.w(p + "kv_b_proj.weight").reshape(n_h, dn + dv, r_kv)
        o = np.zeros((T, n_h, dv))
        for h in range(n_h):
            A, B = W_kvb[h, :dn, :], W_kvb[h, dn:, :]             # W^UK_h, W^UV_h: [dn|dv, r_kv]
            q_tilde = q[:, h, :dn] @ A                              # [T, r_kv]
            for t in range(T):
                sc = c.s_eff * (c_kv_hat[:t + 1] @ q_tilde[t] + k_rope[:t + 1] @ q_rope[t, h])
                pr = ds.softmax(sc)
                o[t, h] = B @ (pr @ c_kv_hat[:t + 1])
        return self.linear(o.reshape(T, n_h * dv), p + "o_proj.weight")


def self_test(workdir):
    S = SelfTest()
    tmp = workdir or tempfile.mkdtemp(prefix="dsr1-independent-")
    os.makedirs(tmp, exist_ok=True)

    # ---- FP8 e4m3 decoding, every class (spec §10), against hand values ----
    hand = {0x00: 0.0, 0x80: -0.0, 0x01: 2.0 ** -9, 0x07: 7 * 2.0 ** -9, 0x08: 2.0 ** -6,
            0x38: 1.0, 0xB8: -1.0, 0x3C: 1.5, 0x7E: 448.0, 0xFE: -448.0, 0x77: 240.0, 0x70: 128.0}
    S.check("e4m3: zero, subnormal, normal and max values", all(st.E4M3_TABLE[b] == v for b, v in hand.items()))
    nan_codes = [b for b in range(256) if math.isnan(st.E4M3_TABLE[b])]
    S.check("e4m3: exactly 0x7F and 0xFF are NaN, no infinities", nan_codes == [0x7F, 0xFF]
            and not np.any(np.isinf(st.E4M3_TABLE)))
    S.check("e4m3: largest finite value is 448", np.nanmax(st.E4M3_TABLE) == 448.0)

    # ---- block dequant with edge blocks against an explicit loop ----
    rng = np.random.default_rng(5)
    w = rng.standard_normal((130, 260))
    s = rng.standard_normal((2, 3))
    loop = np.empty_like(w)
    for r in range(130):
        for c in range(260):
            loop[r, c] = w[r, c] * s[r // 128, c // 128]
    S.check("fp8 block dequant: 130x260 with partial edge blocks equals the per-element rule",
            np.array_equal(st.block_dequant(w, s), loop))
    try:
        st.block_dequant(w, s[:1])
        S.check("fp8 block dequant: a wrong scale grid is rejected", False)
    except st.SafetensorsError as e:
        S.check("fp8 block dequant: a wrong scale grid is rejected", "expected [2, 3]" in str(e), str(e))

    # ---- safetensors round trip and rejection ----
    vals = bf16_round(rng.standard_normal((3, 5)))
    tensors = {f"x_{dt}": (dt, vals.shape, st.encode(vals, dt)) for dt in ("F64", "F32", "F16", "BF16")}
    p = os.path.join(tmp, "roundtrip.safetensors")
    st.write(p, tensors)
    f = st.SafetensorsFile(p)
    S.check("safetensors: F64, F32, BF16 round trip exactly",
            all(np.array_equal(f.raw(f"x_{dt}"), vals) for dt in ("F64", "F32", "BF16")))
    S.close("safetensors: F16 round trip to half precision", f.raw("x_F16"), vals, 1e-3)
    # Another writer need not align tensors: an F32 and a BF16 tensor after 3 bytes of FP8.
    q = os.path.join(tmp, "unaligned.safetensors")
    st.write(q, {"b": ("F8_E4M3", (3,), bytes([0x38, 0xB8, 0x3C])), "f": ("F32", (3, 5), st.encode(vals, "F32")),
                 "h": ("BF16", (3, 5), st.encode(vals, "BF16"))})
    g = st.SafetensorsFile(q)
    S.check("safetensors: tensors at unaligned offsets (3, 63) read exactly",
            g.entries["f"][2] == 3 and g.raw("b").tolist() == [1.0, -1.0, 1.5]
            and np.array_equal(g.raw("f"), vals) and np.array_equal(g.raw("h", 1, 3), vals[1:3]))
    raw = open(p, "rb").read()
    n_header = int.from_bytes(raw[:8], "little")
    bad = {
        "header length past the end": (10 ** 9).to_bytes(8, "little") + raw[8:],
        "truncated data block": raw[:-4],
        "bad JSON": raw[:8] + b"{" * n_header + raw[8 + n_header:],
    }
    for what, data in bad.items():
        q = os.path.join(tmp, "bad.safetensors")
        open(q, "wb").write(data)
        try:
            st.SafetensorsFile(q)
            S.check(f"safetensors: rejects {what}", False)
        except st.SafetensorsError as e:
            S.check(f"safetensors: rejects {what}", "bad.safetensors" in str(e), str(e))

    # ---- YaRN θ' and s_eff against the spec's tables (§4.5, §4.6: D = 64, factor 40, L0 = 4096) ----
    full = dict(TINY_V3, qk_rope_head_dim=64, qk_nope_head_dim=128, rope_theta=10000.0,
                rope_scaling={"type": "yarn", "factor": 40.0, "original_max_position_embeddings": 4096,
                              "beta_fast": 32, "beta_slow": 1, "mscale": 1.0, "mscale_all_dim": 1.0})
    c = ds.Config(full)
    S.check("yarn: low = 10, high = 23 for V3's rope_scaling", (c.yarn_low, c.yarn_high) == (10, 23))
    table = {0: 1.0, 10: 5.623413252e-02, 11: 3.900692657e-02, 12: 2.687936011e-02, 16: 5.500000000e-03,
             22: 1.778279410e-04, 23: 3.333803580e-05, 31: 3.333803580e-06}
    # the spec prints 10 significant digits, hence 1e-9
    S.close("yarn: θ'_i equals the spec's table", [c.theta_prime[i] for i in table], list(table.values()), 1e-9)
    S.close("softmax scale: V3 s_eff = 0.13523378", c.s_eff, 0.13523378, 5e-8)
    c2 = ds.Config(dict(full, rope_scaling=dict(full["rope_scaling"], mscale=0.707, mscale_all_dim=0.707)))
    S.close("softmax scale: V2 s_eff = 0.11472139", c2.s_eff, 0.11472139, 5e-8)
    S.check("yarn: cos/sin factor is exactly 1 when mscale = mscale_all_dim", c.rope_amp == 1.0 and c2.rope_amp == 1.0)

    # ---- RoPE properties: norm preserved; q·k depends on m − n only (§4.6) ----
    x = rng.standard_normal((1, 64))
    y = rng.standard_normal((1, 64))
    r = lambda v, pos: ds.rope_interleaved(v, [pos], c.theta_prime)
    S.close("rope: rotation preserves the norm at position 5000",
            np.linalg.norm(r(x, 5000)), np.linalg.norm(x), 1e-13)
    d1 = float(r(x, 7000) @ r(y, 6990).T)
    d2 = float(r(x, 10) @ r(y, 0).T)
    S.close("rope: q(7000)·k(6990) equals q(10)·k(0)", d1, d2, 1e-10)
    # pair layout: rotating pair 0 by angle pos·θ'_0 = pos (θ_0 = 1) moves x[0], x[1] only
    e0 = np.zeros((1, 64))
    e0[0, 0] = 1.0
    S.close("rope: channel 0 rotates into channel 1 (adjacent pairs, P1)", r(e0, 1)[0, :2], [math.cos(1), math.sin(1)], 1e-15)

    # ---- routing hand cases (§7) ----
    def cfg_router(**kw):
        base = dict(TINY_V3, n_routed_experts=4, num_experts_per_tok=2, n_group=2, topk_group=1)
        base.update(kw)
        return ds.Config(base)

    logit = lambda p: math.log(p / (1 - p))         # sigmoid^-1, so scores are chosen directly
    # V3: group 0 = experts 0,1 (scores .9, .1 -> top-2 sum 1.0, max .9); group 1 = 2,3 (.6, .55 ->
    # sum 1.15, max .6). Top-2 sum keeps group 1 (P5); the max would keep group 0.
    cv3 = cfg_router()
    ell = np.array([logit(0.9), logit(0.1), logit(0.6), logit(0.55)])
    e, g, info = ds.route(ell, cv3, np.zeros(4))
    S.check("route V3: group score is the top-2 sum (P5)", e.tolist() == [2, 3], f"experts {e.tolist()}")
    S.close("route V3: weights are renormalised, then x2.5", g, [2.5 * 0.6 / 1.15, 2.5 * 0.55 / 1.15], 1e-15)
    # Bias chooses the group and the experts, but the weights use the unbiased scores.
    cv3b = cfg_router(num_experts_per_tok=2, n_routed_experts=6, n_group=3, topk_group=1)
    ell = np.array([logit(0.5), logit(0.5), logit(0.30), logit(0.25), logit(0.9), logit(0.9)])
    bias = np.array([0.3, 0.1, -0.5, -0.5, -2.0, -2.0])
    # biased: g0 = .8, .6 (1.4); g1 = -.2, -.25 (-.45); g2 = -1.1, -1.1 (-2.2): keeps g0 -> {0, 1}.
    # Weights from the unbiased .5, .5: 2.5 * .5 / 1.0 = 1.25 each (biased would give 1.43, 1.07).
    e, g, info = ds.route(ell, cv3b, bias)
    S.check("route V3: bias picks the group, weights ignore the bias (P4)",
            e.tolist() == [0, 1] and np.allclose(g, [1.25, 1.25], rtol=1e-15, atol=0), f"{e.tolist()} {g.tolist()}")
    cv3c = cfg_router(num_experts_per_tok=2, n_routed_experts=6, n_group=3, topk_group=2)
    ell = np.array([logit(0.9), logit(0.1), logit(0.30), logit(0.25), logit(0.5), logit(0.5)])
    bias = np.array([-1.0, -1.0, -0.5, -0.5, -2.0, -2.0])
    # biased: g0 = -.1, -.9 (-1.0); g1 = -.2, -.25 (-.45); g2 = -1.5, -1.5 (-3.0).
    # kept groups g1, g0; all their biased scores are negative: top-2 = expert 0 (-.1), 2 (-.2).
    # Masking dropped g2 with 0 instead of −inf would choose 4 and 5 (0 > -.1).
    e, g, info = ds.route(ell, cv3c, bias)
    S.check("route V3: negative biased scores still beat dropped groups (−inf mask, P6)",
            e.tolist() == [0, 2], f"experts {e.tolist()}")
    # Ties: equal scores -> lower index first.
    cvt = cfg_router(n_group=1, topk_group=1, num_experts_per_tok=2)
    e, g, info = ds.route(np.array([0.3, 0.7, 0.7, 0.7]), cvt, np.zeros(4))
    S.check("route: exact ties go to the lower index", e.tolist() == [1, 2], f"experts {e.tolist()}")
    # V2 group_limited_greedy: group score is the max; weights unnormalised x16.
    cv2 = ds.Config(dict(TINY_V2, n_routed_experts=4, num_experts_per_tok=2, n_group=2, topk_group=1))
    ell = np.log(np.array([0.45, 0.05, 0.26, 0.24]))     # softmax gives these probabilities back
    e, g, info = ds.route(ell, cv2)
    S.check("route V2: group score is the max, keeps group 0", e.tolist() == [0, 1], f"experts {e.tolist()}")
    S.close("route V2: weights = softmax x16, no renormalisation", g, [16 * 0.45, 16 * 0.05], 1e-14)
    cvl = ds.Config(dict(TINY_V2_LITE, n_routed_experts=4, num_experts_per_tok=2))
    e, g, info = ds.route(ell, cvl)
    S.close("route V2-Lite greedy: top-2 of softmax, x1", g, [0.45, 0.26], 1e-14)
    S.check("route V2-Lite greedy: experts 0, 2", e.tolist() == [0, 2])

    # ---- whole models on checkpoints written here ----
    # 20 tokens: positions 16..19 are past original_max_position_embeddings = 16
    tokens = [3, 17, 5, 49, 42, 7, 0, 23, 11, 30, 2, 1, 44, 8, 9, 10, 20, 31, 12, 6]
    c = ds.Config(TINY_V3)
    S.check("tiny configs: the YaRN blend is not degenerate (low 0, high 2)", (c.yarn_low, c.yarn_high) == (0, 2))
    S.close("tiny configs: θ' = θ, a half blend, θ/8, θ/8",
            c.theta_prime, c.theta * np.array([1.0, 0.5 + 0.5 / 8, 1 / 8, 1 / 8]), 1e-15)
    for label, cfg in (("tiny-v3", TINY_V3), ("tiny-v2-lite", TINY_V2_LITE), ("tiny-v2", TINY_V2)):
        weights = RandomWeights(cfg, 7)
        ref_dir = os.path.join(tmp, label + "-f64")
        write_checkpoint(ref_dir, cfg, weights, "F64")
        m = ds.Model(ref_dir)
        logits, h_final = m.forward(tokens, return_hidden=True)
        S.check(f"{label}: logits are [T, V] and finite", logits.shape == (len(tokens), cfg["vocab_size"])
                and np.all(np.isfinite(logits)))
        # causality: a prefix gives the same logits as the full sequence's first rows
        prefix = ds.Model(ref_dir).forward(tokens[:4])
        S.close(f"{label}: causal: logits of a 4-token prefix are unchanged by later tokens",
                prefix, logits[:4], 1e-12, 1e-12 * np.max(np.abs(logits)))
        # a second attention route: absorbed form (§4.3) gives the same logits
        absorbed = AbsorbedModel(ref_dir).forward(tokens)
        err = np.max(row_errors(absorbed, logits))
        S.check(f"{label}: absorbed MLA gives the naive form's logits", err <= 1e-12, f"row-relative {err:.1e}")
        # the same weights stored as F32, BF16, FP8 blocks and in shards load to the same logits
        for dt, shards in (("F32", 1), ("BF16", 3), ("FP8", 1), ("FP8", 4)):
            d2 = os.path.join(tmp, f"{label}-{dt}-{shards}")
            write_checkpoint(d2, cfg, weights, dt, shards)
            other = ds.Model(d2).forward(tokens)
            S.check(f"{label}: {dt} checkpoint in {shards} file(s) gives identical logits",
                    np.array_equal(other, logits))
        # Streaming: weights read one row at a time (every FP8 block split) give the same logits.
        # Each output element is the same dot product either way; only BLAS's blocking of it may
        # differ, so the bound is a few float64 roundings, not 1e-12.
        default_block, ds.BLOCK_VALUES = ds.BLOCK_VALUES, 1
        try:
            streamed = ds.Model(os.path.join(tmp, f"{label}-FP8-4")).forward(tokens)
        finally:
            ds.BLOCK_VALUES = default_block
        err = np.max(row_errors(streamed, logits))
        S.check(f"{label}: weights read one row at a time give the same logits", err <= 1e-14,
                f"row-relative {err:.1e}, bound 1e-14")
        if m.has_mtp():
            mtp = m.mtp_forward(tokens, h_final)
            S.check(f"{label}: MTP logits are [T-1, V] and finite", mtp.shape == (len(tokens) - 1, cfg["vocab_size"])
                    and np.all(np.isfinite(mtp)))
            p_log, p_h = ds.Model(ref_dir).forward(tokens[:5], return_hidden=True)
            mtp_prefix = ds.Model(ref_dir).mtp_forward(tokens[:5], p_h)
            S.close(f"{label}: MTP is causal too", mtp_prefix, mtp[:4], 1e-12, 1e-12 * np.max(np.abs(mtp)))

    # ---- streaming reads: rows and token rows equal the whole tensor's; the written layout is
    # one another writer might produce (a scale before its weight, a scale in another shard) ----
    ck = st.Checkpoint(os.path.join(tmp, "tiny-v3-FP8-4"))
    name = "model.layers.0.mlp.up_proj.weight"                   # FP8 [48, 32]: one partial block
    whole = ck.get(name)
    S.check("streaming: rows 5..39 of an FP8 weight equal those of the whole weight",
            np.array_equal(ck.rows(name, 5, 40), whole[5:40]))
    S.check("streaming: embedding rows by token id (repeats, any order) equal the whole matrix's",
            np.array_equal(ck.take("model.embed_tokens.weight", [7, 0, 7, 49]), ck.get("model.embed_tokens.weight")[[7, 0, 7, 49]]))
    scales = [n for n in ck.names() if n.endswith("_scale_inv")]
    before = [n for n in scales if ck.where[n] is ck.where[n[:-len("_scale_inv")]]
              and ck.where[n].entries[n][2] < ck.where[n].entries[n[:-len("_scale_inv")]][2]]
    apart = [n for n in scales if ck.where[n] is not ck.where[n[:-len("_scale_inv")]]]
    S.check("layout: some scales lie before their weight, some in another shard", before and apart,
            f"{len(before)} before, {len(apart)} in another shard, of {len(scales)}")

    # ---- an FP8 block size other than 128x128 is an error naming the field ----
    try:
        ds.Config(dict(TINY_V3, quantization_config={"quant_method": "fp8", "weight_block_size": [64, 64]}))
        S.check("fp8: quantization_config.weight_block_size [64, 64] is rejected", False)
    except ds.ConfigError as e:
        S.check("fp8: quantization_config.weight_block_size [64, 64] is rejected", "weight_block_size" in str(e), str(e))

    # ---- a missing FP8 scale is an error naming the tensor ----
    d3 = os.path.join(tmp, "tiny-v3-FP8-1")
    name = "model.layers.0.self_attn.o_proj.weight"
    shard = st.SafetensorsFile(os.path.join(d3, "model.safetensors"))
    kept = {n: (shard.dtype(n), shard.shape(n), open(shard.path, "rb").read()[shard.data_start + shard.entries[n][2]:
                                                                             shard.data_start + shard.entries[n][3]])
            for n in shard.names() if n != name + "_scale_inv"}
    d4 = os.path.join(tmp, "tiny-v3-noscale")
    os.makedirs(d4, exist_ok=True)
    shutil.copy(os.path.join(d3, "config.json"), d4)
    st.write(os.path.join(d4, "model.safetensors"), kept)
    try:
        ds.Model(d4).forward(tokens)
        S.check("fp8: a weight without its scale is rejected", False)
    except st.SafetensorsError as e:
        S.check("fp8: a weight without its scale is rejected", name in str(e), str(e))

    print(f"self-test: {S.count - S.failures}/{S.count} checks passed")
    if not workdir:
        shutil.rmtree(tmp)
    return 0 if S.failures == 0 else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--self-test", action="store_true", help="check the numpy implementation without dsr1")
    ap.add_argument("--dsr1", help="path to the dsr1 program")
    ap.add_argument("--preset", help="dsr1 init-model preset, e.g. tiny-v3")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--tokens", help="comma-separated token ids")
    ap.add_argument("--workdir", help="directory for the checkpoint and the dump")
    ap.add_argument("--dtype", choices=["f64", "f32", "bf16", "f16", "fp8"])
    ap.add_argument("--shards", type=int)
    ap.add_argument("--attn", choices=["naive", "absorbed"])
    ap.add_argument("--decode-from", type=int)
    ap.add_argument("--rtol", type=float, default=DEFAULT_RTOL)
    ap.add_argument("--mtp", action="store_true",
                    help="pass --mtp to dsr1 run and fail unless mtp.logits is compared")
    ap.add_argument("--dsr1-arg", action="append", default=[],
                    help="extra argument for dsr1 run (repeatable; write --dsr1-arg=--opt=value)")
    ap.add_argument("--expect-mismatch", action="store_true",
                    help="succeed only if the logits disagree (checks that the comparison can fail)")
    ap.add_argument("--own-checkpoint", choices=sorted(OWN_CONFIGS),
                    help="write the checkpoint with this directory's numpy writer instead of dsr1 init-model")
    ap.add_argument("--numpy-only", action="store_true",
                    help="with --own-checkpoint: write the checkpoint and run the numpy side alone, naive "
                         "against absorbed attention (time, memory); no dsr1")
    ap.add_argument("--max-rss-gb", type=float,
                    help="fail if the peak resident memory of this process exceeds this many GB")
    ap.add_argument("--remove-checkpoint", action="store_true",
                    help="delete the checkpoint and the dump when done, pass or fail")
    ap.add_argument("--require-past-original", action="store_true",
                    help="fail unless the config uses yarn and the last position is >= original_max_position_embeddings")
    a = ap.parse_args()
    if a.self_test:
        return self_test(a.workdir)
    if a.numpy_only and not a.own_checkpoint:
        ap.error("--numpy-only needs --own-checkpoint")
    missing = [k for k in (("tokens", "workdir") if a.numpy_only else ("dsr1", "tokens", "workdir"))
               if getattr(a, k) is None]
    if a.preset is None and a.own_checkpoint is None:
        missing.append("preset (or --own-checkpoint)")
    if missing:
        ap.error("missing " + ", ".join("--" + k for k in missing))
    return check_against_dsr1(a)


if __name__ == "__main__":
    sys.exit(main())

"""An independent float64 implementation of the DeepSeek-V2 / V2-Lite / V3 / R1 forward pass.

Computes logits at every position for a token list from an HF-layout checkpoint (config.json +
safetensors), written from the architecture spec alone, the straightforward HuggingFace way:
per-head keys and values materialised, a full causal mask, one pass over the whole sequence.
Leaves out: KV caching, the absorbed attention form, batching, sampling, training losses.

Weights are streamed from the checkpoint (safetensors_np), so a true-width V3 checkpoint fits in
a few GB: every linear map `x @ W.T` reads and dequantises W a block of rows at a time
(Model.linear), the embedding reads only the rows of the given tokens, the forward pass runs
layer by layer, and a routed expert is read only when some token chose it. Nothing is cached:
a weight is read again each time it is used.

Row convention: activations are [T, width] with one token per ROW (HF style), weights are the
checkpoint's [out, in], so a linear layer is `x @ W.T`.
Spec sections are cited as "§n"; pitfalls as "Pn".
"""

import json
import math
import os

import numpy as np

from safetensors_np import FP8_BLOCK, Checkpoint


class ConfigError(Exception):
    """A config.json field is missing or inconsistent; the message names the field."""


# ---- configuration (§1.2 names) ----------------------------------------------------------

class Config:
    def __init__(self, raw, source="config.json"):
        self.raw = raw
        self.source = source

        def need(key):
            if raw.get(key) is None:
                raise ConfigError(f"{source}: field {key} is missing")
            return raw[key]

        self.model_type = raw.get("model_type", "deepseek_v3")
        v3 = self.model_type == "deepseek_v3"
        self.V = int(need("vocab_size"))
        self.d = int(need("hidden_size"))
        self.I = int(need("intermediate_size"))
        self.L = int(need("num_hidden_layers"))
        self.n_h = int(need("num_attention_heads"))
        self.r_q = raw.get("q_lora_rank") or None        # null or 0 -> q_proj (P9)
        self.r_kv = int(need("kv_lora_rank"))
        self.d_nope = int(need("qk_nope_head_dim"))
        self.d_rope = int(need("qk_rope_head_dim"))
        self.d_v = int(need("v_head_dim"))
        self.eps = float(raw.get("rms_norm_eps", 1e-6))
        self.rope_theta = float(raw.get("rope_theta", 10000.0))
        self.rope_scaling = raw.get("rope_scaling")
        self.N_r = raw.get("n_routed_experts")
        self.N_s = int(raw.get("n_shared_experts") or 0)
        self.K = raw.get("num_experts_per_tok")
        self.I_e = raw.get("moe_intermediate_size")
        self.n_group = int(raw.get("n_group") or 1)
        self.topk_group = int(raw.get("topk_group") or 1)
        self.routed_scaling_factor = float(raw.get("routed_scaling_factor", 1.0))
        self.first_k_dense_replace = int(raw.get("first_k_dense_replace", 0))
        self.moe_layer_freq = int(raw.get("moe_layer_freq", 1))
        self.scoring_func = raw.get("scoring_func", "sigmoid" if v3 else "softmax")
        self.topk_method = raw.get("topk_method", "noaux_tc" if v3 else "greedy")
        self.norm_topk_prob = bool(raw.get("norm_topk_prob", v3))
        self.n_mtp = int(raw.get("num_nextn_predict_layers") or 0)
        self.tie_word_embeddings = bool(raw.get("tie_word_embeddings", False))
        act = raw.get("hidden_act", "silu")
        if act != "silu":
            raise ConfigError(f"{source}: hidden_act is {act}, expected silu (§6)")
        if self.d_rope % 2:
            raise ConfigError(f"{source}: qk_rope_head_dim {self.d_rope} must be even (RoPE pairs, §4.6)")
        if self.N_r is not None:
            self.N_r, self.K, self.I_e = int(self.N_r), int(need("num_experts_per_tok")), int(need("moe_intermediate_size"))
            if self.N_r % self.n_group:
                raise ConfigError(f"{source}: n_routed_experts {self.N_r} is not divisible by n_group {self.n_group}")
            if not 1 <= self.topk_group <= self.n_group:
                raise ConfigError(f"{source}: topk_group {self.topk_group} must be in 1..n_group={self.n_group}")
            if not 1 <= self.K <= self.N_r:
                raise ConfigError(f"{source}: num_experts_per_tok {self.K} must be in 1..n_routed_experts={self.N_r}")
            if self.scoring_func not in ("softmax", "sigmoid"):
                raise ConfigError(f"{source}: scoring_func {self.scoring_func} is not softmax or sigmoid (§7)")
            if self.topk_method not in ("greedy", "group_limited_greedy", "noaux_tc"):
                raise ConfigError(f"{source}: topk_method {self.topk_method} is not greedy, "
                                  "group_limited_greedy or noaux_tc (§7)")
        self._check_quantization()
        self._init_rope()

    def _check_quantization(self):
        """§1.2, §10: an FP8 checkpoint's quantization_config must describe what safetensors_np
        decodes: e4m3 weights with one scale per 128x128 block."""
        q = self.raw.get("quantization_config")
        if q is None:
            return
        want = {"quant_method": "fp8", "fmt": "e4m3", "weight_block_size": [FP8_BLOCK, FP8_BLOCK]}
        for key, value in want.items():
            if key in q and q[key] != value:
                raise ConfigError(f"{self.source}: quantization_config.{key} is {q[key]}, expected {value} (§10)")

    @staticmethod
    def load(directory):
        path = os.path.join(directory, "config.json")
        with open(path) as f:
            return Config(json.load(f), path)

    def is_moe_layer(self, l):
        """§2: dense SwiGLU for l < first_k_dense_replace, MoE otherwise (when l % moe_layer_freq == 0)."""
        return (self.N_r is not None and l >= self.first_k_dense_replace
                and l % self.moe_layer_freq == 0)

    # ---- RoPE frequencies and the softmax scale (§4.5, §4.6) ----
    def _init_rope(self):
        D = self.d_rope
        i = np.arange(D // 2, dtype=np.float64)
        theta = self.rope_theta ** (-2.0 * i / D)           # θ_i = base^(−2i/D)
        self.theta = theta
        self.s_eff = (self.d_nope + self.d_rope) ** -0.5     # the papers' 1/sqrt(d_h + d_h^R)
        self.rope_amp = 1.0                                  # factor on cos/sin (HF attention_factor)
        self.yarn = False
        rs = self.rope_scaling
        if rs is None:
            self.theta_prime = theta
            return
        kind = rs.get("type", rs.get("rope_type"))
        if kind != "yarn":
            raise ConfigError(f"{self.source}: rope_scaling type {kind} is not yarn (§4.6)")
        self.yarn = True
        for key in ("factor", "original_max_position_embeddings"):
            if rs.get(key) is None:
                raise ConfigError(f"{self.source}: rope_scaling.{key} is missing")
        factor = float(rs["factor"])
        L0 = float(rs["original_max_position_embeddings"])
        beta_fast = float(rs.get("beta_fast", 32))
        beta_slow = float(rs.get("beta_slow", 1))
        base = self.rope_theta

        def corr_dim(r):
            return D * math.log(L0 / (2 * math.pi * r)) / (2 * math.log(base))

        low = max(math.floor(corr_dim(beta_fast)), 0)
        high = min(math.ceil(corr_dim(beta_slow)), D - 1)
        if low == high:
            high += 0.001
        ramp = np.clip((i - low) / (high - low), 0.0, 1.0)
        keep = 1.0 - ramp
        self.theta_prime = (theta / factor) * (1.0 - keep) + theta * keep
        self.yarn_low, self.yarn_high = low, high

        # Softmax scale: s_eff = (d_nope + d_rope)^(-1/2) · mscale(factor, mscale_all_dim)^2 (§4.5, P2).
        # cos/sin factor: mscale(factor, mscale) / mscale(factor, mscale_all_dim) (HF), 1 when equal.
        if rs.get("mscale") is None or rs.get("mscale_all_dim") is None:
            raise ConfigError(f"{self.source}: rope_scaling yarn needs mscale and mscale_all_dim; the "
                              "spec (§4.5) defines the scales only when both are given")
        m, m_all = float(rs["mscale"]), float(rs["mscale_all_dim"])
        if m_all:
            self.s_eff *= yarn_mscale(factor, m_all) ** 2
        self.rope_amp = yarn_mscale(factor, m) / yarn_mscale(factor, m_all)


def yarn_mscale(f, m):
    """§4.5: mscale(f, m) = 1 if f <= 1 else 0.1·m·ln(f) + 1."""
    return 1.0 if f <= 1 else 0.1 * m * math.log(f) + 1.0


# ---- formulas ------------------------------------------------------------------------------

def rmsnorm(x, w, eps):
    """§3: y = w * x / sqrt(mean(x^2) + eps), per row."""
    return w * (x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps))


def silu(z):
    return z / (1.0 + np.exp(-z))


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def softmax(z, axis=-1):
    m = np.max(z, axis=axis, keepdims=True)
    e = np.exp(z - m)
    return e / np.sum(e, axis=axis, keepdims=True)


def rope_interleaved(x, positions, theta_prime, amp=1.0):
    """§4.6, P1: rotate adjacent pairs (x[2i], x[2i+1]) by angle pos·θ'_i.

    x: [T, ..., d_rope] (any middle axes, e.g. heads); positions: [T].
    """
    ang = np.asarray(positions, dtype=np.float64)[:, None] * theta_prime[None, :]   # [T, d_rope/2]
    shape = (x.shape[0],) + (1,) * (x.ndim - 2) + (theta_prime.shape[0],)
    cos = (amp * np.cos(ang)).reshape(shape)
    sin = (amp * np.sin(ang)).reshape(shape)
    x0, x1 = x[..., 0::2], x[..., 1::2]
    y = np.empty_like(x)
    y[..., 0::2] = x0 * cos - x1 * sin
    y[..., 1::2] = x0 * sin + x1 * cos
    return y


def _topk_indices(score_row, k):
    """Indices of the k largest entries, descending; ties -> lower index (stable sort on (-score, index))."""
    order = sorted(range(len(score_row)), key=lambda j: (-score_row[j], j))
    return order[:k]


def route(ell, cfg, bias=None):
    """§7: router for one token. ell: [N_r] logits. Returns (experts [K], weights g [K], details)."""
    N_r, K, n_group, topk_group = cfg.N_r, cfg.K, cfg.n_group, cfg.topk_group
    if cfg.scoring_func == "softmax":
        s = softmax(ell)
    else:
        s = sigmoid(ell)
    # Selection score: biased for V3 (the bias chooses only, P4), the plain score otherwise.
    if cfg.topk_method == "noaux_tc":
        if bias is None:
            raise ConfigError("topk_method noaux_tc needs mlp.gate.e_score_correction_bias")
        sel = s + bias
    else:
        sel = s.copy()
    group_scores = None
    if cfg.topk_method in ("group_limited_greedy", "noaux_tc") and n_group > 1:
        per = N_r // n_group
        groups = sel.reshape(n_group, per)
        if cfg.topk_method == "noaux_tc":
            # V3: a group's score is the sum of its 2 largest biased scores (P5).
            group_scores = np.array([sum(sorted(g, reverse=True)[:2]) for g in groups])
        else:
            # V2: the max score in the group.
            group_scores = groups.max(axis=1)
        kept = _topk_indices(group_scores, topk_group)
        mask = np.full(N_r, -np.inf)                      # −inf, not 0: biased scores may be negative (P6)
        for g in kept:
            mask[g * per:(g + 1) * per] = 0.0
        sel = sel + mask
    experts = _topk_indices(sel, K)
    w = s[experts]                                        # weights from the unbiased score (P4)
    if cfg.norm_topk_prob:
        w = w / np.sum(w)
    g = w * cfg.routed_scaling_factor                      # applied once, after any renormalisation (P8)
    return np.array(experts), g, {"s": s, "sel": sel, "group_scores": group_scores}


# ---- the model -----------------------------------------------------------------------------

# Model.linear reads a weight in blocks of about this many float64 values (64 MB).
BLOCK_VALUES = 8 * 1024 * 1024


class Model:
    """Weights by HF name (§11), read from the checkpoint when a formula needs them."""

    def __init__(self, directory):
        self.cfg = Config.load(directory)
        self.ckpt = Checkpoint(directory)

    def w(self, name):
        """A whole tensor as float64: the norm weights, the router, the bias (small ones)."""
        return self.ckpt.get(name)

    def has(self, name):
        return name in self.ckpt

    def linear(self, x, name):
        """y = x @ W.T for the checkpoint's W [out, in]; x: [T, in] -> y: [T, out].

        Output column o needs only row o of W, so W is read, dequantised and multiplied one
        block of rows at a time and each block is dropped before the next is read.
        """
        n_out, n_in = self.ckpt.shape(name)
        if x.shape[-1] != n_in:
            raise ValueError(f"{name} is [{n_out}, {n_in}], applied to input of width {x.shape[-1]}")
        step = max(1, BLOCK_VALUES // max(n_in, 1))                        # rows per block
        if step >= FP8_BLOCK:
            step -= step % FP8_BLOCK              # whole FP8 block rows: each block meets its scales once
        y = np.empty(x.shape[:-1] + (n_out,))
        for r0 in range(0, n_out, step):
            r1 = min(r0 + step, n_out)
            y[..., r0:r1] = x @ self.ckpt.rows(name, r0, r1).T
        return y

    # §4.1, §4.2: MLA in the naive form: per-head K and V materialised.
    def attention(self, x, prefix, positions):
        c = self.cfg
        T = x.shape[0]
        n_h, dn, dr, dv, r_kv = c.n_h, c.d_nope, c.d_rope, c.d_v, c.r_kv
        p = prefix + "self_attn."
        if c.r_q:
            c_q = self.linear(x, p + "q_a_proj.weight")                         # [T, r_q]
            c_q_hat = rmsnorm(c_q, self.w(p + "q_a_layernorm.weight"), c.eps)
            q = self.linear(c_q_hat, p + "q_b_proj.weight")                     # [T, n_h*(dn+dr)]
        else:
            q = self.linear(x, p + "q_proj.weight")
        q = q.reshape(T, n_h, dn + dr)                    # head-major, [nope ; rope] per head
        q_nope, q_rope = q[:, :, :dn], q[:, :, dn:]
        kv_a = self.linear(x, p + "kv_a_proj_with_mqa.weight")                  # [T, r_kv + dr]
        c_kv, k_rope = kv_a[:, :r_kv], kv_a[:, r_kv:]
        c_kv_hat = rmsnorm(c_kv, self.w(p + "kv_a_layernorm.weight"), c.eps)  # not on k_rope (P16)
        kv = self.linear(c_kv_hat, p + "kv_b_proj.weight").reshape(T, n_h, dn + dv)
        k_nope, v = kv[:, :, :dn], kv[:, :, dn:]
        q_rope = rope_interleaved(q_rope, positions, c.theta_prime, c.rope_amp)
        k_rope = rope_interleaved(k_rope, positions, c.theta_prime, c.rope_amp)    # [T, dr], shared
        # Full per-head query and key: [nope ; rope], the rope key repeated for every head.
        q_full = np.concatenate([q_nope, q_rope], axis=2)                           # [T, n_h, dn+dr]
        k_full = np.concatenate([k_nope, np.broadcast_to(k_rope[:, None, :], (T, n_h, dr))], axis=2)
        o = np.empty((T, n_h, dv))
        causal = np.triu(np.ones((T, T), dtype=bool), k=1)          # key j > query t is hidden
        for h in range(n_h):
            scores = c.s_eff * (q_full[:, h, :] @ k_full[:, h, :].T)                # [T, T]
            scores[causal] = -np.inf
            probs = softmax(scores, axis=1)
            o[:, h, :] = probs @ v[:, h, :]
        return self.linear(o.reshape(T, n_h * dv), p + "o_proj.weight")              # u: [T, d]

    def swiglu(self, x, p):
        """§6: W_down · (silu(W_gate x) ⊙ W_up x) with the weights p + gate_proj, up_proj, down_proj."""
        return self.linear(silu(self.linear(x, p + "gate_proj.weight")) * self.linear(x, p + "up_proj.weight"),
                           p + "down_proj.weight")

    # §6, §7: dense SwiGLU or routed experts + shared experts.
    def ffn(self, x, prefix, l):
        c = self.cfg
        p = prefix + "mlp."
        if not c.is_moe_layer(l):
            return self.swiglu(x, p)
        ell = self.linear(x, p + "gate.weight")                                     # [T, N_r]
        bias = self.w(p + "gate.e_score_correction_bias") if self.has(p + "gate.e_score_correction_bias") else None
        # chosen[t] = {expert j: g_j} for the K experts token t chose.
        chosen = [dict(zip(experts.tolist(), g)) for experts, g, _ in (route(ell[t], c, bias) for t in range(len(x)))]
        out = np.zeros_like(x)
        # Expert by expert, in ascending order, so each chosen expert is read once and an
        # unchosen one never: rows = the tokens that chose expert j, g_j their weights for it.
        for j in sorted(set().union(*chosen)):
            rows = [t for t in range(len(x)) if j in chosen[t]]
            g_j = np.array([chosen[t][j] for t in rows])                            # [len(rows)]
            out[rows] += g_j[:, None] * self.swiglu(x[rows], f"{p}experts.{j}.")
        if c.N_s > 0:   # one shared MLP of width N_s·I_e (§6)
            out += self.swiglu(x, p + "shared_experts.")
        return out

    def block(self, h, l, positions):
        prefix = f"model.layers.{l}."
        c = self.cfg
        h = h + self.attention(rmsnorm(h, self.w(prefix + "input_layernorm.weight"), c.eps), prefix, positions)
        h = h + self.ffn(rmsnorm(h, self.w(prefix + "post_attention_layernorm.weight"), c.eps), prefix, l)
        return h

    def head_name(self):
        return "model.embed_tokens.weight" if self.cfg.tie_word_embeddings else "lm_head.weight"

    def forward(self, tokens, return_hidden=False):
        """§2: logits [T, V] at every position; with return_hidden also h after model.norm [T, d]."""
        c = self.cfg
        tokens = np.asarray(tokens, dtype=np.int64)
        if tokens.size == 0 or tokens.min() < 0 or tokens.max() >= c.V:
            raise ValueError(f"tokens must be in 0..{c.V - 1}, got {tokens.tolist()}")
        positions = np.arange(len(tokens))
        h = self.ckpt.take("model.embed_tokens.weight", tokens)                      # [T, d]: T rows read
        for l in range(c.L):                                   # layer l's weights are read inside block()
            h = self.block(h, l, positions)
        h_final = rmsnorm(h, self.w("model.norm.weight"), c.eps)
        logits = self.linear(h_final, self.head_name())                              # [T, V], head in row blocks
        return (logits, h_final) if return_hidden else logits

    def has_mtp(self):
        return self.cfg.n_mtp >= 1 and self.has(f"model.layers.{self.cfg.L}.eh_proj.weight")

    def mtp_forward(self, tokens, h_final):
        """§9 (P10, P11): for i = 0..T-2 predict token i+2 from h_final[i] and token i+1.

        h' = eh_proj · [enorm(Emb(t_{i+1})) ; hnorm(h_i)], one decoder block (layer index L) at
        RoPE positions 0..T-2, then shared_head.norm and the head. Returns [T-1, V].
        The RoPE positions of the MTP block are UNCERTAIN in the spec (§9, §16).
        """
        c = self.cfg
        L = c.L
        p = f"model.layers.{L}."
        tokens = np.asarray(tokens, dtype=np.int64)
        emb_name = p + "embed_tokens.weight" if self.has(p + "embed_tokens.weight") else "model.embed_tokens.weight"
        head_name = p + "shared_head.head.weight" if self.has(p + "shared_head.head.weight") else None
        e = rmsnorm(self.ckpt.take(emb_name, tokens[1:]), self.w(p + "enorm.weight"), c.eps)   # [T-1, d]
        hh = rmsnorm(h_final[:-1], self.w(p + "hnorm.weight"), c.eps)                   # [T-1, d]
        h = self.linear(np.concatenate([e, hh], axis=1), p + "eh_proj.weight")          # [T-1, d]
        h = self.block(h, L, np.arange(len(tokens) - 1))
        h = rmsnorm(h, self.w(p + "shared_head.norm.weight"), c.eps)
        return self.linear(h, head_name or self.head_name())

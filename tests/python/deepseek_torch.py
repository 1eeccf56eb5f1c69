"""A PyTorch implementation of the DeepSeek-V3 forward pass, written from the architecture spec
(/work/shared/spec is summarised in docs/; sections cited as "§n"), with the module tree of
DeepSeek's inference/model.py so that dsr1.torch.capture's "deepseek" name map applies:

    embed, layers.N.attn_norm, layers.N.attn (wq_a, q_norm, wq_b, wkv_a, kv_norm, wkv_b, wo),
    layers.N.ffn_norm, layers.N.ffn (MLP w1/w2/w3, or MoE gate/experts/shared_experts), norm, head

It is the candidate the Python tests capture and compare with a golden set: one pass over the
whole sequence, naive attention (per-head keys and values), batch-first [B, T, d] activations,
float32 by default. Unlike model.py, the head runs on every position (logits [B, T, V]) so the
whole golden set can be compared. It shares no code with dsr1: weights are read from the
checkpoint's safetensors with tests/independent/safetensors_np.py.
Leaves out: KV caching, MTP, FP8 dequantisation, parallelism.
"""

import json
import math
import os
import sys

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "independent"))
from safetensors_np import Checkpoint  # noqa: E402


class Args:
    """The config.json fields the model needs (§1.2)."""

    def __init__(self, cfg):
        self.vocab_size = cfg["vocab_size"]
        self.dim = cfg["hidden_size"]
        self.inter_dim = cfg["intermediate_size"]
        self.moe_inter_dim = cfg["moe_intermediate_size"]
        self.n_layers = cfg["num_hidden_layers"]
        self.n_dense_layers = cfg["first_k_dense_replace"]
        self.n_heads = cfg["num_attention_heads"]
        self.n_routed_experts = cfg["n_routed_experts"]
        self.n_shared_experts = cfg["n_shared_experts"]
        self.n_activated_experts = cfg["num_experts_per_tok"]
        self.n_expert_groups = cfg["n_group"]
        self.n_limited_groups = cfg["topk_group"]
        self.score_func = cfg["scoring_func"]
        self.route_scale = cfg["routed_scaling_factor"]
        self.norm_topk_prob = cfg["norm_topk_prob"]
        self.q_lora_rank = cfg.get("q_lora_rank") or 0
        self.kv_lora_rank = cfg["kv_lora_rank"]
        self.qk_nope_head_dim = cfg["qk_nope_head_dim"]
        self.qk_rope_head_dim = cfg["qk_rope_head_dim"]
        self.v_head_dim = cfg["v_head_dim"]
        self.eps = cfg["rms_norm_eps"]
        self.rope_theta = cfg["rope_theta"]
        rs = cfg.get("rope_scaling") or {}
        self.rope_factor = rs.get("factor", 1.0)
        self.original_seq_len = rs.get("original_max_position_embeddings", cfg["max_position_embeddings"])
        self.beta_fast = rs.get("beta_fast", 32)
        self.beta_slow = rs.get("beta_slow", 1)
        self.mscale = rs.get("mscale", 1.0)
        self.mscale_all_dim = rs.get("mscale_all_dim", 0.0)
        self.yarn = bool(rs)


def yarn_mscale(factor, m):
    """§4.5: 0.1 m ln(factor) + 1 for factor > 1, else 1."""
    return 1.0 if factor <= 1 else 0.1 * m * math.log(factor) + 1.0


def rope_frequencies(a):
    """§4.6: theta_i = base^(-2i/D), blended by YaRN between theta_i / factor (slow pairs) and
    theta_i (fast pairs) with a linear ramp over the correction range. float64."""
    D = a.qk_rope_head_dim
    i = torch.arange(D // 2, dtype=torch.float64)
    theta = a.rope_theta ** (-2.0 * i / D)
    if not a.yarn:
        return theta

    def corr_dim(r):
        return D * math.log(a.original_seq_len / (2 * math.pi * r)) / (2 * math.log(a.rope_theta))

    low = max(math.floor(corr_dim(a.beta_fast)), 0)
    high = min(math.ceil(corr_dim(a.beta_slow)), D - 1)
    if low == high:
        high += 0.001
    ramp = ((i - low) / (high - low)).clamp(0.0, 1.0)
    return theta / a.rope_factor * ramp + theta * (1.0 - ramp)


def apply_rope(x, positions, theta, amp):
    """§4.6: rotate adjacent pairs (x_2i, x_2i+1) by position * theta_i. x: [B, T, H, D]."""
    ang = positions.to(torch.float64)[:, None] * theta[None, :]              # [T, D/2]
    cos = (amp * torch.cos(ang)).to(x.dtype)[None, :, None, :]
    sin = (amp * torch.sin(ang)).to(x.dtype)[None, :, None, :]
    x0, x1 = x[..., 0::2], x[..., 1::2]
    return torch.stack([x0 * cos - x1 * sin, x0 * sin + x1 * cos], dim=-1).flatten(-2)


class RMSNorm(nn.Module):
    """§3: w * x / sqrt(mean(x^2) + eps) over the last axis."""

    def __init__(self, dim, eps):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))


def linear(i, o):
    return nn.Linear(i, o, bias=False)


class MLA(nn.Module):
    """§4.1-4.2: multi-head latent attention, naive form (per-head keys and values rebuilt from
    the latent)."""

    def __init__(self, a):
        super().__init__()
        self.a = a
        H, dn, dr, dv = a.n_heads, a.qk_nope_head_dim, a.qk_rope_head_dim, a.v_head_dim
        if a.q_lora_rank:
            self.wq_a = linear(a.dim, a.q_lora_rank)
            self.q_norm = RMSNorm(a.q_lora_rank, a.eps)
            self.wq_b = linear(a.q_lora_rank, H * (dn + dr))
        else:
            self.wq = linear(a.dim, H * (dn + dr))
        self.wkv_a = linear(a.dim, a.kv_lora_rank + dr)
        self.kv_norm = RMSNorm(a.kv_lora_rank, a.eps)
        self.wkv_b = linear(a.kv_lora_rank, H * (dn + dv))
        self.wo = linear(H * dv, a.dim)
        # §4.5: the softmax scale 1/sqrt(dn + dr), times mscale(factor, mscale_all_dim)^2 under YaRN;
        # cos/sin carry mscale(factor, mscale) / mscale(factor, mscale_all_dim).
        self.scale = (dn + dr) ** -0.5
        self.amp = 1.0
        if a.yarn and a.mscale_all_dim:
            self.scale *= yarn_mscale(a.rope_factor, a.mscale_all_dim) ** 2
        if a.yarn:
            self.amp = yarn_mscale(a.rope_factor, a.mscale) / yarn_mscale(a.rope_factor, a.mscale_all_dim)
        self.register_buffer("theta", rope_frequencies(a), persistent=False)

    def forward(self, x, positions):
        a = self.a
        B, T, _ = x.shape
        H, dn, dr, dv = a.n_heads, a.qk_nope_head_dim, a.qk_rope_head_dim, a.v_head_dim
        q = self.wq_b(self.q_norm(self.wq_a(x))) if a.q_lora_rank else self.wq(x)
        q = q.view(B, T, H, dn + dr)
        q_nope, q_pe = q.split([dn, dr], dim=-1)
        kv = self.wkv_a(x)
        c_kv, k_pe = kv.split([a.kv_lora_rank, dr], dim=-1)
        q_pe = apply_rope(q_pe, positions, self.theta, self.amp)
        k_pe = apply_rope(k_pe.unsqueeze(2), positions, self.theta, self.amp)        # [B, T, 1, dr]
        kv = self.wkv_b(self.kv_norm(c_kv)).view(B, T, H, dn + dv)                  # RMSNorm on c_kv only
        k_nope, v = kv.split([dn, dv], dim=-1)
        q = torch.cat([q_nope, q_pe], dim=-1)
        k = torch.cat([k_nope, k_pe.expand(-1, -1, H, -1)], dim=-1)
        scores = torch.einsum("bshd,bthd->bsht", q, k) * self.scale
        mask = torch.full((T, T), float("-inf"), dtype=x.dtype).triu(1)             # key t > query s hidden
        probs = (scores + mask[None, :, None, :]).softmax(dim=-1)
        o = torch.einsum("bsht,bthd->bshd", probs, v)
        return self.wo(o.flatten(2))


class MLP(nn.Module):
    """§6: SwiGLU, w2(silu(w1 x) * w3 x)."""

    def __init__(self, dim, inter):
        super().__init__()
        self.w1 = linear(dim, inter)
        self.w2 = linear(inter, dim)
        self.w3 = linear(dim, inter)

    def forward(self, x):
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class Gate(nn.Module):
    """§7: the router. Scores sigmoid (V3) or softmax; V3 selects with the bias-corrected score,
    keeps the topk_group groups with the largest top-2 sums, takes the top K experts there, and
    weights them with the uncorrected scores, renormalised, times route_scale."""

    def __init__(self, a):
        super().__init__()
        self.a = a
        self.weight = nn.Parameter(torch.empty(a.n_routed_experts, a.dim))
        self.bias = nn.Parameter(torch.zeros(a.n_routed_experts))

    def forward(self, x):                                        # x: [N, d] -> weights, indices [N, K]
        a = self.a
        scores = F.linear(x, self.weight)
        scores = scores.sigmoid() if a.score_func == "sigmoid" else scores.softmax(dim=-1)
        original = scores
        sel = scores + self.bias
        if a.n_expert_groups > 1:
            groups = sel.view(x.size(0), a.n_expert_groups, -1)
            group_scores = groups.topk(2, dim=-1)[0].sum(dim=-1)
            keep = group_scores.topk(a.n_limited_groups, dim=-1)[1]
            dropped = torch.ones_like(group_scores, dtype=torch.bool).scatter_(1, keep, False)
            sel = groups.masked_fill(dropped.unsqueeze(-1), float("-inf")).flatten(1)
        indices = sel.topk(a.n_activated_experts, dim=-1)[1]
        weights = original.gather(1, indices)
        if a.norm_topk_prob:
            weights = weights / weights.sum(dim=-1, keepdim=True)
        return weights * a.route_scale, indices


class MoE(nn.Module):
    """§6-7: the routed experts each token chose, weighted, plus the shared experts."""

    def __init__(self, a):
        super().__init__()
        self.gate = Gate(a)
        self.experts = nn.ModuleList(MLP(a.dim, a.moe_inter_dim) for _ in range(a.n_routed_experts))
        self.shared_experts = MLP(a.dim, a.n_shared_experts * a.moe_inter_dim)

    def forward(self, x):
        shape = x.shape
        x = x.view(-1, shape[-1])
        weights, indices = self.gate(x)
        y = torch.zeros_like(x)
        for e in indices.unique().tolist():
            rows, slot = torch.where(indices == e)
            y[rows] += self.experts[e](x[rows]) * weights[rows, slot, None]
        return (y + self.shared_experts(x)).view(shape)


class Block(nn.Module):
    """§2: h + MLA(RMSNorm(h)), then + FFN(RMSNorm(.))."""

    def __init__(self, layer, a):
        super().__init__()
        self.attn_norm = RMSNorm(a.dim, a.eps)
        self.attn = MLA(a)
        self.ffn_norm = RMSNorm(a.dim, a.eps)
        self.ffn = MLP(a.dim, a.inter_dim) if layer < a.n_dense_layers else MoE(a)

    def forward(self, x, positions):
        x = x + self.attn(self.attn_norm(x), positions)
        return x + self.ffn(self.ffn_norm(x))


class Transformer(nn.Module):
    def __init__(self, a):
        super().__init__()
        self.embed = nn.Embedding(a.vocab_size, a.dim)
        self.layers = nn.ModuleList(Block(l, a) for l in range(a.n_layers))
        self.norm = RMSNorm(a.dim, a.eps)
        self.head = linear(a.dim, a.vocab_size)

    def forward(self, tokens):                                  # tokens [B, T] -> logits [B, T, V]
        positions = torch.arange(tokens.size(1))
        h = self.embed(tokens)
        for layer in self.layers:
            h = layer(h, positions)
        return self.head(self.norm(h))


# HF checkpoint names (§11) -> this tree's names.
def hf_name(name):
    n = name.replace("model.embed_tokens.", "embed.").replace("model.norm.", "norm.").replace("lm_head.", "head.")
    n = n.replace("model.layers.", "layers.")
    for hf, ours in (("input_layernorm", "attn_norm"), ("post_attention_layernorm", "ffn_norm"),
                     ("self_attn.q_a_proj", "attn.wq_a"), ("self_attn.q_a_layernorm", "attn.q_norm"),
                     ("self_attn.q_b_proj", "attn.wq_b"), ("self_attn.q_proj", "attn.wq"),
                     ("self_attn.kv_a_proj_with_mqa", "attn.wkv_a"), ("self_attn.kv_a_layernorm", "attn.kv_norm"),
                     ("self_attn.kv_b_proj", "attn.wkv_b"), ("self_attn.o_proj", "attn.wo"),
                     ("mlp.gate.e_score_correction_bias", "ffn.gate.bias"), ("mlp.gate.weight", "ffn.gate.weight"),
                     ("gate_proj", "w1"), ("down_proj", "w2"), ("up_proj", "w3"), ("mlp.", "ffn.")):
        n = n.replace(hf, ours)
    return n


def load(directory, dtype=torch.float32):
    """The model of a checkpoint directory (config.json + safetensors), weights cast to dtype.
    Tensors of the MTP layer (index num_hidden_layers) are not part of this model and skipped."""
    with open(os.path.join(directory, "config.json")) as f:
        cfg = json.load(f)
    a = Args(cfg)
    model = Transformer(a).to(dtype)
    params = dict(model.named_parameters())
    ck = Checkpoint(directory)
    loaded = set()
    for name in ck.names():
        if name.startswith(f"model.layers.{a.n_layers}."):
            continue
        ours = hf_name(name)
        if ours not in params:
            raise KeyError(f"{name} (as {ours}) has no parameter in the model")
        with torch.no_grad():
            params[ours].copy_(torch.from_numpy(ck.get(name)).to(dtype).view_as(params[ours]))
        loaded.add(ours)
    missing = set(params) - loaded
    if missing:
        raise KeyError(f"parameters not in the checkpoint: {sorted(missing)[:5]}")
    return model.eval(), cfg

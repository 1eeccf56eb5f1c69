"""dsr1.torch.capture on a PyTorch implementation written from the spec (deepseek_torch.py,
DeepSeek's inference/model.py module tree), run on golden/sets/v3's checkpoint in float32: it
passes dsr1.compare at the float32 tolerance, and one changed weight is named as the first
divergence at the right layer, head and element."""
import json
import os

import numpy as np
import pytest
import torch

import dsr1
import dsr1.torch
import deepseek_torch
from conftest import ROOT

V3 = os.path.join(ROOT, "golden", "sets", "v3")
CONFIG = os.path.join(V3, "config.json")


def capture_run(model, tokens):
    with dsr1.torch.capture(model, names="deepseek", config=CONFIG) as cap, torch.no_grad():
        model(torch.tensor([tokens]))
    return cap


@pytest.fixture(scope="module")
def golden():
    return dsr1.load_golden(V3)


def test_capture_passes_at_float32_tolerance(golden):
    model, cfg = deepseek_torch.load(V3)
    cap = capture_run(model, list(golden.tokens))
    L = cfg["num_hidden_layers"]
    # every stage the map knows, in every layer: 1 embed + 3 final + per layer
    for l in range(L):
        for st in ("attn_norm", "attn.c_q", "attn.c_q_hat", "attn.q_nope", "attn.q_rope_pre", "attn.c_kv",
                   "attn.c_kv_hat", "attn.k_rope_pre", "attn.k_nope", "attn.v", "attn.o", "attn.u", "ffn_norm", "h"):
            assert f"layers.{l}.{st}" in cap.tensors, f"layers.{l}.{st} not captured"
    assert {"layers.1.moe.g", "layers.1.moe.experts", "layers.1.moe.shared", "layers.1.moe.out",
            "layers.0.ffn.gate", "layers.0.ffn.up", "layers.0.ffn.act", "layers.0.ffn.out"} <= set(cap.tensors)
    assert cap.tensors["logits"].shape == (8, 128) and cap.tensors["logits"].dtype == np.float32
    rep = dsr1.compare(V3, cap, names=list(cap.tensors))
    assert rep.ok, str(rep)
    compared = [r for r in rep.rows if r.status == "PASS"]
    assert len(compared) == len(cap.tensors)
    # float32 tensors at the float32 tolerance; the router's expert ids (int64) are compared as sets
    assert {r.tolerance_preset for r in compared if not r.name.endswith("moe.experts")} == {"f32"}
    # the tolerance is not loose for this candidate: float64 arithmetic would be held to f64
    model64, _ = deepseek_torch.load(V3, torch.float64)
    cap64 = capture_run(model64, list(golden.tokens))
    rep64 = dsr1.compare(V3, cap64, names=list(cap64.tensors))
    assert rep64.ok and {r.tolerance_preset for r in rep64.rows} == {"f64"}, str(rep64)
    assert dsr1.compare(V3, cap, names=list(cap.tensors), preset="f64").ok is False


def test_one_changed_weight_is_the_first_divergence(golden):
    model, cfg = deepseek_torch.load(V3)
    dn, dr = cfg["qk_nope_head_dim"], cfg["qk_rope_head_dim"]
    head, element, col = 2, 7, 11
    row = head * (dn + dr) + element            # a q_nope row of head 2 in layer 1's W_UQ
    with torch.no_grad():
        model.layers[1].attn.wq_b.weight[row, col] += 0.05
    cap = capture_run(model, list(golden.tokens))
    rep = dsr1.compare(V3, cap, names=list(cap.tensors))
    assert not rep.ok
    fd = rep.first_divergence
    assert (fd.name, fd.layer, fd.head, fd.element) == ("layers.1.attn.q_nope", "1", head, element), str(rep)
    # the worst position is where the changed weight meets the largest input |c_q_hat[t, col]|
    c_q_hat = golden.tensors["layers.1.attn.c_q_hat"]
    q_nope = golden.tensors["layers.1.attn.q_nope"]
    allowed = 2 ** -16 * (1 + np.abs(q_nope[:, head * dn + element]))
    assert fd.position == int(np.argmax(np.abs(0.05 * c_q_hat[:, col]) / allowed))
    assert "FIRST DIVERGENCE: layers.1.attn.q_nope at layer 1, head 2" in str(rep)
    # everything before it passed
    before = rep.rows[:rep.rows.index(next(r for r in rep.rows if r.first_divergence))]
    assert before and all(r.status == "PASS" for r in before)


def test_capture_converters():
    x = torch.arange(2 * 3 * 2 * 4, dtype=torch.float32).view(2, 3, 2, 4)   # [B, T, H, D]
    ctx = dsr1.torch._Context({"qk_rope_head_dim": 4}, batch=1)
    rows = dsr1.torch.output()(x, (), ctx)
    assert rows.shape == (3, 8) and np.array_equal(rows, x[1].reshape(3, 8).numpy())
    inter = dsr1.torch.half_split_to_interleaved()(x, (), ctx)
    # head 0 of token 0 in batch 1: [24, 25, 26, 27] half-split -> pairs (24, 26), (25, 27)
    assert list(inter[0, :4]) == [24, 26, 25, 27]
    with pytest.raises(ValueError, match="unknown map"):
        dsr1.torch.capture(torch.nn.Linear(2, 2), names="nope")
    with pytest.raises(ValueError, match="no submodule"):
        with dsr1.torch.capture(torch.nn.Sequential(torch.nn.Linear(2, 2))):
            pass


class _HFLayer(torch.nn.Module):
    """A decoder layer that returns a tuple, as transformers' layers do."""

    def __init__(self, block):
        super().__init__()
        self.input_layernorm = block.attn_norm
        self.post_attention_layernorm = block.ffn_norm
        self.block = block

    def forward(self, h, positions):
        return (self.block(h, positions), None)


def test_hf_map_on_a_tuple_returning_tree(golden):
    """The "hf" map on a module tree named as transformers names it (model.embed_tokens,
    model.layers.N returning a tuple, model.layers.N.input_layernorm, model.norm, lm_head)."""
    base, _ = deepseek_torch.load(V3)

    class HF(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = torch.nn.Module()
            self.model.embed_tokens = base.embed
            self.model.layers = torch.nn.ModuleList(_HFLayer(b) for b in base.layers)
            self.model.norm = base.norm
            self.lm_head = base.head

        def forward(self, tokens):
            pos = torch.arange(tokens.size(1))
            h = self.model.embed_tokens(tokens)
            for layer in self.model.layers:
                h = layer(h, pos)[0]
            return self.lm_head(self.model.norm(h))

    hf = HF()
    with dsr1.torch.capture(hf, names="hf", config=CONFIG) as cap, torch.no_grad():
        hf(torch.tensor([list(golden.tokens)]))
    assert {"embed.h", "layers.0.attn_norm", "layers.2.ffn_norm", "layers.2.h", "final_norm", "logits"} <= set(cap.tensors)
    rep = dsr1.compare(V3, cap, names=list(cap.tensors))
    assert rep.ok, str(rep)

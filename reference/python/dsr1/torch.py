"""Capture a PyTorch model's intermediates under dsr1's trace names, ready for dsr1.compare.

    import dsr1, dsr1.torch
    with dsr1.torch.capture(model, names="deepseek", config="golden/sets/v3/config.json") as cap:
        model(torch.tensor([tokens]))
    print(dsr1.compare("golden/sets/v3", cap, names=list(cap.tensors)))

capture registers forward hooks on the submodules a name map knows and records what they return
(or receive) as numpy arrays, one token per row as the golden sets store them ([T, d]; heads
stacked along the row, [T, H * d_head]). Two maps ship (docs/validating.md lists every entry):

  "deepseek"  the module tree of DeepSeek's inference/model.py: embed, layers.N.attn_norm,
              layers.N.attn (wq_a, q_norm, wq_b, wkv_a, kv_norm, wkv_b, wo), layers.N.ffn_norm,
              layers.N.ffn (MLP w1/w2/w3, or MoE gate/experts/shared_experts), norm, head
  "hf"        Hugging Face transformers' DeepseekV3 / DeepseekV2: model.embed_tokens,
              model.layers.N.input_layernorm, .self_attn (q_a_proj, q_a_layernorm, q_b_proj,
              kv_a_proj_with_mqa, kv_a_layernorm, kv_b_proj, o_proj), .post_attention_layernorm,
              .mlp (gate_proj/up_proj/down_proj, or gate/experts/shared_experts), model.norm, lm_head

A map is a list of Rule(pattern, [(trace name template, converter), ...]): `pattern` is a regular
expression matched against the whole module name (its groups fill the template's {0}, {1}), and
a converter turns what the module returned into the golden layout:

  output(item=None)     the output (or element `item` of a returned tuple)
  input(k=0)            the k-th positional input (e.g. o_proj's input is attn.o)
  columns(a, b)         columns a..b-1 of the last axis, after the conversion (wkv_a = [c_kv ; k_rope])
  head_part(a, b, w)    per head of width w, columns a..b-1, heads stacked again (wq_b -> q_nope, q_rope)
  half_split_to_interleaved()   RoPE pairs stored as two halves [x_0..x_{D/2-1}, y_0..] (HF's
                        rotate_half) reordered to adjacent pairs (x_0, y_0, x_1, y_1, ...) as dsr1 stores them

Every converter first drops the batch axis ([B, T, ...] -> [T, ...], batch element `batch`, 0 by
default) and flattens what follows the token axis, so [B, T, H, D] becomes [T, H*D]. Modules that
see the tokens flattened ([B*T, d], like the MoE gate) are taken as they are: use batch size 1.
A module that runs again (one call per decoded token) appends its rows, so an incremental decode
records [T, ...] like a full pass. Pass your own map as names=[Rule(...), ...], as a dict
{pattern: template} (the output, converted as above), or add to a shipped one:
names=dsr1.torch.DEEPSEEK + [Rule(r"my\\.rope", [("layers.0.attn.q_rope", half_split_to_interleaved())])].
"""

import json
import os
import re

import numpy as np

__all__ = ["capture", "Rule", "DEEPSEEK", "HF", "output", "input", "columns", "head_part",
           "half_split_to_interleaved"]


# ---- converters --------------------------------------------------------------------------------

def _np(x):
    if hasattr(x, "detach"):
        x = x.detach().cpu()
        if str(x.dtype) == "torch.bfloat16":
            x = x.float()
        return x.numpy().copy()
    return np.array(x)


def _rows(x, ctx):
    """[B, T, ...] -> [T, prod(...)] for batch element ctx.batch; 2-D arrays are already rows."""
    a = _np(x)
    if a.ndim >= 3:
        a = a[ctx.batch]
    if a.ndim >= 2:
        a = a.reshape(a.shape[0], -1)
    return a


class _Converter:
    def __init__(self, fn, text):
        self.fn, self.text = fn, text

    def __call__(self, out, inputs, ctx):
        return self.fn(out, inputs, ctx)

    def __repr__(self):
        return self.text

    def then(self, fn, text):
        return _Converter(lambda o, i, c: fn(self.fn(o, i, c), c), f"{self.text}.{text}")


def output(item=None):
    """The module's output, or element `item` of the tuple it returns."""
    def fn(out, inputs, ctx):
        if item is not None:
            if not isinstance(out, (tuple, list)):
                raise ValueError(f"expected a tuple output, got {type(out).__name__}")
            out = out[item]
        return _rows(out, ctx)
    return _Converter(fn, "output()" if item is None else f"output({item})")


def input(k=0):  # noqa: A001 (the module's input, as named in the map)
    """The module's k-th positional input."""
    return _Converter(lambda out, inputs, ctx: _rows(inputs[k], ctx), f"input({k})")


def columns(a, b, src=None):
    """Columns a..b-1 of the last axis (after dropping the batch). a and b may name config
    fields: columns(0, "kv_lora_rank")."""
    src = src or output()

    def fn(x, ctx):
        return np.ascontiguousarray(x[..., ctx.dim(a):ctx.dim(b)])
    return src.then(fn, f"columns({a}, {b})")


def head_part(a, b, width, src=None):
    """Rows [T, H * width] seen as [T, H, width]: columns a..b-1 of every head, stacked again."""
    src = src or output()

    def fn(x, ctx):
        w = ctx.dim(width)
        T = x.shape[0]
        return np.ascontiguousarray(x.reshape(T, -1, w)[:, :, ctx.dim(a):ctx.dim(b)].reshape(T, -1))
    return src.then(fn, f"head_part({a}, {b}, {width})")


def half_split_to_interleaved(width="qk_rope_head_dim", src=None):
    """Per head of `width` RoPE dimensions: [x_0..x_{D/2-1}, y_0..y_{D/2-1}] -> [x_0, y_0, x_1, y_1, ...]."""
    src = src or output()

    def fn(x, ctx):
        D = ctx.dim(width)
        T = x.shape[0]
        h = x.reshape(T, -1, 2, D // 2)                 # [T, H, half, D/2]
        return np.ascontiguousarray(h.transpose(0, 1, 3, 2).reshape(T, -1))
    return src.then(fn, "half_split_to_interleaved()")


class Rule:
    """pattern: a regular expression on the full module name; targets: [(template, converter)].
    `when(module)`, if given, must hold for the rule to apply (dense MLP vs MoE)."""

    def __init__(self, pattern, targets, when=None):
        self.pattern = re.compile(pattern)
        self.targets = [(t, c if c is not None else output()) for t, c in targets]
        self.when = when

    def __repr__(self):
        return f"Rule({self.pattern.pattern!r}, {self.targets!r})"


def _is_moe(module):
    return hasattr(module, "gate") and hasattr(module, "experts")


def _is_dense(module):
    return not _is_moe(module)


L = r"layers\.(\d+)\."
# DeepSeek's inference/model.py (V3). Its MLA's absorbed mode uses wkv_b's weight without calling
# the module, so k_nope and v are captured in its naive mode only ("attn_impl": "naive").
DEEPSEEK = [
    Rule(r"embed", [("embed.h", output())]),
    Rule(r"layers\.(\d+)", [("layers.{0}.h", output())]),
    Rule(L + r"attn_norm", [("layers.{0}.attn_norm", output())]),
    Rule(L + r"attn", [("layers.{0}.attn.u", output())]),
    Rule(L + r"attn\.wq_a", [("layers.{0}.attn.c_q", output())]),
    Rule(L + r"attn\.q_norm", [("layers.{0}.attn.c_q_hat", output())]),
    Rule(L + r"attn\.wq_b|" + L + r"attn\.wq", [
        ("layers.{0}.attn.q_nope", head_part(0, "qk_nope_head_dim", "qk_head_dim")),
        ("layers.{0}.attn.q_rope_pre", head_part("qk_nope_head_dim", "qk_head_dim", "qk_head_dim"))]),
    Rule(L + r"attn\.wkv_a", [("layers.{0}.attn.c_kv", columns(0, "kv_lora_rank")),
                              ("layers.{0}.attn.k_rope_pre", columns("kv_lora_rank", "kv_a_width"))]),
    Rule(L + r"attn\.kv_norm", [("layers.{0}.attn.c_kv_hat", output())]),
    Rule(L + r"attn\.wkv_b", [("layers.{0}.attn.k_nope", head_part(0, "qk_nope_head_dim", "kv_b_width")),
                              ("layers.{0}.attn.v", head_part("qk_nope_head_dim", "kv_b_width", "kv_b_width"))]),
    Rule(L + r"attn\.wo", [("layers.{0}.attn.o", input(0))]),
    Rule(L + r"ffn_norm", [("layers.{0}.ffn_norm", output())]),
    Rule(L + r"ffn", [("layers.{0}.ffn.out", output())], when=_is_dense),
    Rule(L + r"ffn", [("layers.{0}.moe.out", output())], when=_is_moe),
    Rule(L + r"ffn\.w1", [("layers.{0}.ffn.gate", output())]),
    Rule(L + r"ffn\.w3", [("layers.{0}.ffn.up", output())]),
    Rule(L + r"ffn\.w2", [("layers.{0}.ffn.act", input(0))]),
    Rule(L + r"ffn\.gate", [("layers.{0}.moe.g", output(0)), ("layers.{0}.moe.experts", output(1))]),
    Rule(L + r"ffn\.shared_experts", [("layers.{0}.moe.shared", output())]),
    Rule(r"norm", [("final_norm", output())]),
    Rule(r"head", [("logits", output())]),
]

M = r"model\.layers\.(\d+)\."
# Hugging Face transformers' DeepseekV3 (and V2) tree. Decoder layers and self_attn return tuples
# (hidden states first); the router returns (indices, weights). q_b_proj and kv_a_proj_with_mqa
# hold the checkpoint's interleaved RoPE columns (HF reorders them to half-split pairs only
# inside apply_rotary_pos_emb), so q_rope_pre and k_rope_pre need no reordering.
HF = [
    Rule(r"model\.embed_tokens", [("embed.h", output())]),
    Rule(r"model\.layers\.(\d+)", [("layers.{0}.h", output(0))]),
    Rule(M + r"input_layernorm", [("layers.{0}.attn_norm", output())]),
    Rule(M + r"self_attn", [("layers.{0}.attn.u", output(0))]),
    Rule(M + r"self_attn\.q_a_proj", [("layers.{0}.attn.c_q", output())]),
    Rule(M + r"self_attn\.q_a_layernorm", [("layers.{0}.attn.c_q_hat", output())]),
    Rule(M + r"self_attn\.q_b_proj|" + M + r"self_attn\.q_proj", [
        ("layers.{0}.attn.q_nope", head_part(0, "qk_nope_head_dim", "qk_head_dim")),
        ("layers.{0}.attn.q_rope_pre", head_part("qk_nope_head_dim", "qk_head_dim", "qk_head_dim"))]),
    Rule(M + r"self_attn\.kv_a_proj_with_mqa", [("layers.{0}.attn.c_kv", columns(0, "kv_lora_rank")),
                                                ("layers.{0}.attn.k_rope_pre", columns("kv_lora_rank", "kv_a_width"))]),
    Rule(M + r"self_attn\.kv_a_layernorm", [("layers.{0}.attn.c_kv_hat", output())]),
    Rule(M + r"self_attn\.kv_b_proj", [("layers.{0}.attn.k_nope", head_part(0, "qk_nope_head_dim", "kv_b_width")),
                                       ("layers.{0}.attn.v", head_part("qk_nope_head_dim", "kv_b_width", "kv_b_width"))]),
    Rule(M + r"self_attn\.o_proj", [("layers.{0}.attn.o", input(0))]),
    Rule(M + r"post_attention_layernorm", [("layers.{0}.ffn_norm", output())]),
    Rule(M + r"mlp", [("layers.{0}.ffn.out", output())], when=_is_dense),
    Rule(M + r"mlp", [("layers.{0}.moe.out", output())], when=_is_moe),
    Rule(M + r"mlp\.gate_proj", [("layers.{0}.ffn.gate", output())]),
    Rule(M + r"mlp\.up_proj", [("layers.{0}.ffn.up", output())]),
    Rule(M + r"mlp\.down_proj", [("layers.{0}.ffn.act", input(0))]),
    Rule(M + r"mlp\.gate", [("layers.{0}.moe.experts", output(0)), ("layers.{0}.moe.g", output(1))]),
    Rule(M + r"mlp\.shared_experts", [("layers.{0}.moe.shared", output())]),
    Rule(r"model\.norm", [("final_norm", output())]),
    Rule(r"lm_head", [("logits", output())]),
]

MAPS = {"deepseek": DEEPSEEK, "hf": HF}


class _Context:
    """Config dimensions for the converters, and the batch element."""

    def __init__(self, config, batch):
        self.config = config or {}
        self.batch = batch
        c = self.config
        derived = {}
        if c:
            dn, dr = c.get("qk_nope_head_dim"), c.get("qk_rope_head_dim")
            if dn is not None and dr is not None:
                derived["qk_head_dim"] = dn + dr
            if c.get("kv_lora_rank") is not None and dr is not None:
                derived["kv_a_width"] = c["kv_lora_rank"] + dr
            if dn is not None and c.get("v_head_dim") is not None:
                derived["kv_b_width"] = dn + c["v_head_dim"]
        self.derived = derived

    def dim(self, k):
        if isinstance(k, (int, np.integer)):
            return int(k)
        if k in self.derived:
            return self.derived[k]
        if k in self.config and self.config[k] is not None:
            return int(self.config[k])
        raise ValueError(f"capture: the name map needs config field '{k}'; pass config=... "
                         "(a config.json path or dict)")


def _rules(names):
    if isinstance(names, str):
        if names not in MAPS:
            raise ValueError(f"names: unknown map {names!r} (known: {', '.join(MAPS)}; or pass your own rules)")
        return MAPS[names]
    if isinstance(names, dict):
        return [Rule(p, [(t, output())]) for p, t in names.items()]
    rules = list(names)
    for r in rules:
        if not isinstance(r, Rule):
            raise ValueError(f"names: expected Rule objects, got {type(r).__name__}")
    return rules


class capture:
    """Context manager: record a PyTorch module's intermediates under dsr1's trace names.

    module   the model (any torch.nn.Module)
    names    "deepseek" (DeepSeek's inference/model.py tree), "hf" (transformers' DeepseekV3),
             a list of Rule, or a dict {module-name pattern: trace-name template}
    config   config.json (path or dict) for the converters that split heads or columns
    batch    which batch element to record (default 0)

    Inside the block every forward call records; .tensors is a dict trace name -> numpy array
    (the module's dtype: float32 arrays are compared at the float32 tolerance), .modules maps
    each trace name to the module it came from. A map rule that matches no submodule is fine
    (not every model has every stage); a model in which no rule matches raises ValueError.
    """

    def __init__(self, module, names="deepseek", config=None, batch=0):
        if not hasattr(module, "named_modules") or not hasattr(module, "register_forward_hook"):
            raise ValueError(f"capture: expected a torch.nn.Module, got {type(module).__name__}")
        if isinstance(config, (str, os.PathLike)):
            if not os.path.exists(config):
                raise FileNotFoundError(f"config: {os.fspath(config)}: no such file or directory")
            with open(config) as f:
                config = json.load(f)
        self.module = module
        self.rules = _rules(names)
        self.ctx = _Context(config, batch)
        self.tensors = {}
        self.modules = {}
        self._handles = []

    def _hook(self, module_name, targets):
        def hook(mod, inputs, out):
            for template, groups, conv in targets:
                name = template.format(*groups)
                try:
                    a = conv(out, inputs, self.ctx)
                except Exception as e:
                    raise ValueError(f"capture: {module_name} -> {name} ({conv!r}): {e}") from e
                if name in self.tensors and self.tensors[name].shape[1:] == a.shape[1:] and a.ndim >= 1:
                    a = np.concatenate([self.tensors[name], a], axis=0)  # one more decoded token
                self.tensors[name] = a
                self.modules[name] = module_name
        return hook

    def __enter__(self):
        matched = 0
        for mname, mod in self.module.named_modules():
            if not mname:
                continue
            targets = []
            for rule in self.rules:
                m = rule.pattern.fullmatch(mname)
                if m and (rule.when is None or rule.when(mod)):
                    groups = [g for g in m.groups() if g is not None]
                    targets += [(t, groups, c) for t, c in rule.targets]
            if targets:
                matched += 1
                self._handles.append(mod.register_forward_hook(self._hook(mname, targets)))
        if not matched:
            self.close()
            raise ValueError("capture: no submodule of this model matches the name map (module names look like "
                             f"{[n for n, _ in self.module.named_modules()][1:4]})")
        return self

    def close(self):
        for h in self._handles:
            h.remove()
        self._handles = []

    def __exit__(self, *exc):
        self.close()
        return False

    def __repr__(self):
        return f"dsr1.torch.capture({len(self.tensors)} tensors)"

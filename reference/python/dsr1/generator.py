"""The portable weight generator (docs/generator.md): every weight of a preset's checkpoint is a
function of (seed, tensor name, element index), so a candidate implementation can regenerate any
full-scale weight by name without storing the model.

    dsr1.generator.value(1, "model.layers.3.mlp.experts.17.up_proj.weight", 12345)
    dsr1.generator.tensor(1, "model.layers.0.self_attn.q_a_proj.weight", [1536, 7168])  # float32

Values are float32 numbers; the same bits as the C++ library and docs/examples/generator.py.
"""

import numpy as np

from . import _dsr1

__all__ = ["value", "tensor", "shape_of"]


def _check(seed, name):
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed: expected a non-negative integer, got {seed!r}")
    if not isinstance(name, str) or not name:
        raise ValueError(f"name: expected a tensor name, got {name!r}")


def _shape(shape, what):
    if isinstance(shape, (int, np.integer)):
        shape = [shape]
    out = []
    for d in shape:
        if isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 0:
            raise ValueError(f"{what}: expected non-negative integer dimensions, got {list(shape)!r}")
        out.append(int(d))
    return out


def shape_of(name, preset="deepseek-r1"):
    """The checkpoint shape of tensor `name` in a preset's catalogue (HF names)."""
    cat = _dsr1.catalogue(preset)
    if name not in cat:
        raise ValueError(f"name: '{name}' is not a tensor of the {preset} checkpoint "
                         f"(names look like 'model.layers.0.self_attn.q_a_proj.weight')")
    return list(cat[name])


def value(seed, name, index, shape=None, preset="deepseek-r1"):
    """Element `index` (row-major) of tensor `name`. The value depends on the tensor's last
    dimension (linear weights are scaled by 1/sqrt(n)): give `shape`, or the tensor is looked up
    in `preset`'s checkpoint catalogue."""
    _check(seed, name)
    shape = _shape(shape, "shape") if shape is not None else shape_of(name, preset)
    n = int(np.prod(shape, dtype=np.uint64)) if shape else 1
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not 0 <= index < n:
        raise ValueError(f"index: {index!r} is outside 0..{n - 1} of '{name}' {shape}")
    return float(_dsr1.generator_value(int(seed), name, int(index), shape[-1] if shape else 1))


def tensor(seed, name, shape):
    """The whole tensor `name` of the given shape as a float32 numpy array."""
    _check(seed, name)
    return _dsr1.generator_tensor(int(seed), name, _shape(shape, "shape"))

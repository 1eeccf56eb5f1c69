"""Bad input from Python gets a Python exception naming the argument or tensor, never a crash."""
import os

import numpy as np
import pytest

import dsr1
from conftest import ROOT

V3 = os.path.join(ROOT, "golden", "sets", "v3")


@pytest.fixture(scope="module")
def tiny():
    return dsr1.Model(preset="tiny-v3")


def test_tokens(tiny):
    with pytest.raises(ValueError, match=r"tokens: expected integer token ids, got an array of dtype float64"):
        tiny.run(np.array([1.0, 2.0]))
    with pytest.raises(ValueError, match=r"tokens: expected a 1-D list of token ids, got an array of shape \(1, 2\)"):
        tiny.run(np.array([[1, 2]]))
    with pytest.raises(ValueError, match=r"tokens\[1\]: token id 128 is outside the vocabulary 0..127"):
        tiny.run([1, 128])
    with pytest.raises(ValueError, match=r"tokens\[0\]: token id -1 is negative"):
        tiny.run([-1])
    with pytest.raises(ValueError, match=r"tokens: empty list"):
        tiny.run([])
    with pytest.raises(ValueError, match=r"tokens\[0\]: expected an integer token id"):
        tiny.run(["a"])
    with pytest.raises(ValueError, match=r"max_position_embeddings"):
        tiny.run(list(range(100)) * 3)


def test_run_options(tiny):
    with pytest.raises(ValueError, match=r"trace: 'layers.9.\*' matched none of the"):
        tiny.run([1, 2], trace=["layers.9.*"])
    with pytest.raises(ValueError, match=r"attn: expected 'naive' or 'absorbed'"):
        tiny.run([1, 2], attn="flash")
    with pytest.raises(ValueError, match=r"attn: the fast path computes the absorbed form only"):
        tiny.run([1, 2], fast=True, attn="naive")
    with pytest.raises(ValueError, match=r"mtp: the fast path"):
        tiny.run([1, 2], fast=True, mtp=True)
    with pytest.raises(ValueError, match=r"decode_from: 5 is past the 2 tokens"):
        tiny.run([1, 2], decode_from=5)
    with pytest.raises(ValueError, match=r"mtp: model 'tiny-v2-lite' has no MTP module"):
        dsr1.Model(preset="tiny-v2-lite").run([1, 2], mtp=True)


def test_model_sources(tmp_path):
    with pytest.raises(ValueError, match="exactly one of"):
        dsr1.Model()
    with pytest.raises(ValueError, match="exactly one of"):
        dsr1.Model(preset="tiny-v3", config=os.path.join(V3, "config.json"))
    with pytest.raises(ValueError, match="tiny-v3"):   # the message lists the known presets
        dsr1.Model(preset="no-such-model")
    with pytest.raises(FileNotFoundError, match="no/such/dir"):
        dsr1.Model(model="no/such/dir")
    with pytest.raises(FileNotFoundError, match="missing.json"):
        dsr1.Model(config=str(tmp_path / "missing.json"))
    bad = tmp_path / "config.json"
    bad.write_text('{"hidden_size": 64}')
    with pytest.raises((ValueError, RuntimeError), match="config"):
        dsr1.Model(config=str(bad))


def test_memory_limit():
    # DeepSeek-R1 over 100000 tokens: the working set does not fit; refused before any work.
    m = dsr1.Model(preset="deepseek-r1")
    with pytest.raises(MemoryError, match=r"model 'deepseek-r1' with 100000 tokens needs a working set"):
        m.run(list(range(100000)))


def test_compare_inputs():
    g = dsr1.load_golden(V3)
    with pytest.raises(FileNotFoundError, match="no/such/set"):
        dsr1.compare("no/such/set", g.tensors)
    with pytest.raises(FileNotFoundError):
        dsr1.load_golden("no/such/set")
    with pytest.raises(ValueError, match=r"tensor 'embed.h': dtype complex128 cannot be compared"):
        dsr1.compare(V3, {"embed.h": g.tensors["embed.h"].astype(np.complex128)})
    with pytest.raises(ValueError, match=r"tensor 'embed.h': expected a numpy array or a torch tensor, got str"):
        dsr1.compare(V3, {"embed.h": "x"})
    with pytest.raises(ValueError, match="candidate: expected a golden-set path"):
        dsr1.compare(V3, 42)
    with pytest.raises(ValueError, match="preset: 'f128'"):
        dsr1.compare(V3, V3, preset="f128")
    with pytest.raises(ValueError, match="candidate: an empty dict"):
        dsr1.compare(V3, {})


def test_non_contiguous_and_non_finite_candidates():
    g = dsr1.load_golden(V3)
    h = g.tensors["embed.h"]
    view = np.asfortranarray(h)                  # same values, column-major memory
    assert not view.flags.c_contiguous
    assert dsr1.compare(V3, {"embed.h": view}, names="embed.h").ok
    strided = np.repeat(h, 2, axis=1)[:, ::2]     # a strided view
    assert dsr1.compare(V3, {"embed.h": strided}, names="embed.h").ok
    bad = h.copy()
    bad[3, 4] = np.nan
    rep = dsr1.compare(V3, {"embed.h": bad}, names="embed.h")
    assert not rep.ok and rep.first_divergence.name == "embed.h"
    assert rep.first_divergence.position == 3 and rep.first_divergence.element == 4
    bad[3, 4] = np.inf
    assert not dsr1.compare(V3, {"embed.h": bad}, names="embed.h").ok
    # -inf where the reference masks (future keys of attn.scores) is what it should be
    assert dsr1.compare(V3, {"layers.0.attn.scores": g.tensors["layers.0.attn.scores"]}, names="*.scores").ok


def test_generator_arguments():
    with pytest.raises(ValueError, match="not a tensor of the deepseek-r1 checkpoint"):
        dsr1.generator.value(1, "model.no.such.weight", 0)
    with pytest.raises(ValueError, match="index: 7168 is outside 0..7167"):
        dsr1.generator.value(1, "model.norm.weight", 7168)
    with pytest.raises(ValueError, match="seed"):
        dsr1.generator.tensor(-1, "x.weight", [2])

"""dsr1 from Python: every function of the module against the dsr1 program and independent code."""
import json
import os
import sys

import numpy as np
import pytest

import dsr1
from conftest import ROOT, run_cli

sys.path.insert(0, os.path.join(ROOT, "tests", "independent"))
sys.path.insert(0, os.path.join(ROOT, "docs", "examples"))
from safetensors_np import SafetensorsFile  # noqa: E402
import generator as generator_py  # noqa: E402  (docs/examples/generator.py, written from docs/generator.md)

V3 = os.path.join(ROOT, "golden", "sets", "v3")


def read_dump(path):
    f = SafetensorsFile(path)
    return {n: np.asarray(f.view(n)) for n in f.names()}


def test_must_show_one_liner():
    m = dsr1.Model(preset="tiny-v3")
    r = m.run([5, 17, 3], trace=["*"])
    assert r.logits.shape == (3, 128)
    assert r.logits.dtype == np.float64
    assert len(r.tensors) > 50
    assert next(iter(r.tensors)) == "embed.h"          # computation order
    assert list(r.tensors)[-1] == "logits"


@pytest.mark.parametrize("args", [
    dict(),
    dict(attn="absorbed"),
    dict(decode_from=2),
    dict(mtp=True),
])
def test_run_equals_cli_dump_bit_for_bit(dsr1_bin, tmp_path, args):
    tokens = [3, 17, 5, 99, 42]
    dump = str(tmp_path / "cli.safetensors")
    cli = ["run", "--preset", "tiny-v3", "--seed", "2", "--tokens", ",".join(map(str, tokens)), "--trace", "*layers.1.*",
           "--dump", dump, "--quiet"]
    if "attn" in args:
        cli += ["--attn", args["attn"]]
    if "decode_from" in args:
        cli += ["--decode-from", str(args["decode_from"])]
    if args.get("mtp"):
        cli += ["--mtp"]
    run_cli(dsr1_bin, *cli)
    want = read_dump(dump)
    r = dsr1.Model(preset="tiny-v3", seed=2).run(tokens, trace=["*layers.1.*"], **args)
    assert np.array_equal(r.logits, want["logits"]), "logits differ from `dsr1 run --dump`"
    if args.get("mtp"):
        assert np.array_equal(r.mtp_logits, want["mtp.logits"])
    names = {n for n in want if n not in ("logits", "mtp.logits")}
    assert set(r.tensors) - {"logits", "mtp.logits"} == names
    for n in names:
        assert r.tensors[n].shape == want[n].shape, n
        assert np.array_equal(r.tensors[n], want[n]), n


def test_fast_path_equals_cli(dsr1_bin, tmp_path):
    tokens = [3, 17, 5, 99]
    dump = str(tmp_path / "fast.safetensors")
    run_cli(dsr1_bin, "run", "--preset", "tiny-v3", "--tokens", "3,17,5,99", "--fast", "--threads", "1",
            "--trace", "layers.2.attn.u", "--dump", dump, "--quiet")
    want = read_dump(dump)
    r = dsr1.Model(preset="tiny-v3").run(tokens, fast=True, threads=1, trace="layers.2.attn.u")
    assert r.logits.dtype == np.float32
    assert np.array_equal(r.logits, want["logits"])
    assert r.tensors["layers.2.attn.u"].dtype == np.float32
    assert np.array_equal(r.tensors["layers.2.attn.u"], want["layers.2.attn.u"])
    # and the fast path against the reference: within the float32 standard
    ref = dsr1.Model(preset="tiny-v3").run(tokens, trace="layers.2.attn.u")
    assert dsr1.compare(ref, r, names=["logits", "layers.2.attn.u"]).ok


def test_fast_path_on_a_mapped_checkpoint_equals_cli(dsr1_bin, tmp_path):
    # An FP8 checkpoint: fast=True uses its matrices where they lie (fast::SourceModel, mapped),
    # as `dsr1 run --fast --model DIR` does; prefill + decode through the latent cache.
    model = str(tmp_path / "fp8")
    run_cli(dsr1_bin, "init-model", "--preset", "tiny-v3", "--dtype", "fp8", "--out", model)
    dump = str(tmp_path / "fast.safetensors")
    run_cli(dsr1_bin, "run", "--model", model, "--tokens", "3,17,5,99,42", "--fast", "--decode-from", "2",
            "--threads", "2", "--dump", dump, "--quiet")
    want = read_dump(dump)
    r = dsr1.Model(model=model).run([3, 17, 5, 99, 42], fast=True, decode_from=2, threads=1)
    assert r.logits.dtype == np.float32
    assert np.array_equal(r.logits, want["logits"])  # 1 vs 2 threads: the same bits


def test_logits_are_not_copied():
    r = dsr1.Model(preset="tiny-v3").run([1, 2])
    assert not r.logits.flags.owndata        # a view of the buffer the C++ side computed
    assert r.logits.base is not None


def test_info_equals_cli(dsr1_bin):
    want = json.loads(run_cli(dsr1_bin, "info", "--preset", "deepseek-r1", "--json").stdout)
    got = dsr1.Model(preset="deepseek-r1").info()
    assert got == want
    assert got["total_params"] > 6e11


def test_load_golden():
    g = dsr1.load_golden(V3)
    man = json.load(open(os.path.join(V3, "manifest.json")))
    assert list(g.tokens) == man["tokens"]
    assert list(g.tensors) == [t["name"] for t in man["tensors"]]
    for t in man["tensors"][:20]:
        assert list(g.tensors[t["name"]].shape) == t["shape"]
    # the golden set's model, regenerated from its config and seed, reproduces its logits
    m = dsr1.Model(config=os.path.join(V3, "config.json"), seed=man["seed"])
    r = m.run(g.tokens, trace="*")
    rep = dsr1.compare(g, r, preset="f64", names=list(r.tensors))
    assert rep.ok, str(rep)


def perturbed(golden, name, index, delta):
    d = {n: a.copy() for n, a in golden.tensors.items() if not n.startswith(("incremental.", "mtp."))}
    d[name][index] += delta
    return d


@pytest.mark.parametrize("case", ["pass", "q_nope", "router", "transposed", "missing"])
def test_compare_in_memory_equals_cli(dsr1_bin, tmp_path, case):
    g = dsr1.load_golden(V3)
    if case == "pass":
        cand = perturbed(g, "layers.1.attn.q_nope", (2, 5), 1e-15)
    elif case == "q_nope":
        cand = perturbed(g, "layers.1.attn.q_nope", (2, 21), 1e-3)   # head 1 (16 per head), element 5
    elif case == "router":
        cand = perturbed(g, "layers.2.moe.experts", (4, 0), 0)
        row = cand["layers.2.moe.experts"][4]
        row[0] = next(e for e in range(8) if e not in row)
    elif case == "transposed":
        cand = perturbed(g, "layers.0.attn.c_kv", (0, 0), 0)
        cand["layers.0.attn.c_kv"] = np.ascontiguousarray(cand["layers.0.attn.c_kv"].T)
    else:
        cand = perturbed(g, "embed.h", (0, 0), 0)
        del cand["layers.0.attn.c_q"]
    npz = str(tmp_path / "cand.npz")
    np.savez(npz, **cand)
    cli = run_cli(dsr1_bin, "compare", V3, npz, check=False)
    cli_json = json.loads(run_cli(dsr1_bin, "compare", V3, npz, "--json", check=False).stdout)
    rep = dsr1.compare(V3, cand)
    rep_file = dsr1.compare(V3, npz)
    assert rep.ok == (cli.returncode == 0) == rep_file.ok
    assert str(rep_file) == cli.stdout
    # in memory the candidate's description differs; every other line is the CLI's
    assert str(rep).splitlines()[2:] == cli.stdout.splitlines()[2:]
    for a, b in zip(rep.json["tensors"], cli_json["tensors"]):
        assert a == b
    if case == "pass":
        assert rep.ok and rep.first_divergence is None
    elif case == "q_nope":
        fd = rep.first_divergence
        assert (fd.name, fd.layer, fd.head, fd.position, fd.element) == ("layers.1.attn.q_nope", "1", 1, 2, 5)
        assert fd.values == (g.tensors["layers.1.attn.q_nope"][2, 21], cand["layers.1.attn.q_nope"][2, 21])
        row = next(r for r in rep.rows if r.name == fd.name)
        assert row.status == "FAIL" and row.max_abs == pytest.approx(1e-3, rel=1e-9)
    elif case == "router":
        assert rep.first_divergence.name == "layers.2.moe.experts"
        assert rep.first_divergence.position == 4
    elif case == "transposed":
        assert rep.first_divergence.status == "SHAPE"
        assert "transposed" in " ".join(rep.first_divergence.notes)
    else:
        assert rep.ok and rep.missing == len(g.tensors) - len(cand)
        assert next(r for r in rep.rows if r.name == "layers.0.attn.c_q").status == "missing"


def test_float32_candidate_gets_float32_tolerance():
    g = dsr1.load_golden(V3)
    cand = {n: a.astype(np.float32) for n, a in g.tensors.items() if n.startswith("layers.0.")}
    rep = dsr1.compare(V3, cand, names="layers.0.*")
    assert rep.ok
    assert {r.tolerance_preset for r in rep.rows} == {"f32"}
    assert dsr1.compare(V3, cand, names="layers.0.*", preset="f64").ok is False


def test_generator_matches_the_independent_python_generator():
    name, shape = "model.layers.3.mlp.experts.17.up_proj.weight", [2048, 7168]
    assert dsr1.generator.shape_of(name) == shape
    for idx in (0, 1, 7168, 2048 * 7168 - 1):
        want = float(generator_py.generate_range(1, name, shape, idx, 1)[0])
        assert dsr1.generator.value(1, name, idx) == want
    t = dsr1.generator.tensor(5, "model.layers.0.input_layernorm.weight", [7168])
    assert t.dtype == np.float32
    assert np.array_equal(t, np.asarray(generator_py.generate(5, "model.layers.0.input_layernorm.weight", [7168]),
                                        dtype=np.float32))
    # and the weights of a golden set's checkpoint are the generator's
    g = SafetensorsFile(os.path.join(V3, "model.safetensors"))
    w = np.asarray(g.view("model.layers.1.self_attn.q_b_proj.weight"))
    man = json.load(open(os.path.join(V3, "manifest.json")))
    assert np.array_equal(dsr1.generator.tensor(man["seed"], "model.layers.1.self_attn.q_b_proj.weight", w.shape), w)


def test_every_golden_directory_loads_and_compares_with_itself():
    dirs = []
    for d, _, files in os.walk(os.path.join(ROOT, "golden")):
        if "manifest.json" in files:
            dirs.append(d)
    assert len(dirs) >= 5
    for d in dirs:
        rep = dsr1.compare(d, d)
        assert rep.ok and rep.missing == 0, f"{d}:\n{rep}"
        assert len(dsr1.load_golden(d).tensors) == len(rep.rows)


def test_type_stubs_name_the_real_api():
    """Every function and class of the .pyi stubs exists in the package, and vice versa for the
    public API (__all__), so editors complete what is there."""
    import ast
    pkg = os.path.dirname(dsr1.__file__)
    assert os.path.exists(os.path.join(pkg, "py.typed"))
    for mod, stub in ((dsr1, "__init__.pyi"), (dsr1.generator, "generator.pyi")):
        tree = ast.parse(open(os.path.join(pkg, stub)).read())
        names = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
        for n in names:
            assert hasattr(mod, n), f"{stub} names {n}, which {mod.__name__} does not have"
        for n in mod.__all__:
            assert n in names or n == "generator", f"{mod.__name__}.{n} has no stub in {stub}"
    import dsr1.torch as dsr1_torch
    tree = ast.parse(open(os.path.join(pkg, "torch.pyi")).read())
    for n in tree.body:
        if isinstance(n, (ast.FunctionDef, ast.ClassDef)) and not n.name.startswith("_"):
            assert hasattr(dsr1_torch, n.name), n.name

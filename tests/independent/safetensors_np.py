"""Safetensors reader (and a small writer for the self-test) using numpy only.

Reads every tensor as float64: F64, F32, F16, BF16 and F8_E4M3 (OCP e4m3fn), and applies the
128x128 block dequantisation of DeepSeek-V3 FP8 checkpoints (spec §10): a weight `X.weight`
stored as F8_E4M3 is multiplied block-wise by the float32 tensor `X.weight_scale_inv`.
Leaves out: writing FP8 (the self-test builds FP8 bytes by hand), any dtype the model does not use.

File layout (safetensors): 8-byte little-endian header length N, N bytes of JSON header
{name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}}, then the data
block; offsets are relative to the start of the data block, tensors are row-major little-endian.
A sharded checkpoint has model.safetensors.index.json with {"weight_map": {name: file}}.
"""

import json
import math
import os
import struct

import numpy as np

# Bytes per element of each dtype this reader decodes (to float64).
ITEMSIZE = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "F8_E4M3": 1}
# Other safetensors dtypes: their entries are validated (a dump may hold them) but not decoded.
OTHER_ITEMSIZE = {"I64": 8, "U64": 8, "I32": 4, "U32": 4, "I16": 2, "U16": 2, "I8": 1, "U8": 1,
                  "BOOL": 1, "F8_E5M2": 1}

# FP8 block size of DeepSeek-V3's quantization_config.weight_block_size (spec §10).
FP8_BLOCK = 128


class SafetensorsError(Exception):
    """A malformed file or a missing tensor; the message names the file and the tensor."""


def e4m3_value(byte):
    """Decodes one float8_e4m3fn byte, straight from the bit fields of spec §10.

    1 sign bit, 4 exponent bits (bias 7), 3 mantissa bits; exponent 0 is subnormal
    (2^-6 * m/8); exponent 15 with mantissa 7 is NaN; there are no infinities.
    """
    sign = -1.0 if (byte >> 7) & 1 else 1.0
    e = (byte >> 3) & 0xF
    m = byte & 0x7
    if e == 15 and m == 7:
        return float("nan")
    if e == 0:
        return sign * 2.0 ** -6 * (m / 8.0)
    return sign * 2.0 ** (e - 7) * (1.0 + m / 8.0)


# All 256 codes, decoded once; a tensor is decoded by indexing this table with its bytes.
E4M3_TABLE = np.array([e4m3_value(b) for b in range(256)], dtype=np.float64)


def decode(raw, dtype):
    """Raw little-endian bytes -> flat float64 array (every supported dtype is exact in float64)."""
    if dtype == "F64":
        return np.frombuffer(raw, dtype="<f8").astype(np.float64)
    if dtype == "F32":
        return np.frombuffer(raw, dtype="<f4").astype(np.float64)
    if dtype == "F16":
        return np.frombuffer(raw, dtype="<f2").astype(np.float64)
    if dtype == "BF16":
        # bf16 is the upper half of a float32: shift the 16 bits into place and reinterpret.
        bits = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
        return bits.view(np.float32).astype(np.float64)
    if dtype == "F8_E4M3":
        return E4M3_TABLE[np.frombuffer(raw, dtype=np.uint8)]
    raise SafetensorsError(f"unsupported dtype {dtype}")


def block_dequant(w, scale_inv, name="weight"):
    """W[r][c] = Wq[r][c] * S[r // 128][c // 128]   (spec §10, P13: multiply, edge blocks too).

    w: [out, in] decoded FP8 values; scale_inv: [ceil(out/128), ceil(in/128)].
    """
    rows, cols = w.shape
    want = (math.ceil(rows / FP8_BLOCK), math.ceil(cols / FP8_BLOCK))
    if tuple(scale_inv.shape) != want:
        raise SafetensorsError(
            f"{name}_scale_inv has shape {list(scale_inv.shape)}, expected {list(want)} "
            f"for a weight of shape {[rows, cols]} with 128x128 blocks")
    # Expand each scale over its 128x128 block, then crop the partial edge blocks.
    s_full = np.repeat(np.repeat(scale_inv, FP8_BLOCK, axis=0), FP8_BLOCK, axis=1)
    return w * s_full[:rows, :cols]


class SafetensorsFile:
    """One .safetensors file: the parsed header, and tensors decoded on request."""

    def __init__(self, path):
        self.path = path
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) != 8:
                raise SafetensorsError(f"{path}: shorter than the 8-byte header length")
            (n,) = struct.unpack("<Q", head)
            if n > size - 8:
                raise SafetensorsError(f"{path}: header length {n} runs past the file ({size} bytes)")
            try:
                header = json.loads(f.read(n).decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as e:
                raise SafetensorsError(f"{path}: header is not valid JSON: {e}") from None
        if not isinstance(header, dict):
            raise SafetensorsError(f"{path}: header is not a JSON object")
        self.data_start = 8 + n
        self.data_size = size - self.data_start
        self.metadata = header.pop("__metadata__", {})
        self.entries = {}
        for name, e in header.items():
            dtype, shape, off = e.get("dtype"), e.get("shape"), e.get("data_offsets")
            if dtype not in ITEMSIZE and dtype not in OTHER_ITEMSIZE:
                raise SafetensorsError(f"{path}: tensor {name} has unsupported dtype {dtype}")
            if not isinstance(shape, list) or any(not isinstance(s, int) or s < 0 for s in shape):
                raise SafetensorsError(f"{path}: tensor {name} has a bad shape {shape}")
            if not (isinstance(off, list) and len(off) == 2 and 0 <= off[0] <= off[1] <= self.data_size):
                raise SafetensorsError(
                    f"{path}: tensor {name} offsets {off} are outside the data block ({self.data_size} bytes)")
            nbytes = {**ITEMSIZE, **OTHER_ITEMSIZE}[dtype] * int(np.prod(shape, dtype=np.int64))
            if off[1] - off[0] != nbytes:
                raise SafetensorsError(
                    f"{path}: tensor {name} spans {off[1] - off[0]} bytes, expected {nbytes} "
                    f"for {dtype} {shape}")
            self.entries[name] = (dtype, tuple(shape), off[0], off[1])

    def names(self):
        return list(self.entries)

    def dtype(self, name):
        return self.entries[name][0]

    def shape(self, name):
        return self.entries[name][1]

    def raw(self, name):
        """The tensor decoded to float64 with its stored shape; no FP8 scale applied."""
        if name not in self.entries:
            raise SafetensorsError(f"{self.path}: no tensor named {name}")
        dtype, shape, begin, end = self.entries[name]
        if dtype not in ITEMSIZE:
            raise SafetensorsError(f"{self.path}: tensor {name} has dtype {dtype}, which is not a float dtype")
        with open(self.path, "rb") as f:
            f.seek(self.data_start + begin)
            data = f.read(end - begin)
        return decode(data, dtype).reshape(shape)


class Checkpoint:
    """A model directory: model.safetensors, or shards listed by model.safetensors.index.json.

    get(name) returns float64 with FP8 weights already block-dequantised by their scale.
    """

    def __init__(self, directory):
        self.directory = directory
        index = os.path.join(directory, "model.safetensors.index.json")
        single = os.path.join(directory, "model.safetensors")
        self.files = {}
        self.where = {}  # tensor name -> SafetensorsFile
        if os.path.exists(index):
            with open(index) as f:
                try:
                    weight_map = json.load(f)["weight_map"]
                except (json.JSONDecodeError, KeyError) as e:
                    raise SafetensorsError(f"{index}: not a safetensors index ({e})") from None
            for name, fname in weight_map.items():
                if fname not in self.files:
                    self.files[fname] = SafetensorsFile(os.path.join(directory, fname))
                if name not in self.files[fname].entries:
                    raise SafetensorsError(f"{index}: {name} is mapped to {fname}, which does not hold it")
                self.where[name] = self.files[fname]
        elif os.path.exists(single):
            st = SafetensorsFile(single)
            self.files["model.safetensors"] = st
            for name in st.names():
                self.where[name] = st
        else:
            raise SafetensorsError(f"{directory}: neither model.safetensors nor model.safetensors.index.json")

    def __contains__(self, name):
        return name in self.where

    def names(self):
        return list(self.where)

    def get(self, name):
        if name not in self.where:
            raise SafetensorsError(f"{self.directory}: missing tensor {name}")
        st = self.where[name]
        w = st.raw(name)
        if st.dtype(name) == "F8_E4M3":
            scale_name = name + "_scale_inv"
            if scale_name not in self.where:
                raise SafetensorsError(f"{self.directory}: FP8 tensor {name} has no {scale_name}")
            if w.ndim != 2:
                raise SafetensorsError(f"{self.directory}: FP8 tensor {name} is not a matrix: {list(w.shape)}")
            w = block_dequant(w, self.where[scale_name].raw(scale_name), name)
        return w


# ---- writer (self-test only) ---------------------------------------------------------------

def encode(values, dtype):
    """float64 array -> raw bytes in dtype. BF16 truncates, so callers pass exactly representable values."""
    a = np.ascontiguousarray(values)
    if dtype == "F64":
        return a.astype("<f8").tobytes()
    if dtype == "F32":
        return a.astype("<f4").tobytes()
    if dtype == "F16":
        return a.astype("<f2").tobytes()
    if dtype == "BF16":
        bits = a.astype(np.float32).view(np.uint32)
        return (bits >> 16).astype("<u2").tobytes()
    if dtype == "F8_E4M3":
        # values are e4m3 codes (0..255) already
        return a.astype(np.uint8).tobytes()
    raise SafetensorsError(f"cannot encode dtype {dtype}")


def write(path, tensors):
    """tensors: {name: (dtype, shape, raw bytes)} -> a .safetensors file."""
    header, blobs, offset = {}, [], 0
    for name, (dtype, shape, data) in tensors.items():
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header).encode("utf-8")
    text += b" " * ((8 - len(text) % 8) % 8)  # keep the data block 8-byte aligned
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)

"""Safetensors reader and streaming writer using numpy only.

Reads every tensor as float64: F64, F32, F16, BF16 and F8_E4M3 (OCP e4m3fn), and applies the
128x128 block dequantisation of DeepSeek-V3 FP8 checkpoints (spec §10): a weight `X.weight`
stored as F8_E4M3 is multiplied block-wise by the float32 tensor `X.weight_scale_inv`.
Leaves out: any dtype the model does not use.

Streaming: nothing is read when a file is opened but its header. A tensor, or a range of its
rows, is an np.memmap view of exactly those bytes, mapped when asked for and unmapped when the
caller drops it, so a full-width checkpoint (~6 GB) is read a block of rows at a time and the
process holds only the rows it is computing with. Tensors may lie in the file in any order
(a scale before its weight) and in any shard.

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


# How each dtype is stored: the numpy dtype of its little-endian elements. BF16 is kept as its
# 16 raw bits and F8_E4M3 as its byte codes; decode() turns them into values.
STORED = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "BF16": "<u2", "F8_E4M3": np.uint8}


def decode(stored, dtype):
    """Stored elements (an array of STORED[dtype], any shape) -> float64 values, same shape.

    Every supported dtype is exact in float64.
    """
    if dtype in ("F64", "F32", "F16"):
        return np.asarray(stored).astype(np.float64)
    if dtype == "BF16":
        # bf16 is the upper half of a float32: shift the 16 bits into place and reinterpret.
        bits = np.asarray(stored).astype(np.uint32) << 16
        return bits.view(np.float32).astype(np.float64)
    if dtype == "F8_E4M3":
        return E4M3_TABLE[stored]
    raise SafetensorsError(f"unsupported dtype {dtype}")


def scale_grid(rows, cols):
    """Shape of the weight_scale_inv of a [rows, cols] FP8 weight: one scale per 128x128 block."""
    return (math.ceil(rows / FP8_BLOCK), math.ceil(cols / FP8_BLOCK))


def block_dequant(w, scale_inv, name="weight", first_row=0, total_rows=None):
    """W[r][c] = Wq[r][c] * S[r // 128][c // 128]   (spec §10, P13: multiply, edge blocks too).

    w: rows first_row .. first_row + n - 1 of an FP8 weight with total_rows rows (default: w is
    the whole weight), decoded: [n, in]; scale_inv: the weight's whole scale grid,
    [ceil(total_rows/128), ceil(in/128)].
    """
    n, cols = w.shape
    total_rows = first_row + n if total_rows is None else total_rows
    want = scale_grid(total_rows, cols)
    if tuple(scale_inv.shape) != want:
        raise SafetensorsError(
            f"{name}_scale_inv has shape {list(scale_inv.shape)}, expected {list(want)} "
            f"for a weight of shape {[total_rows, cols]} with 128x128 blocks")
    # The scale row of each weight row, then each scale repeated over its 128 columns (the last
    # block of a row may be partial: crop to the weight's width).
    s_rows = scale_inv[np.arange(first_row, first_row + n) // FP8_BLOCK]          # [n, ceil(in/128)]
    return w * np.repeat(s_rows, FP8_BLOCK, axis=1)[:, :cols]


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

    def view(self, name, first_row=0, end_row=None):
        """Rows first_row .. end_row - 1 of a tensor as stored (STORED[dtype], no decoding), an
        np.memmap of just those bytes: the pages are read when the view is used and released
        when it is dropped. Rows are along the first axis; a 1-D tensor's rows are its elements.
        """
        if name not in self.entries:
            raise SafetensorsError(f"{self.path}: no tensor named {name}")
        dtype, shape, begin, _ = self.entries[name]
        if dtype not in ITEMSIZE:
            raise SafetensorsError(f"{self.path}: tensor {name} has dtype {dtype}, which is not a float dtype")
        n_rows = shape[0] if shape else 1
        end_row = n_rows if end_row is None else end_row
        if not 0 <= first_row <= end_row <= n_rows:
            raise SafetensorsError(f"{self.path}: rows {first_row}..{end_row} of {name} are outside 0..{n_rows}")
        row_shape = tuple(shape[1:])
        row_bytes = ITEMSIZE[dtype] * int(np.prod(row_shape, dtype=np.int64))
        rows_shape = ((end_row - first_row,) + row_shape) if shape else ()
        if row_bytes * (end_row - first_row) == 0:
            return np.zeros(rows_shape, dtype=STORED[dtype])    # mmap cannot map 0 bytes
        return np.memmap(self.path, dtype=STORED[dtype], mode="r", shape=rows_shape,
                         offset=self.data_start + begin + first_row * row_bytes)

    def raw(self, name, first_row=0, end_row=None):
        """Rows of a tensor decoded to float64 (the whole tensor by default); no FP8 scale applied."""
        return decode(self.view(name, first_row, end_row), self.entries[name][0])


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

    def shape(self, name):
        return self._file(name).shape(name)

    def _file(self, name):
        if name not in self.where:
            raise SafetensorsError(f"{self.directory}: missing tensor {name}")
        return self.where[name]

    def rows(self, name, first_row=0, end_row=None):
        """Rows first_row .. end_row - 1 of a tensor (all by default) as float64, FP8 weights
        multiplied by their block scales. Reads those rows only (and the small scale grid)."""
        st = self._file(name)
        w = st.raw(name, first_row, end_row)
        if st.dtype(name) == "F8_E4M3":
            scale_name = name + "_scale_inv"
            if scale_name not in self.where:
                raise SafetensorsError(f"{self.directory}: FP8 tensor {name} has no {scale_name}")
            if w.ndim != 2:
                raise SafetensorsError(f"{self.directory}: FP8 tensor {name} is not a matrix: {list(st.shape(name))}")
            scale = self.where[scale_name].raw(scale_name)
            w = block_dequant(w, scale, name, first_row, st.shape(name)[0])
        return w

    def get(self, name):
        """The whole tensor as float64 (FP8 dequantised). For large matrices use rows()."""
        return self.rows(name)

    def take(self, name, row_ids):
        """Rows row_ids (any order, repeats allowed) of a matrix, e.g. the embedding rows of a
        token list: each row is read on its own, the rest of the matrix is never touched."""
        return np.stack([self.rows(name, int(r), int(r) + 1)[0] for r in row_ids])


# ---- writer (checkpoints for the checks) ----------------------------------------------------

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


def write_streaming(path, entries, chunks):
    """Writes a .safetensors file without holding its tensors: entries is [(name, dtype, shape)]
    in the order their data is laid out, chunks(name) yields that tensor's bytes in pieces (e.g.
    128 rows at a time), which are written as they come.

    The header lists the tensors sorted by name, as the safetensors library does, so a data
    order other than the name order (a scale before its weight) reaches the reader.
    """
    header, offset = {}, 0
    for name, dtype, shape in entries:
        nbytes = ITEMSIZE[dtype] * int(np.prod(shape, dtype=np.int64))
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    text = json.dumps(dict(sorted(header.items()))).encode("utf-8")
    text += b" " * ((8 - len(text) % 8) % 8)  # keep the data block 8-byte aligned
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for name, _, _ in entries:
            begin, end = header[name]["data_offsets"]
            written = 0
            for piece in chunks(name):
                f.write(piece)
                written += len(piece)
            if written != end - begin:
                raise SafetensorsError(f"{path}: {name} got {written} bytes of data, expected {end - begin}")


def write(path, tensors):
    """tensors: {name: (dtype, shape, raw bytes)} -> a .safetensors file, data in dict order."""
    write_streaming(path, [(name, dtype, shape) for name, (dtype, shape, _) in tensors.items()],
                    lambda name: [tensors[name][2]])

# Type stubs of the dsr1 package (reference/python/dsr1/__init__.py documents every call).
import os
from typing import Any, Iterable, Mapping, Optional, Sequence, Union

import numpy as np
import numpy.typing as npt

from . import generator as generator
from . import torch as torch

__version__: str

PathLike = Union[str, "os.PathLike[str]"]
TensorLike = Any  # a numpy array or a torch tensor
TensorSetLike = Union[PathLike, Mapping[str, TensorLike], "Golden", "RunResult", Any]

def presets() -> list[str]: ...
def tolerance_presets() -> list[str]: ...

class RunResult:
    logits: npt.NDArray[Any]
    tensors: dict[str, npt.NDArray[Any]]
    mtp_logits: Optional[npt.NDArray[Any]]
    seconds: float
    peak_rss_bytes: float

class Model:
    config: dict[str, Any]
    name: str
    def __init__(self, preset: Optional[str] = None, model: Optional[PathLike] = None,
                 config: Optional[PathLike] = None, seed: int = 1) -> None: ...
    def info(self) -> dict[str, Any]: ...
    def run(self, tokens: Union[Sequence[int], npt.NDArray[np.integer[Any]], Any],
            trace: Union[None, str, Iterable[str]] = None, fast: bool = False, attn: Optional[str] = None,
            decode_from: Optional[int] = None, mtp: bool = False, threads: int = 0,
            progress: Optional[bool] = None) -> RunResult: ...

class Golden:
    path: str
    manifest: dict[str, Any]
    config: Optional[dict[str, Any]]
    tokens: Optional[npt.NDArray[np.int64]]
    tensors: dict[str, npt.NDArray[np.float64]]
    dtypes: dict[str, str]

def load_golden(path: PathLike) -> Golden: ...

class Divergence:
    name: str
    status: str
    index: tuple[int, ...]
    layer: Optional[str]
    head: Optional[int]
    position: Optional[int]
    key_position: Optional[int]
    element: Optional[int]
    reference: Optional[float]
    candidate: Optional[float]
    values: tuple[Optional[float], Optional[float]]
    text: str
    notes: list[str]

class TensorRow:
    name: str
    status: str
    passed: bool
    reference_shape: tuple[int, ...]
    candidate_shape: tuple[int, ...]
    reference_dtype: Optional[str]
    candidate_dtype: Optional[str]
    max_abs: Optional[float]
    max_rel: Optional[float]
    nmse: Optional[float]
    cos_diff: Optional[float]
    rtol: Optional[float]
    atol: Optional[float]
    tolerance_preset: Optional[str]
    compared: Optional[int]
    failed: Optional[int]
    worst: Optional[dict[str, Any]]
    notes: list[str]
    first_divergence: bool

class Report:
    text: str
    json: dict[str, Any]
    ok: bool
    rows: list[TensorRow]
    missing: int
    only_in_candidate: list[str]
    first_divergence: Optional[Divergence]
    def __bool__(self) -> bool: ...

def compare(reference: TensorSetLike, candidate: TensorSetLike, preset: Optional[str] = None,
            names: Union[None, str, Iterable[str]] = None, all: bool = False,
            config: Optional[PathLike] = None) -> Report: ...

class Tokenizer:
    path: str
    vocab_size: int
    def __init__(self, path: Optional[PathLike] = None) -> None: ...
    def encode(self, text: Union[str, bytes]) -> list[int]: ...
    def decode(self, ids: Sequence[int]) -> str: ...
    def token_bytes(self, id: int) -> bytes: ...
    def id_of(self, token: str) -> Optional[int]: ...
    def is_special(self, id: int) -> bool: ...
    def pre_tokenize(self, text: Union[str, bytes]) -> list[str]: ...

# Type stubs of dsr1.generator (reference/python/dsr1/generator.py).
from typing import Optional, Sequence

import numpy as np
import numpy.typing as npt

def shape_of(name: str, preset: str = "deepseek-r1") -> list[int]: ...
def value(seed: int, name: str, index: int, shape: Optional[Sequence[int]] = None,
          preset: str = "deepseek-r1") -> float: ...
def tensor(seed: int, name: str, shape: Sequence[int]) -> npt.NDArray[np.float32]: ...

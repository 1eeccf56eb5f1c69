"""Shared set-up of the Python tests: the dsr1 program (DSR1_BIN, set by CTest) and a scratch
directory. The package itself comes from PYTHONPATH=build/python (reference/python/CMakeLists.txt)."""
import os
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="session")
def dsr1_bin():
    path = os.environ.get("DSR1_BIN", os.path.join(ROOT, "build", "dsr1"))
    assert os.path.exists(path), f"the dsr1 program is not at {path} (set DSR1_BIN)"
    return path


def run_cli(dsr1_bin, *args, check=True):
    r = subprocess.run([dsr1_bin, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if check and r.returncode != 0:
        raise AssertionError(f"dsr1 {' '.join(args)} exited {r.returncode}:\n{r.stdout}\n{r.stderr}")
    return r

"""Ctrl-C stops a long run within a second: the run releases the GIL and checks for signals
between layers, raising KeyboardInterrupt."""
import os
import re
import signal
import subprocess
import sys
import time

CHILD = r"""
import signal, sys
signal.signal(signal.SIGINT, signal.default_int_handler)   # even if the parent ignores SIGINT
import dsr1
m = dsr1.Model(preset="deepseek-v2-lite")
try:
    # 27 layers whose weights are generated as they run, a few experts each: about 3 s in all,
    # 0.1-0.3 s a layer (more tokens would route to more experts and make each layer longer)
    m.run([1, 2], progress=True)
    print("finished", flush=True)
except KeyboardInterrupt:
    print("KeyboardInterrupt", flush=True)
    sys.exit(3)
"""


def test_ctrl_c_stops_a_run_within_a_second():
    p = subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=os.environ)
    # Wait until the progress line shows the run past its first layer, so the run is under way.
    seen = b""
    deadline = time.monotonic() + 60
    while not re.search(rb"layer ([2-9]|1[0-9])/27", seen):
        chunk = os.read(p.stderr.fileno(), 4096)
        assert chunk and time.monotonic() < deadline, f"the run never got going: {seen!r}"
        seen += chunk
    sent = time.monotonic()
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=30)
    elapsed = time.monotonic() - sent
    assert b"finished" not in out, "the run finished: it was not interrupted"
    assert p.returncode == 3 and b"KeyboardInterrupt" in out, (p.returncode, out, err)
    assert elapsed < 1.5, f"KeyboardInterrupt came {elapsed:.2f} s after SIGINT"
    print(f"KeyboardInterrupt {elapsed:.3f} s after SIGINT")

#!/usr/bin/env python3
"""A golden set made from text records the prompt in its manifest (reference/tools/golden_set.hpp):
`dsr1 golden --text "Hello world"` on tiny-v3 given R1's vocabulary (so that the V3 tokenizer fits
and the set stays small) must write "prompt": {"text", "token_strings", ...} with the tokens the
official tokenizer gives for BOS + "Hello world" (0, 19923, 2058).
Usage: check_golden_prompt.py DSR1
"""
import json
import subprocess
import sys
import tempfile


def main():
    dsr1 = sys.argv[1]
    with tempfile.TemporaryDirectory() as d:
        subprocess.run([dsr1, "init-model", "--preset", "tiny-v3", "--out", f"{d}/m"], check=True, capture_output=True)
        with open(f"{d}/m/config.json") as f:
            config = json.load(f)
        config["vocab_size"] = 129280
        with open(f"{d}/tiny-r1-vocab.json", "w") as f:
            json.dump(config, f)
        subprocess.run([dsr1, "golden", "--config", f"{d}/tiny-r1-vocab.json", "--text", "Hello world",
                        "--out", f"{d}/g"], check=True, capture_output=True)
        with open(f"{d}/g/manifest.json") as f:
            m = json.load(f)
    p = m.get("prompt", {})
    print("prompt:", json.dumps(p, ensure_ascii=False), "tokens:", m["tokens"])
    ok = (p.get("kind") == "text" and p.get("text") == "Hello world"
          and p.get("token_strings") == ["<｜begin▁of▁sentence｜>", "Hello", " world"] and m["tokens"] == [0, 19923, 2058])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

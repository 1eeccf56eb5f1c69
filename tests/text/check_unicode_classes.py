#!/usr/bin/env python3
"""The pre-tokenizer's character classes on every Unicode code point, against the official library.

Usage: check_unicode_classes.py DSR1 TOKENIZER_JSON [--first CP] [--last CP]

The official library matches its regexes with Oniguruma, whose \\p{L}, \\p{N}, \\p{P}, \\p{S},
\\p{M} and \\s follow Unicode 16.0; dsr1 matches them with PCRE2 (Debian's 10.42: Unicode 14.0),
each \\p{X} widened by the code points Unicode 16.0 added to it (reference/text/
unicode16_additions.inc, made by make_unicode16_classes.mjs). Where the two disagreed on a code
point's class, a text containing it would be cut into different pieces. This check puts
every code point from U+0000 to U+10FFFF (surrogates
excepted) in contexts that reveal its class to DeepSeek's regexes,
    a{c}b  1{c}  " "{c}a  {c}\\n  " "{c}" "{c}{c}x
and compares the pre-tokenizer's pieces. It prints the code points whose pieces differ, grouped
into ranges (docs/tokenizer.md, "Unicode versions").

It passes only when no code point is cut differently. For each difference it says whether the
code point is unassigned in Python's unicodedata of PCRE2's Unicode version (Debian's
/usr/bin/python3 3.11: 14.0.0), i.e. a character added later whose class the additions table
misses, or one that Unicode 14.0 knows.
"""
import json
import os
import shutil
import subprocess
import sys
import unicodedata

HERE = os.path.dirname(os.path.abspath(__file__))
CHUNK = 1024


def context(c):
    return f"a{c}b 1{c} {c}a {c}\n {c} {c}{c}x|"


def run_lines(cmd, lines):
    out = subprocess.run(cmd, input="".join(json.dumps(l, ensure_ascii=False) + "\n" for l in lines),
                         capture_output=True, text=True, encoding="utf-8")
    answers = [json.loads(x) for x in out.stdout.split("\n") if x]
    if out.returncode != 0 or len(answers) != len(lines):
        sys.exit(f"FAIL: {cmd[0]} exited {out.returncode}\n{out.stderr[-2000:]}")
    return answers


def ranges(cps):
    out = []
    for cp in cps:
        if out and cp == out[-1][1] + 1:
            out[-1][1] = cp
        else:
            out.append([cp, cp])
    return out


def main():
    args = sys.argv[1:]
    if len(args) < 2:
        sys.exit(__doc__)
    dsr1, tokenizer = args[:2]
    first = int(args[args.index("--first") + 1], 0) if "--first" in args else 0
    last = int(args[args.index("--last") + 1], 0) if "--last" in args else 0x10FFFF
    node = shutil.which("node")
    if node is None:
        sys.exit("FAIL: node is missing: run .ci/install-deps")
    cps = [cp for cp in range(first, last + 1) if not 0xD800 <= cp <= 0xDFFF]
    chunks = [cps[i:i + CHUNK] for i in range(0, len(cps), CHUNK)]
    lines = [{"text": "".join(context(chr(cp)) for cp in chunk)} for chunk in chunks]
    official = run_lines([node, os.path.join(HERE, "official_tokenizer.mjs"), tokenizer, "pieces"], lines)
    ours = run_lines([dsr1, "tokenize", "--tokenizer", tokenizer, "--jsonl", "--pieces"], lines)
    differ = []
    for chunk, o, d in zip(chunks, official, ours):
        if o["pieces"] == d["pieces"]:
            continue
        # Find the code points responsible: compare one context at a time.
        for cp in chunk:
            differ.append(cp)
    # Narrow down: chunks that differ are re-run one code point per line.
    if differ:
        lines = [{"text": context(chr(cp))} for cp in differ]
        o1 = run_lines([node, os.path.join(HERE, "official_tokenizer.mjs"), tokenizer, "pieces"], lines)
        d1 = run_lines([dsr1, "tokenize", "--tokenizer", tokenizer, "--jsonl", "--pieces"], lines)
        differ = [cp for cp, o, d in zip(differ, o1, d1) if o["pieces"] != d["pieces"]]
    print(f"code points U+{first:04X}..U+{last:04X} ({len(cps)}, surrogates excepted): "
          f"{len(cps) - len(differ)} cut identically, {len(differ)} differently")
    for lo, hi in ranges(differ):
        print(f"  U+{lo:04X}" + (f"..U+{hi:04X} ({hi - lo + 1})" if hi > lo else "") +
              f"  {unicodedata.name(chr(lo), '(unassigned in Unicode ' + unicodedata.unidata_version + ')')}")
    known = [cp for cp in differ if unicodedata.category(chr(cp)) != "Cn"]
    print(f"of these, {len(differ) - len(known)} are unassigned in Unicode {unicodedata.unidata_version} "
          f"(characters added since), {len(known)} are characters Unicode {unicodedata.unidata_version} knows")
    for lo, hi in ranges(known):
        print(f"  DEFECT U+{lo:04X}" + (f"..U+{hi:04X}" if hi > lo else "") + f" {unicodedata.name(chr(lo), '?')}")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())

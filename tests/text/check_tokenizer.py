#!/usr/bin/env python3
"""dsr1's tokenizer against the official Hugging Face tokenizers library, on the corpus.

Usage: check_tokenizer.py DSR1 TOKENIZER_JSON

Runs tests/text/corpus.py's texts (>= 400: every script, whitespace, digits, code, emoji, special
tokens, very long words, documents, the empty string) through
  - the official library (npm `tokenizers`, Rust core; tests/text/official_tokenizer.mjs), and
  - `dsr1 tokenize --jsonl`,
and requires, text by text:
  1. identical ids and identical token strings;
  2. `dsr1 detokenize --jsonl` of those ids gives the text back exactly (decode(encode(x)) == x),
     and the official decode gives the same string;
  3. on 300 random id sequences (cut multi-byte characters, special tokens, any id in range),
     dsr1's decode equals the official decode (U+FFFD replacement included).
Prints a summary; on a difference, the first few texts that differ with both tokenizations.
Exit 0 when all agree, 1 otherwise (also when node or the npm package is missing: run
.ci/install-deps).
"""
import json
import os
import random
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def run_lines(cmd, lines):
    out = subprocess.run(cmd, input="".join(json.dumps(l, ensure_ascii=False) + "\n" for l in lines),
                         capture_output=True, text=True, encoding="utf-8")
    answers = [json.loads(x) for x in out.stdout.split("\n") if x]
    if out.returncode != 0 or len(answers) != len(lines):
        sys.exit(f"FAIL: {' '.join(cmd[:3])}... exited {out.returncode} with {len(answers)} answers for "
                 f"{len(lines)} lines\n{out.stderr[-2000:]}")
    return answers


def short(s, n=120):
    s = json.dumps(s, ensure_ascii=False)
    return s if len(s) <= n else s[:n] + f"... ({len(s)} chars)"


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    dsr1, tokenizer = sys.argv[1:]
    node = shutil.which("node")
    if node is None or not os.path.isdir(os.path.join(HERE, "../npm/node_modules/tokenizers")):
        sys.exit("FAIL: node or the npm package `tokenizers` is missing: run .ci/install-deps")
    corpus = subprocess.run([sys.executable, os.path.join(HERE, "corpus.py")], capture_output=True,
                            text=True, encoding="utf-8", check=True).stdout
    texts = [json.loads(l)["text"] for l in corpus.split("\n") if l]
    official_cmd = [node, os.path.join(HERE, "official_tokenizer.mjs"), tokenizer]
    lines = [{"text": t} for t in texts]

    t0 = time.time()
    official = run_lines(official_cmd + ["encode"], lines)
    t1 = time.time()
    ours = run_lines([dsr1, "tokenize", "--tokenizer", tokenizer, "--jsonl"], lines)
    t2 = time.time()
    bad = [i for i in range(len(texts)) if official[i]["ids"] != ours[i]["ids"] or official[i]["tokens"] != ours[i]["tokens"]]
    total_bytes = sum(len(t.encode("utf-8")) for t in texts)
    total_tokens = sum(len(o["ids"]) for o in official)
    print(f"corpus: {len(texts)} texts, {total_bytes} bytes, {total_tokens} tokens "
          f"(official {t1 - t0:.2f} s, dsr1 {t2 - t1:.2f} s, process start included)")
    if bad:
        pieces = run_lines(official_cmd + ["pieces"], [lines[i] for i in bad[:5]])
        ours_pieces = run_lines([dsr1, "tokenize", "--tokenizer", tokenizer, "--jsonl", "--pieces"],
                                [lines[i] for i in bad[:5]])
        for k, i in enumerate(bad[:5]):
            o, d = official[i], ours[i]
            first = next((j for j in range(min(len(o["ids"]), len(d["ids"]))) if o["ids"][j] != d["ids"][j]),
                         min(len(o["ids"]), len(d["ids"])))
            print(f"DIFFERENT ids, text {i}: {short(texts[i])}\n  at token {first}: official "
                  f"{o['tokens'][first:first + 6]} {o['ids'][first:first + 6]}\n"
                  f"                   dsr1     {d['tokens'][first:first + 6]} {d['ids'][first:first + 6]}\n"
                  f"  official pieces {short(pieces[k]['pieces'], 400)}\n  dsr1 pieces     {short(ours_pieces[k]['pieces'], 400)}")
    print(f"1. ids and token strings identical on {len(texts) - len(bad)} of {len(texts)} texts")

    # 2. Round trip, and the decoders agree.
    ids_lines = [{"ids": d["ids"]} for d in ours]
    decoded = run_lines([dsr1, "detokenize", "--tokenizer", tokenizer, "--jsonl"], ids_lines)
    official_decoded = run_lines(official_cmd + ["decode"], ids_lines)
    not_back = [i for i in range(len(texts)) if decoded[i]["text"] != texts[i]]
    decoders_differ = [i for i in range(len(texts)) if decoded[i]["text"] != official_decoded[i]["text"]]
    for i in not_back[:5]:
        print(f"NOT BACK, text {i}: {short(texts[i])}\n  decoded to {short(decoded[i]['text'])}")
    print(f"2. decode(encode(x)) == x on {len(texts) - len(not_back)} of {len(texts)} texts; "
          f"dsr1's decode equals the official decode on {len(texts) - len(decoders_differ)}")

    # 3. Decoding arbitrary id sequences (cut characters, specials) as the official library does.
    rng = random.Random(29)
    with open(tokenizer, encoding="utf-8") as f:
        spec = json.load(f)
    model_ids = list(spec["model"]["vocab"].values())
    added_ids = [a["id"] for a in spec.get("added_tokens") or []] or model_ids
    vocab_size = max(model_ids + added_ids) + 1
    pick = [lambda: rng.randrange(vocab_size),  # any token
            lambda: rng.randrange(min(vocab_size, 1000)),  # short tokens: single bytes cut characters
            lambda: rng.choice(added_ids)]  # special and added tokens
    random_ids = [{"ids": [rng.choice(pick)() for _ in range(rng.randint(0, 30))]} for _ in range(300)]
    ours_random = run_lines([dsr1, "detokenize", "--tokenizer", tokenizer, "--jsonl"], random_ids)
    official_random = run_lines(official_cmd + ["decode"], random_ids)
    random_differ = [i for i in range(len(random_ids)) if ours_random[i]["text"] != official_random[i]["text"]]
    for i in random_differ[:5]:
        print(f"DECODE DIFFERS on ids {random_ids[i]['ids']}\n  official {short(official_random[i]['text'])}\n"
              f"  dsr1     {short(ours_random[i]['text'])}")
    print(f"3. decode of {len(random_ids)} random id sequences: {len(random_ids) - len(random_differ)} equal to the official")

    ok = not bad and not not_back and not decoders_differ and not random_differ and len(texts) >= 400
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

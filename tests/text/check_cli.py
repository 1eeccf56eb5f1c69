#!/usr/bin/env python3
"""`dsr1 tokenize` and `dsr1 detokenize` from the command line: the JSON Lines protocol and bad input.

Usage: check_cli.py DSR1 TOKENIZER_JSON WORKDIR

Checks (each can fail): one output line per input line, in order, with {"error": "line N: ..."}
in place of a bad line and exit status 1; --text and --file print ids and token strings; the
empty text gives no tokens; invalid UTF-8 is refused naming its byte offset; ids outside the
vocabulary are refused naming the id; a missing tokenizer, a --model DIR without tokenizer.json
and a malformed tokenizer.json are refused naming the file. No crash anywhere.
"""
import json
import os
import subprocess
import sys

failures = []


def check(what, ok, detail=""):
    print(("ok   " if ok else "FAIL ") + what + ("" if ok else f"\n     {detail}"))
    if not ok:
        failures.append(what)


def run(args, stdin=b""):
    p = subprocess.run(args, input=stdin, capture_output=True)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def main():
    dsr1, tok, work = sys.argv[1:4]
    os.makedirs(work, exist_ok=True)
    T = ["--tokenizer", tok]

    lines = ['{"text": "Hello world"}', '{"text": 5}', 'not json', '{"text": ""}', '[1]',
             '{"messages": 3}', '{"text": "<｜User｜>hi"}']
    rc, out, err = run([dsr1, "tokenize", *T, "--jsonl"], ("\n".join(lines) + "\n").encode())
    answers = [json.loads(x) for x in out.split("\n") if x]
    check("tokenize --jsonl: one answer per line, in order", len(answers) == len(lines), out)
    if len(answers) == len(lines):
        check("tokenize --jsonl: a text line gives ids and tokens",
              answers[0].get("tokens") == ["Hello", "Ġworld"] and len(answers[0]["ids"]) == 2, answers[0])
        check("tokenize --jsonl: bad lines give an error naming their line number",
              all(a.get("error", "").startswith(f"line {n}:") for n, a in [(2, answers[1]), (3, answers[2]), (5, answers[4]), (6, answers[5])]),
              answers)
        check("tokenize --jsonl: the empty text gives no ids", answers[3] == {"ids": [], "tokens": []}, answers[3])
        check("tokenize --jsonl: special-token text becomes its id", answers[6]["ids"][0] == 128803, answers[6])
    check("tokenize --jsonl: exit status 1 when a line was bad", rc == 1, rc)

    rc, out, err = run([dsr1, "detokenize", *T, "--jsonl"], b'{"ids": [19923, 2058]}\n{"ids": [1, 999999]}\n{"ids": "x"}\n{"ids": []}\n')
    answers = [json.loads(x) for x in out.split("\n") if x]
    check("detokenize --jsonl: text back, errors in place, in order",
          len(answers) == 4 and answers[0] == {"text": "Hello world"} and "line 2:" in answers[1].get("error", "")
          and "999999" in answers[1]["error"] and "line 3:" in answers[2].get("error", "") and answers[3] == {"text": ""}, out)

    rc, out, err = run([dsr1, "tokenize", *T, "--text", "The capital of France is"])
    check("tokenize --text prints ids and token strings",
          rc == 0 and "ids: 671,6102,294,8760,344" in out and '" capital"' in out, out + err)
    rc, out, err = run([dsr1, "tokenize", *T, "--text", ""])
    check("tokenize --text '': no tokens, no error", rc == 0 and "-> 0 tokens" in out, out + err)

    bad = os.path.join(work, "bad-utf8.txt")
    with open(bad, "wb") as f:
        f.write(b"caf\xc3\xa9 \xff!")
    rc, out, err = run([dsr1, "tokenize", *T, "--file", bad])
    check("tokenize --file with invalid UTF-8: refused at byte offset 6", rc == 1 and "byte offset 6" in err, err)

    rc, out, err = run([dsr1, "detokenize", *T, "--ids", "1,128815"])
    check("detokenize --ids out of range: refused naming the id", rc == 1 and "128815" in err and "outside" in err, err)
    rc, out, err = run([dsr1, "detokenize", *T, "--ids", "1,-2"])
    check("detokenize --ids negative: refused", rc == 1 and "-2" in err, err)

    rc, out, err = run([dsr1, "tokenize", "--tokenizer", os.path.join(work, "missing.json"), "--text", "x"])
    check("a missing --tokenizer file is named", rc == 1 and "missing.json" in err, err)
    rc, out, err = run([dsr1, "tokenize", "--model", work, "--text", "x"])
    check("--model DIR without tokenizer.json is named", rc == 1 and "tokenizer.json" in err and work in err, err)
    broken = os.path.join(work, "broken.json")
    with open(broken, "w") as f:
        f.write('{"model": {"type": "WordPiece", "vocab": {}}, "decoder": {"type": "WordPiece"}}')
    rc, out, err = run([dsr1, "tokenize", "--tokenizer", broken, "--text", "x"])
    check("an unsupported tokenizer.json is refused naming the file and the feature",
          rc == 1 and "broken.json" in err and "WordPiece" in err, err)
    print("PASS" if not failures else f"FAIL: {len(failures)} checks")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

"""dsr1.Tokenizer gives the ids of `dsr1 tokenize` and the text of `dsr1 detokenize` (which
tests/text/check_tokenizer.py holds to the official Hugging Face tokenizers library)."""
import json
import os
import re
import subprocess
import sys

import pytest

import dsr1
from conftest import ROOT, run_cli

sys.path.insert(0, os.path.join(ROOT, "tests", "text"))
from corpus import families  # noqa: E402

SAMPLES = ["Hello, world!", "  leading spaces and\ttabs\n\nnew lines", "数字 12345 and 3.14159",
           "<｜begin▁of▁sentence｜><｜User｜>What is 2+2?<｜Assistant｜>", "emoji 🙂👍🏽 done", "ümlaut café naïve"]


@pytest.fixture(scope="module")
def tok():
    return dsr1.Tokenizer()


def cli_ids(dsr1_bin, text):
    out = run_cli(dsr1_bin, "tokenize", "--text", text).stdout
    return [int(x) for x in re.search(r"^ids: ([0-9,]*)$", out, re.M).group(1).split(",") if x]


@pytest.mark.parametrize("text", SAMPLES)
def test_encode_equals_dsr1_tokenize(dsr1_bin, tok, text):
    ids = tok.encode(text)
    assert ids == cli_ids(dsr1_bin, text)
    assert tok.decode(ids) == text
    assert run_cli(dsr1_bin, "detokenize", "--ids", ",".join(map(str, ids))).stdout == text + "\n"


def test_corpus_equals_dsr1_tokenize_jsonl(dsr1_bin, tok):
    """The whole corpus of tests/text (scripts, emoji, code, special tokens, long documents)."""
    texts = [t for fam in families().values() for t in fam]
    assert len(texts) > 500
    stdin = "".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in texts)
    out = subprocess.run([dsr1_bin, "tokenize", "--jsonl"], input=stdin, stdout=subprocess.PIPE, text=True,
                         check=True).stdout.splitlines()
    assert len(out) == len(texts)
    for t, line in zip(texts, out):
        ids = tok.encode(t)
        assert ids == json.loads(line)["ids"], t[:80]
        assert tok.decode(ids) == t


def test_vocabulary(tok):
    assert tok.vocab_size > 128000
    bos = tok.id_of("<｜begin▁of▁sentence｜>")
    assert bos is not None and tok.is_special(bos)
    assert tok.token_bytes(tok.encode(" the")[0]) == b" the"
    assert tok.id_of("no such token at all") is None


def test_bad_input(tok):
    with pytest.raises(ValueError, match="UTF-8"):
        tok.encode(b"abc\xff")
    with pytest.raises(ValueError, match=str(tok.vocab_size + 5)):
        tok.decode([1, tok.vocab_size + 5])
    with pytest.raises(FileNotFoundError):
        dsr1.Tokenizer("no/such/tokenizer.json")

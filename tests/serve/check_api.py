#!/usr/bin/env python3
"""The explorer's API against bad requests, as a client that is not the page would send them.

Starts `dsr1 serve` on a free loopback port (--port 0, the address read from its stdout) and
checks: a malformed body, a body that is not an object, unknown and mistyped fields, a prompt over
the limit, an id out of the vocabulary, a body over the size limit, a POST that is not JSON, an
unknown layer, head or token, paths that try to leave the API, a foreign Host header (DNS
rebinding): each a 4xx with a JSON message saying what was expected. Then a second run while one
computes is refused naming the first, and both finish in turn. With --broken-checkpoint, a server
on a checkpoint whose weights file is cut short: the run fails, its error is reported, and the
server goes on answering.

Usage: check_api.py --dsr1 build/dsr1 --workdir DIR -- MODEL ARGS (e.g. --preset tiny-v3)
       check_api.py --dsr1 build/dsr1 --workdir DIR --broken-checkpoint
Exit status 0 if every check passes; else 1, one line per failure.
"""
import argparse
import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import time

failures = []


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what)
    if not ok:
        failures.append(what)


class Server:
    def __init__(self, dsr1, model_args):
        self.proc = subprocess.Popen([dsr1, "serve", *model_args, "--port", "0"], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        m = re.match(r"dsr1 serve: http://127\.0\.0\.1:(\d+)/", line)
        if not m:
            self.proc.kill()
            raise SystemExit(f"dsr1 serve printed no address: {line!r} {self.proc.stderr.read()}")
        self.port = int(m.group(1))

    def request(self, method, path, body=None, headers=None):
        """(status, parsed JSON or text) of one request on a fresh connection."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        h = {"Content-Type": "application/json"} if body is not None else {}
        h.update(headers or {})
        conn.request(method, path, body=body, headers=h)
        r = conn.getresponse()
        data = r.read().decode("utf-8", "replace")
        conn.close()
        if r.getheader("Content-Type", "").startswith("application/json"):
            return r.status, json.loads(data)
        return r.status, data

    def wait_done(self, seconds=600):
        deadline = time.time() + seconds
        while time.time() < deadline:
            _, s = self.request("GET", "/api/status")
            if s["state"] != "running":
                return s
            time.sleep(0.1)
        raise SystemExit("the run did not finish in time")

    def stop(self):
        self.proc.terminate()
        code = self.proc.wait(timeout=60)
        check(code == 0, f"the server stops cleanly on SIGTERM (exit {code})")


def refused(server, method, path, status, pattern, body=None, headers=None):
    got, j = server.request(method, path, body, headers)
    message = j.get("error", "") if isinstance(j, dict) else str(j)
    check(got == status and re.search(pattern, message) is not None,
          f"{method} {path[:40]}{' ' + body[:40] if body else ''} -> {got} {message[:110]!r}")


def bad_requests(server):
    refused(server, "GET", "/api/run", 404, r"^no run yet: POST /api/run first$")
    refused(server, "GET", "/api/layer/0", 404, r"^no run yet")
    refused(server, "POST", "/api/run", 400, r"^the request body is not valid JSON", body='{"tokens": [1, 2')
    refused(server, "POST", "/api/run", 400, r"^the request body is a JSON array, expected an object$", body="[1]")
    refused(server, "POST", "/api/run", 400, r"^unknown field 'file' \(known: tokens, text, messages, add_generation_prompt, attn, mtp\)$",
            body='{"tokens": "1", "file": "/etc/passwd"}')
    refused(server, "POST", "/api/run", 400, r"^tokens\[0\]: \"1\" is not an integer token id$", body='{"tokens": ["1"]}')
    refused(server, "POST", "/api/run", 400, r"^tokens: the prompt is empty", body='{"tokens": ""}')
    refused(server, "POST", "/api/run", 400, r"^tokens: 33 tokens, more than this server's limit of 32",
            body=json.dumps({"tokens": ",".join(["1"] * 33)}))
    refused(server, "POST", "/api/run", 400, r"^tokens: id 1000000 at position 1 is out of range: '[^']+' has vocab_size \d+",
            body='{"tokens": "1,1000000"}')
    refused(server, "POST", "/api/run", 400, r'^attn: expected "naive" or "absorbed", got "fast"$',
            body='{"tokens": "1", "attn": "fast"}')
    refused(server, "POST", "/api/run", 413, r"^the request body is larger than this server's limit of 16384 bytes$",
            body=json.dumps({"tokens": "1", "pad": "x" * 20000}))
    refused(server, "POST", "/api/run", 415, r"^POST /api/run takes a JSON body with Content-Type: application/json$",
            body='{"tokens": "1"}', headers={"Content-Type": "text/plain"})
    refused(server, "GET", "/api/nothing", 404, r"^no such page or API endpoint: GET /api/nothing$")
    refused(server, "GET", "/docs/../../etc/passwd", 404, r"no such page")
    refused(server, "GET", "/docs/secrets.md", 404, r"^no docs page 'secrets' here$")
    refused(server, "GET", "/api/status", 403, r"answers only requests addressed to it \(Host 'evil\.example' is not a loopback name\)",
            headers={"Host": "evil.example:80"})
    got, text = server.request("GET", "/docs/mla.md")
    check(got == 200 and isinstance(text, str) and text.startswith("# "), "GET /docs/mla.md serves the docs page")
    got, page = server.request("GET", "/")
    check(got == 200 and "<title>dsr1 explorer</title>" in page, "GET / serves the page")


def runs(server, tokens, layers):
    """Two runs one after the other; a second one while the first computes is refused."""
    got, j = server.request("POST", "/api/run", body=json.dumps({"tokens": tokens}))
    check(got == 202 and j.get("run") == 1, f"POST /api/run {tokens} -> {got} {j}")
    got, j = server.request("POST", "/api/run", body=json.dumps({"tokens": "1,2"}))
    check(got == 409 and re.match(r"^run 1 \(token ids of \d+ tokens?, naive attention\) is still computing \((opening the weights|main "
                                  r"pass, \d+ of " + str(layers) + r" layers done), started \d+ s ago\)\. This server runs "
                                  r"one prompt at a time", j.get("error", "")),
          f"a second POST /api/run while run 1 computes -> {got} {j.get('error', '')[:120]!r}")
    refused(server, "GET", "/api/run", 409, r"^run 1 is still computing")
    s = server.wait_done()
    check(s["state"] == "done" and s["run"] == 1, f"run 1 finished: {s['state']} in {s['seconds']:.2f} s")
    refused(server, "GET", "/api/layer/%d" % layers, 404, r"^layer '%d' does not exist: '[^']+' has layers 0\.\.%d" % (layers, layers - 1))
    refused(server, "GET", "/api/layer/x1", 404, r"^layer 'x1' does not exist")
    refused(server, "GET", "/api/layer/mtp", 404, r"MTP")
    refused(server, "GET", "/api/layer/0?head=100000", 400, r"^head: '100000' is not a number in 0\.\.\d+$")
    refused(server, "GET", "/api/layer/0?token=-1", 400, r"^token: '-1' is not a number in 0\.\.\d+$")
    got, v = server.request("GET", "/api/layer/0?head=0&token=0")
    check(got == 200 and v.get("layer") == 0 and len(v.get("attention", [])) > 0, "GET /api/layer/0 after the run")
    got, j = server.request("POST", "/api/run", body=json.dumps({"tokens": "1,2"}))
    check(got == 202 and j.get("run") == 2, f"a new run once run 1 finished -> {got} {j}")
    s = server.wait_done()
    check(s["state"] == "done" and s["run"] == 2, f"run 2 finished: {s['state']}")


def broken_checkpoint(dsr1, workdir):
    """A checkpoint whose weights file is cut short: the run fails, the server goes on."""
    ckpt = os.path.join(workdir, "broken")
    shutil.rmtree(ckpt, ignore_errors=True)
    subprocess.run([dsr1, "init-model", "--preset", "tiny-v3", "--out", ckpt, "--quiet"], check=True)
    shards = [f for f in os.listdir(ckpt) if f.endswith(".safetensors")]
    for f in shards:
        with open(os.path.join(ckpt, f), "r+b") as fh:
            fh.truncate(os.path.getsize(os.path.join(ckpt, f)) // 2)
    server = Server(dsr1, ["--model", ckpt])
    got, j = server.request("POST", "/api/run", body='{"tokens": "3,17"}')
    check(got == 202, f"POST /api/run on the broken checkpoint is accepted -> {got}")
    s = server.wait_done()
    check(s["state"] == "failed" and "safetensors" in s["error"],
          f"the run fails and the status says why: {s['state']}: {s['error'][:120]!r}")
    refused(server, "GET", "/api/run", 404, r"^run 1 failed: ")
    got, page = server.request("GET", "/")
    check(got == 200, "the server still serves the page after a failed run")
    got, j = server.request("POST", "/api/run", body='{"tokens": "5"}')
    check(got == 202 and j.get("run") == 2, "and takes the next run")
    server.wait_done()
    server.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dsr1", required=True)
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--tokens", default="3,17,5,99")
    ap.add_argument("--broken-checkpoint", action="store_true")
    ap.add_argument("model_args", nargs="*")
    a = ap.parse_args()
    os.makedirs(a.workdir, exist_ok=True)
    if a.broken_checkpoint:
        broken_checkpoint(a.dsr1, a.workdir)
    else:
        info = json.loads(subprocess.run([a.dsr1, "info", *a.model_args, "--json"], check=True,
                                         capture_output=True, text=True).stdout)
        layers = info["config"]["num_hidden_layers"] if "config" in info else info["num_hidden_layers"]
        server = Server(a.dsr1, a.model_args)
        bad_requests(server)
        runs(server, a.tokens, layers)
        server.stop()
    print(f"{len(failures)} check(s) failed" if failures else "all checks passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

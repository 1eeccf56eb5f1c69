#!/usr/bin/env python3
"""Checks an HTML page of dsr1 (reference/html/, docs/html.md) as a person would see it.

Structure (always): the page is well-formed XML; it holds the expected pictures (--expect
KIND=N: exactly N figures with data-picture="KIND"); every attention heatmap has rows x cols
cells (and, with --grid, only the listed grids); every router picture one score bar per expert
and its chosen experts highlighted; the step mode's buttons and sections exist; no src, href or
url() leaves the page (only "#fragment" links), no <link>, <img> or @import; the file is at most
--max-bytes long; --errata N erratum call-outs.

Browser (--browser): Debian's headless Chromium loads the page from disk twice, once printing
the DOM after the scripts ran (which must hold the same pictures and the step mode marked ready,
with no console message at all), once writing a screenshot PNG, which must not be blank (decoded
here with zlib: at least 2% of the pixels differ from the background, and at least 8 colours).

--command ARGS... runs first (it writes the page), so that one CTest test makes and checks it.
Usage:
  check_page.py PAGE [--expect KIND=N ...] [--grid attention=RxC ...] [--errata N]
                [--max-bytes N] [--browser] [--screenshot PNG] [--command PROGRAM ARGS...]
  check_page.py --self-test     the checks must catch a page with an external URL, a page
                                with a script error, a blank screenshot and a missing picture
Exit status 0 if every check passes; else 1, one line per failure.
"""
import argparse
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
import zlib

BROWSER_TIMEOUT = 60  # seconds per Chromium start
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars"]


def classes(e):
    return (e.get("class") or "").split()


def external(value):
    """An address that would leave the page: anything but an empty one or a '#fragment'."""
    v = value.strip()
    return v != "" and not v.startswith("#")


def check_structure(path, text, args):
    problems = []
    if args.max_bytes and len(text.encode()) > args.max_bytes:
        problems.append(f"{path}: {len(text.encode())} bytes, more than the allowed {args.max_bytes}")
    try:
        root = ET.fromstring(text)
    except ET.ParseError as e:
        return problems + [f"{path}: not well-formed: {e}"]

    # Nothing leaves the page.
    for e in root.iter():
        for attr in ("src", "href", "{http://www.w3.org/1999/xlink}href", "xlink:href", "action", "poster"):
            if attr in e.attrib and external(e.attrib[attr]):
                problems.append(f"{path}: <{e.tag} {attr}=\"{e.attrib[attr]}\"> refers outside the page")
        if e.tag in ("link", "img", "iframe", "object", "embed"):
            problems.append(f"{path}: a <{e.tag}> element (a page must be self-contained)")
        for v in list(e.attrib.values()) + [e.text or ""]:
            for m in re.finditer(r"url\(\s*['\"]?([^'\")]*)", v):
                if external(m.group(1)):
                    problems.append(f"{path}: url({m.group(1)}) refers outside the page")
            if "@import" in v:
                problems.append(f"{path}: @import in a style")

    figures = [e for e in root.iter("figure") if "picture" in classes(e)]
    kinds = {}
    for f in figures:
        kinds.setdefault(f.get("data-picture"), []).append(f)
    for spec in args.expect:
        kind, n = spec.split("=")
        got = len(kinds.get(kind, []))
        if got != int(n):
            problems.append(f"{path}: {got} '{kind}' pictures, expected {n}")

    # Attention: rows x cols cells per head, masked ones marked; grids as listed.
    grids = {}
    for g in args.grid:
        kind, rc = g.split("=")
        grids.setdefault(kind, set()).add(rc)
    for kind, figs in kinds.items():
        for f in figs:
            cells = [e for e in f.iter() if "cell" in classes(e)]
            if kind in ("attention", "heatmap"):
                rows, cols = int(f.get("data-rows")), int(f.get("data-cols"))
                if len(cells) != rows * cols:
                    problems.append(f"{path}: '{kind}' picture has {len(cells)} cells, expected {rows} x {cols}")
                if kind in grids and f"{rows}x{cols}" not in grids[kind]:
                    problems.append(f"{path}: '{kind}' picture is {rows}x{cols}, expected one of {sorted(grids[kind])}")
                if f.find(".//svg") is None:
                    problems.append(f"{path}: '{kind}' picture has no inline SVG")
                if not any("legend-step" in classes(e) for e in f.iter()):
                    problems.append(f"{path}: '{kind}' heatmap has no colour legend")
                for c in cells:
                    if c.find("title") is None:
                        problems.append(f"{path}: a '{kind}' cell without its value in a tooltip")
                        break
            if kind == "router":
                n_r = int(f.get("data-experts"))
                chosen = (f.get("data-chosen") or "").split()
                bars = [e for e in f.iter() if "bar" in classes(e) and "biased" not in classes(e)]
                marked = [e for e in bars if "chosen" in classes(e)]
                if len(bars) != n_r:
                    problems.append(f"{path}: router picture has {len(bars)} score bars, expected {n_r} experts")
                if len(marked) != len(chosen) or not chosen:
                    problems.append(f"{path}: router picture highlights {len(marked)} experts, {len(chosen)} chosen")
            if kind == "logits":
                rows, top = int(f.get("data-rows")), int(f.get("data-top"))
                if len(cells) != rows * top:
                    problems.append(f"{path}: logits table has {len(cells)} entries, expected {rows} x {top}")
    for kind in grids:
        seen = {f"{f.get('data-rows')}x{f.get('data-cols')}" for f in kinds.get(kind, [])}
        for rc in sorted(grids[kind] - seen):
            problems.append(f"{path}: no '{kind}' picture of {rc}")

    # Step mode.
    ids = {e.get("id") for e in root.iter() if e.get("id")}
    for needed in ("prev", "next", "all", "counter"):
        if needed not in ids:
            problems.append(f"{path}: the step mode's '{needed}' control is missing")
    sections = [e for e in root.iter("section") if "step" in classes(e)]
    if not sections:
        problems.append(f"{path}: no section")
    if not any(e.tag == "script" for e in root.iter()):
        problems.append(f"{path}: no step-mode script")
    if args.errata is not None:
        n = sum(1 for e in root.iter("aside") if "erratum" in classes(e))
        if n != args.errata:
            problems.append(f"{path}: {n} erratum call-outs, expected {args.errata}")
    return problems


# ---- PNG ---------------------------------------------------------------------------------------

def png_pixels(data):
    """(width, height, channels, rows of bytes) of an 8-bit RGB/RGBA, non-interlaced PNG."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG file")
    pos, idat, header = 8, b"", None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind = data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    width, height, depth, colour, _, _, interlace = header
    if depth != 8 or colour not in (2, 6) or interlace:
        raise ValueError(f"unsupported PNG (depth {depth}, colour type {colour}, interlace {interlace})")
    bpp = 3 if colour == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * bpp
    rows, prev = [], bytearray(stride)
    for y in range(height):
        f = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        if f == 1:
            for i in range(bpp, stride):
                line[i] = (line[i] + line[i - bpp]) & 255
        elif f == 2:
            line = bytearray((a + b) & 255 for a, b in zip(line, prev))
        elif f == 3:
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + ((left + prev[i]) >> 1)) & 255
        elif f == 4:
            for i in range(stride):
                a = line[i - bpp] if i >= bpp else 0
                b = prev[i]
                c = prev[i - bpp] if i >= bpp else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(line)
        prev = line
    return width, height, bpp, rows


def screenshot_problems(png_path):
    with open(png_path, "rb") as f:
        width, height, bpp, rows = png_pixels(f.read())
    background = bytes(rows[0][:3])
    differing, colours = 0, set()
    for line in rows[::2]:  # every other row is plenty
        for x in range(0, width * bpp, bpp * 2):
            px = bytes(line[x:x + 3])
            if px != background:
                differing += 1
            if len(colours) < 64:
                colours.add(px)
    share = differing / ((height + 1) // 2 * ((width + 1) // 2))
    if share < 0.02 or len(colours) < 8:
        return [f"{png_path}: blank screenshot ({share:.1%} of the pixels differ from the background, "
                f"{len(colours)} colours)"]
    return []


# ---- browser ----------------------------------------------------------------------------------

def chromium():
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return None


def run_chromium(extra, page):
    with tempfile.TemporaryDirectory() as profile:
        cmd = [chromium()] + CHROMIUM_FLAGS + [f"--user-data-dir={profile}"] + extra + ["file://" + os.path.abspath(page)]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=BROWSER_TIMEOUT)


def check_browser(path, text, screenshot):
    if chromium() is None:
        return [f"{path}: Debian's chromium is not installed (run .ci/install-deps)"]
    problems = []
    dom = run_chromium(["--enable-logging=stderr", "--v=0", "--dump-dom"], path)
    if dom.returncode != 0:
        problems.append(f"{path}: chromium --dump-dom exited with {dom.returncode}")
    for line in dom.stderr.splitlines():
        if ":CONSOLE" in line:
            problems.append(f"{path}: console message: {line.split('] ', 1)[-1]}")
    if 'data-step-mode="ready"' not in dom.stdout:
        problems.append(f"{path}: the step-mode script did not finish (no data-step-mode=\"ready\" in the DOM)")
    for kind in set(re.findall(r'data-picture="([^"]+)"', text)):
        want = text.count(f'data-picture="{kind}"')
        got = dom.stdout.count(f'data-picture="{kind}"')
        if got != want:
            problems.append(f"{path}: the DOM after scripts holds {got} '{kind}' pictures, the file {want}")
    if "<svg" in text and "<svg" not in dom.stdout:
        problems.append(f"{path}: no SVG in the DOM after scripts")
    png = screenshot or os.path.join(tempfile.gettempdir(), f"dsr1_check_{os.getpid()}.png")
    if os.path.exists(png):
        os.remove(png)
    shot = run_chromium(["--window-size=1280,900", f"--screenshot={png}"], path)
    if not os.path.exists(png):
        return problems + [f"{path}: chromium wrote no screenshot (exit {shot.returncode})"]
    problems += screenshot_problems(png)
    if not screenshot:
        os.remove(png)
    return problems


def check(args):
    if args.command:
        done = subprocess.run(args.command, stdout=subprocess.DEVNULL)
        if done.returncode != 0:
            return [f"{' '.join(args.command)}: exit code {done.returncode}"]
    with open(args.page, encoding="utf-8") as f:
        text = f.read()
    problems = check_structure(args.page, text, args)
    if args.browser:
        problems += check_browser(args.page, text, args.screenshot)
    return problems


def self_test():
    """Pages that must fail, each for the reason named."""
    good_svg = ("<figure class='picture' data-picture='attention' data-rows='1' data-cols='1'><svg>"
                "<rect class='cell'><title>1</title></rect><rect class='legend-step'/></svg></figure>")
    frame = ("<!DOCTYPE html><html><head><title>t</title></head><body><header><button id='prev'/>"
             "<span id='counter'/><button id='next'/><button id='all'/></header>"
             "<section class='step' id='s1'>{}</section><script>{}</script></body></html>")
    ready = "document.body.setAttribute('data-step-mode', 'ready');"
    cases = {
        "an external URL": (frame.format(good_svg + "<a href='https://example.org/x'>x</a>", ready), False, "outside the page"),
        "a url() in a style": (frame.format(good_svg + "<p style=\"background: url('http://x/y.png')\">x</p>", ready), False, "outside the page"),
        "a missing cell": (frame.format(good_svg.replace("data-cols='1'", "data-cols='2'"), ready), False, "expected 1 x 2"),
        "a missing picture": (frame.format("<p>none</p>", ready), False, "0 'attention' pictures"),
        "a script error": (frame.format(good_svg + "<p>" + "text " * 400 + "</p>", "undefined_function();"), True, "console message"),
        "a blank page": (frame.format(good_svg, ready).replace("<body>", "<body style='color:#fff'>"), True, "blank screenshot"),
    }
    failures = 0
    with tempfile.TemporaryDirectory() as d:
        for name, (html, browser, reason) in cases.items():
            page = os.path.join(d, "page.html")
            with open(page, "w") as f:
                f.write(html)
            a = argparse.Namespace(page=page, expect=["attention=1"], grid=[], errata=None, max_bytes=0,
                                   browser=browser, screenshot=None, command=None)
            problems = check(a)
            caught = any(reason in p for p in problems)
            print(f"self-test: {name}: {'caught' if caught else 'NOT CAUGHT'}" + ("" if caught else f" {problems}"))
            failures += not caught
    return 1 if failures else 0


def main():
    if sys.argv[1:] == ["--self-test"]:
        return self_test()
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("page")
    p.add_argument("--expect", action="append", default=[], help="KIND=N: exactly N pictures of KIND")
    p.add_argument("--grid", action="append", default=[], help="KIND=RxC: allowed (and present) heatmap grids")
    p.add_argument("--errata", type=int, default=None, help="exact number of erratum call-outs")
    p.add_argument("--max-bytes", type=int, default=0)
    p.add_argument("--browser", action="store_true")
    p.add_argument("--screenshot", help="keep the screenshot at this path")
    p.add_argument("--command", nargs=argparse.REMAINDER, help="program and arguments that write the page first")
    args = p.parse_args()
    problems = check(args)
    for line in problems:
        print(line)
    if not problems:
        size = os.path.getsize(args.page)
        print(f"{args.page}: {size} bytes; structure{' and browser' if args.browser else ''} checks pass")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Every path into the source tree that the docs name must exist.

Scans README.md and docs/*.md for paths starting with reference/, walkthroughs/, tests/, golden/
or docs/ (a trailing `.*` means "some file with that stem", as in `reference/io/npy.*`) and reports
those that do not exist, with the file and line that names them.

Usage: check_doc_paths.py [ROOT]
"""
import glob
import os
import re
import sys

PATH = re.compile(r"(?<![\w/.-])((?:reference|walkthroughs|tests|golden|docs)/[\w./*<>{}-]*[\w/*])")


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    docs = [os.path.join(root, "README.md")] + sorted(glob.glob(os.path.join(root, "docs", "*.md")))
    missing, checked = [], 0
    for doc in docs:
        with open(doc, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                for path in PATH.findall(line):
                    if any(c in path for c in "<>{}") or path.endswith("/*"):
                        continue  # a pattern such as tests/test_<name>.cpp, not a path
                    path = path.rstrip(".")
                    checked += 1
                    if glob.glob(os.path.join(root, path)):
                        continue
                    missing.append(f"{os.path.relpath(doc, root)}:{lineno}: {path} does not exist")
    for m in missing:
        print(m)
    print(f"doc paths: {checked} checked, {len(missing)} missing")
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())

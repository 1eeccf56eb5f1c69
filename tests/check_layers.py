#!/usr/bin/env python3
"""Checks the layering of reference/ (docs/architecture.md).

Each folder of reference/ is one layer. A file may include headers of its own layer, of the layers
below it, and the project-wide reference/faults.hpp; nothing else of reference/. Project headers
must not include each other in a cycle. reference/ itself holds only the layer folders and the
few project-wide files listed here.

Usage: check_layers.py [ROOT]   (ROOT defaults to the repository holding this script)
       check_layers.py --self-test  (the check must catch an upward include and a cycle)
Prints one line per violation and exits 1 if there is any; prints a summary and exits 0 if not.
"""
import os
import re
import sys

# Bottom first. The order is the link order of reference/CMakeLists.txt.
LAYERS = ["io", "text", "trace", "deepseek", "explainer", "tools", "fast", "html", "serve", "cli", "python"]
PROJECT_WIDE = {"faults.hpp", "CMakeLists.txt"}
INCLUDE = re.compile(r'^\s*#\s*include\s+"(reference/[^"]+)"', re.MULTILINE)


def layer_of(path):
    """'reference/deepseek/mla.hpp' -> 'deepseek'; project-wide files -> None."""
    parts = path.split("/")
    return parts[1] if len(parts) > 2 else None


def self_test():
    """A tree with one upward include (io -> deepseek) that also closes a cycle must fail."""
    import subprocess
    import tempfile
    with tempfile.TemporaryDirectory() as root:
        for layer in LAYERS:
            os.makedirs(os.path.join(root, "reference", layer))
        with open(os.path.join(root, "reference/io/b.hpp"), "w") as f:
            f.write('#include "reference/deepseek/a.hpp"\n')
        with open(os.path.join(root, "reference/deepseek/a.hpp"), "w") as f:
            f.write('#include "reference/io/b.hpp"\n')
        out = subprocess.run([sys.executable, __file__, root], capture_output=True, text=True)
        caught = (out.returncode == 1 and "higher layer 'deepseek'" in out.stdout
                  and "include cycle" in out.stdout)
        print(out.stdout, end="")
        print("self-test:", "the check catches both" if caught else "NOT CAUGHT")
        return 0 if caught else 1


def main():
    if sys.argv[1:] == ["--self-test"]:
        return self_test()
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ref = os.path.join(root, "reference")
    problems = []

    for entry in sorted(os.listdir(ref)):
        full = os.path.join(ref, entry)
        if os.path.isdir(full) and entry not in LAYERS:
            problems.append(f"reference/{entry}/: a folder that is not a layer (known: {', '.join(LAYERS)})")
        if os.path.isfile(full) and entry not in PROJECT_WIDE:
            problems.append(f"reference/{entry}: a file outside the layer folders "
                            f"(project-wide files: {', '.join(sorted(PROJECT_WIDE))})")

    includes = {}  # 'reference/x/y.hpp' -> ['reference/...', ...]
    for layer in LAYERS:
        folder = os.path.join(ref, layer)
        if not os.path.isdir(folder):
            problems.append(f"reference/{layer}/: missing")
            continue
        for name in sorted(os.listdir(folder)):
            if not name.endswith((".hpp", ".cpp")):
                continue
            path = f"reference/{layer}/{name}"
            with open(os.path.join(root, path), encoding="utf-8") as f:
                includes[path] = INCLUDE.findall(f.read())
    for name in PROJECT_WIDE:
        if name.endswith(".hpp") and os.path.isfile(os.path.join(ref, name)):
            with open(os.path.join(ref, name), encoding="utf-8") as f:
                includes[f"reference/{name}"] = INCLUDE.findall(f.read())

    for path, targets in includes.items():
        own = layer_of(path)
        for target in targets:
            if not os.path.isfile(os.path.join(root, target)):
                problems.append(f"{path}: includes {target}, which does not exist")
                continue
            theirs = layer_of(target)
            if theirs is None:
                continue  # project-wide header
            if own is None:
                problems.append(f"{path}: a project-wide header includes {target}")
            elif LAYERS.index(theirs) > LAYERS.index(own):
                problems.append(f"{path}: layer '{own}' includes {target} from the higher layer '{theirs}'")

    # Include cycles among project headers (depth-first search, colouring).
    state = {}
    def visit(node, stack):
        state[node] = "open"
        for nxt in includes.get(node, []):
            if state.get(nxt) == "open":
                cycle = stack[stack.index(nxt):] + [nxt]
                problems.append("include cycle: " + " -> ".join(cycle))
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"
    for node in sorted(includes):
        if node not in state:
            visit(node, [node])

    for p in problems:
        print(p)
    if problems:
        print(f"layering: {len(problems)} problem(s)")
        return 1
    edges = sum(len(v) for v in includes.values())
    print(f"layering: {len(includes)} files, {edges} includes, layers {' < '.join(LAYERS)}: no violation, no cycle")
    return 0


if __name__ == "__main__":
    sys.exit(main())

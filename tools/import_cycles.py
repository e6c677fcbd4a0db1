#!/usr/bin/env python3
"""Checks that the modules of each crate import one another one way only.

    python3 tools/import_cycles.py [SRC_DIR...]   (default: src kernels/src tools/quantize/src)

An edge A -> B is a `use` (or a `crate::`/`super::` path) in file A naming an item of file B;
an item re-exported by a parent's `pub use child::X` counts as the child's. A module and its
own submodules are one unit (a child may use its parent's items, a parent re-exports its
children's). Reported, with exit status 1: two files that import each other, a longer cycle of
files, and a cycle between top-level modules. Test-only modules are ignored. Reads the sources
as text: no build needed.
"""
import os
import re
import sys


def module_files(root):
    """Module path (tuple of names) -> file, for every .rs file below `root`."""
    files = {}
    for folder, _, names in os.walk(root):
        for name in names:
            if name.endswith(".rs"):
                path = os.path.join(folder, name)
                parts = os.path.relpath(path, root)[:-3].split(os.sep)
                if parts[-1] in ("mod", "lib", "main"):
                    parts = parts[:-1]
                files[tuple(parts)] = path
    return files


def without_tests(text):
    found = re.search(r"#\[cfg\(test\)\]\s*mod\s+\w+\s*\{", text)
    text = text[: found.start()] if found else text
    return re.sub(r"//[^\n]*", "", text)


def use_paths(tree, prefix=()):
    """The paths a use tree `a::{b, c::{d, e}}` names."""
    parts, depth, cur = [], 0, ""
    for ch in tree:
        depth += ch == "{"
        depth -= ch == "}"
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    out = []
    for part in (p.strip() for p in parts):
        if not part:
            continue
        group = re.match(r"^([\w:]*?)::\{(.*)\}$", part, re.S)
        if group:
            head = [x for x in group.group(1).split("::") if x]
            out += use_paths(group.group(2), prefix + tuple(head))
        elif part.startswith("{") and part.endswith("}"):
            out += use_paths(part[1:-1], prefix)
        else:
            out.append(prefix + tuple(x.split(" as ")[0].strip() for x in part.split("::") if x.strip()))
    return out


def nested(a, b):
    return a[: len(b)] == b or b[: len(a)] == a


def edges_of(files):
    texts = {m: without_tests(open(p, encoding="utf-8").read()) for m, p in files.items()}
    reexported = {}  # (module, name) -> child module that defines it
    for mod, text in texts.items():
        for found in re.finditer(r"\bpub(?:\([\w ]+\))?\s+use\s+([^;]+);", text):
            for path in use_paths(found.group(1)):
                if len(path) >= 2 and mod + path[:1] in files:
                    reexported[(mod, path[-1])] = mod + path[:1]
    edges = {}
    for mod, text in texts.items():
        paths = [p for u in re.finditer(r"\buse\s+([^;]+);", text) for p in use_paths(u.group(1))]
        paths += [tuple(p.group(1).split("::")) for p in re.finditer(r"\b((?:crate|super|self)(?:::\w+)+)", text)]
        targets = set()
        for path in paths:
            if not path:
                continue
            if path[0] == "crate":
                full = path[1:]
            elif path[0] in ("super", "self"):
                base = list(mod)
                while path and path[0] in ("super", "self"):
                    if path[0] == "super":
                        base = base[:-1]
                    path = path[1:]
                full = tuple(base) + path
            elif mod + path[:1] in files:
                full = mod + path
            else:
                continue
            target = next((full[:i] for i in range(len(full), -1, -1) if full[:i] in files), None)
            if target is None:
                continue
            rest = full[len(target) :]
            if rest and (target, rest[0]) in reexported:
                target = reexported[(target, rest[0])]
            if not nested(target, mod):
                targets.add(target)
        edges[mod] = targets
    return edges


def cycles(edges):
    """Strongly connected components of more than one node (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in list(edges):
        if v not in index:
            visit(v)
    return out


def name(mod):
    return "::".join(mod) or "crate"


def check(root):
    edges = edges_of(module_files(root))
    problems = []
    for comp in cycles(edges):
        problems.append("files import each other: " + ", ".join(name(m) for m in comp))
    top = {}
    for a, targets in edges.items():
        for b in targets:
            if a[:1] != b[:1]:
                top.setdefault(a[:1], set()).add(b[:1])
    for comp in cycles(top):
        problems.append("modules import each other: " + ", ".join(name(m) for m in comp))
    return [f"{root}: {p}" for p in problems]


def main():
    roots = sys.argv[1:] or ["src", "kernels/src", "tools/quantize/src"]
    problems = [p for root in roots for p in check(root)]
    for p in problems:
        print(p)
    print(f"import cycles: {len(problems)} in {', '.join(roots)}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

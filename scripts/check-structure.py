#!/usr/bin/env python3
"""Structure checks run by CI (ARCHITECTURE.md, "Checks that keep it so"):

1. no import cycle between the modules of any crate: a module is one .rs file, and file A
   depends on file B when A names B through a `crate::`, `super::` or `self::` path; a cycle
   is a strongly connected set of two or more files;
2. no non-test source file over MAX_LINES lines (unit tests in a `tests.rs` file or after
   `#[cfg(test)]` do not count).

Prints each violation and exits 1 if there is any. A plain reading of `use` paths, not a Rust
parser: good enough for the code style here (paths are written out, no glob re-export trick),
and it needs nothing but Python.
"""

import os
import re
import sys
from collections import defaultdict

MAX_LINES = 800
ROOTS = ["crates", "bench"]


def crates(repo):
    for top in ROOTS:
        base = os.path.join(repo, top)
        if not os.path.isdir(base):
            continue
        for name in sorted(os.listdir(base)):
            src = os.path.join(base, name, "src")
            if os.path.isfile(os.path.join(base, name, "Cargo.toml")) and os.path.isdir(src):
                yield os.path.join(top, name), src


def modules(src):
    """Module path (tuple) -> file, for every .rs file under src."""
    mods = {}
    for root, _, files in os.walk(src):
        for f in files:
            if not f.endswith(".rs"):
                continue
            path = os.path.join(root, f)
            rel = os.path.relpath(path, src)[:-3].split(os.sep)
            if rel[-1] == "mod":
                rel = rel[:-1]
            if rel in (["lib"], ["main"]):
                rel = []
            mods[tuple(rel)] = path
    return mods


def code_of(path):
    """The file's text without comments and without its `#[cfg(test)]` tail."""
    text = open(path, encoding="utf-8").read()
    text = re.sub(r"//[^\n]*", "", text)
    cut = text.find("#[cfg(test)]")
    return text if cut < 0 else text[:cut]


def resolve(mods, here, head, parts):
    if head == "crate":
        base = []
    elif head == "super":
        base = list(here[:-1])
    else:
        base = list(here)
    while parts and parts[0] == "super":
        base, parts = base[:-1], parts[1:]
    path = base + parts
    for k in range(len(path), -1, -1):
        if tuple(path[:k]) in mods:
            return tuple(path[:k])
    return None


def graph(mods):
    edges = defaultdict(set)
    for here, path in mods.items():
        text = code_of(path)
        found = []
        for m in re.finditer(r"\b(crate|super|self)((?:\s*::\s*[A-Za-z_][A-Za-z0-9_]*)+)", text):
            parts = [p.strip() for p in m.group(2).split("::") if p.strip()]
            found.append((m.group(1), parts))
        # Grouped imports: `use crate::{a::B, c};`, `use super::{x, y};`.
        for m in re.finditer(r"\b(crate|super|self)\s*::\s*\{([^;]*)\}\s*;", text, re.S):
            for item in re.split(r"[,{}]", m.group(2)):
                parts = [p.strip() for p in item.split("::") if p.strip()]
                if parts and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", parts[0]):
                    found.append((m.group(1), parts))
        for head, parts in found:
            target = resolve(mods, here, head, parts)
            if target is not None and target != here:
                edges[here].add(target)
    return edges


def cycles(nodes, edges):
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]
    sys.setrecursionlimit(100000)

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
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
                out.append(comp)

    for v in nodes:
        if v not in index:
            visit(v)
    return out


def main():
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    failures = 0
    for name, src in crates(repo):
        mods = modules(src)
        for comp in cycles(sorted(mods), graph(mods)):
            names = ", ".join(sorted("::".join(m) or "crate" for m in comp))
            print(f"{name}: import cycle between modules: {names}")
            failures += 1
        for mod, path in sorted(mods.items()):
            if os.path.basename(path) == "tests.rs":
                continue
            lines = code_of_lines(path)
            if lines > MAX_LINES:
                print(f"{os.path.relpath(path, repo)}: {lines} lines of non-test code (limit {MAX_LINES})")
                failures += 1
    if failures:
        print(f"structure: {failures} problem(s)")
        return 1
    print("no import cycle between modules, no non-test source file over 800 lines")
    return 0


def code_of_lines(path):
    text = open(path, encoding="utf-8").read()
    cut = text.find("#[cfg(test)]")
    if cut >= 0:
        text = text[:cut]
    return text.count("\n")


if __name__ == "__main__":
    sys.exit(main())

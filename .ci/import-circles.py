#!/usr/bin/env python3
"""Fails if two files under src/ import each other (issue 7: no import circles).

A file "imports" another when one of its `use` paths (crate::, super::, self::) resolves to a
module defined by that file. Test modules at the end of a file are not counted."""
import glob
import re
import sys


def modpath(f):
    p = f[len("src/"):-3].split("/")
    if p[-1] in ("mod", "lib"):
        p = p[:-1]
    return ["crate"] + p


files = glob.glob("src/**/*.rs", recursive=True)
paths = {tuple(modpath(f)): f for f in files}


def resolve(f, path):
    base, parts = modpath(f), path.split("::")
    if parts[0] == "crate":
        full = parts
    elif parts[0] == "super":
        full, i = base[:-1], 0
        while parts[i] == "super":
            i += 1
        full = full[: len(full) - (i - 1)] + parts[i:]
    elif parts[0] == "self":
        full = base + parts[1:]
    else:
        return None
    for k in range(len(full), 0, -1):
        if tuple(full[:k]) in paths:
            return paths[tuple(full[:k])]
    return None


USE = re.compile(r"^\s*(?:pub(?:\([^)]*\))? )?use ([\w:]+)(?:::\{([^;]*)\})?;", re.M)
edges = {}
for f in files:
    src = open(f).read().split("#[cfg(test)]\nmod tests")[0]
    for m in USE.finditer(src):
        base, items = m.group(1), m.group(2)
        targets = [base] if not items else [base + "::" + x.strip().split(" ")[0].split("::")[0] for x in items.split(",") if x.strip()]
        for t in targets:
            r = resolve(f, t)
            if r and r != f:
                edges.setdefault(f, set()).add(r)

circles = sorted((a, b) for a in edges for b in edges[a] if a < b and a in edges.get(b, set()))
for a, b in circles:
    print(f"import circle: {a} <-> {b}")
if circles:
    sys.exit(1)
print(f"no import circles among {len(files)} files")

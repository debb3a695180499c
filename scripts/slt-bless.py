#!/usr/bin/env python3
"""Fills in the expected results of a sqllogictest file from SQLite itself (Python's sqlite3).

Usage: scripts/slt-bless.py tests/slt/cases/joins.test   (rewrites the file in place)

For the project's own test files (tests/slt/cases/): write the statements and queries, run this,
and review the results it wrote. Values are rendered as sqllogictest does (NULL, (empty), I/R/T
columns, rowsort/valuesort) and results of more than 8 values are written as their MD5 hash.
The Rust runner checks every expected line against its own monolith, so a wrong bless fails CI.
"""
import hashlib
import re
import sqlite3
import sys


def render(v, ty):
    if v is None:
        return "NULL"
    if ty == "I":
        if isinstance(v, (int, float)):
            return str(int(v))
        m = re.match(r"\s*[-+]?\d+", v if isinstance(v, str) else "")
        return str(int(m.group(0))) if m else "0"
    if ty == "R":
        if isinstance(v, (int, float)):
            return "%.3f" % v
        return "0.000"
    s = v if isinstance(v, str) else str(v)
    if s == "":
        return "(empty)"
    return "".join(c if " " <= c <= "~" else "@" for c in s)


def main(path):
    text = open(path).read()
    blocks = re.split(r"\n\s*\n", text.strip("\n"))
    db = sqlite3.connect(":memory:")
    out = []
    for b in blocks:
        lines = b.split("\n")
        head_i = next((i for i, l in enumerate(lines) if not l.startswith("#")), None)
        if head_i is None:
            out.append(b)
            continue
        head = lines[head_i].split()
        if head[0] == "statement":
            db.executescript(lines[head_i + 1 :] and "\n".join(lines[head_i + 1 :]))
            out.append(b)
        elif head[0] == "query":
            types = head[1]
            sort = head[2] if len(head) > 2 else "nosort"
            body = lines[head_i + 1 :]
            if "----" in body:
                body = body[: body.index("----")]
            sql = "\n".join(body)
            rows = db.execute(sql).fetchall()
            vals = [[render(v, types[i] if i < len(types) else "T") for i, v in enumerate(r)] for r in rows]
            if sort == "rowsort":
                vals.sort()
                flat = [v for r in vals for v in r]
            elif sort == "valuesort":
                flat = sorted(v for r in vals for v in r)
            else:
                flat = [v for r in vals for v in r]
            if len(flat) > 8:
                h = hashlib.md5("".join(v + "\n" for v in flat).encode()).hexdigest()
                flat = [f"{len(flat)} values hashing to {h}"]
            out.append("\n".join(lines[: head_i + 1] + body + ["----"] + flat))
        else:
            out.append(b)
    open(path, "w").write("\n\n".join(out) + "\n")


if __name__ == "__main__":
    for p in sys.argv[1:]:
        main(p)

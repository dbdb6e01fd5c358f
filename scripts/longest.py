#!/usr/bin/env python3
"""The longest functions of modules/s3outbox/ (lines, counted from the def to
the last line of the body, docstring included): ``python scripts/longest.py [N]``.
"""

import ast
import os
import sys

ROOT = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "modules", "s3outbox"
)


def functions(path):
    tree = ast.parse(open(path, encoding="utf-8").read(), path)

    def walk(node, prefix):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                name = prefix + child.name
                yield name, child.lineno, child.end_lineno - child.lineno + 1
                yield from walk(child, name + ".")
            elif isinstance(child, ast.ClassDef):
                yield from walk(child, prefix + child.name + ".")

    return walk(tree, "")


def main(count=10):
    found = []
    for folder, _, files in sorted(os.walk(ROOT)):
        for name in sorted(f for f in files if f.endswith(".py")):
            path = os.path.join(folder, name)
            for func, line, length in functions(path):
                found.append((length, "%s:%d" % (os.path.relpath(path, ROOT), line), func))
    found.sort(key=lambda f: -f[0])
    for length, where, func in found[:count]:
        print("%4d  %-30s %s" % (length, where, func))


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10)

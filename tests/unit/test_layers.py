"""The package's shape: each part imports only the parts below it, and no
module imports itself back through others (imports inside functions count:
a late import is still an arrow).

The parts, from the bottom up, are named in modules/s3outbox/__init__.py.
"""

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[2] / "modules" / "s3outbox"

# What each part may import of s3outbox (besides itself).
ALLOWED = {
    "transport": set(),
    "delivery": {"transport"},
    "bounces": {"delivery", "transport"},
    "accounts": {"delivery", "transport"},
    "admin": {"accounts", "bounces", "delivery", "transport"},
    "mailer": {"bounces", "delivery", "transport"},
    "eden": {"accounts", "bounces", "delivery", "mailer", "transport"},
}


def modules():
    """{dotted name inside the package: path}, e.g. 'delivery.store'."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def imports(name, path):
    """The s3outbox modules that module ``name`` imports, anywhere in it."""
    known = modules()
    dotted = name.split(".") if name else []  # "": the package's own __init__
    package = dotted if path.name == "__init__.py" else dotted[:-1]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
            elif (node.module or "").split(".")[0] == "s3outbox":
                base, node.module = [], node.module.partition(".")[2] or None
            else:
                continue
            target = base + (node.module.split(".") if node.module else [])
            for alias in node.names:
                whole = ".".join(target + [alias.name])
                out.add(whole if whole in known else ".".join(target))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "s3outbox":
                    out.add(alias.name.partition(".")[2])
    out.discard(name)
    return out


def part(name):
    return name.split(".")[0] if name else ""


def graph():
    return {name: imports(name, path) for name, path in modules().items()}


@pytest.mark.parametrize("name", sorted(n for n in modules() if n))
def test_imports_only_go_down(name):
    allowed = ALLOWED[part(name)] | {part(name)}
    upward = sorted(t for t in imports(name, modules()[name]) if part(t) not in allowed)
    assert not upward, "%s (part %s) imports %s" % (name, part(name), ", ".join(upward))


def test_no_cycles():
    edges, cycles = graph(), []

    def visit(node, path):
        for nxt in sorted(edges.get(node, ())):
            if nxt in path:
                cycles.append(path[path.index(nxt) :] + [nxt])
            elif nxt not in seen:
                seen.add(nxt)
                visit(nxt, path + [nxt])

    for start in sorted(edges):
        seen = {start}
        visit(start, [start])
    assert not cycles, "import cycles: %s" % "; ".join(" -> ".join(c) for c in cycles[:5])


def test_every_part_says_what_it_owns():
    for name in ALLOWED:
        path = PACKAGE / name / "__init__.py"
        if path.exists():
            doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
            assert doc and "may import" in doc, (
                "%s/__init__.py: no docstring saying what it owns" % name
            )


def test_the_checker_sees_an_upward_arrow(tmp_path, monkeypatch):
    """The checks above can fail: a module of transport importing delivery is caught."""
    (tmp_path / "transport").mkdir()
    (tmp_path / "delivery").mkdir()
    (tmp_path / "transport" / "__init__.py").write_text("")
    (tmp_path / "delivery" / "__init__.py").write_text("")
    (tmp_path / "delivery" / "store.py").write_text("from ..transport import base\n")
    (tmp_path / "transport" / "base.py").write_text("def f():\n    from ..delivery import store\n")
    monkeypatch.setattr(__import__(__name__), "PACKAGE", tmp_path)
    assert imports("transport.base", tmp_path / "transport" / "base.py") == {"delivery.store"}
    with pytest.raises(AssertionError, match="imports delivery.store"):
        test_imports_only_go_down("transport.base")
    with pytest.raises(AssertionError, match="cycles"):
        test_no_cycles()


def test_the_package_itself_sits_on_top():
    """The package's __init__ imports the public names from the parts, and no
    part imports it back (that would be an arrow up to the top)."""
    assert {"accounts.auth", "eden", "mailer"} <= imports("", PACKAGE / "__init__.py")
    assert not [name for name, deps in graph().items() if name and "" in deps]

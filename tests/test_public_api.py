"""Every Python path the README and docs/ show a user resolves, so a move that breaks a documented path fails here.

Sources: `import` / `from ... import` statements of the ```python blocks (and attribute chains on the names they
import, such as `Ledger.from_settings`), and every inline `agent_router.x.y` reference in the text. Docs show
the new module paths, not the moved ones kept for old code in agent_router/__init__.py.
"""

from __future__ import annotations

import ast
import importlib
import re
import warnings
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DOC_FILES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
_FENCE = re.compile(r"^```(\w*)\s*$")
_INLINE = re.compile(r"`(agent_router(?:\.[A-Za-z_]\w*)+)")
# Pages other helpers own for now; still resolved, but may name a moved path until their owners update them.
_OLD_PATHS_ALLOWED = {"escalation.md"}


def python_blocks(path: Path) -> list[tuple[int, str]]:
    out, lang, start, lines = [], None, 0, []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        m = _FENCE.match(line)
        if lang is None and m:
            lang, start, lines = m.group(1), n + 1, []
        elif lang is not None and line.strip() == "```":
            if lang == "python":
                out.append((start, "\n".join(lines)))
            lang = None
        elif lang is not None:
            lines.append(line)
    return out


def _chain(node: ast.AST) -> list[str] | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        return [node.id, *reversed(parts)]
    return None


def documented_names() -> list[tuple[str, str]]:
    """(where, dotted name) of every documented Python path."""
    found: dict[str, str] = {}
    for path in DOC_FILES:
        rel = path.relative_to(REPO)
        for start, code in python_blocks(path):
            tree = ast.parse(code, filename=f"{rel}:{start}")
            imported: dict[str, str] = {}
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "agent_router":
                    for a in node.names:
                        imported[a.asname or a.name] = f"{node.module}.{a.name}"
                elif isinstance(node, ast.Import):
                    for a in node.names:
                        if a.name.split(".")[0] == "agent_router":
                            imported[a.asname or a.name.split(".")[0]] = a.asname and a.name or a.name.split(".")[0]
                            found.setdefault(a.name, f"{rel}:{start + node.lineno - 1}")
            for dotted in imported.values():
                found.setdefault(dotted, f"{rel}:{start}")
            for node in ast.walk(tree):
                chain = _chain(node) if isinstance(node, ast.Attribute) else None
                if chain and chain[0] in imported:
                    found.setdefault(".".join([imported[chain[0]], *chain[1:]]), f"{rel}:{start + node.lineno - 1}")
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for m in _INLINE.finditer(line):
                found.setdefault(m.group(1), f"{rel}:{n}")
    return sorted((where, name) for name, where in found.items())


def resolve(dotted: str) -> object:
    """Import the longest module prefix of `dotted`, then read the rest as attributes."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ModuleNotFoundError as e:
            if e.name and not ".".join(parts[:i]).startswith(e.name):
                raise  # the module exists but imports something missing
            continue
        for attr in parts[i:]:
            obj = getattr(obj, attr)
        return obj
    raise ModuleNotFoundError(dotted)


def test_docs_document_python_paths():
    names = {name for _, name in documented_names()}
    assert {"agent_router.Router", "agent_router.load", "agent_router.hookspecs.hookimpl"} <= names


def moved_from(dotted: str) -> str | None:
    """The old module path `dotted` goes through, if it names one that moved (agent_router._MOVED)."""
    import agent_router

    return next((old for old in agent_router._MOVED if dotted == old or dotted.startswith(old + ".")), None)


@pytest.mark.parametrize(("where", "name"), documented_names(), ids=lambda v: v)
def test_documented_path_resolves(where, name):
    old = moved_from(name)
    if old and Path(where.split(":")[0]).name not in _OLD_PATHS_ALLOWED:
        import agent_router

        pytest.fail(f"{where}: {name} goes through the moved path {old}; show {agent_router._MOVED[old]}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            resolve(name)
        except (ImportError, AttributeError) as e:
            pytest.fail(f"{where}: {name} does not resolve: {e}")


def test_python_blocks_parse():
    for path in DOC_FILES:
        for start, code in python_blocks(path):
            compile(code, f"{path.relative_to(REPO)}:{start}", "exec")


def test_resolve_fails_on_a_moved_away_name():
    with pytest.raises((ImportError, AttributeError)):
        resolve("agent_router.ledger.NoSuchThing")
    with pytest.raises((ImportError, AttributeError)):
        resolve("agent_router.no_such_module.thing")

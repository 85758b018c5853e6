"""The map of docs/pipeline.md holds: contracts kept, no import circle, no module too long to read.

Checked on the import graph of the source (grimp, the library import-linter builds on), so they fail as soon
as an import runs the wrong way, whatever the tests exercise.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).parent.parent
PACKAGES = ("newsletter", "subscribers")
MAX_LINES = 500
"""The developers' guide: modules of one responsibility under ~500 lines."""


def _graph() -> grimp.ImportGraph:
    return grimp.build_graph(*PACKAGES, cache_dir=None)


def _circles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Groups of modules that import each other, directly or not (Tarjan's strongly connected components)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(start: str) -> None:
        # iterative: a recursive walk of a long import chain would hit Python's recursion limit
        work = [(start, iter(sorted(graph.find_modules_directly_imported_by(start))))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            module, targets = work[-1]
            target = next(targets, None)
            if target is not None:
                if target not in index:
                    index[target] = low[target] = len(index)
                    stack.append(target)
                    on_stack.add(target)
                    work.append((target, iter(sorted(graph.find_modules_directly_imported_by(target)))))
                elif target in on_stack:
                    low[module] = min(low[module], index[target])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[module])
            if low[module] == index[module]:
                group: list[str] = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == module:
                        break
                if len(group) > 1:
                    circles.append(sorted(group))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return circles


def test_the_import_contracts_of_pyproject_are_kept() -> None:
    """One contract per stage (it imports nothing above it), `subscribers` independent: `lint-imports` passes."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    # through the interpreter, like scripts/test: the `lint-imports` script may not be on PATH yet (pyenv shims)
    command = [sys.executable, "-c", "from importlinter.cli import lint_imports_command; lint_imports_command()"]
    result = subprocess.run([*command, "--no-cache"], cwd=ROOT, capture_output=True, text=True, env=env,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout


def test_no_two_modules_import_each_other() -> None:
    graph = _graph()
    assert Path(sys.modules["newsletter"].__file__ or "").parent.parent == ROOT  # the source checked is this one
    assert _circles(graph) == []


def test_the_circle_finder_finds_a_circle() -> None:
    """The check above could pass by finding nothing at all: here it must find the circle an import adds."""
    graph = _graph()
    graph.add_import(importer="newsletter.records.papers", imported="newsletter.usecases.fetch")
    assert any("newsletter.records.papers" in group and "newsletter.usecases.fetch" in group
               for group in _circles(graph))


def test_no_module_is_over_500_lines() -> None:
    long = {str(path.relative_to(ROOT)): count for package in PACKAGES
            for path in sorted((ROOT / package).rglob("*.py"))
            if (count := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert long == {}


@pytest.mark.slow  # imports every test module in a new process (the fast loop itself shows it collects)
def test_collecting_the_tests_imports_no_optional_extra() -> None:
    """`pip install -e '.[test]' && pytest` on a fresh clone: collection must not need the scale or
    embeddings extras (celery, redis, psycopg, torch); the tests that use them import them when they run."""
    script = ("import pathlib, sys, importlib\n"
              "for path in sorted(pathlib.Path('tests').glob('*.py')):\n"
              "    importlib.import_module('tests.' + path.stem)\n"
              "print(' '.join(m for m in ('celery', 'redis', 'psycopg', 'torch', 'sentence_transformers')"
              " if m in sys.modules))")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, env=env,
                            timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == []


def test_migration_0009_imports_no_live_code() -> None:
    """A migration runs on old databases long after it is written: code it imports from the package may have
    changed shape by then (0009 used to index old editions through the live records and store)."""
    path = ROOT / "newsletter" / "storage" / "migrations" / "versions" / "0009_web_index_outbox.py"
    imported = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            imported.add((node.module or "").split(".")[0])
    assert imported & set(PACKAGES) == set()
    assert imported <= {"re", "typing", "sqlalchemy", "alembic", "__future__"}

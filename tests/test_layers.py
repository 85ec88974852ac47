"""The import structure: the contracts of pyproject.toml [tool.importlinter] hold (`lint-imports`), the import
graph of melasma + annotation has no cycle, every part sits in a drawn layer (ARCHITECTURE.md shows the same
layers), and a function-level import of our own code says why it is deferred."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("melasma", "annotation")
#: the one form of a deferred import's reason, on the import line or the comment line above its block
REASON = "# deferred:"


def contract_layers() -> list[str]:
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    return next(contract["layers"] for contract in contracts if contract["type"] == "layers")


def import_graph() -> grimp.ImportGraph:
    sys.path.insert(0, str(ROOT))
    try:
        return grimp.build_graph(*PACKAGES, cache_dir=None)
    finally:
        sys.path.remove(str(ROOT))


def cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(graph.modules):
        if start in index:
            continue
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
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == module:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_import_contracts_hold() -> None:
    """`lint-imports` with the contracts of pyproject.toml: no upward import, no import between the parts
    of one layer, no tab importing another."""
    done = subprocess.run([sys.executable, "-c", "from importlinter.cli import lint_imports_command as main; main()",
                           "--no-cache"], cwd=ROOT, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout


def test_the_cycle_finder_finds_a_cycle() -> None:
    graph = grimp.ImportGraph()
    for importer, imported in (("p.a", "p.b"), ("p.b", "p.c"), ("p.c", "p.a"), ("p.c", "p.d")):
        graph.add_import(importer=importer, imported=imported)
    assert cycles(graph) == [["p.a", "p.b", "p.c"]]


def test_the_import_graph_has_no_cycle() -> None:
    """Function-level imports count: a deferred import does not hide a cycle."""
    assert cycles(import_graph()) == []


def test_every_part_sits_in_a_layer() -> None:
    placed = {name.strip() for layer in contract_layers() for name in re.split(r"[|:]", layer)}
    graph = import_graph()
    parts = {"annotation"} | graph.find_children("melasma")
    unplaced = sorted(parts - placed)
    assert not unplaced, f"{unplaced}: put each in a layer of pyproject.toml [tool.importlinter] and ARCHITECTURE.md"
    assert placed <= graph.modules, sorted(placed - graph.modules)


def test_architecture_draws_the_contracts_layers() -> None:
    text = (ROOT / "ARCHITECTURE.md").read_text()
    drawn = re.search(r"## Layers\n.*?```\n(.*?)```", text, re.DOTALL)
    assert drawn is not None, "ARCHITECTURE.md has no ## Layers diagram"
    rows = [line.split("  ")[0].strip() for line in drawn.group(1).splitlines() if line.strip()]
    assert rows == contract_layers()


def deferred_without_reason(source: str) -> list[int]:
    """Lines of function-level imports of melasma / annotation (or relative ones) without a reason: `REASON`
    on the import line, or on the line just above the run of such imports it belongs to."""
    lines = source.splitlines()
    missing = set()
    for function in ast.walk(ast.parse(source)):
        if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for node in ast.walk(function):
            for body in (getattr(node, field, None) for field in ("body", "orelse", "finalbody")):
                if not isinstance(body, list):
                    continue
                first = None  # the first statement of the current run of imports of our own code
                for statement in body:
                    if not (isinstance(statement, ast.Import | ast.ImportFrom) and _ours(statement)):
                        first = None
                        continue
                    first = first or statement
                    if REASON not in lines[statement.lineno - 1] and not (
                            first.lineno > 1 and lines[first.lineno - 2].strip().startswith(REASON)):
                        missing.add(statement.lineno)
    return sorted(missing)


def _ours(statement: ast.Import | ast.ImportFrom) -> bool:
    if isinstance(statement, ast.ImportFrom):
        return statement.level > 0 or (statement.module or "").split(".")[0] in PACKAGES
    return any(alias.name.split(".")[0] in PACKAGES for alias in statement.names)


def test_the_reason_check_catches_a_bare_deferred_import() -> None:
    source = ("def f():\n    import json\n    from melasma import masi\n\n"
              "def g():\n    import os\n\n    # deferred: imports torch; --help stays instant\n"
              "    from melasma import cli\n    from annotation import store\n\n"
              "def h():\n    from . import layout  # deferred: imports torch\n    x = 1\n    import annotation\n")
    assert deferred_without_reason(source) == [3, 15]


def test_deferred_imports_of_our_own_code_say_why() -> None:
    """Only a reason (a heavy dependency, --help kept instant) defers an import; a cycle never does."""
    missing = [f"{path.relative_to(ROOT)}:{line}"
               for package in PACKAGES for path in sorted((ROOT / package).rglob("*.py"))
               for line in deferred_without_reason(path.read_text())]
    assert not missing, f"add `{REASON} <why>` above (or move to the module top): {missing}"

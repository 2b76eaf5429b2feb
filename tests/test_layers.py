"""The package stays layered and free of import cycles (contracts in .importlinter)."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import grimp

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_import_contracts_hold():
    """Each layer imports only the layers below it (cli > server, sdk > gateway > filters, admin >
    pipeline > router > providers > translate > transport > spend > store > config > core)."""
    lint = pathlib.Path(sys.executable).with_name("lint-imports")
    result = subprocess.run(
        [str(lint), "--config", str(ROOT / ".importlinter")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(ROOT / "src")},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def _cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Strongly connected groups of modules (Tarjan), module-level imports only."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.find_modules_directly_imported_by(node):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return found


def test_no_module_imports_itself_through_others():
    sys.setrecursionlimit(10_000)
    graph = grimp.build_graph("parley", exclude_type_checking_imports=True)
    for module in list(graph.modules):  # `parley` only re-exports; its lazy SDK names are not a cycle
        if module == "parley":
            for imported in list(graph.find_modules_directly_imported_by(module)):
                graph.remove_import(importer=module, imported=imported)
    assert _cycles(graph) == []

"""The data package's modules import one another one way: no cycle, not even through a function-level import."""

import ast
from pathlib import Path

import pytest

import sekd.data

DATA = Path(sekd.data.__file__).parent


def imported_modules(path: Path, package: str, modules: set[str]) -> set[str]:
    """The modules of ``package`` (names in ``modules``) that the file imports, anywhere in it."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1:
                base = node.module or ""
            elif node.level == 2 and (node.module or "").startswith("data"):
                base = (node.module or "").removeprefix("data").lstrip(".")
            elif node.level == 0 and (node.module or "").startswith(package):
                base = node.module.removeprefix(package).lstrip(".")
            else:
                continue
            if base:
                found.add(base.split(".")[0])
            else:  # from . import build
                found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.Import):
            found |= {alias.name.removeprefix(package + ".").split(".")[0] for alias in node.names
                      if alias.name.startswith(package + ".")}
    return found & modules


def import_graph(folder: Path, package: str) -> dict[str, set[str]]:
    modules = {p.stem for p in folder.glob("*.py") if p.stem != "__init__"}
    return {name: imported_modules(folder / f"{name}.py", package, modules) - {name} for name in sorted(modules)}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as ``[a, b, ..., a]``, or None."""
    state: dict[str, str] = {}  # "open" while on the path, "done" after

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return path[path.index(nxt):] + [node, nxt]  # open and not this node: on the path
            if nxt not in state and (cycle := visit(nxt, path + [node])):
                return cycle
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node, [])):
            return cycle
    return None


def test_the_cycle_finder_finds_cycles_through_any_kind_of_import(tmp_path):
    (tmp_path / "a.py").write_text("from .b import x\n")
    (tmp_path / "b.py").write_text("def f():\n    from . import c\n")
    (tmp_path / "c.py").write_text("import sekd.data.a\n")
    (tmp_path / "d.py").write_text("from .a import y\nfrom ..audio import SAMPLE_RATE\n")
    graph = import_graph(tmp_path, "sekd.data")
    assert graph == {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    (tmp_path / "c.py").write_text("import numpy\n")
    assert find_cycle(import_graph(tmp_path, "sekd.data")) is None


def test_the_data_package_imports_one_way():
    graph = import_graph(DATA, "sekd.data")
    assert graph["datasets"] >= {"layouts", "pairs"}  # the parse sees the package's real imports
    cycle = find_cycle(graph)
    assert cycle is None, "sekd.data modules import in a cycle: " + " -> ".join(cycle)


@pytest.mark.parametrize("module", ["pairs", "pools"])
def test_the_records_at_the_bottom_import_no_other_data_module(module):
    assert import_graph(DATA, "sekd.data")[module] == set()

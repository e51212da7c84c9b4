"""No import cycle among the modules of faceapp/ and trainer/.

The graph is read from the source with `ast` (nothing is imported): every `import`
and `from ... import` anywhere in a module counts, inside functions and under
`if TYPE_CHECKING:` too, since a cycle hidden in a function is still a knot two
modules can only be changed together. Relative imports are resolved against the
module's package; `from package import name` points at the submodule `package.name`
when there is one, at the package otherwise. Importing a submodule runs its parent
packages' `__init__` first, but those implicit edges are left out: only what a
module's own source names counts.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("faceapp", "trainer")


def module_files(package: str) -> dict[str, Path]:
    """Dotted module name -> file, for every .py file under the package."""
    modules = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _is_package(name: str, modules: dict[str, Path]) -> bool:
    return modules[name].name == "__init__.py"


def imports_of(name: str, modules: dict[str, Path]) -> set[str]:
    """The project modules that module `name` imports (anywhere in its source)."""
    tree = ast.parse(modules[name].read_text(encoding="utf-8"), str(modules[name]))
    package = name if _is_package(name, modules) else name.rpartition(".")[0]
    found: set[str] = set()

    def nearest(dotted: str) -> str | None:
        # "a.b.c" may name a module, or an attribute of module "a.b"
        while dotted and dotted not in modules:
            dotted = dotted.rpartition(".")[0]
        return dotted or None

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = nearest(alias.name)
                if target:
                    found.add(target)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")
                if node.level > 1:
                    base_parts = base_parts[:-(node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            for alias in node.names:
                target = nearest(f"{base}.{alias.name}") if alias.name != "*" else None
                if target is None or target != f"{base}.{alias.name}":
                    target = nearest(base)
                if target:
                    found.add(target)
    found.discard(name)
    return found


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    return {name: imports_of(name, modules) for name in modules}


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per knot (strongly connected component of more than one module),
    each written as a closed path."""
    return [_cycle_in(graph, set(k)) for k in knots_of(graph)]


def knots_of(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module, sorted
    (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in graph:
                    continue
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(sorted(component))
    return sorted(components)


def _cycle_in(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """A shortest closed path through the component's first module."""
    start = min(component)
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for child in sorted(graph[node] & component):
                if child == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [start] + path[::-1][1:] + [start] if len(path) > 1 \
                        else [start, start]
                if child not in previous:
                    previous[child] = node
                    following.append(child)
        frontier = following
    return sorted(component)  # pragma: no cover - a component always closes


@pytest.mark.parametrize("package", PACKAGES)
def test_no_import_cycle(package):
    modules = {}
    for name in PACKAGES:  # edges across packages count too (faceapp <- trainer)
        modules.update(module_files(name))
    graph = import_graph(modules)
    cycles = [c for c in find_cycles(graph) if c[0].split(".")[0] == package]
    knots = {c[0]: k for k in knots_of(graph) for c in cycles if c[0] in k}
    message = "\n".join(" -> ".join(cycle) + (
        f"\n    (one knot with: {', '.join(m for m in knots[cycle[0]] if m not in cycle)})"
        if len(knots[cycle[0]]) > len(set(cycle)) else "") for cycle in cycles)
    assert not cycles, f"import cycles in {package}/:\n{message}"


def test_the_walk_sees_what_it_should(tmp_path):
    """Relative imports at any depth, imports inside functions, `from . import x`."""
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from .sub import b\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "b.py").write_text("from ..c import VALUE\n")
    (pkg / "c.py").write_text("from typing import TYPE_CHECKING\n"
                              "if TYPE_CHECKING:\n    from pkg import a\nVALUE = 1\n")
    modules = {}
    for path in sorted(pkg.rglob("*.py")):
        parts = list(path.relative_to(tmp_path).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    graph = import_graph(modules)
    assert graph["pkg.a"] == {"pkg.sub.b"}
    assert graph["pkg.sub.b"] == {"pkg.c"}
    assert graph["pkg.c"] == {"pkg.a"}
    assert find_cycles(graph) == [["pkg.a", "pkg.sub.b", "pkg.c", "pkg.a"]]

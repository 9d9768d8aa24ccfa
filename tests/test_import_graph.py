"""No import cycle in mattebox or mattebox_plugin, between modules or between subpackages (issue #19 item 2); the
server never imports mattebox.testing and benches never import tests/ (docs/architecture.md, "Tests and benches").

The graph is read from the source with :mod:`ast`, never by importing it, so a cycle that Python happens to
survive today (a lazy import, a name defined before the partial import reaches it) still fails here.

What counts as an edge:

- every ``import`` and ``from ... import`` of a module of the two packages, wherever it stands: at module level,
  inside a function, or under ``try``. A function-level import runs the moment it is called, so hiding a cycle in
  a function is still a cycle. The one exception is ``if TYPE_CHECKING:``, which never runs.
- third-party imports (torch, cv2, numba, ...) are not nodes: they cannot close a cycle through our code. Keeping
  torch off the classical path is checked separately (tests/test_classical_segmentation.py).
- ``from pkg import name`` is an edge to ``pkg.name`` when that is a module, else to ``pkg``. Importing a module
  also runs its packages' ``__init__``: those are edges too, except the importer's own packages, which are
  already running when it is imported.

Two graphs must be acyclic: the modules', and the subpackages' (each module counted as the first level under its
root package, e.g. ``mattebox.engines``, ``mattebox.matting``, ``mattebox.contract``): a layer that imports
another must not be imported back, even by a different module.
"""
from __future__ import annotations

import ast
from collections import deque
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Set, Tuple

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"mattebox": ROOT / "server" / "mattebox", "mattebox_plugin": ROOT / "plugin" / "mattebox_plugin"}

#: (importer, imported) -> "path:line" of the first import that made the edge
Edges = Dict[Tuple[str, str], str]


def module_files(packages: Dict[str, Path]) -> Dict[str, Path]:
    """Module name -> source file for every .py file of the given packages (``pkg.sub`` for ``pkg/sub/__init__``)."""
    modules = {}
    for name, folder in packages.items():
        for path in sorted(folder.rglob("*.py")):
            parts = [name, *path.relative_to(folder).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST) -> Iterable[ast.stmt]:
    """Every Import/ImportFrom in the tree, skipping the bodies of ``if TYPE_CHECKING:``."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def _targets(node: ast.stmt, importer: str, is_package: bool, modules: Dict[str, Path]) -> List[str]:
    """The modules of ours that one import statement names."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level:
        base = importer.split(".") if is_package else importer.split(".")[:-1]
        base = base[:len(base) - (node.level - 1)]
        prefix = ".".join(base + ([node.module] if node.module else []))
    else:
        prefix = node.module or ""
    return [f"{prefix}.{alias.name}" if f"{prefix}.{alias.name}" in modules else prefix for alias in node.names]


def _shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def import_edges(modules: Dict[str, Path]) -> Edges:
    """The import graph of ``modules`` (see the module docstring for what counts)."""
    edges: Edges = {}
    for importer, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        own_packages = {".".join(importer.split(".")[:i]) for i in range(1, importer.count(".") + 1)}
        if path.name == "__init__.py":
            own_packages.add(importer)
        for node in _imports(tree):
            for target in _targets(node, importer, path.name == "__init__.py", modules):
                parts = target.split(".")
                for i in range(1, len(parts) + 1):  # the module and the packages whose __init__ it runs
                    name = ".".join(parts[:i])
                    if name in modules and name not in own_packages and name != importer:
                        where = f"{_shown(path)}:{node.lineno}"
                        edges.setdefault((importer, name), where)
    return edges


def layer_of(module: str) -> str:
    """The subpackage (or top-level module) a module belongs to: its first two dotted parts."""
    return ".".join(module.split(".")[:2])


def layer_edges(edges: Edges) -> Edges:
    """The graph between layers: one edge per pair of different layers, citing the first import that made it."""
    layers: Edges = {}
    for (a, b), where in sorted(edges.items()):
        if layer_of(a) != layer_of(b):
            layers.setdefault((layer_of(a), layer_of(b)), f"{where} ({a} -> {b})")
    return layers


def _shortest_cycle(start: str, graph: Dict[str, Set[str]], allowed: Set[str]) -> Optional[List[str]]:
    """The shortest path start -> ... -> start within ``allowed`` (breadth first)."""
    parent: Dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for nxt in sorted(graph.get(node, ())):
            if nxt not in allowed:
                continue
            if nxt == start:
                path = [node]
                while path[-1] != start:
                    path.append(parent[path[-1]])
                return [start, *reversed(path[:-1]), start] if node != start else [start, start]
            if nxt not in parent:
                parent[nxt] = node
                queue.append(nxt)
    return None


def find_cycles(edges: Edges) -> List[str]:
    """One shortest cycle per strongly connected component of more than one node, each as ``a -> b -> a``
    (and the component's other members, if any) followed by where each import is."""
    graph: Dict[str, Set[str]] = {}
    for a, b in edges:
        graph.setdefault(a, set()).add(b)
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack: Set[str] = set()
    components: List[Set[str]] = []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(component)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    reports = []
    for component in components:
        cycle = _shortest_cycle(min(component), graph, component)
        steps = "\n".join(f"    {a} -> {b}: {edges[a, b]}" for a, b in zip(cycle, cycle[1:]))
        more = f" (one loop of {len(component)} entangled: {', '.join(sorted(component))})" \
            if len(component) > len(cycle) - 1 else ""
        reports.append(" -> ".join(cycle) + more + "\n" + steps)
    return reports


@pytest.fixture(scope="module")
def edges() -> Edges:
    return import_edges(module_files(PACKAGES))


def test_no_cycle_between_modules(edges):
    cycles = find_cycles(edges)
    assert not cycles, "import cycles between modules:\n" + "\n".join(cycles)


def test_no_cycle_between_subpackages(edges):
    cycles = find_cycles(layer_edges(edges))
    assert not cycles, "import cycles between subpackages:\n" + "\n".join(cycles)


#: importer layer -> layers it must never import (docs/architecture.md, "Package layout and import rules")
FORBIDDEN = {
    "mattebox.matting": ("mattebox.engines", "mattebox.shots", "mattebox.training", "mattebox.commands",
                         "mattebox.server", "mattebox.jobs"),
    "mattebox.models": ("mattebox.matting", "mattebox.engines", "mattebox.training", "mattebox.commands"),
    "mattebox_plugin": ("mattebox",),
}


def _inside(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_lower_layers_do_not_import_upper_ones(edges, layer):
    wrong = [f"{a} -> {b}: {where}" for (a, b), where in sorted(edges.items())
             if _inside(a, layer) and any(_inside(b, upper) for upper in FORBIDDEN[layer])]
    assert not wrong, f"{layer} imports a layer above it:\n" + "\n".join(wrong)


def test_only_tests_and_benches_use_mattebox_testing(edges):
    wrong = [f"{a} -> {b}: {where}" for (a, b), where in sorted(edges.items())
             if _inside(b, "mattebox.testing") and not _inside(a, "mattebox.testing")]
    assert not wrong, "the server imports its test helpers:\n" + "\n".join(wrong)


#: benches about a real host, which may drive it with that host's harness (docs/architecture.md, "Tests and
#: benches"): bench file -> the tests.hosts module prefix it may import
HOST_BENCHES = {"gimp_plugin.py": "tests.hosts", "blender_extension.py": "tests.hosts"}


def test_benches_do_not_import_tests():
    wrong = []
    for path in sorted((ROOT / "bench").rglob("*.py")):
        source = path.read_text()
        if "tests.support" in source:  # also as a string, e.g. a MATTEBOX_ENGINES entry a server would import
            wrong.append(f"{_shown(path)}: names tests.support")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            else:
                continue
            allowed = HOST_BENCHES.get(path.name)
            wrong += [f"{_shown(path)}:{node.lineno}: imports {name}" for name in names
                      if _inside(name, "tests") and not (allowed and _inside(name, allowed))]
    assert not wrong, "benches import tests/ (what both need belongs in mattebox.testing):\n" + "\n".join(wrong)


def _write_package(root: Path, files: Dict[str, str]) -> Dict[str, Path]:
    for relative, text in files.items():
        path = root / "pkg" / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return module_files({"pkg": root / "pkg"})


def test_a_cycle_through_a_function_level_import_is_named(tmp_path):
    modules = _write_package(tmp_path, {
        "__init__.py": "",
        "a.py": "from . import b\n",
        "b.py": "def f():\n    from .a import thing\n",
    })
    cycles = find_cycles(import_edges(modules))
    assert len(cycles) == 1 and cycles[0].startswith("pkg.a -> pkg.b -> pkg.a")


def test_type_checking_imports_and_own_packages_are_not_edges(tmp_path):
    modules = _write_package(tmp_path, {
        "__init__.py": "from .sub import x\n",
        "sub/__init__.py": "from .x import f\n",
        "sub/x.py": "from typing import TYPE_CHECKING\nfrom . import y\nif TYPE_CHECKING:\n    from .. import z\n",
        "sub/y.py": "import os\n",
        "z.py": "from .sub import y\n",
    })
    edges = import_edges(modules)
    assert find_cycles(edges) == []
    assert ("pkg.sub.x", "pkg.z") not in edges  # TYPE_CHECKING only
    assert ("pkg.z", "pkg.sub") in edges  # importing pkg.sub.y runs pkg/sub/__init__ first


def test_a_cycle_between_subpackages_is_found_even_without_a_module_cycle(tmp_path):
    modules = _write_package(tmp_path, {
        "__init__.py": "",
        "one/__init__.py": "",
        "one/a.py": "from ..two import c\n",
        "one/b.py": "",
        "two/__init__.py": "",
        "two/c.py": "from ..one import b\n",
    })
    edges = import_edges(modules)
    assert find_cycles(edges) == []
    [cycle] = find_cycles(layer_edges(edges))
    assert cycle.startswith("pkg.one -> pkg.two -> pkg.one")

"""No import circles inside harness/: the module graph, read from the source with `ast`, has no cycle.

Every import counts, wherever it stands (module top, inside a function, under `if TYPE_CHECKING:`): an import
moved into a function to dodge a circle is still a circle in the design. Relative imports and the
`from harness import x` form resolve to the module they name; importing `a.b.c` also imports the packages
`a.b` (their `__init__` runs first), so those edges count too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE_ROOT = Path(__file__).resolve().parent.parent / "harness"


def module_files(root: Path = PACKAGE_ROOT) -> dict[str, Path]:
    """Module name -> file, for every module and package of `root`."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _is_package(modules: dict[str, Path], name: str) -> bool:
    return modules[name].name == "__init__.py"


def _imported(modules: dict[str, Path], importer: str, node: ast.Import | ast.ImportFrom) -> list[str]:
    """The harness modules an import statement names (not yet their parent packages)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level:  # relative: `from . import x` in package p is p.x; in module p.m it is p.x too
        base = importer.split(".")
        if not _is_package(modules, importer):
            base = base[:-1]
        base = base[: len(base) - (node.level - 1)]
        target = ".".join(base + ([node.module] if node.module else []))
    else:
        target = node.module or ""
    # `from pkg import name`: name is a submodule when one exists, else an attribute of pkg itself.
    return [f"{target}.{a.name}" if f"{target}.{a.name}" in modules else target for a in node.names]


def _nearest_module(modules: dict[str, Path], name: str) -> str | None:
    """`harness.a.b.attr` -> `harness.a.b`: the longest prefix of a dotted name that is a harness module."""
    parts = name.split(".")
    while parts and ".".join(parts) not in modules:
        parts.pop()
    return ".".join(parts) or None


def import_graph(root: Path = PACKAGE_ROOT) -> dict[str, set[str]]:
    """Module -> the harness modules it imports (anywhere in its source), parent packages included."""
    modules = module_files(root)
    top = root.name
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            for target in _imported(modules, name, node):
                found = _nearest_module(modules, target) if target.split(".")[0] == top else None
                if found is None:
                    continue
                parts = found.split(".")
                # importing a.b.c runs a/__init__ and a/b/__init__ first; `harness` itself imports nothing
                for depth in range(2, len(parts) + 1):
                    dep = ".".join(parts[:depth])
                    if dep != name and not name.startswith(dep + "."):  # a module's own packages are running
                        graph[name].add(dep)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One circle per strongly connected component of more than one module (Tarjan), each as a closed path
    `a -> b -> ... -> a` through that component, shortest first from its alphabetically first module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def visit(v: str) -> None:
        # Recursion depth is bounded by the number of modules (well under Python's limit).
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(component)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(_shortest_circle(graph, c) for c in components)


def _component_of(graph: dict[str, set[str]], v: str) -> set[str]:
    """The modules that `v` reaches and that reach `v` back."""

    def reach(start: str, edges) -> set[str]:
        seen, todo = {start}, [start]
        while todo:
            for w in edges(todo.pop()):
                if w not in seen:
                    seen.add(w)
                    todo.append(w)
        return seen

    return reach(v, lambda x: graph[x]) & reach(v, lambda x: [u for u in graph if x in graph[u]])


def _shortest_circle(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    start = min(component)
    paths = {start: [start]}
    frontier = [start]
    while frontier:  # breadth first inside the component, back to `start`
        nxt = []
        for v in frontier:
            for w in sorted(graph[v] & component):
                if w == start:
                    return paths[v] + [start]
                if w not in paths:
                    paths[w] = paths[v] + [w]
                    nxt.append(w)
        frontier = nxt
    raise AssertionError(f"{sorted(component)} is not strongly connected")


def test_the_harness_package_has_no_import_circle():
    graph = import_graph()
    found = cycles(graph)
    assert not found, "import circles in harness/:\n" + "\n".join(
        f"{' -> '.join(c)}  (all of: {', '.join(sorted(_component_of(graph, c[0])))})" for c in found
    )


# Data flows one way (docs/design.md): each module imports only modules of its own layer or a lower one. A new
# module goes in the lowest layer whose imports it needs; the test names any module no layer lists.
LAYERS = (
    (
        "foundation",
        "errors constants files yamlfile dataspec engine_spec profile extract chunking measure stats records cost "
        "launch cache docgen strata waves record_base scenario_records latency signals workers openmp",
    ),
    ("schema", "spec scorers overrides"),
    (
        "data and measurement",
        "sources data models tasks manifest retrieval evaluate evaluate_vllm memory_estimate evalcache throughput"
        " results baselines priorbreak calibration",
    ),
    ("parts", "parts context"),
    ("systems", "systems"),
    ("report", "report"),
    (
        "pipeline",
        "checks taskinfo probe estimate system_eval run rundir train_worker sweep tracking cli cli_output cli_options"
        " cli_tasks serving scenario",
    ),
)


def layer_of(module: str) -> int | None:
    """The layer of `harness.x.y`: the one that lists `x` (a package's modules share its layer)."""
    parts = module.split(".")
    if len(parts) == 1:
        return -1  # the `harness` package itself imports nothing
    for i, (_, names) in enumerate(LAYERS):
        if parts[1] in names.split():
            return i
    return None


def test_every_module_imports_only_its_own_layer_or_lower():
    graph = import_graph()
    unplaced = sorted(m for m in graph if layer_of(m) is None)
    assert not unplaced, f"modules in no layer of tests/test_imports.py LAYERS: {', '.join(unplaced)}"
    upward = [
        f"{m} ({LAYERS[layer_of(m)][0]}) imports {d} ({LAYERS[layer_of(d)][0]})"
        for m in sorted(graph)
        for d in sorted(graph[m])
        if layer_of(d) > layer_of(m)
    ]
    assert not upward, "imports against the flow of data:\n" + "\n".join(upward)


# ---------------------------------------------------------------- the checker itself


@pytest.fixture
def package(tmp_path):
    def make(files: dict[str, str]) -> Path:
        for rel, text in files.items():
            p = tmp_path / "pkg" / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(text)
        return tmp_path / "pkg"

    return make


def test_imports_inside_functions_and_relative_forms_are_resolved(package):
    root = package(
        {
            "__init__.py": "",
            "a.py": "def f():\n    from pkg import b\n",
            "b.py": "from .sub import c\n",
            "sub/__init__.py": "",
            "sub/c.py": "from ..a import f\nimport json\n",
            "sub/d.py": "from . import c\nfrom pkg.sub.c import name\n",
        }
    )
    graph = import_graph(root)
    assert graph["pkg.a"] == {"pkg.b"}
    assert graph["pkg.b"] == {"pkg.sub", "pkg.sub.c"}
    assert graph["pkg.sub.c"] == {"pkg.a"}  # its own package is already importing; json is not ours
    assert graph["pkg.sub.d"] == {"pkg.sub.c"}
    assert cycles(graph) == [["pkg.a", "pkg.b", "pkg.sub.c", "pkg.a"]]


def test_a_package_init_importing_its_user_is_a_circle(package):
    root = package(
        {
            "__init__.py": "",
            "reg/__init__.py": "from pkg.data import Row\n",
            "reg/one.py": "",
            "data.py": "from pkg.spec import S\n",
            "spec.py": "def check():\n    from pkg.reg.one import X\n",
        }
    )
    assert cycles(import_graph(root)) == [["pkg.data", "pkg.spec", "pkg.reg", "pkg.data"]]


def test_no_circle_in_a_layered_package(package):
    root = package({"__init__.py": "", "low.py": "import os\n", "mid.py": "from pkg import low\n"})
    assert cycles(import_graph(root)) == []

"""The architecture rules of ARCHITECTURE.md, checked on the source (every import counts).

Imports are read with ``ast``, so those inside functions and under ``TYPE_CHECKING`` count as
much as the ones at the top: a cycle hidden in a function is still a cycle for whoever has to
change the code. The same graph is what ``../shared/tools/import_cycles.py`` prints; that tool
only understands relative imports inside the package, which is one more reason the package
code imports its own modules relatively (checked below).
"""

from __future__ import annotations

import ast
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: folder -> rank in the layering: a module may import its own layer and the ones below.
LAYERS = {"analytics": 0, "models": 1, "app": 2}
#: Third-party libraries a layer must not import (DESIGN.md): the UI stays in app/, torch in
#: models/ and above.
FORBIDDEN_LIBS = {
    "analytics": ("torch", "captum", "dash", "plotly", "pydeck", "flask"),
    "models": ("dash", "plotly", "pydeck", "flask"),
}
#: The analyses and everything below them: they never read or build summary tables.
BELOW_ROLLUPS = ("analytics.temporal", "analytics.spatial", "analytics.users",
                 "analytics.engine", "analytics.store", "analytics.schema", "analytics.geo",
                 "analytics.spacetime", "analytics.ingest", "analytics.sample")


@dataclass(frozen=True)
class Edge:
    src: str
    dst: str
    line: int
    absolute: bool  # written as `trailscope.x` / `x` instead of relative


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _sources() -> dict[str, Path]:
    return {_module(p): p for top in LAYERS for p in sorted((ROOT / top).rglob("*.py"))}


MODULES = _sources()


def _resolve(name: str) -> str | None:
    """The longest project module a dotted name starts with (``trailscope.`` stripped)."""
    name = name.removeprefix("trailscope.")
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _imports(mod: str, path: Path) -> Iterator[tuple[str, int, bool]]:
    """(imported dotted name, line, written absolutely) for every import in the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    pkg = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno, True
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = pkg.split(".")
                up = up[: len(up) - (node.level - 1)]
                base = ".".join([*up, base] if base else up)
            yield base, node.lineno, not node.level
            for alias in node.names:
                yield f"{base}.{alias.name}", node.lineno, not node.level


def _edges() -> list[Edge]:
    out = []
    for mod, path in MODULES.items():
        for name, line, absolute in _imports(mod, path):
            top = name.split(".")[0]
            if top not in LAYERS and top != "trailscope":
                continue
            dst = _resolve(name)
            if dst and dst != mod:
                out.append(Edge(mod, dst, line, absolute))
    return out


EDGES = _edges()


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            for w in it:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                    break
                if w in on:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on.discard(w)
                        comp.append(w)
                        if w == v:
                            break
                    if len(comp) > 1:
                        found.append(sorted(comp))
    return found


def _where(e: Edge) -> str:
    return f"{MODULES[e.src].relative_to(ROOT)}:{e.line} imports {e.dst}"


def _report(edges: list[Edge]) -> list[str]:
    """One line per (file, line, module), in file order."""
    return sorted({_where(e) for e in edges})


def test_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles() -> None:
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for e in EDGES:
        graph[e.src].add(e.dst)
    cycles = _cycles(graph)
    detail = []
    for comp in cycles:
        detail += _report([e for e in EDGES if e.src in comp and e.dst in comp])
    assert not cycles, "import cycles:\n" + "\n".join(detail)


def test_layers_point_down() -> None:
    """app -> models -> analytics; never up."""
    bad = _report([e for e in EDGES
                   if LAYERS[e.dst.split(".")[0]] > LAYERS[e.src.split(".")[0]]])
    assert not bad, "imports against the layering:\n" + "\n".join(bad)


def test_pages_talk_to_services_only() -> None:
    """Pages draw: they call app.services and app.views, and may spell column names."""
    allowed = ("app.services", "app.views", "app.deckgl", "analytics.schema")
    bad = _report([e for e in EDGES if e.src.startswith("app.pages")
                   and not e.dst.startswith(allowed) and not e.dst.startswith("app.pages")])
    assert not bad, "pages reaching past the services:\n" + "\n".join(bad)


def test_analyses_never_import_summary_tables() -> None:
    """The summary layer sits above the analyses it stores and below the services."""
    bad = _report([e for e in EDGES
                   if e.src.startswith(BELOW_ROLLUPS) and e.dst.startswith("analytics.rollups")])
    assert not bad, "analyses importing analytics.rollups:\n" + "\n".join(bad)


def test_package_imports_its_own_modules_relatively() -> None:
    """Inside the package, project modules are imported relatively (``from ..store import``):
    no top-level ``app``/``analytics``/``models`` names (they do not exist once installed),
    and one spelling, which the shared cycle tool reads too."""
    bad = _report([e for e in EDGES if e.absolute])
    assert not bad, "absolute imports of project modules inside the package:\n" + "\n".join(bad)


def test_package_inits_import_nothing_of_the_project() -> None:
    """A re-export in an ``__init__`` makes every ``from . import x`` a cycle through it."""
    bad = _report([e for e in EDGES if MODULES[e.src].name == "__init__.py"])
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("layer", sorted(FORBIDDEN_LIBS))
def test_layer_libraries(layer: str) -> None:
    libs = FORBIDDEN_LIBS[layer]
    bad = [f"{path.relative_to(ROOT)}:{line} imports {name}"
           for mod, path in MODULES.items() if mod.split(".")[0] == layer
           for name, line, _ in _imports(mod, path) if name.split(".")[0] in libs]
    assert not bad, f"{layer}/ imports a library of a higher layer:\n" + "\n".join(bad)


def test_tests_and_benches_import_the_installed_names() -> None:
    """tests/ and bench/ import ``trailscope.*``; a bare ``import app`` would load a second copy
    of a module from the checkout (and fail where the package is installed)."""
    bad = []
    for top in ("tests", "bench"):
        for path in sorted((ROOT / top).rglob("*.py")):
            if any(part.startswith(".") for part in path.relative_to(ROOT).parts):
                continue  # bench/.recbole-venv and other hidden folders: not ours
            for name, line, absolute in _imports(_module(path), path):
                if absolute and name.split(".")[0] in LAYERS:
                    bad.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    assert not bad, "\n".join(bad)


def test_pyproject_lists_every_package() -> None:
    """setuptools installs only the packages pyproject names: a new subpackage must be listed."""
    conf = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(conf["packages"])
    on_disk = {"trailscope." + _module(p.parent / "__init__.py")
               for top in LAYERS for p in (ROOT / top).rglob("__init__.py")}
    on_disk.add("trailscope.assets")
    assert listed == on_disk, (f"missing from pyproject: {sorted(on_disk - listed)}; "
                               f"listed but absent: {sorted(listed - on_disk)}")
    assert conf["package-dir"] == {f"trailscope.{t}": t for t in (*LAYERS, "assets")}

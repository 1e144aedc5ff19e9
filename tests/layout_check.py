"""The layout rules of ``recon3d/``, as a checker that reads a package folder and returns violations.

:func:`check_package` parses every module with :mod:`ast` (module-level and function-local imports
alike; nothing is imported or run) and reports, one string each:

* ``cycle``: modules that import each other, directly or through others;
* ``layer``: a module importing a later layer (see :data:`LAYERS`; lower may be imported by higher);
* ``backend``: ``splat`` importing ``nerf`` or the reverse;
* ``pure``: ``geometry`` importing anything of the package outside ``geometry``, ``core`` anything
  outside ``core``;
* ``private``: an underscored name (``_x``, not ``__x__``) of one module imported, or read as an
  attribute of an imported module, by another;
* ``size``: a module over :data:`MAX_LINES` lines;
* ``unknown``: a top-level module or subpackage missing from :data:`LAYERS` (add it there, in order);
* ``missing``: an import of a module of the package that does not exist (a stale path after a move,
  in a function no test runs).

Resolution: relative imports are made absolute; ``from pkg import x`` means the module ``pkg.x`` when
that file exists, else (a name defined in ``pkg/__init__.py``) the module ``pkg``.

Cycles count every import between modules, plus the one Python adds: importing ``a.b.c`` from outside
package ``a.b`` first runs ``a.b``'s ``__init__`` (and ``a``'s), so the importer depends on those too.
A module never depends that way on its own enclosing packages: they are already being imported when
it runs, so a package ``__init__`` re-exporting its own submodules is no cycle (and the root package's
``__init__``, enclosing everything, never is part of one).

Imports by name at run time (``importlib.import_module``: the CLI's subcommand table, the preset
registry's ``"module:function"`` references, the viewer's NeRF hook) are not followed: they are the
deliberate late binding that lets lower layers name higher ones without importing them.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path

#: Layers, lowest first: a module may import its own layer and earlier ones. ``pipeline`` is the
#: top-level module ``recon3d/pipeline.py``; ``render`` and ``pipeline`` may not exist yet.
LAYERS = ("core", "geometry", "io", "scenes", "calibrate", "sfm", "evaluate", "stereo", "splat", "nerf",
          "render", "viewer", "pipeline", "cli")
#: Layers that import nothing of the package but themselves.
PURE = ("core", "geometry")
#: Training backends that never import each other.
BACKENDS = ("splat", "nerf")
#: Top-level modules exempt from the layer rules: the root ``__init__`` (version, docstring) and
#: ``__main__`` (calls the CLI: it is the very top). Both still count for cycles.
EXEMPT = ("__init__", "__main__")
MAX_LINES = 500


@dataclass
class Module:
    name: str  # dotted, e.g. "recon3d.core.atomic"; a package's __init__ is the package's name
    path: Path
    is_package: bool
    lines: int
    imports: list[tuple[str, int]] = field(default_factory=list)  # (module imported, line)
    names: list[tuple[str, str, int]] = field(default_factory=list)  # (module, name taken from it, line)


def _module_name(root: Path, path: Path) -> tuple[str, bool]:
    parts = [root.name, *path.relative_to(root).with_suffix("").parts]
    if parts[-1] == "__init__":
        return ".".join(parts[:-1]), True
    return ".".join(parts), False


def _absolute(mod: Module, level: int, target: str | None) -> str:
    """The absolute name of ``from <level dots><target> import ...`` written in ``mod``."""
    if level == 0:
        return target or ""
    package = mod.name.split(".") if mod.is_package else mod.name.split(".")[:-1]
    base = package[: len(package) - (level - 1)] if level > 1 else package
    return ".".join([*base, target] if target else base)


def _existing(name: str, modules: dict[str, Module]) -> str | None:
    """The longest prefix of dotted ``name`` that is a module of the package (None if none is)."""
    parts = name.split(".")
    while parts:
        if ".".join(parts) in modules:
            return ".".join(parts)
        parts.pop()
    return None


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def scan(root: Path | str) -> dict[str, Module]:
    """Every module of the package in folder ``root``, with the package modules each imports."""
    root = Path(root)
    modules: dict[str, Module] = {}
    trees: dict[str, ast.AST] = {}
    for path in sorted(root.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        text = path.read_text(encoding="utf-8")
        name, is_package = _module_name(root, path)
        modules[name] = Module(name, path, is_package, len(text.splitlines()))
        trees[name] = ast.parse(text, filename=str(path))
    top = root.name
    for name, tree in trees.items():
        mod = modules[name]
        aliases: dict[str, str] = {}  # local name bound to a package module -> that module
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name == top or alias.name.startswith(top + "."):
                        mod.imports.append((alias.name, node.lineno))
                        if alias.asname:
                            aliases[alias.asname] = alias.name
            elif isinstance(node, ast.ImportFrom):
                source = _absolute(mod, node.level, node.module)
                if source != top and not source.startswith(top + "."):
                    continue
                for alias in node.names:
                    sub = f"{source}.{alias.name}"
                    if sub in modules or (root / Path(*sub.split(".")[1:])).is_dir():
                        mod.imports.append((sub, node.lineno))
                        aliases[alias.asname or alias.name] = sub
                    else:
                        mod.imports.append((source, node.lineno))
                        mod.names.append((source, alias.name, node.lineno))
        for node in ast.walk(tree):  # `module._name` read through a module imported under a local name
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases:
                mod.names.append((aliases[node.value.id], node.attr, node.lineno))
    return modules


def _layer(name: str) -> str | None:
    parts = name.split(".")
    if len(parts) == 1 or (len(parts) == 2 and parts[1] in EXEMPT):
        return None
    return parts[1]


def _where(mod: Module, line: int) -> str:
    return f"{mod.name} (line {line})"


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (or a self-import), Tarjan's."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
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
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1 or v in graph.get(v, ()):
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _one_cycle(graph: dict[str, set[str]], comp: list[str]) -> list[str]:
    """A shortest cycle through the first module of a strongly connected component, for the message."""
    start, members = comp[0], set(comp)
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph.get(v, ())):
                if w == start:
                    path = [v]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [*reversed(path), start]
                if w in members and w not in previous:
                    previous[w] = v
                    nxt.append(w)
        frontier = nxt
    return [start, start]


def check_package(root: Path | str) -> list[str]:
    """Violations of the layout rules in the package at folder ``root`` (empty when it obeys them)."""
    modules = scan(root)
    rank = {layer: i for i, layer in enumerate(LAYERS)}
    out: list[str] = []
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for mod in modules.values():
        if mod.lines > MAX_LINES:
            out.append(f"size: {mod.name} has {mod.lines} lines (over {MAX_LINES}): split it")
        src = _layer(mod.name)
        if src is not None and src not in rank:
            out.append(f"unknown: {mod.name} is in no layer: add {src!r} to LAYERS in tests/layout_check.py")
        own_packages = {".".join(mod.name.split(".")[:i]) for i in range(1, mod.name.count(".") + 1)}
        if mod.is_package:
            own_packages.add(mod.name)
        for target, line in mod.imports:
            resolved = _existing(target, modules)
            if resolved != target:
                out.append(f"missing: {_where(mod, line)} imports {target}, which does not exist")
            if resolved is not None and resolved != mod.name:
                graph[mod.name].add(resolved)
                parts = resolved.split(".")  # the enclosing packages' __init__ that importing it runs
                for i in range(1, len(parts)):
                    parent = ".".join(parts[:i])
                    if parent not in own_packages and parent in modules:
                        graph[mod.name].add(parent)
            dst = _layer(target)
            if src is None or src not in rank or dst == src:
                continue
            if src in PURE:  # not even the root package (its __init__ is above every layer)
                out.append(f"pure: {_where(mod, line)} imports {target}: {src}/ imports only {src}/")
            elif dst is None:
                continue
            elif src in BACKENDS and dst in BACKENDS:
                out.append(f"backend: {_where(mod, line)} imports {target}: splat and nerf never import each other")
            elif dst in rank and rank[dst] > rank[src]:
                out.append(f"layer: {_where(mod, line)} imports {target}: {src} may not import the later {dst}")
        for source, name, line in mod.names:
            if _is_private(name) and source != mod.name:
                out.append(f"private: {_where(mod, line)} uses {source}.{name}: make it public or move it")
    for comp in _cycles(graph):
        out.append("cycle: " + " -> ".join(_one_cycle(graph, comp)))
    return out

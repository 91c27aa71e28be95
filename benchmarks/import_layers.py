"""The package's frame, drawn from its own imports: floors, circles and upward arrows.

    python benchmarks/import_layers.py
    python benchmarks/import_layers.py --trace   # also follow one program's data (needs torch, onnx)

Every ``import`` in ``fractal_dsl/**/*.py`` (at module level, inside functions and under
``TYPE_CHECKING`` alike) is an arrow from the importing module to the imported one (and, from outside a subpackage, to what its
``__init__.py`` imports at once, since Python runs that file first).
:data:`FLOORS` orders the modules into the pipeline's stages, bottom up (a module may
import from its own floor and the floors below); an arrow to a higher floor is an upward
arrow, and a set of modules that import each other round is a circle.  Prints the floors,
every upward arrow and every circle; ``tests/test_import_layers.py`` keeps them within
bounds (no circle, at most two upward arrows).

``--trace`` follows the longest trip the data takes, ``examples/tiny.fdsl`` from text to
ONNX bytes (``fractal_dsl.load`` then ``export.export_bytes``), with :func:`sys.setprofile`:
every call into a package module is charged to the nearest package module below it on the
stack, and printed are how often the trip enters each module from another and how often a
call climbs to a higher floor than its caller's (a call back up, e.g. through a callback).
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections import Counter
from pathlib import Path

import networkx as nx

PACKAGE = Path(__file__).resolve().parent.parent / "fractal_dsl"

# bottom up; a module not listed here is reported (every new module takes a floor)
FLOORS: tuple[tuple[str, ...], ...] = (
    ("_resources", "_version", "errors", "fingerprint"),  # no imports of the package
    ("safeio", "layers", "grammar"),  # files; the layer registry; the grammar's parser
    ("habits", "syntax", "lexer"),  # text -> Program
    ("ir", "rules"),  # the typed graph; the fractal's rules
    ("fmt", "overrides", "budget", "binding", "semantics"),  # text tools; expansion's helpers; the semantics
    ("expand",),  # Program -> Network
    ("validate",),  # Network -> Network with shapes
    ("pipeline", "summary", "layout", "anytime"),  # load(); check/inspect; placing nodes; per-column costs
    ("codegen", "render"),  # Network -> model.py, DOT/SVG
    ("webview", "train.config", "train.speed", "train.data", "train.distributed", "train.memory"),
    ("train.checkpoint", "train.runfolder", "train.plots", "train.tblog"),
    ("export",),  # Network (+ checkpoint) -> ONNX
    ("train.ort",),  # ONNX Runtime latency of an exported path
    ("train.loop",),
    ("train.custom", "train"),
    ("compare", "sweep", "lsp"),
    ("__init__", "cli"),  # the public API and the command line
)


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" and len(rel.parts) > 1 else rel.parts
    return ".".join(parts)


def imports(path: Path, name: str) -> set[str]:
    """The package's modules that ``path`` imports (relative and absolute imports alike)."""
    return _imports_of(ast.parse(path.read_text(encoding="utf-8")), path, name)


def _imports_of(tree: ast.AST, path: Path, name: str) -> set[str]:
    package = name.split(".")[:-1] if path.name != "__init__.py" else name.split(".")
    if name == "__init__":
        package = []
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
            elif node.module and node.module.split(".")[0] == "fractal_dsl":
                base = []
            else:
                continue
            mod = node.module or ""
            if not node.level:
                mod = mod.removeprefix("fractal_dsl").lstrip(".")
            target = [*base, *mod.split(".")] if mod else base
            for alias in node.names:  # `from . import render` imports the module render
                sub = ".".join([*target, alias.name])
                found.add(sub if _exists(sub) else ".".join(target) or "__init__")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "fractal_dsl":
                    found.add(alias.name.removeprefix("fractal_dsl").lstrip(".") or "__init__")
    found.discard(name)
    return found


def top_level_imports(path: Path, name: str) -> set[str]:
    """What running ``path`` imports at once (its module-level statements, not functions)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    body = ast.Module(body=[s for s in tree.body if isinstance(s, (ast.Import, ast.ImportFrom))], type_ignores=[])
    return _imports_of(body, path, name)


def _exists(module: str) -> bool:
    rel = Path(*module.split("."))
    return (PACKAGE / rel).with_suffix(".py").is_file() or (PACKAGE / rel / "__init__.py").is_file()


def graph() -> nx.DiGraph:
    """Module -> the modules it imports.  Importing ``train.checkpoint`` from outside ``train``
    also runs ``train/__init__.py``: the importer gets arrows to what that file imports at once."""
    g = nx.DiGraph()
    paths = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
    for name, path in paths.items():
        g.add_node(name)
        for target in imports(path, name):
            g.add_edge(name, target)
            parts = target.split(".")
            for i in range(1, len(parts)):
                parent = ".".join(parts[:i])
                if name != parent and not name.startswith(parent + "."):
                    for also in top_level_imports(paths[parent], parent) - {name}:
                        g.add_edge(name, also)
    return g


def floor_of() -> dict[str, int]:
    return {m: i for i, floor in enumerate(FLOORS) for m in floor}


def report(g: nx.DiGraph) -> tuple[list[str], list[list[str]], list[tuple[str, str]]]:
    """(modules without a floor, circles, upward arrows)."""
    floors = floor_of()
    unplaced = sorted(n for n in g if n not in floors)
    circles = [sorted(c) for c in nx.strongly_connected_components(g) if len(c) > 1]
    upward = sorted((u, v) for u, v in g.edges if u in floors and v in floors and floors[v] > floors[u])
    return unplaced, sorted(circles), upward


def trace() -> tuple[Counter, list[tuple[str, str]]]:
    """(entries into each module from another package module, calls that climb a floor)."""
    sys.path.insert(0, str(PACKAGE.parent))
    import fractal_dsl
    from fractal_dsl.export import export_bytes

    floors = floor_of()
    root = str(PACKAGE) + "/"

    def module_of(frame) -> str | None:
        path = frame.f_code.co_filename
        return module_name(Path(path)) if path.startswith(root) else None

    entries: Counter = Counter()
    climbs: list[tuple[str, str]] = []

    def profile(frame, event, arg) -> None:
        if event != "call":
            return
        callee = module_of(frame)
        if callee is None:
            return
        caller, up = None, frame.f_back
        while up is not None and caller is None:
            caller, up = module_of(up), up.f_back
        if caller is None or caller == callee:
            return
        entries[callee] += 1
        if floors.get(callee, -1) > floors.get(caller, len(FLOORS)):
            climbs.append((caller, callee))

    net = None
    sys.setprofile(profile)
    try:
        net = fractal_dsl.load(PACKAGE.parent / "examples" / "tiny.fdsl")
        export_bytes(net, warn=lambda *_: None)
    finally:
        sys.setprofile(None)
    return entries, climbs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trace", action="store_true", help="follow tiny.fdsl from text to ONNX bytes")
    args = parser.parse_args()
    g = graph()
    unplaced, circles, upward = report(g)
    floors = floor_of()
    print(f"{g.number_of_nodes()} modules, {g.number_of_edges()} arrows, {len(FLOORS)} floors")
    for i, floor in enumerate(FLOORS):
        print(f"  floor {i:2d}: {', '.join(m for m in floor if m in g)}")
    print(f"unplaced: {', '.join(unplaced) or 'none'}")
    print(f"circles: {len(circles)}")
    for c in circles:
        print("  " + " <-> ".join(c))
    print(f"upward arrows: {len(upward)}")
    for u, v in upward:
        print(f"  {u} (floor {floors[u]}) -> {v} (floor {floors[v]})")
    if args.trace:
        entries, climbs = trace()
        print("the trip tiny.fdsl -> ONNX bytes enters (from another module of the package):")
        for name, n in sorted(entries.items(), key=lambda kv: (-kv[1], kv[0])):
            print(f"  {name:<18} {n:>6} times")
        print(f"calls that climb to a higher floor: {len(climbs)}")
        for (u, v), n in sorted(Counter(climbs).items()):
            print(f"  {u} (floor {floors.get(u)}) -> {v} (floor {floors.get(v)}): {n}")


if __name__ == "__main__":
    main()

"""The package's frame, drawn from its own imports: floors, circles and upward arrows.

    python benchmarks/import_layers.py

Every ``import`` in ``fractal_dsl/**/*.py`` (at module level, inside functions and under
``TYPE_CHECKING`` alike) is an arrow from the importing module to the imported one.
:data:`FLOORS` orders the modules into the pipeline's stages, bottom up (a module may
import from its own floor and the floors below); an arrow to a higher floor is an upward
arrow, and a set of modules that import each other round is a circle.  Prints the floors,
every upward arrow and every circle; ``tests/test_import_layers.py`` keeps them within
bounds (no circle, at most two upward arrows).
"""

from __future__ import annotations

import ast
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
    package = name.split(".")[:-1] if path.name != "__init__.py" else name.split(".")
    if name == "__init__":
        package = []
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
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


def _exists(module: str) -> bool:
    rel = Path(*module.split("."))
    return (PACKAGE / rel).with_suffix(".py").is_file() or (PACKAGE / rel / "__init__.py").is_file()


def graph() -> nx.DiGraph:
    g = nx.DiGraph()
    for path in sorted(PACKAGE.rglob("*.py")):
        name = module_name(path)
        g.add_node(name)
        for target in imports(path, name):
            g.add_edge(name, target)
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


def main() -> None:
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


if __name__ == "__main__":
    main()

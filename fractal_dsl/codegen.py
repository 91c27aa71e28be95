"""Stage 5: a validated :class:`~fractal_dsl.expand.Network` -> one standalone PyTorch file.

:func:`generate` builds a template context from the graph and renders
``codegen_templates/model.py.j2``.  Every name that reaches the code is made here, from
positions (``block1.column3.layer2``, ``c3_2``) or from a validated class name, and every
value goes through ``repr``; the templates only lay things out.  Source text never reaches
the code, and the source file name reaches the docstring only through ``ascii`` with its
quotes escaped.  The result is checked with :func:`ast.parse` before it is returned.

The emitted file imports only torch and the standard library and is kept in the shape
``ruff format`` gives it (lines fit in 88 columns, or are exploded one item per line with
a trailing comma).  Nothing here imports torch.
"""

from __future__ import annotations

import ast
import builtins
import hashlib
import keyword
import math
import os
import tempfile
import types
from pathlib import Path

import jinja2

from . import __version__, semantics
from ._resources import resource_dir
from .errors import RunError
from .expand import Network
from .ir import Node
from .layers import Layer, torch_ctor

WIDTH = 88
# Names the generated module defines or imports: a class must not shadow them.
_MODULE_NAMES = {
    "Any",
    "Callable",
    "NamedTuple",
    "OrderedDict",
    "RemovableHandle",
    "Tensor",
    "functools",
    "nn",
    "torch",
    "annotations",
    "build",
    "sample_drop_path",
    "NUM_COLUMNS",
    "DEFAULT_DROP_PATH_LOCAL",
    "DEFAULT_DROP_PATH_GLOBAL",
}


class CodegenError(RunError):
    """The network cannot be turned into Python (a value that has no literal form)."""


def class_name(net: Network) -> str:
    """The generated class's name: the network name in CamelCase, made safe.

    ``fractal4`` -> ``Fractal4``; a name that would clash with a keyword, a builtin or a
    name of the generated module gets ``Net`` appended (``tensor`` -> ``TensorNet``).
    """
    parts = [p for p in net.name.split("_") if p]
    name = "".join(p[0].upper() + p[1:] for p in parts) or "Network"
    if not name[0].isalpha():
        name = "Net" + name
    if (
        not name.isidentifier()
        or keyword.iskeyword(name)
        or hasattr(builtins, name)
        or name in _MODULE_NAMES
        or name.startswith("_")
    ):
        name += "Net"
    return name


def module_names(net: Network) -> dict[str, str]:
    """``{node id: dotted submodule name}`` for every node that holds layers."""
    return {n.id: n.module for n in net.nodes() if n.module is not None}


def generate(net: Network) -> str:
    """The Python source of the compiled module; byte-identical for the same network."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(resource_dir("codegen_templates"))),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters["repr"] = _literal
    source = env.get_template("model.py.j2").render(_context(net))
    ast.parse(source)  # a template or naming bug must never reach the user as broken code
    return source


def load_module(source: str, name: str) -> types.ModuleType:
    """Execute generated ``source`` as a fresh module called ``name`` (imports torch)."""
    module = types.ModuleType(name)
    module.__file__ = f"<{name}>"
    exec(compile(source, module.__file__, "exec"), module.__dict__)  # noqa: S102 - our own generated code
    return module


def write_atomic(path: str | Path, source: str) -> None:
    """Write ``source`` to ``path`` through a temporary file and a rename, so a reader never
    sees half a module and a failed write leaves the old file in place."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or ".")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(source)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# ---- the template context ----------------------------------------------------------------


def _context(net: Network) -> dict:
    order = net.nodes_in_order()
    index = {n: i for i, n in enumerate(order)}
    modules = module_names(net)
    joins = semantics.joins(net)
    join_index = {n: j for j, n in enumerate(joins)}

    node_rows = []
    for node in net.nodes():
        uses = []
        for w in net.consumers(node.id):
            e = net.edge(node.id, w)
            uses.append((index[w], join_index.get(w, -1), e.index if w in join_index else 0))
        node_rows.append((node.id, modules.get(node.id, ""), node.columns, tuple(uses)))

    join_rows = []
    for n in joins:
        ins = net.inputs(n)
        shape = net.node(n).in_shape
        channels = tuple(net.node(u).shape[0] for u in ins)
        columns = tuple(net.edge(u, n).columns for u in ins)
        join_rows.append((n, len(shape) + 1, channels, columns))

    return {
        "network_repr": _doc_text(net.name),
        "source_name": _doc_text(net.source_name),
        "sha256": hashlib.sha256(net.source_text.encode("utf-8")).hexdigest(),
        "version": _doc_text(__version__),
        "class_name": class_name(net),
        "columns": net.columns,
        "blocks": net.blocks,
        "params": net.params,
        "classes": net.classes,
        "join_mode": net.join_mode,
        "flat_joins": net.flat_joins,
        "droppath_local": float(net.droppath.local),
        "droppath_global": float(net.droppath.global_ratio),
        "droppath_per": net.droppath.per,
        "droppath_enabled": bool(net.droppath.enabled),
        "init": net.init,
        "node_lines": _table_lines(node_rows),
        "join_lines": _table_lines(join_rows),
        "stem": _ctors(net, "stem"),
        "head": _ctors(net, "head"),
        "block_modules": [_block(net, b, index, join_index, modules) for b in range(1, net.blocks + 1)],
    }


def _ctors(net: Network, node: str) -> list[str]:
    if node not in net.graph:
        return []
    return _layer_ctors(net, net.node(node), head=node == "head")


def _block(net: Network, b: int, index: dict, join_index: dict, modules: dict) -> dict:
    """Block ``b``'s submodules and the straight-line code of its forward pass: one line
    per node, skipped (None) when the plan says no kept path uses it."""
    nodes = [n for n in net.nodes() if n.block == b]
    var: dict[str, str] = {}
    columns: dict[int, list] = {}
    steps: list[str] = []
    pool: list[str] = []
    local_join = 0
    for a in nodes:
        n = a.id
        args = [var.get(u, "x") for u in net.inputs(n)]
        if a.kind == "layer":
            column, layer = modules[n].split(".")[1:]
            columns.setdefault(a.column, []).append({"index": layer[5:], "ctors": _layer_ctors(net, a)})
            var[n] = f"c{a.column}_{layer[5:]}"
            steps.append(f"{var[n]} = block.{column}.{layer}({args[0]}) if live[{index[n]}] else None")
        elif a.kind == "join":
            local_join += 1
            var[n] = f"j{local_join}"
            xs = f"({args[0]},)" if len(args) == 1 else f"({', '.join(args)})"
            call = f"{var[n]} = _join({xs}, plan, {join_index[n]}) if live[{index[n]}] else None"
            if len(call) + 8 > WIDTH:
                steps.append("xs = (")
                steps.extend(f"    {v}," for v in args)
                steps.append(")")
                call = f"{var[n]} = _join(xs, plan, {join_index[n]}) if live[{index[n]}] else None"
            steps.append(call)
        elif a.kind == "pool":
            pool = _layer_ctors(net, a)
            steps.append(f"return block.pool({args[0]})")
    exits = [a.id for a in nodes if any(net.node(w).block != b for w in net.graph.successors(a.id))]
    if not pool:
        steps.append(f"return {var[exits[0]]}")
    return {
        "block": b,
        "columns": [{"column": k, "layers": columns[k]} for k in sorted(columns)],
        "pool": pool,
        "steps": steps,
    }


def _layer_ctors(net: Network, node: Node, head: bool = False) -> list[str]:
    shapes = [node.in_shape, *node.layer_shapes]
    layers = node.layers
    out = []
    for i, layer in enumerate(layers):
        last_linear = head and layer.type == "linear" and all(x.type != "linear" for x in layers[i + 1 :])
        out.append(_ctor(layer, shapes[i], last_linear and layer.arg("out_features") == net.classes))
    return out


def _ctor(layer: Layer, in_shape: tuple[int, ...], num_classes: bool) -> str:
    return torch_ctor(layer, in_shape, _literal, num_classes)


# ---- literals and layout --------------------------------------------------------------


def _literal(value) -> str:
    """``repr`` of a plain value, refusing anything whose repr is not a Python literal."""
    if isinstance(value, float) and not math.isfinite(value):
        raise CodegenError(f"{value!r} has no Python literal")
    if isinstance(value, tuple):
        for v in value:
            _literal(v)
    elif not (value is None or isinstance(value, (bool, int, float, str))):
        raise CodegenError(f"cannot write a {type(value).__name__} into generated code")
    if isinstance(value, tuple):
        inner = ", ".join(_literal(v) for v in value)
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    text = repr(value)
    if isinstance(value, str) and text.startswith("'") and '"' not in value:
        text = '"' + text[1:-1] + '"'  # the quotes ruff format prefers
    return text


def _table_lines(rows: list[tuple], indent: int = 4) -> list[str]:
    """Rows of a tuple table, each on one line if it fits, else one item per line."""
    lines = []
    for row in rows:
        one = _literal(row) + ","
        if indent + len(one) <= WIDTH:
            lines.append(one)
            continue
        lines.append("(")
        lines.extend(f"    {_literal(item)}," for item in row)
        lines.append("),")
    return lines


def _doc_text(text: str) -> str:
    """``text`` as it may appear inside the raw module docstring: ASCII, no line breaks,
    no quote that could end the docstring."""
    return ascii(text)[1:-1].replace('"', '\\"') if not text.isidentifier() else text

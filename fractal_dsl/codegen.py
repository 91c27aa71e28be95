"""Stage 5: a validated :class:`~fractal_dsl.expand.Network` -> one standalone PyTorch file.

:func:`generate` builds a template context from the graph and renders
``codegen_templates/model.py.j2``.  Every name that reaches the code is made here, from
positions (``block1.column3.layer2``, ``c3_2``), or from a validated class name, key entry
or parameter name made a safe identifier (:func:`_safe`), and every value goes through
``repr``; the templates only lay things out.  Source text reaches only comments (a key
entry's definition, through ``ascii`` and without its comments, as whole comment lines)
and the source file name the docstring and those comments, through ``ascii`` with the
docstring's quotes escaped.  The result is checked once: by :func:`generate` with
:func:`compile` (the same syntax check as :func:`ast.parse` without building Python's AST
objects, and faster), or, with ``check=False``, by :func:`load_module` executing it.

The emitted file imports only torch and the standard library and is kept in the shape
``ruff format`` gives it (lines fit in 88 columns, or are exploded one item per line with
a trailing comma).  Nothing here imports torch.
"""

from __future__ import annotations

import builtins
import hashlib
import keyword
import math
import textwrap
import types
from typing import NamedTuple

import jinja2

from . import layers, semantics
from ._resources import resource_dir
from ._version import __version__
from .errors import RunError, UsageError
from .ir import HEAD, JOIN, LAYER, POOL, Network, Node
from .layers import BUILTINS
from .rules import SPECIAL_KEYS

WIDTH = 88
# Names the generated module defines or imports: a class must not shadow them.
_MODULE_NAMES = {
    "ONLY_COLUMN",
    "load_full_state_dict",
    "INPUT_SHAPE",
    "PathBatchNorm2d",
    "recalibrate_bn",
    "Iterable",
    "warnings",
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
    "column_sample",
    "sample_drop_path",
    "NUM_COLUMNS",
    "DEFAULT_DROP_PATH_LOCAL",
    "DEFAULT_DROP_PATH_GLOBAL",
    "DEFAULT_INIT",
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
    """``{node id: dotted submodule name}`` for every node that holds layers (``Node.module``,
    named by position when the graph is built)."""
    return {n.id: n.module for n in net.nodes() if n.module is not None}


def generate(net: Network, column: int | None = None, *, check: bool = True) -> str:
    """The Python source of the compiled module; byte-identical for the same network.

    With ``column=K``, the module holds column K's layers only (the same submodule and
    parameter names as the whole network's) and always runs column K, as the whole
    network's ``model(x, column=K)`` does; ``load_full_state_dict`` fills it from the whole
    network's weights. ``check=False`` leaves the syntax check to the caller's
    :func:`load_module`, which compiles the source anyway (at C = 10 the check is a quarter
    of the time: ``benchmarks/compile_speed.py``).
    """
    if column is not None and not 1 <= column <= net.columns:
        raise UsageError(f"{{column}} {column}: {net.name} has columns 1 to {net.columns}", "column")
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(resource_dir("codegen_templates"))),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters["repr"] = _literal
    source = env.get_template("model.py.j2").render(_context(net, column))
    if check:  # a template or naming bug must never reach the user as broken code
        compile(source, "<fractal-dsl generated module>", "exec", dont_inherit=True)
    return source


def load_module(source: str, name: str) -> types.ModuleType:
    """Execute generated ``source`` as a fresh module called ``name`` (imports torch)."""
    module = types.ModuleType(name)
    module.__file__ = f"<{name}>"
    exec(compile(source, module.__file__, "exec"), module.__dict__)  # noqa: S102 - our own generated code
    return module


def _context(net: Network, column: int | None = None) -> dict:
    order = net.nodes_in_order()
    index = {n: i for i, n in enumerate(order)}
    modules = module_names(net)
    joins = semantics.joins(net)
    join_index = {n: j for j, n in enumerate(joins)}
    units = _UnitFunctions(net)
    graphs = _Graphs(net, index, join_index, modules)
    keep = semantics.column_path(net, column)[0] if column is not None else None
    unit_tables = _UnitTables(net, units, graphs, keep)
    return {
        "network_repr": _doc_text(net.name),
        "source_name": _doc_text(net.source_name),
        "sha256": hashlib.sha256(net.source_text.encode("utf-8")).hexdigest(),
        "version": _doc_text(__version__),
        "class_name": class_name(net),
        "columns": net.columns,
        "input_shape": tuple(net.input_shape),
        "input_text": "x".join(map(str, net.input_shape)),
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
        "functions": units.functions,
        "graphs": graphs.graphs,
        "stem": units.call("stem", "self.stem = ") if "stem" in net.graph else [],
        "head": units.call("head", "self.head = "),
        "unit_tables": unit_tables.tables,
        "block_lines": unit_tables.block_lines,
        "block_modules": [graphs.block(b) for b in range(1, net.blocks + 1)],
        "only_column": column,
        "exports": _exports(class_name(net), column is not None),
    }


def _exports(cls: str, only_column: bool) -> list[str]:
    """The module's ``__all__``, in the order ruff's RUF022 keeps: constants, classes, the rest."""
    constants = ["INPUT_SHAPE", "NUM_COLUMNS", *(["ONLY_COLUMN"] if only_column else [])]
    functions = ["build", "column_sample", "recalibrate_bn", "sample_drop_path"]
    functions += ["load_full_state_dict"] if only_column else []
    return sorted(constants) + sorted([cls, "PathBatchNorm2d"]) + sorted(functions)


# ---- one function per key entry -------------------------------------------------------------

# Names the unit functions must not take: the module's own names, the builtins it calls,
# and the locals of the class's __init__, where the functions are called.
_INIT_LOCALS = {
    "self",
    "num_classes",
    "drop_path",
    "drop_path_local",
    "drop_path_global",
    "drop_path_per",
    "dropout",
    "compute_all",
    "generator",
    "init",
    "name",
    "p",
    "own",
    "b",
    "units",
    "values",
}
# Argument names every unit function may have besides the entry's own parameters.
_FIXED_ARGS = ("in_channels", "dropout", "num_classes")


def _safe(name: str, taken: set[str], reserved: set[str]) -> str:
    """``name`` as a Python identifier that is not a keyword, not in ``reserved`` and not
    in ``taken`` (a trailing ``_`` is added until it is); ``taken`` gets the result."""
    out = name if name.isidentifier() and name.isascii() else "unit"
    while keyword.iskeyword(out) or out in reserved or out in taken:
        out += "_"
    taken.add(out)
    return out


class _Expr(NamedTuple):
    """How a unit function writes one constructor argument: ``text`` (a name or a literal)
    and the value it has in each instance; ``literal`` when ``text`` is a literal."""

    text: str
    values: tuple
    literal: bool


class _UnitFunctions:
    """One function per key entry (or built-in called in a rule) that builds one unit: an
    ``nn.Sequential`` of its layers from the unit's bound parameters, its input channels
    and the ``dropout`` switch; ``calls`` holds each unit node's call of it."""

    def __init__(self, net: Network) -> None:
        defs = {d.span: d for d in net.key}
        groups: dict[tuple, list[Node]] = {}  # one entry's units (its chain fixes the layer types)
        for node in net.nodes():
            if node.is_unit:
                groups.setdefault((node.op, tuple(x.type for x in node.layers)), []).append(node)
        reserved = set(_MODULE_NAMES) | set(dir(builtins)) | _INIT_LOCALS | {class_name(net), "column_sample"}
        taken: set[str] = set()
        self.functions: list[dict] = []
        self.calls: dict[str, tuple[str, list[str]]] = {}
        self.arguments: dict[str, tuple[str, list[tuple[str, object]]]] = {}
        for (op, _), nodes in groups.items():
            fname = _safe(op if not op.startswith("_") else "unit" + op, taken, reserved)
            unit = _UnitFunction(net, fname, nodes, defs)
            self.functions.append(unit.template())
            self.calls.update(unit.calls())
            self.arguments.update(unit.arguments())

    def call(self, node_id: str, head: str = "", tail: str = "", indent: int = 8) -> list[str]:
        """The lines of ``head`` + the call that builds unit ``node_id`` + ``tail``."""
        fname, args = self.calls[node_id]
        return _call_lines(f"{head}{fname}(", args, f"){tail}", indent)


class _UnitFunction:
    """The function of one key entry, worked out from every unit it makes in the network.

    A constructor argument is written as: the channels flowing in (``in_channels``, or the
    expression that set them), ``num_classes`` for the head's classifier, the parameter the
    source passes there, a literal where the source writes one or leaves a default, and
    only where none of these fits every unit (a value derived from a parameter, or a chain
    through other key entries) the parameter whose values agree, a literal when all units
    agree, or else an extra argument of the function.  Each choice holds for every unit by
    construction: an expression's ``values`` are the argument's value in each unit.
    """

    def __init__(self, net: Network, fname: str, nodes: list[Node], defs: dict) -> None:
        self.net, self.fname, self.nodes = net, fname, nodes
        first = nodes[0]
        d = defs.get(first.key_span) if first.key_span is not None else None
        self.key_def = d
        self.params = list(d.params) if d is not None else [k for k, _ in first.args]
        self.taken: set[str] = set(_FIXED_ARGS) | {"nn"}
        self.names = {p: _safe(p, self.taken, set()) for p in self.params}
        self.raw = {p: tuple(dict(n.args).get(p) for n in nodes) for p in self.params}
        self.ptype: dict[str, str] = {}  # int, float or bool, once a parameter fills an argument
        self.extras: list[tuple[str, str, tuple]] = []
        self.used = {"in_channels": False, "dropout": False, "num_classes": False}
        self.hints = self._hints(d, first, {e.name for e in defs.values()})
        self.ctors = self._body()

    def _body(self) -> list[str]:
        nodes, first = self.nodes, self.nodes[0]
        cur: _Expr | None = _Expr("in_channels", tuple(n.in_shape[0] for n in nodes), False)
        ctors = []
        for i, layer in enumerate(first.layers):
            t = layer.type
            lt = layers.TYPES[t]
            shapes = [(n.in_shape, *n.layer_shapes)[i] for n in nodes]
            exprs: dict[str, _Expr] = {}
            for slot, kind, default, same_as in lt.slots:
                vals = tuple(layers.slot_value(n.layers[i], slot, shapes[k]) for k, n in enumerate(nodes))
                hint = self.hints.get((i, slot)) if self.hints is not None else None
                if kind == "channels_in" and cur is not None and cur.values == vals:
                    expr = cur
                elif (
                    lt.classifier
                    and slot == lt.out_slot
                    and first.kind == HEAD
                    and all(x.type != t for x in first.layers[i + 1 :])
                    and all(v == self.net.classes for v in vals)
                ):
                    expr = _Expr("num_classes", vals, False)
                elif same_as is not None and hint is None and vals == exprs[same_as].values:
                    expr = exprs[same_as]  # an argument that defaults to another (a pool's stride)
                else:
                    expr = self._generic(f"{slot}_{i}", vals, kind, default, hint)
                if expr.text in self.used:
                    self.used[expr.text] = True
                exprs[slot] = expr
            if lt.switch and not (exprs[lt.switch].literal and not exprs[lt.switch].values[0]):
                self.used["dropout"] = True
            ctors.extend(_ctor_lines(t, exprs))
            if lt.out_slot:
                cur = exprs[lt.out_slot]
            elif lt.flattens:
                after = tuple(n.layer_shapes[i][0] for n in nodes)
                cur = cur if cur is not None and cur.values == after else None
        return ctors

    @staticmethod
    def _hints(d, first: Node, entries: set[str]) -> dict[tuple[int, str], object] | None:
        """``{(layer, argument): Value}`` for what the key entry's source writes, when its
        body is a chain of built-ins (one layer each); None when it is not."""
        if d is None or len(d.chain) != len(first.layers):
            return None
        hints = {}
        for i, call in enumerate(d.chain):
            shadowed = call.name in entries and call.name != d.name and call.name not in SPECIAL_KEYS
            if call.name not in BUILTINS or shadowed:
                return None
            builtin = BUILTINS[call.name]
            names = [p for p, _ in builtin.params]
            given = dict(zip(names, [a.value for a in call.args if a.name is None]))
            given.update({a.name: a.value for a in call.args if a.name is not None})
            for param, value in given.items():
                hints[(i, builtin.slot(param))] = value
        return hints

    def _generic(self, extra: str, vals: tuple, kind: str, default, hint) -> _Expr:
        same = all(v == vals[0] and type(v) is type(vals[0]) for v in vals)
        if hint is not None and hint.is_name and hint.value in self.raw:
            candidates = [hint.value]  # the parameter the source passes here
        elif hint is not None or (self.hints is not None and same):
            candidates = []  # a literal in the source, or a default it leaves alone
        elif default is not layers.NO_DEFAULT and same and vals[0] == default:
            candidates = []
        else:
            candidates = list(self.raw)
        for p in candidates:
            if self._matches(p, vals, kind):
                return _Expr(self.names[p], vals, False)
        if same:
            return _Expr(_literal(vals[0]), vals, True)
        name = _safe(extra, self.taken, set())
        self.extras.append((name, kind, vals))
        return _Expr(name, vals, False)

    def _matches(self, p: str, vals: tuple, kind: str) -> bool:
        """Whether parameter ``p`` has the argument's value in every unit (and a type that
        fits it; its first use fixes the type the calls pass it as)."""
        want = "int" if kind in ("int", "channels_in") else kind
        if self.ptype.get(p, want) != want:
            return False
        for v, s in zip(self.raw[p], vals):
            if isinstance(v, bool) != (want == "bool") or v != s:
                return False
            if want == "int" and not float(v).is_integer():
                return False
        self.ptype[p] = want
        return True

    def _value(self, p: str, k: int):
        v = self.raw[p][k]
        t = self.ptype.get(p)
        return int(v) if t == "int" else float(v) if t == "float" else v

    def _annotation(self, p: str) -> str:
        t = self.ptype.get(p)
        if t is not None:
            return t
        vals = self.raw[p]
        if all(isinstance(v, bool) for v in vals):
            return "bool"
        return "int" if all(isinstance(v, int) for v in vals) else "float"

    def template(self) -> dict:
        args: list[str] = []
        if self.used["in_channels"]:
            args.append("in_channels: int")
        args += [f"{self.names[p]}: {self._annotation(p)}" for p in self.params]
        args += [f"{name}: {_ANNOTATION[kind]}" for name, kind, _ in self.extras]
        args += [f"{name}: {t}" for name, t in (("num_classes", "int"), ("dropout", "bool")) if self.used[name]]
        return {
            "name": self.fname,
            "comment": self._comment(),
            "def": _call_lines(f"def {self.fname}(", args, ") -> nn.Sequential:", 0),
            "ctors": self.ctors,
        }

    def arguments(self) -> dict[str, tuple[str, list[tuple[str, object]]]]:
        """Each unit's call: the function and its ``(parameter, value)`` pairs in the
        function's order; ``num_classes`` and ``dropout`` have :data:`_OWN` for a value
        (the class's own argument of that name is passed)."""
        out = {}
        for k, n in enumerate(self.nodes):
            args: list[tuple[str, object]] = [("in_channels", n.in_shape[0])] if self.used["in_channels"] else []
            args += [(self.names[p], self._value(p, k)) for p in self.params]
            args += [(name, vals[k]) for name, _, vals in self.extras]
            args += [(name, _OWN) for name in ("num_classes", "dropout") if self.used[name]]
            out[n.id] = (self.fname, args)
        return out

    def calls(self) -> dict[str, tuple[str, list[str]]]:
        """Each unit's call as written: ``in_channels`` by position, the rest by name."""
        out = {}
        for node, (fname, args) in self.arguments().items():
            out[node] = (fname, [_argument_text(name, value) for name, value in args])
        return out

    def _comment(self) -> list[str]:
        """``# FILE:LINE`` and the definition, made safe comment lines: ASCII (``ascii``
        escapes the rest), no line break, none of the source's own comments."""
        first = self.nodes[0]
        span = first.key_span or first.span
        lines = self.net.source_text.split("\n")[span.line - 1 : span.end_line]
        if lines:
            lines[-1] = lines[-1][: span.end_column - 1]
            lines[0] = lines[0][span.column - 1 :]
        words = [w for line in lines for w in line.split("#")[0].split()]  # "#" only starts comments
        text = ascii(" ".join(words))[1:-1]
        where = ascii(self.net.source_name)[1:-1]
        head = f"# {where}:{span.line}" + ("" if first.key_span else " (a built-in called in a rule)")
        return [head, *(f"#   {line}" for line in textwrap.wrap(text, WIDTH - 4, break_on_hyphens=False))]


_OWN = object()  # an argument the class's __init__ passes on as it was given (dropout, num_classes)


def _argument_text(name: str, value) -> str:
    if value is _OWN:
        return f"{name}={name}"
    return _literal(value) if name == "in_channels" else f"{name}={_literal(value)}"


_ANNOTATION = {"int": "int", "channels_in": "int", "float": "float", "bool": "bool"}


# ---- the graph: shared block graphs, the forward pass, the construction --------------------


class _Graphs:
    """The blocks' graphs and their forward passes, with blocks of the same graph sharing both.

    A block's graph is its nodes but the pool, in order, as rows of ``(node id, submodule,
    columns, inputs)`` without the block's prefix, an input being the row it comes from
    (counted from 1; 0 is the block's input); a join's row adds the rank of its tensors (and,
    for concat, its inputs' channels). Blocks built alike have equal rows and equal on-path
    bits (what their joins keep on each column's path) and share one ``_GRAPH{i}``,
    ``_ON_PATH{i}`` and ``_forward_graph{i}``; the generated ``_expand`` rebuilds the whole
    network's tables from them (checked against the graph by the tests).
    """

    def __init__(self, net: Network, index: dict, join_index: dict, modules: dict) -> None:
        self.net, self.index, self.join_index, self.modules = net, index, join_index, modules
        self.nodes = {node.id: node for node in net.nodes()}
        order = list(index)
        in_block: dict[int, list[str]] = {}
        for n in order:
            if self.nodes[n].kind in (LAYER, JOIN):
                in_block.setdefault(self.nodes[n].block, []).append(n)
        on_path = semantics.on_path_table(net)
        first_input = [0]  # each join's first input among all joins' inputs
        for n in join_index:
            first_input.append(first_input[-1] + len(net.inputs(n)))
        self.graphs: list[dict] = []
        self.block_graph: dict[int, tuple[int, int, int]] = {}
        keys: dict[tuple, int] = {}
        for b in sorted(in_block):
            members = in_block[b]
            first = index[members[0]]
            if [index[m] for m in members] != list(range(first, first + len(members))):
                raise CodegenError(f"block {b}'s nodes are not contiguous in topological order")
            block_joins = [join_index[m] for m in members if m in join_index]
            j0 = block_joins[0] if block_joins else len(join_index)
            a0, a1 = (first_input[j0], first_input[block_joins[-1] + 1]) if block_joins else (0, 0)
            local = {order[first - 1]: 0} | {m: p for p, m in enumerate(members, 1)}  # row numbers
            rows = tuple(self._row(m, b, local) for m in members)
            bits = tuple(row[a0:a1] for row in on_path)
            g = keys.get((rows, bits))
            if g is None:
                g = keys[(rows, bits)] = len(self.graphs) + 1
                self.graphs.append(
                    {
                        "index": g,
                        "blocks": [],
                        "lines": _table_lines(list(rows)),
                        "on_path": _bit_rows(bits),
                        "steps": self._steps(members, first, j0),
                    }
                )
            self.graphs[g - 1]["blocks"].append(b)
            self.graphs[g - 1]["blocks_text"] = _blocks_text(self.graphs[g - 1]["blocks"])
            self.block_graph[b] = (g, first, j0)
        self._check_chain(order, in_block)

    def _check_chain(self, order: list[str], in_block: dict[int, list[str]]) -> None:
        """What the generated ``_expand`` assumes: the input, the stem, each block's graph and
        pool, the head and the output in that order, each node outside the blocks carrying
        every column and taking the node before it."""
        expected = ["input", *(["stem"] if "stem" in self.nodes else [])]
        for b in sorted(in_block):
            expected += in_block[b] + ([f"b{b}_pool"] if f"b{b}_pool" in self.nodes else [])
        expected += ["head", "output"]
        if order != expected:
            raise CodegenError("the network is not input, stem, blocks and pools, head, output in order")
        every = tuple(range(1, self.net.columns + 1))
        for i, n in enumerate(order):
            chained = [order[i - 1]] if i else []
            if self.nodes[n].kind not in (LAYER, JOIN) and (
                self.nodes[n].columns != every or self.net.inputs(n) != chained
            ):
                raise CodegenError(f"{n} does not carry every column from the node before it")

    def _row(self, m: str, b: int, local: dict[str, int]) -> tuple:
        """Node ``m``'s row of block ``b``'s graph (``local``: the row of each node the block's
        rows may take as input, 0 for the node that feeds the block)."""
        net, node = self.net, self.nodes[m]
        if any(u not in local for u in net.inputs(m)):
            raise CodegenError(f"{m} takes an input from outside block {b} other than the block's input")
        prefix = f"b{b}_"
        if not m.startswith(prefix):
            raise CodegenError(f"{m}: a node of block {b} without the block's prefix")
        module = self.modules.get(m, "")
        row = (m[len(prefix) :], module[len(f"block{b}.") :] if module else "", node.columns)
        row += (tuple(local[u] for u in net.inputs(m)),)
        if node.kind == JOIN:
            row += (len(node.in_shape) + 1,)
            if net.join_mode == "concat":
                row += (tuple(self.nodes[u].shape[0] for u in net.inputs(m)),)
        return row

    def _steps(self, members: list[str], n0: int, j0: int) -> list[str]:
        """Straight-line code of one graph's forward pass: one line per node, skipped
        (None) when the plan says no kept path uses it."""
        net = self.net
        var: dict[str, str] = {}
        steps: list[str] = []
        local_join = 0
        for m in members:
            node = self.nodes[m]
            args = [var.get(u, "x") for u in net.inputs(m)]
            i = self.index[m] - n0
            if node.kind == LAYER:
                column, layer = self.modules[m].split(".")[1:]
                var[m] = f"c{node.column}_{layer[5:]}"
                steps.append(f"{var[m]} = block.{column}.{layer}({args[0]}) if live[{i}] else None")
            else:  # a join (blocks hold layers and joins; the pool is outside)
                local_join += 1
                var[m] = f"j{local_join}"
                k = self.join_index[m] - j0
                jexpr = "j" if k == 0 else f"j + {k}"
                xs = f"({args[0]},)" if len(args) == 1 else f"({', '.join(args)})"
                call = f"{var[m]} = _join({xs}, plan, {jexpr}) if live[{i}] else None"
                if len(call) + 8 > WIDTH:
                    steps.append("xs = (")
                    steps.extend(f"    {v}," for v in args)
                    steps.append(")")
                    call = f"{var[m]} = _join(xs, plan, {jexpr}) if live[{i}] else None"
                steps.append(call)
        exits = [m for m in members if any(w not in var for w in net.graph.successors(m))]
        steps.append(f"return {var[exits[0]]}")
        return steps

    def block(self, b: int) -> dict:
        """Block ``b``'s forward call: its graph, first node and join, and whether it pools."""
        g, n0, j0 = self.block_graph[b]
        pool = any(node.block == b and node.kind == POOL for node in self.nodes.values())
        return {"block": b, "graph": g, "node": n0, "join": j0, "pool": pool}


class _UnitTables:
    """The class's units as tables: each block's units, in the order of the state_dict keys
    (columns in order, each column's layers in order, then the pool), as rows of
    ``(submodule, layers, function, arguments)``.

    Blocks with the same units (submodules and functions) share one ``_UNITS{i}`` table; an
    argument is the name of one of the block's values, in ``_BLOCKS``: arguments that have
    equal values in every block of the table share a name (that of the parameter that first
    takes it), so a conv's input channels after the first are the ``c`` of the conv before;
    a value the same in every block is shared only by arguments of its own parameter (a
    kernel size of 3 is not named after a padding of 3).
    Consecutive layers of a column built by the same call share one row
    (``range(first, last + 1)``; the pool's ``layers`` is None).  The class's ``__init__``
    builds the units by looping over the rows, in the order one call per unit would, so a
    seed gives the same weights.  ``keep`` (a one-column module) leaves the other units out.
    """

    def __init__(self, net: Network, units: _UnitFunctions, graphs: _Graphs, keep: frozenset[str] | None) -> None:
        groups: dict[tuple, list[int]] = {}  # the blocks with the same units
        calls = {}
        for b in range(1, net.blocks + 1):
            calls[b] = [(net.node(n).module, *units.arguments[n]) for n in self._units(net, b, keep)]
            shape = tuple((m.split(".", 1)[1], f, tuple(a for a, _ in args)) for m, f, args in calls[b])
            groups.setdefault(shape, []).append(b)
        self.tables: list[dict] = []
        entries: dict[int, list[str]] = {}
        for t, (shape, blocks) in enumerate(groups.items(), 1):
            rows, values = self._abstract(shape, [calls[b] for b in blocks])
            lines = [line for row in rows for line in _row_lines(row)]
            self.tables.append({"index": t, "blocks_text": _blocks_text(blocks), "lines": lines})
            for b, vals in zip(blocks, values):
                g = graphs.block_graph[b][0]
                entries[b] = _block_entry_lines(f"_UNITS{t}, _GRAPH{g}, _ON_PATH{g}", vals)
        self.block_lines = [line for b in sorted(entries) for line in entries[b]]

    @staticmethod
    def _units(net: Network, b: int, keep) -> list[str]:
        """Block ``b``'s unit nodes in the order of the state_dict keys."""
        columns: dict[int, list[str]] = {}
        pools = []
        for n in net.nodes_in_order():
            node = net.node(n)
            if node.block == b and node.kind == LAYER and (keep is None or n in keep):
                columns.setdefault(node.column, []).append(n)
            elif node.block == b and node.kind == POOL:
                pools.append(n)
        return [n for k in sorted(columns) for n in columns[k]] + pools

    @staticmethod
    def _abstract(shape: tuple, calls: list[list]) -> tuple[list[tuple], list[dict[str, object]]]:
        """The rows of one table and each block's values (``calls``: the blocks' units)."""
        slots: dict[tuple, str] = {}  # the argument's values in every block -> its name
        values: list[dict[str, object]] = [{} for _ in calls]
        rows: list[list] = []  # [submodule, first layer, last layer, function, argument names]
        for u, (module, fname, params) in enumerate(shape):
            names = []
            for a, pname in enumerate(params):
                vals = [block[u][2][a][1] for block in calls]
                if vals[0] is _OWN:
                    names.append(pname)
                    continue
                key = tuple((type(v).__name__, _literal(v)) for v in vals)
                if len(calls) > 1 and len(set(key)) == 1:
                    key = (pname, *key)  # the same in every block: shared only by its own parameter
                if key not in slots:
                    name, k = pname, 1
                    while name in values[0]:
                        k += 1
                        name = f"{pname}_{k}"
                    slots[key] = name
                    for block_values, v in zip(values, vals):
                        block_values[name] = v
                names.append(slots[key])
            column, _, layer = module.partition(".layer")
            last = rows[-1] if rows else None
            if not layer:
                rows.append([column, None, None, fname, tuple(names)])
            elif last and last[0] == column and last[2] == int(layer) - 1 and last[3:] == [fname, tuple(names)]:
                last[2] = int(layer)
            else:
                rows.append([column, int(layer), int(layer), fname, tuple(names)])
        return [tuple(row) for row in rows], values


def _row_lines(row: tuple) -> list[str]:
    """One row of a ``_UNITS`` table, laid out as ruff format does (at indent 4)."""
    module, first, last, fname, names = row
    items = [_literal(module), "None" if first is None else f"range({first}, {last + 1})", fname]
    one = f"({', '.join(items)}, {_literal(names)}),"
    if 4 + len(one) <= WIDTH:
        return [one]
    return ["(", *(f"    {item}," for item in items), *(f"    {ln}" for ln in _value_lines(names, 8, ",")), "),"]


def _block_entry_lines(tables: str, values: dict[str, object]) -> list[str]:
    """One entry of ``_BLOCKS``: ``(_UNITS{i}, _GRAPH{g}, _ON_PATH{g}, {name: value, ...}),``
    laid out as ruff format does (at indent 4)."""
    pairs = [f"{_literal(k)}: {_literal(v)}" for k, v in values.items()]
    one = f"({tables}, {{{', '.join(pairs)}}}),"
    if 4 + len(one) <= WIDTH:
        return [one]
    names = [f"    {t}," for t in tables.split(", ")]
    inner = "{" + ", ".join(pairs) + "},"
    if 8 + len(inner) <= WIDTH:
        return ["(", *names, f"    {inner}", "),"]
    return ["(", *names, "    {", *(f"        {pair}," for pair in pairs), "    },", "),"]


def _blocks_text(blocks: list[int]) -> str:
    """``block 2``, ``blocks 1 to 5`` or ``blocks 1, 3``."""
    if len(blocks) == 1:
        return f"block {blocks[0]}"
    if blocks == list(range(blocks[0], blocks[-1] + 1)):
        return f"blocks {blocks[0]} to {blocks[-1]}"
    return "blocks " + ", ".join(map(str, blocks))


def _bit_rows(table: tuple[tuple[bool, ...], ...]) -> list[str]:
    """The rows of a boolean table as strings of ``0`` and ``1``, long ones split."""
    lines = []
    chunk = WIDTH - 16
    for row in table:
        bits = "".join("1" if b else "0" for b in row)
        if len(bits) + 11 <= WIDTH:
            lines.append(f'"{bits}",')
            continue
        lines.append("(")
        lines.extend(f'    "{bits[i : i + chunk]}"' for i in range(0, len(bits), chunk))
        lines.append("),")
    return lines


def _call_lines(head: str, items: list[str], tail: str, indent: int) -> list[str]:
    """``head`` + items + ``tail`` on one line if it fits in WIDTH at ``indent``, else one
    item per line with a trailing comma (the layout ruff format keeps)."""
    one = head + ", ".join(items) + tail
    if indent + len(one) <= WIDTH or not items:
        return [one]
    return [head, *(f"    {item}," for item in items), tail]


def _ctor_lines(t: str, exprs: dict[str, _Expr]) -> list[str]:
    """One layer's constructor as an item of ``nn.Sequential(...)`` (at indent 8)."""
    cls, args = layers.TYPES[t].render(exprs)
    return _call_lines(f"{cls}(", args, "),", 8)


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
    """Rows of a tuple table, each on one line if it fits, else exploded one item per line
    (recursively), as ruff format lays them out."""
    return [line for row in rows for line in _value_lines(row, indent, ",")]


def _value_lines(value, indent: int, suffix: str) -> list[str]:
    one = _literal(value) + suffix
    if indent + len(one) <= WIDTH or not isinstance(value, tuple) or not value:
        return [one]
    inner = [f"    {line}" for item in value for line in _value_lines(item, indent + 4, ",")]
    return ["(", *inner, ")" + suffix]


def _doc_text(text: str) -> str:
    """``text`` as it may appear inside the raw module docstring: ASCII, no line breaks,
    no quote that could end the docstring."""
    return ascii(text)[1:-1].replace('"', '\\"') if not text.isidentifier() else text

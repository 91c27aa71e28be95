"""Stage 2: :class:`~fractal_dsl.syntax.Program` -> :class:`Network`, a networkx DAG.

The expansion rules are unrolled to the requested number of columns C, once per block, and
the layer key is resolved into concrete :class:`~fractal_dsl.layers.Layer` lists.  Three
decisions from the paper (see PAPER.md) live here:

* **Flattened joins.**  A join whose branch ends in a join absorbs that join's inputs
  (Figure 1: a C = 4 block has joins of 2, 3, 2 and 4 inputs).  ``join = mean(flat=false)``
  keeps them nested instead.
* **Columns come from the rule.**  Each branch of a join brings its own columns, in the
  order written; a composition ``a . b`` keeps the columns of its parts aligned, and a part
  with one column is shared by all of them.  Columns are then numbered from the shallowest
  (fewest layers on its path) to the deepest, so column 1 is ``conv`` and column C the
  2^(C-1)-layer path, whatever order the rule lists them in.
* **Depth** is the row of Figure 1: a layer sits one row below its deepest input, a join on
  the row of its deepest input (the block input is row 0).

Node ids come from positions (``b2_c4_d3_conv``, ``b2_join_d4``), never from object identity.
Shapes are not known here; :mod:`fractal_dsl.validate` infers them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property

import networkx as nx

from . import budget, semantics
from .binding import CONSTANTS, RESERVED_VALUES, SPECIAL_KEYS, BlockEnv, KeyBinder, bind_blocks, value_names
from .budget import index_text, refs, rule_for
from .errors import Collector, Fix, Span
from .habits import foreign_layer
from .ir import HEAD, LAYER, POOL, STEM, Edge, Node
from .layers import BUILTINS, JOIN_MODES, SAME
from .syntax import Call, FractalRef, Join, KeyDef, Program, Rule, Seq

MAX_COLUMNS = 64


@dataclass(frozen=True)
class DropPath:
    """Drop-path settings; the defaults are the paper's (local 0.15, half global, per batch)."""

    local: float = 0.15
    global_ratio: float = 0.5
    per: str = "batch"
    enabled: bool = True


@dataclass(frozen=True)
class Network:
    """The fractal network: the typed graph (see :mod:`fractal_dsl.ir`) plus the facts every
    later stage needs.  :func:`expand` makes it without shapes; validation returns a new
    one whose nodes carry shapes, parameters and MACs, and whose ``params``/``macs`` are
    the totals.  Never changed after it is made (the graph is frozen)."""

    name: str
    source_name: str
    source_text: str
    graph: nx.DiGraph
    columns: int
    blocks: int
    join_mode: str
    flat_joins: bool
    droppath: DropPath
    input_shape: tuple[int, ...]
    classes: int
    init: str = "xavier"  # weight initialisation (syntax.INIT_SCHEMES); the paper's is Xavier
    block_values: tuple[tuple, ...] = ()
    params: int = 0
    macs: int = 0

    @cached_property
    def _order(self) -> tuple[str, ...]:
        order = {n: i for i, n in enumerate(self.graph.nodes)}
        return tuple(nx.lexicographical_topological_sort(self.graph, key=order.__getitem__))

    @cached_property
    def _position(self) -> dict[str, int]:
        return {n: i for i, n in enumerate(self._order)}

    def nodes_in_order(self) -> list[str]:
        """Node ids in a deterministic topological order (ties broken by creation order)."""
        return list(self._order)

    def position(self, n: str) -> int:
        """Where node ``n`` stands in :meth:`nodes_in_order`."""
        return self._position[n]

    def node(self, n: str) -> Node:
        return self.graph.nodes[n]["node"]

    def nodes(self) -> list[Node]:
        """Every node, in :meth:`nodes_in_order`."""
        g = self.graph.nodes
        return [g[n]["node"] for n in self._order]

    def edge(self, u: str, v: str) -> Edge:
        return self.graph.edges[u, v]["edge"]

    def inputs(self, n: str) -> list[str]:
        """The ids feeding ``n``, in input order (a join's inputs as the rule writes them)."""
        return sorted(self.graph.predecessors(n), key=lambda u: self.edge(u, n).index)

    def consumers(self, n: str) -> list[str]:
        """The ids ``n`` feeds, in :meth:`nodes_in_order`."""
        return sorted(self.graph.successors(n), key=self.position)

    def _repr_html_(self) -> str | None:
        """Jupyter shows the interactive view (``render -o net.html``); needs Graphviz."""
        from .webview import notebook_html  # lazily: loading a network needs no Graphviz

        return notebook_html(self)

    def _repr_svg_(self) -> str | None:
        """Jupyter's static picture: ``render``'s default view as SVG; needs Graphviz."""
        from .webview import notebook_svg

        return notebook_svg(self)


# ---- expression instances ---------------------------------------------------------------


@dataclass
class _Leaf:
    call: Call
    width: int = 1
    cols: tuple[int, ...] = ()


@dataclass
class _Seq:
    parts: list
    ast: Seq
    width: int = 1
    cols: tuple[int, ...] = ()


@dataclass
class _Join:
    branches: list
    ast: Join
    width: int = 1
    cols: tuple[int, ...] = ()


def expand(program: Program) -> Network:
    """Lower a parsed program to a :class:`Network` or raise a FractalError with every problem."""
    diags = Collector(program.source)
    diags.diagnostics.extend(program.problems)
    need = _require(program, diags)
    key = _key_table(program, diags)
    join_mode, flat = _join_mode(key, diags)
    fname, base, rec = _rule_table(program, diags)
    diags.raise_if_any()
    assert need is not None
    input_shape, classes, columns, blocks = need
    budget.check(program, fname, base, rec, columns, len(blocks), key, diags)  # before any graph is built
    diags.raise_if_any()

    block_problems = Collector(program.source)  # reported with the binding problems, not before them
    envs = bind_blocks(blocks, value_names(program, key), block_problems)
    binder = KeyBinder(key, classes, diags, blocks=envs)
    builder = _Builder(program, binder, join_mode, flat, diags)
    try:
        tree = _instantiate(fname, base, rec, columns, program.columns[1], diags)
        _widths(tree, diags)
        diags.raise_if_any()
        _assign_cols(tree, tuple(range(tree.width)))
        builder.build(tree, envs, input_shape, _column_order(tree))
    except RecursionError:  # the walks recurse once per rule level and bracket
        diags.error(
            program.columns[1],
            f"expanding `{fname}[{columns}]` nests too deeply",
            hint="use fewer columns or fewer brackets in the rules",
        )
        diags.raise_if_any()
    _check_usage(program, key, binder.used, diags)
    diags.diagnostics.extend(block_problems.diagnostics)
    diags.raise_if_any()
    graph = builder.finish(tree.width)
    dp = program.droppath
    droppath = DropPath(
        local=dp.local if dp and dp.local is not None else DropPath.local,
        global_ratio=dp.global_ if dp and dp.global_ is not None else DropPath.global_ratio,
        per=dp.per if dp and dp.per else DropPath.per,
        enabled=not (dp and dp.off),
    )
    return Network(
        name=program.name,
        source_name=program.source.name,
        source_text=program.source.text,
        graph=graph,
        columns=tree.width,
        blocks=len(blocks),
        join_mode=join_mode,
        flat_joins=flat,
        droppath=droppath,
        input_shape=input_shape,
        classes=classes,
        init=program.init[0] if program.init else "xavier",
        block_values=tuple(tuple((name, binder.literal(v)) for name, v in env.values.items()) for env in envs),
    )


# ---- statements -----------------------------------------------------------------------


def _require(program: Program, diags: Collector):
    missing = []
    if program.input_shape is None:
        missing.append("`input CxHxW`")
    if program.classes is None:
        missing.append("`classes N`")
    if program.columns is None:
        missing.append("`columns C`")
    if program.blocks is None:
        missing.append("`blocks ...`")
    if not program.rules:
        missing.append("expansion rules such as `f[1] = conv`")
    if not any(d.name == "head" for d in program.key):
        diags.error(
            program.name_span, "the key has no `head`", hint="add e.g. `head = flatten . linear(classes)` to the key"
        )
    if missing:
        diags.error(program.name_span, f"network `{program.name}` is missing " + ", ".join(missing))
        return None
    shape, sspan = program.input_shape
    if len(shape) != 3:
        meant = (1, *shape) if len(shape) == 2 else shape[-3:] if len(shape) > 3 else None
        why = "one channel of HxW pixels" if len(shape) == 2 else "no batch size"
        written = f"input {'x'.join(map(str, meant))}" if meant else None
        diags.error(
            sspan,
            f"input must be an image shape CxHxW, got {'x'.join(map(str, shape))}",
            hint=f"{why}: did you mean `{written}`?" if written else None,
            fix=Fix(sspan, written) if written else None,
        )
    elif any(d < 1 for d in shape):
        diags.error(sspan, "input dimensions must be at least 1")
    elif shape[0] * shape[1] * shape[2] > 1 << 28:
        diags.error(
            sspan,
            (
                f"input {'x'.join(map(str, shape))} has {shape[0] * shape[1] * shape[2]:,} values per sample; the "
                f"limit is {1 << 28:,}"
            ),
        )
    classes, cspan = program.classes
    if not 1 <= classes <= 1_000_000:
        diags.error(cspan, f"classes must be between 1 and 1,000,000, got {classes}")
    columns, colspan = program.columns
    if columns < 1:
        diags.error(colspan, "columns must be at least 1")
    elif columns > MAX_COLUMNS:
        diags.error(
            colspan, f"columns {columns} is far too many (at most {MAX_COLUMNS})", hint="FractalNet uses 3 or 4 columns"
        )
    blocks, bspan = program.blocks
    if len(blocks) > 64:
        diags.error(bspan, f"{len(blocks)} blocks is too many (at most 64)")
    return shape, classes, columns, blocks


def _key_table(program: Program, diags: Collector) -> dict[str, KeyDef]:
    table: dict[str, KeyDef] = {}
    for d in program.key:
        if d.name in table:
            diags.error(
                d.name_span, f"`{d.name}` is defined twice in the key (first at line {table[d.name].span.line})"
            )
            continue
        if d.name in CONSTANTS or d.name in JOIN_MODES or d.name == "classes":
            diags.error(
                d.name_span,
                f"`{d.name}` is a reserved word and cannot name a key entry",
                hint=f"choose another name, e.g. `my{d.name}`",
            )
            continue
        if d.name in ("join", "head", "stem") and d.params:
            diags.error(d.name_span, f"`{d.name}` takes no parameters")
        seen = set()
        for p in d.params:
            if p in seen:
                diags.error(d.name_span, f"parameter `{p}` of `{d.name}` is listed twice")
            seen.add(p)
            if p in RESERVED_VALUES:
                diags.error(
                    d.name_span, f"`{p}` cannot be a parameter name", hint=f"`{p}` has a fixed meaning in values"
                )
        table[d.name] = d
    return table


def _join_mode(key: dict[str, KeyDef], diags: Collector) -> tuple[str, bool]:
    d = key.get("join")
    if d is None:
        return "mean", True
    if len(d.chain) != 1 or d.chain[0].name not in JOIN_MODES:
        diags.error(
            d.span,
            "`join` must be one of " + ", ".join(JOIN_MODES),
            hint="e.g. `join = mean`, or `join = mean(flat=false)` for nested joins",
        )
        return "mean", True
    call = d.chain[0]
    flat = True
    for arg in call.args:
        if arg.name != "flat" or arg.value.value not in ("true", "false"):
            diags.error(arg.span, "the only join option is `flat=true|false`")
            continue
        flat = arg.value.value == "true"
    return call.name, flat


def _rule_table(program: Program, diags: Collector):
    # the fractal is the name most rules define (on a tie, the one with a recursive rule,
    # then the first): a stray rule is the one blamed, wherever it stands
    names = [r.name for r in program.rules]
    recursive = {r.name for r in program.rules if r.index.var is not None}
    fname = max(dict.fromkeys(names), key=lambda n: (names.count(n), n in recursive)) if names else "f"
    base: dict[int, Rule] = {}
    rec: Rule | None = None
    for r in program.rules:
        if r.name != fname:
            diags.error(
                r.span,
                f"all rules must define `{fname}`, this one defines `{r.name}`",
                hint="fractal-dsl expands one fractal function per network",
            )
            continue
        if r.index.var is None:
            if r.index.offset < 1:
                diags.error(r.index.span, "fractal indices start at 1")
            elif r.index.offset in base:
                diags.error(
                    r.span,
                    f"`{fname}[{r.index.offset}]` is defined twice (first at line {base[r.index.offset].span.line})",
                )
            else:
                base[r.index.offset] = r
        elif rec is not None:
            diags.error(
                r.span,
                (
                    f"`{fname}` already has a recursive rule (line {rec.span.line}); give one recursive rule and any "
                    "number of base cases"
                ),
            )
        else:
            rec = r
    if rec is None and not base:
        return fname, base, rec
    for r in [*base.values(), *([rec] if rec else [])]:
        for ref in refs(r.expr):
            if ref.name != fname:
                diags.error(ref.span, f"unknown fractal `{ref.name}[...]`; this network defines `{fname}`")
            elif r.index.var is None:
                if ref.index.var is not None:
                    diags.error(
                        ref.index.span,
                        f"a base case such as `{fname}[{r.index.offset}]` uses fixed indices, not `{ref.index.var}`",
                    )
                elif ref.index.offset >= r.index.offset:
                    diags.error(
                        ref.span,
                        (
                            f"`{fname}[{r.index.offset}]` refers to `{fname}[{ref.index.offset}]`, so its expansion "
                            "never ends"
                        ),
                        hint="a rule may only use smaller indices",
                    )
            elif ref.index.var is None:
                if ref.index.offset not in base:
                    smaller = index_text(fname, type(r.index)(r.index.var, r.index.offset - 1, r.index.span))
                    diags.error(
                        ref.span,
                        (
                            f"`{fname}[{ref.index.offset}]` is not a base case; a recursive rule may only use fixed "
                            "indices that a base case defines"
                        ),
                        hint=f"write `{smaller}`, or add a base case `{fname}[{ref.index.offset}] = ...`",
                        fix=Fix(ref.span, smaller),
                    )
            elif ref.index.var != r.index.var:
                diags.error(
                    ref.index.span, f"unknown index variable `{ref.index.var}`; this rule's variable is `{r.index.var}`"
                )
            elif ref.index.var is not None and ref.index.offset >= r.index.offset:
                smaller = index_text(fname, type(r.index)(r.index.var, r.index.offset - 1, r.index.span))
                diags.error(
                    ref.span,
                    (
                        f"`{index_text(fname, r.index)}` refers to `{index_text(fname, ref.index)}`, so its expansion "
                        "never ends"
                    ),
                    hint=f"a rule may use only smaller indices than its left side, e.g. `{smaller}`",
                )
    return fname, base, rec


def _ref_index(ref: FractalRef, var_value: int) -> int:
    return ref.index.offset if ref.index.var is None else var_value + ref.index.offset


def _instantiate(fname, base, rec, n: int, span: Span, diags):
    """Unroll f[n] into a tree of _Seq/_Join/_Leaf (fractal references inlined)."""
    rule, v = rule_for(n, base, rec)
    return _inst_expr(rule.expr, v, fname, base, rec)


def _inst_expr(expr: Seq, v: int, fname, base, rec) -> _Seq:
    parts = []
    for t in expr.terms:
        if isinstance(t, Call):
            parts.append(_Leaf(t))
        elif isinstance(t, FractalRef):
            m = _ref_index(t, v)
            rule, v2 = rule_for(m, base, rec)
            parts.append(_inst_expr(rule.expr, v2, fname, base, rec))
        elif isinstance(t, Join):
            parts.append(_Join([_inst_expr(b, v, fname, base, rec) for b in t.branches], t))
        else:
            parts.append(_inst_expr(t, v, fname, base, rec))
    return _Seq(parts, expr)


def _widths(node, diags: Collector) -> int:
    if isinstance(node, _Leaf):
        return 1
    if isinstance(node, _Join):
        node.width = sum(_widths(b, diags) for b in node.branches)
        return node.width
    widths = [_widths(p, diags) for p in node.parts]
    wide = {w for w in widths if w != 1}
    if len(wide) > 1:
        a, b = sorted(wide)[:2]
        diags.error(
            node.ast.span,
            (
                f"cannot compose parts with {a} and {b} columns: composed parts must have the same number of columns, "
                "or one (which all columns then share)"
            ),
        )
    node.width = max(widths)
    return node.width


def _assign_cols(node, cols: tuple[int, ...]) -> None:
    node.cols = cols
    if isinstance(node, _Seq):
        for p in node.parts:
            _assign_cols(p, cols)  # a one-column part is shared by all of them
    elif isinstance(node, _Join):
        at = 0
        for b in node.branches:
            _assign_cols(b, cols[at : at + b.width])
            at += b.width


# ---- graph building -------------------------------------------------------------------


@dataclass
class _Open:
    """A join not yet made: its inputs, each a node id with the columns it carries."""

    entries: list[tuple[int, tuple[int, ...]]]
    ast: Join
    cols: tuple[int, ...]


class _Builder:
    """Emits the graph of one expansion tree repeated over the blocks; key entries are
    bound by a :class:`~fractal_dsl.binding.KeyBinder`."""

    def __init__(self, program: Program, binder: KeyBinder, join_mode: str, flat: bool, diags: Collector) -> None:
        self.program = program
        self.binder = binder
        self.key = binder.key
        self.join_mode = join_mode
        self.flat = flat
        self.diags = diags
        self.nodes: list[dict] = []
        self.edges: list[tuple[int, int, dict]] = []
        self.block_envs: list[BlockEnv] = []

    # nodes
    def _node(self, **attrs) -> int:
        self.nodes.append(attrs)
        return len(self.nodes) - 1

    def _edge(self, u: int, v: int, index: int = 0, columns: tuple[int, ...] = ()) -> None:
        self.edges.append((u, v, {"index": index, "columns": columns}))

    def build(self, tree: _Seq, envs: list[BlockEnv], input_shape, order: dict[int, int]) -> None:
        self.order = order
        all_cols = tuple(range(tree.width))
        whole = Span(
            self.program.span.line, self.program.span.column, self.program.span.line, self.program.span.column + 7
        )
        prev = self._node(
            kind="input", op="input", block=None, cols=all_cols, layers=(), args={}, span=self.program.input_shape[1]
        )
        if "stem" in self.key:
            prev = self._unit_node("stem", None, prev, cols=all_cols, kind="stem")
        for env in envs:
            out = self._emit(tree, prev, env)
            prev = self._close(out, env)
            if "pool" in self.key:
                prev = self._unit_node("pool", env, prev, cols=all_cols, kind="pool")
        if "head" in self.key:  # a missing head is reported with the missing statements
            prev = self._unit_node("head", None, prev, cols=all_cols, kind="head")
        out = self._node(kind="output", op="output", block=None, cols=all_cols, layers=(), args={}, span=whole)
        self._edge(prev, out)

    def _emit(self, node, inp: int, env: BlockEnv):
        if isinstance(node, _Leaf):
            return self._leaf(node, inp, env)
        if isinstance(node, _Seq):
            cur = inp
            for p in node.parts:
                cur = self._emit(p, self._close(cur, env) if isinstance(cur, _Open) else cur, env)
            return cur
        entries = []
        for br in node.branches:
            out = self._emit(br, inp, env)
            if isinstance(out, _Open) and self.flat:
                entries.extend(out.entries)
            else:
                entries.append((self._close(out, env), br.cols))
        return _Open(entries, node.ast, node.cols)

    def _close(self, out, env: BlockEnv) -> int:
        if not isinstance(out, _Open):
            return out
        cols = tuple(sorted(c for _, cs in out.entries for c in cs))
        j = self._node(
            kind="join", op=self.join_mode, block=env.block, cols=cols, layers=(), args={}, span=out.ast.span
        )
        for i, (src, cs) in enumerate(out.entries):
            self._edge(src, j, index=i, columns=cs)
        return j

    def _leaf(self, leaf: _Leaf, inp: int, env: BlockEnv) -> int:
        call = leaf.call
        layers: tuple = ()
        if self.binder.is_entry(call.name):
            return self._unit_node(call.name, env, inp, cols=leaf.cols, kind="layer", call=call)
        if call.name in BUILTINS:
            layers = self.binder.builtin(call, env, self._column(leaf.cols))
        elif call.name in SPECIAL_KEYS:
            msg = f"`{call.name}` is part of the macro-structure and cannot be used inside a rule"
            self.binder.once(
                call.span,
                msg,
                "join is written `join(a, b)`; pool, stem and head are placed between blocks automatically",
            )
        elif self.program.rules and call.name == self.program.rules[0].name:
            self.binder.once(
                call.span,
                f"`{call.name}` is the fractal being defined, not a layer",
                f"fractal indices use square brackets, e.g. `{call.name}[C]`",
            )
        else:
            self.binder.unknown_layer(call, None)
        n = self._node(
            kind="layer", op=call.name, block=env.block, cols=leaf.cols, layers=layers, args={}, span=call.span
        )
        self._edge(inp, n)
        return n

    def _unit_node(
        self, name: str, env: BlockEnv | None, inp: int, *, cols, kind: str, call: Call | None = None
    ) -> int:
        d = self.key[name]
        column = self._column(cols) if kind == "layer" else None
        bound = self.binder.entry(name, env, call, column)
        span = call.span if call is not None else d.span
        args = {p: repr(v.value) if v.value is SAME else v.value for p, v in (bound.args or {}).items()}
        block = env.block if env is not None else None
        n = self._node(
            kind=kind, op=name, block=block, cols=cols, layers=bound.layers, args=args, span=span, key_span=d.span
        )
        self._edge(inp, n)
        return n

    # finishing: columns renumbered shallow -> deep, depths, readable ids
    def _column(self, cols: tuple[int, ...]) -> int:
        """The 1-based column a unit on local columns ``cols`` is numbered by: the shallowest."""
        return min(self.order[c] for c in cols) + 1

    def finish(self, width: int) -> nx.DiGraph:
        order = self.order
        for attrs in self.nodes:
            attrs["columns"] = tuple(sorted(order[c] for c in attrs.pop("cols")))
        for _, _, e in self.edges:
            e["columns"] = tuple(sorted(order[c] for c in e["columns"]))
        preds: dict[int, list[int]] = {}
        for u, v, _ in self.edges:
            preds.setdefault(v, []).append(u)
        depth = semantics.depths([a["kind"] for a in self.nodes], [a["block"] for a in self.nodes], preds)
        ids: list[str] = []
        taken: set[str] = set()
        for i, attrs in enumerate(self.nodes):
            ident = self._ident(attrs, depth[i])
            name, k = ident, 2
            while name in taken:
                name, k = f"{ident}_{k}", k + 1
            taken.add(name)
            ids.append(name)
        g = nx.DiGraph()
        units_in_column: dict[tuple[int, int], int] = {}
        for i, attrs in enumerate(self.nodes):  # created in topological order: module names follow it
            node = Node(
                id=ids[i],
                kind=attrs["kind"],
                op=attrs["op"],
                block=attrs["block"],
                columns=tuple(c + 1 for c in attrs["columns"]),
                depth=depth[i] if attrs["block"] is not None else None,
                span=attrs["span"],
                key_span=attrs.get("key_span"),
                args=tuple(attrs["args"].items()),
                layers=tuple(attrs["layers"]),
            )
            g.add_node(ids[i], node=replace(node, module=_module_name(node, units_in_column)))
        for u, v, e in self.edges:
            g.add_edge(ids[u], ids[v], edge=Edge(e["index"], tuple(c + 1 for c in e["columns"])))
        return nx.freeze(g)

    @staticmethod
    def _ident(attrs: dict, depth: int) -> str:
        kind, b = attrs["kind"], attrs["block"]
        op = "".join(ch if ch.isalnum() else "_" for ch in attrs["op"])
        if kind in ("input", "output", "stem", "head"):
            return kind
        if kind == "pool":
            return f"b{b}_pool"
        if kind == "join":
            return f"b{b}_join_d{depth}"
        return f"b{b}_c{attrs['columns'][0] + 1}_d{depth}_{op}"


def _column_order(tree) -> dict[int, int]:
    """Local column -> final number (0-based), shallowest path first (ties keep written
    order): the paper numbers columns by depth, whatever order the rule lists them in."""
    count = [0] * tree.width
    todo = [tree]
    while todo:
        node = todo.pop()
        if isinstance(node, _Leaf):
            for c in node.cols:
                count[c] += 1
        else:
            todo.extend(node.parts if isinstance(node, _Seq) else node.branches)
    ranked = sorted(range(tree.width), key=lambda c: (count[c], c))
    return {c: i for i, c in enumerate(ranked)}


def _module_name(node: Node, units_in_column: dict[tuple[int, int], int]) -> str | None:
    """The dotted submodule of the compiled module that holds a unit: ``stem``, ``head``,
    ``block{B}.pool``, or ``block{B}.column{K}.layer{I}`` for the I-th layer unit (in
    topological order) of column K = ``node.column`` in block B."""
    if node.kind == LAYER:
        key = (node.block, node.column)
        units_in_column[key] = units_in_column.get(key, 0) + 1
        return f"block{node.block}.column{node.column}.layer{units_in_column[key]}"
    if node.kind == POOL:
        return f"block{node.block}.pool"
    if node.kind in (STEM, HEAD):
        return node.kind
    return None


def _check_usage(program: Program, key: dict[str, KeyDef], used: set[str], diags: Collector) -> None:
    """Names defined once and used: every key entry and every parameter is used somewhere."""
    for name, d in key.items():
        if name in SPECIAL_KEYS:
            continue
        if name not in used:
            diags.error(
                d.name_span,
                f"`{name}` is defined in the key but no rule uses it",
                hint="use it in a rule, or remove it",
            )
        names_in_body = {n.value for c in d.chain for a in c.args for n in a.value.names()}
        text_of = program.source.text_of
        if any(c.name not in BUILTINS and c.name not in key and foreign_layer(c, text_of, None) for c in d.chain):
            continue  # a PyTorch layer is reported with its spelling, which uses the parameter
        for p in d.params:
            if p not in names_in_body and not p.startswith("_"):
                diags.error(
                    d.name_span,
                    f"parameter `{p}` of `{name}` is never used",
                    hint=f"use it in the definition, or rename it `_{p}` to ignore a block value",
                )

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

from dataclasses import dataclass, field, replace

import networkx as nx

from . import budget, semantics
from .binding import BlockEnv, KeyBinder, bind_blocks, value_aliases, value_left_out, value_names
from .errors import Collector, Fix, Span
from .habits import foreign_layer
from .ir import HEAD, INPUT, JOIN, LAYER, OUTPUT, POOL, STEM, DropPath, Edge, Kind, Network, Node
from .layers import BUILTINS, JOIN_MODES, SAME
from .rules import (
    CONSTANTS,
    MAX_BLOCKS,
    MAX_COLUMNS,
    RESERVED_VALUES,
    SPECIAL_KEYS,
    composed_width,
    index_text,
    joined_width,
    ref_index,
    refs,
    rule_for,
)
from .syntax import Call, FractalRef, Join, KeyDef, Program, Rule, Seq

__all__ = ["DropPath", "Network", "expand"]  # the graph's types live in ir.py; re-exported here


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
    envs = bind_blocks(blocks, value_names(program, key), block_problems, value_aliases(key))
    binder = KeyBinder(key, classes, diags, blocks=envs)
    builder = _Builder(program, binder, join_mode, flat)
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
    binder.report_missing()
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
        key=program.key,
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
    if len(blocks) > MAX_BLOCKS:
        diags.error(bspan, f"{len(blocks)} blocks is too many (at most {MAX_BLOCKS})")
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


# the join modes under other names: PyTorch's and NumPy's (`add`, `cat`, `amax`), Keras'
# layers (`Average`, `Add`, `Concatenate`, `Maximum`), and the words for them
_JOIN_HABITS = {
    **{n: "mean" for n in ("mean", "average", "avg", "averaging")},
    **{n: "sum" for n in ("sum", "add", "addition", "plus")},
    **{n: "max" for n in ("max", "maximum", "amax", "maxout")},
    **{n: "concat" for n in ("concat", "cat", "concatenate", "concatenation")},
}


def _join_mode(key: dict[str, KeyDef], diags: Collector) -> tuple[str, bool]:
    d = key.get("join")
    if d is None:
        return "mean", True
    if len(d.chain) != 1 or d.chain[0].name not in JOIN_MODES:
        call = d.chain[0]
        meant = _JOIN_HABITS.get(call.name.lower()) if len(d.chain) == 1 else None
        if meant is not None:  # `join = average`, `join = add`, `join = Mean`: one span, the name
            at = Span(call.span.line, call.span.column, call.span.line, call.span.column + len(call.name))
            diags.error(
                at,
                f"`{call.name}` is not a join mode; the modes are " + ", ".join(JOIN_MODES),
                hint=f"did you mean `{meant}`?",
                fix=Fix(at, meant),
            )
            return "mean", True
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
    upside_down = _upside_down(fname, rec, diags) if rec is not None else set()
    for r in [*base.values(), *([rec] if rec else [])]:
        for ref in refs(r.expr):
            if id(ref) in upside_down:
                continue
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


def _upside_down(fname: str, rec: Rule, diags: Collector) -> set[int]:
    """``f[C-1] = join(f[C] . f[C], conv)``: every reference of the recursive rule is at
    least its left side, all at one index, so the left side is what was mistyped: one error
    there, with the index that makes the rule right.  The ids of those references (reported
    here, so not once each), or none."""
    same = [ref for ref in refs(rec.expr) if ref.name == fname and ref.index.var == rec.index.var]
    offsets = {ref.index.offset for ref in same}
    if not same or len(offsets) != 1 or min(offsets) < rec.index.offset:
        return set()
    offset = offsets.pop() + 1
    meant = type(rec.index)(rec.index.var, offset, rec.index.span)
    written = index_text(fname, rec.index)
    diags.error(
        rec.index.span,
        f"`{written}` refers to `{index_text(fname, same[0].index)}`, so its expansion never ends",
        hint=f"the left side is the larger index: write `{index_text(fname, meant)}`",
        fix=Fix(rec.index.span, index_text(fname, meant)[len(fname) + 1 : -1]),
    )
    return {id(ref) for ref in same}


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
            m = ref_index(t, v)
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
        node.width = joined_width([_widths(b, diags) for b in node.branches])
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
    node.width = composed_width(widths)
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


@dataclass
class _Draft:
    """A node being placed: local column numbers (``cols``) until :meth:`_Builder.finish`
    renumbers them shallow to deep and makes the frozen :class:`~fractal_dsl.ir.Node`."""

    kind: Kind
    op: str
    block: int | None
    cols: tuple[int, ...]
    span: Span
    layers: tuple = ()
    args: dict = field(default_factory=dict)
    key_span: Span | None = None


@dataclass
class _DraftEdge:
    u: int
    v: int
    index: int = 0
    cols: tuple[int, ...] = ()


class _Builder:
    """Places the nodes and edges of one expansion tree repeated over the blocks; key
    entries and built-ins are bound (and their problems reported) by a
    :class:`~fractal_dsl.binding.KeyBinder`."""

    def __init__(self, program: Program, binder: KeyBinder, join_mode: str, flat: bool) -> None:
        self.program = program
        self.binder = binder
        self.key = binder.key
        self.join_mode = join_mode
        self.flat = flat
        self.fractal = program.rules[0].name if program.rules else None
        self.nodes: list[_Draft] = []
        self.edges: list[_DraftEdge] = []

    # nodes
    def _node(self, draft: _Draft) -> int:
        self.nodes.append(draft)
        return len(self.nodes) - 1

    def _edge(self, u: int, v: int, index: int = 0, columns: tuple[int, ...] = ()) -> None:
        self.edges.append(_DraftEdge(u, v, index, columns))

    def build(self, tree: _Seq, envs: list[BlockEnv], input_shape, order: dict[int, int]) -> None:
        self.order = order
        all_cols = tuple(range(tree.width))
        whole = Span(
            self.program.span.line, self.program.span.column, self.program.span.line, self.program.span.column + 7
        )
        prev = self._node(_Draft(INPUT, "input", None, all_cols, self.program.input_shape[1]))
        if "stem" in self.key:
            prev = self._unit_node("stem", None, prev, cols=all_cols, kind=STEM)
        for env in envs:
            out = self._emit(tree, prev, env)
            prev = self._close(out, env)
            if "pool" in self.key:
                prev = self._unit_node("pool", env, prev, cols=all_cols, kind=POOL)
        if "head" in self.key:  # a missing head is reported with the missing statements
            prev = self._unit_node("head", None, prev, cols=all_cols, kind=HEAD)
        out = self._node(_Draft(OUTPUT, "output", None, all_cols, whole))
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
        j = self._node(_Draft(JOIN, self.join_mode, env.block, cols, out.ast.span))
        for i, (src, cs) in enumerate(out.entries):
            self._edge(src, j, index=i, columns=cs)
        return j

    def _leaf(self, leaf: _Leaf, inp: int, env: BlockEnv) -> int:
        call = leaf.call
        if self.binder.is_entry(call.name):
            return self._unit_node(call.name, env, inp, cols=leaf.cols, kind=LAYER, call=call)
        layers = self.binder.rule_call(call, env, self._column(leaf.cols), self.fractal)
        n = self._node(_Draft(LAYER, call.name, env.block, leaf.cols, call.span, layers))
        self._edge(inp, n)
        return n

    def _unit_node(
        self, name: str, env: BlockEnv | None, inp: int, *, cols, kind: Kind, call: Call | None = None
    ) -> int:
        d = self.key[name]
        column = self._column(cols) if kind == LAYER else None
        bound = self.binder.entry(name, env, call, column)
        span = call.span if call is not None else d.span
        args = {p: repr(v.value) if v.value is SAME else v.value for p, v in (bound.args or {}).items()}
        block = env.block if env is not None else None
        n = self._node(_Draft(kind, name, block, cols, span, bound.layers, args, d.span))
        self._edge(inp, n)
        return n

    # finishing: columns renumbered shallow -> deep, depths, readable ids
    def _column(self, cols: tuple[int, ...]) -> int:
        """The 1-based column a unit on local columns ``cols`` is numbered by: the shallowest."""
        return min(self.order[c] for c in cols) + 1

    def finish(self, width: int) -> nx.DiGraph:
        order = self.order
        columns = [tuple(sorted(order[c] + 1 for c in d.cols)) for d in self.nodes]
        preds: dict[int, list[int]] = {}
        for e in self.edges:
            preds.setdefault(e.v, []).append(e.u)
        depth = semantics.depths([d.kind for d in self.nodes], [d.block for d in self.nodes], preds)
        ids: list[str] = []
        taken: set[str] = set()
        for i, d in enumerate(self.nodes):
            ident = _ident(d, columns[i], depth[i])
            name, k = ident, 2
            while name in taken:
                name, k = f"{ident}_{k}", k + 1
            taken.add(name)
            ids.append(name)
        g = nx.DiGraph()
        units_in_column: dict[tuple[int, int], int] = {}
        for i, d in enumerate(self.nodes):  # created in topological order: module names follow it
            node = Node(
                id=ids[i],
                kind=d.kind,
                op=d.op,
                block=d.block,
                columns=columns[i],
                depth=depth[i] if d.block is not None else None,
                span=d.span,
                key_span=d.key_span,
                args=tuple(d.args.items()),
                layers=tuple(d.layers),
            )
            g.add_node(ids[i], node=replace(node, module=_module_name(node, units_in_column)))
        for e in self.edges:
            g.add_edge(ids[e.u], ids[e.v], edge=Edge(e.index, tuple(sorted(order[c] + 1 for c in e.cols))))
        return nx.freeze(g)


def _ident(draft: _Draft, columns: tuple[int, ...], depth: int) -> str:
    """A node's readable id, from its position: ``input``, ``b2_c4_d3_conv``, ``b2_join_d4``..."""
    kind, b = draft.kind, draft.block
    op = "".join(ch if ch.isalnum() else "_" for ch in draft.op)
    if kind in (INPUT, OUTPUT, STEM, HEAD):
        return kind.value
    if kind == POOL:
        return f"b{b}_pool"
    if kind == JOIN:
        return f"b{b}_join_d{depth}"
    return f"b{b}_c{columns[0]}_d{depth}_{op}"


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
        return node.kind.value
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
        meant = value_left_out(d, key)
        if meant is not None:  # `conv(c) = conv3x3 . relu`: the value meant for it
            c, p = meant
            diags.error(
                c.span,
                f"`{c.name}` needs a value for `{BUILTINS[c.name].params[0][0]}`, and `{p}` of `{name}` is never used",
                hint=f"pass it on: write `{c.name}({p})`",
                fix=Fix(c.span, f"{c.name}({p})"),
            )
            continue
        for p in d.params:
            if p not in names_in_body and not p.startswith("_"):
                diags.error(
                    d.name_span,
                    f"parameter `{p}` of `{name}` is never used",
                    hint=f"use it in the definition, or rename it `_{p}` to ignore a block value",
                )

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

import difflib
import sys
from dataclasses import dataclass, field

import networkx as nx

from . import budget
from .errors import Collector, Span
from .layers import BUILTINS, JOIN_MODES, REQUIRED, Layer, LayerError, resolve
from .syntax import Call, FractalRef, Join, KeyDef, Program, Rule, Seq, Value

MAX_COLUMNS = 64
SPECIAL_KEYS = ("join", "pool", "head", "stem")
MAX_SUGGESTIONS = 8  # distinct unknown names that get a "did you mean" hint
CONSTANTS = {"true": True, "false": False}


@dataclass(frozen=True)
class DropPath:
    """Drop-path settings; the defaults are the paper's (local 0.15, half global, per batch)."""

    local: float = 0.15
    global_ratio: float = 0.5
    per: str = "batch"
    enabled: bool = True


@dataclass
class Network:
    """A validated fractal network: the graph plus the facts every later stage needs."""

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
    block_values: list[tuple] = field(default_factory=list)
    params: int = 0
    macs: int = 0

    def nodes_in_order(self) -> list[str]:
        """Node ids in a deterministic topological order (ties broken by creation order)."""
        order = {n: i for i, n in enumerate(self.graph.nodes)}
        return list(nx.lexicographical_topological_sort(self.graph, key=order.__getitem__))


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

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 20_000))  # the walks below recurse once per rule level and bracket
    try:
        tree = _instantiate(fname, base, rec, columns, program.columns[1], diags)
        _widths(tree, diags)
        diags.raise_if_any()
        _assign_cols(tree, tuple(range(tree.width)))
        builder = _Builder(program, key, join_mode, flat, diags)
        builder.build(tree, blocks, classes, input_shape)
    except RecursionError:
        diags.error(program.columns[1], f"expanding `{fname}[{columns}]` nests too deeply", hint="use fewer columns or fewer brackets in the rules")
        diags.raise_if_any()
    finally:
        sys.setrecursionlimit(limit)
    _check_usage(program, key, builder.used, diags)
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
        block_values=[tuple(v.value for v in b["#span"].values) for b in builder.block_envs],
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
    if missing:
        diags.error(program.name_span, f"network `{program.name}` is missing " + ", ".join(missing))
        return None
    shape, sspan = program.input_shape
    if len(shape) != 3:
        diags.error(sspan, f"input must be an image shape CxHxW, got {'x'.join(map(str, shape))}")
    elif any(d < 1 for d in shape):
        diags.error(sspan, "input dimensions must be at least 1")
    elif shape[0] * shape[1] * shape[2] > 1 << 28:
        diags.error(sspan, f"input {'x'.join(map(str, shape))} has {shape[0] * shape[1] * shape[2]:,} values per sample; the limit is {1 << 28:,}")
    classes, cspan = program.classes
    if not 1 <= classes <= 1_000_000:
        diags.error(cspan, f"classes must be between 1 and 1,000,000, got {classes}")
    columns, colspan = program.columns
    if columns < 1:
        diags.error(colspan, "columns must be at least 1")
    elif columns > MAX_COLUMNS:
        diags.error(colspan, f"columns {columns} is far too many (at most {MAX_COLUMNS})", hint="FractalNet uses 3 or 4 columns")
    blocks, bspan = program.blocks
    if len(blocks) > 64:
        diags.error(bspan, f"{len(blocks)} blocks is too many (at most 64)")
    return shape, classes, columns, blocks


def _key_table(program: Program, diags: Collector) -> dict[str, KeyDef]:
    table: dict[str, KeyDef] = {}
    for d in program.key:
        if d.name in table:
            diags.error(d.name_span, f"`{d.name}` is defined twice in the key (first at line {table[d.name].span.line})")
            continue
        if d.name in CONSTANTS or d.name in JOIN_MODES or d.name == "classes":
            diags.error(d.name_span, f"`{d.name}` is a reserved word and cannot name a key entry", hint=f"choose another name, e.g. `my{d.name}`")
            continue
        if d.name in ("join", "head", "stem") and d.params:
            diags.error(d.name_span, f"`{d.name}` takes no parameters")
        seen = set()
        for p in d.params:
            if p in seen:
                diags.error(d.name_span, f"parameter `{p}` of `{d.name}` is listed twice")
            seen.add(p)
            if p in CONSTANTS or p == "classes":
                diags.error(d.name_span, f"`{p}` cannot be a parameter name")
        table[d.name] = d
    return table


def _join_mode(key: dict[str, KeyDef], diags: Collector) -> tuple[str, bool]:
    d = key.get("join")
    if d is None:
        return "mean", True
    if len(d.chain) != 1 or d.chain[0].name not in JOIN_MODES:
        diags.error(d.span, "`join` must be one of " + ", ".join(JOIN_MODES), hint="e.g. `join = mean`, or `join = mean(flat=false)` for nested joins")
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
    fname = program.rules[0].name if program.rules else "f"
    base: dict[int, Rule] = {}
    rec: Rule | None = None
    for r in program.rules:
        if r.name != fname:
            diags.error(r.span, f"all rules must define `{fname}`, this one defines `{r.name}`", hint="fractal-dsl expands one fractal function per network")
            continue
        if r.index.var is None:
            if r.index.offset < 1:
                diags.error(r.index.span, "fractal indices start at 1")
            elif r.index.offset in base:
                diags.error(r.span, f"`{fname}[{r.index.offset}]` is defined twice (first at line {base[r.index.offset].span.line})")
            else:
                base[r.index.offset] = r
        elif rec is not None:
            diags.error(r.span, f"`{fname}` already has a recursive rule (line {rec.span.line}); give one recursive rule and any number of base cases")
        else:
            rec = r
    if rec is None and not base:
        return fname, base, rec
    for r in [*base.values(), *([rec] if rec else [])]:
        for ref in _refs(r.expr):
            if ref.name != fname:
                diags.error(ref.span, f"unknown fractal `{ref.name}[...]`; this network defines `{fname}`")
            elif r.index.var is None:
                if ref.index.var is not None:
                    diags.error(ref.index.span, f"a base case such as `{fname}[{r.index.offset}]` uses fixed indices, not `{ref.index.var}`")
                elif ref.index.offset >= r.index.offset:
                    diags.error(ref.span, f"`{fname}[{r.index.offset}]` refers to `{fname}[{ref.index.offset}]`, so its expansion never ends", hint="a rule may only use smaller indices")
            elif ref.index.var is None:
                if ref.index.offset not in base:
                    diags.error(ref.span, f"`{fname}[{ref.index.offset}]` is not a base case; a recursive rule may only use fixed indices that a base case defines", hint=f"write `{fname}[{r.index.var}]`, or add a base case `{fname}[{ref.index.offset}] = ...`")
            elif ref.index.var != r.index.var:
                diags.error(ref.index.span, f"unknown index variable `{ref.index.var}`; this rule's variable is `{r.index.var}`")
            elif ref.index.var is not None and ref.index.offset >= r.index.offset:
                diags.error(ref.span, f"`{_idx(fname, r.index)}` refers to `{_idx(fname, ref.index)}`, so its expansion never ends", hint=f"use smaller indices on the right, e.g. `{fname}[{r.index.var}]`")
    return fname, base, rec


def _idx(fname: str, index) -> str:
    if index.var is None:
        return f"{fname}[{index.offset}]"
    if index.offset == 0:
        return f"{fname}[{index.var}]"
    return f"{fname}[{index.var}{index.offset:+d}]"


def _refs(expr):
    for t in expr.terms:
        if isinstance(t, FractalRef):
            yield t
        elif isinstance(t, Join):
            for b in t.branches:
                yield from _refs(b)
        elif isinstance(t, Seq):
            yield from _refs(t)


def _rule_for(n: int, base, rec) -> tuple[Rule | None, int]:
    """The rule that defines f[n] and the value of its index variable."""
    if n in base:
        return base[n], 0
    if rec is not None:
        return rec, n - rec.index.offset
    return None, 0


def _ref_index(ref: FractalRef, var_value: int) -> int:
    return ref.index.offset if ref.index.var is None else var_value + ref.index.offset


def _instantiate(fname, base, rec, n: int, span: Span, diags):
    """Unroll f[n] into a tree of _Seq/_Join/_Leaf (fractal references inlined)."""
    rule, v = _rule_for(n, base, rec)
    return _inst_expr(rule.expr, v, fname, base, rec)


def _inst_expr(expr: Seq, v: int, fname, base, rec) -> _Seq:
    parts = []
    for t in expr.terms:
        if isinstance(t, Call):
            parts.append(_Leaf(t))
        elif isinstance(t, FractalRef):
            m = _ref_index(t, v)
            rule, v2 = _rule_for(m, base, rec)
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
        diags.error(node.ast.span, f"cannot compose parts with {a} and {b} columns: composed parts must have the same number of columns, or one (which all columns then share)")
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
    def __init__(self, program: Program, key: dict[str, KeyDef], join_mode: str, flat: bool, diags: Collector) -> None:
        self.program = program
        self.key = key
        self.join_mode = join_mode
        self.flat = flat
        self.diags = diags
        self.nodes: list[dict] = []
        self.edges: list[tuple[int, int, dict]] = []
        self.used: set[str] = set()
        self.block_envs: list[dict[str, Value]] = []
        self._cache: dict = {}
        self._reported: set = set()
        self._suggestions: dict[str, list[str]] = {}

    def _suggest(self, name: str, choices) -> list[str]:
        """difflib's closest choice, once per distinct unknown name, for the first MAX_SUGGESTIONS
        names only: each costs time in proportion to the key's size, and a 64 KiB file can hold
        1,500 misspelt names and 1,500 key entries."""
        if name not in self._suggestions:
            few = len(self._suggestions) < MAX_SUGGESTIONS
            self._suggestions[name] = difflib.get_close_matches(name, choices(), n=1) if few else []
        return self._suggestions[name]

    # nodes
    def _node(self, **attrs) -> int:
        self.nodes.append(attrs)
        return len(self.nodes) - 1

    def _edge(self, u: int, v: int, index: int = 0, columns: tuple[int, ...] = ()) -> None:
        self.edges.append((u, v, {"index": index, "columns": columns}))

    def build(self, tree: _Seq, blocks, classes: int, input_shape) -> None:
        self.classes = classes
        all_cols = tuple(range(tree.width))
        whole = Span(self.program.span.line, self.program.span.column, self.program.span.line, self.program.span.column + 7)
        prev = self._node(kind="input", op="input", block=None, cols=all_cols, layers=(), args={}, span=self.program.input_shape[1])
        if "stem" in self.key:
            prev = self._unit_node("stem", self.key["stem"], {}, prev, block=None, cols=all_cols, kind="stem")
        for b, spec in enumerate(blocks, start=1):
            env = self._block_env(b, spec)
            self.block_envs.append(env)
            self.block = b
            self.env = env
            out = self._emit(tree, prev)
            prev = self._close(out)
            if "pool" in self.key:
                prev = self._unit_node("pool", self.key["pool"], env, prev, block=b, cols=all_cols, kind="pool")
        self.block = None
        if "head" in self.key:
            prev = self._unit_node("head", self.key["head"], {}, prev, block=None, cols=all_cols, kind="head")
        else:
            self.diags.error(self.program.name_span, "the key has no `head`", hint="add e.g. `head = flatten . linear(classes)` to the key")
        out = self._node(kind="output", op="output", block=None, cols=all_cols, layers=(), args={}, span=whole)
        self._edge(prev, out)

    def _block_env(self, b: int, spec) -> dict[str, Value]:
        return {f"#{i}": v for i, v in enumerate(spec.values)} | {"#span": spec}

    def _emit(self, node, inp: int):
        if isinstance(node, _Leaf):
            return self._leaf(node, inp)
        if isinstance(node, _Seq):
            cur = inp
            for p in node.parts:
                cur = self._emit(p, self._close(cur) if isinstance(cur, _Open) else cur)
            return cur
        entries = []
        for br in node.branches:
            out = self._emit(br, inp)
            if isinstance(out, _Open) and self.flat:
                entries.extend(out.entries)
            else:
                entries.append((self._close(out), br.cols))
        return _Open(entries, node.ast, node.cols)

    def _close(self, out) -> int:
        if not isinstance(out, _Open):
            return out
        cols = tuple(sorted(c for _, cs in out.entries for c in cs))
        j = self._node(kind="join", op=self.join_mode, block=self.block, cols=cols, layers=(), args={}, span=out.ast.span)
        for i, (src, cs) in enumerate(out.entries):
            self._edge(src, j, index=i, columns=cs)
        return j

    def _leaf(self, leaf: _Leaf, inp: int) -> int:
        call = leaf.call
        if call.name in self.key and call.name not in SPECIAL_KEYS:
            d = self.key[call.name]
            return self._unit_node(call.name, d, self.env, inp, block=self.block, cols=leaf.cols, kind="layer", call=call)
        if call.name in BUILTINS:
            layers = self._resolve_chain((call,), {}, call.name)
            n = self._node(kind="layer", op=call.name, block=self.block, cols=leaf.cols, layers=layers, args={}, span=call.span)
            self._edge(inp, n)
            return n
        if call.name in SPECIAL_KEYS:
            msg = f"`{call.name}` is part of the macro-structure and cannot be used inside a rule"
            self._once(call.span, msg, "join is written `join(a, b)`; pool, stem and head are placed between blocks automatically")
        elif self.program.rules and call.name == self.program.rules[0].name:
            self._once(call.span, f"`{call.name}` is the fractal being defined, not a layer", f"fractal indices use square brackets, e.g. `{call.name}[C]`")
        else:
            close = self._suggest(call.name, lambda: [*(k for k in self.key if k not in SPECIAL_KEYS), *BUILTINS])
            self._once(call.span, f"unknown layer `{call.name}`", f"did you mean `{close[0]}`?" if close else "define it in the key, e.g. `conv(c) = conv3x3(c) . batchnorm . relu`")
        n = self._node(kind="layer", op=call.name, block=self.block, cols=leaf.cols, layers=(), args={}, span=call.span)
        self._edge(inp, n)
        return n

    def _unit_node(self, name, d: KeyDef, block_env, inp, *, block, cols, kind, call: Call | None = None) -> int:
        self.used.add(name)
        bound = self._bind(name, d, block_env, call)
        layers = () if bound is None else self._resolve_chain(d.chain, bound, name)
        span = call.span if call is not None else d.span
        args = {p: v.value for p, v in (bound or {}).items()}
        n = self._node(kind=kind, op=name, block=block, cols=cols, layers=layers, args=args, span=span, key_span=d.span)
        self._edge(inp, n)
        return n

    def _bind(self, name: str, d: KeyDef, block_env: dict, call: Call | None) -> dict[str, Value] | None:
        """Values for ``d``'s parameters: explicit call arguments, else the block's tuple (None if they do not fit)."""
        if call is not None and call.has_parens:
            args = [(a.name, self._literal(a.value)) for a in call.args]
            if any(v is None for _, v in args):
                return None
            return self._bind_values(call, d, args)
        if not d.params:
            return {}
        spec = block_env.get("#span")
        values = [block_env[f"#{i}"] for i in range(len(spec.values))] if spec else []
        if len(values) != len(d.params):
            where = spec.span if spec else d.span
            self._once(where, f"block {self.block} gives {len(values)} value{'s' if len(values) != 1 else ''} but `{name}` takes {len(d.params)} ({', '.join(d.params)})", hint="each block lists one value per parameter of the layers it uses, e.g. `(64, 0.1)` for `conv(c, p)`")
            return None
        bound = {p: self._literal(v, "block values") for p, v in zip(d.params, values)}
        return None if None in bound.values() else bound

    def _literal(self, v: Value, where: str = "arguments in a rule") -> Value | None:
        """A rule argument or block value: a number, or `true`, `false`, `classes` resolved to one (None if unknown)."""
        if not v.is_name:
            return v
        if v.value in CONSTANTS:
            return Value(CONSTANTS[v.value], v.span)
        if v.value == "classes":
            return Value(self.classes, v.span)
        self._once(v.span, f"unknown name `{v.value}`; {where} are numbers, `true`, `false` or `classes`")
        return None

    def _resolve_chain(self, chain, bound: dict[str, Value], owner: str, depth: int = 0) -> tuple[Layer, ...]:
        key = (chain, tuple(sorted((k, v.value, v.span) for k, v in bound.items())))
        if key in self._cache:
            return self._cache[key]
        out: list[Layer] = []
        for call in chain:
            # a key entry wins over a built-in of the same name, except inside its own body:
            # `conv(c) = conv(c, kernel=3)` means the built-in, `relu = leakyrelu(0.2)` elsewhere the entry
            if call.name in BUILTINS and (call.name == owner or call.name not in self.key or call.name in SPECIAL_KEYS):
                out.extend(self._resolve_builtin(call, bound, owner))
            elif call.name in self.key and call.name not in SPECIAL_KEYS:
                if depth > 8:
                    self._once(call.span, f"key definitions nest too deeply at `{call.name}` (do they refer to each other?)")
                    continue
                self.used.add(call.name)
                inner = self.key[call.name]
                args = self._eval_args(call, bound, owner)
                if any(v is None for _, v in args):
                    continue  # an unknown name, reported once; no second error about its value
                sub = self._bind_values(call, inner, args, in_key=True)
                if sub is None:
                    continue
                out.extend(self._resolve_chain(inner.chain, sub, call.name, depth + 1))
            else:
                close = self._suggest(call.name, lambda: [*BUILTINS, *(k for k in self.key if k not in SPECIAL_KEYS)])
                self._once(call.span, f"unknown layer `{call.name}` in the definition of `{owner}`", f"did you mean `{close[0]}`?" if close else None)
        result = tuple(out)
        self._cache[key] = result
        return result

    def _bind_values(self, call: Call, d: KeyDef, args: list[tuple[str | None, Value]], in_key: bool = False) -> dict[str, Value] | None:
        """Bind a key entry's parameters to a call's arguments; None (reported) if they do not fit."""
        problems = []
        pos = [v for k, v in args if k is None]
        if len(pos) > len(d.params):
            problems.append(f"`{d.name}` takes {len(d.params)} argument{'s' if len(d.params) != 1 else ''}, got {len(pos)}")
        bound = dict(zip(d.params, pos))
        for k, v in args:
            if k is not None and k not in d.params:
                problems.append(f"`{d.name}` has no parameter `{k}`" + (f" (its parameters are {', '.join(d.params)})" if d.params else ""))
            elif k is not None and k in bound:
                problems.append(f"parameter `{k}` of `{d.name}` is given twice")
            elif k is not None:
                bound[k] = v
        missing = [f"`{p}`" for p in d.params if p not in bound]
        if missing:
            problems.append(f"`{d.name}` is missing a value for parameter{'s' if len(missing) > 1 else ''} {', '.join(missing)}")
        if not problems:
            return bound
        hint = None
        if in_key and d.name in BUILTINS:
            sig = f"{d.name}({', '.join(d.params)})" if d.params else d.name
            hint = f"`{d.name}` here is the key entry `{sig}` (line {d.span.line}), which shadows the built-in `{d.name}`"
        self._once(call.span, "; ".join(problems), hint)
        return None

    def _eval_args(self, call: Call, bound: dict[str, Value], owner: str) -> list[tuple[str | None, Value | None]]:
        out = []
        for a in call.args:
            v = a.value
            if v.is_name:
                if v.value in bound:
                    v = bound[v.value]
                elif v.value == "classes":
                    v = Value(self.classes, v.span)
                elif v.value in CONSTANTS:
                    v = Value(CONSTANTS[v.value], v.span)
                else:
                    params = self.key[owner].params if owner in self.key else ()
                    hint = f"the parameters of `{owner}` are {', '.join(params)}" if params else f"declare it, e.g. `{owner}(x) = ...`"
                    self._once(v.span, f"unknown name `{v.value}` in the definition of `{owner}`", hint)
                    v = None
            out.append((a.name, v))
        return out

    def _resolve_builtin(self, call: Call, bound: dict[str, Value], owner: str) -> list[Layer]:
        b = BUILTINS[call.name]
        args = self._eval_args(call, bound, owner)
        if any(v is None for _, v in args):
            return []  # an unknown name, reported once; no second error about its value
        names = [p for p, _ in b.params]
        given: dict[str, Value] = {}
        pos = [v for k, v in args if k is None]
        if len(pos) > len(names):
            self._once(call.span, f"`{call.name}` takes at most {len(names)} arguments ({', '.join(names) or 'none'}), got {len(pos)}")
            return []
        given.update(zip(names, pos))
        for k, v in args:
            if k is None:
                continue
            if k not in names:
                self._once(call.span, f"`{call.name}` has no argument `{k}`" + (f"; its arguments are {', '.join(names)}" if names else ""))
                return []
            given[k] = v
        values: dict[str, object] = {}
        for p, default in b.params:
            if p in given:
                values[p] = given[p].value
            elif default is REQUIRED:
                self._once(call.span, f"`{call.name}` needs a value for `{p}`", f"e.g. `{call.name}({p if p != 'channels' else 64})`" if p != "p" else "e.g. `dropout(0.1)`")
                return []
            else:
                values[p] = default
        try:
            return [resolve(call.name, values)]
        except LayerError as exc:
            span = given[exc.arg].span if exc.arg in given else call.span
            self._once(span, str(exc), exc.hint)
            return []

    def _once(self, span: Span, message: str, hint: str | None = None) -> None:
        if (span, message) not in self._reported:
            self._reported.add((span, message))
            self.diags.error(span, message, hint)

    # finishing: columns renumbered shallow -> deep, depths, readable ids
    def finish(self, width: int) -> nx.DiGraph:
        order = self._column_order(width)
        for attrs in self.nodes:
            attrs["columns"] = tuple(sorted(order[c] for c in attrs.pop("cols")))
        for _, _, e in self.edges:
            e["columns"] = tuple(sorted(order[c] for c in e["columns"]))
        preds: dict[int, list[int]] = {}
        for u, v, _ in self.edges:
            preds.setdefault(v, []).append(u)
        depth: dict[int, int] = {}
        for i, attrs in enumerate(self.nodes):  # nodes are created in topological order
            ins = [depth[p] if self.nodes[p]["block"] == attrs["block"] else 0 for p in preds.get(i, [])]
            base = max(ins, default=0)
            if attrs["kind"] in ("input", "stem", "output", "head"):
                depth[i] = 0
            elif attrs["kind"] == "pool":
                depth[i] = base + 1
            else:
                depth[i] = base + (1 if attrs["kind"] == "layer" else 0)
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
        for i, attrs in enumerate(self.nodes):
            cols = attrs["columns"]
            g.add_node(
                ids[i],
                kind=attrs["kind"],
                op=attrs["op"],
                args=attrs["args"],
                layers=attrs["layers"],
                block=attrs["block"],
                columns=tuple(c + 1 for c in cols),
                column=(cols[0] + 1) if attrs["block"] is not None and attrs["kind"] != "pool" else None,
                depth=depth[i] if attrs["block"] is not None else None,
                span=attrs["span"],
                key_span=attrs.get("key_span"),
            )
        for u, v, e in self.edges:
            g.add_edge(ids[u], ids[v], index=e["index"], columns=tuple(c + 1 for c in e["columns"]))
        return g

    def _column_order(self, width: int) -> dict[int, int]:
        """Local column -> final number, shallowest path first (ties keep written order)."""
        count = [0] * width
        first_block = [a for a in self.nodes if a["block"] == 1 and a["kind"] == "layer"]
        for a in first_block:
            for c in a["cols"]:
                count[c] += 1
        ranked = sorted(range(width), key=lambda c: (count[c], c))
        return {c: i for i, c in enumerate(ranked)}

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


def _check_usage(program: Program, key: dict[str, KeyDef], used: set[str], diags: Collector) -> None:
    """Names defined once and used: every key entry and every parameter is used somewhere."""
    for name, d in key.items():
        if name in SPECIAL_KEYS:
            continue
        if name not in used:
            diags.error(d.name_span, f"`{name}` is defined in the key but no rule uses it", hint="use it in a rule, or remove it")
        names_in_body = {a.value.value for c in d.chain for a in c.args if a.value.is_name}
        for p in d.params:
            if p not in names_in_body and not p.startswith("_"):
                diags.error(d.name_span, f"parameter `{p}` of `{name}` is never used", hint=f"use it in the definition, or rename it `_{p}` to ignore a block value")

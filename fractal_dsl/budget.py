"""The size of a whole expansion, estimated from the parsed program before any graph is built.

Every later stage (expand, validate, codegen, render) costs about as much as the graph it
works on, so bounding the graph bounds them all. :func:`check` counts, per fractal index
(so each rule is evaluated once per index, never unrolled):

* **units**: the layer nodes the rules make (a key entry or a built-in written in a rule),
* **joins**: the join nodes,
* **layers**: the PyTorch layers inside those units, with key entries that call other key
  entries expanded as the resolver does (at most :data:`~fractal_dsl.rules.MAX_KEY_NESTING` levels), so a few lines
  of key entries that each call the next several times cannot hide a million layers,
* **columns**: the columns the rule actually makes (a join's branches add theirs up, a
  composition takes the widest part), not the ``columns`` line.

Everything is multiplied by the number of blocks and compared with the limits below, which
keep ``check``, ``inspect``, ``compile`` and ``render`` of any 64 KiB file within about
10 s and 1 GB on a 2-core machine (see README, "Limits").
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import Collector
from .layers import BUILTINS
from .rules import (
    MAX_COLUMNS,
    MAX_KEY_NESTING,
    SPECIAL_KEYS,
    composed_width,
    index_text,
    joined_width,
    ref_index,
    refs,
    rule_for,
)
from .syntax import Call, FractalRef, Join, KeyDef, Program, Rule, Seq

__all__ = ["MAX_COLUMNS", "MAX_LAYERS", "MAX_UNITS", "Size", "check"]  # the limits are rules.py's and these

# measured on this project's 2-core machine, idle (benchmarks/compile_speed.py --columns 11
# --lift-limits, issue 20's graph tables): checking and compiling 6,141 units (tiny.fdsl at
# C = 11) takes 0.9 s (0.47 s check, 0.41 s compile) and 102 MB at peak; earlier, 229,000
# PyTorch layers in 7 units took 6 s and 0.65 GB
MAX_UNITS = 4_000  # layer nodes in the whole network
MAX_LAYERS = 50_000  # PyTorch layers in the whole network (inside every unit)


@dataclass(frozen=True)
class Size:
    """What one ``f[n]`` makes: layer nodes, join nodes, PyTorch layers, columns."""

    units: int = 0
    joins: int = 0
    layers: int = 0
    width: int = 1

    def __add__(self, other: Size) -> Size:  # composition
        return Size(
            self.units + other.units,
            self.joins + other.joins,
            self.layers + other.layers,
            composed_width((self.width, other.width)),
        )


def check(
    program: Program,
    fname: str,
    base: dict[int, Rule],
    rec: Rule | None,
    columns: int,
    nblocks: int,
    key: dict[str, KeyDef],
    diags: Collector,
) -> None:
    """Report indices no rule defines, and refuse an expansion above the limits (with its estimate)."""
    needed = _needed(fname, base, rec, columns, diags)
    if diags.diagnostics:
        return
    sizes: dict[int, Size] = {}
    units = _UnitLayers(key)
    for n in sorted(needed):
        rule, v = rule_for(n, base, rec)
        if rule is None:
            diags.error(
                program.columns[1],
                f"no rule defines `{fname}[{n}]`",
                hint=f"add a base case `{fname}[{n}] = ...` or a recursive rule `{fname}[C+1] = ...`",
            )
            sizes[n] = Size()
            continue
        sizes[n] = _size(rule.expr, v, sizes, units)
    if diags.diagnostics:
        return
    _refuse(program, fname, columns, nblocks, sizes[columns], units, diags)


def _needed(fname, base, rec, columns: int, diags: Collector) -> set[int]:
    """Every index expanding f[columns] needs (each rule's references are smaller than its own)."""
    seen: set[int] = set()
    todo = [columns]
    while todo:
        n = todo.pop()
        if n in seen:
            continue
        seen.add(n)
        rule, v = rule_for(n, base, rec)
        if rule is None or (rule is rec and n < 1):
            continue
        for ref in refs(rule.expr):
            m = ref_index(ref, v)
            if m < 1:
                if not any(d.message.startswith(f"expanding `{fname}[{n}]` needs") for d in diags.diagnostics):
                    diags.error(
                        ref.span,
                        f"expanding `{fname}[{n}]` needs `{fname}[{m}]`, but indices start at 1",
                        hint=_below_base_hint(fname, ref, rule, rec, base),
                    )
            elif m not in seen:
                todo.append(m)
    return seen


def _below_base_hint(fname: str, ref: FractalRef, rule: Rule, rec: Rule | None, base: dict[int, Rule]) -> str:
    if rule is not rec or not base:
        return f"add a base case such as `{fname}[1] = conv`"
    lowest = min(base)
    return (
        f"`{index_text(fname, ref.index)}` reaches below the base case `{fname}[{lowest}]`: add a base case "
        f"`{fname}[{lowest + 1}] = ...`, or use an index one less than the left side, "
        f"`{index_text(fname, type(rec.index)(rec.index.var, rec.index.offset - 1, rec.index.span))}`"
    )


def _size(expr: Seq, v: int, sizes: dict[int, Size], units: _UnitLayers) -> Size:
    total = Size(width=1)
    for t in expr.terms:
        if isinstance(t, Call):
            part = Size(units=1, layers=units.of_call(t))
        elif isinstance(t, FractalRef):
            part = sizes[ref_index(t, v)]
        elif isinstance(t, Join):
            branches = [_size(b, v, sizes, units) for b in t.branches]
            part = Size(
                sum(b.units for b in branches),
                1 + sum(b.joins for b in branches),
                sum(b.layers for b in branches),
                joined_width([b.width for b in branches]),
            )
        else:
            part = _size(t, v, sizes, units)
        total = total + part
    return total


class _UnitLayers:
    """PyTorch layers a key entry resolves to, as ``binding.KeyBinder._resolve_chain`` resolves it."""

    def __init__(self, key: dict[str, KeyDef]) -> None:
        self.key = key
        self._memo: dict[tuple[str, int], int] = {}

    def of_call(self, call: Call) -> int:
        """Layers of a call written in a rule: a key entry's chain, or one built-in."""
        if call.name in self.key and call.name not in SPECIAL_KEYS:
            return self.of_entry(call.name, 0)
        return 1

    def of_entry(self, name: str, depth: int) -> int:
        if (name, depth) in self._memo:
            return self._memo[name, depth]
        total = 0
        for call in self.key[name].chain:
            if call.name in BUILTINS and (call.name == name or call.name not in self.key or call.name in SPECIAL_KEYS):
                total += 1
            elif call.name in self.key and call.name not in SPECIAL_KEYS and depth <= MAX_KEY_NESTING:
                total += self.of_entry(call.name, depth + 1)
        self._memo[name, depth] = total
        return total

    def special(self, name: str) -> int:
        return self.of_entry(name, 0) if name in self.key else 0


def _refuse(
    program: Program, fname: str, columns: int, nblocks: int, block: Size, units: _UnitLayers, diags: Collector
) -> None:
    at = program.columns[1]
    blocks = f"{nblocks} block{'s' if nblocks != 1 else ''}"
    if block.width > MAX_COLUMNS:
        diags.error(
            at,
            f"`{fname}[{columns}]` makes {block.width:,} columns (the rules' joins add up their "
            f"branches' columns); the limit is {MAX_COLUMNS}",
            hint="use fewer columns or joins with fewer branches; FractalNet uses 3 or 4 columns",
        )
    total = block.units * nblocks
    if total > MAX_UNITS:
        diags.error(
            at,
            f"columns {columns} would make {total:,} layers ({block.units:,} per block, {blocks}); "
            f"the limit is {MAX_UNITS:,}",
            hint="use fewer columns; FractalNet uses 3 or 4",
        )
        return
    layers = (block.layers + units.special("pool")) * nblocks + units.special("stem") + units.special("head")
    if layers > MAX_LAYERS:
        diags.error(
            at,
            f"`{fname}[{columns}]` would make {layers:,} PyTorch layers ({block.units:,} layer units "
            f"per block, {blocks}, with the key entries inside them expanded); the limit is "
            f"{MAX_LAYERS:,}",
            hint="key entries that call each other several times multiply; "
            "use fewer calls, fewer columns or fewer blocks",
        )

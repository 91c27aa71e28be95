"""Binding the layer key: from a use of a key entry or built-in to resolved layers.

This is one piece apart from graph building (:mod:`fractal_dsl.expand`).  Block values are
bound **by name** (docs/LANGUAGE.md, "Binding"):

* :func:`value_names` says which names take block values, in the order a positional tuple
  fills them: the parameters of the key entries that a rule uses (or ``pool``), then the
  other names those entries and the rules use as argument values, in order of first
  appearance in the file;
* :func:`bind_blocks` turns each entry of ``blocks`` into a :class:`BlockEnv`, a mapping
  from those names to values (``(64, 0.1)`` by position, ``(c=64, p=0.1)`` by name);
* :class:`KeyBinder` binds one use of a key entry: explicit arguments first, then the
  block value of the same name, then the parameter's default.  It evaluates argument
  expressions (parameters, block values, numbers, arithmetic, ``true``, ``false``,
  ``classes``, ``column``, ``same``), expands entries that use other entries, and resolves
  built-ins through the layer registry (:mod:`fractal_dsl.layers`).

Problems are reported once each to a :class:`~fractal_dsl.errors.Collector`; binding goes
on so that every mistake is found.
"""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass, field

from .errors import Collector, Fix, Span
from .habits import foreign_layer, number_word
from .layers import BUILTINS, REQUIRED, SAME, TYPES, Layer, LayerError, resolve, variant
from .rules import CONSTANTS, MAX_KEY_NESTING, RESERVED_VALUES, SPECIAL_KEYS
from .syntax import Arith, BlockSpec, Call, KeyDef, Program, Seq, Value, walk

MAX_SUGGESTIONS = 8  # distinct unknown names that get a "did you mean" hint


@dataclass(frozen=True)
class BlockEnv:
    """What one entry of ``blocks`` gives: its 1-based block number and its named values."""

    block: int
    values: dict[str, Value]
    span: Span


@dataclass(frozen=True)
class Bound:
    """A key entry used once: its parameters' values and the layers it resolves to
    (``args`` is None when the parameters could not be bound; the problem is reported)."""

    args: dict[str, Value] | None
    layers: tuple[Layer, ...]


# ---- block values by name ---------------------------------------------------------------


def _calls(seq: Seq):
    return walk(seq, Call)


def block_entries(program: Program, key: dict[str, KeyDef]) -> set[str]:
    """The key entries that take block values: those a rule uses, and ``pool``."""
    used = {c.name for r in program.rules for c in _calls(r.expr) if c.name in key and c.name not in SPECIAL_KEYS}
    return used | ({"pool"} if "pool" in key else set())


def value_names(program: Program, key: dict[str, KeyDef]) -> list[str]:
    """The names that take block values, in the order positional tuples fill them."""
    takes = block_entries(program, key)
    reachable = _reachable(takes, key)
    names: list[str] = []

    def add(name: str) -> None:
        if name not in names and name not in RESERVED_VALUES:
            names.append(name)

    for d in program.key:
        if d.name not in reachable or key.get(d.name) is not d:
            continue
        if d.name in takes:
            for p in d.params:
                add(p)
        for call in d.chain:
            for a in call.args:
                for v in a.value.names():
                    if v.value not in d.params:
                        add(v.value)
    for r in program.rules:
        for call in _calls(r.expr):
            for a in call.args:
                for v in a.value.names():
                    add(v.value)
    return names


def _reachable(roots: set[str], key: dict[str, KeyDef]) -> set[str]:
    seen, todo = set(), list(roots)
    while todo:
        name = todo.pop()
        if name in seen or name not in key:
            continue
        seen.add(name)
        todo.extend(c.name for c in key[name].chain if c.name in key and c.name != name)
    return seen


# other words for what a built-in's argument is: Keras' `filters`, `rate`; the layer itself
_ARG_ALIASES = {"channels": ("filters", "width", "out_channels"), "p": ("rate", "drop", "dropout_rate")}


def value_aliases(key: dict[str, KeyDef]) -> dict[str, str]:
    """Block value names by what they are used as: ``channels`` (or ``filters``) for ``c``
    where an entry writes ``conv3x3(c)``, ``dropout`` (or ``rate``) for ``p`` where it writes
    ``dropout(p)``; for a block that names its values ``(channels=16, dropout=0.1)``."""
    out: dict[str, str] = {}
    for d in key.values():
        for call in d.chain:
            b = BUILTINS.get(call.name)
            if b is None or call.name in key:
                continue
            for i, a in enumerate(call.args):
                if not a.value.is_name or a.value.value not in d.params:
                    continue
                arg = a.name or (b.params[i][0] if i < len(b.params) else None)
                layer = call.name if len(call.args) == 1 else None
                for alias in (arg, layer, *_ARG_ALIASES.get(arg or "", ())):
                    if alias and alias != a.value.value:
                        out.setdefault(alias, a.value.value)
    return out


def value_left_out(d: KeyDef, key: dict[str, KeyDef]) -> tuple[Call, str] | None:
    """``conv(c) = conv3x3 . relu``: the one built-in in ``d`` written without the value it
    needs, and the one parameter of ``d`` nothing uses, most likely meant for it; else None."""
    used = {n.value for c in d.chain for a in c.args for n in a.value.names()}
    unused = [p for p in d.params if p not in used and not p.startswith("_")]
    bare = [
        c
        for c in d.chain
        if c.name in BUILTINS and c.name not in key and not c.args and BUILTINS[c.name].params
        if BUILTINS[c.name].params[0][1] is REQUIRED
    ]
    return (bare[0], unused[0]) if len(unused) == 1 and len(bare) == 1 else None


def bind_blocks(
    blocks: tuple[BlockSpec, ...], names: list[str], diags: Collector, aliases: dict[str, str] | None = None
) -> list[BlockEnv]:
    """Each ``blocks`` entry as a :class:`BlockEnv`: positional values fill ``names`` in
    order, keyword values name theirs; a name given twice or unknown, or more positional
    values than names, is an error (reported with the fix).  ``aliases`` (from
    :func:`value_aliases`) turn ``channels=16`` into one error with ``c`` as its fix."""
    aliases = aliases or {}
    envs = []
    listing = ", ".join(f"`{n}`" for n in names) or "none"
    for b, spec in enumerate(blocks, start=1):
        values: dict[str, Value] = {}
        spans = spec.name_spans or (None,) * len(spec.entries)
        positional = [v for n, v in spec.entries if n is None]
        if len(positional) > len(names):
            extra = positional[len(names)]
            diags.error_once(
                extra.span,
                f"block {b} gives {len(positional)} value{'s' if len(positional) != 1 else ''} by position, "
                f"but only {len(names)} name{'s' if len(names) != 1 else ''} take{'s' if len(names) == 1 else ''} "
                f"block values ({listing})",
                hint=f"positional values fill {listing} in this order; remove the extra value, "
                "or use it in a key entry (a parameter of an entry that a rule uses takes the block value of its name)",
            )
        for name, value in zip(names, positional):
            values[name] = value
        for (name, value), nspan in zip(spec.entries, spans):
            if name is None:
                continue
            at = nspan or value.span
            if name in values:
                diags.error_once(
                    at, f"block {b} gives `{name}` twice", hint="give each value once, by position or by name"
                )
            elif name not in names and aliases.get(name) in names and aliases[name] not in values:
                meant = aliases[name]  # `(channels=16)` for `conv(c) = conv3x3(c)`
                diags.error_once(
                    at,
                    f"block {b} gives `{name}`, but the key calls that value `{meant}`",
                    hint=f"block values go by the key's names: write `{meant}`",
                    fix=Fix(at, meant) if nspan is not None else None,
                )
                values[meant] = value  # so it is not also reported missing
            elif name not in names:
                close = difflib.get_close_matches(name, names, n=1)
                hint = f"did you mean `{close[0]}`?" if close else f"the names that take block values are {listing}"
                diags.error_once(
                    at,
                    f"block {b} gives `{name}`, but no key entry or rule uses a value of that name",
                    hint=hint,
                    fix=Fix(at, close[0]) if close and nspan is not None else None,
                )
            else:
                values[name] = value
        envs.append(BlockEnv(b, values, spec.span))
    return envs


# ---- binding uses of the key --------------------------------------------------------------


@dataclass(frozen=True)
class _Scope:
    """Where a value is evaluated: the entry being bound and its parameters, the block, the
    unit's column (None outside the columns: stem, pool, head)."""

    owner: str | None
    params: dict[str, Value]
    env: BlockEnv | None
    column: int | None
    what: str = "values here"  # how an unknown name's message calls these values


_BLOCK_VALUES = _Scope(None, {}, None, None, "block values")


# what a newcomer writes before a layer's name, as in Python (`nn.Conv2d`)
_MODULE_PREFIXES = ("nn", "torch", "layers", "keras", "tf", "F")

# PyTorch's and Keras' names for an argument that fractal-dsl names otherwise
_ARGUMENT_HABITS = {
    "kernel_size": "kernel",
    "pool_size": "kernel",
    "strides": "stride",
    "rate": "p",
    "out_channels": "channels",
    "filters": "channels",
    "units": "features",
    "out_features": "features",
    "use_bias": "bias",
}


# yes and no in other words (YAML's, INI's); `True`, `False` are answered as lower case
_BOOLEAN_WORDS = {"yes": "true", "on": "true", "no": "false", "off": "false"}

# a value to show where a built-in's argument is missing: `maxpool(2)`, not `maxpool(kernel)`
_EXAMPLE_VALUES = {"channels": "64", "kernel": "2", "p": "0.1", "features": "classes"}


@dataclass
class KeyBinder:
    """Binds uses of the key ``key`` in a network with ``classes`` classes."""

    key: dict[str, KeyDef]
    classes: int
    diags: Collector
    blocks: list[BlockEnv] = field(default_factory=list)  # for hints in `stem` and `head`
    used: set[str] = field(default_factory=set)  # key entries used anywhere
    _cache: dict = field(default_factory=dict)
    _suggestions: dict = field(default_factory=dict)
    _missing: dict = field(default_factory=dict)  # (entry, params) -> [(block, span, hint)]: see report_missing

    # ---- the entry points --------------------------------------------------------------
    def entry(self, name: str, env: BlockEnv | None, call: Call | None = None, column: int | None = None) -> Bound:
        """The key entry ``name`` used by ``call`` (None: placed by the macro-structure, as
        ``stem``, ``pool`` and ``head`` are) in block ``env`` (None outside blocks), in
        ``column`` (None when the unit is not in one column's lane)."""
        self.used.add(name)
        d = self.key[name]
        scope = _Scope(None, {}, env, column)
        if call is not None and self._layer_keyword(call, d.params):
            return Bound(None, ())
        args = [] if call is None else self._args(call, d.params, scope)
        if any(v is None for _, v in args):
            return Bound(None, ())
        bound = self._match(call.span if call is not None else d.span, d, args, scope, shadowed=None)
        if bound is None:
            return Bound(None, ())
        return Bound(bound, self._resolve_chain(d.chain, _Scope(name, bound, env, column)))

    def builtin(self, call: Call, env: BlockEnv | None, column: int | None) -> tuple[Layer, ...]:
        """A built-in used directly in a rule (its arguments may use block values)."""
        return self._resolve_chain((call,), _Scope(None, {}, env, column))

    def rule_call(self, call: Call, env: BlockEnv, column: int, fractal: str | None) -> tuple[Layer, ...]:
        """The layers of a name written in a rule that is not a key entry: a built-in's layer;
        else (a special entry, the fractal's own name, an unknown name) the error, once, and none."""
        if call.name in BUILTINS:
            return self.builtin(call, env, column)
        if call.name in SPECIAL_KEYS:
            self.once(
                call.span,
                f"`{call.name}` is part of the macro-structure and cannot be used inside a rule",
                "join is written `join(a, b)`; pool, stem and head are placed between blocks automatically",
            )
        elif call.name == fractal:
            self.once(
                call.span,
                f"`{call.name}` is the fractal being defined, not a layer",
                f"fractal indices use square brackets, e.g. `{call.name}[C]`",
            )
        else:
            self.unknown_layer(call, None)
        return ()

    def is_entry(self, name: str) -> bool:
        """Whether ``name`` in a rule means a key entry (entries win over built-ins)."""
        return name in self.key and name not in SPECIAL_KEYS

    def suggest(self, name: str) -> str | None:
        """The closest known layer name to a misspelt ``name`` (computed once per name, for
        the first :data:`MAX_SUGGESTIONS` names); matched without regard to case, so `ReLU`
        suggests `relu`."""
        if name not in self._suggestions:
            if len(self._suggestions) >= MAX_SUGGESTIONS:
                return None  # each costs time in proportion to the key: a 64 KiB file can hold 1,500 of each
            choices = [k for k in self.key if k not in SPECIAL_KEYS] + list(BUILTINS)
            lowered = {c.lower(): c for c in choices}
            close = difflib.get_close_matches(name.lower(), list(lowered), n=1)
            self._suggestions[name] = lowered[close[0]] if close else None
        return self._suggestions[name]

    def literal(self, v: Value) -> object:
        """A block value as plain data (for ``inspect``): a number, or ``true``/``false``/``same``."""
        out = self._value(v, _BLOCK_VALUES)
        if out is None:
            return None
        return (
            out.value
            if isinstance(out.value, (int, float))
            else repr(out.value)
            if out.value is SAME
            else str(out.value)
        )

    def once(self, span: Span, message: str, hint: str | None = None, fix: Fix | None = None) -> None:
        self.diags.error_once(span, message, hint, fix)

    def unknown_layer(self, call: Call, owner: str | None) -> None:
        """``call`` names no key entry or built-in: a PyTorch or Keras layer is shown in its
        ``.fdsl`` spelling, a misspelling gets the closest name."""
        where = f" in the definition of `{owner}`" if owner else ""
        unused = self._unused_params(owner) if owner in self.key else []
        if call.name in _MODULE_PREFIXES and not call.args and self._module_prefix(call, where):
            return
        if call.name.lower() in ("softmax", "log_softmax", "logsoftmax") and self._softmax(call, where):
            return
        if call.name.lower() in ("none", "null", "nothing", "noop", "pass") and not call.args:  # `pool = none`
            leave = f", or leave `{owner}` out of the key" if owner in ("pool", "stem") else ""
            hint = f"a layer that does nothing is `identity`: write `identity`{leave}"
            self.once(call.span, f"unknown layer `{call.name}`{where}", hint, Fix(call.span, "identity"))
            return
        foreign = foreign_layer(call, self._text, unused[0] if len(unused) == 1 else None)
        if foreign is not None:
            spelling, note = foreign
            hint = f"`{call.name}` is not a fractal-dsl layer; its `.fdsl` spelling is `{spelling}`{note}"
            self.once(call.span, f"unknown layer `{call.name}`{where}", hint, Fix(call.span, spelling))
            return
        close = self.suggest(call.name)
        name_span = Span(call.span.line, call.span.column, call.span.line, call.span.column + len(call.name))
        if close:
            hint = f"did you mean `{close}`?"
            self.once(call.span, f"unknown layer `{call.name}`{where}", hint, Fix(name_span, close))
        elif owner:
            self.once(call.span, f"unknown layer `{call.name}`{where}")
        else:
            self.once(
                call.span,
                f"unknown layer `{call.name}`",
                "define it in the key, e.g. `conv(c) = conv3x3(c) . batchnorm . relu`",
            )

    def _in_and_out(self, call: Call, names: list[str]) -> bool:
        """PyTorch's ``Linear(in, out)`` order: ``linear(64, classes)``, ``conv3x3(16, c)``: the
        input size is inferred, so the second number went to ``bias`` or ``stride``."""
        pos = [a for a in call.args if a.name is None]
        if len(pos) != 2 or not names or names[0] not in ("channels", "features"):
            return False
        first, second = (a.value.value for a in pos)
        literal = isinstance(first, int) and not isinstance(first, bool)
        # a number where a switch is due (``linear``'s second argument is ``bias``) cannot be meant
        counted = isinstance(second, str) or (names[1:2] == ["bias"] and isinstance(second, int))
        if not literal or not counted or second in ("true", "false", "same"):
            return False
        kept = [self._text(pos[1].span)] + [self._text(a.span) for a in call.args if a.name is not None]
        rewritten = f"{call.name}({', '.join(kept)})"
        self.once(
            call.span,
            f"`{call.name}` takes the {names[0]} it outputs, not its input size and then its output size",
            f"the input size is inferred: write `{rewritten}`",
            Fix(call.span, rewritten),
        )
        return True

    def _softmax(self, call: Call, where: str) -> bool:
        """``head = ... . linear(classes) . softmax``: the loss applies it; the layer goes."""
        line = self.diags.source.line_text(call.span.line) or ""
        dot = re.search(r"[ \t]*\.[ \t]*$", line[: call.span.column - 1])
        if dot is None or call.span.end_line != call.span.line:
            return False
        gone = Span(call.span.line, dot.start() + 1, call.span.line, call.span.end_column)
        self.once(
            call.span,
            f"unknown layer `{call.name}`{where}: the network ends with the scores",
            f"the training loss (cross-entropy) applies the softmax itself: leave out `{self._text(gone).strip()}`",
            Fix(gone, ""),
        )
        return True

    def report_missing(self) -> None:
        """The blocks that give no value for a parameter: one error for all the blocks that
        miss the same one (``blocks 16 32 64`` for ``conv(c, p)``), at the first of them."""
        for (name, missing), found in self._missing.items():
            listed = ", ".join(f"`{p}`" for p in missing)
            blocks = sorted({b for b, _, _ in found})
            which = f"block {blocks[0]} gives" if len(blocks) == 1 else f"blocks {', '.join(map(str, blocks))} give"
            first = min(found, key=lambda f: f[0])
            self.once(first[1], f"{which} no value for {listed}, which `{name}` needs", hint=first[2])

    def _module_prefix(self, call: Call, where: str) -> bool:
        """``nn.Conv2d(...)`` reads as ``nn`` composed with ``Conv2d(...)``: the prefix goes."""
        after = (self.diags.source.line_text(call.span.end_line) or "")[call.span.end_column - 1 :]
        dot = re.match(r"[ \t]*\.[ \t]*", after)
        if dot is None:
            return False
        prefix = Span(call.span.line, call.span.column, call.span.end_line, call.span.end_column + dot.end())
        self.once(
            call.span,
            f"unknown layer `{call.name}`{where}: `{call.name}.` is a Python module prefix",
            f"fractal-dsl layers are written without it: leave out `{self._text(prefix).strip()}`",
            Fix(prefix, ""),
        )
        return True

    def _unused_params(self, name: str) -> list[str]:
        """The parameters of key entry ``name`` that its definition does not use."""
        d = self.key[name]
        used = {n.value for c in d.chain for a in c.args for n in a.value.names()}
        return [p for p in d.params if p not in used]

    # ---- values -----------------------------------------------------------------------
    def _value(self, v: Value, scope: _Scope) -> Value | None:
        """``v`` evaluated to a literal in ``scope``; None (reported) if it cannot be."""
        if isinstance(v.value, Arith):
            return self._arith(v, scope)
        if not v.is_name:
            return v
        name = v.value
        if name in scope.params:
            return scope.params[name]
        if name in CONSTANTS:
            return Value(CONSTANTS[name], v.span)
        if name == "classes":
            return Value(self.classes, v.span)
        if name == "column":
            if scope.column is None:
                where = f"`{scope.owner}`" if scope.owner else "this layer"
                self.once(
                    v.span,
                    f"`column` has no value in {where}: it is outside the columns (a stem, pool or head)",
                    hint="use `column` only in units inside the blocks",
                )
                return None
            return Value(scope.column, v.span)
        if scope.env is not None and name in scope.env.values:
            return self._value(scope.env.values[name], _BLOCK_VALUES)
        self._unknown_name(v, scope)
        return None

    def _unknown_name(self, v: Value, scope: _Scope) -> None:
        number = number_word(v.value)
        if v.value.lower() == "valid":  # PyTorch's and Keras' `padding='valid'`
            hint = (
                "`padding=valid` (PyTorch, Keras) is `0`, which shrinks the output, and a join needs its branches"
                " the same size: write `same` (the default)"
            )
            message = f"unknown name `{v.value}`: padding is a number of pixels, or `same`"
            self.once(v.span, message, hint, Fix(v.span, "same"))
        elif v.value.lower() in _BOOLEAN_WORDS:  # `bias=no`, `bias=yes`
            meant = _BOOLEAN_WORDS[v.value.lower()]
            hint = f"write `{meant}`"
            self.once(v.span, f"unknown name `{v.value}`: a yes or no is `true` or `false`", hint, Fix(v.span, meant))
        elif number is not None:  # `blocks (sixteen, 0.1)`, `linear(ten)`
            hint = f"numbers are written in digits: write `{number}`"
            self.once(v.span, f"unknown name `{v.value}`", hint, Fix(v.span, str(number)))
        elif scope.owner is None and scope.env is None:
            self.once(
                v.span, f"unknown name `{v.value}`; {scope.what} are numbers, `true`, `false`, `same` or `classes`"
            )
        elif scope.owner is None:
            self.once(
                v.span,
                f"unknown name `{v.value}`",
                hint=f"block {scope.env.block} gives no value named `{v.value}`; add it, e.g. `({v.value}=...)`",
            )
        elif scope.owner in ("head", "stem") and not self.key[scope.owner].params:
            # these take no parameters: suggest a number, never `head(p) = ...`
            env = (self.blocks[-1] if scope.owner == "head" else self.blocks[0]) if self.blocks else None
            where = "after the last block" if scope.owner == "head" else "before the first block"
            message = f"unknown name `{v.value}` in the definition of `{scope.owner}`"
            hint = f"`{scope.owner}` is placed {where} and takes no parameters or block values"
            value = self.literal(env.values[v.value]) if env is not None and v.value in env.values else None
            if isinstance(value, (int, float)):
                written = f"{value:g}" if isinstance(value, float) else str(value)
                hint += f": write a number, e.g. `{written}` (block {env.block}'s `{v.value}`)"
                self.once(v.span, message, hint, Fix(v.span, written))
            else:
                self.once(v.span, message, hint + ": write a number (or `classes`)")
        else:
            declared = self.key[scope.owner].params if scope.owner in self.key else ()
            hint = (
                f"the parameters of `{scope.owner}` are {', '.join(declared)}"
                if declared
                else f"declare it, e.g. `{scope.owner}({v.value}) = ...`"
            )
            if scope.env is not None:
                hint += f"; block {scope.env.block} gives no value named `{v.value}`"
            fix = None
            if v.value.lower() in CONSTANTS:
                hint = f"fractal-dsl writes `{v.value.lower()}` in lower case"
                fix = Fix(v.span, v.value.lower())
            self.once(v.span, f"unknown name `{v.value}` in the definition of `{scope.owner}`", hint, fix)

    def _arith(self, v: Value, scope: _Scope) -> Value | None:
        arith = v.value
        assert isinstance(arith, Arith)
        operands = [self._value(o, scope) for o in arith.operands]
        if any(o is None for o in operands):
            return None
        nums = [o.value for o in operands]
        if any(isinstance(n, bool) or not isinstance(n, (int, float)) for n in nums):
            self.once(v.span, "arithmetic needs numbers", hint="`true`, `false` and `same` cannot be computed with")
            return None
        if arith.op == "neg":
            return Value(-nums[0], v.span)
        a, b = nums
        if arith.op == "/" and b == 0:
            self.once(v.span, "division by zero")
            return None
        try:
            if arith.op == "/":
                exact = isinstance(a, int) and isinstance(b, int) and a % b == 0
                result = a // b if exact else a / b
            else:
                result = {"+": a + b, "-": a - b, "*": a * b}[arith.op]
        except OverflowError:
            result = math.inf
        if isinstance(result, float) and not math.isfinite(result):
            self.once(v.span, "this arithmetic overflows")
            return None
        return Value(result, v.span)

    # ---- parameters --------------------------------------------------------------------
    def _match(
        self, span: Span, d: KeyDef, args: list[tuple[str | None, Value]], scope: _Scope, shadowed: KeyDef | None
    ) -> dict[str, Value] | None:
        """Bind entry ``d``'s parameters: ``args`` (positional, then by keyword), then the
        block value of the same name, then the default; None (reported, every problem at
        once) if they do not fit."""
        names = list(d.params)
        problems = []
        pos = [v for k, v in args if k is None]
        if len(pos) > len(names):
            problems.append(f"`{d.name}` takes {len(names)} argument{'s' if len(names) != 1 else ''}, got {len(pos)}")
        bound = dict(zip(names, pos))
        for k, v in args:
            if k is not None and k not in names:
                problems.append(
                    f"`{d.name}` has no parameter `{k}`"
                    + (f" (its parameters are {', '.join(names)})" if names else "")
                )
            elif k is not None and k in bound:
                problems.append(f"parameter `{k}` of `{d.name}` is given twice")
            elif k is not None:
                bound[k] = v
        defaults = dict(d.defaults)
        at_rule = scope.owner is None  # a use in a rule (or pool) takes block values; a use inside an entry does not
        from_block = scope.env.values if scope.env is not None and at_rule else {}
        missing = []
        for p in names:
            if p in bound:
                continue
            if p in from_block:
                value = self._value(from_block[p], _BLOCK_VALUES)
            elif p in defaults:
                value = self._value(defaults[p], _Scope(d.name, {}, None, scope.column))
            else:
                missing.append(p)
                continue
            if value is None:
                return None
            bound[p] = value
        if missing and not problems and scope.env is not None and at_rule:
            hint = (
                f"name it in the block, e.g. `({missing[0]}=...)`, or give `{d.name}` a default: "
                f"`{d.name}({', '.join(p + '=...' if p == missing[0] else p for p in names)})`"
            )
            found = self._missing.setdefault((d.name, tuple(missing)), [])
            if (scope.env.block, scope.env.span) not in [(b, at) for b, at, _ in found]:
                found.append((scope.env.block, scope.env.span, hint))
            return None
        if missing:
            problems.append(
                f"`{d.name}` is missing a value for parameter{'s' if len(missing) > 1 else ''} "
                f"{', '.join(f'`{p}`' for p in missing)}"
            )
        if not problems:
            return bound
        hint = None
        if shadowed is not None:
            sig = f"{d.name}({', '.join(shadowed.params)})" if shadowed.params else d.name
            hint = (
                f"`{d.name}` here is the key entry `{sig}` (line {shadowed.span.line}), which shadows the "
                f"built-in `{d.name}`"
            )
        self.once(span, "; ".join(problems), hint)
        return None

    # ---- layers ------------------------------------------------------------------------
    def _resolve_chain(self, chain, scope: _Scope, depth: int = 0) -> tuple[Layer, ...]:
        memo = (
            chain,
            scope.owner,
            tuple(sorted((k, repr(v.value), v.span) for k, v in scope.params.items())),
            scope.env.block if scope.env is not None else None,
            scope.column,
        )
        if memo in self._cache:
            return self._cache[memo]
        out: list[Layer] = []
        for call in chain:
            # a key entry wins over a built-in of the same name, except inside its own body:
            # `conv(c) = conv(c, kernel=3)` means the built-in, `relu = leakyrelu(0.2)` elsewhere the entry
            if call.name in BUILTINS and (call.name == scope.owner or not self.is_entry(call.name)):
                out.extend(self._resolve_builtin(call, scope))
            elif self.is_entry(call.name):
                if depth > MAX_KEY_NESTING:
                    self.once(
                        call.span, f"key definitions nest too deeply at `{call.name}` (do they refer to each other?)"
                    )
                    continue
                self.used.add(call.name)
                inner = self.key[call.name]
                if self._layer_keyword(call, inner.params):
                    continue
                args = self._args(call, inner.params, scope)
                if any(v is None for _, v in args):
                    continue
                shadowed = inner if call.name in BUILTINS else None
                caller = _Scope(scope.owner or call.name, {}, scope.env, scope.column)
                sub = self._match(call.span, inner, args, caller, shadowed)
                if sub is not None:
                    out.extend(
                        self._resolve_chain(inner.chain, _Scope(call.name, sub, scope.env, scope.column), depth + 1)
                    )
            else:
                self.unknown_layer(call, scope.owner)
        result = tuple(out)
        self._cache[memo] = result
        return result

    def _args(self, call: Call, names, scope: _Scope) -> list[tuple[str | None, Value | None]]:
        """``call``'s arguments evaluated in ``scope``; one named other than ``names`` is left
        as written (its name is the problem, reported as such, not its value)."""
        return [(a.name, a.value if a.name not in (None, *names) else self._value(a.value, scope)) for a in call.args]

    def _layer_keyword(self, call: Call, names) -> bool:
        """A key entry given a layer by a keyword it does not have, ``conv(activation=relu)``:
        reported with the composition written out; whether it was."""
        for a in call.args:
            if a.name is not None and a.name not in names and self._is_layer(a.value):
                rewritten = f"{self._call_without(call, (a,))} . {a.value.value}"
                self.once(
                    call.span,
                    f"`{call.name}` has no parameter `{a.name}`"
                    + (f" (its parameters are {', '.join(names)})" if names else ""),
                    f"a layer is composed after it with '.': write `{rewritten}`",
                    Fix(call.span, rewritten),
                )
                return True
        return False

    def _text(self, span: Span) -> str:
        return self.diags.source.text_of(span)

    def _call_without(self, call: Call, drop, name: str | None = None) -> str:
        """``call`` written again without the arguments ``drop`` (and renamed ``name``)."""
        kept = [self._text(a.span) for a in call.args if a not in drop]
        return (name or call.name) + (f"({', '.join(kept)})" if kept else "")

    def _is_layer(self, v: Value, scope: _Scope | None = None) -> bool:
        """Whether ``v`` names a layer; not where a parameter or block value of that name is
        in ``scope`` (``conv(dropout) = conv3x3(dropout)`` passes a value)."""
        if not v.is_name:
            return False
        if scope is not None and (v.value in scope.params or (scope.env and v.value in scope.env.values)):
            return False
        return v.value in BUILTINS or self.is_entry(v.value)

    def _layer_arguments(self, call: Call, scope: _Scope) -> bool:
        """A layer given to a built-in as an argument, ``relu(conv)``, ``dropout(conv, 0.1)``:
        reported with the composition written out; whether it was."""
        layers = [a for a in call.args if a.name is None and self._is_layer(a.value, scope)]
        if not layers:
            return False
        before = " . ".join(self._text(a.span) for a in layers)
        rewritten = f"{before} . {self._call_without(call, layers)}"
        self.once(
            call.span,
            "a layer is not called on another layer"
            + (f": `{call.name}` takes no arguments" if not BUILTINS[call.name].params else ""),
            hint=f"layers compose with '.', data flowing left to right: write `{rewritten}`",
            fix=Fix(call.span, rewritten),
        )
        return True

    def _no_arguments(self, call: Call) -> None:
        """A built-in without parameters given arguments: ``batchnorm(c)``."""
        reads_channels = any(slot.kind == "channels_in" for slot in TYPES[BUILTINS[call.name].type].slots)
        why = "its channels are inferred from its input" if reads_channels else None
        self.once(
            call.span,
            f"`{call.name}` takes no arguments" + (f": {why}" if why else ""),
            hint=f"write `{call.name}`",
            fix=Fix(call.span, call.name),
        )

    @staticmethod
    def _fixed_by_name(call: Call, param: str) -> bool:
        """Whether ``call``'s built-in fixes ``param`` in its name (``conv3x3``'s kernel)."""
        return call.name in BUILTINS and BUILTINS[call.name].fixes(param)

    def _unknown_argument(self, call: Call, arg, names: list[str]) -> None:
        """``conv3x3(c, activation=relu)``, ``conv3x3(c, kernel=5)``, ``conv(c, Stride=2)``."""
        k = arg.name
        hint = fix = None
        lowered = {n.lower(): n for n in names}
        close = difflib.get_close_matches(k.lower(), list(lowered), n=1, cutoff=0.75)
        if _ARGUMENT_HABITS.get(k.lower()) in lowered:  # PyTorch's or Keras' name for it
            close = [_ARGUMENT_HABITS[k.lower()]]
        meant = next((n for n in (k, _ARGUMENT_HABITS.get(k.lower())) if n and self._fixed_by_name(call, n)), None)
        general = variant(call.name, meant, None) if meant is not None else None
        if general is not None:  # `conv3x3(c, kernel=5)`, `conv3x3(c, kernel_size=5)`: `conv` takes a kernel
            given = [f"{meant}={self._text(a.value.span)}" if a is arg else self._text(a.span) for a in call.args]
            rewritten = f"{general}({', '.join(given)})"
            hint = f"`{call.name}` has a fixed {meant}; `{general}` takes one: write `{rewritten}`"
            written = self._text(arg.value.span)
            whole = written.isascii() and written.isdigit() and str(int(written)) == written
            other = variant(call.name, meant, int(written)) if whole else None
            if other is not None:
                hint += f" (or `{self._call_without(call, (arg,), other)}`)"
            fix = Fix(call.span, rewritten)
        elif self._is_layer(arg.value):
            rewritten = f"{self._call_without(call, (arg,))} . {arg.value.value}"
            hint = f"a layer is composed after it with '.': write `{rewritten}`"
            fix = Fix(call.span, rewritten)
        elif arg.value.is_name and arg.value.value.lower() in ("softmax", "log_softmax", "logsoftmax"):
            rewritten = self._call_without(call, (arg,))
            hint = f"the training loss (cross-entropy) applies the softmax itself: write `{rewritten}`"
            fix = Fix(call.span, rewritten)
        elif close:
            right = lowered[close[0]]
            hint = f"did you mean `{right}`?"
            fix = Fix(Span(arg.span.line, arg.span.column, arg.span.line, arg.span.column + len(k)), right)
        self.once(
            call.span,
            f"`{call.name}` has no argument `{k}`" + (f"; its arguments are {', '.join(names)}" if names else ""),
            hint,
            fix,
        )

    def _resolve_builtin(self, call: Call, scope: _Scope) -> list[Layer]:
        b = BUILTINS[call.name]
        names = [p for p, _ in b.params]
        if self._layer_arguments(call, scope):
            return []
        if not names and call.args:
            self._no_arguments(call)
            return []
        for a in call.args:
            if a.name is not None and a.name not in names:
                self._unknown_argument(call, a, names)
                return []
        if self._in_and_out(call, names):
            return []
        args = self._args(call, names, scope)
        if any(v is None for _, v in args):
            return []
        given: dict[str, Value] = {}
        pos = [v for k, v in args if k is None]
        if len(pos) > len(names):
            self.once(
                call.span,
                f"`{call.name}` takes at most {len(names)} arguments ({', '.join(names) or 'none'}), got {len(pos)}",
            )
            return []
        given.update(zip(names, pos))
        for k, v in args:
            if k is None:
                continue
            if k in given:
                self.once(call.span, f"argument `{k}` of `{call.name}` is given twice")
                return []
            given[k] = v
        values: dict[str, object] = {}
        for p, default in b.params:
            if p in given:
                values[p] = given[p].value
            elif default is REQUIRED:
                owner = self.key.get(scope.owner) if scope.owner else None
                if owner is not None and (left := value_left_out(owner, self.key)) and left[0] is call:
                    return []  # reported with the key, with the parameter meant for it
                self.once(
                    call.span,
                    f"`{call.name}` needs a value for `{p}`",
                    f"e.g. `{call.name}({_EXAMPLE_VALUES.get(p, p)})`",
                )
                return []
            else:
                values[p] = default
        try:
            return [resolve(call.name, values)]
        except LayerError as exc:
            span = given[exc.arg].span if exc.arg in given else call.span
            fix = Fix(span, exc.suggestion) if exc.suggestion is not None and exc.arg in given else None
            self.once(span, str(exc), exc.hint, fix)
            return []

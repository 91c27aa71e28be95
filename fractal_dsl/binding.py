"""Binding the layer key: from a use of a key entry or built-in to resolved layers.

This is one piece apart from graph building (:mod:`fractal_dsl.expand`): given the key, the
values a block gives (:class:`BlockEnv`) and a call in a rule, :class:`KeyBinder` binds the
entry's parameters (explicit arguments, else the block's values), evaluates the argument
expressions (a parameter, a number, ``true``, ``false``, ``classes``), expands entries that
use other entries, and resolves built-ins through the layer registry
(:mod:`fractal_dsl.layers`).  Problems are reported once each to a
:class:`~fractal_dsl.errors.Collector`; binding goes on so that every mistake is found.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field

from .errors import Collector, Span
from .layers import BUILTINS, REQUIRED, Layer, LayerError, resolve
from .syntax import Call, KeyDef, Value

SPECIAL_KEYS = ("join", "pool", "head", "stem")
CONSTANTS = {"true": True, "false": False}
MAX_KEY_NESTING = 8  # key entries using key entries


@dataclass(frozen=True)
class BlockEnv:
    """What one entry of ``blocks`` gives: its 1-based block number and values, in order."""

    block: int
    values: tuple[Value, ...]
    span: Span


@dataclass(frozen=True)
class Bound:
    """A key entry used once: its parameters' values and the layers it resolves to
    (``args`` is None when the parameters could not be bound; the problem is reported)."""

    args: dict[str, Value] | None
    layers: tuple[Layer, ...]


@dataclass
class KeyBinder:
    """Binds uses of the key ``key`` in a network with ``classes`` classes."""

    key: dict[str, KeyDef]
    classes: int
    diags: Collector
    used: set[str] = field(default_factory=set)  # key entries used anywhere
    _cache: dict = field(default_factory=dict)
    _suggestions: dict = field(default_factory=dict)

    # ---- the entry points --------------------------------------------------------------
    def entry(self, name: str, env: BlockEnv | None, call: Call | None = None) -> Bound:
        """The key entry ``name`` used by ``call`` (None: placed by the macro-structure, as
        ``stem``, ``pool`` and ``head`` are) in the block ``env`` (None outside blocks)."""
        self.used.add(name)
        d = self.key[name]
        bound = self._bind_entry(d, env, call)
        return Bound(bound, () if bound is None else self._resolve_chain(d.chain, bound, name))

    def builtin(self, call: Call) -> tuple[Layer, ...]:
        """A built-in used directly in a rule (its arguments are literals)."""
        return self._resolve_chain((call,), {}, call.name)

    def is_entry(self, name: str) -> bool:
        """Whether ``name`` in a rule means a key entry (entries win over built-ins)."""
        return name in self.key and name not in SPECIAL_KEYS

    def suggest(self, name: str) -> str | None:
        """The closest known layer name to a misspelt ``name`` (computed once per name)."""
        if name not in self._suggestions:
            choices = [k for k in self.key if k not in SPECIAL_KEYS] + list(BUILTINS)
            close = difflib.get_close_matches(name, choices, n=1)
            self._suggestions[name] = close[0] if close else None
        return self._suggestions[name]

    def once(self, span: Span, message: str, hint: str | None = None) -> None:
        self.diags.error_once(span, message, hint)

    # ---- parameters --------------------------------------------------------------------
    def _bind_entry(self, d: KeyDef, env: BlockEnv | None, call: Call | None) -> dict[str, Value] | None:
        """Values for ``d``'s parameters: explicit call arguments, else the block's values."""
        if call is not None and call.has_parens:
            args = [(a.name, self._value(a.value, {}, "arguments in a rule")) for a in call.args]
            if any(v is None for _, v in args):
                return None
            return self._match(call, d.name, [(p, REQUIRED) for p in d.params], args, shadowed=None)
        if not d.params:
            return {}
        values = env.values if env else ()
        if len(values) != len(d.params):
            where = env.span if env else d.span
            block = env.block if env else None
            self.once(
                where,
                f"block {block} gives {len(values)} value{'s' if len(values) != 1 else ''} but `{d.name}` takes {len(d.params)} ({', '.join(d.params)})",
                hint="each block lists one value per parameter of the layers it uses, e.g. `(64, 0.1)` for `conv(c, p)`",
            )
            return None
        bound = {p: self._value(v, {}, "block values") for p, v in zip(d.params, values)}
        return None if None in bound.values() else bound

    def _value(self, v: Value, params: dict[str, Value], where: str, owner: str | None = None) -> Value | None:
        """An argument or block value resolved to a literal: a parameter of ``owner`` (from
        ``params``), ``true``, ``false``, ``classes`` or a number; None (reported) if unknown."""
        if not v.is_name:
            return v
        if v.value in params:
            return params[v.value]
        if v.value in CONSTANTS:
            return Value(CONSTANTS[v.value], v.span)
        if v.value == "classes":
            return Value(self.classes, v.span)
        if owner is None:
            self.once(v.span, f"unknown name `{v.value}`; {where} are numbers, `true`, `false` or `classes`")
            return None
        declared = self.key[owner].params if owner in self.key else ()
        hint = f"the parameters of `{owner}` are {', '.join(declared)}" if declared else f"declare it, e.g. `{owner}(x) = ...`"
        self.once(v.span, f"unknown name `{v.value}` in the definition of `{owner}`", hint)
        return Value(0, v.span)

    def _match(
        self, call: Call, name: str, params: list[tuple[str, object]], args: list[tuple[str | None, Value]], shadowed: KeyDef | None
    ) -> dict[str, Value] | None:
        """Bind ``args`` (positional, then by keyword) to the key entry ``name``'s ``params``;
        None (reported, every problem at once) if they do not fit."""
        names = [p for p, _ in params]
        problems = []
        pos = [v for k, v in args if k is None]
        if len(pos) > len(names):
            problems.append(f"`{name}` takes {len(names)} argument{'s' if len(names) != 1 else ''}, got {len(pos)}")
        bound = dict(zip(names, pos))
        for k, v in args:
            if k is not None and k not in names:
                problems.append(f"`{name}` has no parameter `{k}`" + (f" (its parameters are {', '.join(names)})" if names else ""))
            elif k is not None and k in bound:
                problems.append(f"parameter `{k}` of `{name}` is given twice")
            elif k is not None:
                bound[k] = v
        missing = [f"`{p}`" for p in names if p not in bound]
        if missing:
            problems.append(f"`{name}` is missing a value for parameter{'s' if len(missing) > 1 else ''} {', '.join(missing)}")
        if not problems:
            return bound
        hint = None
        if shadowed is not None:
            sig = f"{name}({', '.join(shadowed.params)})" if shadowed.params else name
            hint = f"`{name}` here is the key entry `{sig}` (line {shadowed.span.line}), which shadows the built-in `{name}`"
        self.once(call.span, "; ".join(problems), hint)
        return None

    # ---- layers ------------------------------------------------------------------------
    def _resolve_chain(self, chain, bound: dict[str, Value], owner: str, depth: int = 0) -> tuple[Layer, ...]:
        memo = (chain, tuple(sorted((k, v.value, v.span) for k, v in bound.items())))
        if memo in self._cache:
            return self._cache[memo]
        out: list[Layer] = []
        for call in chain:
            # a key entry wins over a built-in of the same name, except inside its own body:
            # `conv(c) = conv(c, kernel=3)` means the built-in, `relu = leakyrelu(0.2)` elsewhere the entry
            if call.name in BUILTINS and (call.name == owner or not self.is_entry(call.name)):
                out.extend(self._resolve_builtin(call, bound, owner))
            elif self.is_entry(call.name):
                if depth > MAX_KEY_NESTING:
                    self.once(call.span, f"key definitions nest too deeply at `{call.name}` (do they refer to each other?)")
                    continue
                self.used.add(call.name)
                inner = self.key[call.name]
                args = [(a.name, self._value(a.value, bound, "", owner)) for a in call.args]
                shadowed = inner if call.name in BUILTINS else None
                sub = self._match(call, inner.name, [(p, REQUIRED) for p in inner.params], args, shadowed)
                if sub is not None:
                    out.extend(self._resolve_chain(inner.chain, sub, call.name, depth + 1))
            else:
                close = self.suggest(call.name)
                self.once(call.span, f"unknown layer `{call.name}` in the definition of `{owner}`", f"did you mean `{close}`?" if close else None)
        result = tuple(out)
        self._cache[memo] = result
        return result

    def _resolve_builtin(self, call: Call, bound: dict[str, Value], owner: str) -> list[Layer]:
        b = BUILTINS[call.name]
        args = [(a.name, self._value(a.value, bound, "", owner)) for a in call.args]
        names = [p for p, _ in b.params]
        given: dict[str, Value] = {}
        pos = [v for k, v in args if k is None]
        if len(pos) > len(names):
            self.once(call.span, f"`{call.name}` takes at most {len(names)} arguments ({', '.join(names) or 'none'}), got {len(pos)}")
            return []
        given.update(zip(names, pos))
        for k, v in args:
            if k is None:
                continue
            if k not in names:
                self.once(call.span, f"`{call.name}` has no argument `{k}`" + (f"; its arguments are {', '.join(names)}" if names else ""))
                return []
            if k in given:
                self.once(call.span, f"argument `{k}` of `{call.name}` is given twice")
                return []
            given[k] = v
        values: dict[str, object] = {}
        for p, default in b.params:
            if p in given:
                values[p] = given[p].value
            elif default is REQUIRED:
                self.once(call.span, f"`{call.name}` needs a value for `{p}`", f"e.g. `{call.name}({p if p != 'channels' else 64})`" if p != "p" else "e.g. `dropout(0.1)`")
                return []
            else:
                values[p] = default
        try:
            return [resolve(call.name, values)]
        except LayerError as exc:
            span = given[exc.arg].span if exc.arg in given else call.span
            self.once(span, str(exc), exc.hint)
            return []

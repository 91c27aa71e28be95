"""The fractal's rules and the language's fixed names, in one place.

Which rule defines ``f[n]`` (:func:`rule_for`), the index a reference ``f[C+1]`` stands
for (:func:`ref_index`), the references of a rule (:func:`refs`) and how an index is
written (:func:`index_text`); how many columns a composition and a join make
(:func:`composed_width`, :func:`joined_width`); the limits on columns, blocks and key
nesting; and the key's special entries and the names with a fixed meaning in values.
:mod:`fractal_dsl.budget` (the size estimate), :mod:`fractal_dsl.expand` (the unrolled
graph) and :mod:`fractal_dsl.binding` (key entries) all ask here.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from .layers import SAME
from .syntax import FractalRef, Rule, Seq, walk

MAX_COLUMNS = 64  # columns a network may have (the columns line and what the rules make)
MAX_BLOCKS = 64
MAX_KEY_NESTING = 8  # key entries may call key entries this many levels deep

SPECIAL_KEYS = ("join", "pool", "head", "stem")  # key entries placed by the macro-structure, not by rules
CONSTANTS = {"true": True, "false": False, "same": SAME}
RESERVED_VALUES = ("true", "false", "classes", "column", "same")  # names with a fixed meaning in values


def rule_for(n: int, base: dict[int, Rule], rec: Rule | None) -> tuple[Rule | None, int]:
    """The rule that defines f[n] and the value of its index variable."""
    if n in base:
        return base[n], 0
    if rec is not None:
        return rec, n - rec.index.offset
    return None, 0


def ref_index(ref: FractalRef, var_value: int) -> int:
    """The index ``ref`` stands for when the rule's index variable is ``var_value``."""
    return ref.index.offset if ref.index.var is None else var_value + ref.index.offset


def refs(expr: Seq) -> Iterator[FractalRef]:
    """Every fractal reference ``f[...]`` in ``expr``, in written order."""
    return walk(expr, FractalRef)


def index_text(fname: str, index) -> str:
    """``f[3]``, ``f[C]``, ``f[C+1]`` or ``f[C-1]``, as written."""
    if index.var is None:
        return f"{fname}[{index.offset}]"
    if index.offset == 0:
        return f"{fname}[{index.var}]"
    return f"{fname}[{index.var}{index.offset:+d}]"


def composed_width(widths: Iterable[int]) -> int:
    """Columns of a composition ``a . b``: its widest part (a one-column part is shared by all)."""
    return max(widths, default=1)


def joined_width(widths: Iterable[int]) -> int:
    """Columns of a join: each branch brings its own, so they add up."""
    return sum(widths)

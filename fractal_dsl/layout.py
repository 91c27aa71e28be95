"""Where each node of an expanded drawing goes, from the fractal's own coordinates.

Figure 1 of the paper needs no graph layout algorithm: a layer's place is its column (a
lane, shallowest on the left) and its row (its depth, with a join one row below the
deepest input it joins).  :func:`place` turns the rows of each block, and the nodes drawn
between blocks, into Graphviz positions in points (``pos="x,y!"``, y up), and each block's
bounding box (a cluster's ``bb``), so that ``neato -n2`` only draws: it routes the edges
between fixed nodes in well under a second where ``dot``'s own layout of a C = 10 block
took 20 s or more.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

ROW = 58.0  # points from one row to the next: a two-line box (36 pt) and the gap dot used (0.3 in)
LABEL = 24.0  # points above a block's first row for its label
MARGIN = 10.0  # points between a block's outermost nodes and its box


@dataclass(frozen=True)
class Section:
    """One band of the drawing, top to bottom: a block's rows (``block`` set), or a row of
    nodes drawn outside any block (the input, a pool, the legend...), centred."""

    rows: tuple[tuple[str, ...], ...]
    block: int | None = None


@dataclass(frozen=True)
class Placed:
    pos: dict[str, tuple[float, float]]  # node -> centre, in points, y up
    bb: dict[int, tuple[float, float, float, float]]  # block -> (x0, y0, x1, y1)


def number(x: float) -> str:
    """A coordinate as DOT gets it: at most one decimal, never an exponent (``1e+06``)."""
    return f"{x:.1f}".removesuffix(".0")


def lane_x(column: float, pitch: float) -> float:
    """The centre of a column's lane (column 1 the leftmost; fractional for a join's middle)."""
    return (column - 0.5) * pitch


def place(sections: Sequence[Section], columns: dict[str, tuple[int, int]], lanes: int, pitch: float) -> Placed:
    """Positions for ``sections`` drawn top to bottom.

    ``columns[v]`` is the first and last lane a block node spans (a layer one lane, a join
    the lanes it joins); nodes outside blocks are centred over all ``lanes``.  Deterministic:
    the same sections give the same numbers.
    """
    heights = []
    for s in sections:
        heights.append(len(s.rows) * ROW + (LABEL + 2 * MARGIN if s.block is not None else 0.0))
    y = sum(heights)  # the top; rows go down from it
    pos: dict[str, tuple[float, float]] = {}
    bb: dict[int, tuple[float, float, float, float]] = {}
    middle = lane_x((1 + lanes) / 2, pitch)
    for s, height in zip(sections, heights):
        top = y
        if s.block is not None:
            y -= LABEL + MARGIN
        for row in s.rows:
            centre = y - ROW / 2
            if s.block is None:
                # Nodes outside blocks: side by side, centred over the lanes.
                for i, v in enumerate(row):
                    pos[v] = (round(middle + (i - (len(row) - 1) / 2) * pitch, 1), round(centre, 1))
            else:
                for v in row:
                    first, last = columns[v]
                    pos[v] = (round(lane_x((first + last) / 2, pitch), 1), round(centre, 1))
            y -= ROW
        if s.block is not None:
            y -= MARGIN
            used = [columns[v] for row in s.rows for v in row]
            x0 = lane_x(min(a for a, _ in used), pitch) - pitch / 2 - MARGIN
            x1 = lane_x(max(b for _, b in used), pitch) + pitch / 2 + MARGIN
            bb[s.block] = (round(x0, 1), round(top - height, 1), round(x1, 1), round(top, 1))
    return Placed(pos, bb)

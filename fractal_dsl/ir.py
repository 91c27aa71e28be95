"""The typed intermediate representation every stage after parsing reads.

The network is a networkx ``DiGraph`` (the DAG is part of the product: ``inspect --json``
and ``fractal_dsl.load`` hand it out), and each node carries exactly one frozen
:class:`Node` under the attribute ``"node"``, each edge one frozen :class:`Edge` under
``"edge"``.  Stages are functions from one value to a new one: expansion makes nodes
without shapes, validation returns a new :class:`~fractal_dsl.expand.Network` whose nodes
carry shapes, parameters and MACs; nothing is changed afterwards.

Read nodes through :class:`~fractal_dsl.expand.Network`'s accessors (``net.node(id)``,
``net.nodes()``, ``net.edge(u, v)``, ``net.inputs(id)``) rather than the raw graph.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import Span
from .layers import Layer

Shape = tuple[int, ...]

# Node kinds, in the order they appear along the network.
INPUT, STEM, LAYER, JOIN, POOL, HEAD, OUTPUT = "input", "stem", "layer", "join", "pool", "head", "output"
KINDS = (INPUT, STEM, LAYER, JOIN, POOL, HEAD, OUTPUT)
UNIT_KINDS = (STEM, LAYER, POOL, HEAD)  # nodes built from the layer key: they hold PyTorch layers


@dataclass(frozen=True)
class Edge:
    """An edge ``u -> v``: ``index`` is the input position into a join (0 elsewhere);
    ``columns`` the columns that branch carries (into a join; empty elsewhere)."""

    index: int = 0
    columns: tuple[int, ...] = ()


@dataclass(frozen=True)
class Node:
    """One node of the fractal.

    ``kind`` is one of :data:`KINDS`; ``op`` the key entry or built-in a layer unit comes
    from (``conv``), or a join's mode (``mean``); ``layers`` the resolved PyTorch layers of a
    unit, in order; ``block`` 1-based (None outside blocks; a pool has the block it
    follows); ``columns`` the 1-based columns whose path runs through the node (1 is the
    shallowest); ``depth`` its row within the block (Figure 1).  The shape fields,
    ``params`` and ``macs`` (multiply-accumulates per sample) are filled by validation;
    ``module`` is the dotted submodule name that holds a unit in the compiled module.
    """

    id: str
    kind: str
    op: str
    block: int | None
    columns: tuple[int, ...]
    depth: int | None
    span: Span
    key_span: Span | None = None
    args: tuple[tuple[str, object], ...] = ()
    layers: tuple[Layer, ...] = ()
    in_shape: Shape | None = None
    shape: Shape | None = None
    layer_shapes: tuple[Shape, ...] = ()
    params: int = 0
    macs: int = 0
    module: str | None = None

    @property
    def column(self) -> int | None:
        """The column a block node is drawn and named in: the shallowest that uses it."""
        if self.block is None or self.kind == POOL:
            return None
        return min(self.columns)

    @property
    def is_unit(self) -> bool:
        return self.kind in UNIT_KINDS

"""The anytime table: what the whole network and each column alone cost and score.

Costs come from the validated graph (no torch): a column's parameters and MACs are the sums
over the nodes on its path (:func:`semantics.column_path`), the whole network's over every
node. A MAC is one multiply-accumulate per image, counted for convolutions and linear
layers (the weights' products; bias additions, BatchNorm, activations, pooling and the
joins' averages are not counted) -- the same layers ``torch.utils.flop_counter`` counts,
at 2 FLOPs per MAC (``tests/test_anytime.py`` checks it).

The measured half (accuracy, latency) is added by :func:`fractal_dsl.train.loop.anytime_rows`;
:func:`format_table` prints a table of rows and :func:`plot` draws ``anytime.png``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import semantics
from .ir import LAYER

if TYPE_CHECKING:
    from .ir import Network


def column_costs(net: Network) -> list[dict]:
    """``[whole network, column 1, ..., column C]``: ``{"column", "layers", "params", "macs"}``
    (``column`` is None for the whole network; ``layers`` counts the layer units in blocks,
    the convs of Figure 1)."""
    rows = [_costs(net, None, [n.id for n in net.nodes()])]
    for k, (nodes, _edges) in enumerate(semantics.column_paths(net), start=1):
        rows.append(_costs(net, k, nodes))
    return rows


def _costs(net: Network, column: int | None, ids) -> dict:
    nodes = [net.node(i) for i in ids]
    return {
        "column": column,
        "layers": sum(1 for n in nodes if n.kind == LAYER),
        "params": sum(n.params for n in nodes),
        "macs": sum(n.macs for n in nodes),
    }


def label(column: int | None) -> str:
    return "whole network" if column is None else f"column {column}"


def format_table(rows: list[dict], batch: int | None = None) -> str:
    """The rows of ``eval`` / ``summary.json``'s ``anytime`` as an aligned text table
    (``batch``: the eval batch the second latency column was measured at)."""
    head = ("", "layers", "accuracy", "parameters", "MACs/image", "ms/image (batch 1)", f"ms/image (batch {batch})")
    head = head if batch else head[:6]
    ort = any(r.get("ort_latency_ms_batch1") is not None for r in rows)
    if ort:  # ONNX Runtime's latencies (fractal_dsl.train.ort), where they were measured
        head += ("ORT ms (batch 1)", f"ORT ms (batch {batch})") if batch else ("ORT ms (batch 1)",)
    lines = [head]
    for r in rows:
        line = (
            label(r["column"]),
            str(r["layers"]),
            f"{100 * r['accuracy']:.2f}%",
            f"{r['params']:,}",
            f"{r['macs']:,}",
            _ms(r.get("latency_ms_batch1")),
        )
        if batch:
            line += (_ms(r.get("latency_ms_per_image")),)
        if ort:
            line += (_ms(r.get("ort_latency_ms_batch1")),)
            line += (_ms(r.get("ort_latency_ms_per_image")),) if batch else ()
        lines.append(line)
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    return "\n".join(
        "  " + "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths)))
        for line in lines
    )


def _ms(v) -> str:
    return "-" if v is None else f"{v:.3f}"


def plot(series: list[tuple[str, list[dict]]], fh, title: str) -> None:
    """``anytime.png``: :func:`draw` on a figure of its own, written as a PNG to the binary file ``fh``."""
    import matplotlib

    matplotlib.use("Agg")  # files only; never open a window
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), constrained_layout=True)
    draw(ax, series, title)
    fig.savefig(fh, format="png", dpi=100)
    plt.close(fig)


def draw(ax, series: list[tuple[str, list[dict]]], title: str) -> None:
    """Accuracy against MACs per image (log scale) on the matplotlib axes ``ax``, for each
    ``(name, rows)`` in ``series``: one marker per column, joined from shallow to deep, and
    the whole network as a star, each labelled."""
    for i, (name, rows) in enumerate(series):
        color = f"C{i}"
        cols = sorted((r for r in rows if r["column"] is not None), key=lambda r: r["column"])
        whole = [r for r in rows if r["column"] is None]
        ax.plot(
            [r["macs"] for r in cols],
            [100 * r["accuracy"] for r in cols],
            marker="o",
            color=color,
            label=name if len(series) > 1 else "columns",
        )
        for r in whole:
            ax.plot(
                [r["macs"]],
                [100 * r["accuracy"]],
                marker="*",
                markersize=14,
                color=color,
                linestyle="none",
                label=None if len(series) > 1 else "whole network",
            )
        for r in rows:
            ax.annotate(
                "whole" if r["column"] is None else f"col {r['column']}",
                (r["macs"], 100 * r["accuracy"]),
                textcoords="offset points",
                xytext=(5, -12 if i % 2 else 6),
                fontsize=8,
                color=color,
            )
    ax.set_xscale("log")
    ax.margins(x=0.12, y=0.12)  # room for the labels at the ends
    ax.set(xlabel="MACs per image (log scale)", ylabel="test accuracy (%)", title=title)
    ax.grid(alpha=0.3, which="both")
    if series:
        ax.legend(loc="best", fontsize=8)

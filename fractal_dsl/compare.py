"""``fractal-dsl compare``: several training runs side by side (no torch; matplotlib for the figure).

A run is a ``train`` output folder: :func:`read_run` takes its ``summary.json`` (written at
the end of a run, with the anytime table) and ``metrics.jsonl`` (one line per epoch).
:func:`format_table` prints one row per run, :func:`figure` draws the runs' curves
overlaid and their anytime curves on one figure. Runs of networks with different numbers
of columns share the table: a column a network lacks is shown as ``-``.
"""

from __future__ import annotations

import io
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from .errors import RunError, braces


@dataclass
class Run:
    name: str  # how the run is labelled: its folder, as given
    summary: dict
    history: list[dict] = field(default_factory=list)

    @property
    def columns(self) -> int:
        return len(self.summary.get("column_acc", {}))

    @property
    def anytime(self) -> list[dict]:
        return list((self.summary.get("anytime") or {}).get("rows", []))

    @property
    def macs(self) -> int | None:
        return next((r["macs"] for r in self.anytime if r["column"] is None), None)

    @property
    def best_epoch(self) -> tuple[int, float] | None:
        """The epoch with the highest whole-network test accuracy (the first of equals), and that accuracy."""
        if not self.history:
            return None
        best = max(self.history, key=lambda h: (h["test_acc"], -h["epoch"]))
        return best["epoch"], best["test_acc"]


class CompareError(RunError):
    """A folder that is not a finished fractal-dsl run (exit 1)."""


def read_run(path: str | os.PathLike, name: str | None = None) -> Run:
    """The finished run in folder ``path`` (its summary.json, and metrics.jsonl when present)."""
    from .safeio import read_input

    folder = Path(path)
    shown = braces(name or os.fspath(path))
    summary_path = folder / "summary.json"
    if not folder.is_dir():
        what = "does not exist" if not folder.exists() else "is not a folder"
        raise CompareError(f"{shown} {what}: give the --out folder of a train run")
    if not summary_path.exists():
        raise CompareError(
            f"{shown}: no summary.json, so not a finished fractal-dsl train run (a run writes it after its last epoch)"
        )
    try:
        summary = json.loads(read_input(summary_path, 16 << 20))
        if not isinstance(summary, dict) or not isinstance(summary.get("column_acc"), dict):
            raise TypeError("not a fractal-dsl summary")
        history = []
        metrics = folder / "metrics.jsonl"
        if metrics.exists():
            history = [json.loads(line) for line in read_input(metrics, 64 << 20).decode().splitlines() if line.strip()]
            if not all(
                isinstance(h, dict) and {"epoch", "test_acc", "column_acc", "train_loss"} <= h.keys() for h in history
            ):
                raise TypeError("metrics.jsonl: not fractal-dsl metrics")
    except (OSError, ValueError, TypeError) as exc:
        raise CompareError(f"{shown}: cannot read the run ({braces(exc)})") from None
    return Run(name or os.fspath(path), summary, history)


def read_runs(paths) -> list[Run]:
    """The runs in ``paths``; a folder that is not a run but holds runs (what a several-file
    ``train`` or a ``sweep`` writes) stands for every run below it, in name order."""
    runs = []
    for p in paths:
        runs.extend(read_run(q) for q in runs_in(p) or [p])
    return runs


def runs_in(path: str | os.PathLike, depth: int = 2) -> list[str]:
    """The finished runs (folders with a summary.json) up to ``depth`` levels below ``path``,
    when ``path`` is not a run itself; sorted by name, numbers in names compared as numbers."""
    folder = Path(path)
    if not folder.is_dir() or (folder / "summary.json").exists():
        return []
    found = []
    for sub in sorted(folder.iterdir(), key=lambda q: _natural(q.name)):
        if sub.is_dir() and not sub.is_symlink():
            if (sub / "summary.json").is_file():
                found.append(os.path.join(os.fspath(path), sub.name))
            elif depth > 1:
                found.extend(runs_in(os.path.join(os.fspath(path), sub.name), depth - 1))
    return found


def _natural(name: str) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def format_table(runs: list[Run]) -> str:
    """One line per run: network, parameters, MACs, epochs, time, accuracies, best epoch."""
    width = max(r.columns for r in runs)
    head = [
        "run",
        "network",
        "parameters",
        "MACs/image",
        "epochs",
        "time (s)",
        "whole network",
        *(f"column {k}" for k in range(1, width + 1)),
        "best epoch (whole)",
    ]
    lines = [head]
    for r in runs:
        s = r.summary
        cols = [_pct(s["column_acc"].get(str(k))) for k in range(1, width + 1)]
        best = r.best_epoch
        lines.append(
            [
                r.name,
                str(s.get("network", "?")),
                _int(s.get("params")),
                _int(r.macs),
                _int(s.get("epochs")),
                _num(s.get("train_seconds")),
                _pct(s.get("test_acc")),
                *cols,
                "-" if best is None else f"{best[0]} ({100 * best[1]:.1f}%)",
            ]
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    return "\n".join(
        "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths))).rstrip()
        for line in lines
    )


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


def _int(v) -> str:
    return "-" if v is None else f"{v:,}"


def _num(v) -> str:
    return "-" if v is None else f"{v:.1f}"


def figure(runs: list[Run]) -> bytes:
    """A PNG: training loss and whole-network test accuracy per epoch for every run
    overlaid (each run's deepest column dashed), and the runs' anytime curves."""
    import matplotlib

    matplotlib.use("Agg")  # files only; never open a window
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    from .anytime import draw

    fig, (loss, acc, anytime) = plt.subplots(1, 3, figsize=(16, 4.8), constrained_layout=True)
    for i, r in enumerate(runs):
        color = f"C{i}"
        epochs = [h["epoch"] for h in r.history]
        loss.plot(epochs, [h["train_loss"] for h in r.history], marker=".", color=color, label=r.name)
        acc.plot(epochs, [100 * h["test_acc"] for h in r.history], marker=".", color=color, label=f"{r.name}: whole")
        if r.history and r.history[0]["column_acc"]:
            deepest = len(r.history[0]["column_acc"])
            acc.plot(
                epochs,
                [100 * h["column_acc"][-1] for h in r.history],
                color=color,
                linestyle="--",
                label=f"{r.name}: column {deepest}",
            )
    loss.set(xlabel="epoch", ylabel="training loss", yscale="log", title="training loss")
    acc.set(xlabel="epoch", ylabel="test accuracy (%)", title="test accuracy (dashed: deepest column)")
    for ax in (loss, acc):
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(loc="best", fontsize=8)
    with_table = [(r.name, r.anytime) for r in runs if r.anytime]
    draw(anytime, with_table, "anytime: accuracy against compute")
    if len(with_table) < len(runs):
        anytime.text(0.02, 0.02, "runs without an anytime table are left out", transform=anytime.transAxes, fontsize=8)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return buf.getvalue()


def write_figure(runs: list[Run], path: str | os.PathLike, force: bool = False) -> None:
    """:func:`figure` to ``path`` through :func:`safeio.write_output` (marked as the tool's PNG)."""
    from .safeio import mark_png, write_output

    write_output(path, mark_png(figure(runs)), force=force)

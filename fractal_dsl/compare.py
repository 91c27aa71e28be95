"""``fractal-dsl compare``: several training runs side by side (no torch; matplotlib for the figure).

A run is a ``train`` output folder: :func:`read_run` takes its ``summary.json`` (written at
the end of a run, with the anytime table) and ``metrics.jsonl`` (one line per epoch).
:func:`format_table` prints one row per run, :func:`figure` draws the runs' curves
overlaid and their anytime curves on one figure. Runs of networks with different numbers
of columns share the table: a column a network lacks is shown as ``-``.

A run folder is read as hostile input: each file must be a regular file within its size
limit, and every field compare uses is checked for its type and range (:func:`check_summary`,
:func:`check_record`), so a damaged or forged file is one line naming it, never a traceback.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from .errors import RunError, cut
from .rules import MAX_COLUMNS  # as the language allows


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


SUMMARY_BYTES = 16 << 20
METRICS_BYTES = 64 << 20
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,199}")


_ACCURACY = "an accuracy between 0 and 1"


class BadRun(ValueError):
    """A field of a run file that is missing or of the wrong type or range; the message says which."""


def _json_kind(value) -> str:
    if value is None:
        return "null"
    for kind, name in ((bool, "true/false"), ((int, float), "a number"), (str, "a string"), (list, "a list")):
        if isinstance(value, kind):
            return name
    return "an object" if isinstance(value, dict) else type(value).__name__


def _need(ok: bool, where: str, what: str, value) -> None:
    if not ok:
        shown = repr(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else _json_kind(value)
        raise BadRun(f"`{where}` must be {what}, not {shown}")


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _is_count(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _is_accuracy(v) -> bool:
    return _is_number(v) and 0 <= v <= 1


def check_summary(s) -> None:
    """Raise :class:`BadRun` unless ``s`` holds, with the right types, what compare reads of a summary.json."""
    _need(isinstance(s, dict), "summary", "an object", s)
    cols = s.get("column_acc")
    _need(
        isinstance(cols, dict) and 1 <= len(cols) <= MAX_COLUMNS,
        "column_acc",
        f"an object of 1 to {MAX_COLUMNS} columns",
        cols,
    )
    _need(set(cols) == {str(k) for k in range(1, len(cols) + 1)}, "column_acc", 'keyed "1", "2", ...', cols)
    for k, v in cols.items():
        _need(_is_accuracy(v), f"column_acc.{k}", _ACCURACY, v)
    _need(
        s.get("network") is None or bool(isinstance(s["network"], str) and _NAME.fullmatch(s["network"])),
        "network",
        "a network name",
        s.get("network"),
    )
    for key, ok, what in (
        ("test_acc", _is_accuracy, _ACCURACY),
        ("params", _is_count, "a whole number"),
        ("epochs", _is_count, "a whole number"),
        ("train_seconds", lambda v: _is_number(v) and v >= 0, "a number of seconds"),
    ):
        _need(s.get(key) is None or ok(s[key]), key, what, s.get(key))
    anytime = s.get("anytime")
    if anytime is None:
        return
    _need(isinstance(anytime, dict), "anytime", "an object", anytime)
    rows = anytime.get("rows", [])
    _need(
        isinstance(rows, list) and len(rows) <= MAX_COLUMNS + 1,
        "anytime.rows",
        f"a list of at most {MAX_COLUMNS + 1} rows",
        rows,
    )
    for i, row in enumerate(rows):
        where = f"anytime.rows[{i}]"
        _need(isinstance(row, dict), where, "an object", row)
        column = row.get("column")
        _need(
            column is None or (_is_count(column) and 1 <= column <= MAX_COLUMNS),
            f"{where}.column",
            "null or a column number",
            column,
        )
        _need(_is_count(row.get("macs")), f"{where}.macs", "a whole number", row.get("macs"))
        _need(_is_accuracy(row.get("accuracy")), f"{where}.accuracy", _ACCURACY, row.get("accuracy"))


def check_record(h, columns: int) -> None:
    """Raise :class:`BadRun` unless ``h`` is one epoch of metrics.jsonl for a network of ``columns`` columns."""
    _need(isinstance(h, dict), "record", "an object", h)
    _need(_is_count(h.get("epoch")) and h["epoch"] >= 1, "epoch", "a whole number from 1", h.get("epoch"))
    _need(_is_accuracy(h.get("test_acc")), "test_acc", _ACCURACY, h.get("test_acc"))
    loss = h.get("train_loss")
    _need(_is_number(loss) and loss >= 0, "train_loss", "a number at least 0", loss)
    cols = h.get("column_acc")
    _need(
        isinstance(cols, list) and len(cols) == columns,
        "column_acc",
        f"a list of {columns} accuracies (as summary.json has)",
        cols,
    )
    for k, v in enumerate(cols, start=1):
        _need(_is_accuracy(v), f"column_acc[{k - 1}]", _ACCURACY, v)


def _load_json(text: bytes | str):
    """``json.loads``, with nesting too deep for the parser a :class:`BadRun` rather than a RecursionError."""
    try:
        return json.loads(text)
    except RecursionError:
        raise BadRun("JSON nested too deeply") from None


def read_run(path: str | os.PathLike, name: str | None = None) -> Run:
    """The finished run in folder ``path`` (its summary.json, and metrics.jsonl when present)."""
    folder = Path(path)
    # CompareError names no options: braces are shown as they are; a newline or a terminal
    # escape in a folder's name is shown escaped (in the table, the figure and the errors)
    shown = cut(name or os.fspath(path), os.pathconf("/", "PC_PATH_MAX"))
    summary_path = folder / "summary.json"
    if not folder.is_dir():
        what = "does not exist" if not folder.exists() else "is not a folder"
        raise CompareError(f"{shown} {what}: give the --out folder of a train run")
    try:
        os.lstat(summary_path)
    except FileNotFoundError:
        raise CompareError(
            f"{shown}: no summary.json, so not a finished fractal-dsl train run (a run writes it after its last epoch)"
        ) from None
    except OSError as exc:
        where = os.path.join(shown, "summary.json")
        raise CompareError(f"{where}: cannot read the run: {exc.strerror or exc}") from None
    summary = _read_json(summary_path, SUMMARY_BYTES, shown, check_summary)
    history: list[dict] = []
    metrics = folder / "metrics.jsonl"
    if os.path.lexists(metrics):
        columns = len(summary["column_acc"])
        data = _read_bytes(metrics, METRICS_BYTES, shown)
        try:
            lines = data.decode("utf-8").splitlines()
        except UnicodeDecodeError as exc:
            where = os.path.join(shown, "metrics.jsonl")
            raise CompareError(f"{where}: cannot read the run: not UTF-8 text ({exc.reason})") from None
        for n, line in enumerate(lines, start=1):
            if line.strip():
                where = f"{os.path.join(shown, 'metrics.jsonl')}:{n}"
                history.append(_parse(line, where, lambda h: check_record(h, columns)))
    return Run(shown, summary, history)


def _read_bytes(path: Path, limit: int, shown: str) -> bytes:
    from .safeio import read_input

    where = os.path.join(shown, path.name)
    try:
        data = read_input(path, limit)  # a regular file only, at most limit + 1 bytes
    except OSError as exc:
        raise CompareError(f"{where}: cannot read the run: {exc.strerror or exc}") from None
    if len(data) > limit:
        raise CompareError(f"{where}: cannot read the run: larger than {limit >> 20} MiB")
    return data


def _read_json(path: Path, limit: int, shown: str, check) -> dict:
    return _parse(_read_bytes(path, limit, shown), os.path.join(shown, path.name), check)


def _parse(text: bytes | str, where: str, check):
    try:
        value = _load_json(text)
        check(value)
    except ValueError as exc:  # json's errors, UnicodeDecodeError, BadRun
        raise CompareError(f"{where}: cannot read the run: {exc}") from None
    return value


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

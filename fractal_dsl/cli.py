"""The ``fractal-dsl`` command: each command a few lines over the library API.

Exit codes: 0 success, 1 an invalid program (diagnostics on stderr), 2 bad command-line use.
``check``, ``inspect``, ``compile``, ``render``, ``fmt`` and ``lsp`` never import torch.
"""

from __future__ import annotations

import json
import os
import sys

import click

from ._version import __version__
from .errors import Error, FractalError
from .syntax import INIT_SCHEMES


def _load(path: str, settings: tuple[str, ...] = ()):
    from .overrides import parse_settings
    from .pipeline import load

    return load(path, set=parse_settings(settings))


def _fail(exc: Error) -> None:
    click.echo(exc.show(), err=True)


# the characters no message prints raw: C0 controls but tab, line feed and carriage return
# (a progress bar's), DEL, C1 controls, and the bidirectional overrides that reorder text
_NOT_RAW = {c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7F, 0xA0)) if c not in (0x09, 0x0A, 0x0D)}
_NOT_RAW |= {c: f"\\u{c:04x}" for c in (0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A))}
# commands whose standard output is data (a program, a module, the protocol), written as it is
_DATA_ON_STDOUT = ("fmt", "compile", "lsp")


class _Escaping:
    """A text stream that passes what it is given to ``raw`` with the characters of
    :data:`_NOT_RAW` written as escapes (``\\x1b``): a file, folder, network or study name that
    carries a terminal escape sequence is shown, never run by the terminal."""

    def __init__(self, raw) -> None:
        self._raw = raw

    def write(self, text: str) -> int:
        self._raw.write(text.translate(_NOT_RAW))
        return len(text)

    def __getattr__(self, name: str):
        return getattr(self._raw, name)


class _Main(click.Group):
    """The command group; the one place that turns a fractal-dsl :class:`Error` into its
    message on standard error and its exit code, and standard output that cannot be written
    (a full disk, a closed pipe) into a one-line error and exit 1, never a traceback."""

    def main(self, *args, **kwargs):
        if kwargs.get("standalone_mode", True) is False:
            return super().main(*args, **kwargs)
        words = kwargs.get("args", args[0] if args else None)
        words = sys.argv[1:] if words is None else list(words)
        command = next((w for w in words if w in self.commands), None)
        streams = sys.stdout, sys.stderr
        sys.stderr = _Escaping(sys.stderr)
        if command not in _DATA_ON_STDOUT:
            sys.stdout = _Escaping(sys.stdout)
        try:
            self._main(*args, **kwargs)
        finally:
            sys.stdout, sys.stderr = streams

    def _main(self, *args, **kwargs):
        try:
            super().main(*args, **kwargs)
            code = 0
        except SystemExit as done:
            code = done.code
        except OSError as exc:
            if not _from_stdout(exc):
                _os_error(exc)
            _stdout_failed(exc)
        try:
            if not sys.stdout.closed:
                sys.stdout.flush()
        except OSError as exc:
            _stdout_failed(exc)
        sys.exit(code)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except Error as exc:
            _fail(exc)
            ctx.exit(exc.exit_code)
        except (MemoryError, RuntimeError) as exc:
            if not _out_of_memory(exc):
                raise
            first = str(exc).strip().split("\n", 1)[0][:300]
            click.echo(
                f"error: out of memory ({first or type(exc).__name__}); try a smaller --batch-size or input, "
                "or a --max-memory this machine can hold so that a run too large is refused before it starts",
                err=True,
            )
            ctx.exit(1)


def _out_of_memory(exc: BaseException) -> bool:
    """An allocation that failed: Python's MemoryError, torch's CPU allocator (a RuntimeError) or
    torch.OutOfMemoryError (CUDA), told apart without importing torch."""
    return (
        isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError" or "can't allocate memory" in str(exc)
    )


FILE = click.Path(exists=True, dir_okay=False, readable=True)


def _set_spelling(ctx, param, items):
    """Each ``--set`` checked as it is read: ``--set columns 4`` (a space for the '=') is
    said as such before the ``4`` is taken for a file, which click would report as missing."""
    from .overrides import parse_settings

    parse_settings(items)
    return items


_set_option = click.option(
    "--set",
    "settings",
    multiple=True,
    is_eager=True,
    callback=_set_spelling,
    metavar="NAME=VALUE",
    help="Change a value of the program before it is checked: columns=4, c=32, block2.c=64, droppath.local=0.2, "
    "conv.p=0.1, ... (repeatable; the names are in docs/LANGUAGE.md).",
)
_force_option = click.option(
    "--force", is_flag=True, help="Overwrite an existing output file that fractal-dsl did not write."
)
FILE_OR_STDIN = click.Path(exists=True, dir_okay=False, readable=True, allow_dash=True)
STDIN_NAME = "<stdin>"


def _read_stdin():
    """Standard input as a Source named ``<stdin>`` (for ``check -`` and ``fmt -``); at most
    one byte past the size limit is read, so a endless stream is refused, not swallowed."""
    from .syntax import MAX_FILE_BYTES, decode_source

    return decode_source(sys.stdin.buffer.read(MAX_FILE_BYTES + 1), STDIN_NAME)


def _from_stdout(exc: OSError) -> bool:
    """Whether ``exc`` was raised while writing standard output: in :func:`click.echo` (every
    line the commands print goes through it) or in flushing ``sys.stdout``."""
    tb = exc.__traceback__
    codes = {click.utils.echo.__code__}
    while tb is not None:
        if tb.tb_frame.f_code in codes:
            return exc.filename is None
        tb = tb.tb_next
    return False


def _os_error(exc: OSError) -> None:
    """An OSError no command turned into a message: one line naming the file(s) and the reason, exit 1."""
    files = " -> ".join(os.fspath(f) for f in (exc.filename, exc.filename2) if f is not None)
    reason = exc.strerror or str(exc) or type(exc).__name__
    click.echo(f"error: {files}: {reason}" if files else f"error: {reason} ({type(exc).__name__})", err=True)
    sys.exit(1)


def _stdout_failed(exc: OSError) -> None:
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())  # so the interpreter's last flush cannot fail again
    click.echo(f"error: cannot write to standard output: {exc.strerror or exc}", err=True)
    sys.exit(1)


@click.group(cls=_Main, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="fractal-dsl")
def main() -> None:
    """fractal-dsl: write a fractal expansion rule, get a validated network."""


@main.command()
@click.argument("files", nargs=-1, required=True, type=FILE_OR_STDIN)
@_set_option
def check(files: tuple[str, ...], settings: tuple[str, ...]) -> None:
    """Validate FILES (`-` reads standard input); print one line per valid file."""
    from .overrides import parse_settings
    from .pipeline import load_source
    from .summary import one_line

    failed = False
    for path in files:
        try:
            net = load_source(_read_stdin(), parse_settings(settings)) if path == "-" else _load(path, settings)
        except FractalError as exc:
            _fail(exc)
            failed = True
            continue
        click.echo(f"{STDIN_NAME if path == '-' else path}: ok: {one_line(net)}")
    sys.exit(1 if failed else 0)


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, allow_dash=True))
@click.option("--check", "check_only", is_flag=True, help="Write nothing; exit 1 and name the files that would change.")
@click.option("--diff", "show_diff", is_flag=True, help="Write nothing; print a unified diff of the changes.")
def fmt(paths: tuple[str, ...], check_only: bool, show_diff: bool) -> None:
    """Lay out .fdsl files in the canonical style, comments kept.

    PATHS are files, folders (every *.fdsl file below them) or `-` (standard input to
    standard output). A file that does not parse is left untouched and its errors printed;
    so is a file that is read-only, has several hard links, or changes while fmt runs.
    """
    from pathlib import Path

    from .fmt import format_source, unified_diff, write_atomic
    from .safeio import OutputError, read_snapshot
    from .syntax import MAX_FILE_BYTES, decode_source

    files: list[str] = []
    unlisted = 0  # folders that could not be read
    for path in paths:
        if path != "-" and Path(path).is_dir():
            found, unreadable = _fdsl_files(path)
            for folder, exc in unreadable:  # never skipped in silence: `fmt --check` must not pass
                click.echo(f"error: cannot read folder {folder}: {exc.strerror or exc}", err=True)
            unlisted += len(unreadable)
            if not found and not unreadable:
                click.echo(f"{path}: no .fdsl files", err=True)
            files.extend(found)
        else:
            files.append(path)
    changed = unchanged = failed = 0
    for path in files:
        try:
            if path == "-":
                data, read = sys.stdin.buffer.read(MAX_FILE_BYTES + 1), None
                name = STDIN_NAME
            else:
                read = read_snapshot(path, MAX_FILE_BYTES)  # as check reads: no FIFO, no device, 64 KiB
                data, name = read.data, path
            source = decode_source(data, name)
            new = format_source(source)
        except FractalError as exc:
            _fail(exc)
            failed += 1
            continue
        except OSError as exc:
            click.echo(f"error: cannot read {path}: {exc.strerror or exc}", err=True)
            failed += 1
            continue
        same = new.encode("utf-8") == data
        if path == "-" and not (check_only or show_diff):
            click.echo(new, nl=False)
            continue
        if same:
            unchanged += 1
            continue
        changed += 1
        if show_diff:
            click.echo(unified_diff(source.text, new, name), nl=False)
        if check_only or show_diff:
            if check_only:
                click.echo(f"would reformat {name}", err=True)
            continue
        try:
            write_atomic(path, new, read)
        except OutputError as exc:
            _fail(exc)
            failed += 1
            changed -= 1
            continue
        click.echo(f"reformatted {name}", err=True)
    if files != ["-"] or check_only or show_diff:
        done = "would be reformatted" if check_only or show_diff else "reformatted"
        kept = "already formatted" if check_only or show_diff else "left unchanged"
        parts = [f"{_count(changed, 'file')} {done}", f"{_count(unchanged, 'file')} {kept}"]
        if failed:
            parts.append(f"{_count(failed, 'file')} not formatted (errors above)")
        if unlisted:
            parts.append(f"{_count(unlisted, 'folder')} not read (errors above)")
        click.echo(", ".join(parts), err=True)
    sys.exit(1 if failed or unlisted or (check_only and changed) else 0)


def _fdsl_files(folder: str) -> tuple[list[str], list[tuple[str, OSError]]]:
    """Every ``*.fdsl`` name below ``folder`` that is not a folder (symbolic links to folders
    are not followed; a FIFO or a broken link is listed, and refused when read), and each
    folder that could not be listed, with why."""
    found: list[str] = []
    unreadable: list[tuple[str, OSError]] = []
    for top, _, names in os.walk(folder, onerror=lambda exc: unreadable.append((exc.filename, exc))):
        found.extend(os.path.join(top, n) for n in names if n.endswith(".fdsl"))
    return sorted(found), unreadable


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


@main.command()
def lsp() -> None:
    """Run the language server on standard input and output, for editors (needs fractal-dsl[lsp])."""
    try:
        from .lsp import serve
    except ImportError as exc:
        click.echo(
            f"error: the language server needs pygls and lsprotocol: pip install 'fractal-dsl[lsp]' ({exc})", err=True
        )
        sys.exit(1)
    serve()


@main.command()
@click.argument("file", type=FILE)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (structure, totals, graph).")
@_set_option
def inspect(file: str, as_json: bool, settings: tuple[str, ...]) -> None:
    """Summarise FILE: blocks, joins, depth, parameters, MACs."""
    from .summary import describe, format_text

    net = _load(file, settings)
    if as_json:
        click.echo(json.dumps(describe(net), indent=2))
    else:
        click.echo(format_text(net))


@main.command()
@click.argument("file", type=FILE)
@click.option(
    "-o",
    "--output",
    "out",
    required=True,
    type=click.Path(dir_okay=False, writable=True),
    help="Where to write the diagram.",
)
@click.option(
    "--format",
    "fmt",
    default=None,
    help="svg, png, pdf, dot or html (the interactive view; default: from the output's suffix).",
)
@click.option("--block", type=int, default=None, help="Draw only block N (1-based).")
@click.option(
    "--collapse/--expand", default=None, help="One box per block, or every layer (default: collapse large networks)."
)
@click.option(
    "--column", type=int, default=None, help="Highlight column K's path, the subnetwork global drop-path keeps."
)
@click.option(
    "--sample",
    type=int,
    default=None,
    metavar="SEED",
    help="Draw one drop-path sample (train mode) with dropped paths faded; imports torch.",
)
@_force_option
@_set_option
def render(
    file: str,
    out: str,
    fmt: str | None,
    block: int | None,
    collapse: bool | None,
    column: int | None,
    sample: int | None,
    force: bool,
    settings: tuple[str, ...],
) -> None:
    """Draw FILE as a diagram like Figure 1 of the FractalNet paper."""
    from . import render as draw

    net = _load(file, settings)
    fmt = draw.output_format(out, fmt.lower() if fmt else None)
    view = draw.make_view(net, block=block, collapse=collapse, column=column, sample=sample)
    if fmt == "html":  # the interactive page holds the same drawing, tagged
        from . import webview

        webview.write(net, out, view, force=force, inputs=(file,))
    else:
        draw.write(net, out, fmt, view, force=force, inputs=(file,))
    click.echo(f"wrote {out}")


@main.command(name="compile")
@click.argument("file", type=FILE)
@click.option(
    "-o",
    "--output",
    "out",
    default=None,
    type=click.Path(dir_okay=False),
    help="Where to write the .py file (default: stdout).",
)
@click.option(
    "--column",
    type=click.IntRange(min=1),
    default=None,
    metavar="K",
    help="Only column K: its layers under the whole network's names, always run as column K.",
)
@_force_option
@_set_option
def compile_(file: str, out: str | None, column: int | None, force: bool, settings: tuple[str, ...]) -> None:
    """Compile FILE to a standalone PyTorch module (one .py file)."""
    from .codegen import generate
    from .safeio import write_output

    source = generate(_load(file, settings), column)
    if out is None:
        click.echo(source, nl=False)
        return
    write_output(out, source, force=force, inputs=(file,))
    click.echo(f"wrote {out}", err=True)


_threads_option = click.option(
    "--threads",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help="CPU threads for torch (default: one per core; on a shared machine 1 is often faster, see README).",
)

_ort_latency_option = click.option(
    "--ort-latency/--no-ort-latency",
    default=True,
    show_default=True,
    help="Also time each path in ONNX Runtime (when onnxruntime and fractal-dsl[onnx] are installed).",
)

_allow_other_option = click.option(
    "--allow-other-network",
    is_flag=True,
    help="Load a checkpoint written for another network (its tensors must still fit), on purpose.",
)

# 1000 is TrainConfig.recalibrate_bn (train.config cannot be imported here without torch, as
# the train package imports its loop)
_recalibrate_bn_option = click.option(
    "--recalibrate-bn",
    default=1000,
    show_default=True,
    type=click.IntRange(min=0),
    metavar="N",
    help="At every evaluation, estimate the BatchNorm statistics of every path (the network, each "
    "column) on N training images; the checkpoint keeps them (0: every path keeps those training "
    "accumulated).",
)
_eval_recalibrate_bn_option = click.option(
    "--recalibrate-bn",
    default=0,
    show_default=True,
    type=click.IntRange(min=0),
    metavar="N",
    help="Re-estimate each evaluated path's BatchNorm statistics on N training images of the data "
    "(for new data; 0: the statistics the checkpoint keeps per path).",
)


_max_memory_option = click.option(
    "--max-memory",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    metavar="GB",
    help="Refuse a run whose data, weights and activations would exceed GB gigabytes "
    "(default: 80% of this machine's memory).",
)


@main.command()
@click.argument("files", nargs=-1, required=True, type=FILE)
@click.option(
    "--out",
    "out",
    default="runs/latest",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Folder for model.py, checkpoint.pt, metrics.jsonl, summary.json, curves.png, anytime.png; "
    "with several files, the folder of one such folder per file and compare.png.",
)
@click.option(
    "--data",
    default="digits",
    show_default=True,
    help="digits (built in, offline), cifar10, cifar100, svhn (need torchvision) or an image folder.",
)
@click.option("--cache-dir", default=None, type=click.Path(file_okay=False), help="Where datasets download to.")
@click.option("--augment", is_flag=True, help="The paper's '+' augmentation: mirror and up to 4 px translation.")
@click.option("--epochs", default=20, show_default=True, type=click.IntRange(min=1))
@click.option(
    "--batch-size",
    default=100,
    show_default=True,
    type=click.IntRange(min=1),
    help="Global batch, split over torchrun processes.",
)
@click.option(
    "--lr",
    default=None,
    type=click.FloatRange(min=0, min_open=True),
    help="Learning rate (default: 0.02 for sgd, as in the paper; 0.001 for adamw).",
)
@click.option(
    "--optimizer",
    default="sgd",
    show_default=True,
    type=click.Choice(["sgd", "adamw"]),
    help="sgd: the paper's SGD with momentum 0.9; adamw: AdamW.",
)
@click.option(
    "--schedule",
    default="paper",
    show_default=True,
    type=click.Choice(["paper", "cosine"]),
    help="paper: the rate drops tenfold each time the remaining epochs halve; cosine: a cosine to zero.",
)
@click.option("--weight-decay", default=0.0, show_default=True, type=click.FloatRange(min=0))
@click.option("--seed", default=0, show_default=True, type=click.IntRange(0, 2**32 - 1))
@click.option("--device", default="auto", show_default=True, type=click.Choice(["auto", "cpu", "cuda", "mps"]))
@click.option(
    "--amp",
    is_flag=True,
    help="Mixed precision: float16 autocast on CUDA, bfloat16 on a CPU that supports it (see README).",
)
@_threads_option
@_ort_latency_option
@click.option("--drop-path/--no-drop-path", "drop_path", default=None, help="Override the file's drop-path switch.")
@click.option("--drop-path-local", type=click.FloatRange(0, 1), default=None, help="Override the local drop rate.")
@click.option(
    "--drop-path-global",
    type=click.FloatRange(0, 1),
    default=None,
    help="Override the share of globally sampled batches.",
)
@click.option("--drop-path-per", type=click.Choice(["batch", "sample"]), default=None)
@click.option("--no-regularization", is_flag=True, help="Turn drop-path and dropout off.")
@click.option(
    "--init",
    type=click.Choice(INIT_SCHEMES),
    default=None,
    help="Override the file's weight initialisation (default xavier, as in the paper).",
)
@_recalibrate_bn_option
@click.option(
    "--subset",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help="Train and test on the first N images of each split: a quick check that the network trains.",
)
@_max_memory_option
@click.option(
    "--resume",
    is_flag=True,
    help="Continue the run in --out from its last finished epoch; with a larger --epochs, extend a finished run.",
)
@click.option(
    "--quiet", "-q", is_flag=True, help="No progress bars: one line per epoch (also when stderr is not a terminal)."
)
@click.option(
    "--tensorboard",
    is_flag=True,
    help="Also write the metrics as a TensorBoard event file in --out (needs fractal-dsl[tensorboard]).",
)
@click.option("--force", is_flag=True, help="Write into an --out folder that holds files fractal-dsl did not write.")
@_allow_other_option
@_set_option
def train(files: tuple[str, ...], out: str, no_regularization: bool, settings: tuple[str, ...], **options) -> None:
    """Compile FILES and train them; under torchrun, data-parallel over all processes.

    With several files, each is trained in turn into OUT/NAME (NAME: the file's name without
    .fdsl) and the runs are compared at the end (the table, and OUT/compare.png)."""
    from pathlib import Path

    from .overrides import parse_settings

    options["overrides"] = parse_settings(settings)
    nets = [_load(f, settings) for f in files]  # every file is checked before any training starts
    outs = [out] if len(files) == 1 else [str(Path(out) / Path(f).stem) for f in files]
    if len(set(outs)) < len(outs):
        same = next(o for o in outs if outs.count(o) > 1)
        raise click.UsageError(f"two of the files would train into {same}: give the files different names")
    if no_regularization:
        given = [
            k for k in ("drop_path", "drop_path_local", "drop_path_global", "drop_path_per") if options[k] is not None
        ]
        if given:
            raise click.UsageError(f"--no-regularization turns drop-path off; drop --{given[0].replace('_', '-')}")
        options.update(drop_path=False, dropout=False)
    from .train import TrainConfig
    from .train import train as run

    for net, folder in zip(nets, outs):
        if len(files) > 1:
            click.echo(f"== {net.source_name} -> {folder}")
        run(net, TrainConfig(**options), folder, log=click.echo)
    if len(files) > 1 and int(os.environ.get("RANK", "0")) == 0:
        _compare(outs, str(Path(out) / "compare.png"), force=False)


@main.command()
@click.argument("file", type=FILE)
@click.option(
    "--space",
    "space",
    multiple=True,
    required=True,
    metavar="NAME=LOW..HIGH|NAME=A,B,C",
    help="A --set name and its values: a range (whole numbers: ints; else floats) or a choice. Repeatable.",
)
@click.option("--trials", default=10, show_default=True, type=click.IntRange(min=0), help="Trials to run (more).")
@click.option(
    "--out",
    "sweep_out",
    default="runs/sweep",
    show_default=True,
    type=click.Path(file_okay=False),
    help="The sweep folder: study.db, trials/NNNN (one run folder each), trials.csv, pareto.png, best.fdsl, front/.",
)
@click.option(
    "--objective",
    default="whole",
    show_default=True,
    help="Test accuracy of the whole network, or of column K alone (column:K).",
)
@click.option("--no-macs", is_flag=True, help="Score by accuracy alone (one objective) instead of accuracy and MACs.")
@click.option(
    "--prune", is_flag=True, help="Stop unpromising trials early on their per-epoch accuracy (with --no-macs)."
)
@click.option(
    "--storage",
    default=None,
    metavar="URL|FILE",
    help="Where the study lives (default: OUT/study.db): a database URL such as postgresql://user@host/db, "
    "or a journal file path shared by processes on one machine.",
)
@click.option("--study", "study_name", default=None, help="The study's name in the storage (default: FILE's name).")
@click.option(
    "--heartbeat",
    default=60,
    show_default=True,
    type=click.IntRange(min=1),
    metavar="SECONDS",
    help="With a database, a trial whose worker is silent for twice this is failed.",
)
def sweep(
    file: str,
    space: tuple[str, ...],
    trials: int,
    sweep_out: str,
    objective: str,
    no_macs: bool,
    prune: bool,
    storage: str | None,
    study_name: str | None,
    heartbeat: int,
    settings: tuple[str, ...],
    no_regularization: bool,
    **options,
) -> None:
    """Train variants of FILE chosen by Optuna and find the best for their cost.

    Every train option applies to every trial. Each trial is a run folder OUT/trials/NNNN,
    scored by test accuracy and MACs per image; the Pareto front is printed and written
    (trials.csv, pareto.png, best.fdsl, front/). Calling sweep again adds --trials more."""
    from pathlib import Path

    from .overrides import parse_settings
    from .sweep import Sweep, parse_objective, parse_space, require_optuna

    dims = parse_space(space)
    column = parse_objective(objective)
    if prune and not no_macs:
        raise click.UsageError("--prune needs one objective: add --no-macs (Optuna prunes single-objective studies)")
    require_optuna()
    if no_regularization:
        options.update(drop_path=False, dropout=False)
    if storage is not None and "://" not in storage:
        storage = os.path.abspath(storage)
    job = Sweep(
        file=Path(file).resolve(),
        space=dims,
        out=Path(sweep_out),
        options=options,
        fixed=parse_settings(settings),
        column=column,
        macs=not no_macs,
        prune=prune,
        storage=storage,
        study_name=study_name,
        heartbeat=heartbeat,
        seed=options["seed"],
        log=click.echo,
    )
    job.run(trials)


@main.command()
@click.argument("runs", nargs=-1, required=True, type=click.Path())
@click.option(
    "-o",
    "--output",
    "out",
    default=None,
    type=click.Path(dir_okay=False),
    help="Also draw the runs' curves and anytime curves into this PNG.",
)
@_force_option
def compare(runs: tuple[str, ...], out: str | None, force: bool) -> None:
    """Compare finished training runs (their --out folders): one table, and with -o one figure."""
    _compare(list(runs), out, force)


def _compare(runs: list[str], out: str | None, force: bool) -> None:
    from .compare import format_table, read_runs, write_figure

    found = read_runs(runs)
    click.echo(format_table(found))
    if out is not None:
        try:
            write_figure(found, out, force=force)
        except ImportError:
            click.echo("error: the figure needs matplotlib: pip install 'fractal-dsl[train]'", err=True)
            sys.exit(1)
        click.echo(f"wrote {out}", err=True)


# every train option applies to every trial of a sweep
sweep.params.extend(p for p in train.params if p.name not in ("files", "out", "resume", "force", "allow_other_network"))


@main.command("eval")
@click.argument("file", type=FILE)
@click.option(
    "--checkpoint", "ckpt", required=True, type=click.Path(dir_okay=False), help="A checkpoint.pt from train."
)
@click.option(
    "--column", type=click.IntRange(min=1), default=None, help="Only column K (default: whole network and each column)."
)
@click.option(
    "--data",
    default=None,
    help="Test data (default: the built-in or torchvision set the checkpoint was trained on; a folder must be given).",
)
@click.option(
    "--cache-dir",
    default=None,
    type=click.Path(file_okay=False),
    help="Where torchvision sets download to (default: ~/.cache/fractal-dsl, never the checkpoint's).",
)
@click.option("--device", default="auto", show_default=True, type=click.Choice(["auto", "cpu", "cuda", "mps"]))
@_threads_option
@click.option("--amp", is_flag=True, help="Accuracy and latency under autocast, as train --amp.")
@_ort_latency_option
@_eval_recalibrate_bn_option
@_allow_other_option
@click.option(
    "--repeats",
    default=10,
    show_default=True,
    type=click.IntRange(1, 10_000),
    metavar="N",
    help="Latency is the median of N timed forward passes (batch 1 and the eval batch).",
)
@_max_memory_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (schema in docs/results.md).")
@_set_option
def evaluate(
    file: str,
    ckpt: str,
    column: int | None,
    data: str | None,
    cache_dir: str | None,
    device: str,
    threads: int | None,
    amp: bool,
    ort_latency: bool,
    recalibrate_bn: int,
    allow_other_network: bool,
    repeats: int,
    max_memory: float | None,
    as_json: bool,
    settings: tuple[str, ...],
) -> None:
    """The anytime table of FILE's network with a checkpoint's weights: accuracy, parameters,
    MACs and latency per image of the whole network and of each column."""
    net = _load(file, settings)
    from .anytime import format_table
    from .train import evaluate_checkpoint

    result = evaluate_checkpoint(
        net,
        ckpt,
        column,
        data,
        cache_dir,
        device,
        recalibrate_bn,
        allow_other_network,
        warn=lambda line: click.echo(line, err=True),
        repeats=repeats,
        threads=threads,
        amp=amp,
        ort_latency=ort_latency,
        max_memory=max_memory,
    )
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    bn = (
        f", BatchNorm re-estimated per path on {result['recalibrate_bn']} training images"
        if result["recalibrate_bn"]
        else ", each path on the BatchNorm statistics the checkpoint keeps"
    )
    click.echo(
        f"{result['network']} after epoch {result['epoch']}: {result['data']} test set "
        f"({result['test_samples']} samples) on {result['device']}, {result['precision']}{bn}"
    )
    click.echo(format_table(result["rows"], result["eval_batch"]))
    click.echo(
        f"  MACs: multiply-accumulates of the convolutions and linear layers per image, from the graph; "
        f"latency: median of {result['latency_repeats']} runs, {result['threads']} CPU thread"
        f"{'s' if result['threads'] != 1 else ''}"
        + (
            f"; ORT: each path's ONNX export in onnxruntime {result['onnxruntime']} (CPU, the same threads, float32)"
            if result["onnxruntime"]
            else ""
        )
    )


@main.command()
@click.argument("file", type=FILE)
@click.option(
    "--checkpoint",
    "ckpt",
    default=None,
    type=click.Path(dir_okay=False),
    help="A checkpoint.pt from train (default: freshly initialised weights).",
)
@click.option(
    "--column", type=click.IntRange(min=1), default=None, help="Export column K alone (default: the whole network)."
)
@click.option(
    "-o", "--output", "out", required=True, type=click.Path(dir_okay=False), help="Where to write the .onnx file."
)
@_allow_other_option
@_force_option
@_set_option
def export(
    file: str,
    ckpt: str | None,
    column: int | None,
    out: str,
    allow_other_network: bool,
    force: bool,
    settings: tuple[str, ...],
) -> None:
    """Export FILE's network in eval mode (or one column) to ONNX, batch size dynamic (needs fractal-dsl[onnx])."""
    from .export import check_size, export_bytes, require_onnx
    from .safeio import check_output, write_output

    net = _load(file, settings)
    check_output(out, force=force, inputs=(file,))  # refuse before the slow part
    check_size(net, column)
    require_onnx()
    data = export_bytes(net, ckpt, column, allow_other_network, warn=lambda line: click.echo(line, err=True))
    write_output(out, data, force=force, inputs=(file,))
    click.echo(f"wrote {out}", err=True)


if __name__ == "__main__":  # pragma: no cover
    main()

"""The ``fractal-dsl`` command: each command a few lines over the library API.

Exit codes: 0 success, 1 an invalid program (diagnostics on stderr), 2 bad command-line use.
``check``, ``inspect``, ``compile`` and ``render`` never import torch.
"""

from __future__ import annotations

import json
import sys

import click

from . import __version__
from .errors import Error, FractalError
from .syntax import INIT_SCHEMES


def _load(path: str):
    from . import load

    return load(path)


def _fail(exc: Error) -> None:
    click.echo(exc.show(), err=True)


class _Main(click.Group):
    """The command group; the one place that turns a fractal-dsl :class:`Error` into its
    message on standard error and its exit code."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except Error as exc:
            _fail(exc)
            ctx.exit(exc.exit_code)


FILE = click.Path(exists=True, dir_okay=False, readable=True)


@click.group(cls=_Main, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="fractal-dsl")
def main() -> None:
    """fractal-dsl: write a fractal expansion rule, get a validated network."""


@main.command()
@click.argument("files", nargs=-1, required=True, type=FILE)
def check(files: tuple[str, ...]) -> None:
    """Validate FILES; print one line per valid file."""
    from .summary import one_line

    failed = False
    for path in files:
        try:
            net = _load(path)
        except FractalError as exc:
            _fail(exc)
            failed = True
            continue
        click.echo(f"{path}: ok: {one_line(net)}")
    sys.exit(1 if failed else 0)


@main.command()
@click.argument("file", type=FILE)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (structure, totals, graph).")
def inspect(file: str, as_json: bool) -> None:
    """Summarise FILE: blocks, joins, depth, parameters, MACs."""
    from .summary import describe, format_text

    net = _load(file)
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
@click.option("--format", "fmt", default=None, help="svg, png, pdf, dot or html (the interactive view; default: from the output's suffix).")
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
def render(
    file: str,
    out: str,
    fmt: str | None,
    block: int | None,
    collapse: bool | None,
    column: int | None,
    sample: int | None,
) -> None:
    """Draw FILE as a diagram like Figure 1 of the FractalNet paper."""
    from . import render as draw

    net = _load(file)
    fmt = draw.output_format(out, fmt.lower() if fmt else None)
    view = draw.make_view(net, block=block, collapse=collapse, column=column, sample=sample)
    draw.write(net, out, fmt, view)
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
def compile_(file: str, out: str | None) -> None:
    """Compile FILE to a standalone PyTorch module (one .py file)."""
    from .codegen import generate, write_atomic

    source = generate(_load(file))
    if out is None:
        click.echo(source, nl=False)
        return
    try:
        write_atomic(out, source)
    except OSError as exc:
        click.echo(f"error: cannot write {out}: {exc.strerror or exc}", err=True)
        sys.exit(1)
    click.echo(f"wrote {out}", err=True)


# train and eval alike; 1000 is TrainConfig.recalibrate_bn (train.config cannot be imported
# here without torch, as the train package imports its loop)
_recalibrate_bn_option = click.option(
    "--recalibrate-bn", default=1000, show_default=True, type=click.IntRange(min=0), metavar="N",
    help="Evaluate the network and each column with BatchNorm statistics re-estimated for that path "
         "on N training images (0: the stored statistics).")


@main.command()
@click.argument("file", type=FILE)
@click.option("--out", "out", default="runs/latest", show_default=True, type=click.Path(file_okay=False),
              help="Folder for model.py, checkpoint.pt, metrics.jsonl, summary.json, curves.png.")
@click.option("--data", default="digits", show_default=True,
              help="digits (built in, offline), cifar10, cifar100, svhn (need torchvision) or an image folder.")
@click.option("--cache-dir", default=None, type=click.Path(file_okay=False), help="Where datasets download to.")
@click.option("--augment", is_flag=True, help="The paper's '+' augmentation: mirror and up to 4 px translation.")
@click.option("--epochs", default=20, show_default=True, type=click.IntRange(min=1))
@click.option("--batch-size", default=100, show_default=True, type=click.IntRange(min=1),
              help="Global batch, split over torchrun processes.")
@click.option("--lr", default=0.02, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="Divided by 10 each time the remaining epochs halve.")
@click.option("--weight-decay", default=0.0, show_default=True, type=click.FloatRange(min=0))
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--device", default="auto", show_default=True, type=click.Choice(["auto", "cpu", "cuda", "mps"]))
@click.option("--amp", is_flag=True, help="Mixed precision (float16 autocast; CUDA only).")
@click.option("--drop-path/--no-drop-path", "drop_path", default=None, help="Override the file's drop-path switch.")
@click.option("--drop-path-local", type=click.FloatRange(0, 1), default=None, help="Override the local drop rate.")
@click.option("--drop-path-global", type=click.FloatRange(0, 1), default=None,
              help="Override the share of globally sampled batches.")
@click.option("--drop-path-per", type=click.Choice(["batch", "sample"]), default=None)
@click.option("--no-regularization", is_flag=True, help="Turn drop-path and dropout off.")
@click.option("--init", type=click.Choice(INIT_SCHEMES), default=None,
              help="Override the file's weight initialisation (default xavier, as in the paper).")
@_recalibrate_bn_option
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last finished epoch.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars: one line per epoch, for logs.")
def train(file: str, out: str, no_regularization: bool, **options) -> None:
    """Compile FILE and train it; under torchrun, data-parallel over all processes."""
    net = _load(file)
    if no_regularization:
        given = [k for k in ("drop_path", "drop_path_local", "drop_path_global", "drop_path_per") if options[k] is not None]
        if given:
            raise click.UsageError(f"--no-regularization turns drop-path off; drop --{given[0].replace('_', '-')}")
        options.update(drop_path=False, dropout=False)
    from .train import TrainConfig
    from .train import train as run

    run(net, TrainConfig(**options), out, log=click.echo)


@main.command("eval")
@click.argument("file", type=FILE)
@click.option("--checkpoint", "ckpt", required=True, type=click.Path(dir_okay=False), help="A checkpoint.pt from train.")
@click.option("--column", type=click.IntRange(min=1), default=None, help="Only column K (default: whole network and each column).")
@click.option("--data", default=None, help="Test data (default: what the checkpoint was trained on).")
@click.option("--cache-dir", default=None, type=click.Path(file_okay=False))
@click.option("--device", default="auto", show_default=True, type=click.Choice(["auto", "cpu", "cuda", "mps"]))
@_recalibrate_bn_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def evaluate(file: str, ckpt: str, column: int | None, data: str | None, cache_dir: str | None, device: str,
             recalibrate_bn: int, as_json: bool) -> None:
    """Test accuracy and speed (samples/s) of FILE's network with a checkpoint's weights, per column."""
    net = _load(file)
    from .train import evaluate_checkpoint

    result = evaluate_checkpoint(net, ckpt, column, data, cache_dir, device, recalibrate_bn)
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    bn = (f", BatchNorm re-estimated per path on {result['recalibrate_bn']} training images" if result["recalibrate_bn"]
          else ", BatchNorm statistics as stored")
    click.echo(f"{result['network']} after epoch {result['epoch']}: {result['data']} test set "
               f"({result['test_samples']} samples) on {result['device']}{bn}")
    for row in result["rows"]:
        what = "whole network" if row["column"] is None else f"column {row['column']}"
        click.echo(f"  {what:<14} accuracy {100 * row['accuracy']:6.2f}%  {row['samples_per_second']:>10,.0f} samples/s")


if __name__ == "__main__":  # pragma: no cover
    main()

"""The ``fractal-dsl`` command: each command a few lines over the library API.

Exit codes: 0 success, 1 an invalid program (diagnostics on stderr), 2 bad command-line use.
``check``, ``inspect``, ``compile`` and ``render`` never import torch.
"""

from __future__ import annotations

import json
import sys

import click

from . import __version__
from .errors import FractalError


def _load(path: str):
    from . import load

    return load(path)


def _fail(exc: FractalError) -> None:
    click.echo(exc.format(), err=True)
    n = len(exc.diagnostics)
    click.echo(f"{n} error{'s' if n != 1 else ''} in {exc.source.name}", err=True)


FILE = click.Path(exists=True, dir_okay=False, readable=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
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

    try:
        net = _load(file)
    except FractalError as exc:
        _fail(exc)
        sys.exit(1)
    if as_json:
        click.echo(json.dumps(describe(net, _module_names(net)), indent=2))
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
@click.option("--format", "fmt", default=None, help="svg, png, pdf or dot (default: from the output's suffix).")
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

    try:
        net = _load(file)
    except FractalError as exc:
        _fail(exc)
        sys.exit(1)
    try:
        fmt = draw.output_format(out, fmt.lower() if fmt else None)
        view = draw.make_view(net, block=block, collapse=collapse, column=column, sample=sample)
        draw.write(net, out, fmt, view)
    except draw.RenderError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except draw.ImageError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
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

    try:
        source = generate(_load(file))
    except FractalError as exc:
        _fail(exc)
        sys.exit(1)
    if out is None:
        click.echo(source, nl=False)
        return
    try:
        write_atomic(out, source)
    except OSError as exc:
        click.echo(f"error: cannot write {out}: {exc.strerror or exc}", err=True)
        sys.exit(1)
    click.echo(f"wrote {out}", err=True)


def _module_names(net):
    """Dotted submodule names of the compiled module, when the code generator is present."""
    try:
        from .codegen import module_names
    except ImportError:
        return None
    return module_names(net)


if __name__ == "__main__":  # pragma: no cover
    main()

"""How long `render` takes on large blocks: examples/tiny.fdsl widened to C columns.

    python benchmarks/render_speed.py --columns 8 10 --format svg
    python benchmarks/render_speed.py --columns 10 --rule wide   # 2,302 nodes a block

``--rule wide`` uses f[C+1] = join(f[C] . f[C], conv, conv, conv) instead of the paper's
f[C+1] = join(f[C] . f[C], conv).  For each C it prints the nodes in block 1, the seconds to build the DOT source, and the
seconds for the whole `render --block 1` to an image (Graphviz's layout included), each the
median of --repeat runs.  Timing is here, not in the tests, since these machines are shared.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import fractal_dsl
from fractal_dsl import render

ROOT = Path(__file__).resolve().parent.parent


RULES = {"paper": "f[C+1] = join(f[C] . f[C], conv)", "wide": "f[C+1] = join(f[C] . f[C], conv, conv, conv)"}


def widened(columns: int, rule: str = "paper") -> fractal_dsl.Network:
    text = (ROOT / "examples" / "tiny.fdsl").read_text(encoding="utf-8").replace("columns 3", f"columns {columns}")
    text = text.replace(RULES["paper"], RULES[rule])
    return fractal_dsl.loads(text, f"tiny{columns}.fdsl")


def seconds(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--columns", type=int, nargs="+", default=[8, 10])
    parser.add_argument("--format", default="svg", choices=["svg", "png", "pdf", "html"])
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--rule", default="paper", choices=sorted(RULES))
    args = parser.parse_args()
    view = render.View(block=1)
    with tempfile.TemporaryDirectory() as tmp:
        for c in args.columns:
            net = widened(c, args.rule)
            nodes = sum(1 for n in net.nodes() if n.block == 1)
            dot = seconds(lambda: render.to_dot(net, view), args.repeat)
            out = Path(tmp) / f"block.{args.format}"
            image = seconds(lambda: render.write(net, out, args.format, view), args.repeat)
            print(f"C = {c:>2}: block 1 has {nodes:>5} nodes; DOT source {dot:6.2f} s; {args.format} image {image:6.2f} s")


if __name__ == "__main__":
    main()

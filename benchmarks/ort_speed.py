"""Eager PyTorch against ONNX Runtime (the `fractal-dsl export` file) at batch 1, per path, side by side.

    python benchmarks/ort_speed.py examples/fractal4.fdsl --columns 0 1 --threads 1 --blocks 6 --per-block 10

For each path (``0``: the whole network, ``k``: column k alone) the network (freshly
initialised, eval mode; latency does not depend on the weights' values) is exported with
``fractal_dsl.export.export_bytes`` and loaded into an ONNX Runtime CPU session with
torch's thread count; then both run the same batch-1 input in blocks of calls alternating
ABBA (``benchmarks/_timing.py``), and the ratio ORT / eager is printed with a bootstrap
95% interval. Needs onnxruntime and ``fractal-dsl[onnx]``.
"""

from __future__ import annotations

import argparse
import sys

import torch
from _timing import interleaved, ms, ratio_line

import fractal_dsl
from fractal_dsl import codegen
from fractal_dsl.export import export_bytes


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("example", help="a .fdsl file")
    ap.add_argument("--columns", type=int, nargs="+", default=[0, 1], help="0: the whole network, k: column k")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--threads", type=int, default=None, help="torch's and ONNX Runtime's CPU threads")
    ap.add_argument("--blocks", type=int, default=6, help="blocks per runtime")
    ap.add_argument("--per-block", type=int, default=10, help="timed calls per block")
    args = ap.parse_args(argv)
    try:
        import onnxruntime
    except ImportError:
        print("error: this benchmark needs onnxruntime (pip install onnxruntime)", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    net = fractal_dsl.load(args.example)
    torch.manual_seed(0)
    model = codegen.load_module(codegen.generate(net), f"bench_{net.name}").build().eval()
    x = torch.randn(args.batch, *net.input_shape, generator=torch.Generator().manual_seed(0))
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.inter_op_num_threads = 1
    print(
        f"{net.name}: batch {args.batch}, {torch.get_num_threads()} thread(s), onnxruntime "
        f"{onnxruntime.__version__}, {args.blocks} blocks of {args.per_block} calls per runtime"
    )
    for c in args.columns:
        column = c or None
        session = onnxruntime.InferenceSession(
            export_bytes(net, None, column), options, providers=["CPUExecutionProvider"]
        )
        feed = {session.get_inputs()[0].name: x.numpy()}

        @torch.no_grad()
        def eager(column=column):
            return model(x, column=column)

        times = interleaved(
            {"eager": eager, "ort": lambda s=session, f=feed: s.run(None, f)}, args.blocks, args.per_block
        )
        name = "whole network" if column is None else f"column {column}"
        print(f"{name:<14} eager {ms(times['eager'])}; ORT {ms(times['ort'])}")
        print(ratio_line(f"{name} ORT / eager", times["ort"], times["eager"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())

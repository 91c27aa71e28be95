"""Drop-path drawn per sample against per batch: the training step's time, side by side.

    python benchmarks/droppath_per_sample.py examples/fractal3.fdsl --batch 16 --threads 1 --blocks 6 --per-block 3

Compiles the example and times a training step (forward, backward, SGD update; the
paper's drop-path rates) of three models with the same initial weights and data: one
drawing drop-path per batch (which skips dropped layers), one per sample (which runs
each layer on the examples whose paths use it) and one per sample with
``compute_all=True`` (every layer on the whole batch, each example's dropped inputs
masked), in blocks alternating ABBA (``benchmarks/_timing.py``). Prints the times and the
ratios to per batch with a bootstrap 95% interval: the cost of ``drop_path_per="sample"``.
Then counts, untimed, the convolutions' multiply-adds of each mode's forward passes over
the same number of drop-path draws (the work, apart from the machine's load).
"""

from __future__ import annotations

import argparse
import sys

import torch
from _timing import interleaved, ms, ratio_line, train_step

import fractal_dsl
from fractal_dsl import codegen


def conv_macs(net, batch: int, steps: int, **build) -> int:
    """Multiply-adds of the convolutions in ``steps`` training forward passes at ``batch``
    (seeded as ``train_step`` seeds its model)."""
    module = codegen.load_module(codegen.generate(net), f"count_{net.name}")
    torch.manual_seed(0)
    model = module.build(generator=torch.Generator().manual_seed(1), **build).train()
    total = [0]

    def count(m: torch.nn.Conv2d, args: tuple, out: torch.Tensor) -> None:
        kh, kw = m.kernel_size
        total[0] += out.numel() * (m.in_channels // m.groups) * kh * kw

    for m in model.modules():
        if isinstance(m, torch.nn.Conv2d):
            m.register_forward_hook(count)
    x = torch.randn(batch, *net.input_shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        for _ in range(steps):
            model(x)
    return total[0]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("example", help="a .fdsl file")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--blocks", type=int, default=6, help="blocks per mode")
    ap.add_argument("--per-block", type=int, default=3, help="timed steps per block")
    args = ap.parse_args(argv)
    if args.batch < 1 or args.blocks < 1 or args.per_block < 1 or (args.threads is not None and args.threads < 1):
        print("error: --batch, --blocks, --per-block and --threads must be at least 1", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    net = fractal_dsl.load(args.example)
    modes = {
        "batch": {"drop_path_per": "batch"},
        "sample": {"drop_path_per": "sample"},
        "sample, masked": {"drop_path_per": "sample", "compute_all": True},
    }
    steps = {name: train_step(net, args.batch, drop_path=True, **build) for name, build in modes.items()}
    times = interleaved(steps, args.blocks, args.per_block)
    print(
        f"{net.name}: training step at batch {args.batch}, {torch.get_num_threads()} thread(s), "
        f"drop-path local {net.droppath.local:g} global {net.droppath.global_ratio:g}, "
        f"{args.blocks} blocks of {args.per_block} steps per mode"
    )
    for name in modes:
        print(f"per {name:<14} {ms(times[name])}")
    print(ratio_line("per sample / per batch", times["sample"], times["batch"]))
    print(ratio_line("per sample, masked / per batch", times["sample, masked"], times["batch"]))
    steps = args.blocks * args.per_block
    macs = {name: conv_macs(net, args.batch, steps, drop_path=True, **build) for name, build in modes.items()}
    print(
        f"convolution multiply-adds over {steps} forward passes, to per batch: "
        + "; ".join(f"per {name} {macs[name] / macs['batch']:.2f}x" for name in modes)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

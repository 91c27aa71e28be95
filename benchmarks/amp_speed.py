"""bfloat16 autocast on the CPU (``--amp``) against float32: a training step and an eval forward pass, side by side.

    python benchmarks/amp_speed.py examples/fractal3.fdsl --batch 16 --threads 1 --blocks 6 --per-block 3

Compiles the example and times, in blocks alternating ABBA (``benchmarks/_timing.py``):
a training step (forward + backward + SGD update, the paper's drop-path settings) of two
models with the same initial weights, data and drop-path samples, one in float32 and one
under bfloat16 autocast; then an eval-mode forward pass of one model both ways. Prints the
times, the ratios bf16 / fp32 with bootstrap 95% intervals, and how far the bf16 logits are
from the float32 ones (relative L2 error).
"""

from __future__ import annotations

import argparse
import sys

import torch
from _timing import interleaved, ms, ratio_line, train_step

import fractal_dsl
from fractal_dsl import codegen
from fractal_dsl.train.speed import cpu_supports_bf16


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("example", help="a .fdsl file")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--blocks", type=int, default=6, help="blocks per variant")
    ap.add_argument("--per-block", type=int, default=3, help="timed calls per block")
    args = ap.parse_args(argv)
    if args.batch < 1 or args.blocks < 1 or args.per_block < 1 or (args.threads is not None and args.threads < 1):
        print("error: --batch, --blocks, --per-block and --threads must be at least 1", file=sys.stderr)
        return 2
    if not cpu_supports_bf16():
        print("note: this CPU has no native bfloat16 (AVX-512 BF16 or AMX); --amp runs float32 here")
    if args.threads:
        torch.set_num_threads(args.threads)
    net = fractal_dsl.load(args.example)
    steps = {"fp32": train_step(net, args.batch), "bf16": train_step(net, args.batch, dtype=torch.bfloat16)}
    train_times = interleaved(steps, args.blocks, args.per_block)

    module = codegen.load_module(codegen.generate(net), f"bench_{net.name}")
    torch.manual_seed(0)
    model = module.build().eval()
    x = torch.randn(args.batch, *net.input_shape, generator=torch.Generator().manual_seed(0))

    @torch.no_grad()
    def forward(dtype=None):
        with torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            return model(x).float()

    eval_times = interleaved({"fp32": forward, "bf16": lambda: forward(torch.bfloat16)}, args.blocks, args.per_block)
    exact, low = forward(), forward(torch.bfloat16)
    error = float((low - exact).norm() / exact.norm())
    print(
        f"{net.name}: batch {args.batch}, {torch.get_num_threads()} thread(s), "
        f"{args.blocks} blocks of {args.per_block} calls per variant"
    )
    for what, times in (("training step", train_times), ("eval forward", eval_times)):
        for name in ("fp32", "bf16"):
            print(f"{what:<14} {name}  {ms(times[name])}")
        print(ratio_line(f"{what} bf16 / fp32", times["bf16"], times["fp32"]))
    print(f"eval logits, bf16 against fp32: relative L2 error {100 * error:.2f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())

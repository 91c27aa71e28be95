"""Training-step time with drop-path: skipping dead layers vs computing all and masking.

    python benchmarks/droppath_speed.py examples/fractal3.fdsl --device cpu --batch 8 --steps 20

Compiles the example, then times a training step's forward + backward (the SGD update
runs after each timed step, untimed) for the two modes of the compiled module at the
paper's drop-path defaults (or the file's settings), interleaved step by step in this
process, with the same weights, data and drop-path samples, and prints them side by side
with the speed-up.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

import fractal_dsl
from fractal_dsl import codegen


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("example", help="a .fdsl file")
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=20, help="timed steps per mode")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps per mode first")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = ap.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda but torch sees no CUDA device", file=sys.stderr)
        return 2
    if args.batch < 1 or args.steps < 1:
        print("error: --batch and --steps must be at least 1", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        net = fractal_dsl.load(args.example)
    except fractal_dsl.FractalError as exc:
        print(exc.format(), file=sys.stderr)
        return 1
    module = codegen.load_module(codegen.generate(net), f"bench_{net.name}")
    device = torch.device(args.device)
    g = torch.Generator().manual_seed(args.seed)
    data = torch.randn(args.batch, *net.input_shape, generator=g).to(device)
    target = torch.randint(net.classes, (args.batch,), generator=g).to(device)

    modes = (("skip dead layers", False), ("compute all + mask", True))
    steps = [_Stepper(module, compute_all, data, target, args.seed) for _, compute_all in modes]
    times: list[list[float]] = [[] for _ in modes]
    # Interleaved, in alternating order: a change in the machine's load (these machines are
    # shared) hits both modes alike instead of whichever ran second.
    for step in range(args.warmup + args.steps):
        order = (0, 1) if step % 2 == 0 else (1, 0)
        for i in order:
            seconds = steps[i].step()
            if step >= args.warmup:
                times[i].append(seconds)
        if step + 1 == args.warmup:
            for s in steps:
                s.calls[0] = 0
    print(
        f"{net.name}: batch {args.batch}, {args.steps} steps on {args.device}, drop-path "
        f"local {net.droppath.local:g} global {net.droppath.global_ratio:g} per batch"
    )
    # The mean, not the median: skipping makes step times bimodal (global vs local samples).
    print(f"{'mode':<20} {'mean ms/step':>13} {'median ms/step':>15} {'convs run':>10}")
    for (label, _), t, s in zip(modes, times, steps):
        mean, median = statistics.fmean(t) * 1e3, statistics.median(t) * 1e3
        print(f"{label:<20} {mean:>13.1f} {median:>15.1f} {s.calls[0] / args.steps / len(s.convs):>10.2f}")
    ratio = statistics.fmean(times[1]) / statistics.fmean(times[0])
    print(f"speed-up (mean compute-all / mean skip): {ratio:.2f}x")
    return 0


class _Stepper:
    """One mode's model and optimizer; ``step()`` times one forward + backward."""

    def __init__(self, module, compute_all: bool, data, target, seed: int) -> None:
        # Same initial weights in both modes. On the CPU, a drop-path generator of each
        # model's own: both modes draw the same samples step by step, whatever dropout
        # takes from the global one. On CUDA each mode keeps its default (skip: CPU
        # generator, no host sync; compute-all: drawn on the GPU).
        torch.manual_seed(seed)
        samples = torch.Generator().manual_seed(seed + 1) if data.device.type == "cpu" else None
        self.model = module.build(compute_all=compute_all, drop_path_per="batch", generator=samples)
        self.model = self.model.to(data.device).train()
        self.opt = torch.optim.SGD(self.model.parameters(), lr=0.01, momentum=0.9)
        self.data, self.target = data, target
        self.convs = [m for m in self.model.modules() if isinstance(m, torch.nn.Conv2d)]
        self.calls = [0]
        for m in self.convs:
            m.register_forward_hook(lambda *_: self.calls.__setitem__(0, self.calls[0] + 1))

    def step(self) -> float:
        _sync(self.data.device)
        start = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(self.model(self.data), self.target)
        loss.backward()
        _sync(self.data.device)
        seconds = time.perf_counter() - start
        self.opt.step()  # untimed
        self.opt.zero_grad(set_to_none=True)
        return seconds


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


if __name__ == "__main__":
    sys.exit(main())

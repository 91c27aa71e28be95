"""CPU threads: a training step (forward + backward) at 1 thread and at N threads, side by side.

    python benchmarks/threads_speed.py examples/fractal3.fdsl --batch 16 --threads 1 2 --blocks 6 --per-block 3
    python benchmarks/threads_speed.py examples/fractal3.fdsl --batch 16 --threads 1 2 --neighbour

Compiles the example, then times training steps (forward, backward and SGD update; the
paper's drop-path settings) of one model per thread count, seeded alike, with
``torch.set_num_threads`` switched between blocks of steps, blocks in ABBA order (``benchmarks/_timing.py``), and prints each thread count's
time and its ratio to the first one's with a bootstrap 95% interval. ``--neighbour`` runs a
busy process (one core's worth of pure Python) for the whole measurement, as another
user's job would on a shared machine.
"""

from __future__ import annotations

import argparse
import subprocess
import sys

import torch
from _timing import interleaved, ms, ratio_line, train_step

import fractal_dsl


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("example", help="a .fdsl file")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="thread counts to compare")
    ap.add_argument("--blocks", type=int, default=6, help="blocks per thread count")
    ap.add_argument("--per-block", type=int, default=3, help="timed steps per block")
    ap.add_argument("--neighbour", action="store_true", help="run a busy process alongside")
    args = ap.parse_args(argv)
    if min(args.threads) < 1 or args.batch < 1 or args.blocks < 1 or args.per_block < 1:
        print("error: --threads, --batch, --blocks and --per-block must be at least 1", file=sys.stderr)
        return 2
    net = fractal_dsl.load(args.example)
    # a model per thread count, seeded alike: the i-th steps draw the same drop-path sample
    steps = [train_step(net, args.batch) for _ in args.threads]
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if args.neighbour else None
    try:
        names = [f"{n} thread{'s' if n > 1 else ''}" for n in args.threads]
        times = interleaved(
            dict(zip(names, steps)),
            args.blocks,
            args.per_block,
            before={name: (lambda n=n: torch.set_num_threads(n)) for name, n in zip(names, args.threads)},
        )
    finally:
        if busy is not None:
            busy.kill()
            busy.wait()
    print(
        f"{net.name}: training step at batch {args.batch}, {args.blocks} blocks of {args.per_block} steps "
        f"per thread count{', a busy neighbour process running' if busy else ''}"
    )
    for name in names:
        print(f"{name:<10} {ms(times[name])}")
    for name in names[1:]:
        print(ratio_line(f"{name} / {names[0]}", times[name], times[names[0]]))
    return 0


if __name__ == "__main__":
    sys.exit(main())

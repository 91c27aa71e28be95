"""Two compiled modules of one network, timed side by side: did a code generator change
make training steps slower?

    git show a047f80:tests/golden/codegen/fractal3.py > /tmp/old.py
    python -m fractal_dsl.cli compile examples/fractal3.fdsl -o /tmp/new.py
    python benchmarks/compare_modules.py /tmp/old.py /tmp/new.py examples/fractal3.fdsl --batch 8 --steps 40 --threads 1

Times a training step's forward + backward (the SGD update untimed) of both modules, in
the skipping mode and with ``compute_all=True``, interleaved step by step in alternating
order, with the same initial weights, data and drop-path samples, and prints the mean
times and the ratios new / old.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time

import torch

import fractal_dsl


def _load(path: str, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("old", help="a compiled module (.py)")
    ap.add_argument("new", help="the same network compiled by the changed generator (.py)")
    ap.add_argument("example", help="the .fdsl file both were compiled from (for the input shape)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--drop-path-per", choices=("batch", "sample"), default="batch", help="drop-path drawn per")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    net = fractal_dsl.load(args.example)
    g = torch.Generator().manual_seed(0)
    data = torch.randn(args.batch, *net.input_shape, generator=g)
    target = torch.randint(net.classes, (args.batch,), generator=g)
    runs = {}
    for compute_all in (False, True):
        for label, path in (("old", args.old), ("new", args.new)):
            torch.manual_seed(0)
            module = _load(path, f"compare_{label}")
            samples = torch.Generator().manual_seed(1)
            model = module.build(compute_all=compute_all, drop_path_per=args.drop_path_per, generator=samples).train()
            runs[(label, compute_all)] = (model, torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9))
    times: dict = {k: [] for k in runs}
    keys = list(runs)
    for step in range(args.warmup + args.steps):
        for k in keys if step % 2 == 0 else keys[::-1]:
            model, opt = runs[k]
            start = time.perf_counter()
            torch.nn.functional.cross_entropy(model(data), target).backward()
            seconds = time.perf_counter() - start
            opt.step()
            opt.zero_grad(set_to_none=True)
            if step >= args.warmup:
                times[k].append(seconds)
    print(
        f"{net.name}: batch {args.batch}, {args.steps} steps, drop-path per {args.drop_path_per}, "
        f"CPU threads {torch.get_num_threads()}"
    )
    for (label, compute_all), t in times.items():
        mode = "compute all" if compute_all else "skip dead layers"
        print(f"{label} {mode:<17} mean {statistics.fmean(t) * 1e3:9.1f} ms/step")
    for compute_all in (False, True):
        mode = "compute all" if compute_all else "skip dead layers"
        ratio = statistics.fmean(times[("new", compute_all)]) / statistics.fmean(times[("old", compute_all)])
        print(f"{mode}: new / old mean step time {ratio:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

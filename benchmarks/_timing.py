"""Shared by the benchmarks: timing variants in interleaved blocks and ratios with a bootstrap interval.

The machines are shared, so the load changes while a benchmark runs. Each variant runs in
blocks of ``per_block`` calls, the variants' blocks alternating in ABBA order, so a change
in load hits every variant alike; the first call of a block (switching costs: caches,
thread pools, another runtime) is left out. Ratios are of means, with a percentile
bootstrap 95% interval over pairs of calls (:func:`ratio`).
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable

import torch

from fractal_dsl import codegen


def interleaved(
    variants: dict[str, Callable[[], object]],
    blocks: int,
    per_block: int,
    warmup: int = 1,
    before: dict[str, Callable[[], None]] | None = None,
    timer: Callable[[], float] = time.perf_counter,
) -> dict[str, list[float]]:
    """Seconds per call of each variant: ``blocks`` blocks each of ``per_block`` timed calls
    (after one untimed call), blocks in ABBA order; ``before[name]()`` runs, untimed, before
    each of that variant's blocks (set threads, ...); ``warmup`` untimed calls of each first."""
    names = list(variants)
    before = before or {}
    for name in names:
        before.get(name, lambda: None)()
        for _ in range(warmup):
            variants[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for b in range(blocks):
        order = names if b % 2 == 0 else names[::-1]
        for name in order:
            before.get(name, lambda: None)()
            variants[name]()  # untimed: the block's switching costs
            for _ in range(per_block):
                t0 = timer()
                variants[name]()
                times[name].append(timer() - t0)
    return times


def ratio(a: list[float], b: list[float], resamples: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """mean(a) / mean(b) with a percentile bootstrap 95% interval: (ratio, low, high).

    The calls are resampled in pairs (the i-th of ``a`` with the i-th of ``b``): both
    variants' i-th calls ran in neighbouring blocks and, where each variant has a model
    of its own seeded alike, drew the same drop-path sample, so pairing keeps the
    sample-to-sample spread out of the interval."""
    if len(a) != len(b):
        raise ValueError("ratio: both variants need the same number of calls")
    rng = random.Random(seed)
    n = len(a)
    boots = []
    for _ in range(resamples):
        idx = rng.choices(range(n), k=n)
        boots.append(sum(a[i] for i in idx) / sum(b[i] for i in idx))
    boots.sort()
    return statistics.fmean(a) / statistics.fmean(b), boots[int(0.025 * resamples)], boots[int(0.975 * resamples) - 1]


def ratio_line(label: str, a: list[float], b: list[float]) -> str:
    r, low, high = ratio(a, b)
    return f"{label}: {r:.2f}x [{low:.2f}-{high:.2f}] (mean ratio, bootstrap 95% interval, {len(a)} paired calls)"


def ms(t: list[float]) -> str:
    return f"mean {1e3 * statistics.fmean(t):.1f} ms, median {1e3 * statistics.median(t):.1f} ms"


def train_step(net, batch: int, seed: int = 0, dtype: torch.dtype | None = None, **build):
    """A function that runs one training step of ``net``'s compiled module at ``batch``
    (random data, drop-path on, the SGD update included; the forward pass under CPU autocast
    to ``dtype`` unless it is None)."""
    module = codegen.load_module(codegen.generate(net), f"bench_{net.name}")
    torch.manual_seed(seed)
    model = module.build(generator=torch.Generator().manual_seed(seed + 1), **build).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, *net.input_shape, generator=g)
    y = torch.randint(net.classes, (batch,), generator=g)

    def step() -> None:
        with torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step

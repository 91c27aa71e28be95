"""``fractal_dsl.train(program, train_loader, test_loader, ...)``: a run on the user's own data.

The loaders are read once into memory (a run keeps its data as tensors, as the CLI does
for its data sets); then the run is the CLI's: the same run folder, per-column evaluation,
anytime table and checkpoints (:func:`fractal_dsl.train.loop.train`).
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..ir import Network
from . import data as datasets
from .config import TrainConfig, TrainError
from .loop import train as run

MAX_VALUES = 1 << 31  # image values held in memory from the loaders (8 GiB of float32)


def train(
    program: str | Path | Network,
    train_loader,
    test_loader,
    out: str | Path = "runs/latest",
    *,
    set: dict | None = None,
    log=print,
    **options,
) -> dict:
    """Train ``program`` (program text, a ``.fdsl`` path or a loaded Network) on batches of
    ``(images, labels)`` from ``train_loader``, test on ``test_loader``, write the run folder
    ``out``; returns the summary (summary.json). ``set`` is ``--set`` (see
    :func:`fractal_dsl.load`); ``options`` are :class:`TrainConfig` fields (``epochs``, ``lr``,
    ``batch_size``, ``optimizer``, ``schedule``, ``resume``, ...; ``data`` names the data in
    the run, default ``"custom"``). Images are N x C x H x W as the network's ``input`` (uint8
    or float; normalised per channel with the training images' mean and spread), labels whole
    numbers 0 to ``classes`` - 1."""
    from ..pipeline import load, loads

    if isinstance(program, Network):
        if set:
            raise TrainError("`set` needs the program's text or file, not a loaded Network")
        net = program
    elif isinstance(program, str) and ("\n" in program or "{" in program):
        net = loads(program, set=set)
    else:
        net = load(program, set=set)
    cfg = TrainConfig(**{"data": "custom", **options}, overrides=dict(set or {}))
    data = from_loaders(train_loader, test_loader, net.input_shape, net.classes, cfg.data)
    return run(net, cfg, out, log=log, data=data)


def from_loaders(train_loader, test_loader, input_shape, classes: int, name: str) -> datasets.Data:
    """Both loaders read into one :class:`~fractal_dsl.train.data.Data`, checked against the network."""
    x_tr, y_tr = _collect(train_loader, "train_loader", tuple(input_shape), classes)
    x_te, y_te = _collect(test_loader, "test_loader", tuple(input_shape), classes)
    return datasets._finish(name, x_tr, y_tr, x_te, y_te, classes)


def _collect(loader, what: str, shape: tuple, classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys, values = [], [], 0
    try:
        batches = iter(loader)
    except TypeError:
        raise TrainError(f"{what} is not iterable: give a DataLoader of (images, labels) batches") from None
    for i, batch in enumerate(batches):
        if not (isinstance(batch, (tuple, list)) and len(batch) == 2):
            raise TrainError(f"{what} batch {i}: expected a pair (images, labels), got {type(batch).__name__}")
        x, y = (torch.as_tensor(t) for t in batch)
        if tuple(x.shape[1:]) != shape or x.dim() != 4:
            raise TrainError(
                f"{what} batch {i}: images of shape {tuple(x.shape)}; the network takes N x "
                + " x ".join(map(str, shape))
            )
        if x.dtype != torch.uint8 and not x.is_floating_point():
            raise TrainError(f"{what} batch {i}: images must be uint8 or floating point, not {x.dtype}")
        if y.dim() != 1 or len(y) != len(x) or y.is_floating_point() or y.dtype == torch.bool:
            raise TrainError(f"{what} batch {i}: labels must be one whole number per image")
        if len(y) and (y.min() < 0 or y.max() >= classes):
            raise TrainError(f"{what} batch {i}: labels must be 0 to {classes - 1} (the network's classes)")
        values += x.numel()
        if values > MAX_VALUES:
            raise TrainError(f"{what} holds more than {MAX_VALUES:,} image values: too large to hold in memory")
        xs.append(x.detach().cpu() if x.dtype == torch.uint8 else x.detach().cpu().float())
        ys.append(y.detach().cpu().long())
    if not xs or not sum(len(y) for y in ys):
        raise TrainError(f"{what} gave no images")
    if len({x.dtype for x in xs}) > 1:
        xs = [x.float() / 255 if x.dtype == torch.uint8 else x for x in xs]
    return torch.cat(xs), torch.cat(ys)

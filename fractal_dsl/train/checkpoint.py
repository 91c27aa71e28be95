"""Checkpoints: written atomically, read with ``torch.load(weights_only=True)``, checked on load.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts (so the safe
unpickler reads it) holding the model, optimizer, scheduler and grad-scaler states, the
finished epoch, the per-epoch metrics and the run's options. No RNG state is needed: every
random stream (shuffling, augmentation, drop-path, dropout) is re-seeded from
``(seed, epoch, rank)`` at the start of each epoch, which also makes resuming exact under
DistributedDataParallel, where each process has its own dropout stream.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch

from .config import TrainError

FORMAT = "fractal-dsl-checkpoint"
VERSION = 1


def save(path: str | Path, state: dict) -> None:
    """Write ``state`` to ``path`` through a temporary file and ``os.replace``: a run killed
    mid-write leaves the previous checkpoint intact, never a torn file."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save({"format": FORMAT, "version": VERSION, **state}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load(path: str | Path) -> dict:
    """Read a checkpoint safely; anything unreadable or foreign is a :class:`TrainError`."""
    path = Path(path)
    if not path.is_file():
        raise TrainError(f"{path}: no such checkpoint")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises RuntimeError, UnpicklingError, EOFError, ... on torn files
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TrainError(f"{path}: not a readable checkpoint (truncated or corrupt?): {reason[:200]}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise TrainError(f"{path}: not a fractal-dsl checkpoint")
    if state.get("version") != VERSION:
        raise TrainError(f"{path}: checkpoint format version {state.get('version')!r}, this fractal-dsl reads {VERSION}")
    return state


def check_fits(path, state: dict, model: torch.nn.Module, network: str) -> None:
    """Refuse a checkpoint whose parameters do not match ``model`` one for one, naming the first few."""
    saved = state.get("model")
    if not isinstance(saved, dict):
        raise TrainError(f"{path}: checkpoint holds no model weights")
    own = model.state_dict()
    problems = [f"missing {k}" for k in own if k not in saved]
    problems += [f"unexpected {k}" for k in saved if k not in own]
    problems += [f"{k} is {_shape(saved[k])} here {_shape(v)}" for k, v in own.items()
                 if k in saved and getattr(saved[k], "shape", None) != v.shape]
    if problems:
        more = f" and {len(problems) - 3} more" if len(problems) > 3 else ""
        raise TrainError(f"{path}: checkpoint of network {state.get('network')!r} does not fit network "
                         f"{network!r}: {'; '.join(problems[:3])}{more}")


def _shape(t) -> str:
    return "x".join(str(d) for d in t.shape) if hasattr(t, "shape") else type(t).__name__

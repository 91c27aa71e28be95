"""Checkpoints: written atomically, read with ``torch.load(weights_only=True)``, checked on load.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts (so the safe
unpickler reads it) holding the model, optimizer, scheduler and grad-scaler states, the
finished epoch, the per-epoch metrics and the run's options. No RNG state is needed: every
random stream (shuffling, augmentation, drop-path, dropout) is re-seeded from
``(seed, epoch, rank)`` at the start of each epoch, which also makes resuming exact under
DistributedDataParallel, where each process has its own dropout stream.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import torch

from .. import safeio
from ..errors import braces
from .config import TrainError

FORMAT = "fractal-dsl-checkpoint"
VERSION = 2  # 2 added structure_sha256 and weights_sha256; version 1 is read, unverified, with a warning
READABLE = (1, 2)

# the type every field must have when present; a damaged or hand-made file fails here, by name
FIELDS = {
    "format": str,
    "version": int,
    "network": str,
    "source_name": str,
    "source_sha256": str,
    "structure_sha256": str,
    "weights_sha256": str,
    "config": dict,
    "epoch": int,
    "model": dict,
    "optimizer": dict,
    "scheduler": dict,
    "scaler": dict,
    "history": list,
}
HISTORY_FIELDS = {
    "epoch": int,
    "lr": (int, float),
    "train_loss": (int, float),
    "train_acc": (int, float),
    "test_acc": (int, float),
    "column_acc": list,
    "seconds": (int, float),
}


def save(path: str | Path, state: dict) -> None:
    """Write ``state`` to ``path`` through a temporary file and ``os.replace``: a run killed
    mid-write leaves the previous checkpoint intact, never a torn file. The weights
    (``state["model"]``) get a checksum, ``weights_sha256``, checked by :func:`verify`."""
    full = {"format": FORMAT, "version": VERSION, **state}
    if isinstance(state.get("model"), dict):
        full["weights_sha256"] = tensors_sha256(state["model"])
    try:
        safeio.write_output_with(path, lambda f: torch.save(full, f), owned=True)
    except safeio.OutputError as exc:
        raise TrainError(str(exc)) from None


def tensors_sha256(tensors: dict) -> str:
    """sha256 of names and bytes of a state dict, bit for bit: equal weights give equal digests."""
    h = hashlib.sha256()
    for name, t in tensors.items():
        h.update(str(name).encode())
        h.update(t.detach().cpu().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def load(path: str | Path) -> dict:
    """Read a checkpoint safely; anything unreadable, foreign or mistyped is a :class:`TrainError`."""
    path = Path(path)
    try:
        with safeio.open_input(path) as fh:  # a FIFO or a device is refused, not waited on
            state = torch.load(fh, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise TrainError(f"{path}: no such checkpoint") from None
    except safeio.InputError as exc:
        raise TrainError(f"{path}: {exc.strerror}") from None
    except Exception as exc:  # noqa: BLE001 - torch raises RuntimeError, UnpicklingError, EOFError, ... on torn files
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TrainError(f"{path}: not a readable checkpoint (truncated or corrupt?): {reason[:200]}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise TrainError(f"{path}: not a fractal-dsl checkpoint")
    if state.get("version") not in READABLE:
        raise TrainError(
            f"{path}: checkpoint format version {state.get('version')!r}, this fractal-dsl reads "
            + ", ".join(map(str, READABLE))
        )
    _check_types(path, state)
    return state


def _check_types(path, state: dict) -> None:
    for name, kind in FIELDS.items():
        if name in state and (not isinstance(state[name], kind) or isinstance(state[name], bool) and kind is int):
            raise TrainError(
                f"{path}: damaged checkpoint: `{name}` is {type(state[name]).__name__}, not {kind.__name__}"
            )
    config = state.get("config", {})
    for name, kind in (("data", str), ("cache_dir", (str, type(None)))):  # eval reads these back
        if name in config and not isinstance(config[name], kind):
            raise TrainError(f"{path}: damaged checkpoint: config `{name}` is {type(config[name]).__name__}")
    bad = [k for k, v in state.get("model", {}).items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise TrainError(f"{path}: damaged checkpoint: model entry {bad[0]!r} is not a tensor")
    for i, record in enumerate(state.get("history", [])):
        if not isinstance(record, dict):
            raise TrainError(f"{path}: damaged checkpoint: history entry {i + 1} is not a record")
        for name, kind in HISTORY_FIELDS.items():
            if not isinstance(record.get(name), kind) or isinstance(record.get(name), bool):
                raise TrainError(f"{path}: damaged checkpoint: history entry {i + 1} has no valid `{name}`")


def require(path, state: dict, *names: str) -> None:
    """Refuse a checkpoint that lacks one of ``names`` (a hand-made or foreign dict)."""
    missing = [n for n in names if n not in state]
    if missing:
        raise TrainError(f"{path}: damaged checkpoint: no {', '.join(map(repr, missing))}")


def verify(path, state: dict, net, model: torch.nn.Module, allow_other_network: bool = False, warn=print) -> None:
    """Check that the weights are those saved (checksum), fit ``model`` tensor for tensor
    (:func:`check_fits`) and belong to ``net`` (structure hash).

    A checkpoint written before these fields existed (version 1) is accepted with a warning.
    With ``allow_other_network`` a checkpoint of another network is loaded anyway (its
    tensors must still fit, see :func:`check_fits`), with a warning.
    """
    from ..fingerprint import structure_sha256

    legacy = "weights_sha256" not in state or "structure_sha256" not in state
    if legacy:
        warn(f"warning: {path} was written by an older fractal-dsl: its weights and network are not verified")
    elif tensors_sha256(state.get("model", {})) != state["weights_sha256"]:
        raise TrainError(
            f"{path}: damaged checkpoint: the weights do not match their checksum "
            "(the file was changed or corrupted after it was written)"
        )
    check_fits(path, state, model, net.name)
    if legacy or state["structure_sha256"] == structure_sha256(net):
        return
    was = state.get("network")
    what = f"network {was!r}" + (f" from {state['source_name']}" if state.get("source_name") else "")
    if allow_other_network:
        warn(
            f"warning: {path} holds the weights of another {what}; loading them into {net.name!r} "
            "as asked (allow_other_network)"
        )
        return
    differs = f"another name ({was!r})" if was != net.name else "the same name but another structure"
    raise TrainError(
        f"{braces(path)}: checkpoint of {braces(what)}, not of this network {braces(repr(net.name))} "
        f"({braces(net.source_name)}): {braces(differs)}; layers, joins or connections differ. Use the "
        "program it was trained with, or {allow_other_network} to load its weights anyway",
        "allow_other_network",
    )


def check_fits(path, state: dict, model: torch.nn.Module, network: str) -> None:
    """Refuse a checkpoint whose parameters do not match ``model`` one for one, naming the first few."""
    saved = state.get("model")
    if not isinstance(saved, dict):
        raise TrainError(f"{path}: checkpoint holds no model weights")
    own = model.state_dict()
    problems = [f"missing {k}" for k in own if k not in saved and not _added_later(k)]
    problems += [f"unexpected {k}" for k in saved if k not in own]
    problems += [
        f"{k} is {_shape(saved[k])} here {_shape(v)}"
        for k, v in own.items()
        if k in saved and getattr(saved[k], "shape", None) != v.shape
    ]
    if problems:
        more = f" and {len(problems) - 3} more" if len(problems) > 3 else ""
        raise TrainError(
            f"{path}: checkpoint of network {state.get('network')!r} does not fit network "
            f"{network!r}: {'; '.join(problems[:3])}{more}"
        )


def _added_later(key: str) -> bool:
    """A buffer the compiled module gained after checkpoints were first written, which loading
    fills in (the input's normalisation, per-path BatchNorm statistics)."""
    return key in ("normalize.mean", "normalize.std") or (
        re.fullmatch(r"(running_mean|running_var|num_batches_tracked)_c\d+", key.rsplit(".", 1)[-1]) is not None
    )


def _shape(t) -> str:
    return "x".join(str(d) for d in t.shape) if hasattr(t, "shape") else type(t).__name__

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
import os
import re
import warnings
import zipfile
from pathlib import Path

import torch

from .. import codegen, safeio
from ..errors import braces, cut, quoted
from ..ir import Network
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


# what a checkpoint may hold, checked before anything reads a tensor's data (see _check_tree)
MAX_DEPTH = 32  # containers inside containers; ours nest 4 deep
MAX_ITEMS = 1_000_000  # values visited, shared ones each time they are reached (a "billion laughs")
DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int64, torch.int32, torch.uint8)
LEAVES = (str, int, float, bool, type(None), torch.dtype, torch.device)


def load(path: str | Path) -> dict:
    """Read a checkpoint safely; anything unreadable, foreign or mistyped is a :class:`TrainError`.

    Nothing is trusted before it is checked: the archive must be the uncompressed zip that
    ``torch.save`` writes (so no record holds more bytes than the file), the pickle is read
    by torch's ``weights_only`` unpickler, and every value must be a plain container, number,
    string or tensor, nested at most :data:`MAX_DEPTH` deep, :data:`MAX_ITEMS` values in all,
    every tensor a dense array of one of :data:`DTYPES` that covers exactly its own storage
    (no stride-0 or overlapping view of billions of elements, no offset, no shared bytes).
    So loading never holds more than about the file's size, and the checksum and the shape
    checks of :func:`verify` read no more either."""
    path = Path(path)
    try:
        with safeio.open_input(path) as fh:  # a FIFO or a device is refused, not waited on
            _check_archive(path, fh)
            with warnings.catch_warnings():  # torch's deprecation notes about what a file holds: it is checked below
                warnings.simplefilter("ignore", UserWarning)
                state = torch.load(fh, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise TrainError(f"{path}: no such checkpoint") from None
    except safeio.InputError as exc:
        raise TrainError(f"{path}: {exc.strerror}") from None
    except TrainError:
        raise
    except OSError as exc:
        raise TrainError(f"{path}: cannot read the checkpoint: {exc.strerror or exc}") from None
    except Exception as exc:  # noqa: BLE001 - torch raises RuntimeError, UnpicklingError, EOFError, ... on torn files
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TrainError(f"{path}: not a readable checkpoint (truncated or corrupt?): {reason[:200]}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise TrainError(f"{path}: not a fractal-dsl checkpoint")
    if state.get("version") not in READABLE:
        raise TrainError(
            f"{path}: checkpoint format version {quoted(state.get('version'))}, this fractal-dsl reads "
            + ", ".join(map(str, READABLE))
        )
    _check_tree(path, state)
    _check_types(path, state)
    return state


def _check_archive(path, fh) -> None:
    """Refuse anything but an uncompressed zip archive whose records fit in the file, before
    torch reads a byte of it (torch would inflate a compressed record, or allocate what a
    legacy-format header claims, whatever its size)."""
    size = os.fstat(fh.fileno()).st_size
    try:
        with zipfile.ZipFile(fh) as archive:
            records = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError) as exc:
        raise TrainError(
            f"{path}: not a readable checkpoint (truncated or corrupt?): not the zip archive torch.save writes ({exc})"
        ) from None
    for record in records:
        if record.compress_type != zipfile.ZIP_STORED or record.file_size > size:
            raise TrainError(
                f"{path}: not a fractal-dsl checkpoint: its record {quoted(record.filename)} is compressed or larger "
                "than the file (torch.save stores records as they are)"
            )
    fh.seek(0)


def _check_tree(path, state) -> None:
    """Walk every value of ``state`` without reading tensor data; refuse what no checkpoint of
    ours holds (see :func:`load`), naming where it is."""
    todo = [(state, "checkpoint", 0)]
    seen = 0
    while todo:
        value, where, depth = todo.pop()
        seen += 1
        if seen > MAX_ITEMS or depth > MAX_DEPTH:
            raise TrainError(
                f"{path}: damaged checkpoint: more than {MAX_ITEMS:,} values or nested more than {MAX_DEPTH} "
                f"deep (at {cut(where, 120)})"
            )
        if isinstance(value, torch.Tensor):
            _check_tensor(path, where, value)
        elif isinstance(value, dict):
            for k, v in value.items():
                if not isinstance(k, (str, int)):
                    raise TrainError(f"{path}: damaged checkpoint: a key of {cut(where, 120)} is {type(k).__name__}")
                todo.append((v, f"{where}[{k!r}]", depth + 1))
        elif isinstance(value, (list, tuple)):
            todo.extend((v, f"{where}[{i}]", depth + 1) for i, v in enumerate(value))
        elif not isinstance(value, LEAVES) and not isinstance(value, torch.Size):
            raise TrainError(f"{path}: damaged checkpoint: {cut(where, 120)} is a {type(value).__name__}")


def _check_tensor(path, where: str, t: torch.Tensor) -> None:
    """A tensor must be a plain dense array that covers exactly its own storage (checked from
    its metadata only: shape, strides, offset, dtype and the storage's size)."""
    why = None
    if type(t) is not torch.Tensor or t.layout != torch.strided or t.is_quantized or t.device.type != "cpu":
        kind = "quantized" if type(t) is torch.Tensor and t.is_quantized else f"{t.layout}, {t.device}"
        why = f"not a plain CPU tensor ({kind})"
    elif t.dtype not in DTYPES:
        why = f"of type {t.dtype}"
    elif not t.is_contiguous() or t.storage_offset() != 0:
        why = f"a strided view (strides {tuple(t.stride())}, offset {t.storage_offset()}) rather than an array"
    elif t.untyped_storage().nbytes() != t.numel() * t.element_size():
        why = (
            f"a view of {t.numel():,} elements on {t.untyped_storage().nbytes():,} bytes rather than "
            "an array of its own"
        )
    if why:
        raise TrainError(f"{path}: damaged checkpoint: {cut(where, 120)} is {why}")


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
        raise TrainError(f"{path}: damaged checkpoint: model entry {quoted(bad[0])} is not a tensor")
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
    check_fits(path, state, model, net.name)  # shapes and types first: the checksum reads every byte
    if not legacy and tensors_sha256(state.get("model", {})) != state["weights_sha256"]:
        raise TrainError(
            f"{path}: damaged checkpoint: the weights do not match their checksum "
            "(the file was changed or corrupted after it was written)"
        )
    broken = next((k for k, t in state["model"].items() if t.is_floating_point() and not torch.isfinite(t).all()), None)
    if broken is not None:
        raise TrainError(f"{path}: the weight {cut(broken)} holds NaN or infinite values (a diverged run?)")
    impossible = next((k for k, t in state["model"].items() if _below_bound(k, t)), None)
    if impossible is not None:
        what = "zero or negative" if impossible.endswith("normalize.std") else "negative"
        raise TrainError(f"{path}: damaged checkpoint: {cut(impossible)} holds {what} values, which no run writes")
    if legacy or state["structure_sha256"] == structure_sha256(net):
        return
    was = state.get("network")
    what = f"network {quoted(was)}" + (f" from {cut(state['source_name'])}" if state.get("source_name") else "")
    if allow_other_network:
        warn(
            f"warning: {path} holds the weights of another {what}; loading them into {net.name!r} "
            "as asked (allow_other_network)"
        )
        return
    differs = f"another name ({quoted(was)})" if was != net.name else "the same name but another structure"
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
    # a buffer added later may be absent only as a checkpoint of an older fractal-dsl lacks it:
    # all of its kind (filling some would mix one layer's statistics of different paths, or
    # normalise with a saved mean and a made-up deviation)
    kinds = {_added_later(k) for k in own if k in saved}
    problems = [f"missing {k}" for k in own if k not in saved and _added_later(k) in kinds]
    problems += [f"unexpected {cut(k)}" for k in saved if k not in own]
    problems += [
        f"{k} is {_shape(saved[k], v)} here {_shape(v, saved[k])}"
        for k, v in own.items()
        if k in saved and (getattr(saved[k], "shape", None) != v.shape or getattr(saved[k], "dtype", None) != v.dtype)
    ]
    if problems:
        more = f" and {len(problems) - 3} more" if len(problems) > 3 else ""
        raise TrainError(
            f"{path}: checkpoint of network {quoted(state.get('network'))} does not fit network "
            f"{network!r}: {'; '.join(problems[:3])}{more}"
        )


def check_optimizer(path, saved, opt: torch.optim.Optimizer) -> None:
    """Refuse an optimizer state whose per-parameter tensors (momentum buffers) do not have
    their parameter's shape and type, before ``opt.load_state_dict`` copies any of them."""
    params = [p for group in opt.param_groups for p in group["params"]]
    groups, states = saved.get("param_groups"), saved.get("state")
    ids = [i for g in groups if isinstance(g, dict) for i in g.get("params", ())] if isinstance(groups, list) else []
    if not isinstance(states, dict) or len(ids) != len(params) or len(set(ids)) != len(ids):
        raise TrainError(f"{path}: damaged training state: the optimizer's parameters do not match the network's")
    owner = dict(zip(ids, params))
    for i, entry in states.items():
        if i not in owner or not isinstance(entry, dict):
            raise TrainError(f"{path}: damaged training state: optimizer state {quoted(i)} belongs to no parameter")
        p = owner[i]
        for name, value in entry.items():
            if isinstance(value, torch.Tensor) and value.dim() and (value.shape != p.shape or value.dtype != p.dtype):
                raise TrainError(
                    f"{path}: damaged training state: optimizer {name} of parameter {i} is "
                    f"{_shape(value)}, the parameter {_shape(p)}"
                )


def _added_later(key: str) -> str | None:
    """The kind of buffer the compiled module gained after checkpoints were first written,
    which loading fills in (``"normalize"``, the input's normalisation; ``"paths"``,
    per-path BatchNorm statistics), or None for any other key."""
    if key in ("normalize.mean", "normalize.std"):
        return "normalize"
    if re.fullmatch(r"(running_mean|running_var|num_batches_tracked)_c\d+", key.rsplit(".", 1)[-1]):
        return "paths"
    return None


def _below_bound(key: str, t: torch.Tensor) -> bool:
    """Whether ``t`` is a deviation or a variance that is not positive (the normalisation's
    deviation divides the images: ``train`` keeps it at 1e-6 at least) or negative (batch
    norm takes a variance's square root): the output would be NaN or infinite."""
    name = key.rsplit(".", 1)[-1]
    if key.endswith("normalize.std"):
        return bool((t <= 0).any())
    return name.startswith("running_var") and bool((t < 0).any())


def _shape(t, other=None) -> str:
    """``t``'s shape, and its type when it is not float32 or differs from ``other``'s."""
    if not hasattr(t, "shape"):
        return type(t).__name__
    typed = t.dtype != torch.float32 or getattr(other, "dtype", t.dtype) != t.dtype
    return "x".join(str(d) for d in t.shape) + (f" {t.dtype}".replace("torch.", "") if typed else "")


def compile_model(net: Network, generator=None, **overrides):
    """Generate, load and build the compiled module for ``net``; returns (source, model)."""
    source = codegen.generate(net, check=False)  # load_module checks it
    module = codegen.load_module(source, f"fractal_dsl_compiled_{net.name}")
    return source, module.build(generator=generator, **overrides)


def load_weights(model, weights: dict, warn=print) -> None:
    """``model.load_state_dict(weights)``, its warning (a checkpoint without per-path BatchNorm
    statistics, written by an older fractal-dsl) passed to ``warn`` as one line."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.load_state_dict(weights)
    for w in caught:
        warn(f"note: {w.message}")

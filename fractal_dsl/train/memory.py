"""How much memory a run will hold, estimated before any image is converted, and the bound on it.

A valid program can ask for more than any machine has (``input 1x4096x4096`` makes each
built-in digit a 64 MB tensor, 120 GB for the set). As the expansion budget bounds a graph
before it is built, :func:`check` bounds a run before its data is converted: the images it
will hold (train and test split at the network's input size, after ``--subset``), the
weights with their gradients and momentum, and the activations of a training batch (every
layer's output is kept for the backward pass) or of an evaluation batch, whichever is
larger. Over the limit (``--max-memory``, by default 80% of the machine's physical memory)
the run is refused in one line that names the figures.
"""

from __future__ import annotations

import math
import os

from ..errors import UsageError, braces
from ..ir import Network
from .config import TrainError

FLOAT = 4  # bytes of a float32
DEFAULT_SHARE = 0.8  # of physical memory, when no --max-memory is given


def limit_bytes(max_memory_gb: float | None, device=None) -> int:
    """The bound in bytes: ``max_memory_gb`` GB, or :data:`DEFAULT_SHARE` of physical memory
    (and of the GPU's, on a CUDA ``device``, where the data and activations then live)."""
    if max_memory_gb is not None:
        if not 0 < max_memory_gb < math.inf:  # nan passes click's range, and int(nan) raises
            raise UsageError(f"{{max_memory}} {max_memory_gb}: must be a positive, finite number of GB", "max_memory")
        return int(max_memory_gb * 1e9)
    try:
        limit = int(DEFAULT_SHARE * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):  # no sysconf: no bound beyond what is asked
        limit = 1 << 62
    if getattr(device, "type", None) == "cuda":  # not verified on a GPU in this project's CI
        import torch

        limit = min(limit, int(DEFAULT_SHARE * torch.cuda.get_device_properties(device).total_memory))
    return limit


def activation_values(net: Network) -> tuple[int, int]:
    """Per image: the values of every layer's output and join (what a training step keeps for
    backward), and the largest single output (what an eval pass holds at a time, times a few)."""
    total, largest = 0, 0
    for node in net.nodes():
        for shape in (*node.layer_shapes, node.shape):
            if shape:
                n = math.prod(shape)
                total += n
                largest = max(largest, n)
    return total, largest


def estimate(net: Network, train_batch: int, eval_batch: int) -> tuple[int, int]:
    """Bytes of (weights + gradients + momentum, activations of the larger of a training batch
    and an evaluation batch)."""
    total, largest = activation_values(net)
    weights = (3 if train_batch else 1) * FLOAT * net.params
    return weights, FLOAT * max(total * train_batch, 3 * largest * eval_batch)


def check(
    net: Network,
    data_bytes: int,
    data_what: str,
    train_batch: int,
    eval_batch: int,
    max_memory_gb: float | None,
    device=None,
) -> None:
    """Refuse a run whose data, weights and activations would exceed the limit (see the module doc)."""
    weights, activations = estimate(net, train_batch, eval_batch)
    need, limit = data_bytes + weights + activations, limit_bytes(max_memory_gb, device)
    if need <= limit:
        return
    said = f"{{max_memory}} {max_memory_gb:g}" if max_memory_gb is not None else "80% of this machine's memory"
    if max_memory_gb is None and getattr(device, "type", None) == "cuda":
        said += " or of the GPU's"
    if train_batch:
        held = f"weights with gradients and momentum {_gb(weights)}, "
        held += f"activations {_gb(activations)} (batch {train_batch}"
        advice = "use {subset}, a smaller input or batch, or raise {max_memory}"
    else:
        held = f"weights {_gb(weights)}, activations {_gb(activations)} ("
        advice = "use a smaller input, or raise {max_memory}"
    raise TrainError(
        f"the run would hold about {_gb(need)}: data {_gb(data_bytes)} ({braces(data_what)}), {held}"
        f"{', ' if train_batch else ''}eval batch {eval_batch}), over the limit of {_gb(limit)} ({said}); {advice}",
        *(("subset", "max_memory") if train_batch else ("max_memory",)),
    )


def budget(net: Network, batch: int, max_memory_gb: float | None, device=None):
    """The ``budget`` callback of :func:`.data.load` for a run of ``net`` at ``batch`` images a
    step (0: evaluation only): :func:`check` once the number of images is known."""

    def fits(n_train: int, n_test: int, bytes_per_image: int, what: str) -> None:
        from .config import EVAL_BATCH

        data_what = f"{n_train + n_test:,} {what}"
        check(
            net,
            (n_train + n_test) * bytes_per_image,
            data_what,
            min(batch, n_train),
            min(EVAL_BATCH, max(n_test, n_train)),
            max_memory_gb,
            device,
        )

    return fits


def _gb(n: int) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e7 else f"{n / 1e6:.1f} MB"

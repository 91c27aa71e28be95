"""What a training run is asked to do (:class:`TrainConfig`) and how it fails (:class:`TrainError`).

Kept free of torch so the CLI can build and check a configuration before importing it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .. import errors
from ..errors import RunError

#: Options that change the trained weights: a resumed run must use the same values.
RESUME_KEYS = (
    "data",
    "augment",
    "epochs",
    "batch_size",
    "lr",
    "momentum",
    "weight_decay",
    "seed",
    "drop_path",
    "drop_path_local",
    "drop_path_global",
    "drop_path_per",
    "dropout",
    "amp",
    "init",
    "subset",
)


class TrainError(RunError):
    """A problem the user can fix (data, checkpoint, options, a diverging loss): one line, exit 1."""


class Interrupted(TrainError, errors.Interrupted):
    """Ctrl-C (SIGINT) or SIGTERM stopped the run at a step boundary; the last checkpoint stands."""


@dataclass(frozen=True)
class TrainConfig:
    """One training run. ``None`` for a drop-path field means "as the .fdsl file says"."""

    data: str = "digits"
    cache_dir: str | None = None
    augment: bool = False
    epochs: int = 20
    batch_size: int = 100  # the paper's; the global batch, split evenly over processes
    lr: float = 0.02  # the paper's
    momentum: float = 0.9
    weight_decay: float = 0.0
    seed: int = 0
    device: str = "auto"
    amp: bool = False
    drop_path: bool | None = None
    drop_path_local: float | None = None
    drop_path_global: float | None = None
    drop_path_per: str | None = None
    dropout: bool = True
    init: str | None = None  # weight initialisation (xavier, kaiming, torch); None: the file's
    # at every evaluation, estimate the BatchNorm statistics of every path (the whole network,
    # each column) on the first N training images; the checkpoint keeps them (0: every path
    # keeps the running statistics training accumulated, which under drop-path follow the last
    # few sampled subnetworks; see docs/results.md)
    recalibrate_bn: int = 1000
    subset: int | None = None  # train and test on the first N images of each split: a smoke test, not a result
    resume: bool = False
    quiet: bool = False
    latency_repeats: int = 10  # the anytime table's latencies: the median of this many timed forward passes
    tensorboard: bool = False  # also write the metrics as a TensorBoard event file (needs tensorboardX)
    force: bool = False  # write into an --out folder that holds files fractal-dsl did not write
    allow_other_network: bool = False  # --resume with a checkpoint of another network (tensors must fit)

    def model_overrides(self) -> dict:
        """Keyword arguments for the compiled module's ``build`` that differ from the file's."""
        out = {"dropout": self.dropout}
        for name in ("drop_path", "drop_path_local", "drop_path_global", "drop_path_per", "init"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def paper_milestones(epochs: int) -> tuple[int, ...]:
    """Epochs after which the learning rate drops tenfold: each time the remaining epochs halve.

    400 epochs give (200, 300, 350, 375) as in the paper; four drops at most, as there.
    """
    return tuple(sorted({epochs - epochs // 2**i for i in range(1, 5)} - {0, epochs}))

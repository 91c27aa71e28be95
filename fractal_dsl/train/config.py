"""What a training run is asked to do (:class:`TrainConfig`) and how it fails (:class:`TrainError`).

Kept free of torch so the CLI can build and check a configuration before importing it.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field

from .. import errors
from ..errors import RunError

#: Options that change the trained weights: a resumed run must use the same values
#: (``epochs`` may grow: the run is extended, see :func:`lr_factor`).
EVAL_BATCH = 500  # examples per evaluation batch (accuracy, latency, the memory estimate)
RESUME_KEYS = (
    "data",
    "augment",
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
    "optimizer",
    "schedule",
)
#: what a checkpoint written before an option existed was trained with
RESUME_DEFAULTS = {"optimizer": "sgd", "schedule": "paper"}
OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("paper", "cosine")
#: the learning rate when none is given: the paper's for SGD, AdamW's usual one
DEFAULT_LR = {"sgd": 0.02, "adamw": 0.001}
DATA_NAMES = ("digits", "cifar10", "cifar100", "svhn")


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
    lr: float | None = None  # None: DEFAULT_LR of the optimizer (the paper's 0.02 for SGD)
    momentum: float = 0.9
    weight_decay: float = 0.0
    seed: int = 0
    device: str = "auto"
    threads: int | None = None  # torch's CPU threads (None: torch's default, one per core)
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
    max_memory: float | None = None  # GB the run may hold (data, weights, activations); None: 80% of physical memory
    resume: bool = False
    quiet: bool = False
    latency_repeats: int = 10  # the anytime table's latencies: the median of this many timed forward passes
    ort_latency: bool = True  # also time each path in ONNX Runtime where it is installed (train/ort.py)
    tensorboard: bool = False  # also write the metrics as a TensorBoard event file (needs tensorboardX)
    force: bool = False  # write into an --out folder that holds files fractal-dsl did not write
    allow_other_network: bool = False  # --resume with a checkpoint of another network (tensors must fit)
    # the --set NAME=VALUE values the program was loaded with (already written into it):
    # recorded in summary.json as "set"
    overrides: dict = field(default_factory=dict)
    optimizer: str = "sgd"  # the paper's SGD with momentum, or AdamW
    schedule: str = "paper"  # the paper's tenfold drops (paper_milestones), or cosine to zero

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise TrainError(f"{{optimizer}} {self.optimizer!r}: use one of {', '.join(OPTIMIZERS)}", "optimizer")
        if self.schedule not in SCHEDULES:
            raise TrainError(f"{{schedule}} {self.schedule!r}: use one of {', '.join(SCHEDULES)}", "schedule")
        if self.lr is None:
            object.__setattr__(self, "lr", DEFAULT_LR[self.optimizer])
        # a run folder travels: an image folder and the download cache are kept as absolute paths
        if self.data not in DATA_NAMES and os.path.exists(self.data):
            object.__setattr__(self, "data", os.path.abspath(self.data))
        if self.cache_dir is not None:
            object.__setattr__(self, "cache_dir", os.path.abspath(self.cache_dir))

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


def lr_factor(cfg: TrainConfig, epoch: int) -> float:
    """The learning rate of (0-based) ``epoch`` as a multiple of ``cfg.lr``: the paper's tenfold
    drops at :func:`paper_milestones` of ``cfg.epochs``, or a cosine from 1 to 0 over ``cfg.epochs``.

    A run extended with ``--resume --epochs N`` goes on with the schedule of an N-epoch run from
    the epoch it stopped at (the epochs already trained are not repeated)."""
    if cfg.schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * epoch / cfg.epochs))
    return 0.1 ** sum(epoch >= m for m in paper_milestones(cfg.epochs))


def paper_milestones(epochs: int) -> tuple[int, ...]:
    """Epochs after which the learning rate drops tenfold: each time the remaining epochs halve.

    400 epochs give (200, 300, 350, 375) as in the paper; four drops at most, as there.
    """
    return tuple(sorted({epochs - epochs // 2**i for i in range(1, 5)} - {0, epochs}))

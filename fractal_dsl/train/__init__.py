"""Training and evaluation of a compiled network (imports torch; the CLI imports this lazily).

``config`` (options, errors; no torch) -> ``data`` (in-memory tensors) -> ``loop`` (SGD with
the paper's schedule, per-column evaluation, files) with ``checkpoint`` (atomic, safe to load),
``distributed`` (torchrun / DDP) and ``plots`` (curves.png).
"""

import sys
import types

from .config import Interrupted, TrainConfig, TrainError, paper_milestones
from .loop import evaluate, evaluate_checkpoint, train

__all__ = ["Interrupted", "TrainConfig", "TrainError", "evaluate", "evaluate_checkpoint", "paper_milestones", "train"]


class _TrainPackage(types.ModuleType):
    """``fractal_dsl.train(program, train_loader, test_loader, ...)`` calls
    :func:`fractal_dsl.train.custom.train` once this package is imported, as before."""

    def __call__(self, *args, **kwargs):
        from .custom import train as train_on

        return train_on(*args, **kwargs)


sys.modules[__name__].__class__ = _TrainPackage

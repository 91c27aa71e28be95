"""Training and evaluation of a compiled network (imports torch; the CLI imports this lazily).

``config`` (options, errors; no torch) -> ``data`` (in-memory tensors) -> ``loop`` (SGD with
the paper's schedule, per-column evaluation, files) with ``checkpoint`` (atomic, safe to load),
``distributed`` (torchrun / DDP) and ``plots`` (curves.png).
"""

import importlib
import sys
import types

__all__ = ["Interrupted", "TrainConfig", "TrainError", "evaluate", "evaluate_checkpoint", "paper_milestones", "train"]


def __getattr__(name: str):
    """The names above, imported when first asked for: importing one module of the package
    (``export`` imports ``train.checkpoint``) does not import the training loop."""
    if name in ("Interrupted", "TrainConfig", "TrainError", "paper_milestones"):
        from . import config

        return getattr(config, name)
    if name in ("evaluate", "evaluate_checkpoint", "train"):
        from . import loop

        return getattr(loop, name)
    try:
        return importlib.import_module(f"{__name__}.{name}")  # a module of the package: train.loop
    except ModuleNotFoundError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None


class _TrainPackage(types.ModuleType):
    """``fractal_dsl.train(program, train_loader, test_loader, ...)`` calls
    :func:`fractal_dsl.train.custom.train` once this package is imported, as before."""

    def __call__(self, *args, **kwargs):
        from .custom import train as train_on

        return train_on(*args, **kwargs)


sys.modules[__name__].__class__ = _TrainPackage

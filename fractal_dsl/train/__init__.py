"""Training and evaluation of a compiled network (imports torch; the CLI imports this lazily).

``config`` (options, errors; no torch) -> ``data`` (in-memory tensors) -> ``loop`` (SGD with
the paper's schedule, per-column evaluation, files) with ``checkpoint`` (atomic, safe to load),
``distributed`` (torchrun / DDP) and ``plots`` (curves.png).
"""

from .config import Interrupted, TrainConfig, TrainError, paper_milestones
from .loop import evaluate, evaluate_checkpoint, train

__all__ = ["Interrupted", "TrainConfig", "TrainError", "evaluate", "evaluate_checkpoint", "paper_milestones", "train"]

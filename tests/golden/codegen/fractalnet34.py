r"""FractalNet fractalnet34, compiled by fractal-dsl 0.1.0.

Source: examples/fractalnet34.fdsl
Source sha256: 271c79aebb29daa493c6f8dbe3825275fd2b57880ed3f9853da2e540376331a3

Larsson, Maire and Shakhnarovich, "FractalNet: Ultra-Deep Neural Networks without
Residuals", ICLR 2017 (arXiv:1605.07648).

4 columns, 4 blocks, 41,359,784 parameters; joins take the element-wise mean
of their inputs. Submodules are named by position:
``block{B}.column{K}.layer{I}`` is the I-th layer unit of column K in block B
(column 1 is the shallowest), ``block{B}.pool`` the pool after block B.

Drop-path (training only; eval mode drops nothing). Each mini-batch (or each sample,
``drop_path_per="sample"``) is global with probability ``drop_path_global``, else local:

* global: one column is chosen for the whole network; every join keeps the input that
  carries it, so only that column's path runs;
* local: every join drops each input with probability ``drop_path_local`` and keeps at
  least one (if all were dropped, the one with the largest draw survives);
* a join combines its survivors as in eval mode, renormalised: mean of the survivors;
  sum times (inputs / survivors); max of the survivors; concat with zeros in place of
  the dropped inputs.

Per mini-batch, layers that no surviving path uses are not computed at all;
``compute_all=True`` computes every layer and masks instead (a fixed graph for
torch.compile or DDP). Sampling uses torch's random generator (``generator``, else the
global one), so ``torch.manual_seed`` makes runs reproducible.

Convolution and linear weights start from ``init`` ("xavier" by default:
Xavier/Glorot uniform, as in the paper).

Generated code: edit the .fdsl source and compile again instead of editing this file.
"""

from __future__ import annotations

import functools
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

__all__ = ["NUM_COLUMNS", "Fractalnet34", "build", "sample_drop_path"]

NUM_COLUMNS = 4
DEFAULT_DROP_PATH_LOCAL = 0.15
DEFAULT_DROP_PATH_GLOBAL = 0.5
DEFAULT_INIT = "xavier"

# The graph in topological order: (node id, submodule, columns through it, consumers),
# where each consumer is (node, join or -1, input index of that join).
_NODES = (
    ("input", "", (1, 2, 3, 4), ((1, -1, 0),)),
    ("stem", "stem", (1, 2, 3, 4), ((2, -1, 0), (4, -1, 0), (9, -1, 0), (19, -1, 0))),
    ("b1_c4_d1_conv", "block1.column4.layer1", (4,), ((3, -1, 0),)),
    ("b1_c4_d2_conv", "block1.column4.layer2", (4,), ((5, 0, 0),)),
    ("b1_c3_d1_conv", "block1.column3.layer1", (3,), ((5, 0, 1),)),
    ("b1_join_d2", "", (3, 4), ((6, -1, 0), (8, -1, 0))),
    ("b1_c4_d3_conv", "block1.column4.layer3", (4,), ((7, -1, 0),)),
    ("b1_c4_d4_conv", "block1.column4.layer4", (4,), ((10, 1, 0),)),
    ("b1_c3_d3_conv", "block1.column3.layer2", (3,), ((10, 1, 1),)),
    ("b1_c2_d1_conv", "block1.column2.layer1", (2,), ((10, 1, 2),)),
    ("b1_join_d4", "", (2, 3, 4), ((11, -1, 0), (13, -1, 0), (18, -1, 0))),
    ("b1_c4_d5_conv", "block1.column4.layer5", (4,), ((12, -1, 0),)),
    ("b1_c4_d6_conv", "block1.column4.layer6", (4,), ((14, 2, 0),)),
    ("b1_c3_d5_conv", "block1.column3.layer3", (3,), ((14, 2, 1),)),
    ("b1_join_d6", "", (3, 4), ((15, -1, 0), (17, -1, 0))),
    ("b1_c4_d7_conv", "block1.column4.layer7", (4,), ((16, -1, 0),)),
    ("b1_c4_d8_conv", "block1.column4.layer8", (4,), ((20, 3, 0),)),
    ("b1_c3_d7_conv", "block1.column3.layer4", (3,), ((20, 3, 1),)),
    ("b1_c2_d5_conv", "block1.column2.layer2", (2,), ((20, 3, 2),)),
    ("b1_c1_d1_conv", "block1.column1.layer1", (1,), ((20, 3, 3),)),
    ("b1_join_d8", "", (1, 2, 3, 4), ((21, -1, 0),)),
    (
        "b1_pool",
        "block1.pool",
        (1, 2, 3, 4),
        ((22, -1, 0), (24, -1, 0), (29, -1, 0), (39, -1, 0)),
    ),
    ("b2_c4_d1_conv", "block2.column4.layer1", (4,), ((23, -1, 0),)),
    ("b2_c4_d2_conv", "block2.column4.layer2", (4,), ((25, 4, 0),)),
    ("b2_c3_d1_conv", "block2.column3.layer1", (3,), ((25, 4, 1),)),
    ("b2_join_d2", "", (3, 4), ((26, -1, 0), (28, -1, 0))),
    ("b2_c4_d3_conv", "block2.column4.layer3", (4,), ((27, -1, 0),)),
    ("b2_c4_d4_conv", "block2.column4.layer4", (4,), ((30, 5, 0),)),
    ("b2_c3_d3_conv", "block2.column3.layer2", (3,), ((30, 5, 1),)),
    ("b2_c2_d1_conv", "block2.column2.layer1", (2,), ((30, 5, 2),)),
    ("b2_join_d4", "", (2, 3, 4), ((31, -1, 0), (33, -1, 0), (38, -1, 0))),
    ("b2_c4_d5_conv", "block2.column4.layer5", (4,), ((32, -1, 0),)),
    ("b2_c4_d6_conv", "block2.column4.layer6", (4,), ((34, 6, 0),)),
    ("b2_c3_d5_conv", "block2.column3.layer3", (3,), ((34, 6, 1),)),
    ("b2_join_d6", "", (3, 4), ((35, -1, 0), (37, -1, 0))),
    ("b2_c4_d7_conv", "block2.column4.layer7", (4,), ((36, -1, 0),)),
    ("b2_c4_d8_conv", "block2.column4.layer8", (4,), ((40, 7, 0),)),
    ("b2_c3_d7_conv", "block2.column3.layer4", (3,), ((40, 7, 1),)),
    ("b2_c2_d5_conv", "block2.column2.layer2", (2,), ((40, 7, 2),)),
    ("b2_c1_d1_conv", "block2.column1.layer1", (1,), ((40, 7, 3),)),
    ("b2_join_d8", "", (1, 2, 3, 4), ((41, -1, 0),)),
    (
        "b2_pool",
        "block2.pool",
        (1, 2, 3, 4),
        ((42, -1, 0), (44, -1, 0), (49, -1, 0), (59, -1, 0)),
    ),
    ("b3_c4_d1_conv", "block3.column4.layer1", (4,), ((43, -1, 0),)),
    ("b3_c4_d2_conv", "block3.column4.layer2", (4,), ((45, 8, 0),)),
    ("b3_c3_d1_conv", "block3.column3.layer1", (3,), ((45, 8, 1),)),
    ("b3_join_d2", "", (3, 4), ((46, -1, 0), (48, -1, 0))),
    ("b3_c4_d3_conv", "block3.column4.layer3", (4,), ((47, -1, 0),)),
    ("b3_c4_d4_conv", "block3.column4.layer4", (4,), ((50, 9, 0),)),
    ("b3_c3_d3_conv", "block3.column3.layer2", (3,), ((50, 9, 1),)),
    ("b3_c2_d1_conv", "block3.column2.layer1", (2,), ((50, 9, 2),)),
    ("b3_join_d4", "", (2, 3, 4), ((51, -1, 0), (53, -1, 0), (58, -1, 0))),
    ("b3_c4_d5_conv", "block3.column4.layer5", (4,), ((52, -1, 0),)),
    ("b3_c4_d6_conv", "block3.column4.layer6", (4,), ((54, 10, 0),)),
    ("b3_c3_d5_conv", "block3.column3.layer3", (3,), ((54, 10, 1),)),
    ("b3_join_d6", "", (3, 4), ((55, -1, 0), (57, -1, 0))),
    ("b3_c4_d7_conv", "block3.column4.layer7", (4,), ((56, -1, 0),)),
    ("b3_c4_d8_conv", "block3.column4.layer8", (4,), ((60, 11, 0),)),
    ("b3_c3_d7_conv", "block3.column3.layer4", (3,), ((60, 11, 1),)),
    ("b3_c2_d5_conv", "block3.column2.layer2", (2,), ((60, 11, 2),)),
    ("b3_c1_d1_conv", "block3.column1.layer1", (1,), ((60, 11, 3),)),
    ("b3_join_d8", "", (1, 2, 3, 4), ((61, -1, 0),)),
    (
        "b3_pool",
        "block3.pool",
        (1, 2, 3, 4),
        ((62, -1, 0), (64, -1, 0), (69, -1, 0), (79, -1, 0)),
    ),
    ("b4_c4_d1_conv", "block4.column4.layer1", (4,), ((63, -1, 0),)),
    ("b4_c4_d2_conv", "block4.column4.layer2", (4,), ((65, 12, 0),)),
    ("b4_c3_d1_conv", "block4.column3.layer1", (3,), ((65, 12, 1),)),
    ("b4_join_d2", "", (3, 4), ((66, -1, 0), (68, -1, 0))),
    ("b4_c4_d3_conv", "block4.column4.layer3", (4,), ((67, -1, 0),)),
    ("b4_c4_d4_conv", "block4.column4.layer4", (4,), ((70, 13, 0),)),
    ("b4_c3_d3_conv", "block4.column3.layer2", (3,), ((70, 13, 1),)),
    ("b4_c2_d1_conv", "block4.column2.layer1", (2,), ((70, 13, 2),)),
    ("b4_join_d4", "", (2, 3, 4), ((71, -1, 0), (73, -1, 0), (78, -1, 0))),
    ("b4_c4_d5_conv", "block4.column4.layer5", (4,), ((72, -1, 0),)),
    ("b4_c4_d6_conv", "block4.column4.layer6", (4,), ((74, 14, 0),)),
    ("b4_c3_d5_conv", "block4.column3.layer3", (3,), ((74, 14, 1),)),
    ("b4_join_d6", "", (3, 4), ((75, -1, 0), (77, -1, 0))),
    ("b4_c4_d7_conv", "block4.column4.layer7", (4,), ((76, -1, 0),)),
    ("b4_c4_d8_conv", "block4.column4.layer8", (4,), ((80, 15, 0),)),
    ("b4_c3_d7_conv", "block4.column3.layer4", (3,), ((80, 15, 1),)),
    ("b4_c2_d5_conv", "block4.column2.layer2", (2,), ((80, 15, 2),)),
    ("b4_c1_d1_conv", "block4.column1.layer1", (1,), ((80, 15, 3),)),
    ("b4_join_d8", "", (1, 2, 3, 4), ((81, -1, 0),)),
    ("b4_pool", "block4.pool", (1, 2, 3, 4), ((82, -1, 0),)),
    ("head", "head", (1, 2, 3, 4), ((83, -1, 0),)),
    ("output", "", (1, 2, 3, 4), ()),
)
# The joins in order: (node id, rank of its tensors, channels and columns of each input).
_JOINS = (
    ("b1_join_d2", 4, (64, 64), ((4,), (3,))),
    ("b1_join_d4", 4, (64, 64, 64), ((4,), (3,), (2,))),
    ("b1_join_d6", 4, (64, 64), ((4,), (3,))),
    ("b1_join_d8", 4, (64, 64, 64, 64), ((4,), (3,), (2,), (1,))),
    ("b2_join_d2", 4, (128, 128), ((4,), (3,))),
    ("b2_join_d4", 4, (128, 128, 128), ((4,), (3,), (2,))),
    ("b2_join_d6", 4, (128, 128), ((4,), (3,))),
    ("b2_join_d8", 4, (128, 128, 128, 128), ((4,), (3,), (2,), (1,))),
    ("b3_join_d2", 4, (256, 256), ((4,), (3,))),
    ("b3_join_d4", 4, (256, 256, 256), ((4,), (3,), (2,))),
    ("b3_join_d6", 4, (256, 256), ((4,), (3,))),
    ("b3_join_d8", 4, (256, 256, 256, 256), ((4,), (3,), (2,), (1,))),
    ("b4_join_d2", 4, (512, 512), ((4,), (3,))),
    ("b4_join_d4", 4, (512, 512, 512), ((4,), (3,), (2,))),
    ("b4_join_d6", 4, (512, 512), ((4,), (3,))),
    ("b4_join_d8", 4, (512, 512, 512, 512), ((4,), (3,), (2,), (1,))),
)
# Every join input, flattened: the join it belongs to; where each join's inputs start.
_INPUT_JOIN = tuple(j for j, join in enumerate(_JOINS) for _ in join[2])
_FIRST = tuple(sum(len(join[2]) for join in _JOINS[:j]) for j in range(len(_JOINS)))
_NUM_INPUTS = len(_INPUT_JOIN)
_JOIN_OF = {join[0]: j for j, join in enumerate(_JOINS)}
_SPANS = tuple((join[0], _FIRST[j], len(join[2])) for j, join in enumerate(_JOINS))
# _ON_PATH[k - 1][i]: global drop-path on column k keeps join input i. A join with no
# input on the path keeps them all (nothing uses its output).
_ON_PATH = tuple(
    tuple(
        k in cols or not any(k in c for c in join[3])
        for join in _JOINS
        for cols in join[3]
    )
    for k in range(1, NUM_COLUMNS + 1)
)


class _Plan(NamedTuple):
    """What one forward pass computes.

    ``live[i]``: node i is used by a kept path; ``kept[j]``: the inputs join j keeps
    (None: all); ``masks``: (1 or batch, join inputs) booleans used instead of ``kept``.
    """

    live: tuple[bool, ...]
    kept: tuple[tuple[int, ...], ...] | None
    masks: Tensor | None


_FULL = _Plan((True,) * len(_NODES), None, None)


def _rand(shape: tuple[Any, ...], device: Any, generator: Any) -> Tensor:
    if generator is None:
        return torch.rand(shape, device=device)
    return torch.rand(shape, generator=generator, device=generator.device).to(device)


def _sample_masks(
    num: Any,
    local: float,
    global_ratio: float,
    device: Any,
    generator: torch.Generator | None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Draw ``num`` drop-path samples with tensor ops only (traceable, no host sync).

    Returns ``is_global`` (num,), the global ``column`` (num,) counted from 1, and
    ``keep`` (num, join inputs): whether each join input survives.
    """
    draw = _rand((num, 2 + _NUM_INPUTS), device, generator)
    is_global = draw[:, 0] < global_ratio
    column = (draw[:, 1] * NUM_COLUMNS).long().clamp(max=NUM_COLUMNS - 1)
    u = draw[:, 2:]
    keep = u >= local
    join = torch.tensor(_INPUT_JOIN, dtype=torch.long, device=device).expand(num, -1)
    shape = (num, len(_JOINS))
    zeros = torch.zeros(shape, device=device)
    survivors = zeros.scatter_add(1, join, keep.to(zeros.dtype)).gather(1, join)
    best = torch.full(shape, -1.0, device=device).scatter_reduce(1, join, u, "amax")
    keep = keep | ((survivors == 0) & (u == best.gather(1, join)))
    on_path = torch.tensor(_ON_PATH, dtype=torch.bool, device=device)[column]
    keep = torch.where(is_global[:, None], on_path, keep)
    return is_global, column + 1, keep


def _to_sample(is_global: Tensor, column: Tensor, keep: Tensor) -> dict[str, Any]:
    """The dict form of a drop-path sample (see ``sample_drop_path``); one row (a batch,
    or a single example drawn per sample) has the per-batch form."""
    if keep.shape[0] != 1:
        masks = {name: keep[:, a : a + n] for name, a, n in _SPANS}
        columns = torch.where(is_global, column, torch.zeros_like(column))
        return {
            "mode": "per-sample",
            "column": None,
            "joins": {},
            "masks": masks,
            "global": is_global,
            "columns": columns,
        }
    flags = keep[0].tolist()
    joins = {name: tuple(i for i in range(n) if flags[a + i]) for name, a, n in _SPANS}
    if bool(is_global[0]):
        return {"mode": "global", "column": int(column[0]), "joins": joins}
    return {"mode": "local", "column": None, "joins": joins}


def sample_drop_path(
    generator: torch.Generator | None = None,
    *,
    local: float = DEFAULT_DROP_PATH_LOCAL,
    global_ratio: float = DEFAULT_DROP_PATH_GLOBAL,
    device: torch.device | str | None = None,
) -> dict[str, Any]:
    """Draw one per-batch drop-path sample, exactly as a training forward pass does.

    Returns ``{"mode": "global" | "local", "column": k or None, "joins": {join id:
    tuple of kept input indices}}``. Draws on ``generator``'s device (else ``device``,
    else the CPU) with torch's random generator.
    """
    device = device if device is not None else "cpu"
    return _to_sample(*_sample_masks(1, local, global_ratio, device, generator))


def _column_sample(column: int) -> dict[str, Any]:
    """The global drop-path sample that keeps only ``column``."""
    row = _ON_PATH[column - 1]
    joins = {name: tuple(i for i in range(n) if row[a + i]) for name, a, n in _SPANS}
    return {"mode": "global", "column": column, "joins": joins}


@functools.lru_cache(maxsize=4096)
def _live(kept: tuple[tuple[int, ...], ...]) -> tuple[bool, ...]:
    """Which nodes a kept path to the output uses (the others are not computed)."""
    live = [False] * len(_NODES)
    for v in range(len(_NODES) - 1, -1, -1):
        uses = _NODES[v][3]
        live[v] = not uses or any(
            live[w] and (j < 0 or i in kept[j]) for w, j, i in uses
        )
    return tuple(live)


def _plan_of(sample: dict[str, Any]) -> _Plan:
    kept = tuple(tuple(sample["joins"][name]) for name, _, _ in _SPANS)
    return _Plan(_live(kept), kept, None)


def _join(xs: tuple[Any, ...], plan: _Plan, j: int) -> Tensor:
    """Element-wise mean of the kept inputs."""
    _, a, n = _SPANS[j]
    rank = _JOINS[j][1]
    if plan.masks is not None:
        w = plan.masks[:, a : a + n].to(xs[0].dtype)
        w = w / w.sum(1, keepdim=True)
        view = (-1,) + (1,) * (rank - 1)
        out = xs[0] * w[:, 0].reshape(view)
        for i in range(1, n):
            out = out + xs[i] * w[:, i].reshape(view)
        return out
    kept = xs if plan.kept is None else [xs[i] for i in plan.kept[j]]
    out = kept[0]
    for x in kept[1:]:
        out = out + x
    return out / len(kept) if len(kept) > 1 else out


def _init_weights(model: nn.Module, scheme: str) -> None:
    """Initialise convolution and linear weights: ``"xavier"`` (Glorot and Bengio,
    uniform; the paper's), ``"kaiming"`` (He, normal, for ReLU) or ``"torch"`` (PyTorch's
    defaults, left as they are). Biases start at zero; batch norm keeps weight 1, bias 0.
    """
    if scheme == "torch":
        return
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            if scheme == "xavier":
                nn.init.xavier_uniform_(m.weight)
            else:
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class Fractalnet34(nn.Module):
    """FractalNet fractalnet34: 4 columns, 4 blocks."""

    num_columns: int = NUM_COLUMNS

    def __init__(
        self,
        *,
        num_classes: int = 1000,
        drop_path: bool = True,
        drop_path_local: float = DEFAULT_DROP_PATH_LOCAL,
        drop_path_global: float = DEFAULT_DROP_PATH_GLOBAL,
        drop_path_per: str = "batch",
        dropout: bool = True,
        compute_all: bool = False,
        generator: torch.Generator | None = None,
        init: str = DEFAULT_INIT,
    ) -> None:
        super().__init__()
        if init not in ("xavier", "kaiming", "torch"):
            raise ValueError(
                f"init must be 'xavier', 'kaiming' or 'torch', not {init!r}"
            )
        if drop_path_per not in ("batch", "sample"):
            raise ValueError(
                f"drop_path_per must be 'batch' or 'sample', not {drop_path_per!r}"
            )
        for name, p in (
            ("drop_path_local", drop_path_local),
            ("drop_path_global", drop_path_global),
        ):
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, not {p!r}")
        self.num_classes = num_classes
        self.drop_path = drop_path
        self.drop_path_local = drop_path_local
        self.drop_path_global = drop_path_global
        self.drop_path_per = drop_path_per
        self.compute_all = compute_all
        self.generator = generator
        self._drop_path_hooks: OrderedDict[int, Callable[..., Any]] = OrderedDict()
        self._last_sample: dict[str, Any] | None = None
        self._last_masks: tuple[Tensor, Tensor, Tensor] | None = None
        self.stem = nn.Sequential(
            nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False),
            nn.BatchNorm2d(64),
            nn.ReLU(),
            nn.MaxPool2d(3, stride=2, padding=1),
        )
        self.block1 = nn.ModuleDict(
            {
                "column1": nn.ModuleDict(
                    {
                        "layer1": nn.Sequential(
                            nn.Conv2d(64, 64, 3, padding=1, bias=False),
                            nn.BatchNorm2d(64),
                            nn.ReLU(),
                        ),
                    },
                ),
                "column2": nn.ModuleDict(
                    {
                        "layer1": nn.Sequential(
                            nn.Conv2d(64, 64, 3, padding=1, bias=False),
                            nn.BatchNorm2d(64),
                            nn.ReLU(),
                        ),
                        "layer2": nn.Sequential(
                            nn.Conv2d(64, 64, 3, padding=1, bias=False),
                            nn.BatchNorm2d(64),
                            nn.ReLU(),
                        ),
                    },
                ),
                "column3": nn.ModuleDict(
                    {
                        "layer1": nn.Sequential(
                            nn.Conv2d(64, 64, 3, padding=1, bias=False),
                            nn.BatchNorm2d(64),
                            nn.ReLU(),
                        ),
                        "layer2": nn.Sequential(
                            nn.Conv2d(64, 64, 3, padding=1, bias=False),
                            nn.BatchNorm2d(64),
                            nn.ReLU(),
                        ),
                        "layer3": nn.Sequential(
                            nn.Conv2d(64, 64, 3, padding=1, bias=False),
                            nn.BatchNorm2d(64),
                            nn.ReLU(),
                        ),
                        "layer4": nn.Sequential(
                            nn.Conv2d(64, 64, 3, padding=1, bias=False),
                            nn.BatchNorm2d(64),
                            nn.ReLU(),
                        ),
                    },
                ),
                "column4": nn.ModuleDict(
                    {
                        "layer1": nn.Sequential(
                            nn.Conv2d(64, 64, 3, padding=1, bias=False),
                            nn.BatchNorm2d(64),
                            nn.ReLU(),
                        ),
                        "layer2": nn.Sequential(
                            nn.Conv2d(64, 64, 3, padding=1, bias=False),
                            nn.BatchNorm2d(64),
                            nn.ReLU(),
                        ),
                        "layer3": nn.Sequential(
                            nn.Conv2d(64, 64, 3, padding=1, bias=False),
                            nn.BatchNorm2d(64),
                            nn.ReLU(),
                        ),
                        "layer4": nn.Sequential(
                            nn.Conv2d(64, 64, 3, padding=1, bias=False),
                            nn.BatchNorm2d(64),
                            nn.ReLU(),
                        ),
                        "layer5": nn.Sequential(
                            nn.Conv2d(64, 64, 3, padding=1, bias=False),
                            nn.BatchNorm2d(64),
                            nn.ReLU(),
                        ),
                        "layer6": nn.Sequential(
                            nn.Conv2d(64, 64, 3, padding=1, bias=False),
                            nn.BatchNorm2d(64),
                            nn.ReLU(),
                        ),
                        "layer7": nn.Sequential(
                            nn.Conv2d(64, 64, 3, padding=1, bias=False),
                            nn.BatchNorm2d(64),
                            nn.ReLU(),
                        ),
                        "layer8": nn.Sequential(
                            nn.Conv2d(64, 64, 3, padding=1, bias=False),
                            nn.BatchNorm2d(64),
                            nn.ReLU(),
                        ),
                    },
                ),
                "pool": nn.Sequential(
                    nn.MaxPool2d(2),
                ),
            },
        )
        self.block2 = nn.ModuleDict(
            {
                "column1": nn.ModuleDict(
                    {
                        "layer1": nn.Sequential(
                            nn.Conv2d(64, 128, 3, padding=1, bias=False),
                            nn.BatchNorm2d(128),
                            nn.ReLU(),
                        ),
                    },
                ),
                "column2": nn.ModuleDict(
                    {
                        "layer1": nn.Sequential(
                            nn.Conv2d(64, 128, 3, padding=1, bias=False),
                            nn.BatchNorm2d(128),
                            nn.ReLU(),
                        ),
                        "layer2": nn.Sequential(
                            nn.Conv2d(128, 128, 3, padding=1, bias=False),
                            nn.BatchNorm2d(128),
                            nn.ReLU(),
                        ),
                    },
                ),
                "column3": nn.ModuleDict(
                    {
                        "layer1": nn.Sequential(
                            nn.Conv2d(64, 128, 3, padding=1, bias=False),
                            nn.BatchNorm2d(128),
                            nn.ReLU(),
                        ),
                        "layer2": nn.Sequential(
                            nn.Conv2d(128, 128, 3, padding=1, bias=False),
                            nn.BatchNorm2d(128),
                            nn.ReLU(),
                        ),
                        "layer3": nn.Sequential(
                            nn.Conv2d(128, 128, 3, padding=1, bias=False),
                            nn.BatchNorm2d(128),
                            nn.ReLU(),
                        ),
                        "layer4": nn.Sequential(
                            nn.Conv2d(128, 128, 3, padding=1, bias=False),
                            nn.BatchNorm2d(128),
                            nn.ReLU(),
                        ),
                    },
                ),
                "column4": nn.ModuleDict(
                    {
                        "layer1": nn.Sequential(
                            nn.Conv2d(64, 128, 3, padding=1, bias=False),
                            nn.BatchNorm2d(128),
                            nn.ReLU(),
                        ),
                        "layer2": nn.Sequential(
                            nn.Conv2d(128, 128, 3, padding=1, bias=False),
                            nn.BatchNorm2d(128),
                            nn.ReLU(),
                        ),
                        "layer3": nn.Sequential(
                            nn.Conv2d(128, 128, 3, padding=1, bias=False),
                            nn.BatchNorm2d(128),
                            nn.ReLU(),
                        ),
                        "layer4": nn.Sequential(
                            nn.Conv2d(128, 128, 3, padding=1, bias=False),
                            nn.BatchNorm2d(128),
                            nn.ReLU(),
                        ),
                        "layer5": nn.Sequential(
                            nn.Conv2d(128, 128, 3, padding=1, bias=False),
                            nn.BatchNorm2d(128),
                            nn.ReLU(),
                        ),
                        "layer6": nn.Sequential(
                            nn.Conv2d(128, 128, 3, padding=1, bias=False),
                            nn.BatchNorm2d(128),
                            nn.ReLU(),
                        ),
                        "layer7": nn.Sequential(
                            nn.Conv2d(128, 128, 3, padding=1, bias=False),
                            nn.BatchNorm2d(128),
                            nn.ReLU(),
                        ),
                        "layer8": nn.Sequential(
                            nn.Conv2d(128, 128, 3, padding=1, bias=False),
                            nn.BatchNorm2d(128),
                            nn.ReLU(),
                        ),
                    },
                ),
                "pool": nn.Sequential(
                    nn.MaxPool2d(2),
                ),
            },
        )
        self.block3 = nn.ModuleDict(
            {
                "column1": nn.ModuleDict(
                    {
                        "layer1": nn.Sequential(
                            nn.Conv2d(128, 256, 3, padding=1, bias=False),
                            nn.BatchNorm2d(256),
                            nn.ReLU(),
                        ),
                    },
                ),
                "column2": nn.ModuleDict(
                    {
                        "layer1": nn.Sequential(
                            nn.Conv2d(128, 256, 3, padding=1, bias=False),
                            nn.BatchNorm2d(256),
                            nn.ReLU(),
                        ),
                        "layer2": nn.Sequential(
                            nn.Conv2d(256, 256, 3, padding=1, bias=False),
                            nn.BatchNorm2d(256),
                            nn.ReLU(),
                        ),
                    },
                ),
                "column3": nn.ModuleDict(
                    {
                        "layer1": nn.Sequential(
                            nn.Conv2d(128, 256, 3, padding=1, bias=False),
                            nn.BatchNorm2d(256),
                            nn.ReLU(),
                        ),
                        "layer2": nn.Sequential(
                            nn.Conv2d(256, 256, 3, padding=1, bias=False),
                            nn.BatchNorm2d(256),
                            nn.ReLU(),
                        ),
                        "layer3": nn.Sequential(
                            nn.Conv2d(256, 256, 3, padding=1, bias=False),
                            nn.BatchNorm2d(256),
                            nn.ReLU(),
                        ),
                        "layer4": nn.Sequential(
                            nn.Conv2d(256, 256, 3, padding=1, bias=False),
                            nn.BatchNorm2d(256),
                            nn.ReLU(),
                        ),
                    },
                ),
                "column4": nn.ModuleDict(
                    {
                        "layer1": nn.Sequential(
                            nn.Conv2d(128, 256, 3, padding=1, bias=False),
                            nn.BatchNorm2d(256),
                            nn.ReLU(),
                        ),
                        "layer2": nn.Sequential(
                            nn.Conv2d(256, 256, 3, padding=1, bias=False),
                            nn.BatchNorm2d(256),
                            nn.ReLU(),
                        ),
                        "layer3": nn.Sequential(
                            nn.Conv2d(256, 256, 3, padding=1, bias=False),
                            nn.BatchNorm2d(256),
                            nn.ReLU(),
                        ),
                        "layer4": nn.Sequential(
                            nn.Conv2d(256, 256, 3, padding=1, bias=False),
                            nn.BatchNorm2d(256),
                            nn.ReLU(),
                        ),
                        "layer5": nn.Sequential(
                            nn.Conv2d(256, 256, 3, padding=1, bias=False),
                            nn.BatchNorm2d(256),
                            nn.ReLU(),
                        ),
                        "layer6": nn.Sequential(
                            nn.Conv2d(256, 256, 3, padding=1, bias=False),
                            nn.BatchNorm2d(256),
                            nn.ReLU(),
                        ),
                        "layer7": nn.Sequential(
                            nn.Conv2d(256, 256, 3, padding=1, bias=False),
                            nn.BatchNorm2d(256),
                            nn.ReLU(),
                        ),
                        "layer8": nn.Sequential(
                            nn.Conv2d(256, 256, 3, padding=1, bias=False),
                            nn.BatchNorm2d(256),
                            nn.ReLU(),
                        ),
                    },
                ),
                "pool": nn.Sequential(
                    nn.MaxPool2d(2),
                ),
            },
        )
        self.block4 = nn.ModuleDict(
            {
                "column1": nn.ModuleDict(
                    {
                        "layer1": nn.Sequential(
                            nn.Conv2d(256, 512, 3, padding=1, bias=False),
                            nn.BatchNorm2d(512),
                            nn.ReLU(),
                        ),
                    },
                ),
                "column2": nn.ModuleDict(
                    {
                        "layer1": nn.Sequential(
                            nn.Conv2d(256, 512, 3, padding=1, bias=False),
                            nn.BatchNorm2d(512),
                            nn.ReLU(),
                        ),
                        "layer2": nn.Sequential(
                            nn.Conv2d(512, 512, 3, padding=1, bias=False),
                            nn.BatchNorm2d(512),
                            nn.ReLU(),
                        ),
                    },
                ),
                "column3": nn.ModuleDict(
                    {
                        "layer1": nn.Sequential(
                            nn.Conv2d(256, 512, 3, padding=1, bias=False),
                            nn.BatchNorm2d(512),
                            nn.ReLU(),
                        ),
                        "layer2": nn.Sequential(
                            nn.Conv2d(512, 512, 3, padding=1, bias=False),
                            nn.BatchNorm2d(512),
                            nn.ReLU(),
                        ),
                        "layer3": nn.Sequential(
                            nn.Conv2d(512, 512, 3, padding=1, bias=False),
                            nn.BatchNorm2d(512),
                            nn.ReLU(),
                        ),
                        "layer4": nn.Sequential(
                            nn.Conv2d(512, 512, 3, padding=1, bias=False),
                            nn.BatchNorm2d(512),
                            nn.ReLU(),
                        ),
                    },
                ),
                "column4": nn.ModuleDict(
                    {
                        "layer1": nn.Sequential(
                            nn.Conv2d(256, 512, 3, padding=1, bias=False),
                            nn.BatchNorm2d(512),
                            nn.ReLU(),
                        ),
                        "layer2": nn.Sequential(
                            nn.Conv2d(512, 512, 3, padding=1, bias=False),
                            nn.BatchNorm2d(512),
                            nn.ReLU(),
                        ),
                        "layer3": nn.Sequential(
                            nn.Conv2d(512, 512, 3, padding=1, bias=False),
                            nn.BatchNorm2d(512),
                            nn.ReLU(),
                        ),
                        "layer4": nn.Sequential(
                            nn.Conv2d(512, 512, 3, padding=1, bias=False),
                            nn.BatchNorm2d(512),
                            nn.ReLU(),
                        ),
                        "layer5": nn.Sequential(
                            nn.Conv2d(512, 512, 3, padding=1, bias=False),
                            nn.BatchNorm2d(512),
                            nn.ReLU(),
                        ),
                        "layer6": nn.Sequential(
                            nn.Conv2d(512, 512, 3, padding=1, bias=False),
                            nn.BatchNorm2d(512),
                            nn.ReLU(),
                        ),
                        "layer7": nn.Sequential(
                            nn.Conv2d(512, 512, 3, padding=1, bias=False),
                            nn.BatchNorm2d(512),
                            nn.ReLU(),
                        ),
                        "layer8": nn.Sequential(
                            nn.Conv2d(512, 512, 3, padding=1, bias=False),
                            nn.BatchNorm2d(512),
                            nn.ReLU(),
                        ),
                    },
                ),
                "pool": nn.Sequential(
                    nn.MaxPool2d(1),
                ),
            },
        )
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(512, num_classes),
        )
        _init_weights(self, init)

    @property
    def last_drop_path(self) -> dict[str, Any] | None:
        """The drop-path sample of the last training forward pass (None before one)."""
        if self._last_sample is None and self._last_masks is not None:
            self._last_sample = _to_sample(*self._last_masks)
        return self._last_sample

    def register_drop_path_hook(self, fn: Callable[..., Any]) -> RemovableHandle:
        """Call ``fn(model, sample)`` on every drop-path sample drawn in training.

        Per mini-batch, ``fn`` may return a sample dict to use instead (to steer).
        """
        handle = RemovableHandle(self._drop_path_hooks)
        self._drop_path_hooks[handle.id] = fn
        return handle

    def _plan(self, x: Tensor, column: Any) -> _Plan:
        if isinstance(column, torch.fx.Proxy):
            column = None  # torch.fx traces column=None; concrete_args picks a column
        if column is not None:
            if not 1 <= column <= NUM_COLUMNS:
                raise ValueError(f"column must be 1..{NUM_COLUMNS}, not {column!r}")
            return _plan_of(_column_sample(column))
        if not (self.training and self.drop_path):
            return _FULL
        per_sample = self.drop_path_per == "sample"
        if per_sample or self.compute_all:
            masks = _sample_masks(
                x.shape[0] if per_sample else 1,
                self.drop_path_local,
                self.drop_path_global,
                x.device,
                self.generator,
            )
            if not isinstance(masks[2], torch.fx.Proxy):
                self._last_sample, self._last_masks = None, masks
            if self._drop_path_hooks:
                sample = self._call_hooks(self.last_drop_path)
                if not per_sample:
                    flags = [
                        i in sample["joins"][name]
                        for name, _, n in _SPANS
                        for i in range(n)
                    ]
                    masks = (masks[0], masks[1], torch.tensor([flags], device=x.device))
                    self._last_sample = sample
            return _Plan(_FULL.live, None, masks[2])
        device = self.generator.device if self.generator is not None else "cpu"
        sample = sample_drop_path(
            self.generator,
            local=self.drop_path_local,
            global_ratio=self.drop_path_global,
            device=device,
        )
        self._last_sample, self._last_masks = self._call_hooks(sample), None
        return _plan_of(self._last_sample)

    def _call_hooks(self, sample: Any) -> Any:
        for fn in list(self._drop_path_hooks.values()):
            steered = fn(self, sample)
            if steered is not None:
                sample = steered
        return sample

    def _forward_block1(self, x: Tensor, plan: _Plan) -> Tensor:
        block, live = self.block1, plan.live
        c4_1 = block.column4.layer1(x) if live[2] else None
        c4_2 = block.column4.layer2(c4_1) if live[3] else None
        c3_1 = block.column3.layer1(x) if live[4] else None
        j1 = _join((c4_2, c3_1), plan, 0) if live[5] else None
        c4_3 = block.column4.layer3(j1) if live[6] else None
        c4_4 = block.column4.layer4(c4_3) if live[7] else None
        c3_2 = block.column3.layer2(j1) if live[8] else None
        c2_1 = block.column2.layer1(x) if live[9] else None
        j2 = _join((c4_4, c3_2, c2_1), plan, 1) if live[10] else None
        c4_5 = block.column4.layer5(j2) if live[11] else None
        c4_6 = block.column4.layer6(c4_5) if live[12] else None
        c3_3 = block.column3.layer3(j2) if live[13] else None
        j3 = _join((c4_6, c3_3), plan, 2) if live[14] else None
        c4_7 = block.column4.layer7(j3) if live[15] else None
        c4_8 = block.column4.layer8(c4_7) if live[16] else None
        c3_4 = block.column3.layer4(j3) if live[17] else None
        c2_2 = block.column2.layer2(j2) if live[18] else None
        c1_1 = block.column1.layer1(x) if live[19] else None
        j4 = _join((c4_8, c3_4, c2_2, c1_1), plan, 3) if live[20] else None
        return block.pool(j4)

    def _forward_block2(self, x: Tensor, plan: _Plan) -> Tensor:
        block, live = self.block2, plan.live
        c4_1 = block.column4.layer1(x) if live[22] else None
        c4_2 = block.column4.layer2(c4_1) if live[23] else None
        c3_1 = block.column3.layer1(x) if live[24] else None
        j1 = _join((c4_2, c3_1), plan, 4) if live[25] else None
        c4_3 = block.column4.layer3(j1) if live[26] else None
        c4_4 = block.column4.layer4(c4_3) if live[27] else None
        c3_2 = block.column3.layer2(j1) if live[28] else None
        c2_1 = block.column2.layer1(x) if live[29] else None
        j2 = _join((c4_4, c3_2, c2_1), plan, 5) if live[30] else None
        c4_5 = block.column4.layer5(j2) if live[31] else None
        c4_6 = block.column4.layer6(c4_5) if live[32] else None
        c3_3 = block.column3.layer3(j2) if live[33] else None
        j3 = _join((c4_6, c3_3), plan, 6) if live[34] else None
        c4_7 = block.column4.layer7(j3) if live[35] else None
        c4_8 = block.column4.layer8(c4_7) if live[36] else None
        c3_4 = block.column3.layer4(j3) if live[37] else None
        c2_2 = block.column2.layer2(j2) if live[38] else None
        c1_1 = block.column1.layer1(x) if live[39] else None
        j4 = _join((c4_8, c3_4, c2_2, c1_1), plan, 7) if live[40] else None
        return block.pool(j4)

    def _forward_block3(self, x: Tensor, plan: _Plan) -> Tensor:
        block, live = self.block3, plan.live
        c4_1 = block.column4.layer1(x) if live[42] else None
        c4_2 = block.column4.layer2(c4_1) if live[43] else None
        c3_1 = block.column3.layer1(x) if live[44] else None
        j1 = _join((c4_2, c3_1), plan, 8) if live[45] else None
        c4_3 = block.column4.layer3(j1) if live[46] else None
        c4_4 = block.column4.layer4(c4_3) if live[47] else None
        c3_2 = block.column3.layer2(j1) if live[48] else None
        c2_1 = block.column2.layer1(x) if live[49] else None
        j2 = _join((c4_4, c3_2, c2_1), plan, 9) if live[50] else None
        c4_5 = block.column4.layer5(j2) if live[51] else None
        c4_6 = block.column4.layer6(c4_5) if live[52] else None
        c3_3 = block.column3.layer3(j2) if live[53] else None
        j3 = _join((c4_6, c3_3), plan, 10) if live[54] else None
        c4_7 = block.column4.layer7(j3) if live[55] else None
        c4_8 = block.column4.layer8(c4_7) if live[56] else None
        c3_4 = block.column3.layer4(j3) if live[57] else None
        c2_2 = block.column2.layer2(j2) if live[58] else None
        c1_1 = block.column1.layer1(x) if live[59] else None
        j4 = _join((c4_8, c3_4, c2_2, c1_1), plan, 11) if live[60] else None
        return block.pool(j4)

    def _forward_block4(self, x: Tensor, plan: _Plan) -> Tensor:
        block, live = self.block4, plan.live
        c4_1 = block.column4.layer1(x) if live[62] else None
        c4_2 = block.column4.layer2(c4_1) if live[63] else None
        c3_1 = block.column3.layer1(x) if live[64] else None
        j1 = _join((c4_2, c3_1), plan, 12) if live[65] else None
        c4_3 = block.column4.layer3(j1) if live[66] else None
        c4_4 = block.column4.layer4(c4_3) if live[67] else None
        c3_2 = block.column3.layer2(j1) if live[68] else None
        c2_1 = block.column2.layer1(x) if live[69] else None
        j2 = _join((c4_4, c3_2, c2_1), plan, 13) if live[70] else None
        c4_5 = block.column4.layer5(j2) if live[71] else None
        c4_6 = block.column4.layer6(c4_5) if live[72] else None
        c3_3 = block.column3.layer3(j2) if live[73] else None
        j3 = _join((c4_6, c3_3), plan, 14) if live[74] else None
        c4_7 = block.column4.layer7(j3) if live[75] else None
        c4_8 = block.column4.layer8(c4_7) if live[76] else None
        c3_4 = block.column3.layer4(j3) if live[77] else None
        c2_2 = block.column2.layer2(j2) if live[78] else None
        c1_1 = block.column1.layer1(x) if live[79] else None
        j4 = _join((c4_8, c3_4, c2_2, c1_1), plan, 15) if live[80] else None
        return block.pool(j4)

    def forward_features(self, x: Tensor, column: int | None = None) -> Tensor:
        """Everything before the head; ``column=k`` runs only column k in every block."""
        plan = self._plan(x, column)
        x = self.stem(x)
        x = self._forward_block1(x, plan)
        x = self._forward_block2(x, plan)
        x = self._forward_block3(x, plan)
        x = self._forward_block4(x, plan)
        return x

    def forward_head(self, x: Tensor) -> Tensor:
        return self.head(x)

    def forward(self, x: Tensor, column: int | None = None) -> Tensor:
        return self.forward_head(self.forward_features(x, column))

    def extract_column(self, k: int) -> nn.Sequential:
        """Column k alone as a plain ``nn.Sequential`` sharing this model's weights."""
        if not 1 <= k <= NUM_COLUMNS:
            raise ValueError(f"column must be 1..{NUM_COLUMNS}, not {k!r}")
        steps: OrderedDict[str, nn.Module] = OrderedDict()
        row = _ON_PATH[k - 1]
        for node, module, columns, _ in _NODES:
            if k not in columns:
                continue
            if module:
                steps[module.replace(".", "_")] = self.get_submodule(module)
                continue
            j = _JOIN_OF.get(node, -1)
            if j < 0:
                continue
            _, a, n = _SPANS[j]
            kept = [i for i in range(n) if row[a + i]]
            if len(kept) != 1:
                raise ValueError(
                    f"column {k} is not a chain of layers: {node} keeps {kept}"
                )
        return nn.Sequential(steps)


def build(**overrides: Any) -> Fractalnet34:
    """Build the network; ``overrides`` are Fractalnet34's keyword arguments."""
    return Fractalnet34(**overrides)

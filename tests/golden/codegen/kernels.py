r"""FractalNet kernels, compiled by fractal-dsl 0.1.0.

Source: examples/kernels.fdsl
Source sha256: 8674efdb35ece59d8ba820172fcc7d3d86692e8c958bd602181ba6b093a4c68e

Larsson, Maire and Shakhnarovich, "FractalNet: Ultra-Deep Neural Networks without
Residuals", ICLR 2017 (arXiv:1605.07648).

3 columns, 3 blocks, 495,578 parameters; joins take the element-wise mean
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

Per mini-batch, layers that no surviving path uses are not computed at all. Per sample,
each layer runs on the examples whose paths use it (``_per_sample``; one that no example
uses does not run, one that a single example of a larger batch uses runs on the whole
batch) and the joins mask per example. ``compute_all=True`` computes every layer for
the whole batch and masks instead (a fixed graph without host syncs, for torch.compile
or DDP). Without batch statistics the two give the same outputs. In training, batch norm
per sample normalises over the examples that run through it; with ``compute_all=True``
over the whole batch, once per batch. Sampling uses torch's random generator
(``generator``, else the global one), so ``torch.manual_seed`` makes runs reproducible.

Input: images as a data set gives them, floats in [0, 1] of shape N x 1x16x16
(channels first); ``forward`` refuses any other shape with a one-line error. The module
normalises them itself: ``normalize.mean`` and ``normalize.std`` (one value per channel)
are buffers, the identity (0 and 1) until ``fractal-dsl train`` sets them from its
training images, so they travel in the checkpoint with the weights.

Batch norm keeps running statistics per path (switchable batch norm, Yu et al., "Slimmable
Neural Networks", ICLR 2019): drop-path trains every column through the same layers, and no
single set of statistics fits them all. Each ``PathBatchNorm2d`` keeps the whole network's
in the usual ``running_mean``, ``running_var`` and ``num_batches_tracked``, and column K's
in ``running_mean_cK``, ``running_var_cK`` and ``num_batches_tracked_cK`` for every
column K whose path runs through it. ``model(x, column=k)`` uses (and in training mode
updates) column k's, ``model(x)`` the whole network's; training with drop-path uses the
whole network's, as a plain ``nn.BatchNorm2d`` does. ``recalibrate_bn(model, batches,
column=None)`` re-estimates one path's from images of your own. A state_dict without the
per-path statistics (a checkpoint of an older fractal-dsl) still loads, with a
warning: every path then starts from the whole network's.

Convolution and linear weights start from ``init`` ("xavier" by default:
Xavier/Glorot uniform, as in the paper).

Generated code: edit the .fdsl source and compile again instead of editing this file.
"""

from __future__ import annotations

import functools
import itertools
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

__all__ = [
    "INPUT_SHAPE",
    "NUM_COLUMNS",
    "Kernels",
    "PathBatchNorm2d",
    "build",
    "column_sample",
    "recalibrate_bn",
    "sample_drop_path",
]

INPUT_SHAPE = (1, 16, 16)  # channels, height, width of one image
NUM_COLUMNS = 3
DEFAULT_DROP_PATH_LOCAL = 0.15
DEFAULT_DROP_PATH_GLOBAL = 0.5
DEFAULT_INIT = "xavier"


# ---- the layer key: one function per entry, each building one unit ---------------------


# examples/kernels.fdsl:9
#   conv(c, p) = conv(c, kernel=9 - 2 * column, bias=false) . dropout(p) . batchnorm .
#   relu
def conv(
    in_channels: int,
    c: int,
    p: float,
    kernel_0: int,
    padding_0: int,
    dropout: bool,
) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, c, kernel_0, padding=padding_0, bias=False),
        nn.Dropout(p if dropout else 0.0),
        PathBatchNorm2d(c),
        nn.ReLU(),
    )


# examples/kernels.fdsl:11
#   pool = maxpool(2)
def pool() -> nn.Sequential:
    return nn.Sequential(
        nn.MaxPool2d(2),
    )


# examples/kernels.fdsl:12
#   head = gap . flatten . linear(classes)
def head(in_channels: int, num_classes: int) -> nn.Sequential:
    return nn.Sequential(
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(in_channels, num_classes),
    )


# ---- the units of each block, built by the class's __init__ -------------------------------

# The units of blocks 1 to 3, in the order of the state_dict keys: (submodule, layers,
# function, arguments), each argument a name of the block's values in _BLOCKS (or the
# class's own dropout / num_classes); a row builds column{K}.layer{I} for I in layers.
_UNITS1 = (
    (
        "column1",
        range(1, 2),
        conv,
        ("in_channels", "c", "p", "kernel_0", "padding_0", "dropout"),
    ),
    (
        "column2",
        range(1, 2),
        conv,
        ("in_channels", "c", "p", "kernel_0_2", "padding_0_2", "dropout"),
    ),
    (
        "column2",
        range(2, 3),
        conv,
        ("c", "c", "p", "kernel_0_2", "padding_0_2", "dropout"),
    ),
    (
        "column3",
        range(1, 2),
        conv,
        ("in_channels", "c", "p", "kernel_0_3", "padding_0_3", "dropout"),
    ),
    (
        "column3",
        range(2, 5),
        conv,
        ("c", "c", "p", "kernel_0_3", "padding_0_3", "dropout"),
    ),
    ("pool", None, pool, ()),
)

# Each block: its table of units and its values.
_BLOCKS = (
    (
        _UNITS1,
        {
            "in_channels": 1,
            "c": 16,
            "p": 0.0,
            "kernel_0": 7,
            "padding_0": 3,
            "kernel_0_2": 5,
            "padding_0_2": 2,
            "kernel_0_3": 3,
            "padding_0_3": 1,
        },
    ),
    (
        _UNITS1,
        {
            "in_channels": 16,
            "c": 32,
            "p": 0.1,
            "kernel_0": 7,
            "padding_0": 3,
            "kernel_0_2": 5,
            "padding_0_2": 2,
            "kernel_0_3": 3,
            "padding_0_3": 1,
        },
    ),
    (
        _UNITS1,
        {
            "in_channels": 32,
            "c": 64,
            "p": 0.2,
            "kernel_0": 7,
            "padding_0": 3,
            "kernel_0_2": 5,
            "padding_0_2": 2,
            "kernel_0_3": 3,
            "padding_0_3": 1,
        },
    ),
)


def _block(units: tuple[Any, ...], values: dict[str, Any]) -> nn.ModuleDict:
    """One block's submodules, built row by row: ``column{K}.layer{I}``, then ``pool``."""
    block = nn.ModuleDict()
    for name, layers, unit, args in units:
        if layers is None:
            block[name] = unit(*(values[a] for a in args))
            continue
        if name not in block:
            block[name] = nn.ModuleDict()
        column = block[name]
        for i in layers:
            column.add_module(f"layer{i}", unit(*(values[a] for a in args)))
    return block


# ---- the graph, generated from fractal_dsl.semantics --------------------------------------

# The graph of blocks 1 to 3, as rows of _NODES (below) with node ids and submodules
# named within the block and nodes and joins counted from the block's first.
_GRAPH1 = (
    ("c3_d1_conv", "column3.layer1", (3,), ((1, -1, 0),)),
    ("c3_d2_conv", "column3.layer2", (3,), ((3, 0, 0),)),
    ("c2_d1_conv", "column2.layer1", (2,), ((3, 0, 1),)),
    ("join_d2", "", (2, 3), ((4, -1, 0), (6, -1, 0))),
    ("c3_d3_conv", "column3.layer3", (3,), ((5, -1, 0),)),
    ("c3_d4_conv", "column3.layer4", (3,), ((8, 1, 0),)),
    ("c2_d3_conv", "column2.layer2", (2,), ((8, 1, 1),)),
    ("c1_d1_conv", "column1.layer1", (1,), ((8, 1, 2),)),
    ("join_d4", "", (1, 2, 3), ((9, -1, 0),)),
)


def _in_block(
    graph: tuple[Any, ...], prefix: str, block: int, n: int, j: int
) -> tuple[Any, ...]:
    """``graph``'s rows as block ``block``'s rows of ``_NODES``: its first node is node
    ``n``, its first join join ``j``."""
    return tuple(
        (
            prefix + node,
            f"block{block}.{module}" if module else "",
            columns,
            tuple((n + w, j + k if k >= 0 else -1, i) for w, k, i in uses),
        )
        for node, module, columns, uses in graph
    )


# The graph in topological order: (node id, submodule, columns through it, consumers),
# where each consumer is (node, join or -1, input index of that join).
_NODES = (
    ("input", "", (1, 2, 3), ((1, -1, 0), (3, -1, 0), (8, -1, 0))),
    *_in_block(_GRAPH1, "b1_", 1, 1, 0),
    ("b1_pool", "block1.pool", (1, 2, 3), ((11, -1, 0), (13, -1, 0), (18, -1, 0))),
    *_in_block(_GRAPH1, "b2_", 2, 11, 2),
    ("b2_pool", "block2.pool", (1, 2, 3), ((21, -1, 0), (23, -1, 0), (28, -1, 0))),
    *_in_block(_GRAPH1, "b3_", 3, 21, 4),
    ("b3_pool", "block3.pool", (1, 2, 3), ((31, -1, 0),)),
    ("head", "head", (1, 2, 3), ((32, -1, 0),)),
    ("output", "", (1, 2, 3), ()),
)
# The joins in order: (node id, rank of its tensors, channels of each input).
_JOINS = (
    ("b1_join_d2", 4, (16, 16)),
    ("b1_join_d4", 4, (16, 16, 16)),
    ("b2_join_d2", 4, (32, 32)),
    ("b2_join_d4", 4, (32, 32, 32)),
    ("b3_join_d2", 4, (64, 64)),
    ("b3_join_d4", 4, (64, 64, 64)),
)
# _ON_PATH[k - 1][i]: global drop-path on column k keeps join input i ("1") or drops it
# ("0"); a join off column k's path keeps all its inputs (semantics.on_path_table).
_ON_PATH = tuple(
    tuple(flag == "1" for flag in row)
    for row in (
        "110011100111001",
        "010100101001010",
        "101001010010100",
    )
)
# Every join input, flattened: the join it belongs to; where each join's inputs start.
_INPUT_JOIN = tuple(j for j, join in enumerate(_JOINS) for _ in join[2])
_FIRST = tuple(itertools.accumulate((len(join[2]) for join in _JOINS), initial=0))[:-1]
_NUM_INPUTS = len(_INPUT_JOIN)
_JOIN_OF = {join[0]: j for j, join in enumerate(_JOINS)}
_SPANS = tuple((join[0], _FIRST[j], len(join[2])) for j, join in enumerate(_JOINS))


class _Plan(NamedTuple):
    """What one forward pass computes.

    ``live[i]``: node i is used by a kept path; ``kept[j]``: the inputs join j keeps
    (None: all); ``masks``: (1 or batch, join inputs) booleans used instead of ``kept``,
    where a node no example uses is not computed (None).
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


def column_sample(column: int) -> dict[str, Any]:
    """The global drop-path sample that keeps only ``column`` (1 to NUM_COLUMNS), in the
    form of ``sample_drop_path``; a drop-path hook may return it to force that column."""
    row = _ON_PATH[column - 1]
    joins = {name: tuple(i for i in range(n) if row[a + i]) for name, a, n in _SPANS}
    return {"mode": "global", "column": column, "joins": joins}


@functools.lru_cache(maxsize=4096)
def _live(kept: tuple[tuple[int, ...], ...]) -> tuple[bool, ...]:
    """Which nodes a kept path to the output uses (the others are not computed): the
    runtime twin of ``fractal_dsl.semantics.live``, per sample and standalone."""
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


@functools.lru_cache(maxsize=4096)
def _kept_of(row: tuple[bool, ...]) -> tuple[tuple[int, ...], ...]:
    """The inputs every join keeps, from one example's row of join-input flags."""
    return tuple(tuple(i for i in range(n) if row[a + i]) for _, a, n in _SPANS)


def _per_sample(keep: Tensor) -> tuple[_Plan, dict[str, Tensor]]:
    """Per-sample drop-path that skips: the plan for the rows of ``keep`` (batch, join
    inputs) and, for every layer submodule some examples use but not all, the indices of
    those examples (``_Rows`` runs it on them alone).

    A node runs if some example's path uses it; joins mask per example. A layer that
    only one example of a larger batch uses runs on the whole batch instead (batch norm
    in training needs more than one value per channel).
    """
    lives = [_live(_kept_of(tuple(row))) for row in keep.tolist()]
    live = tuple(map(any, zip(*lives)))
    rows: dict[str, Tensor] = {}
    for v, (_, module, _, _) in enumerate(_NODES):
        if ".column" in module and live[v]:
            users = [b for b, flags in enumerate(lives) if flags[v]]
            if 1 < len(users) < len(lives):
                rows[module] = torch.tensor(users, device=keep.device)
    return _Plan(live, None, keep), rows


class _Rows:
    """A block seen by per-sample drop-path: ``block.column{K}.layer{I}(x)`` runs that
    layer on the examples in ``rows[name]`` alone (zeros for the others, whose paths do not
    use it), and on every example where ``rows`` has no entry."""

    def __init__(self, module: nn.Module, name: str, rows: dict[str, Tensor]) -> None:
        self.module, self.name, self.rows = module, name, rows

    def __getattr__(self, attr: str) -> Any:
        sub = getattr(self.module, attr)
        name = f"{self.name}.{attr}"
        if isinstance(sub, nn.ModuleDict):
            return _Rows(sub, name, self.rows)
        idx = self.rows.get(name)
        return sub if idx is None else functools.partial(_on_rows, sub, idx)


def _on_rows(layer: nn.Module, idx: Tensor, x: Tensor) -> Tensor:
    y = layer(x.index_select(0, idx))
    return y.new_zeros((x.shape[0],) + tuple(y.shape[1:])).index_copy(0, idx, y)


def _block_of(block: nn.Module, name: str, rows: dict[str, Tensor]) -> Any:
    return _Rows(block, name, rows) if rows else block


def _join(xs: tuple[Any, ...], plan: _Plan, j: int) -> Tensor:
    """Element-wise mean of the kept inputs."""
    _, a, n = _SPANS[j]
    rank = _JOINS[j][1]
    if plan.masks is not None:  # None: an input no example uses (zero)
        x0 = next(x for x in xs if x is not None)
        w = plan.masks[:, a : a + n].to(x0.dtype)
        w = w / w.sum(1, keepdim=True)
        view = (-1,) + (1,) * (rank - 1)
        out = None
        for i, x in enumerate(xs):
            if x is not None:
                term = x * w[:, i].reshape(view)
                out = term if out is None else out + term
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


# ---- batch norm per path, and the input's normalisation ----------------------------------


# The buffers of each path's statistics: the whole network's (0), column K's (K); looked up
# rather than formatted, so torch.compile keeps a path that varies between calls static.
_STATS = tuple(
    tuple(
        f"{name}_c{k}" if k else name
        for name in ("running_mean", "running_var", "num_batches_tracked")
    )
    for k in range(NUM_COLUMNS + 1)
)


class PathBatchNorm2d(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` with running statistics per path: the whole network's in the
    usual buffers, column K's in ``running_mean_cK``, ``running_var_cK`` and
    ``num_batches_tracked_cK`` for every K in ``paths``. ``path`` (0: the whole network,
    K: column K; the model sets it on every forward pass) picks the statistics used in
    eval mode and updated in training mode; a path not in ``paths`` uses the whole
    network's."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.paths: tuple[int, ...] = ()
        self.path = 0

    def add_paths(self, columns: Iterable[int]) -> None:
        """Keep statistics of these columns too (a copy of the whole network's to start)."""
        for k in sorted(set(columns) - set(self.paths)):
            for shared, own in zip(_STATS[0], _STATS[k]):
                self.register_buffer(own, getattr(self, shared).clone())
            self.paths = tuple(sorted((*self.paths, k)))

    def path_stats(self, path: int) -> tuple[Tensor, Tensor, Tensor]:
        """Running mean, variance and batch count of ``path``."""
        mean, var, tracked = _STATS[path if path in self.paths else 0]
        return getattr(self, mean), getattr(self, var), getattr(self, tracked)

    def reset_path_stats(self, path: int) -> None:
        mean, var, tracked = self.path_stats(path)
        mean.zero_()
        var.fill_(1)
        tracked.zero_()

    def forward(self, x: Tensor) -> Tensor:
        """``nn.BatchNorm2d``'s forward pass on the statistics of ``path``."""
        if not isinstance(x, torch.fx.Proxy):
            self._check_input_dim(x)
        mean, var, tracked = self.path_stats(self.path)
        momentum = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats:
            tracked.add_(1)
            if self.momentum is None:  # a plain average over the batches so far
                momentum = 1.0 / float(tracked)
        return nn.functional.batch_norm(
            x, mean, var, self.weight, self.bias, self.training, momentum, self.eps
        )

    def _load_from_state_dict(
        self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any
    ) -> None:
        # A state_dict without per-path statistics: every path starts from the whole
        # network's (the model warns once).
        for k in self.paths:
            for shared, own in zip(_STATS[0], _STATS[k]):
                if prefix + shared in state_dict:
                    state_dict.setdefault(prefix + own, state_dict[prefix + shared])
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


class _Normalize(nn.Module):
    """``(x - mean) / std`` per channel: the training images' statistics (``mean`` and
    ``std`` buffers, the identity until ``fractal-dsl train`` sets them)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(channels))
        self.register_buffer("std", torch.ones(channels))

    def forward(self, x: Tensor) -> Tensor:
        view = (-1,) + (1,) * (x.dim() - 2)
        return (x - self.mean.reshape(view)) / self.std.reshape(view)

    def _load_from_state_dict(
        self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any
    ) -> None:
        # a state_dict from before the normalisation moved into the module: the identity
        state_dict.setdefault(prefix + "mean", torch.zeros_like(self.mean))
        state_dict.setdefault(prefix + "std", torch.ones_like(self.std))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


def _set_path(module: nn.Module, path: int) -> None:
    for m in module.modules():
        if isinstance(m, PathBatchNorm2d):
            m.path = path


@torch.no_grad()
def recalibrate_bn(
    model: nn.Module, batches: Iterable[Any], column: int | None = None
) -> nn.Module:
    """Re-estimate the batch-norm statistics of ``column``'s path (None: the whole
    network) from ``batches``: image tensors as ``model`` takes them (or ``(images,
    labels)`` pairs), averaged over all of them in place of the stored ones. Drop-path
    and dropout are off meanwhile; the model is left in the mode it was in."""
    norms = [m for m in model.modules() if isinstance(m, PathBatchNorm2d)]
    path = column or 0
    modes = [(m, m.training) for m in model.modules()]
    momenta = [m.momentum for m in norms]
    drop_path = model.drop_path
    try:
        for m in norms:
            if path == 0 or path in m.paths:  # the others are not on the path
                m.reset_path_stats(path)
            m.momentum = None
        model.train()
        model.drop_path = False
        for m in model.modules():
            if isinstance(m, nn.modules.dropout._DropoutNd):
                m.eval()
        for batch in batches:
            x = batch[0] if isinstance(batch, (tuple, list)) else batch
            model(x, column=column)
    finally:
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
        for m, mode in modes:
            m.training = mode
        model.drop_path = drop_path
    return model


class _ColumnChain(nn.Sequential):
    """``extract_column``'s chain: an ``nn.Sequential`` that runs its batch norms with
    column ``column``'s statistics."""

    def __init__(self, steps: OrderedDict[str, nn.Module], column: int) -> None:
        super().__init__(steps)
        self.column = column

    def forward(self, x: Tensor) -> Tensor:
        _set_path(self, self.column)
        return super().forward(x)


_PATH_STATS = ("running_mean_c", "running_var_c", "num_batches_tracked_c")


class Kernels(nn.Module):
    """FractalNet kernels: 3 columns, 3 blocks."""

    num_columns: int = NUM_COLUMNS

    def __init__(
        self,
        *,
        num_classes: int = 10,
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
        self.normalize = _Normalize(INPUT_SHAPE[0])
        own = {"dropout": dropout, "num_classes": num_classes}
        for b, (units, values) in enumerate(_BLOCKS, 1):
            self.add_module(f"block{b}", _block(units, {**values, **own}))
        self.head = head(64, num_classes=num_classes)
        _init_weights(self, init)
        for _, module, columns, _ in _NODES:
            if module:
                for m in self.get_submodule(module).modules():
                    if isinstance(m, PathBatchNorm2d):
                        m.add_paths(columns)
        self._norms = tuple(m for m in self.modules() if isinstance(m, PathBatchNorm2d))
        self._warned_path_stats = False

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
            return _plan_of(column_sample(column))
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

    def _forward_graph1(
        self, block: nn.Module, x: Tensor, plan: _Plan, n: int, j: int
    ) -> Tensor:
        """The forward pass of blocks 1 to 3 (_GRAPH1) without the pool.

        Node ``n`` of ``_NODES`` and join ``j`` of ``_JOINS`` are the block's first.
        """
        live = plan.live[n:]
        c3_1 = block.column3.layer1(x) if live[0] else None
        c3_2 = block.column3.layer2(c3_1) if live[1] else None
        c2_1 = block.column2.layer1(x) if live[2] else None
        j1 = _join((c3_2, c2_1), plan, j) if live[3] else None
        c3_3 = block.column3.layer3(j1) if live[4] else None
        c3_4 = block.column3.layer4(c3_3) if live[5] else None
        c2_2 = block.column2.layer2(j1) if live[6] else None
        c1_1 = block.column1.layer1(x) if live[7] else None
        j2 = _join((c3_4, c2_2, c1_1), plan, j + 1) if live[8] else None
        return j2

    def _check_input(self, x: Tensor) -> None:
        if isinstance(x, torch.fx.Proxy):
            return  # torch.fx traces without shapes
        if x.dim() != len(INPUT_SHAPE) + 1 or tuple(x.shape[1:]) != INPUT_SHAPE:
            raise ValueError(
                f"expected images of shape N x 1x16x16 (floats in [0, 1]), "
                f"got {'x'.join(map(str, x.shape))}"
            )

    def forward_features(self, x: Tensor, column: int | None = None) -> Tensor:
        """Everything before the head; ``column=k`` runs only column k in every block
        (with column k's batch-norm statistics), ``x`` as a data set gives it."""
        self._check_input(x)
        plan = self._plan(x, column)
        path = column if isinstance(column, int) else 0  # None, or torch.fx's proxy
        for m in self._norms:
            m.path = path
        x = self.normalize(x)
        if plan.masks is None or self.compute_all or isinstance(x, torch.fx.Proxy):
            return self._features(x, plan, {})
        # drop-path per sample: each layer runs on the examples whose paths use it
        return self._features(x, *_per_sample(plan.masks))

    def _features(self, x: Tensor, plan: _Plan, rows: dict[str, Tensor]) -> Tensor:
        """The layers before the head on normalised images, as ``plan`` and ``rows``
        (``_per_sample``) say."""
        block = _block_of(self.block1, "block1", rows)
        x = self._forward_graph1(block, x, plan, 1, 0)
        x = self.block1.pool(x)
        block = _block_of(self.block2, "block2", rows)
        x = self._forward_graph1(block, x, plan, 11, 2)
        x = self.block2.pool(x)
        block = _block_of(self.block3, "block3", rows)
        x = self._forward_graph1(block, x, plan, 21, 4)
        x = self.block3.pool(x)
        return x

    def forward_head(self, x: Tensor) -> Tensor:
        return self.head(x)

    def forward(self, x: Tensor, column: int | None = None) -> Tensor:
        return self.forward_head(self.forward_features(x, column))

    def extract_column(self, k: int) -> nn.Sequential:
        """Column k alone as a plain ``nn.Sequential`` sharing this model's weights."""
        if not 1 <= k <= NUM_COLUMNS:
            raise ValueError(f"column must be 1..{NUM_COLUMNS}, not {k!r}")
        steps: OrderedDict[str, nn.Module] = OrderedDict(normalize=self.normalize)
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
        return _ColumnChain(steps, k)

    def _load_from_state_dict(
        self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any
    ) -> None:
        missing = [
            name
            for name in self.state_dict(prefix=prefix, keep_vars=True)
            if name not in state_dict
            and name.rsplit(".", 1)[-1].startswith(_PATH_STATS)
            and not self._warned_path_stats
        ]
        if missing:
            self._warned_path_stats = True
            warnings.warn(
                f"the state_dict has no per-path batch-norm statistics (no {missing[0]}): "
                "every column uses the whole network's until recalibrate_bn(model, "
                "batches, column=k) re-estimates them",
                stacklevel=4,
            )
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


def build(**overrides: Any) -> Kernels:
    """Build the network; ``overrides`` are Kernels's keyword arguments."""
    return Kernels(**overrides)

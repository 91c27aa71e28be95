r"""FractalNet fractalnet34, compiled by fractal-dsl 0.1.0.

Source: examples/fractalnet34.fdsl
Source sha256: 271c79aebb29daa493c6f8dbe3825275fd2b57880ed3f9853da2e540376331a3

Larsson, Maire and Shakhnarovich, "FractalNet: Ultra-Deep Neural Networks without
Residuals", ICLR 2017 (arXiv:1605.07648).

4 columns, 4 blocks, 41,359,784 parameters; joins take the element-wise mean
of their inputs. Submodules are named by position:
``block{B}.column{K}.layer{I}`` is the I-th layer unit of column K in block B
(column 1 is the shallowest), ``block{B}.pool`` the pool after block B.

Drop-path (training only): each mini-batch (or each sample, ``drop_path_per="sample"``)
is global with probability ``drop_path_global``, keeping one column's path, else local:
every join drops each input with probability ``drop_path_local`` and keeps at least one
(the largest draw). A join combines its survivors renormalised (mean of the survivors;
sum times inputs / survivors; max of the survivors; concat with zeros for the dropped).
Layers no kept path uses are not computed; per sample, each layer runs on the examples
whose paths use it. ``compute_all=True`` computes every layer and masks (a fixed graph
for torch.compile or DDP). ``torch.manual_seed`` (or ``generator``) makes it reproducible.

Input: floats in [0, 1] of shape N x 3x224x224, normalised inside the module by the
``normalize.mean`` and ``normalize.std`` buffers (the identity until ``fractal-dsl train``
sets them from its training images, so they travel in the checkpoint).

Batch norm keeps running statistics per path (switchable batch norm, Yu et al., ICLR
2019): ``PathBatchNorm2d`` keeps the whole network's in the usual buffers and column K's
in ``running_mean_cK``, ``running_var_cK`` and ``num_batches_tracked_cK``;
``model(x, column=k)`` uses column k's, ``model(x)`` the whole network's (also in
training with drop-path). ``recalibrate_bn(model, batches, column)`` re-estimates them.

Convolution and linear weights start from ``init`` ("xavier" by default:
Xavier/Glorot uniform, as in the paper).

Generated code: edit the .fdsl source and compile again instead of editing this file.
"""

from __future__ import annotations

import functools
import operator
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
    "Fractalnet34",
    "PathBatchNorm2d",
    "build",
    "column_sample",
    "recalibrate_bn",
    "sample_drop_path",
]

INPUT_SHAPE = (3, 224, 224)  # channels, height, width of one image
NUM_COLUMNS = 4
DEFAULT_DROP_PATH_LOCAL = 0.15
DEFAULT_DROP_PATH_GLOBAL = 0.5
DEFAULT_INIT = "xavier"


# ---- the layer key: one function per entry, each building one unit ---------------------


# examples/fractalnet34.fdsl:12
#   stem = conv7x7(64, stride=2, bias=false) . batchnorm . relu . maxpool(3, stride=2,
#   padding=1)
def stem(in_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False),
        PathBatchNorm2d(64),
        nn.ReLU(),
        nn.MaxPool2d(3, stride=2, padding=1),
    )


# examples/fractalnet34.fdsl:13
#   conv(c) = conv3x3(c, bias=false) . batchnorm . relu
def conv(in_channels: int, c: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, c, 3, padding=1, bias=False),
        PathBatchNorm2d(c),
        nn.ReLU(),
    )


# examples/fractalnet34.fdsl:15
#   pool(size) = maxpool(size)
def pool(size: int) -> nn.Sequential:
    return nn.Sequential(
        nn.MaxPool2d(size),
    )


# examples/fractalnet34.fdsl:16
#   head = gap . flatten . linear(classes)
def head(in_channels: int, num_classes: int) -> nn.Sequential:
    return nn.Sequential(
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(in_channels, num_classes),
    )


# ---- the network as tables: each block's units and graph ----------------------------------

# The units of blocks 1 to 4, in the order of the state_dict keys: (submodule, layers,
# function, arguments), each argument a name of the block's values in _BLOCKS (or the
# class's own dropout / num_classes); a row builds column{K}.layer{I} for I in layers.
_UNITS1 = (
    ("column1", range(1, 2), conv, ("in_channels", "c")),
    ("column2", range(1, 2), conv, ("in_channels", "c")),
    ("column2", range(2, 3), conv, ("c", "c")),
    ("column3", range(1, 2), conv, ("in_channels", "c")),
    ("column3", range(2, 5), conv, ("c", "c")),
    ("column4", range(1, 2), conv, ("in_channels", "c")),
    ("column4", range(2, 9), conv, ("c", "c")),
    ("pool", None, pool, ("size",)),
)

# The graph of blocks 1 to 4 but the pool, in topological order: (node id, submodule,
# columns through it, inputs, and for a join the rank of its tensors),
# each input a row counted from 1 (0: the block's input). _ON_PATH1[k - 1]: what its
# joins keep on column k's path, input by input (semantics.on_path_table).
_GRAPH1 = (
    ("c4_d1_conv", "column4.layer1", (4,), (0,)),
    ("c4_d2_conv", "column4.layer2", (4,), (1,)),
    ("c3_d1_conv", "column3.layer1", (3,), (0,)),
    ("join_d2", "", (3, 4), (2, 3), 4),
    ("c4_d3_conv", "column4.layer3", (4,), (4,)),
    ("c4_d4_conv", "column4.layer4", (4,), (5,)),
    ("c3_d3_conv", "column3.layer2", (3,), (4,)),
    ("c2_d1_conv", "column2.layer1", (2,), (0,)),
    ("join_d4", "", (2, 3, 4), (6, 7, 8), 4),
    ("c4_d5_conv", "column4.layer5", (4,), (9,)),
    ("c4_d6_conv", "column4.layer6", (4,), (10,)),
    ("c3_d5_conv", "column3.layer3", (3,), (9,)),
    ("join_d6", "", (3, 4), (11, 12), 4),
    ("c4_d7_conv", "column4.layer7", (4,), (13,)),
    ("c4_d8_conv", "column4.layer8", (4,), (14,)),
    ("c3_d7_conv", "column3.layer4", (3,), (13,)),
    ("c2_d5_conv", "column2.layer2", (2,), (9,)),
    ("c1_d1_conv", "column1.layer1", (1,), (0,)),
    ("join_d8", "", (1, 2, 3, 4), (15, 16, 17, 18), 4),
)
_ON_PATH1 = (
    "11111110001",
    "11001110010",
    "01010010100",
    "10100101000",
)

# Each block: its units, its graph, what its joins keep on each column's path, its values.
_BLOCKS = (
    (_UNITS1, _GRAPH1, _ON_PATH1, {"in_channels": 64, "c": 64, "size": 2}),
    (_UNITS1, _GRAPH1, _ON_PATH1, {"in_channels": 64, "c": 128, "size": 2}),
    (_UNITS1, _GRAPH1, _ON_PATH1, {"in_channels": 128, "c": 256, "size": 2}),
    (_UNITS1, _GRAPH1, _ON_PATH1, {"in_channels": 256, "c": 512, "size": 1}),
)
_ALL = tuple(range(1, NUM_COLUMNS + 1))


def _block(units: tuple[Any, ...], values: dict[str, Any]) -> nn.ModuleDict:
    """One block's submodules, built row by row: ``column{K}.layer{I}``, then ``pool``."""
    block = nn.ModuleDict()
    for name, layers, unit, args in units:
        if layers is None:
            block[name] = unit(*(values[a] for a in args))
            continue
        column = block[name] if name in block else nn.ModuleDict()
        block[name] = column
        for i in layers:
            column.add_module(f"layer{i}", unit(*(values[a] for a in args)))
    return block


def _expand() -> tuple[Any, Any, Any]:
    """The whole network from its blocks: ``_NODES``, in topological order (node id,
    submodule, columns through it, inputs, its join or -1); ``_JOINS`` (node id, first
    input among all joins', inputs, rank); ``_ON_PATH``."""
    nodes: list[Any] = [("input", "", _ALL, (), -1)]
    nodes.append(("stem", "stem", _ALL, (0,), -1))
    joins: list[Any] = []
    rows = [""] * NUM_COLUMNS
    for b, (units, graph, on_path, _) in enumerate(_BLOCKS, 1):
        n = len(nodes) - 1  # the block's input
        for node, module, columns, inputs, *join in graph:
            j = -1
            if join:
                j, a = len(joins), joins[-1][1] + joins[-1][2] if joins else 0
                joins.append((f"b{b}_{node}", a, len(inputs), *join))
            sub = f"block{b}.{module}" if module else ""
            at = tuple(n + i for i in inputs)
            nodes.append((f"b{b}_{node}", sub, columns, at, j))
        rows = [row + more for row, more in zip(rows, on_path)]
        if any(name == "pool" for name, *_ in units):
            nodes.append((f"b{b}_pool", f"block{b}.pool", _ALL, (len(nodes) - 1,), -1))
    nodes.append(("head", "head", _ALL, (len(nodes) - 1,), -1))
    nodes.append(("output", "", _ALL, (len(nodes) - 1,), -1))
    return tuple(nodes), tuple(joins), tuple(tuple(f == "1" for f in r) for r in rows)


_NODES, _JOINS, _ON_PATH = _expand()
# Every join input, in order: the join it belongs to.
_INPUT_JOIN = tuple(j for j, join in enumerate(_JOINS) for _ in range(join[2]))


# ---- drop-path ----------------------------------------------------------------------------


class _Plan(NamedTuple):
    """What one forward pass computes: ``live[v]``, whether a kept path uses node v (if
    not, it is not computed); ``flags``, whether each join input is kept (None: all);
    ``masks``, the same per example, (1 or batch, join inputs) booleans, in place of
    ``flags``, where an input no example uses is None."""

    live: tuple[bool, ...]
    flags: tuple[bool, ...] | None
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
    draw = _rand((num, 2 + len(_INPUT_JOIN)), device, generator)
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


def _kept(flags: Any) -> dict[str, tuple[int, ...]]:
    """The inputs each join keeps, by join id, from flags over all join inputs."""
    return {j: tuple(i for i in range(n) if flags[a + i]) for j, a, n, *_ in _JOINS}


def _to_sample(is_global: Tensor, column: Tensor, keep: Tensor) -> dict[str, Any]:
    """The dict form of a drop-path sample (see ``sample_drop_path``); one row (a batch,
    or a single example drawn per sample) has the per-batch form."""
    if keep.shape[0] == 1:
        k = int(column[0]) if bool(is_global[0]) else None
        mode = "local" if k is None else "global"
        return {"mode": mode, "column": k, "joins": _kept(keep[0].tolist())}
    return {
        "mode": "per-sample",
        "column": None,
        "joins": {},
        "masks": {j: keep[:, a : a + n] for j, a, n, *_ in _JOINS},
        "global": is_global,
        "columns": torch.where(is_global, column, torch.zeros_like(column)),
    }


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


def _column(column: Any) -> int:
    """``column`` as a column number from 1 to NUM_COLUMNS (an int or an integer tensor)."""
    try:
        k = operator.index(column)
    except TypeError:
        k = 0
    if isinstance(column, bool) or not 1 <= k <= NUM_COLUMNS:
        raise ValueError(f"column must be 1..{NUM_COLUMNS}, not {column!r}")
    return k


def column_sample(column: int) -> dict[str, Any]:
    """The global drop-path sample that keeps only ``column`` (1 to NUM_COLUMNS), in the
    form of ``sample_drop_path``; a drop-path hook may return it to force that column."""
    k = _column(column)
    return {"mode": "global", "column": k, "joins": _kept(_ON_PATH[k - 1])}


@functools.lru_cache(maxsize=4096)
def _live(flags: tuple[bool, ...]) -> tuple[bool, ...]:
    """Which nodes a kept path to the output uses (the others are not computed): the
    runtime twin of ``fractal_dsl.semantics.live``, per sample and standalone."""
    live = [False] * (len(_NODES) - 1) + [True]
    for v in range(len(_NODES) - 1, 0, -1):
        _, _, _, inputs, j = _NODES[v]
        for i, u in enumerate(inputs):
            live[u] = live[u] or (live[v] and (j < 0 or flags[_JOINS[j][1] + i]))
    return tuple(live)


def _plan_of(flags: tuple[bool, ...]) -> _Plan:
    return _Plan(_live(flags), flags, None)


def _per_sample(keep: Tensor) -> tuple[_Plan, dict[str, Tensor]]:
    """Per-sample drop-path that skips: the plan for the rows of ``keep`` (batch, join
    inputs) and, for every layer some examples use but not all, those examples' indices.

    A node runs if some example's path uses it; joins mask per example. A layer that
    only one example of a larger batch uses runs on the whole batch instead (batch norm
    in training needs more than one value per channel).
    """
    lives = [_live(tuple(row)) for row in keep.tolist()]
    live = tuple(map(any, zip(*lives)))
    rows: dict[str, Tensor] = {}
    for v, (_, module, *_) in enumerate(_NODES):
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


def _join(xs: tuple[Any, ...], plan: _Plan, j: int) -> Tensor:
    """Element-wise mean of the kept inputs."""
    _, a, n, rank = _JOINS[j]
    if plan.masks is not None:  # an input no example uses is None (zero)
        w = plan.masks[:, a : a + n].to(next(x for x in xs if x is not None).dtype)
        w = (w / w.sum(1, keepdim=True)).reshape((-1, n) + (1,) * (rank - 1))
        terms = [x * w[:, i] for i, x in enumerate(xs) if x is not None]
        return functools.reduce(torch.add, terms)
    kept = [x for i, x in enumerate(xs) if plan.flags is None or plan.flags[a + i]]
    out = functools.reduce(torch.add, kept)
    return out / len(kept) if len(kept) > 1 else out


def _init_weights(model: nn.Module, scheme: str) -> None:
    """Initialise convolution and linear weights: ``"xavier"`` (Glorot and Bengio,
    uniform; the paper's), ``"kaiming"`` (He, normal, for ReLU) or ``"torch"`` (PyTorch's
    defaults, left as they are). Biases start at zero; batch norm keeps weight 1, bias 0.
    """
    for m in model.modules():
        if scheme != "torch" and isinstance(m, (nn.Conv2d, nn.Linear)):
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

    paths: tuple[int, ...] = ()
    path: int = 0

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


@torch.no_grad()
def recalibrate_bn(
    model: nn.Module, batches: Iterable[Any], column: int | None = None
) -> nn.Module:
    """Re-estimate the batch-norm statistics of ``column``'s path (None: the whole
    network) from ``batches``: image tensors as ``model`` takes them (or ``(images,
    labels)`` pairs), averaged over all of them in place of the stored ones. Drop-path
    and dropout are off meanwhile; the model is left in the mode it was in, and with the
    statistics it had if ``batches`` is empty or a batch fails."""
    path = 0 if column is None else _column(column)
    saved = [(m, m.training, getattr(m, "momentum", None)) for m in model.modules()]
    norms = [m for m, *_ in saved if isinstance(m, PathBatchNorm2d)]
    on_path = [m for m in norms if path == 0 or path in m.paths]  # the others idle
    stored = [[stat.clone() for stat in m.path_stats(path)] for m in on_path]
    drop_path, model.drop_path = model.drop_path, False
    try:
        model.train()
        for m in model.modules():
            if isinstance(m, nn.modules.dropout._DropoutNd):
                m.eval()
        for m in norms:
            m.momentum = None
        for m in on_path:
            for stat, start in zip(m.path_stats(path), (0, 1, 0)):
                stat.fill_(start)
        seen = 0
        for batch in batches:
            x = batch[0] if isinstance(batch, (tuple, list)) else batch
            model(x, column=column)
            seen += 1
        if not seen:
            raise ValueError("no batches: the batch-norm statistics are unchanged")
    except BaseException:
        for m, old in zip(on_path, stored):
            for stat, value in zip(m.path_stats(path), old):
                stat.copy_(value)
        raise
    finally:
        for m, mode, momentum in saved:
            m.training = mode
            if isinstance(m, PathBatchNorm2d):
                m.momentum = momentum
        model.drop_path = drop_path
    return model


class _ColumnChain(nn.Sequential):
    """``extract_column``'s chain: an ``nn.Sequential`` that runs its batch norms with
    column ``column``'s statistics."""

    def __init__(self, steps: OrderedDict[str, nn.Module], column: int) -> None:
        super().__init__(steps)
        self.column = column

    def forward(self, x: Tensor) -> Tensor:
        for m in self.modules():
            if isinstance(m, PathBatchNorm2d):
                m.path = self.column
        return super().forward(x)


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
        self.normalize = _Normalize(INPUT_SHAPE[0])
        self.stem = stem(3)
        own = {"dropout": dropout, "num_classes": num_classes}
        for b, (units, _, _, values) in enumerate(_BLOCKS, 1):
            self.add_module(f"block{b}", _block(units, {**values, **own}))
        self.head = head(512, num_classes=num_classes)
        _init_weights(self, init)
        for _, module, columns, *_ in _NODES:
            if module:
                for m in self.get_submodule(module).modules():
                    if isinstance(m, PathBatchNorm2d):
                        m.add_paths(columns)
        self._norms = tuple(m for m in self.modules() if isinstance(m, PathBatchNorm2d))

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
            return _plan_of(_ON_PATH[column - 1])
        if not (self.training and self.drop_path):
            return _FULL
        per_sample = self.drop_path_per == "sample"
        masked = per_sample or self.compute_all  # else one plan per batch, on the host
        device = x.device if masked else getattr(self.generator, "device", "cpu")
        num = x.shape[0] if per_sample else 1
        masks = _sample_masks(
            num, self.drop_path_local, self.drop_path_global, device, self.generator
        )
        if not isinstance(masks[2], torch.fx.Proxy):
            self._last_sample, self._last_masks = None, masks
        if self._drop_path_hooks:
            sample = self._call_hooks(self.last_drop_path)
            if not per_sample:  # the sample a hook returns is the one used
                flags = [
                    i in sample["joins"][j] for j, _, n, *_ in _JOINS for i in range(n)
                ]
                masks = (*masks[:2], torch.tensor([flags], device=device))
                self._last_sample = sample
        if masked:
            return _Plan(_FULL.live, None, masks[2])
        return _plan_of(tuple(masks[2][0].tolist()))

    def _call_hooks(self, sample: Any) -> Any:
        for fn in list(self._drop_path_hooks.values()):
            steered = fn(self, sample)
            if steered is not None:
                sample = steered
        return sample

    @staticmethod
    def _forward_graph1(block: Any, x: Tensor, plan: _Plan, n: int, j: int) -> Tensor:
        """The forward pass of blocks 1 to 4 (_GRAPH1) but the pool, whose
        first node is node ``n`` of ``_NODES`` and first join join ``j`` of ``_JOINS``."""
        live = plan.live[n:]
        c4_1 = block.column4.layer1(x) if live[0] else None
        c4_2 = block.column4.layer2(c4_1) if live[1] else None
        c3_1 = block.column3.layer1(x) if live[2] else None
        j1 = _join((c4_2, c3_1), plan, j) if live[3] else None
        c4_3 = block.column4.layer3(j1) if live[4] else None
        c4_4 = block.column4.layer4(c4_3) if live[5] else None
        c3_2 = block.column3.layer2(j1) if live[6] else None
        c2_1 = block.column2.layer1(x) if live[7] else None
        j2 = _join((c4_4, c3_2, c2_1), plan, j + 1) if live[8] else None
        c4_5 = block.column4.layer5(j2) if live[9] else None
        c4_6 = block.column4.layer6(c4_5) if live[10] else None
        c3_3 = block.column3.layer3(j2) if live[11] else None
        j3 = _join((c4_6, c3_3), plan, j + 2) if live[12] else None
        c4_7 = block.column4.layer7(j3) if live[13] else None
        c4_8 = block.column4.layer8(c4_7) if live[14] else None
        c3_4 = block.column3.layer4(j3) if live[15] else None
        c2_2 = block.column2.layer2(j2) if live[16] else None
        c1_1 = block.column1.layer1(x) if live[17] else None
        j4 = _join((c4_8, c3_4, c2_2, c1_1), plan, j + 3) if live[18] else None
        return j4

    def forward_features(self, x: Tensor, column: int | None = None) -> Tensor:
        """Everything before the head; ``column=k`` runs only column k in every block
        (with column k's batch-norm statistics), ``x`` as a data set gives it."""
        if not isinstance(x, torch.fx.Proxy) and tuple(x.shape[1:]) != INPUT_SHAPE:
            shape = "x".join(map(str, x.shape))
            raise ValueError(
                f"expected images of shape N x 3x224x224 (floats in [0, 1]), got {shape}"
            )
        if not isinstance(x, torch.fx.Proxy) and not x.is_floating_point():
            raise ValueError(
                f"expected images as floats in [0, 1], got {x.dtype} (divide by 255?)"
            )
        if column is not None and not isinstance(column, torch.fx.Proxy):
            column = _column(column)  # an int from here on (a tensor's too)
        plan = self._plan(x, column)
        path = column if isinstance(column, int) else 0  # None, or torch.fx's proxy
        for m in self._norms:
            m.path = path
        x = self.normalize(x)
        rows: dict[str, Tensor] = {}
        tensors = self.compute_all or isinstance(x, torch.fx.Proxy)
        if plan.masks is not None and not tensors:  # per sample: layers skip examples
            plan, rows = _per_sample(plan.masks)
        x = self.stem(x)
        block = _Rows(self.block1, "block1", rows) if rows else self.block1
        x = self._forward_graph1(block, x, plan, 2, 0)
        x = self.block1.pool(x)
        block = _Rows(self.block2, "block2", rows) if rows else self.block2
        x = self._forward_graph1(block, x, plan, 22, 4)
        x = self.block2.pool(x)
        block = _Rows(self.block3, "block3", rows) if rows else self.block3
        x = self._forward_graph1(block, x, plan, 42, 8)
        x = self.block3.pool(x)
        block = _Rows(self.block4, "block4", rows) if rows else self.block4
        x = self._forward_graph1(block, x, plan, 62, 12)
        x = self.block4.pool(x)
        return x

    def forward_head(self, x: Tensor) -> Tensor:
        return self.head(x)

    def forward(self, x: Tensor, column: int | None = None) -> Tensor:
        return self.forward_head(self.forward_features(x, column))

    def extract_column(self, k: int) -> nn.Sequential:
        """Column k alone as a plain ``nn.Sequential`` sharing this model's weights."""
        k = _column(k)
        steps: OrderedDict[str, nn.Module] = OrderedDict(normalize=self.normalize)
        kept = _kept(_ON_PATH[k - 1])
        for node, module, columns, _, j in _NODES:
            if k in columns and module:
                steps[module.replace(".", "_")] = self.get_submodule(module)
            elif k in columns and j >= 0 and len(kept[node]) != 1:
                raise ValueError(
                    f"column {k} is not a chain of layers: {node} keeps {list(kept[node])}"
                )
        return _ColumnChain(steps, k)

    def _load_from_state_dict(self, state_dict: Any, prefix: str, *args: Any) -> None:
        # A state_dict of an older fractal-dsl has no normalisation (the identity, then) and
        # no per-path statistics (every path starts from the whole network's, with a
        # warning); one with some of either was edited, and PyTorch reports what it lacks.
        norm = self.normalize
        if not any(key.startswith(f"{prefix}normalize.") for key in state_dict):
            state_dict[f"{prefix}normalize.mean"] = torch.zeros_like(norm.mean)
            state_dict[f"{prefix}normalize.std"] = torch.ones_like(norm.std)
        shared: dict[str, Any] = {}  # each per-path statistic: the whole network's
        for name, m in self.named_modules(prefix=prefix[:-1]):
            for k in m.paths if isinstance(m, PathBatchNorm2d) else ():
                for whole, own in zip(_STATS[0], _STATS[k]):
                    shared[f"{name}.{own}"] = state_dict.get(f"{name}.{whole}")
        if shared and not any(key in state_dict for key in shared):
            state_dict.update((k, v) for k, v in shared.items() if v is not None)
            warnings.warn(
                f"the state_dict has no per-path batch-norm statistics (no {next(iter(shared))}): "
                "every column uses the whole network's until recalibrate_bn(model, "
                "batches, column=k) re-estimates them",
                stacklevel=4,
            )
        super()._load_from_state_dict(state_dict, prefix, *args)


def build(**overrides: Any) -> Fractalnet34:
    """Build the network; ``overrides`` are Fractalnet34's keyword arguments."""
    return Fractalnet34(**overrides)

"""The built-in layer vocabulary: names a ``.fdsl`` file may use, and what each one does.

A :class:`Layer` is one resolved PyTorch layer (``conv2d`` with every argument filled in,
``batchnorm2d``, ``relu``, ...).  :func:`infer` gives a layer's output shape, parameter count
and multiply-accumulates from its input shape, the same numbers the compiled module has.
Shapes are tuples without the batch dimension: ``(C, H, W)`` or ``(N,)`` after ``flatten``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Layer:
    """One resolved layer: a type from :data:`LAYER_TYPES` and its arguments in order."""

    type: str
    args: tuple[tuple[str, int | float | bool], ...] = ()

    def arg(self, name: str):
        return dict(self.args)[name]

    def describe(self) -> str:
        if not self.args:
            return self.type
        return f"{self.type}(" + ", ".join(f"{k}={_fmt(v)}" for k, v in self.args) + ")"


def _fmt(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return f"{v:g}" if isinstance(v, float) else str(v)


class LayerError(ValueError):
    """A layer cannot be built or applied; ``arg`` names the argument at fault, if any."""

    def __init__(self, message: str, arg: str | None = None, hint: str | None = None) -> None:
        super().__init__(message)
        self.arg = arg
        self.hint = hint


@dataclass(frozen=True)
class Builtin:
    """A name usable in the layer key: its parameters (with defaults) and how it resolves."""

    name: str
    params: tuple[tuple[str, object], ...]  # (name, default); REQUIRED for no default
    doc: str


REQUIRED = object()
MAX_SLOPE = 1e6  # leakyrelu: finite, and small enough for float32 weights and activations

_ACTIVATIONS = ("relu", "gelu", "elu", "silu", "sigmoid", "tanh", "identity")

BUILTINS: dict[str, Builtin] = {}


def _builtin(name: str, doc: str, *params: tuple[str, object]) -> None:
    BUILTINS[name] = Builtin(name, params, doc)


_builtin("conv", "2-D convolution", ("channels", REQUIRED), ("kernel", 3), ("stride", 1), ("padding", None), ("bias", True), ("groups", 1), ("dilation", 1))
for _k in (1, 3, 5, 7):
    _builtin(f"conv{_k}x{_k}", f"{_k}x{_k} convolution", ("channels", REQUIRED), ("stride", 1), ("padding", None), ("bias", True), ("groups", 1), ("dilation", 1))
_builtin("batchnorm", "batch normalisation over channels")
_builtin("bn", "batch normalisation over channels (same as batchnorm)")
for _a in _ACTIVATIONS:
    _builtin(_a, f"{_a} activation" if _a != "identity" else "passes its input through")
_builtin("leakyrelu", "leaky ReLU", ("slope", 0.01))
_builtin("dropout", "dropout of single activations", ("p", REQUIRED))
_builtin("dropout2d", "dropout of whole channels", ("p", REQUIRED))
_builtin("maxpool", "max pooling", ("kernel", REQUIRED), ("stride", None), ("padding", 0))
_builtin("avgpool", "average pooling", ("kernel", REQUIRED), ("stride", None), ("padding", 0))
_builtin("gap", "global average pooling to 1x1")
_builtin("globalavgpool", "global average pooling to 1x1 (same as gap)")
_builtin("flatten", "flattens CxHxW to one vector")
_builtin("linear", "fully connected layer", ("features", REQUIRED), ("bias", True))

JOIN_MODES = ("mean", "sum", "max", "concat")


def resolve(name: str, args: dict[str, object]) -> Layer:
    """Turn a built-in name and its bound arguments into a :class:`Layer` (no shapes yet)."""
    b = BUILTINS[name]
    if name == "conv" or name.startswith("conv") and name[4:5].isdigit():
        kernel = _int(args, "kernel", 1) if name == "conv" else int(name[4])
        dilation = _int(args, "dilation", 1)
        padding = args.get("padding")
        padding = dilation * (kernel // 2) if padding is None else _int(args, "padding", 0)
        return Layer("conv2d", (
            ("out_channels", _int(args, "channels", 1)),
            ("kernel", kernel),
            ("stride", _int(args, "stride", 1)),
            ("padding", padding),
            ("dilation", dilation),
            ("groups", _int(args, "groups", 1)),
            ("bias", _bool(args, "bias")),
        ))
    if name in ("batchnorm", "bn"):
        return Layer("batchnorm2d")
    if name in _ACTIVATIONS:
        return Layer(name)
    if name == "leakyrelu":
        slope = _float(args, "slope")
        if abs(slope) > MAX_SLOPE:
            raise LayerError(f"leakyrelu slope must be between -{MAX_SLOPE:g} and {MAX_SLOPE:g}, got {slope:g}", "slope")
        return Layer("leakyrelu", (("slope", slope),))
    if name in ("dropout", "dropout2d"):
        p = _float(args, "p")
        if not 0.0 <= p < 1.0:
            raise LayerError(f"dropout probability must be in [0, 1), got {p:g}", "p")
        return Layer(name, (("p", p),))
    if name in ("maxpool", "avgpool"):
        kernel = _int(args, "kernel", 1)
        stride = kernel if args.get("stride") is None else _int(args, "stride", 1)
        padding = _int(args, "padding", 0)
        if padding * 2 > kernel:
            raise LayerError(f"pool padding {padding} is more than half the kernel {kernel}", "padding")
        return Layer(name + "2d", (("kernel", kernel), ("stride", stride), ("padding", padding)))
    if name in ("gap", "globalavgpool"):
        return Layer("globalavgpool")
    if name == "flatten":
        return Layer("flatten")
    if name == "linear":
        return Layer("linear", (("out_features", _int(args, "features", 1)), ("bias", _bool(args, "bias"))))
    raise AssertionError(f"unhandled builtin {b.name}")  # pragma: no cover


def _int(args: dict, key: str, minimum: int) -> int:
    v = args[key]
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v != int(v):
        raise LayerError(f"`{key}` must be a whole number, got {_fmt(v)}", key)
    if v < minimum:
        raise LayerError(f"`{key}` must be at least {minimum}, got {_fmt(v)}", key)
    if v > 1 << 40:
        raise LayerError(f"`{key}` = {_fmt(v)} is absurdly large", key)
    return int(v)


def _float(args: dict, key: str) -> float:
    v = args[key]
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise LayerError(f"`{key}` must be a finite number, got {_fmt(v)}", key)
    return float(v)


def _bool(args: dict, key: str) -> bool:
    v = args[key]
    if not isinstance(v, bool):
        raise LayerError(f"`{key}` must be true or false, got {_fmt(v)}", key)
    return v


@dataclass(frozen=True)
class Effect:
    """What a layer does to one sample: output shape, parameters, multiply-accumulates."""

    shape: tuple[int, ...]
    params: int
    macs: int


def infer(layer: Layer, shape: tuple[int, ...]) -> Effect:
    """Apply ``layer`` to an input of ``shape``; raises :class:`LayerError` if it cannot."""
    t = layer.type
    a = dict(layer.args)
    if t == "conv2d":
        c, h, w = _image(shape, "a convolution")
        out, k, s, p, d, g = a["out_channels"], a["kernel"], a["stride"], a["padding"], a["dilation"], a["groups"]
        if c % g or out % g:
            raise LayerError(f"groups={g} must divide both input channels {c} and output channels {out}", "groups")
        oh, ow = (_out(h, k, s, p, d), _out(w, k, s, p, d))
        if oh < 1 or ow < 1:
            raise LayerError(f"a {k}x{k} convolution with stride {s} turns {h}x{w} into {oh}x{ow}", hint="use a smaller kernel or stride, or a larger input")
        params = out * (c // g) * k * k + (out if a["bias"] else 0)
        return Effect((out, oh, ow), params, out * oh * ow * (c // g) * k * k)
    if t == "batchnorm2d":
        c, _, _ = _image(shape, "batchnorm")
        return Effect(shape, 2 * c, 0)
    if t in ("maxpool2d", "avgpool2d"):
        c, h, w = _image(shape, "pooling")
        k, s, p = a["kernel"], a["stride"], a["padding"]
        oh, ow = _out(h, k, s, p, 1), _out(w, k, s, p, 1)
        if oh < 1 or ow < 1:
            raise LayerError(f"a {k}x{k} pool with stride {s} turns {h}x{w} into {oh}x{ow}", hint="the input is too small for this many pooling steps: remove a block or a pool, or use a larger input")
        return Effect((c, oh, ow), 0, 0)
    if t == "globalavgpool":
        c, _, _ = _image(shape, "global average pooling")
        return Effect((c, 1, 1), 0, 0)
    if t == "flatten":
        n = 1
        for dim in shape:
            n *= dim
        return Effect((n,), 0, 0)
    if t == "linear":
        if len(shape) != 1:
            raise LayerError(f"linear needs a flat input, got {shape_str(shape)}", hint="put `flatten` (or `gap . flatten`) before `linear`")
        (n,) = shape
        out = a["out_features"]
        return Effect((out,), n * out + (out if a["bias"] else 0), n * out)
    return Effect(shape, 0, 0)  # activations, dropout, identity


def _image(shape: tuple[int, ...], what: str) -> tuple[int, int, int]:
    if len(shape) != 3:
        raise LayerError(f"{what} needs a CxHxW input, got {shape_str(shape)}")
    return shape  # type: ignore[return-value]


def _out(size: int, k: int, s: int, p: int, d: int) -> int:
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


def shape_str(shape: tuple[int, ...]) -> str:
    return "x".join(str(d) for d in shape)

"""The layer registry: every built-in layer declared once.

A :class:`Layer` is one resolved PyTorch layer (``conv2d`` with every argument filled in,
``batchnorm2d``, ``relu``, ...).  Each layer type is one :class:`LayerType` entry in
:data:`TYPES`, registered with the ``.fdsl`` names that make it (:data:`BUILTINS`, with
their parameters and defaults): how those names resolve their arguments, the output shape,
parameter count and multiply-accumulates (:func:`infer`, the same numbers the compiled
module has) and the PyTorch constructor it compiles to (:func:`torch_ctor`).  Adding a
layer type is one :func:`register` call.  Shapes are tuples without the batch dimension:
``(C, H, W)`` or ``(N,)`` after ``flatten``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple


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


class _Same:
    """The value ``same`` (``padding=same``): the padding that keeps the size."""

    def __repr__(self) -> str:
        return "same"


SAME = _Same()


def _fmt(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int) and abs(v) > 10**15:
        return f"{v:.3g}" if abs(v) < 10**300 else f"a number of about {int(v.bit_length() * 0.30103)} digits"
    return f"{v:g}" if isinstance(v, float) else str(v)


class LayerError(ValueError):
    """A layer cannot be built or applied; ``arg`` names the argument at fault, if any."""

    def __init__(
        self, message: str, arg: str | None = None, hint: str | None = None, suggestion: str | None = None
    ) -> None:
        super().__init__(message)
        self.arg = arg
        self.hint = hint
        self.suggestion = suggestion  # a value to write instead of ``arg``'s, when one is clearly meant


@dataclass(frozen=True)
class Effect:
    """What a layer does to one sample: output shape, parameters, multiply-accumulates."""

    shape: tuple[int, ...]
    params: int
    macs: int


REQUIRED = object()  # a parameter without a default


@dataclass(frozen=True)
class Builtin:
    """A name usable in a ``.fdsl`` file: its parameters (with defaults), the layer type it
    resolves to, the arguments its name fixes (``conv3x3``: ``kernel=3``) and the parameters
    named otherwise in the PyTorch constructor (``conv``'s ``channels`` sets ``out_channels``)."""

    name: str
    params: tuple[tuple[str, object], ...]  # (name, default); REQUIRED for no default
    doc: str
    type: str
    fixed: tuple[tuple[str, object], ...] = ()
    renamed: tuple[tuple[str, str], ...] = ()  # (parameter, constructor argument)

    def slot(self, param: str) -> str:
        """The constructor argument (:class:`Slot`) that parameter ``param`` sets."""
        return dict(self.renamed).get(param, param)

    def fixes(self, param: str) -> bool:
        """Whether the name itself fixes ``param`` (``conv3x3``'s kernel), so it cannot be given."""
        return param in dict(self.fixed)


Literal = Callable[[object], str]  # writes a value as Python source (codegen's checked repr)
NO_DEFAULT = object()  # a constructor argument that is always written


class Slot(NamedTuple):
    """One argument of a layer's PyTorch constructor: its name, its kind (``int``,
    ``float``, ``bool``, or ``channels_in`` for the channels flowing in) and its default."""

    name: str
    kind: str
    default: object = NO_DEFAULT
    same_as: str | None = None  # left out when equal to this other argument (a pool's stride: its kernel)


class Arg(NamedTuple):
    """A constructor argument as code: ``text`` (a literal, or a name such as a parameter of
    a generated function), the value it has in each place it is used, and whether ``text``
    is a literal."""

    text: str
    values: tuple
    literal: bool


@dataclass(frozen=True)
class LayerType:
    """One resolved layer type, declared once: how the built-ins that make it resolve their
    arguments, its shape / parameter / MAC inference, its PyTorch constructor's arguments
    (``slots``) and how the constructor is written from them (``render``: ``{slot: Arg}``
    -> the ``nn`` class and its argument texts, defaults left out)."""

    type: str
    resolve: Callable[[str, dict], Layer]
    infer: Callable[[Layer, tuple[int, ...]], Effect]
    slots: tuple[Slot, ...]
    render: Callable[[dict[str, Arg]], tuple[str, list[str]]]
    out_slot: str | None = None  # the argument that sets the channels (features) it outputs
    classifier: bool = False  # the last one in the head outputs `num_classes`
    switch: str | None = None  # the argument the compiled module's `dropout` switch turns off
    flattens: bool = False  # its output is one vector of all its input's values
    convolution: bool = False  # a unit holding one counts as a convolution (inspect's units)
    weights: bool = False  # a weight layer: counted in a path's depth (convolutions, linear)
    identity: bool = False  # passes its input through unchanged


TYPES: dict[str, LayerType] = {}
BUILTINS: dict[str, Builtin] = {}
JOIN_MODES = ("mean", "sum", "max", "concat")


def register(layer_type: LayerType, *builtins: tuple, renamed: tuple[tuple[str, str], ...] = ()) -> None:
    """Declare a layer type and the ``(name, doc, params)`` or ``(name, doc, params, fixed)``
    built-ins that resolve to it; ``renamed`` maps their parameters to the constructor's
    arguments where the names differ."""
    TYPES[layer_type.type] = layer_type
    for name, doc, params, *fixed in builtins:
        BUILTINS[name] = Builtin(name, params, doc, layer_type.type, tuple(fixed[0]) if fixed else (), renamed)


def resolve(name: str, args: dict[str, object]) -> Layer:
    """Turn a built-in name and its bound arguments into a :class:`Layer` (no shapes yet)."""
    builtin = BUILTINS[name]
    return TYPES[builtin.type].resolve(name, {**args, **dict(builtin.fixed)})


def variant(name: str, param: str, value: object) -> str | None:
    """The built-in of ``name``'s layer type whose name fixes ``param`` to ``value``
    (``conv``, kernel 3: ``conv3x3``), or with ``value`` None the one that takes ``param``."""
    kind = BUILTINS[name].type
    for b in BUILTINS.values():
        if b.type != kind:
            continue
        if value is None and any(p == param for p, _ in b.params):
            return b.name
        if value is not None and dict(b.fixed).get(param, object()) == value:
            return b.name
    return None


def infer(layer: Layer, shape: tuple[int, ...]) -> Effect:
    """Apply ``layer`` to an input of ``shape``; raises :class:`LayerError` if it cannot."""
    return TYPES[layer.type].infer(layer, shape)


def slot_value(layer: Layer, slot: str, in_shape: tuple[int, ...]):
    """The value of constructor argument ``slot`` of ``layer`` applied to ``in_shape``."""
    if slot in ("in_channels", "num_features", "in_features"):
        return in_shape[0]
    return layer.arg(slot)


def torch_ctor(layer: Layer, in_shape: tuple[int, ...], literal: Literal, num_classes: bool = False) -> str:
    """The PyTorch constructor (source text, ``nn.``-qualified or a class the compiled module
    defines, ``PathBatchNorm2d``) of ``layer`` on ``in_shape``,
    every argument a literal (with ``num_classes``, a classifier's width is the name
    ``num_classes``)."""
    t = TYPES[layer.type]
    args = {}
    for slot in t.slots:
        v = slot_value(layer, slot.name, in_shape)
        classifier = num_classes and t.classifier and slot.name == t.out_slot
        args[slot.name] = Arg("num_classes", (v,), False) if classifier else Arg(literal(v), (v,), True)
    cls, texts = t.render(args)
    return f"{cls}({', '.join(texts)})"


def _keyword(args: dict[str, Arg], name: str, default) -> list[str]:
    """``name=text``, or nothing when the argument is a literal at its default."""
    a = args[name]
    return [] if a.literal and a.values[0] == default else [f"{name}={a.text}"]


# ---- argument checks --------------------------------------------------------------------


def _int(args: dict, key: str, minimum: int) -> int:
    v = args[key]
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not _finite(v) or v != int(v):
        raise LayerError(f"`{key}` must be a whole number, got {_fmt(v)}", key)
    if v < minimum:
        raise LayerError(f"`{key}` must be at least {minimum}, got {_fmt(v)}", key)
    if v > 1 << 40:
        raise LayerError(f"`{key}` = {_fmt(v)} is absurdly large", key)
    return int(v)


def _finite(v: float) -> bool:
    return isinstance(v, int) or math.isfinite(v)


def _float(args: dict, key: str) -> float:
    v = args[key]
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not _finite(v) or abs(v) > 1e30:
        raise LayerError(f"`{key}` must be a finite number of sensible size, got {_fmt(v)}", key)
    return float(v)


def _bool(args: dict, key: str) -> bool:
    v = args[key]
    if not isinstance(v, bool):
        raise LayerError(f"`{key}` must be true or false, got {_fmt(v)}", key)
    return v


def _image(shape: tuple[int, ...], what: str) -> tuple[int, int, int]:
    if len(shape) != 3:
        raise LayerError(f"{what} needs a CxHxW input, got {shape_str(shape)}")
    return shape  # type: ignore[return-value]


def _out(size: int, k: int, s: int, p: int, d: int) -> int:
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


def shape_str(shape: tuple[int, ...]) -> str:
    return "x".join(str(d) for d in shape)


def _same(layer: Layer, shape: tuple[int, ...]) -> Effect:
    return Effect(shape, 0, 0)


# ---- the registry -------------------------------------------------------------------------
# Convolution: `conv(channels, kernel=3, ...)` and the fixed-kernel `conv1x1` ... `conv7x7`.

_CONV_OPTIONS = (("stride", 1), ("padding", None), ("bias", True), ("groups", 1), ("dilation", 1))


def _conv_resolve(name: str, args: dict) -> Layer:
    kernel = _int(args, "kernel", 1)
    dilation = _int(args, "dilation", 1)
    padding = args.get("padding")
    if padding is None or padding is SAME:
        if kernel % 2 == 0:
            raise LayerError(
                (
                    f"`same` padding keeps the size only with an odd kernel; a {kernel}x{kernel} kernel would grow it "
                    f"by {dilation}"
                ),
                None if BUILTINS[name].fixes("kernel") else "kernel",
                hint="use an odd kernel, or give the padding, e.g. `padding=1`",
            )
        padding = dilation * (kernel // 2)
    else:
        padding = _int(args, "padding", 0)
    return Layer(
        "conv2d",
        (
            ("out_channels", _int(args, "channels", 1)),
            ("kernel", kernel),
            ("stride", _int(args, "stride", 1)),
            ("padding", padding),
            ("dilation", dilation),
            ("groups", _int(args, "groups", 1)),
            ("bias", _bool(args, "bias")),
        ),
    )


def _conv_infer(layer: Layer, shape: tuple[int, ...]) -> Effect:
    c, h, w = _image(shape, "a convolution")
    a = dict(layer.args)
    out, k, s, p, d, g = a["out_channels"], a["kernel"], a["stride"], a["padding"], a["dilation"], a["groups"]
    if c % g or out % g:
        raise LayerError(f"groups={g} must divide both input channels {c} and output channels {out}", "groups")
    oh, ow = (_out(h, k, s, p, d), _out(w, k, s, p, d))
    if oh < 1 or ow < 1:
        raise LayerError(
            f"a {k}x{k} convolution with stride {s} turns {h}x{w} into {oh}x{ow}",
            hint="use a smaller kernel or stride, or a larger input",
        )
    params = out * (c // g) * k * k + (out if a["bias"] else 0)
    return Effect((out, oh, ow), params, out * oh * ow * (c // g) * k * k)


_CONV_SLOTS = (
    Slot("in_channels", "channels_in"),
    Slot("out_channels", "int"),
    Slot("kernel", "int"),
    Slot("stride", "int", 1),
    Slot("padding", "int", 0),
    Slot("dilation", "int", 1),
    Slot("groups", "int", 1),
    Slot("bias", "bool", True),
)


def _conv_render(a: dict[str, Arg]) -> tuple[str, list[str]]:
    args = [a["in_channels"].text, a["out_channels"].text, a["kernel"].text]
    for name, default in (("stride", 1), ("padding", 0), ("dilation", 1), ("groups", 1), ("bias", True)):
        args += _keyword(a, name, default)
    return "nn.Conv2d", args


register(
    LayerType(
        "conv2d",
        _conv_resolve,
        _conv_infer,
        _CONV_SLOTS,
        _conv_render,
        out_slot="out_channels",
        convolution=True,
        weights=True,
    ),
    ("conv", "2-D convolution", (("channels", REQUIRED), ("kernel", 3), *_CONV_OPTIONS)),
    *(
        (f"conv{k}x{k}", f"{k}x{k} convolution", (("channels", REQUIRED), *_CONV_OPTIONS), (("kernel", k),))
        for k in (1, 3, 5, 7)
    ),
    renamed=(("channels", "out_channels"),),
)


def _batchnorm_infer(layer: Layer, shape: tuple[int, ...]) -> Effect:
    c, _, _ = _image(shape, "batchnorm")
    return Effect(shape, 2 * c, 0)


register(
    LayerType(
        "batchnorm2d",
        lambda name, args: Layer("batchnorm2d"),
        _batchnorm_infer,
        (Slot("num_features", "channels_in"),),
        # running statistics per path: the compiled module's nn.BatchNorm2d subclass
        lambda a: ("PathBatchNorm2d", [a["num_features"].text]),
    ),
    ("batchnorm", "batch normalisation over channels", ()),
    ("bn", "batch normalisation over channels (same as batchnorm)", ()),
)

# Activations and identity: no parameters, shape unchanged.
for _name, _cls, _identity in (
    ("relu", "ReLU", False),
    ("gelu", "GELU", False),
    ("elu", "ELU", False),
    ("silu", "SiLU", False),
    ("sigmoid", "Sigmoid", False),
    ("tanh", "Tanh", False),
    ("identity", "Identity", True),
):
    register(
        LayerType(
            _name,
            lambda name, args: Layer(name),
            _same,
            (),
            lambda a, _cls=_cls: (f"nn.{_cls}", []),
            identity=_identity,
        ),
        (_name, "passes its input through" if _identity else f"{_name} activation", ()),
    )


MAX_SLOPE = 1e6  # leakyrelu: finite, and small enough for float32 weights and activations


def _leakyrelu_resolve(name: str, args: dict) -> Layer:
    slope = _float(args, "slope")
    if abs(slope) > MAX_SLOPE:
        raise LayerError(f"leakyrelu slope must be between -{MAX_SLOPE:g} and {MAX_SLOPE:g}, got {slope:g}", "slope")
    return Layer("leakyrelu", (("slope", slope),))


register(
    LayerType(
        "leakyrelu", _leakyrelu_resolve, _same, (Slot("slope", "float"),), lambda a: ("nn.LeakyReLU", [a["slope"].text])
    ),
    ("leakyrelu", "leaky ReLU", (("slope", 0.01),)),
)


def _dropout_resolve(name: str, args: dict) -> Layer:
    p = _float(args, "p")
    if 1.0 <= p < 100.0 and p == int(p):  # a whole percentage
        raise LayerError(
            f"dropout probability must be in [0, 1), got {p:g}",
            "p",
            hint=f"a probability, not a percentage: did you mean `{p / 100:g}`?",
            suggestion=f"{p / 100:g}",
        )
    if not 0.0 <= p < 1.0:
        raise LayerError(f"dropout probability must be in [0, 1), got {p:g}", "p")
    return Layer(name, (("p", p),))


def _dropout_render(cls: str) -> Callable[[dict[str, Arg]], tuple[str, list[str]]]:
    def render(a: dict[str, Arg]) -> tuple[str, list[str]]:
        p = a["p"]  # `dropout`: the compiled module's switch
        return f"nn.{cls}", ["0.0" if p.literal and not p.values[0] else f"{p.text} if dropout else 0.0"]

    return render


register(
    LayerType("dropout", _dropout_resolve, _same, (Slot("p", "float"),), _dropout_render("Dropout"), switch="p"),
    ("dropout", "dropout of single activations", (("p", REQUIRED),)),
)
register(
    LayerType("dropout2d", _dropout_resolve, _same, (Slot("p", "float"),), _dropout_render("Dropout2d"), switch="p"),
    ("dropout2d", "dropout of whole channels", (("p", REQUIRED),)),
)


def _pool_resolve(name: str, args: dict) -> Layer:
    kernel = _int(args, "kernel", 1)
    stride = kernel if args.get("stride") is None else _int(args, "stride", 1)
    padding = _int(args, "padding", 0)
    if padding * 2 > kernel:
        raise LayerError(f"pool padding {padding} is more than half the kernel {kernel}", "padding")
    return Layer(name + "2d", (("kernel", kernel), ("stride", stride), ("padding", padding)))


def _pool_infer(layer: Layer, shape: tuple[int, ...]) -> Effect:
    c, h, w = _image(shape, "pooling")
    k, s, p = layer.arg("kernel"), layer.arg("stride"), layer.arg("padding")
    oh, ow = _out(h, k, s, p, 1), _out(w, k, s, p, 1)
    if oh < 1 or ow < 1:
        raise LayerError(
            f"a {k}x{k} pool with stride {s} turns {h}x{w} into {oh}x{ow}",
            hint="the input is too small for this many pooling steps: remove a block or a pool, or use a larger input",
        )
    return Effect((c, oh, ow), 0, 0)


def _pool_render(cls: str) -> Callable[[dict[str, Arg]], tuple[str, list[str]]]:
    def render(a: dict[str, Arg]) -> tuple[str, list[str]]:
        args = [a["kernel"].text]
        if a["stride"].text != a["kernel"].text:
            args.append(f"stride={a['stride'].text}")
        return f"nn.{cls}", args + _keyword(a, "padding", 0)

    return render


_POOL_SLOTS = (Slot("kernel", "int"), Slot("stride", "int", same_as="kernel"), Slot("padding", "int", 0))
_POOL_PARAMS = (("kernel", REQUIRED), ("stride", None), ("padding", 0))
register(
    LayerType("maxpool2d", _pool_resolve, _pool_infer, _POOL_SLOTS, _pool_render("MaxPool2d")),
    ("maxpool", "max pooling", _POOL_PARAMS),
)
register(
    LayerType("avgpool2d", _pool_resolve, _pool_infer, _POOL_SLOTS, _pool_render("AvgPool2d")),
    ("avgpool", "average pooling", _POOL_PARAMS),
)


def _gap_infer(layer: Layer, shape: tuple[int, ...]) -> Effect:
    c, _, _ = _image(shape, "global average pooling")
    return Effect((c, 1, 1), 0, 0)


register(
    LayerType(
        "globalavgpool",
        lambda name, args: Layer("globalavgpool"),
        _gap_infer,
        (),
        lambda a: ("nn.AdaptiveAvgPool2d", ["1"]),
    ),
    ("gap", "global average pooling to 1x1", ()),
    ("globalavgpool", "global average pooling to 1x1 (same as gap)", ()),
)
register(
    LayerType(
        "flatten",
        lambda name, args: Layer("flatten"),
        lambda layer, shape: Effect((math.prod(shape),), 0, 0),
        (),
        lambda a: ("nn.Flatten", []),
        flattens=True,
    ),
    ("flatten", "flattens CxHxW to one vector", ()),
)


def _linear_resolve(name: str, args: dict) -> Layer:
    return Layer("linear", (("out_features", _int(args, "features", 1)), ("bias", _bool(args, "bias"))))


def _linear_infer(layer: Layer, shape: tuple[int, ...]) -> Effect:
    if len(shape) != 1:
        raise LayerError(
            f"linear needs a flat input, got {shape_str(shape)}",
            hint="put `flatten` (or `gap . flatten`) before `linear`",
        )
    (n,) = shape
    out = layer.arg("out_features")
    return Effect((out,), n * out + (out if layer.arg("bias") else 0), n * out)


_LINEAR_SLOTS = (Slot("in_features", "channels_in"), Slot("out_features", "int"), Slot("bias", "bool", True))


def _linear_render(a: dict[str, Arg]) -> tuple[str, list[str]]:
    return "nn.Linear", [a["in_features"].text, a["out_features"].text, *_keyword(a, "bias", True)]


register(
    LayerType(
        "linear",
        _linear_resolve,
        _linear_infer,
        _LINEAR_SLOTS,
        _linear_render,
        out_slot="out_features",
        classifier=True,
        weights=True,
    ),
    ("linear", "fully connected layer", (("features", REQUIRED), ("bias", True))),
    renamed=(("features", "out_features"),),
)

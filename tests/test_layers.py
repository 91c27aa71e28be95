"""The layer registry: every built-in resolves, infers and compiles to a PyTorch layer that
agrees with the inference (shape and parameters), so a new entry is covered by this test."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
import torch
from torch import nn

from fractal_dsl import layers

# Arguments for each built-in's required parameters, and the input each is applied to.
ARGS = {"channels": 6, "p": 0.25, "kernel": 2, "features": 5}
FLAT = {"linear"}


@functools.cache
def _compiled_module():
    """A compiled module, for the classes it defines (PathBatchNorm2d)."""
    import fractal_dsl
    from fractal_dsl import codegen

    net = fractal_dsl.load(Path(__file__).resolve().parent.parent / "examples" / "tiny.fdsl")
    return codegen.load_module(codegen.generate(net), "layers_tiny")


@pytest.mark.parametrize("name", sorted(layers.BUILTINS))
def test_builtin_compiles_to_a_torch_layer_that_matches_its_inference(name):
    builtin = layers.BUILTINS[name]
    args = {p: ARGS[p] if default is layers.REQUIRED else default for p, default in builtin.params}
    layer = layers.resolve(name, args)
    assert layer.type == builtin.type
    shape = (12,) if name in FLAT else (4, 9, 9)
    effect = layers.infer(layer, shape)
    source = layers.torch_ctor(layer, shape, repr)
    module = eval(source, {"nn": nn, "dropout": True, "PathBatchNorm2d": _compiled_module().PathBatchNorm2d})
    if any(n.startswith("running_") for n, _ in module.named_buffers()):  # keeps running statistics:
        assert type(module).__name__.startswith("Path")  # per path, in the compiled module (issue 17)
    out = module.eval()(torch.randn(2, *shape))
    assert tuple(out.shape[1:]) == effect.shape
    assert sum(p.numel() for p in module.parameters()) == effect.params


def test_every_layer_type_is_reachable_from_a_builtin():
    assert {b.type for b in layers.BUILTINS.values()} == set(layers.TYPES)


def test_a_classifier_linear_takes_num_classes_from_the_module():
    layer = layers.resolve("linear", {"features": 10, "bias": True})
    assert layers.torch_ctor(layer, (64,), repr, num_classes=True) == "nn.Linear(64, num_classes)"
    assert layers.torch_ctor(layer, (64,), repr) == "nn.Linear(64, 10)"


def test_the_registry_declares_what_names_fix_and_rename():
    """What the code generator and the hints ask the registry instead of reading names."""
    assert layers.BUILTINS["conv3x3"].fixes("kernel") and not layers.BUILTINS["conv"].fixes("kernel")
    assert (
        layers.resolve(
            "conv5x5", {"channels": 8, "stride": 1, "padding": None, "bias": True, "groups": 1, "dilation": 1}
        ).arg("kernel")
        == 5
    )
    assert layers.BUILTINS["conv1x1"].slot("channels") == "out_channels"
    assert layers.BUILTINS["linear"].slot("features") == "out_features"
    assert layers.BUILTINS["conv"].slot("stride") == "stride"
    assert layers.variant("conv3x3", "kernel", None) == "conv"
    assert layers.variant("conv", "kernel", 7) == "conv7x7"
    assert layers.variant("conv", "kernel", 9) is None
    flagged = {t: (lt.convolution, lt.weights, lt.identity) for t, lt in layers.TYPES.items()}
    assert {t for t, f in flagged.items() if f[0]} == {"conv2d"}
    assert {t for t, f in flagged.items() if f[1]} == {"conv2d", "linear"}
    assert {t for t, f in flagged.items() if f[2]} == {"identity"}


def test_node_kinds_print_and_serialise_as_their_values():
    import json

    from fractal_dsl.ir import LAYER, Kind

    assert LAYER is Kind.LAYER and LAYER == "layer" and f"{LAYER}" == str(LAYER) == "layer"
    assert json.dumps({"kind": LAYER}) == '{"kind": "layer"}' and {"layer": 1}[LAYER] == 1


def test_no_module_outside_the_registry_recognises_a_layer_type_by_its_name():
    """Comparisons with a layer type's name (``layer.type == "conv2d"``) or a built-in's
    prefix (``name.startswith("conv")``) belong in layers.py; the others ask its flags.
    habits.py (PyTorch's and Keras's spellings) and lexer.py (standalone) are not asking."""
    import ast

    package = Path(layers.__file__).parent
    names = set(layers.TYPES)
    found = []
    for path in sorted(package.rglob("*.py")):
        if path.name in ("layers.py", "habits.py", "lexer.py"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Compare):
                consts = [c for c in ast.walk(node) if isinstance(c, ast.Constant) and isinstance(c.value, str)]
                found += [f"{path.name}:{node.lineno} {c.value}" for c in consts if c.value in names]
            elif isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "startswith" and node.args:
                arg = node.args[0]
                if isinstance(arg, ast.Constant) and any(b.startswith(str(arg.value)) for b in layers.BUILTINS):
                    found.append(f"{path.name}:{node.lineno} startswith({arg.value!r})")
    assert found == []

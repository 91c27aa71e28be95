"""The package's frame stays a frame: drawn from its imports (benchmarks/import_layers.py),
every module has a floor, no modules import each other round, and at most two imports
climb to a higher floor."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _layers():
    spec = importlib.util.spec_from_file_location("import_layers", ROOT / "benchmarks" / "import_layers.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_module_has_a_floor_and_no_circle_and_at_most_two_upward_arrows():
    layers = _layers()
    unplaced, circles, upward = layers.report(layers.graph())
    assert unplaced == []
    assert circles == []
    assert len(upward) <= 2, upward


def test_the_drawing_sees_lazy_and_relative_imports():
    layers = _layers()
    g = layers.graph()
    assert g.has_edge("cli", "webview")  # inside a function
    assert g.has_edge("train.loop", "train.checkpoint")  # `from . import checkpoint`
    assert g.has_edge("export", "train.checkpoint")  # `from .train.checkpoint import ...`
    assert g.has_edge("codegen", "ir") and not g.has_edge("ir", "codegen")
    assert g.has_edge("export", "train.checkpoint")


def test_a_circle_and_an_upward_arrow_are_reported(monkeypatch):
    layers = _layers()
    g = layers.graph()
    g.add_edge("ir", "webview")  # what Network._repr_html_ used to do
    unplaced, circles, upward = layers.report(g)
    assert ("ir", "webview") in upward
    assert any({"ir", "webview"} <= set(c) for c in circles)

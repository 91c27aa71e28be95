"""Checkpoints written by earlier versions of the compiled module still load.

The fixture in tests/fixtures/state_dict/ was written by the code generator as it was before
the compiled module was rewritten around one function per key entry (make_fixture.py says
how): every example's ``state_dict`` keys and shapes, in order, and a real checkpoint of
``examples/tiny.fdsl`` with its eval output on a fixed input.
"""

from __future__ import annotations

import json
import runpy
from pathlib import Path

import pytest
import torch
from conftest import EXAMPLES, ROOT

import fractal_dsl
from fractal_dsl import codegen

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "state_dict"


def _module(path: Path, name: str):
    return codegen.load_module(codegen.generate(fractal_dsl.load(path)), name)


# the examples that existed when the fixture was written (later ones have no old checkpoints)
PINNED = [p for p in EXAMPLES if (FIXTURE / f"{p.stem}.json").exists()]


def test_the_fixture_pins_the_paper_networks():
    assert {"fractal3", "fractal4", "fractalnet34", "tiny"} <= {p.stem for p in PINNED}


@pytest.mark.parametrize("path", PINNED, ids=[p.stem for p in PINNED])
def test_state_dict_keys_and_shapes_unchanged(path):
    """Every key of the old module keeps its name, shape and order; the keys added since are
    the input's normalisation and the per-path batch-norm statistics (issue 17), and nothing
    else."""
    expected = [(k, tuple(shape)) for k, shape in json.loads((FIXTURE / f"{path.stem}.json").read_text())]
    state = _module(path, f"ckpt_{path.stem}").build().state_dict()
    actual = [(k, tuple(v.shape)) for k, v in state.items()]
    old = {k for k, _ in expected}
    assert [item for item in actual if item[0] in old] == expected  # optimizer state is saved by position
    added = [k for k, _ in actual if k not in old]
    assert added[:2] == ["normalize.mean", "normalize.std"]
    for k in added[2:]:
        layer, name = k.rsplit(".", 1)
        stat, column = name.rsplit("_c", 1)
        assert stat in ("running_mean", "running_var", "num_batches_tracked") and f"{layer}.{stat}" in old
        assert dict(actual)[k] == dict(actual)[f"{layer}.{stat}"] and 1 <= int(column) <= 4


def test_old_checkpoint_loads_and_gives_the_same_eval_output():
    """Strictly, as a user loads it: the per-path statistics it lacks start as the whole
    network's (one warning says so), the normalisation as the identity."""
    module = _module(ROOT / "examples" / "tiny.fdsl", "ckpt_tiny_eval")
    model = module.build()
    with pytest.warns(UserWarning, match="no per-path batch-norm statistics") as caught:
        model.load_state_dict(torch.load(FIXTURE / "tiny.pt", weights_only=True), strict=True)
    assert len(caught) == 1 and "\n" not in str(caught[0].message)
    ref = json.loads((FIXTURE / "tiny_eval.json").read_text())
    x = torch.randn(*ref["shape"], generator=torch.Generator().manual_seed(ref["input_seed"]))
    with torch.no_grad():
        out = model.eval()(x)
        by_column = [model(x, column=k) for k in (1, 2, 3)]
    torch.testing.assert_close(out, torch.tensor(ref["output"]), rtol=1e-5, atol=1e-5)
    old = torch.load(FIXTURE / "tiny.pt", weights_only=True)
    bn = model.block2.column3.layer1[2]
    assert torch.equal(bn.running_mean_c3, old["block2.column3.layer1.2.running_mean"])
    assert all(o.shape == (2, 10) for o in by_column)


def test_same_seed_gives_the_same_initial_weights_as_before():
    """Layers are constructed and initialised in the same order as before, so a seed still
    picks the same starting point (the checkpoint's parameters are its initial weights; only
    its batch-norm statistics saw data)."""
    module = _module(ROOT / "examples" / "tiny.fdsl", "ckpt_tiny_init")
    torch.manual_seed(0)
    model = module.build()
    old = torch.load(FIXTURE / "tiny.pt", weights_only=True)
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.detach(), old[name], rtol=0, atol=0, msg=name)


INIT = Path(__file__).resolve().parent / "fixtures" / "init_weights"
INIT_PINNED = [p for p in EXAMPLES if (INIT / f"{p.stem}.json").exists()]


@pytest.mark.parametrize("path", INIT_PINNED, ids=[p.stem for p in INIT_PINNED])
def test_same_seed_gives_every_example_the_same_tensors_as_before(path):
    """Every tensor of every example's module built with seed 0 (and of its ``--column 2``
    module), in state_dict order, has the bytes the generator before issue 20's unit table
    gave it (tests/fixtures/init_weights/make_fixture.py): the loop builds the units in the
    same order, so parameter initialisation draws the same random numbers."""
    digests = runpy.run_path(str(INIT / "make_fixture.py"))["digests"]  # the fixture's own measure
    expected = json.loads((INIT / f"{path.stem}.json").read_text())
    net = fractal_dsl.load(path)
    assert list(digests(net).items()) == list(expected["whole"].items())
    if "column2" in expected:
        assert list(digests(net, 2).items()) == list(expected["column2"].items())

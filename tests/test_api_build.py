"""fractal_dsl.build: the compiled module in memory, for notebooks."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import ROOT

import fractal_dsl
from fractal_dsl import codegen

TINY = ROOT / "examples" / "tiny.fdsl"


def _readme_notebook_snippet() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("### In a notebook", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match, "README's notebook section has no python block"
    return match.group(1)


def test_readme_notebook_snippet_runs(monkeypatch):
    monkeypatch.chdir(ROOT)
    snippet = _readme_notebook_snippet()
    assert len(snippet.strip().splitlines()) == 3
    namespace: dict = {}
    torch.manual_seed(0)
    exec(compile(snippet, "README.md", "exec"), namespace)  # noqa: S102 - the README's own example
    assert namespace["logits"].shape == (8, 10)
    assert namespace["model"].drop_path_per == "sample"
    assert namespace["model"].last_drop_path["mode"] == "per-sample"


def test_build_is_the_compiled_module_of_path_text_and_path_object():
    expected = codegen.load_module(codegen.generate(fractal_dsl.load(TINY)), "api_expected")
    x = torch.randn(2, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(3)
    reference = expected.build(num_classes=10).eval()
    for source in (str(TINY), TINY, TINY.read_text(encoding="utf-8")):
        torch.manual_seed(3)
        model = fractal_dsl.build(source).eval()
        assert type(model).__name__ == "Tiny"
        assert model.state_dict().keys() == reference.state_dict().keys()
        with torch.no_grad():
            torch.testing.assert_close(model(x), reference(x), rtol=0, atol=0)


def test_build_passes_overrides_and_reports_bad_programs(tmp_path):
    model = fractal_dsl.build(str(TINY), num_classes=3, drop_path=False, dropout=False)
    assert model.head[-1].out_features == 3 and not model.drop_path
    assert all(m.p == 0.0 for m in model.modules() if isinstance(m, torch.nn.Dropout))
    with pytest.raises(fractal_dsl.FractalError, match="is missing"):
        fractal_dsl.build("network bad {\n  columns 0\n}\n")
    missing = tmp_path / "missing.fdsl"
    with pytest.raises(fractal_dsl.FractalError, match="cannot read file") as info:
        fractal_dsl.build(str(missing))  # no newline, no brace: a path
    # no position, no empty source line and caret: there is no text to point into
    assert info.value.show() == f"{missing}: error: cannot read file: No such file or directory\n1 error in {missing}"
    with pytest.raises(TypeError):
        fractal_dsl.build(str(TINY), no_such_option=1)


def test_importing_the_package_does_not_import_torch():
    probe = "import sys, fractal_dsl; fractal_dsl.build; print('torch' in sys.modules)"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True, env=env, cwd=Path("/"))
    assert out.stdout.strip() == "False"

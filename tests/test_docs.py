"""Every snippet in README.md and docs/*.md is run, so the documentation cannot drift.

Fenced blocks are classified by their info string:

* no info string: fractal-dsl text — a whole program (checked, compiled, built and run
  forward), a fragment of rules or ``blocks`` lines (each checked inside a small program),
  or diagnostics as ``check`` prints them (reproduced from the example they name);
* ``sh``: each ``fractal-dsl`` command is parsed by the real command line (so every flag
  shown exists); ``check``, ``inspect``, ``compile`` and ``render`` are run, with outputs
  sent to a temporary folder; other lines must name files that exist;
* ``python``: run, in a folder where every example is compiled to ``NAME.py``; an excerpt
  of a compiled module (it starts ``# examples/NAME.fdsl:LINE``) must stand in that module
  word for word; a script that reads ``runs/tiny/`` gets a run of ``examples/tiny.fdsl``
  trained there for one epoch on 300 images; an interface listing (it starts ``class NAME(``)
  must match the class compiled from the example of that class name: every method's
  parameters (names, kinds, the defaults it shows) and every attribute it lists;
* ``text``: prose laid out as a diagram; not code, but every module it names
  (``name.py``, ``train/``) must exist, and a walk-through of an example (it starts
  ``network NAME {``) must quote that example's parameter count;
* ``json``: must parse as JSON (a schema; ``tests/test_anytime.py`` uses it).

Any other info string fails the test, so a new kind of snippet must be given a meaning here.
"""

from __future__ import annotations

import ast
import inspect
import json
import re
import runpy
import shlex
import sys
from pathlib import Path

import click
import pytest
import torch
from click.testing import CliRunner
from conftest import EXAMPLES, ROOT

import fractal_dsl
from fractal_dsl import codegen
from fractal_dsl.cli import main

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```", re.DOTALL | re.MULTILINE)
RUN_COMMANDS = {"check", "inspect", "compile", "render"}


def snippets() -> list[tuple[str, str, str]]:
    out = []
    for path in DOCS:
        text = path.read_text(encoding="utf-8")
        for m in FENCE.finditer(text):
            line = text.count("\n", 0, m.start()) + 1
            out.append((f"{path.name}:{line}", m.group(1).strip(), m.group(2)))
    return out


SNIPPETS = snippets()


@pytest.mark.parametrize(("where", "info", "body"), SNIPPETS, ids=[s[0] for s in SNIPPETS])
def test_snippet(where, info, body, tmp_path, monkeypatch):
    if info == "":
        check_fdsl(body, tmp_path)
    elif info == "sh":
        check_shell(body, tmp_path, monkeypatch)
    elif info == "python":
        run_python(body, tmp_path, monkeypatch)
    elif info == "json":
        json.loads(body)
    elif info == "text":
        check_text(body)
    else:
        pytest.fail(f"{where}: unknown snippet kind {info!r}: give it a meaning in tests/test_docs.py")


# ---- fractal-dsl text -----------------------------------------------------------------

TEMPLATE = """network snippet {{
  input 3x16x16
  classes 10
  key {{
    conv(c, p=0.0) = conv3x3(c, bias=false) . dropout(p) . batchnorm . relu
    pool = maxpool(2)
    head = gap . flatten . linear(classes)
  }}
{rules}
  columns {columns}
{blocks}
}}
"""
DIAGNOSTIC = re.compile(r"^(?P<file>[\w.-]+\.fdsl):(?P<line>\d+):(?P<col>\d+): error: ", re.MULTILINE)


def code_lines(body: str) -> list[str]:
    return [ln.split("#", 1)[0].strip() for ln in body.splitlines() if ln.split("#", 1)[0].strip()]


def check_fdsl(body: str, tmp_path: Path) -> None:
    lines = code_lines(body)
    if DIAGNOSTIC.match(body):
        return reproduce_diagnostic(body, tmp_path)
    if lines and lines[0].startswith("network "):
        net = fractal_dsl.loads(body, "snippet.fdsl")
        model = codegen.load_module(codegen.generate(net), "snippet_module").build().eval()
        with torch.no_grad():
            assert model(torch.randn(1, *net.input_shape)).shape == (1, net.classes)
        return
    if lines and all(ln.startswith("f[") for ln in lines):
        base, *recursive = lines  # a base case, then alternative recursive rules: each with the base case
        for rule in recursive or [base]:
            rules = "\n".join(f"  {r}" for r in dict.fromkeys([base, rule]))
            fractal_dsl.loads(TEMPLATE.format(rules=rules, columns=2, blocks="  blocks 8"), "snippet.fdsl")
        return
    if lines and all(ln.startswith("blocks ") for ln in lines):
        for blocks in lines:
            net = fractal_dsl.loads(TEMPLATE.format(rules="  f[1] = conv", columns=1, blocks=f"  {blocks}"), "snippet.fdsl")
            assert net.blocks >= 1
        return
    pytest.fail(f"not a program, rules, blocks or diagnostics:\n{body}")


def reproduce_diagnostic(body: str, tmp_path: Path) -> None:
    """The snippet shows ``check``'s output for an example with one line changed (the
    source line under the first message): make that change and compare."""
    m = DIAGNOSTIC.match(body)
    example = ROOT / "examples" / m["file"]
    assert example.exists(), f"the diagnostics name {m['file']}, which is not an example"
    shown_line = body.splitlines()[1].strip()
    lines = example.read_text(encoding="utf-8").split("\n")
    n = int(m["line"])
    lines[n - 1] = lines[n - 1][: len(lines[n - 1]) - len(lines[n - 1].lstrip())] + shown_line
    broken = tmp_path / m["file"]
    broken.write_text("\n".join(lines), encoding="utf-8")
    result = CliRunner().invoke(main, ["check", str(broken)])
    assert result.exit_code == 1
    assert result.stderr.replace(str(broken), m["file"]) == body


# ---- shell ----------------------------------------------------------------------------


def check_shell(body: str, tmp_path: Path, monkeypatch) -> None:
    for raw in body.splitlines():
        line = raw.strip()
        words = shlex.split(line.replace("$(which fractal-dsl)", "fractal-dsl"), comments=True)
        if not words:
            continue
        if words[0] in ("export", "python3", "bash", "pip"):
            continue  # environment and setup lines (the Quick start is run by CI itself)
        if words[0] == "torchrun":
            words = words[words.index("fractal-dsl") :]
        if words[0].endswith("python"):
            assert (ROOT / words[1]).exists() or words[1] == "-m", line
            continue
        assert words[0].endswith("fractal-dsl"), f"unknown command in a snippet: {line}"
        stdin = None
        if "<" in words:  # `fractal-dsl check - < FILE`: FILE on standard input
            at = words.index("<")
            stdin = (ROOT / words[at + 1]).read_text(encoding="utf-8")
            words = words[:at] + words[at + 2 :]
        run_fractal_dsl(words[1:], tmp_path, monkeypatch, stdin)


def run_fractal_dsl(args: list[str], tmp_path: Path, monkeypatch, stdin: str | None = None) -> None:
    command = main.commands.get(args[0])
    assert command is not None, f"no command {args[0]!r}"
    with click.Context(main) as parent:
        command.make_context(args[0], list(args[1:]), parent=parent)  # every flag shown exists
    if args[0] not in RUN_COMMANDS:
        return
    args = list(args)
    for flag in ("-o", "--output"):
        if flag in args:
            i = args.index(flag) + 1
            args[i] = str(tmp_path / Path(args[i]).name)
    monkeypatch.chdir(ROOT)
    result = CliRunner().invoke(main, args, input=stdin)
    assert result.exit_code == 0, (args, result.output)


# ---- python ---------------------------------------------------------------------------


GENERATED = re.compile(r"^# (examples/[\w-]+\.fdsl):\d+\n")


def run_python(body: str, tmp_path: Path, monkeypatch) -> None:
    if INTERFACE.match(body):
        return check_interface(body)
    generated = GENERATED.match(body)
    if generated:  # an excerpt of a compiled module: it must stand in the module, word for word
        source = codegen.generate(fractal_dsl.load(ROOT / generated[1], generated[1]))
        assert body in source, f"this excerpt is not in the compiled {generated[1]}:\n{body}"
        return
    for example in EXAMPLES:
        (tmp_path / f"{example.stem}.py").write_text(codegen.generate(fractal_dsl.load(example)), encoding="utf-8")
    for stem, k in re.findall(r"from (\w+)_col(\d+) import", body):  # modules of one column (compile --column K)
        net = fractal_dsl.load(ROOT / "examples" / f"{stem}.fdsl")
        (tmp_path / f"{stem}_col{k}.py").write_text(codegen.generate(net, int(k)), encoding="utf-8")
    if "runs/tiny/" in body:  # a deployer's script: it loads a run's files, so train one (briefly)
        from fractal_dsl.train import TrainConfig, train

        cfg = TrainConfig(epochs=1, subset=300, recalibrate_bn=200, latency_repeats=1, quiet=True)
        train(fractal_dsl.load(ROOT / "examples" / "tiny.fdsl"), cfg, tmp_path / "runs" / "tiny", log=lambda *a: None)
        body = body.replace("runs/tiny/", f"{tmp_path.as_posix()}/runs/tiny/")
    script = tmp_path / "snippet.py"
    script.write_text(body, encoding="utf-8")
    monkeypatch.chdir(ROOT)  # snippets name files as the README does, from the repository root
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in [m for m in sys.modules if m.split("_col")[0] in {e.stem for e in EXAMPLES}]:
        monkeypatch.delitem(sys.modules, name)
    runpy.run_path(str(script), run_name="__main__")


INTERFACE = re.compile(r"^class (\w+)\(")


def check_interface(body: str) -> None:
    """An interface listing of a compiled class: each ``def`` has the real method's
    parameters (names and kinds in order; the defaults shown are the real ones), and each
    attribute named exists on a built instance."""
    cls_name = INTERFACE.match(body)[1]
    nets = {codegen.class_name(n): n for n in (fractal_dsl.load(e) for e in EXAMPLES)}
    assert cls_name in nets, f"the interface names {cls_name}, the class of no example"
    module = codegen.load_module(codegen.generate(nets[cls_name]), "interface_module")
    cls = getattr(module, cls_name)
    model = module.build()
    listed = ast.parse(body).body[0]
    assert isinstance(listed, ast.ClassDef)
    methods = 0
    for item in listed.body:
        if isinstance(item, ast.FunctionDef):
            methods += 1
            real = list(inspect.signature(getattr(cls, item.name)).parameters.values())
            a = item.args
            shown = [(x.arg, inspect.Parameter.POSITIONAL_OR_KEYWORD) for x in a.args]
            shown += [(x.arg, inspect.Parameter.KEYWORD_ONLY) for x in a.kwonlyargs]
            assert shown == [(p.name, p.kind) for p in real], f"{item.name}: the listing's parameters differ from {real}"
            defaults = dict(zip([x.arg for x in a.args][len(a.args) - len(a.defaults) :], a.defaults))
            defaults.update({x.arg: d for x, d in zip(a.kwonlyargs, a.kw_defaults) if d is not None})
            for p in real:
                if p.default is not inspect.Parameter.empty:
                    assert p.name in defaults, f"{item.name}: the listing leaves out {p.name}'s default"
                    assert ast.literal_eval(defaults[p.name]) == p.default, (item.name, p.name, p.default)
        else:
            target = item.target if isinstance(item, ast.AnnAssign) else getattr(item, "value", None)
            assert isinstance(target, ast.Name), ast.dump(item)
            assert hasattr(model, target.id), f"{cls_name} has no attribute {target.id}"
    assert methods


# ---- text -----------------------------------------------------------------------------


MODULE_NAME = re.compile(r"\b(\w+(?:/\w+)?\.py|train/)")
WALK = re.compile(r"^network (\w+) \{")


def check_text(body: str) -> None:
    for name in MODULE_NAME.findall(body):
        if name != "model.py":  # the compiled module, not a source file
            assert (ROOT / "fractal_dsl" / name).exists(), f"the diagram names {name}, which is not in fractal_dsl/"
    walk = WALK.match(body)
    if walk:
        net = fractal_dsl.load(ROOT / "examples" / f"{walk[1]}.fdsl")
        assert f"params {net.params:,}" in body, f"{walk[1]} has {net.params:,} parameters"


def test_the_readme_test_command_is_the_one_ci_runs():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("\n## Tests\n") :]
    shown = FENCE.search(section)[2].strip()
    ci = [ln for ln in (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines() if ln.startswith(".venv/bin/")]
    assert shown in ci, f"README's test command {shown!r} is not a line of .ci/run"
    assert shown.startswith(".venv/bin/python -m pytest -q -n ")  # in parallel (xdist), as the README times it

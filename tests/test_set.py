"""`--set NAME=VALUE`: every name of docs/LANGUAGE.md's table, on every command that reads a
program (check, inspect, compile, render, train, eval, export) and in the library."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner
from conftest import ROOT

import fractal_dsl
from fractal_dsl.cli import main
from fractal_dsl.errors import FractalError, Source
from fractal_dsl.fmt import format_text
from fractal_dsl.overrides import SetError, apply, parse_settings

# input and classes differ from what the built-in digits need (1x8x8 is resized from 8x8 anyway),
# p has a default, blocks give c only, there is no init and a partial droppath
PROGRAM = """\
network t {
  input 1x12x12
  classes 7
  key {
    conv(c, p=0.0) = conv3x3(c, bias=false) . dropout(p) . batchnorm . relu
    pool = maxpool(2)
    head = gap . flatten . linear(classes)
  }
  f[1] = conv
  f[C+1] = join(f[C] . f[C], conv)
  columns 2
  blocks 4 (c=8)
  droppath local 0.1
}
"""

# each name of the table, a value, and what the loaded network then says
CASES = {
    "columns": ("3", lambda net: net.columns == 3),
    "classes": ("10", lambda net: net.classes == 10),
    "input": ("1x8x8", lambda net: net.input_shape == (1, 8, 8)),
    "init": ("kaiming", lambda net: net.init == "kaiming"),
    "droppath.local": ("0.3", lambda net: net.droppath.local == 0.3),
    "droppath.global": ("0.25", lambda net: net.droppath.global_ratio == 0.25),
    "droppath.per": ("sample", lambda net: net.droppath.per == "sample"),
    "c": ("6", lambda net: [dict(b)["c"] for b in net.block_values] == [6, 6]),
    "p": ("0.2", lambda net: [dict(b).get("p") for b in net.block_values] == [0.2, 0.2]),
    "block2.c": ("12", lambda net: [dict(b)["c"] for b in net.block_values] == [4, 12]),
    "conv.p": ("0.05", lambda net: _dropouts(net) == {0.05}),
}
BAD = {  # a value each name refuses
    "columns": "three",
    "classes": "1.5",
    "input": "1x8x",
    "init": "xavir",
    "droppath.local": "high",
    "droppath.global": "0.1)",
    "droppath.per": "batches",
    "c": "6) (7",
    "p": "x",
    "block2.c": "c",
    "conv.p": "0.1 . relu",
}
ALL = {name: value for name, (value, _) in CASES.items()}


STRUCTURAL = ("columns", "classes", "input", "c", "p", "block2.c", "conv.p")  # what a diagram shows


def _dropouts(net) -> set[float]:
    return {dict(layer.args)["p"] for node in net.nodes() for layer in node.layers if layer.type == "dropout"}


@pytest.fixture
def program(tmp_path):
    path = tmp_path / "t.fdsl"
    path.write_text(PROGRAM)
    return path


def test_the_table_in_language_md_lists_every_case():
    text = (ROOT / "docs" / "LANGUAGE.md").read_text()
    table = text[text.index("## Changing values: `--set`") :]
    for name in ["columns", "classes", "input", "init", "droppath.local", "droppath.global", "droppath.per"]:
        assert f"| `{name}` |" in table
    for form in ("`NAME`, e.g. `c`, `p`", "`blockN.NAME`, e.g. `block2.c`", "`ENTRY.PARAM`, e.g. `conv.p`"):
        assert f"| {form} |" in table
    assert set(CASES) == set(BAD)


@pytest.mark.parametrize("name", list(CASES))
def test_library_load_and_build(name, program):
    value, holds = CASES[name]
    before = fractal_dsl.load(program)
    assert not holds(before)
    net = fractal_dsl.load(program, set={name: value})
    assert holds(net), net
    assert fractal_dsl.loads(PROGRAM, set={name: value}).source_text == net.source_text
    with pytest.raises(SetError) as err:
        fractal_dsl.load(program, set={name: BAD[name]})
    assert err.value.show().startswith(f"--set {name}: error: ")


def test_build_takes_set():
    model = fractal_dsl.build(PROGRAM, set={"columns": 3, "classes": 10})
    assert model.num_columns == 3
    import torch

    assert model.eval()(torch.zeros(2, 1, 12, 12)).shape == (2, 10)


def test_python_values_are_written_as_the_language_writes_them():
    net = fractal_dsl.loads(PROGRAM, set={"columns": 3, "droppath.local": 0.25, "input": (1, 8, 8)})
    assert (net.columns, net.droppath.local, net.input_shape) == (3, 0.25, (1, 8, 8))


@pytest.mark.parametrize("command", ["check", "inspect", "compile", "render"])
@pytest.mark.parametrize("name", list(CASES))
def test_command_with_set_is_the_command_on_the_edited_program(command, name, program, tmp_path, monkeypatch):
    """`CMD t.fdsl --set NAME=V` prints what `CMD t.fdsl` prints for the program with the value
    written in; a bad value of the same name is a `--set NAME:` error, exit 1."""
    value, _ = CASES[name]
    edited = tmp_path / "edited"
    edited.mkdir()
    (edited / "t.fdsl").write_text(apply(fractal_dsl.Source("t.fdsl", PROGRAM), {name: value}).text)
    extra = {"render": ["-o", "t.dot"], "inspect": ["--json"]}.get(command, [])

    def run(folder, *args):
        monkeypatch.chdir(folder)
        result = CliRunner().invoke(main, [command, "t.fdsl", *extra, *args])
        out = (folder / "t.dot").read_text() if command == "render" and result.exit_code == 0 else ""
        return result, result.stdout + out

    got, got_out = run(program.parent, "--set", f"{name}={value}")
    want, want_out = run(edited)
    assert got.exit_code == want.exit_code == 0, got.output
    assert got_out == want_out
    plain, plain_out = run(program.parent)
    if command in ("inspect", "compile") or (command == "render" and name in STRUCTURAL):
        assert plain_out != got_out  # the setting changed what the command reports
    bad, _ = run(program.parent, "--set", f"{name}={BAD[name]}")
    assert bad.exit_code == 1
    assert bad.stderr.startswith(f"--set {name}: error: "), bad.stderr


@pytest.mark.parametrize(
    ("settings", "message", "hint"),
    [
        ({"colums": "3"}, "unknown name", "did you mean `columns`?"),
        ({"droppath.locl": "0.1"}, "unknown name", "did you mean `droppath.local`?"),
        ({"cc": "3"}, "unknown name", "did you mean `c`?"),
        ({"block3.c": "3"}, "the program has blocks 1..2, not block 3", None),
        ({"block1.q": "3"}, "`q` is not a block value of this program", None),
        ({"block2.cc": "3"}, "`cc` is not a block value of this program", "did you mean `block2.c`?"),
        ({"COLUMNS": "3"}, "unknown name", "did you mean `columns`?"),
        ({"droppath": "0.3"}, "unknown name", "it has `droppath.local`, `droppath.global`, `droppath.per`"),
        ({"Droppath.Local": "0.1"}, "unknown name", "did you mean `droppath.local`?"),
        ({"conv.q": "3"}, "`conv` has no parameter `q`", "did you mean `conv.p`?"),
        ({"conv.c": "3"}, "parameter `c` of `conv` has no default in the program", "--set c=VALUE"),
        ({"head.x": "3"}, "`head` has no parameter `x`", None),
        ({"nothere.x": "3"}, "unknown name: no key entry `nothere`", None),
        ({"init": "xavir"}, "expected one of xavier, kaiming, torch, got 'xavir'", "did you mean `xavier`?"),
        ({"init": "he_normal"}, "expected one of xavier, kaiming, torch, got 'he_normal'", "did you mean `kaiming`?"),
    ],
)
def test_bad_names_are_diagnostics_with_suggestions(settings, message, hint):
    with pytest.raises(SetError) as err:
        apply(fractal_dsl.Source("t.fdsl", PROGRAM), settings)
    shown = err.value.show()
    name = next(iter(settings))
    assert shown.startswith(f"--set {name}: error: {message}"), shown
    if hint:
        assert f"hint: {hint}" in shown
    assert shown.endswith("1 error in --set")


def test_every_bad_setting_is_reported_at_once():
    with pytest.raises(SetError) as err:
        apply(fractal_dsl.Source("t.fdsl", PROGRAM), {"colums": "3", "c": "x", "columns": "4"})
    assert len(err.value.problems) == 2 and err.value.show().endswith("2 errors in --set")


def test_a_value_the_program_refuses_is_reported_at_its_line_as_the_settings(program):
    result = CliRunner().invoke(main, ["check", str(program), "--set", "columns=0"])
    assert result.exit_code == 1
    assert f"{program}:11:3: error: --set columns: columns must be at least 1" in result.stderr
    assert "    columns 0" in result.stderr


def test_only_what_a_setting_wrote_is_said_to_come_from_it(program):
    text = program.read_text().replace("droppath local 0.1", "droppath local 3")
    (program.parent / "d.fdsl").write_text(text)
    result = CliRunner().invoke(main, ["check", str(program.parent / "d.fdsl"), "--set", "droppath.global=7"])
    lines = [line for line in result.stderr.splitlines() if ": error: " in line]
    assert [line.split(": error: ", 1)[1].split(",")[0] for line in lines] == [
        "drop-path local probability must be between 0 and 1",
        "--set droppath.global: drop-path global probability must be between 0 and 1",
    ]


@pytest.mark.parametrize("name", ["block1.c", "c", "p", "conv.p"])
def test_a_value_thousands_of_digits_long_is_the_settings_error_not_a_long_line(program, name):
    result = CliRunner().invoke(main, ["check", str(program), "--set", f"{name}=" + "9" * 5000])
    assert result.exit_code == 1
    assert result.stderr == (
        f"--set {name}: error: expected a number of at most 100 characters, got 5,000 characters\n1 error in --set\n"
    )


def test_values_that_make_a_line_too_long_are_the_settings_error(tmp_path):
    many = PROGRAM.replace("blocks 4 (c=8)", "blocks" + " 4" * 12)  # 12 blocks of 100 digits each
    (tmp_path / "m.fdsl").write_text(many)
    assert "blocks 4 4 4" in many
    result = CliRunner().invoke(main, ["check", str(tmp_path / "m.fdsl"), "--set", "c=1" + "0" * 99])
    assert result.exit_code == 1
    assert result.stderr.startswith("--set c: error: written in, the values make line ")
    assert "characters long; the limit is 1,000" in result.stderr


def test_a_long_name_or_word_is_cut_short_in_the_error(program):
    for setting, said in [("x" * 5000 + "=3", "--set " + "x" * 200 + "... (5,000 characters): error:"),
                          ("init=" + "k" * 5000, "got '" + "k" * 199 + "... (5,000 characters)")]:  # fmt: skip
        result = CliRunner().invoke(main, ["check", str(program), "--set", setting])
        assert result.exit_code == 1 and said in result.stderr and len(result.stderr) < 1_000, result.stderr[:300]


@pytest.mark.parametrize("args", [["--set", "columns"], ["--set", "=3"], ["--set", "c=1", "--set", "c=2"]])
def test_malformed_set_is_command_line_misuse(args, program):
    result = CliRunner().invoke(main, ["check", str(program), *args])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: --set")


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--set", "columns", "4"], "error: --set 'columns' has no value: write --set columns=VALUE"),
        (["--set", "columns:4"], "error: --set 'columns:4': write --set columns=4, with '=' not ':'"),
    ],
)
def test_a_space_or_colon_for_the_equals_is_said_before_the_value_is_taken_for_a_file(args, said, program):
    result = CliRunner().invoke(main, ["check", str(program), *args])  # `4` is no file: the setting is said first
    assert result.exit_code == 2 and result.stderr.strip() == said, result.stderr


@pytest.mark.parametrize(
    ("setting", "hint"),
    [
        ("lr=0.1", "`lr` is not in the program: it is `fractal-dsl train`'s option --lr"),
        ("columns=4.0", "a whole number: did you mean `4`?"),
        ("droppath.local=15%", "a fraction, not a percentage: did you mean `0.15`?"),
        ("input=(1,16,16)", "did you mean `1x16x16`?"),
        ("c=16,32", "each block its own: --set block1.c=16 --set block2.c=32"),
    ],
)
def test_a_newcomers_setting_gets_what_it_meant(setting, hint, program):
    result = CliRunner().invoke(main, ["check", str(program), "--set", setting])
    assert result.exit_code == 1 and hint in result.stderr, result.stderr


def test_a_droppath_setting_turns_droppath_off_on(tmp_path):
    text = (ROOT / "examples" / "tiny.fdsl").read_text().replace("droppath local 0.15 global 0.5 per batch", "droppath off")
    out = apply(Source("t.fdsl", text), {"droppath.local": "0.2"}).text
    assert "droppath local 0.2" in out and "off" not in out.split("droppath", 1)[1].split("\n", 1)[0]


def test_droppath_off_with_options_is_refused_as_contradictory():
    text = (ROOT / "examples" / "tiny.fdsl").read_text().replace("droppath local 0.15", "droppath off local 0.15")
    with pytest.raises(FractalError, match=r"`off` turns drop-path off, so `local 0.15 global 0.5 per batch`"):
        fractal_dsl.loads(text)


def test_insertions_and_block_forms():
    text = apply(
        fractal_dsl.Source("t", PROGRAM), {"p": "0.1", "block1.p": "0.3", "init": "torch", "droppath.per": "batch"}
    ).text
    assert "blocks (4, p=0.3) (c=8, p=0.1)" in text
    assert "droppath local 0.1 per batch" in text
    assert "  init torch\n}" in text
    fractal_dsl.loads(text)


def test_parse_settings():
    assert parse_settings(["columns=4", " c = 8 "]) == {"columns": "4", "c": "8"}


def test_check_inspect_compile_render_with_set_do_not_import_torch(program):
    probe = (
        "import sys\nfrom fractal_dsl.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit as exc:\n"
        "    print('exit', exc.code, 'torch' in sys.modules)\n"
    )
    dot = str(program.parent / "t.dot")
    for command in (["check"], ["inspect", "--json"], ["compile"], ["render", "-o", dot]):
        proc = subprocess.run(
            [sys.executable, "-c", probe, *command, str(program), "--set", "columns=3", "--set", "conv.p=0.1"],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ},
        )
        assert proc.stdout.strip().endswith("exit 0 False"), proc.stdout + proc.stderr


def test_train_eval_export_with_every_name(program, tmp_path):
    """One tiny run with every name set at once: the run trains the program as set (digits need
    10 classes, the file says 7), keeps it as program.fdsl and the settings in summary.json;
    eval and export need the same settings (the structure differs without them)."""
    settings = [a for name, value in ALL.items() for a in ("--set", f"{name}={value}")]
    out = tmp_path / "run"
    runner = CliRunner()
    args = ["train", str(program), *settings, "--epochs", "1", "--subset", "64", "--quiet", "--out", str(out)]
    result = runner.invoke(main, [*args, "--recalibrate-bn", "0"])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["set"] == ALL
    kept = (out / "program.fdsl").read_text()
    net = fractal_dsl.load(out / "program.fdsl")
    for name in ALL.keys() - {"c", "p", "block2.c", "conv.p"}:
        assert CASES[name][1](net), name
    assert [dict(b) for b in net.block_values] == [{"c": 6, "p": 0.2}, {"c": 12, "p": 0.2}]  # block2.c wins
    assert "conv(c, p=0.05) = " in kept
    assert kept == format_text(kept)  # laid out by fmt
    assert summary["params"] == sum(n.params for n in net.nodes())

    ckpt = str(out / "checkpoint.pt")
    ok = runner.invoke(main, ["eval", str(program), *settings, "--checkpoint", ckpt, "--json", "--repeats", "1"])
    assert ok.exit_code == 0, ok.output
    assert len(json.loads(ok.stdout)["rows"]) == 4  # the whole network and its three columns
    kept_run = runner.invoke(main, ["eval", str(out / "program.fdsl"), "--checkpoint", ckpt, "--repeats", "1"])
    assert kept_run.exit_code == 0, kept_run.output
    without = runner.invoke(main, ["eval", str(program), "--checkpoint", ckpt, "--repeats", "1"])
    assert without.exit_code == 1  # 7 classes and 2 columns: another network

    pytest.importorskip("onnx")
    onnx_out = tmp_path / "t.onnx"
    exported = runner.invoke(main, ["export", str(program), *settings, "--checkpoint", ckpt, "-o", str(onnx_out)])
    assert exported.exit_code == 0, exported.output
    import onnx

    model = onnx.load(str(onnx_out))
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims[1:] == [1, 8, 8]
    bad = runner.invoke(main, ["export", str(program), "--set", "colums=3", "-o", str(tmp_path / "u.onnx")])
    assert bad.exit_code == 1 and bad.stderr.startswith("--set colums: error: unknown name")


@pytest.mark.parametrize(("setting", "message"), [("c=0", "must be at least 1, got 0"), ("p=1.5", "got 1.5")])
def test_a_block_value_refused_in_every_block_is_one_error(program, setting, message):
    result = CliRunner().invoke(main, ["check", str(program), "--set", setting])
    assert result.exit_code == 1
    assert result.stderr.count(message) == 1 and result.stderr.endswith("1 error in " + str(program) + "\n")


@pytest.mark.parametrize(("setting", "digits"), [("columns=four", "4"), ("c=Sixteen", "16"), ("conv.p=zero", "0")])
def test_a_number_written_as_a_word_is_answered_with_its_digits(program, setting, digits):
    result = CliRunner().invoke(main, ["check", str(program), "--set", setting])
    assert result.exit_code == 1
    assert f"hint: numbers are written in digits: did you mean `{digits}`?" in result.stderr

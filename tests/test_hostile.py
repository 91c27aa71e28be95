"""Hostile and careless input (issue 14): nothing lost, nothing hung, nothing trusted blindly.

Each test is one failure found by probing the tool; each asserts the behaviour that was wrong.
Everything that could block (FIFOs, dot, subprocesses) runs under a timeout.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from train_support import ENV, ROOT, SMALL, write_net

from fractal_dsl import budget, loads, render, safeio
from fractal_dsl.cli import main
from fractal_dsl.errors import FractalError

TINY = ROOT / "examples" / "tiny.fdsl"


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def proc(*args, timeout=60, env=None):
    return subprocess.run([sys.executable, "-m", "fractal_dsl.cli", *map(str, args)], capture_output=True,
                          text=True, cwd=ROOT, timeout=timeout, env=env or ENV, check=False)


def finishes(fn, seconds=10):
    """Run ``fn`` in a thread; fail (instead of hanging the suite) if it has not returned in time."""
    box = {}

    def target():
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            box["error"] = exc

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), f"still running after {seconds} s"
    return box


def _images(root: Path, counts: dict[str, int]) -> None:
    from PIL import Image

    for name, n in counts.items():
        (root / name).mkdir(parents=True)
        for i in range(n):
            Image.new("L", (8, 8), 10 * i).save(root / name / f"{i}.png")


@pytest.fixture
def prog(tmp_path):
    path = tmp_path / "prog.fdsl"
    shutil.copy(TINY, path)
    return path


# ---- output paths ------------------------------------------------------------------------------


def test_compile_refuses_to_overwrite_its_input(prog):
    before = prog.read_bytes()
    r = run("compile", prog, "-o", prog)
    assert r.exit_code == 1 and "is the input program" in r.stderr
    link = prog.with_name("link.fdsl")
    os.link(prog, link)  # the same file under another name
    r = run("render", prog, "--format", "dot", "-o", link)
    assert r.exit_code == 1 and "is the input program" in r.stderr
    assert prog.read_bytes() == before


def test_a_file_the_tool_did_not_write_needs_force_and_keeps_its_mode(prog, tmp_path):
    mine = tmp_path / "mine.py"
    mine.write_text("my own work\n")
    mine.chmod(0o644)
    r = run("compile", prog, "-o", mine)
    assert r.exit_code == 1 and "not written by fractal-dsl" in r.stderr and "--force" in r.stderr
    assert mine.read_text() == "my own work\n"
    assert run("compile", prog, "-o", mine, "--force").exit_code == 0
    assert "compiled by fractal-dsl" in mine.read_text()
    assert stat.S_IMODE(mine.stat().st_mode) == 0o644
    assert run("compile", prog, "-o", mine).exit_code == 0  # now it is the tool's: no --force needed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.py", "prog.fdsl"]  # no temporary left


def test_a_symlink_is_followed_and_stays_a_link(prog, tmp_path):
    target = tmp_path / "real.py"
    link = tmp_path / "link.py"
    assert run("compile", prog, "-o", target).exit_code == 0
    link.symlink_to(target.name)
    assert run("compile", prog, "-o", link).exit_code == 0
    assert link.is_symlink() and target.read_text().startswith('r"""FractalNet')


def test_hard_links_directories_and_special_files_are_refused(prog, tmp_path):
    out = tmp_path / "out.py"
    assert run("compile", prog, "-o", out).exit_code == 0
    os.link(out, tmp_path / "other.py")
    r = run("compile", prog, "-o", out)
    assert r.exit_code == 1 and "2 hard links" in r.stderr
    r = run("compile", prog, "-o", f"{tmp_path}/newdir/")
    assert r.exit_code == 1 and "names a directory" in r.stderr and not (tmp_path / "newdir").exists()
    fifo = tmp_path / "pipe.py"
    os.mkfifo(fifo)
    r = proc("compile", prog, "-o", fifo, timeout=30)
    assert r.returncode == 1 and "a FIFO, not a regular file" in r.stderr and stat.S_ISFIFO(fifo.stat().st_mode)
    r = run("compile", prog, "-o", "/dev/null")
    assert r.exit_code == 1 and "character device" in r.stderr and stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_render_outputs_carry_a_marker_and_are_replaced_only_if_the_tool_wrote_them(prog, tmp_path):
    for suffix in ("dot", "svg", "png"):
        out = tmp_path / f"net.{suffix}"
        assert run("render", prog, "-o", out).exit_code == 0, suffix
        assert safeio.is_tool_file(out), suffix
        assert run("render", prog, "-o", out).exit_code == 0, suffix  # again: it is the tool's
    pdf = tmp_path / "paper.pdf"
    pdf.write_bytes(b"%PDF-1.4 someone's paper")
    r = run("render", prog, "-o", pdf)
    assert r.exit_code == 1 and "--force" in r.stderr and pdf.read_bytes() == b"%PDF-1.4 someone's paper"


def test_render_without_dot_does_not_overwrite_a_users_dot_file(prog, tmp_path):
    users = tmp_path / "prog.dot"
    users.write_text("digraph mine {}\n")
    r = proc("render", prog, "-o", tmp_path / "prog.png", env={**ENV, "PATH": str(tmp_path)})
    assert r.returncode == 1 and "not found" in r.stderr and "was not written either" in r.stderr
    assert users.read_text() == "digraph mine {}\n" and not (tmp_path / "prog.png").exists()


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    out = tmp_path / "x.py"
    safeio.write_output(out, "# generated by fractal-dsl 0\nold\n")

    def dies(_fh):
        raise OSError(28, "No space left on device")

    with pytest.raises(safeio.OutputError, match="No space left on device"):
        safeio.write_output_with(out, dies)
    assert out.read_text().endswith("old\n") and [p.name for p in tmp_path.iterdir()] == ["x.py"]


# ---- inputs that are not regular files -----------------------------------------------------------


def test_a_fifo_as_program_is_refused_at_once(tmp_path):
    fifo = tmp_path / "prog.fdsl"
    os.mkfifo(fifo)
    r = proc("check", fifo, timeout=30)
    assert r.returncode == 1 and "not a regular file (a FIFO)" in r.stderr and "Traceback" not in r.stderr


def test_a_fifo_as_checkpoint_or_image_is_refused_at_once(tmp_path):
    from fractal_dsl.train import TrainError
    from fractal_dsl.train import checkpoint as ckpt
    from fractal_dsl.train import data as datasets

    os.mkfifo(tmp_path / "c.pt")
    box = finishes(lambda: ckpt.load(tmp_path / "c.pt"))
    assert isinstance(box.get("error"), TrainError) and "a FIFO" in str(box["error"])
    _images(tmp_path / "img", {"a": 4, "b": 5})  # enough to split: the FIFO is among the images read
    os.mkfifo(tmp_path / "img" / "a" / "x.png")
    box = finishes(lambda: datasets.load(str(tmp_path / "img"), (1, 8, 8), 2))
    assert isinstance(box.get("error"), TrainError) and "x.png: not a readable image (not a regular file (a FIFO))" in str(box["error"])


# ---- budgets: answered quickly, whatever the file ------------------------------------------------

FAN_OUT = """network bomb {
  input 1x8x8
  classes 2
  key {
    a = relu . relu . relu . relu . relu . relu . relu . relu
    b = a . a . a . a . a . a . a . a
    c = b . b . b . b . b . b . b . b
    d = c . c . c . c . c . c . c . c
    e = d . d . d . d . d . d . d . d
    conv = e . e . e . e
    head = flatten . linear(classes)
  }
  f[1] = conv
  f[C+1] = join(f[C] . f[C], conv)
  columns 3
  blocks 1
}
"""


def test_key_entries_that_fan_out_are_refused_before_expansion(tmp_path):
    path = write_net(tmp_path, FAN_OUT, "bomb.fdsl")
    assert len(FAN_OUT) < 500
    t0 = time.perf_counter()
    for command in ("check", "compile"):
        r = run(command, path)
        assert r.exit_code == 1
        assert "bomb.fdsl:15:3: error: `f[3]` would make 917,506 PyTorch layers" in r.stderr
    assert time.perf_counter() - t0 < 5  # was: compile 23 s, 2.5 GB, a 36 MB module


def test_key_cycles_with_fan_out_are_bounded():
    text = FAN_OUT.replace("a = relu . relu", "a = conv . conv")  # conv -> e -> ... -> a -> conv
    t0 = time.perf_counter()
    with pytest.raises(FractalError, match="PyTorch layers"):
        loads(text, "cycle.fdsl")
    assert time.perf_counter() - t0 < 5


def test_columns_are_counted_as_the_rule_makes_them():
    wide = "join(f[C] . f[C],\n" + ",\n".join(", ".join(["conv"] * 23) for _ in range(13)) + ")"
    text = TINY.read_text().replace("join(f[C] . f[C], conv)", wide).replace("columns 3", "columns 10")
    with pytest.raises(FractalError, match=r"`f\[10\]` makes 2,692 columns .* the limit is 64"):
        loads(text, "wide.fdsl")


def test_many_unknown_names_are_answered_quickly():
    keys = "\n".join(f"    key{i:04d} = relu" for i in range(1500))
    names = [f"kye{i:04d}" for i in range(1500)]  # each misspelt, each close to 1,500 key entries
    rule = " .\n  ".join(" . ".join(names[i:i + 30]) for i in range(0, 1500, 30))
    text = (f"network typos {{\n  input 1x8x8\n  classes 2\n  key {{\n{keys}\n    head = flatten . linear(classes)\n"
            f"  }}\n  f[1] = {rule}\n  columns 1\n  blocks 1\n}}\n")
    assert len(text) < 64 << 10
    t0 = time.perf_counter()
    with pytest.raises(FractalError) as err:
        loads(text, "typos.fdsl")
    assert time.perf_counter() - t0 < 8  # was 128 s: a suggestion among 1,500 entries for every name
    unknown = [d for d in err.value.diagnostics if d.message.startswith("unknown layer")]
    assert len(unknown) == 1500 and unknown[0].hint == "did you mean `key0000`?"


def test_images_too_large_for_dot_are_refused_and_dot_is_bounded(tmp_path, monkeypatch):
    text = TINY.read_text().replace("columns 3", "columns 10")
    net = loads(text, "big.fdsl")  # 1,023 convs in each of three blocks: 3,843 nodes expanded
    t0 = time.perf_counter()
    with pytest.raises(render.RenderError, match="more than Graphviz draws in reasonable time"):
        render.write(net, tmp_path / "b.svg", "svg", render.View(collapse=False))
    assert time.perf_counter() - t0 < 5
    if shutil.which("dot"):
        monkeypatch.setattr(render, "DOT_TIMEOUT", 0.01)
        with pytest.raises(render.ImageError, match=r"Graphviz did not draw \d+ nodes within 0.01 s"):
            render.write(loads(TINY.read_text(), "t.fdsl"), tmp_path / "t.svg", "svg", render.View(block=1))
    assert not list(tmp_path.iterdir())


def test_budget_limits_hold_the_documented_values():
    assert (budget.MAX_UNITS, budget.MAX_LAYERS, budget.MAX_COLUMNS) == (4_000, 50_000, 64)


# ---- the language reference's lexical rules --------------------------------------------------------


@pytest.mark.parametrize(("bad", "message"), [
    ("\u202e", "U+202E RIGHT-TO-LEFT OVERRIDE"), ("\u200b", "U+200B ZERO WIDTH SPACE"),
    ("\x1b[31m", r"'\x1b'"), ("\x00", r"'\x00'"),
])
def test_control_characters_are_refused_in_comments_too(bad, message):
    text = TINY.read_text().replace("# channels, dropout", f"# channels{bad}, dropout")
    with pytest.raises(FractalError) as err:
        loads(text, "c.fdsl")
    assert message in err.value.diagnostics[0].message and err.value.diagnostics[0].span.line == 17


def test_a_cr_only_file_is_not_an_empty_program():
    with pytest.raises(FractalError) as err:
        loads(TINY.read_text().replace("\n", "\r"), "mac.fdsl")
    assert "carriage return without a line feed" in err.value.diagnostics[0].message
    assert loads(TINY.read_text().replace("\n", "\r\n"), "dos.fdsl").columns == 3  # CRLF is fine


def test_one_error_for_an_unknown_value_and_a_bounded_leaky_slope():
    with pytest.raises(FractalError) as err:
        loads(TINY.read_text().replace("bias=false", "bias=nan"), "nan.fdsl")
    assert [d.message for d in err.value.diagnostics] == ["unknown name `nan` in the definition of `conv`"]
    with pytest.raises(FractalError, match=r"`slope` must be a finite number of sensible size, got 1e\+300"):
        loads(TINY.read_text().replace("batchnorm . relu", "batchnorm . leakyrelu(1e300)"), "lr.fdsl")


def test_unwritable_stdout_is_a_message_not_a_traceback(prog):
    with open("/dev/full", "w") as full:
        r = subprocess.run([sys.executable, "-m", "fractal_dsl.cli", "inspect", "--json", str(prog)], stdout=full,
                           stderr=subprocess.PIPE, text=True, cwd=ROOT, timeout=60, env=ENV, check=False)
    assert r.returncode == 1 and r.stderr == "error: cannot write to standard output: No space left on device\n"


# ---- training: run folders and checkpoints -------------------------------------------------------------


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    from fractal_dsl.train import TrainConfig, train

    root = tmp_path_factory.mktemp("hostile")
    _images(root / "data" / "train", {str(k): 2 for k in range(10)})  # 30 images: an epoch takes no time
    _images(root / "data" / "test", {str(k): 1 for k in range(10)})
    cfg = TrainConfig(data=str(root / "data"), epochs=1, batch_size=10, quiet=True, recalibrate_bn=0)
    train(loads(SMALL, "small.fdsl"), cfg, root / "run", log=lambda *a: None)
    return root / "run"


def test_a_folder_with_the_users_files_is_refused_unless_forced(tmp_path):
    from fractal_dsl.train import TrainError, runfolder

    (tmp_path / "model.py").write_text("mine")
    refused = pytest.raises(TrainError, match=r"holds files, and it is not a fractal-dsl run folder \(model.py\)")
    with refused, runfolder.claimed(tmp_path, force=False):
        pass
    assert [p.name for p in tmp_path.iterdir()] == ["model.py"]  # not even the lock file stays
    with runfolder.claimed(tmp_path, force=True) as folder:
        folder.write("model.py", "the tool's")


def test_a_second_run_into_a_locked_folder_is_refused_at_once(tmp_path):
    from fractal_dsl.train import TrainError, runfolder

    refused = pytest.raises(TrainError, match="another fractal-dsl train is running")
    with runfolder.claimed(tmp_path / "run", force=False), refused, runfolder.claimed(tmp_path / "run", force=False):
        pass


def test_two_concurrent_train_processes(tmp_path):
    net = write_net(tmp_path)
    out = tmp_path / "run"
    runs = [subprocess.Popen([sys.executable, "-m", "fractal_dsl.cli", "train", str(net), "--out", str(out),
                              "--epochs", "50", "-q"], cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True) for _ in range(2)]
    try:
        deadline = time.monotonic() + 90
        while all(r.poll() is None for r in runs):  # started together: whichever locks second is refused
            assert time.monotonic() < deadline
            time.sleep(0.05)
        refused = next(r for r in runs if r.poll() is not None)
        assert refused.returncode == 1 and "another fractal-dsl train is running" in refused.stderr.read()
        assert any(r.poll() is None for r in runs)  # the other one goes on
    finally:
        for r in runs:
            r.kill()
            r.wait(timeout=30)


def test_failed_runs_leave_no_folder_behind(tmp_path):
    from fractal_dsl.train import TrainConfig, TrainError, train

    net = loads(SMALL, "small.fdsl")
    with pytest.raises(Exception, match="not digits, cifar10"):  # a TrainError (a usage error on later mains)
        train(net, TrainConfig(data="nowhere", quiet=True), tmp_path / "a" / "b" / "run", log=lambda *a: None)
    (tmp_path / "afile").write_text("x")
    with pytest.raises(TrainError, match="cannot create `out` .*afile/sub: Not a directory"):
        train(net, TrainConfig(quiet=True), tmp_path / "afile" / "sub", log=lambda *a: None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


OTHER = {
    "gelu": ("batchnorm . relu", "batchnorm . gelu"),
    "max": ("join = mean", "join = max"),
    "name": ("network small", "network other"),
    "avgpool": ("maxpool(2)", "avgpool(2)"),
}


@pytest.mark.parametrize("change", sorted(OTHER))
def test_a_checkpoint_of_another_network_with_the_same_shapes_is_refused(small_run, change):
    from fractal_dsl.train import TrainError, evaluate_checkpoint

    other = loads(SMALL.replace(*OTHER[change]), "other.fdsl")
    with pytest.raises(TrainError, match="not of this network .* `allow_other_network`"):
        evaluate_checkpoint(other, small_run / "checkpoint.pt", device="cpu", recalibrate_bn=0)
    if change == "gelu":
        said = []
        result = evaluate_checkpoint(other, small_run / "checkpoint.pt", data_spec=str(small_run.parent / "data"),
                                     device="cpu", recalibrate_bn=0, allow_other_network=True, warn=said.append)
        assert result["rows"] and "holds the weights of another network 'small'" in said[0]


def test_flipped_bytes_in_the_weights_are_caught(small_run, tmp_path):
    import torch

    from fractal_dsl.train import TrainError, evaluate_checkpoint

    data = bytearray((small_run / "checkpoint.pt").read_bytes())
    weight = torch.load(small_run / "checkpoint.pt", weights_only=True)["model"]["head.2.weight"]
    at = bytes(data).index(weight.numpy().tobytes()[:64]) + 10
    data[at] ^= 0xFF
    bad = tmp_path / "flipped.pt"
    bad.write_bytes(bytes(data))
    with pytest.raises(TrainError, match="weights do not match their checksum|not a readable checkpoint"):
        evaluate_checkpoint(loads(SMALL, "small.fdsl"), bad, device="cpu", recalibrate_bn=0)


@pytest.mark.parametrize(("field", "value", "message"), [
    ("config", [1, 2], "`config` is list, not dict"),
    ("history", "oops", "`history` is str, not list"),
    ("epoch", "3", "`epoch` is str, not int"),
    ("history", [{"epoch": 1}], "history entry 1 has no valid `lr`"),
    ("config", {"data": 5}, "config `data` is int"),
])
def test_checkpoint_fields_of_the_wrong_type_are_messages(small_run, tmp_path, field, value, message):
    import torch

    from fractal_dsl.train import TrainError
    from fractal_dsl.train import checkpoint as ckpt

    state = torch.load(small_run / "checkpoint.pt", weights_only=True)
    state[field] = value
    torch.save(state, tmp_path / "c.pt")
    with pytest.raises(TrainError, match=message):
        ckpt.load(tmp_path / "c.pt")


def test_an_old_checkpoint_without_hashes_is_read_with_a_warning(small_run, tmp_path):
    import torch

    from fractal_dsl.train import evaluate_checkpoint

    state = torch.load(small_run / "checkpoint.pt", weights_only=True)
    del state["weights_sha256"], state["structure_sha256"]
    state["version"] = 1
    torch.save(state, tmp_path / "old.pt")
    said = []
    evaluate_checkpoint(loads(SMALL, "small.fdsl"), tmp_path / "old.pt", data_spec=str(small_run.parent / "data"),
                        device="cpu", recalibrate_bn=0, warn=said.append)
    assert said and "written by an older fractal-dsl" in said[0]


def test_resume_of_a_finished_run_rebuilds_metrics(small_run, tmp_path):
    from fractal_dsl.train import TrainConfig, train

    out = tmp_path / "copy"
    shutil.copytree(small_run, out)
    lines = (out / "metrics.jsonl").read_text()
    (out / "metrics.jsonl").unlink()
    cfg = TrainConfig(data=str(small_run.parent / "data"), epochs=1, batch_size=10, quiet=True, recalibrate_bn=0,
                      resume=True)
    train(loads(SMALL, "small.fdsl"), cfg, out, log=lambda *a: None)
    assert (out / "metrics.jsonl").read_text() == lines


# ---- image folders ---------------------------------------------------------------------------------------


def test_image_folders_too_small_or_inconsistent_are_messages(tmp_path, monkeypatch):
    from PIL import Image

    from fractal_dsl.train import TrainError
    from fractal_dsl.train import data as datasets

    _images(tmp_path / "one", {"a": 1, "b": 5})
    with pytest.raises(TrainError, match=r"too few images .*class 'a' has 1"):
        datasets.load(str(tmp_path / "one"), (1, 8, 8), 2)
    _images(tmp_path / "few", {str(k): 2 for k in range(6)})  # 12 images: 3 for testing, 6 classes
    with pytest.raises(TrainError, match="too few images"):
        datasets.load(str(tmp_path / "few"), (1, 8, 8), 6)
    _images(tmp_path / "split" / "train", {"a": 2, "b": 2})
    _images(tmp_path / "split" / "test", {"a": 1, "b": 1, "c": 1})
    with pytest.raises(TrainError, match=r"test has class folders that .*train lacks \(c\)"):
        datasets.load(str(tmp_path / "split"), (1, 8, 8), 2)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10)  # an 8x8 image is now a "bomb" (> 2 x 10 pixels)
    _images(tmp_path / "ok", {"a": 5, "b": 5})  # a folder that splits, so its images are read
    with pytest.raises(TrainError, match="image too large to decode safely"):
        datasets.load(str(tmp_path / "ok"), (1, 8, 8), 2)


def test_the_pipeline_fuzzer_runs_and_reports(capsys):
    import importlib.util

    spec = importlib.util.spec_from_file_location("fuzz_pipeline", ROOT / "benchmarks" / "fuzz_pipeline.py")
    fuzz = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fuzz)
    code = fuzz.main(["--minutes", "0.02", "--seed", "1"])
    out = capsys.readouterr().out
    assert "programs in" in out and "distinct findings" in out
    assert code == 0, out  # a finding is a bug: the program that shows it is printed above


def test_a_large_file_with_many_syntax_errors_is_answered_quickly():
    keys = "\n".join(f"    key{i:04d} = relu . relu . relu . relu . relu . relu . relu" for i in range(1000))
    bad = "\n".join(f"    bad{i} = relu relu" for i in range(12))
    text = f"network s {{\n  input 1x8x8\n  classes 2\n  key {{\n{keys}\n{bad}\n  }}\n  f[1] = key0000\n  columns 1\n}}\n"
    assert len(text) < 64 << 10
    t0 = time.perf_counter()
    with pytest.raises(FractalError) as err:
        loads(text, "syntax.fdsl")
    assert time.perf_counter() - t0 < 8  # was 10 parses of the whole file, one per error
    assert 1 <= len(err.value.diagnostics) < 10 and err.value.diagnostics[0].span.line in (1005, 1006)  # at bad0

"""Speed options of train and eval: --threads, --amp on the CPU (bfloat16)."""

from __future__ import annotations

import json

import pytest
import torch
from train_support import SMALL, cli, write_net

from fractal_dsl import loads
from fractal_dsl.errors import UsageError
from fractal_dsl.train import TrainConfig, evaluate_checkpoint, speed, train

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("small")
    train(loads(SMALL, "small.fdsl"), TrainConfig(epochs=1, quiet=True, subset=200), out, log=lambda *a: None)
    return out


@pytest.fixture
def threads_restored():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_threads_reach_torch_and_the_table(small_run, threads_restored):
    net = loads(SMALL, "small.fdsl")
    torch.set_num_threads(1)
    result = evaluate_checkpoint(net, small_run / "checkpoint.pt", column=1, device="cpu", repeats=1, threads=2)
    assert result["threads"] == 2 == torch.get_num_threads()
    assert speed.use_threads(None) == 2  # None leaves torch's setting alone
    with pytest.raises(UsageError, match="`threads` 0: must be from 1 to 256"):
        speed.use_threads(0)


def test_threads_on_the_command_line(tmp_path, small_run):
    net = write_net(tmp_path, SMALL, "n.fdsl")
    ok = cli("eval", net, "--checkpoint", small_run / "checkpoint.pt", "--column", "1", "--threads", "2",
             "--recalibrate-bn", "0", "--repeats", "1", "--json")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["threads"] == 2
    plain = cli("eval", net, "--checkpoint", small_run / "checkpoint.pt", "--column", "1", "--recalibrate-bn", "0",
                "--repeats", "1", "--threads", "0")
    assert plain.returncode == 2 and "--threads" in plain.stderr and "Traceback" not in plain.stderr
    trained = cli("train", net, "--out", tmp_path / "run", "--epochs", "1", "--subset", "100", "--threads", "1",
                  "--recalibrate-bn", "0", "-q")
    assert trained.returncode == 0, trained.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["config"]["threads"] == 1 and summary["anytime"]["threads"] == 1


def test_amp_on_the_cpu_is_bfloat16_and_close_to_float32(small_run):
    """Where the CPU has bfloat16 kernels, eval --amp runs under bfloat16 autocast and scores as float32 does."""
    if not speed.cpu_supports_bf16():
        pytest.skip("this CPU has no native bfloat16 (the fallback is tested below)")
    net = loads(SMALL, "small.fdsl")
    fp32 = evaluate_checkpoint(net, small_run / "checkpoint.pt", device="cpu", repeats=1, recalibrate_bn=0)
    bf16 = evaluate_checkpoint(net, small_run / "checkpoint.pt", device="cpu", repeats=1, recalibrate_bn=0, amp=True)
    assert (fp32["precision"], bf16["precision"]) == ("float32", "bfloat16")
    for a, b in zip(fp32["rows"], bf16["rows"]):
        assert abs(a["accuracy"] - b["accuracy"]) <= 0.03  # 100 test images: at most 3 answers change


def test_amp_trains_in_bfloat16_on_the_cpu(tmp_path):
    if not speed.cpu_supports_bf16():
        pytest.skip("this CPU has no native bfloat16 (the fallback is tested below)")
    net = loads(SMALL, "small.fdsl")
    seen = []
    runs = {}
    for amp in (False, True):
        cfg = TrainConfig(epochs=1, subset=100, amp=amp, device="cpu", quiet=True, recalibrate_bn=0)
        runs[amp] = train(net, cfg, tmp_path / f"run{amp}", log=seen.append)
    assert (runs[False]["anytime"]["precision"], runs[True]["anytime"]["precision"]) == ("float32", "bfloat16")
    assert not any("--amp" in line for line in seen)
    # the same seed, data and samples: only the forward pass's precision differs, and it shows
    assert runs[False]["weights_sha256"] != runs[True]["weights_sha256"]
    assert abs(runs[False]["test_acc"] - runs[True]["test_acc"]) <= 0.1


def test_amp_without_bf16_says_so_in_one_line_and_runs_float32(tmp_path, monkeypatch):
    monkeypatch.setattr(speed, "cpu_supports_bf16", lambda: False)
    seen = []
    summary = train(loads(SMALL, "small.fdsl"),
                    TrainConfig(epochs=1, subset=100, amp=True, device="cpu", quiet=True, recalibrate_bn=0),
                    tmp_path / "run", log=seen.append)
    assert summary["anytime"]["precision"] == "float32"
    notes = [line for line in seen if "--amp" in line]
    assert notes == ["note: --amp: this CPU has no native bfloat16 (AVX-512 BF16 or AMX), so the run stays in float32"]
    assert speed.amp_dtype(torch.device("mps"), True, seen.append) is None
    assert seen[-1] == "note: --amp: no mixed precision on mps, so the run stays in float32"
    assert speed.amp_dtype(torch.device("cuda"), True) is torch.float16


def test_onnx_runtime_column(tmp_path, small_run, monkeypatch):
    """Each path's latency in ONNX Runtime joins the table where onnxruntime is installed,
    follows the documented schema, and is null when switched off."""
    from test_anytime import schema

    from fractal_dsl.anytime import format_table
    from fractal_dsl.train import ort

    monkeypatch.delenv(ort.SKIP_ENV, raising=False)
    if ort.available() is None:
        pytest.skip("onnxruntime, onnx or onnxscript is not installed (pip install -e '.[dev]')")
    import jsonschema

    net = loads(SMALL, "small.fdsl")
    result = evaluate_checkpoint(net, small_run / "checkpoint.pt", device="cpu", repeats=2, recalibrate_bn=0)
    jsonschema.validate(result, schema())
    assert result["onnxruntime"] == ort.available()
    for row in result["rows"]:
        assert row["ort_latency_ms_batch1"] > 0 and row["ort_latency_ms_per_image"] > 0
    table = format_table(result["rows"], result["eval_batch"])
    assert "ORT ms (batch 1)" in table.splitlines()[0]
    off = evaluate_checkpoint(net, small_run / "checkpoint.pt", column=1, device="cpu", repeats=1, recalibrate_bn=0,
                              ort_latency=False)
    jsonschema.validate(off, schema())
    assert off["onnxruntime"] is None and off["rows"][0]["ort_latency_ms_batch1"] is None
    assert "ORT" not in format_table(off["rows"], off["eval_batch"])


def test_onnx_runtime_column_is_skipped_without_onnxruntime(small_run, monkeypatch):
    """Without onnxruntime the column is null, as documented (here: the import made to fail)."""
    import builtins

    from fractal_dsl.train import ort

    monkeypatch.delenv(ort.SKIP_ENV, raising=False)
    real_import = builtins.__import__

    def no_onnxruntime(name, *args, **kwargs):
        if name == "onnxruntime":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_onnxruntime)
    assert ort.available() is None
    result = evaluate_checkpoint(loads(SMALL, "small.fdsl"), small_run / "checkpoint.pt", column=1, device="cpu",
                                 repeats=1, recalibrate_bn=0)
    assert result["onnxruntime"] is None and result["rows"][0]["ort_latency_ms_per_image"] is None


def test_cli_defaults_match_the_config():
    from fractal_dsl import cli

    for command in (cli.train, cli.evaluate):
        defaults = {p.name: p.default for p in command.params}
        assert defaults["threads"] is TrainConfig().threads is None
        assert defaults["ort_latency"] is TrainConfig().ort_latency is True


def test_autocast_takes_a_dtype_or_none_and_refuses_the_flag():
    cpu = torch.device("cpu")
    with speed.autocast(cpu, None):
        assert not torch.is_autocast_enabled("cpu")
    with speed.autocast(cpu, torch.bfloat16):
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
    for flag in (False, True, "bfloat16"):
        with pytest.raises(TypeError, match="takes a torch.dtype or None"):
            speed.autocast(cpu, flag)


def test_every_caller_passes_autocast_the_chosen_type(small_run, monkeypatch, tmp_path):
    """train and eval, with --amp and without, hand autocast what amp_dtype chose (None or a
    torch.dtype), never --amp's bool."""
    seen = []
    real = speed.autocast
    monkeypatch.setattr(speed, "autocast", lambda device, dtype: seen.append(dtype) or real(device, dtype))
    net = loads(SMALL, "small.fdsl")
    for amp in (False, True):
        evaluate_checkpoint(net, small_run / "checkpoint.pt", column=1, device="cpu", repeats=1, amp=amp, warn=print)
    cfg = TrainConfig(epochs=1, subset=100, quiet=True, recalibrate_bn=0, device="cpu")
    train(net, cfg, tmp_path / "run", log=lambda *a: None)
    assert seen and all(d is None or isinstance(d, torch.dtype) for d in seen), set(map(repr, seen))

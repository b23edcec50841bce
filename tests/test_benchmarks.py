"""The benchmark scripts run from a clean checkout (tiny settings; no timing is asserted), and
the training benchmark's analytic FLOP count agrees with torch's own counter."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from corruptions import IGNORE
from objectives_cli.model.config import ModelConfig, preset
from objectives_cli.model.model import Model
from tests.helpers import NON_LEAF_GRAD

ROOT = Path(__file__).resolve().parent.parent


def test_corruption_benchmark_runs_and_writes_its_table(tmp_path: Path) -> None:
    out = tmp_path / "perf.md"
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "corruptions.py"),
            "--objectives",
            "bert-mlm",
            "--lengths",
            "32",
            "--batch",
            "4",
            "--threads",
            "1",
            "--min-time",
            "0.01",
            "--rounds",
            "1",
            "--no-peers",
            "--markdown",
            str(out),
        ],
        check=True,
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    table = out.read_text()
    assert "| bert-mlm | 32 | 1 |" in table
    assert "torch" in table.splitlines()[0]


def test_corruption_benchmark_reports_a_failing_objective_and_goes_on(tmp_path: Path) -> None:
    out = tmp_path / "perf.md"
    args = ["--objectives", "t5-span", "--lengths", "2048", "32", "--batch", "2"]
    args += ["--threads", "1", "--min-time", "0.01", "--rounds", "1", "--no-peers"]
    script = str(ROOT / "benchmarks" / "corruptions.py")
    done = subprocess.run(
        [sys.executable, script, *args, "--markdown", str(out)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    table = out.read_text()
    assert "| t5-span | 2048 | 1 | failed: this batch needs 102 sentinel tokens" in table
    assert re.search(r"\| t5-span \| 32 \| 1 \| \d+\.\d+ \|", table)  # timed after the failure
    assert "--sentinels" not in table  # the table keeps the one-line error, not the hint


@pytest.mark.slow  # about a minute: a dozen commands and two datasets pipelines
def test_data_scale_benchmark_runs_and_writes_its_tables(tmp_path: Path) -> None:
    out = tmp_path / "scale.md"
    args = ["--sizes", "1", "--first-line-mb", "2", "--prepare-mb", "1", "--corrupt-mb", "1"]
    args += ["--corrupt-examples", "50", "--step-mb", "1", "--steps", "3", "--long-line-mb", "1"]
    script = str(ROOT / "benchmarks" / "data_scale.py")
    subprocess.run(
        [sys.executable, script, *args, "--work", str(tmp_path), "--markdown", str(out)],
        check=True,
        capture_output=True,
        text=True,
    )
    text = out.read_text()
    for words in ("First JSONL line", "| 1 MB |", "data prepare, 2 workers", "bytes per token"):
        assert words in text
    assert "datasets + collator" in text
    assert "One 1 MB line" in text
    assert [p.name for p in tmp_path.iterdir()] == ["scale.md"]  # the corpora are deleted


def throughput() -> ModuleType:
    """benchmarks/train_throughput.py as a module (benchmarks/ is not a package)."""
    path = ROOT / "benchmarks" / "train_throughput.py"
    spec = importlib.util.spec_from_file_location("train_throughput", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def counted(loss: Callable[[], torch.Tensor]) -> int:
    """FLOPs of forward + backward as torch counts them, on SDPA's math path (whose matmuls the
    counter sees; CPU's flash kernel has no FLOP formula)."""
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        loss().backward()
    return counter.get_total_flops()


ROWS, LENGTH, VOCAB = 2, 32, 1000


def setup(arch: str) -> tuple[ModuleType, dict[str, int], Any, dict[str, torch.Tensor], int]:
    """The benchmark module, a tiny shape, one batch for each side, and its scored targets."""
    bench = throughput()
    make = bench.batch_encoder if arch == "encoder" else bench.batch_seq2seq
    mine, hf = make(ROWS, LENGTH, VOCAB, torch.Generator().manual_seed(0), "cpu")
    return bench, preset("tiny", arch), mine, hf, int((mine.labels != IGNORE).sum())


@pytest.mark.parametrize("arch", ["encoder", "encoder-decoder"])
def test_our_training_flops_match_torchs_flop_counter(arch: str) -> None:
    bench, shape, mine, _, scored = setup(arch)
    torch.manual_seed(0)
    ours = Model(ModelConfig(arch=arch, vocab_size=VOCAB, max_len=64, **shape))
    tgt_len = 0 if arch == "encoder" else LENGTH
    expected = bench.train_flops(arch, shape, VOCAB, ROWS, LENGTH, tgt_len, scored)
    assert counted(lambda: bench.our_loss(ours, mine)) == pytest.approx(expected, rel=0.01)


@pytest.mark.parametrize("arch", ["encoder", "encoder-decoder"])
def test_transformers_training_flops_match_torchs_flop_counter(arch: str) -> None:
    """BertForMaskedLM projects every position onto the vocabulary, so its own FLOPs exceed the
    useful ones; BART scores every target token anyway."""
    pytest.importorskip("transformers")
    bench, shape, _, hf, scored = setup(arch)
    torch.manual_seed(0)
    theirs = bench.hf_model(arch, shape, VOCAB, 64).train()
    tgt_len = 0 if arch == "encoder" else LENGTH
    every = ROWS * (tgt_len or LENGTH)
    expected = bench.train_flops(arch, shape, VOCAB, ROWS, LENGTH, tgt_len, every)
    assert counted(lambda: theirs(**hf).loss) == pytest.approx(expected, rel=0.01)
    if arch == "encoder":
        assert expected > bench.train_flops(arch, shape, VOCAB, ROWS, LENGTH, tgt_len, scored)


def run_throughput(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, *args: str
) -> list[dict[str, object]]:
    """`train_throughput.py --json ARGS` in this process (transformers is imported once)."""
    pytest.importorskip("transformers")
    bench = throughput()
    monkeypatch.setattr(sys, "argv", ["train_throughput.py", "--json", *args])
    bench.main()
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


TINY_RUN = (
    "--model",
    "tiny",
    "--batch",
    "2",
    "--seq-len",
    "16",
    "--vocab",
    "500",
    "--steps",
    "1",
    "--warmup",
    "1",
    "--threads",
    "1",
)


def test_throughput_prints_a_json_line_per_result(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = run_throughput(capsys, monkeypatch, *TINY_RUN, "--device", "cpu", "--peak-tflops", "1")
    assert [r["arch"] for r in rows] == ["encoder", "encoder-decoder"]
    for r in rows:
        assert r["device"] == "cpu"
        assert "torch" in str(r["machine"])
        for side in ("ours", "transformers"):
            assert float(r[f"{side}_tokens_per_s"]) > 0
            assert 0 < float(r[f"{side}_useful_mfu"]) <= float(r[f"{side}_mfu"])
        assert r["ours_flops_per_step"] == r["useful_flops_per_step"]
    encoder = rows[0]
    assert int(encoder["transformers_flops_per_step"]) > int(encoder["useful_flops_per_step"])


@pytest.mark.slow
@pytest.mark.filterwarnings(NON_LEAF_GRAD)
def test_throughput_compiles_both_models(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = run_throughput(capsys, monkeypatch, *TINY_RUN, "--device", "cpu", "--compile")
    assert all(r["compile"] for r in rows)
    assert all(float(r["ours_tokens_per_s"]) > 0 for r in rows)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.filterwarnings(NON_LEAF_GRAD)
def test_throughput_on_cuda_reports_mfu(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = run_throughput(
        capsys,
        monkeypatch,
        "--model",
        "small",
        "--batch",
        "8",
        "--seq-len",
        "128",
        "--steps",
        "3",
        "--warmup",
        "3",
        "--device",
        "cuda",
        "--compile",
    )
    for r in rows:
        for side in ("ours", "transformers"):
            assert 0 < float(r[f"{side}_useful_mfu"]) <= float(r[f"{side}_mfu"]) < 1

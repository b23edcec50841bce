"""The benchmark scripts run from a clean checkout (tiny settings; no timing is asserted), and
the training benchmark's analytic FLOP count agrees with torch's own counter."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from corruptions import IGNORE
from objectives_cli.models import Model, ModelConfig, preset
from tests.helpers import NON_LEAF_GRAD

ROOT = Path(__file__).resolve().parent.parent


def test_corruption_benchmark_runs_and_writes_its_table(tmp_path: Path) -> None:
    out = tmp_path / "perf.md"
    subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "corruptions.py"), "--objectives", "bert-mlm",
         "--lengths", "32", "--batch", "4", "--threads", "1", "--min-time", "0.01", "--rounds", "1",
         "--no-peers", "--markdown", str(out)],
        check=True, capture_output=True, text=True, cwd=tmp_path,
    )
    table = out.read_text()
    assert "| bert-mlm | 32 | 1 |" in table
    assert "torch" in table.splitlines()[0]


def throughput() -> ModuleType:
    """benchmarks/train_throughput.py as a module (benchmarks/ is not a package)."""
    path = ROOT / "benchmarks" / "train_throughput.py"
    spec = importlib.util.spec_from_file_location("train_throughput", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("arch", ["encoder", "encoder-decoder"])
def test_analytic_flops_match_torchs_flop_counter(arch: str) -> None:
    """Forward + backward of both sides on a tiny CPU model, counted by FlopCounterMode (on
    SDPA's math path, whose matmuls it sees; CPU's flash kernel has no FLOP formula)."""
    pytest.importorskip("transformers")
    bench = throughput()
    shape, vocab, rows, length = preset("tiny", arch), 1000, 2, 32
    torch.manual_seed(0)
    ours = Model(ModelConfig(arch=arch, vocab_size=vocab, max_len=64, **shape))
    theirs = bench.hf_model(arch, shape, vocab, 64).train()
    make = bench.batch_encoder if arch == "encoder" else bench.batch_seq2seq
    mine, hf = make(rows, length, vocab, torch.Generator().manual_seed(0), "cpu")
    counted = {}
    with sdpa_kernel(SDPBackend.MATH):
        for name, loss in (("ours", lambda: bench.our_loss(ours, mine)),
                           ("transformers", lambda: theirs(**hf).loss)):
            with FlopCounterMode(display=False) as counter:
                loss().backward()
            counted[name] = counter.get_total_flops()
    tgt_len = 0 if arch == "encoder" else length
    scored = int((mine.labels != IGNORE).sum())
    every = rows * (tgt_len or length)
    expected = {
        "ours": bench.train_flops(arch, shape, vocab, rows, length, tgt_len, scored),
        "transformers": bench.train_flops(arch, shape, vocab, rows, length, tgt_len, every),
    }
    assert counted["ours"] == pytest.approx(expected["ours"], rel=0.01)  # measured: exact
    assert counted["transformers"] == pytest.approx(expected["transformers"], rel=0.01)
    if arch == "encoder":  # BertForMaskedLM projects every position onto the vocabulary
        assert counted["transformers"] > counted["ours"]


def run_throughput(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
                   *args: str) -> list[dict[str, object]]:
    """`train_throughput.py --json ARGS` in this process (transformers is imported once)."""
    pytest.importorskip("transformers")
    bench = throughput()
    monkeypatch.setattr(sys, "argv", ["train_throughput.py", "--json", *args])
    bench.main()
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


TINY_RUN = ("--model", "tiny", "--batch", "2", "--seq-len", "16", "--vocab", "500", "--steps",
            "1", "--warmup", "1", "--threads", "1")


def test_throughput_prints_a_json_line_per_result(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
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
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    rows = run_throughput(capsys, monkeypatch, *TINY_RUN, "--device", "cpu", "--compile")
    assert all(r["compile"] for r in rows)
    assert all(float(r["ours_tokens_per_s"]) > 0 for r in rows)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.filterwarnings(NON_LEAF_GRAD)
def test_throughput_on_cuda_reports_mfu(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    rows = run_throughput(capsys, monkeypatch, "--model", "small", "--batch", "8", "--seq-len",
                          "128", "--steps", "3", "--warmup", "3", "--device", "cuda",
                          "--compile")
    for r in rows:
        for side in ("ours", "transformers"):
            assert 0 < float(r[f"{side}_useful_mfu"]) <= float(r[f"{side}_mfu"]) < 1

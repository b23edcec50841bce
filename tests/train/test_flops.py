"""The analytic FLOP count the trainer logs (model/flops.py) agrees with torch's own counter on
real batches of each model shape (encoder, decoder, encoder-decoder, XLNet, ELECTRA); rows log
FLOPs per token of the batches trained, and MFU where the device's peak is known."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from corruptions import create, make_generator
from objectives_cli.model.config import ModelConfig, heads_for, preset
from objectives_cli.model.flops import step_flops
from objectives_cli.model.model import Model
from objectives_cli.train import checkpoints
from objectives_cli.train import loop as loop_module
from objectives_cli.train.loop import Trainer, train
from objectives_cli.train.losses import term_losses
from objectives_cli.train.runtime import peak_flops
from tests.helpers import TINY, random_batch
from tests.train.conftest import QUIET, tiny


@pytest.mark.parametrize(
    ("name", "arch"),
    [
        ("bert-mlm", "encoder"),
        ("clm", "decoder"),
        ("bart", "encoder-decoder"),
        ("xlnet-plm", "encoder"),
        ("electra", "encoder"),
    ],
)
def test_step_flops_match_torchs_flop_counter(name: str, arch: str) -> None:
    tokens = random_batch(4, 24, word_every=2)
    batch = create(name)(tokens, TINY, make_generator(0))
    electra = name == "electra"
    heads = heads_for(arch, batch, electra, TINY.mask)
    torch.manual_seed(0)
    cfg = ModelConfig(arch=arch, vocab_size=TINY.size, **preset("tiny", arch), **heads)
    model = Model(cfg)
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        outputs = model(batch)
        sum(v[0] for v in term_losses(outputs).values()).backward()
    head = "lm" if arch != "encoder" else "mlm"
    expected = step_flops(cfg, batch, int(model.scored(batch)[head].sum()))
    assert expected == pytest.approx(counter.get_total_flops(), rel=0.02)


def test_rows_log_flops_per_token_and_mfu_where_the_peak_is_known(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(loop_module, "peak_flops", lambda device, precision: 1e9)
    cfg = tiny(tmp_path / "run", "bart", steps=2, log_every=1)
    trainer = Trainer(cfg, QUIET, False, 0, 1, 0)
    expected = []
    for step in range(2):  # the batches the loop will train on, as it builds them
        batch, tokens = trainer.get_batch(step, 0, 0)
        scored = int(trainer.model.scored(batch)["lm"].sum())
        expected.append(step_flops(trainer.model.cfg, batch, scored) / tokens)
    trainer.run()
    rows = [r for r in checkpoints.read_metrics(cfg.out) if "loss" in r]
    assert [r["flops_per_token"] for r in rows] == pytest.approx(expected, rel=1e-9)
    for row in rows:  # MFU = flops / training seconds / peak; tokens/s = tokens / those seconds
        flops_per_s = row["flops_per_token"] * row["tokens_per_s"]
        assert row["mfu"] == pytest.approx(flops_per_s / 1e9, rel=1e-6)


def test_without_a_known_peak_there_is_no_mfu(tmp_path: Path) -> None:
    cfg = tiny(tmp_path / "run", steps=1)
    train(cfg, QUIET)
    row = next(r for r in checkpoints.read_metrics(cfg.out) if "loss" in r)
    assert row["flops_per_token"] > 0
    assert "mfu" not in row  # a CPU's peak is not known


@pytest.mark.parametrize(
    ("name", "precision", "tflops"),
    [
        ("NVIDIA H100 80GB HBM3", "auto", 989.4),
        ("NVIDIA H100 PCIe", "bf16", 756.0),
        ("NVIDIA H200", "fp32", 494.7),  # fp32 matmuls run in TF32
        ("NVIDIA A100-SXM4-80GB", "auto", 312.0),
        ("NVIDIA L40S", "auto", 362.0),
        ("NVIDIA GeForce RTX 3090", "auto", None),
    ],
)
def test_the_peak_of_known_gpus(
    monkeypatch: pytest.MonkeyPatch, name: str, precision: str, tflops: float | None
) -> None:
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: name)
    peak = peak_flops(torch.device("cuda", 0), precision)
    assert peak == (None if tflops is None else pytest.approx(tflops * 1e12))
    assert peak_flops(torch.device("cpu"), precision) is None

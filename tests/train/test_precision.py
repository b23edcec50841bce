"""bf16 autocast on CPU: every objective trains and evaluates under `precision="bf16"`.

On CPU `precision="bf16"` runs the forward pass under `torch.autocast("cpu", torch.bfloat16)`,
the same mixed-precision path CUDA takes by default, so dtype mistakes (an fp32 tensor written
into a bf16 one, a cat of both, a bf16 loss) show up here without a GPU. One objective per model
shape runs in the fast group (as in test_objectives.py); the others are marked slow.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from objectives_cli.train.checkpoints import read_metrics
from objectives_cli.train.loop import Trainer, train
from objectives_cli.train.runtime import amp_context
from tests.train.conftest import QUIET, tiny
from tests.train.test_objectives import cases

STEPS = 3
BF16_TOLERANCE = 1e-3  # relative; at initialisation the gap measures ~1e-5


def test_bf16_on_cpu_is_autocast(tmp_path: Path) -> None:
    x = torch.ones(2, 2)
    with amp_context(tiny(tmp_path, precision="bf16"), torch.device("cpu")):
        assert (x @ x).dtype == torch.bfloat16
    with amp_context(tiny(tmp_path), torch.device("cpu")):  # auto: fp32 on CPU
        assert (x @ x).dtype == torch.float32


@pytest.mark.parametrize("name", cases())
def test_trains_and_evaluates_in_bf16(name: str, tmp_path: Path) -> None:
    summary = train(tiny(tmp_path / "bf16", name, steps=STEPS, precision="bf16"), QUIET)
    rows = [r for r in read_metrics(tmp_path / "bf16") if "loss" in r]
    assert [r["step"] for r in rows] == list(range(1, STEPS + 1))
    losses = [v for r in rows for k, v in r.items() if k.endswith("loss")]
    evals = [v for k, v in summary.items() if k.startswith("eval_")]
    assert all(math.isfinite(v) for v in [*losses, *evals]), summary
    fp32 = Trainer(tiny(tmp_path / "fp32", name, precision="fp32"), QUIET, False, 0, 1, 0)
    expected = fp32.evaluate()["loss"]  # same initial weights and held-out batches, in fp32
    assert summary["start_eval_loss"] == pytest.approx(expected, rel=BF16_TOLERANCE)


@pytest.mark.parametrize(
    ("name", "packing"),
    [("xlnet-plm", "documents"), ("clm", "rows"), ("t5-span", "concat"), ("bert-mlm", "concat")],
)
def test_rotary_packed_and_dropout_in_bf16(name: str, packing: str, tmp_path: Path) -> None:
    """Rotary positions mix fp32 angles into bf16 queries; packed documents and dropout add the
    dense-mask and random paths (clm packs one document per row)."""
    cfg = tiny(
        tmp_path, name, steps=2, precision="bf16", positions="rotary", dropout=0.1, packing=packing
    )
    summary = train(cfg, QUIET)
    assert all(math.isfinite(v) for k, v in summary.items() if k.endswith("loss")), summary

"""What a run logs: each metrics row is the mean over its window of steps, its throughput and the
summary's count training time only (evaluations and checkpoints apart), and the total time is
given separately."""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from objectives_cli.train import checkpoints
from objectives_cli.train import loop as loop_module
from objectives_cli.train.loop import train
from tests.train.conftest import QUIET, tiny


def test_a_row_logs_the_mean_loss_of_its_window(tmp_path: Path) -> None:
    every = tiny(tmp_path / "every", steps=7, log_every=1)
    windows = tiny(tmp_path / "windows", steps=7, log_every=3)
    train(every, QUIET)
    train(windows, QUIET)
    per_step = {r["step"]: r for r in checkpoints.read_metrics(every.out) if "loss" in r}
    rows = [r for r in checkpoints.read_metrics(windows.out) if "loss" in r]
    assert [r["step"] for r in rows] == [3, 6, 7]
    for first, row in zip([1, 4, 7], rows, strict=True):
        steps = range(first, row["step"] + 1)
        for key in ("loss", "mlm_loss"):
            mean = statistics.fmean(per_step[s][key] for s in steps)
            assert row[key] == pytest.approx(mean, rel=1e-6)
        assert row["tokens"] == per_step[row["step"]]["tokens"]


class FakeClock:
    """perf_counter for the loop: 1 ms per reading, and 1000 s for every evaluation."""

    def __init__(self) -> None:
        self.now = 0.0

    def perf_counter(self) -> float:
        self.now += 0.001
        return self.now


def test_throughput_leaves_evaluations_and_checkpoints_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FakeClock()
    real_evaluate, real_save = loop_module.evaluate, checkpoints.save

    def slow_evaluate(*args: Any, **kwargs: Any) -> Any:
        clock.now += 1000.0
        return real_evaluate(*args, **kwargs)

    def slow_save(*args: Any, **kwargs: Any) -> Any:
        clock.now += 500.0
        return real_save(*args, **kwargs)

    fake_time = SimpleNamespace(
        perf_counter=clock.perf_counter,
        time=time.time,
        localtime=time.localtime,
        strftime=time.strftime,
    )
    monkeypatch.setattr(loop_module, "time", fake_time)
    monkeypatch.setattr(loop_module, "evaluate", slow_evaluate)
    monkeypatch.setattr(checkpoints, "save", slow_save)
    cfg = tiny(tmp_path / "run", steps=4, log_every=2, eval_every=2, save_every=2)
    summary = train(cfg, QUIET)
    assert summary["seconds"] >= 3000  # evaluations at 2 and 4, checkpoints at 2 and 4
    assert summary["train_seconds"] < 1
    assert summary["tokens_per_s"] > summary["tokens"]
    rows = [r for r in checkpoints.read_metrics(cfg.out) if "loss" in r]
    assert rows[1]["elapsed"] > 1500  # the row after an evaluation and a checkpoint...
    assert rows[1]["tokens_per_s"] > rows[1]["tokens"] - rows[0]["tokens"]  # ...is not slowed

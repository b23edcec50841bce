"""A run talks from its start: reading, tokenising, the first evaluation, then a forecast once
the first step is timed (a warning when it is very long); it saves every --save-minutes by
default, --keep bounding the disk."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from objectives_cli.train import batches, checkpoints
from objectives_cli.train import loop as loop_module
from objectives_cli.train import metrics as metrics_module
from objectives_cli.train.config import TrainConfig
from objectives_cli.train.loop import train
from objectives_cli.train.report import PlainReporter
from tests.cli.runner import invoke
from tests.train.conftest import tiny


class Listen(PlainReporter):
    def __init__(self) -> None:
        super().__init__(quiet=True)
        self.said: list[str] = []

    def message(self, text: str) -> None:
        self.said.append(text)


def slow_steps(monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    """The loop's clock stands still except in training steps, which take `seconds` each."""
    clock = SimpleNamespace(now=0.0)
    fake_time = SimpleNamespace(
        perf_counter=lambda: clock.now,
        time=time.time,
        localtime=time.localtime,
        strftime=time.strftime,
    )
    real_step = loop_module.train_step

    def step(*args: Any, **kwargs: Any) -> Any:
        clock.now += seconds
        return real_step(*args, **kwargs)

    monkeypatch.setattr(loop_module, "time", fake_time)
    monkeypatch.setattr(loop_module, "train_step", step)


def test_checkpoints_every_save_minutes_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert TrainConfig().save_minutes == 10  # on by default: a crash loses at most 10 minutes
    slow_steps(monkeypatch, 60.0)  # a minute per step
    cfg = tiny(tmp_path / "run", steps=7, save_minutes=2.0, keep=2)
    saved: list[int] = []
    real_save = checkpoints.save

    def save(run_dir: Path, step: int, *args: Any, **kwargs: Any) -> Path:
        saved.append(step)
        return real_save(run_dir, step, *args, **kwargs)

    monkeypatch.setattr(checkpoints, "save", save)
    train(cfg, Listen())
    assert saved == [2, 4, 6, 7]  # every 2 minutes, and the end
    assert [s for s, _ in checkpoints.list_checkpoints(cfg.out)] == [6, 7]  # --keep 2


def test_a_very_long_run_is_a_warning_once_the_first_step_is_timed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    slow_steps(monkeypatch, 25.0)  # a base model's step on a CPU
    listen = Listen()
    train(tiny(tmp_path / "run", steps=4), listen)  # timed: the second step
    forecast = [s for s in listen.said if "more steps" in s]
    assert forecast == ["about 50 s to go for 2 more steps (25.00 s per step), done around " +
                        forecast[0].rsplit(" ", 1)[1]]  # fmt: skip
    monkeypatch.setattr(metrics_module, "SLOW_SECONDS", 40.0)
    listen = Listen()
    train(tiny(tmp_path / "slow", steps=4), listen)
    assert [s for s in listen.said if "more steps" in s] == [
        "warning: 2 more steps of model tiny on cpu take about 50 s (25.0 s per step); a smaller "
        "--model, fewer --steps, a --budget (e.g. 30m) or a GPU make it shorter"
    ]


def test_a_run_talks_from_its_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OBJECTIVES_CACHE", str(tmp_path / "cache"))  # nothing tokenised yet
    monkeypatch.setattr(batches, "PROGRESS_SECONDS", 0.0)
    data = tmp_path / "notes.txt"
    data.write_text("\n\n".join(f"Note {i}: the cat sat on the mat." for i in range(200)) + "\n")
    args = ("--steps", "3", "--seq-len", "32", "--batch-size", "4", "--device", "cpu")
    result = invoke(
        "train", "-o", "bert-mlm", *args, "--data", str(data), "--out", str(tmp_path / "r")
    )
    assert result.code == 0, result.stderr
    lines = result.stderr.splitlines()
    order = [
        f"reading {data}",
        "199 training and 1 held-out documents, 6,",
        "tokenising: 199 of 199 documents",
        "evaluating step 0 on 1 held-out rows",
        "held-out step 0",
        "about 0 s to go for 1 more step (",
        "step 3",
    ]
    at = [next(i for i, line in enumerate(lines) if line.startswith(text)) for text in order]
    assert at == sorted(at), lines
    assert lines[at[-1]].endswith(tuple(f"ETA {n}s" for n in range(100)))

"""Ctrl-C: the first is acknowledged at once and the run saves after the step under way; a
second stops at once, exit status 130, with the previous checkpoint whole."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest

from objectives_cli.data import files
from objectives_cli.train import checkpoints
from objectives_cli.train import loop as loop_module
from objectives_cli.train.loop import Interrupted, train
from objectives_cli.train.report import PlainReporter
from tests.cli.runner import invoke
from tests.train.conftest import tiny
from tests.train.test_disk import leftovers


class CtrlC(PlainReporter):
    """Presses Ctrl-C `times` times once step `step` is done, and notes what the run said by
    the time each press returned."""

    def __init__(self, step: int, times: int) -> None:
        super().__init__(quiet=True)
        self.step, self.times = step, times
        self.said: list[str] = []
        self.heard: list[list[str]] = []  # what had been said right after each press

    def message(self, text: str) -> None:
        self.said.append(text)

    def advance(self, done: float, row: dict[str, float] | None) -> None:
        if done == self.step:
            for _ in range(self.times):
                self.heard.append(list(self.said))
                os.kill(os.getpid(), signal.SIGINT)
                self.heard[-1] = list(self.said)


ACK = "stopping after step 3 and saving it; press Ctrl-C again to stop now without saving"


def test_the_first_ctrl_c_is_acknowledged_at_once_and_saves(tmp_path: Path) -> None:
    cfg = tiny(tmp_path / "run", steps=6, save_every=2)
    press = CtrlC(3, times=1)
    with pytest.raises(Interrupted) as stopped:
        train(cfg, press)
    assert press.heard[0][-1] == ACK  # said before the press returned, not after the step
    assert stopped.value.exit_code == 130
    assert [s for s, _ in checkpoints.list_checkpoints(cfg.out)] == [2, 3]


def test_a_second_ctrl_c_stops_at_once_without_saving(tmp_path: Path) -> None:
    cfg = tiny(tmp_path / "run", steps=6, save_every=2)
    with pytest.raises(Interrupted) as stopped:
        train(cfg, CtrlC(3, times=2))
    assert stopped.value.exit_code == 130
    assert stopped.value.message == (
        "stopped at once, without saving; the last checkpoint is step-00000002"
    )
    assert stopped.value.hint == f"continue with: objectives train --resume {cfg.out}"
    assert [s for s, _ in checkpoints.list_checkpoints(cfg.out)] == [2]
    assert leftovers(Path(cfg.out)) == []


def test_a_second_ctrl_c_during_the_checkpoint_leaves_the_previous_one_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = files.write_file

    def write_file(path: Path, data: Any) -> None:
        real(path, data)
        if path.name == "model.safetensors" and "00000003" in str(path):
            os.kill(os.getpid(), signal.SIGINT)  # the second press, mid-checkpoint

    monkeypatch.setattr(files, "write_file", write_file)
    cfg = tiny(tmp_path / "run", steps=6, save_every=2)
    with pytest.raises(Interrupted) as stopped:
        train(cfg, CtrlC(3, times=1))
    assert stopped.value.exit_code == 130
    assert "without saving" in stopped.value.message
    assert [s for s, _ in checkpoints.list_checkpoints(cfg.out)] == [2]
    assert leftovers(Path(cfg.out)) == []
    monkeypatch.undo()
    train(cfg, PlainReporter(quiet=True), resume=True)  # the previous checkpoint resumes
    assert checkpoints.list_checkpoints(cfg.out)[-1][0] == 6


def test_ctrl_c_twice_in_the_cli_exits_130_in_two_lines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = loop_module.train_step

    def step(*args: Any, **kwargs: Any) -> Any:
        out = real(*args, **kwargs)
        if args[5] == 1:  # during step 2
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)
        return out

    monkeypatch.setattr(loop_module, "train_step", step)
    run = tmp_path / "run"
    args = ("--steps", "4", "--seq-len", "32", "--batch-size", "4", "--device", "cpu")
    result = invoke("train", "-o", "bert-mlm", *args, "--save-every", "1", "--out", str(run))
    assert result.code == 130
    assert "stopping after step 2 and saving it; press Ctrl-C again" in result.stderr
    assert result.stderr.splitlines()[-2:] == [
        "error: stopped at once, without saving; the last checkpoint is step-00000001",
        f"hint: continue with: objectives train --resume {run}",
    ]

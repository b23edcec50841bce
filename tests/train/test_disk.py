"""A full disk or an unwritable run directory: the run ends with one error naming the path and the
OS reason, nothing half-written stays behind, the complete checkpoints are untouched, and
`--resume` continues from the last good one.

The failures are injected where every file of the run directory is written (`write_all` and
`write_file` in data/files.py), after part of the data went out, as a real full disk does.
"""

from __future__ import annotations

import errno
import json
import os
import signal
from pathlib import Path

import pytest

from objectives_cli.data import files
from objectives_cli.train import checkpoints
from objectives_cli.train.inference import load_run
from objectives_cli.train.loop import Interrupted, train
from objectives_cli.train.report import PlainReporter
from tests.cli.runner import invoke
from tests.train.conftest import QUIET, tiny

FULL = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def fail_file(monkeypatch: pytest.MonkeyPatch, name: str, nth: int, exc: OSError = FULL) -> None:
    """The `nth` write of a file whose name holds `name` (temporary names included) writes
    half its data, then raises `exc`."""
    real, seen = files.write_file, {"n": 0}

    def failing(path: Path, data: bytes | memoryview) -> None:
        if name in path.name:
            seen["n"] += 1
            if seen["n"] == nth:
                real(path, bytes(data)[: len(data) // 2])
                raise exc
        real(path, data)

    monkeypatch.setattr(files, "write_file", failing)


def leftovers(run: Path) -> list[str]:
    """Temporary files and directories anywhere in the run directory (the lock file is not one)."""
    return [str(p.relative_to(run)) for p in run.rglob(".*") if p.name != ".lock"]


def test_a_failed_checkpoint_keeps_the_previous_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = tiny(tmp_path / "run", steps=6, save_every=2, keep=1)
    fail_file(monkeypatch, "state.pt", nth=2)  # the checkpoint of step 4
    with pytest.raises(checkpoints.WriteError) as failed:
        train(cfg, QUIET)
    run = Path(cfg.out)
    assert failed.value.message == (
        f"cannot write {run / 'checkpoints' / 'step-00000004'}: No space left on device"
    )
    assert failed.value.hint == (
        f"free some space, then continue with: objectives train "
        f"--resume {run} (the last good checkpoint is step-00000002)"
    )
    assert failed.value.exit_code == 1
    assert [s for s, _ in checkpoints.list_checkpoints(run)] == [2]  # keep=1 deleted nothing
    assert leftovers(run) == []
    assert load_run(run, "cpu", warn=pytest.fail).step == 2

    monkeypatch.undo()
    train(cfg, QUIET, resume=True)
    assert [s for s, _ in checkpoints.list_checkpoints(run)] == [6]
    steps = [r["step"] for r in checkpoints.read_metrics(run) if "loss" in r]
    assert steps == [1, 2, 3, 4, 5, 6]  # what was logged after step 2 was logged again


def test_a_failed_metrics_line_is_cut_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = files.write_all

    def failing(fd: int, data: bytes | memoryview) -> None:
        if bytes(data).startswith(b'{"step": 3,'):  # the line of step 3: a part, then no space
            real(fd, bytes(data)[:10])
            raise FULL
        real(fd, data)

    monkeypatch.setattr(files, "write_all", failing)
    cfg = tiny(tmp_path / "run", steps=6, save_every=2)
    with pytest.raises(checkpoints.WriteError, match=r"metrics\.jsonl: No space left on device"):
        train(cfg, QUIET)
    run = Path(cfg.out)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [0, 1, 2]  # whole lines only
    assert [s for s, _ in checkpoints.list_checkpoints(run)] == [2]


def test_an_unwritable_run_dir_fails_before_training(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fail_file(
        monkeypatch,
        "tokenizer.json",
        nth=1,
        exc=PermissionError(errno.EACCES, os.strerror(errno.EACCES)),
    )
    cfg = tiny(tmp_path / "run", steps=2)
    with pytest.raises(checkpoints.WriteError) as failed:
        train(cfg, QUIET)
    run = Path(cfg.out)
    assert failed.value.message == f"cannot write {run / 'tokenizer.json'}: Permission denied"
    assert failed.value.hint == (
        f"make {run} writable, then start the run again (no checkpoint was written yet)"
    )
    assert leftovers(run) == []


class Interrupt(PlainReporter):
    """Sends this process SIGINT once step `step` is done."""

    def __init__(self, step: int) -> None:
        super().__init__(quiet=True)
        self.step = step

    def advance(self, done: float, row: dict[str, float] | None) -> None:
        if done == self.step:
            os.kill(os.getpid(), signal.SIGINT)


def test_a_failed_checkpoint_on_sigint_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = tiny(tmp_path / "run", steps=6, save_every=2)
    fail_file(monkeypatch, "model.safetensors", nth=2)  # the checkpoint the signal asks for
    with pytest.raises(Interrupted) as stopped:
        train(cfg, Interrupt(3))
    run = Path(cfg.out)
    assert stopped.value.exit_code == 128 + signal.SIGINT
    assert stopped.value.message == (
        f"interrupted at step 3, but its checkpoint was not saved: cannot write "
        f"{run / 'checkpoints' / 'step-00000003'}: No space left on device"
    )
    assert "--resume" in (stopped.value.hint or "")
    assert "step-00000002" in (stopped.value.hint or "")
    assert [s for s, _ in checkpoints.list_checkpoints(run)] == [2]
    assert leftovers(run) == []


def test_the_cli_reports_a_full_disk_in_two_lines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = tmp_path / "run"
    args = (
        "--steps",
        "4",
        "--save-every",
        "2",
        "--seq-len",
        "32",
        "--batch-size",
        "4",
        "--eval-batches",
        "1",
        "--device",
        "cpu",
        "--out",
        str(run),
    )
    fail_file(monkeypatch, "model.safetensors", nth=2)
    result = invoke("train", "-o", "bert-mlm", *args)
    assert result.code == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-2:] == [
        f"error: cannot write {run / 'checkpoints' / 'step-00000004'}: No space left on device",
        f"hint: free some space, then continue with: objectives train --resume {run} "
        "(the last good checkpoint is step-00000002)",
    ]
    monkeypatch.undo()
    resumed = invoke("train", "--resume", str(run))
    assert resumed.code == 0, resumed.stderr
    assert f"resuming {run} at step 2" in resumed.stderr
    assert [s for s, _ in checkpoints.list_checkpoints(run)] == [2, 4]


def test_a_checkpoint_of_the_same_step_is_replaced_whole(tmp_path: Path) -> None:
    import torch

    model = torch.nn.Linear(2, 2)
    state = {"optimizer": {}, "elapsed": 1.0, "tokens": 10}
    first = checkpoints.save(tmp_path, 5, model, {**state, "n": 1}, keep=2)
    (first / "model.safetensors").write_bytes(b"damaged")
    again = checkpoints.save(tmp_path, 5, model, {**state, "n": 2}, keep=2)
    assert again == first
    assert checkpoints.read_checkpoint(again)[1] == {**state, "n": 2, "step": 5}
    assert leftovers(tmp_path) == []

"""Resume is exact: 2N straight steps == N steps, stop, resume, N steps (weights and loss curve).

ELECTRA with dropout and two micro-batches per step exercises every source of randomness: the
data order, the corruption, dropout and the generator's sampling.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from objectives_cli.train import checkpoints
from objectives_cli.train.loop import Interrupted, train
from objectives_cli.train.report import PlainReporter
from tests.train.conftest import QUIET, tiny

SETTINGS: dict[str, Any] = {"steps": 8, "dropout": 0.1, "grad_accum": 2, "warmup": 2.0}


class StopAt(PlainReporter):
    """Sends this process SIGINT (or raises, as a crash would) once `step` is done."""

    def __init__(self, step: int, crash: bool = False) -> None:
        super().__init__(quiet=True)
        self.step, self.crash = step, crash

    def advance(self, done: float, row: dict[str, float] | None) -> None:
        if done == self.step:
            if self.crash:
                raise RuntimeError("simulated crash")
            os.kill(os.getpid(), signal.SIGINT)


def rewrite(path: Path, state: dict[str, Any]) -> None:
    """Replace a checkpoint's state.pt as a save would have written it (manifest included)."""
    import hashlib
    import io
    import json

    data = io.BytesIO()
    torch.save(state, data)
    path.write_bytes(data.getvalue())
    manifest = json.loads((path.parent / "manifest.json").read_text())
    entry = {"bytes": len(data.getvalue()), "sha256": hashlib.sha256(data.getvalue()).hexdigest()}
    manifest["files"]["state.pt"] = entry
    (path.parent / "manifest.json").write_text(json.dumps(manifest))


def curve(run: Path) -> list[dict[str, float]]:
    keep = ("step", "loss", "mlm_loss", "rtd_loss", "lr", "tokens")
    return [{k: r[k] for k in keep} for r in checkpoints.read_metrics(run) if "loss" in r]


def weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(checkpoints.list_checkpoints(run)[-1][1] / "model.safetensors"))


def assert_same_run(a: Path, b: Path) -> None:
    assert curve(a) == curve(b)
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


@pytest.fixture(scope="module")
def straight(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("straight") / "run"
    train(tiny(out, "electra", **SETTINGS), QUIET)
    return out


def test_sigint_saves_and_resume_continues_exactly(straight: Path, tmp_path: Path) -> None:
    cfg = tiny(tmp_path / "run", "electra", **SETTINGS)
    with pytest.raises(Interrupted) as stopped:
        train(cfg, StopAt(4))
    assert stopped.value.exit_code == 128 + signal.SIGINT
    assert [s for s, _ in checkpoints.list_checkpoints(cfg.out)] == [4]
    train(cfg, QUIET, resume=True)
    assert_same_run(straight, Path(cfg.out))


def test_resume_after_a_crash_redoes_the_steps_since_the_last_checkpoint(
    straight: Path, tmp_path: Path
) -> None:
    cfg = tiny(tmp_path / "run", "electra", save_every=3, **SETTINGS)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(cfg, StopAt(5, crash=True))
    assert [s for s, _ in checkpoints.list_checkpoints(cfg.out)] == [3]
    assert max(r["step"] for r in curve(Path(cfg.out))) == 5  # logged, then lost
    with open(Path(cfg.out) / "metrics.jsonl", "a") as f:  # a power loss cuts a line short
        f.write('{"step": 6, "loss": 3.')
    train(cfg, QUIET, resume=True)
    assert_same_run(straight, Path(cfg.out))
    assert [s for s, _ in checkpoints.list_checkpoints(cfg.out)] == [3, 6, 8]


def test_state_loads_with_weights_only(straight: Path) -> None:
    path = checkpoints.list_checkpoints(straight)[-1][1] / "state.pt"
    state = torch.load(path, weights_only=True)
    assert state["step"] == 8
    keys = {"optimizer", "elapsed", "tokens", "world", "warm_end", "step"}
    assert set(state) == keys  # nothing unread


def test_resume_refuses_another_objective_or_shape(straight: Path) -> None:
    from dataclasses import replace

    from corruptions import UsageError

    cfg = tiny(straight, "electra", **SETTINGS)
    for change in ({"objective": "bert-mlm"}, {"seq_len": 64}, {"model": "small"}):
        with pytest.raises(UsageError, match="cannot resume"):
            train(replace(cfg, **change), QUIET, resume=True)


def test_resuming_with_another_process_count_warns(straight: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(straight, copy)
    path = checkpoints.list_checkpoints(copy)[-1][1] / "state.pt"
    state = torch.load(path, weights_only=True)
    assert state["world"] == 1
    rewrite(path, {**state, "world": 2})
    said: list[str] = []

    class Listen(PlainReporter):
        def message(self, text: str) -> None:
            said.append(text)

    train(tiny(copy, "electra", **{**SETTINGS, "steps": 9}), Listen(quiet=True), resume=True)
    assert any("trained with 2 process(es) and resumes with 1" in s for s in said)


def test_resuming_a_finished_run_changes_nothing(straight: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(straight, copy)
    before = (copy / "metrics.jsonl").read_text()
    said: list[str] = []

    class Listen(PlainReporter):
        def message(self, text: str) -> None:
            said.append(text)

    summary = train(tiny(copy, "electra", **SETTINGS), Listen(quiet=True), resume=True)
    assert summary["steps"] == 8
    assert any("nothing to do (give --steps above 8" in s for s in said)
    assert (copy / "metrics.jsonl").read_text() == before
    assert [s for s, _ in checkpoints.list_checkpoints(copy)] == [
        s for s, _ in checkpoints.list_checkpoints(straight)
    ]

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
    keys = {"optimizer", "elapsed", "train_seconds", "tokens", "world", "warm_end", "window"}
    keys.add("step")
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


# --- a crash at any point: the resumed run writes what an uninterrupted one writes -------------

LOGGED: dict[str, Any] = {**SETTINGS, "log_every": 3, "eval_every": 4, "save_every": 4}
TIMING = {"elapsed", "tokens_per_s", "seconds", "train_seconds"}


def content(run: Path) -> list[dict[str, Any]]:
    """metrics.jsonl without what depends on the clock (and the summary's own path)."""
    rows = []
    for row in checkpoints.read_metrics(run):
        row = {k: v for k, v in row.items() if k not in TIMING}
        if "summary" in row:
            row["summary"] = {
                k: v for k, v in row["summary"].items() if k not in TIMING | {"run_dir"}
            }
        rows.append(row)
    return rows


@pytest.fixture(scope="module")
def straight_logged(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("logged") / "run"
    train(tiny(out, "electra", **LOGGED), QUIET)
    return out


def test_an_uninterrupted_run_logs_window_means_evaluations_and_a_summary(
    straight_logged: Path,
) -> None:
    rows = content(straight_logged)
    kinds = [(r["step"], "loss" in r, "eval_loss" in r, "summary" in r) for r in rows]
    assert kinds == [
        (0, False, True, False),
        (3, True, False, False),
        (4, False, True, False),
        (6, True, False, False),
        (8, True, False, False),  # the last window (steps 7-8) ends with the run
        (8, False, True, False),  # the final evaluation, before the final checkpoint
        (8, False, False, True),  # the summary, last
    ]
    summary = rows[-1]["summary"]
    assert summary["train_loss"] == round(rows[4]["loss"], 4)
    assert summary["start_eval_loss"] == round(rows[0]["eval_loss"], 4)
    assert summary["eval_loss"] == round(rows[5]["eval_loss"], 4)


def crash_after_saving(monkeypatch: pytest.MonkeyPatch, step: int, before: bool = False) -> None:
    """The process dies right after checkpoint `step` is written (or just before)."""
    real = checkpoints.save

    def save(run_dir: Path, at: int, *args: Any, **kwargs: Any) -> Path:
        if at == step and before:
            raise RuntimeError("killed")
        path = real(run_dir, at, *args, **kwargs)
        if at == step:
            raise RuntimeError("killed")
        return path

    monkeypatch.setattr(checkpoints, "save", save)


@pytest.mark.parametrize(
    ("step", "before"),
    [
        pytest.param(4, False, id="after-an-evaluated-checkpoint"),
        pytest.param(8, True, id="after-the-final-evaluation"),
        pytest.param(8, False, id="after-the-final-checkpoint"),
    ],
)
def test_a_crash_loses_no_evaluation_and_no_summary(
    straight_logged: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, step: int, before: bool
) -> None:
    cfg = tiny(tmp_path / "run", "electra", **LOGGED)
    crash_after_saving(monkeypatch, step, before)
    with pytest.raises(RuntimeError, match="killed"):
        train(cfg, QUIET)
    monkeypatch.undo()
    summary = train(cfg, QUIET, resume=True)
    assert content(Path(cfg.out)) == content(straight_logged)
    assert summary["eval_loss"] == content(straight_logged)[-1]["summary"]["eval_loss"]
    assert_same_run(straight_logged, Path(cfg.out))


def test_an_interrupted_window_is_averaged_whole_after_resume(
    straight_logged: Path, tmp_path: Path
) -> None:
    """SIGINT at step 5, inside the window of steps 4-6: the checkpoint keeps its sums."""
    cfg = tiny(tmp_path / "run", "electra", **LOGGED)
    with pytest.raises(Interrupted):
        train(cfg, StopAt(5))
    assert [r["step"] for r in checkpoints.read_metrics(cfg.out)] == [0, 3, 4]  # no row for 5
    train(cfg, QUIET, resume=True)
    assert content(Path(cfg.out)) == content(straight_logged)

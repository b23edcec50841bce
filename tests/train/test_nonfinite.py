"""A run that diverges keeps only finite checkpoints, names the last good one, and can go on from
it at a lower rate; eval and fill refuse weights that are not finite (one error line)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from objectives_cli.train import checkpoints
from objectives_cli.train import loop as loop_module
from objectives_cli.train import step as step_module
from objectives_cli.train.loop import NonFiniteLoss, train
from objectives_cli.train.report import PlainReporter
from tests.cli.runner import invoke
from tests.train.conftest import QUIET, tiny


class Listen(PlainReporter):
    def __init__(self) -> None:
        super().__init__(quiet=True)
        self.said: list[str] = []

    def message(self, text: str) -> None:
        self.said.append(text)


def all_finite(run: Path) -> list[int]:
    """Steps of the checkpoints whose weights and optimizer moments are all finite."""
    good = []
    for step, path in checkpoints.list_checkpoints(run):
        weights = load_file(str(path / "model.safetensors"))
        state = torch.load(path / "state.pt", weights_only=True)["optimizer"]["state"]
        moments = [v for s in state.values() for v in s.values()]
        if all(bool(torch.isfinite(t).all()) for t in [*weights.values(), *moments]):
            good.append(step)
    return good


def poison_after(monkeypatch: pytest.MonkeyPatch, step: int, what: str) -> None:
    """From optimizer step `step` (1-based) on, the update makes the weights NaN ("update";
    the loss of that step is still finite) or the gradients are NaN ("grad")."""
    real = loop_module.make_optimizer
    calls = {"n": 0}

    def make(*args: Any) -> torch.optim.Optimizer:
        opt = real(*args)
        original = opt.step

        def step_fn(*a: Any, **kw: Any) -> Any:
            calls["n"] += 1
            params = [p for g in opt.param_groups for p in g["params"]]
            if calls["n"] >= step and what == "grad":
                params[0].grad.fill_(float("nan"))
            out = original(*a, **kw)
            if calls["n"] >= step and what == "update":
                with torch.no_grad():
                    params[0].fill_(float("nan"))
            return out

        opt.step = step_fn  # type: ignore[method-assign]
        return opt

    monkeypatch.setattr(loop_module, "make_optimizer", make)


@pytest.mark.parametrize("what", ["update", "grad"])
def test_an_update_that_poisons_the_weights_is_never_saved(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, what: str
) -> None:
    poison_after(monkeypatch, 3, what)
    cfg = tiny(tmp_path / "run", steps=6, save_every=1, log_every=10)
    with pytest.raises(NonFiniteLoss) as stopped:
        train(cfg, QUIET)
    run = Path(cfg.out)
    assert [s for s, _ in checkpoints.list_checkpoints(run)] == [1, 2]
    assert all_finite(run) == [1, 2]
    assert stopped.value.message.endswith(
        f"the last good checkpoint is {run / 'checkpoints' / 'step-00000002'}"
    )
    assert stopped.value.hint == (
        f"continue from it at a lower rate: objectives train --resume {run} --lr 0.0002 "
        "(or start a new run with a longer --warmup)"
    )


def test_a_diverging_run_keeps_finite_checkpoints_and_resumes_at_a_lower_rate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The issue's reproduction, with the divergence made certain (a real --lr that is too high
    diverges at a step that float rounding decides): from step 7 on the loss is NaN. The
    checkpoint whose next step diverges is set aside, the one before is named, and --resume with
    a lower --lr (the hint) continues from it."""
    real, calls = step_module.term_losses, {"n": 0}

    def poisoned(outputs: Any, accuracy: bool = False) -> Any:
        losses = real(outputs, accuracy)
        calls["n"] += not accuracy
        if calls["n"] >= 7 and not accuracy:
            return {k: (v * float("nan"), c) for k, (v, c) in losses.items()}
        return losses

    monkeypatch.setattr(step_module, "term_losses", poisoned)
    run = tmp_path / "x"
    args = ("--seq-len", "32", "--batch-size", "4", "--eval-batches", "1", "--device", "cpu")
    result = invoke(
        "train", "-o", "bert-mlm", "--lr", "0.01", "--warmup", "10", "--steps", "40",
        "--save-every", "1", *args, "--out", str(run),
    )  # fmt: skip
    monkeypatch.undo()
    assert result.code == 1
    saved = [s for s, _ in checkpoints.list_checkpoints(run)]
    assert saved
    assert all_finite(run) == saved  # --keep 3 kept only finite ones
    aside = [p.name for p in (run / "checkpoints").glob("diverged-*")]
    assert aside == [f"diverged-step-{saved[-1] + 1:08d}"]
    last_good = run / "checkpoints" / f"step-{saved[-1]:08d}"
    assert f"the last good checkpoint is {last_good}" in result.stderr
    hint = next(line for line in result.stderr.splitlines() if line.startswith("hint:"))
    assert f"objectives train --resume {run} --lr 0.001 " in hint
    resumed = invoke("train", "--resume", str(run), "--lr", "1e-3", "--steps", "44")
    assert resumed.code == 0, resumed.stderr
    assert f"resuming {run} at step {saved[-1]}" in resumed.stderr
    config = json.loads((run / "config.json").read_text())
    assert config["train"]["lr"] == 1e-3
    assert config["train"]["steps"] == 44
    assert config["resumes"] == [
        {"step": saved[-1], "changed": {"lr": [0.01, 1e-3], "steps": [40, 44]}}
    ]
    again = invoke("train", "--resume", str(run))  # the recorded settings hold
    assert again.code == 0, again.stderr
    assert "already trained to step 44" in again.stderr
    evaluated = invoke("eval", str(run), "--format", "json")
    assert evaluated.code == 0, evaluated.stderr
    assert math.isfinite(json.loads(evaluated.stdout)["loss"])


@pytest.fixture
def nan_run(tmp_path: Path) -> Path:
    """A run whose newest checkpoint holds NaN weights (as older versions could save)."""
    cfg = tiny(tmp_path / "run", steps=2, save_every=1)
    train(cfg, QUIET)
    run = Path(cfg.out)
    newest = checkpoints.list_checkpoints(run)[-1][1]
    weights = load_file(str(newest / "model.safetensors"))
    state = torch.load(newest / "state.pt", weights_only=True)
    model = torch.nn.Module()
    for i, value in enumerate(weights.values()):
        model.register_buffer(f"b{i}", value.fill_(float("nan")) if i == 0 else value)
    model.state_dict = lambda: dict(zip(weights, model.buffers(), strict=True))  # type: ignore[method-assign]
    checkpoints.save(run, 2, model, {k: v for k, v in state.items() if k != "step"}, keep=3)
    return run


@pytest.mark.parametrize("command", [("eval", "--format", "json"), ("fill", "a [MASK] b")])
def test_eval_and_fill_refuse_non_finite_weights(nan_run: Path, command: tuple[str, ...]) -> None:
    result = invoke(command[0], str(nan_run), *command[1:])
    assert result.code == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"error: checkpoint step-00000002 of {nan_run} holds inf or NaN weights (the run "
        "diverged before it was saved)",
        f"hint: continue from an earlier checkpoint at a lower rate: objectives train --resume "
        f"{nan_run} --lr 0.0002",
    ]


def test_resume_skips_a_non_finite_checkpoint(nan_run: Path) -> None:
    listen = Listen()
    train(tiny(nan_run, steps=3, save_every=1), listen, resume=True)
    assert any("step-00000002 is damaged (it holds inf or NaN" in s for s in listen.said)
    assert any(s.startswith(f"resuming {nan_run} at step 1") for s in listen.said)
    assert all_finite(nan_run) == [1, 2, 3]


def test_resuming_a_finished_run_with_more_steps_warns_that_the_schedule_stretches(
    tmp_path: Path,
) -> None:
    cfg = tiny(tmp_path / "run", steps=4, lr=1e-3, min_lr=0.1, warmup=1.0)
    train(cfg, QUIET)
    listen = Listen()
    train(tiny(tmp_path / "run", steps=8, lr=1e-3, min_lr=0.1, warmup=1.0), listen, resume=True)
    assert (
        "warning: the learning-rate schedule now spans 8 steps at peak 0.001: step 5 runs at "
        "4.86e-04 instead of 1.00e-04" in listen.said
    )

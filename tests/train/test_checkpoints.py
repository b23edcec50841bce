"""Checkpoints are written atomically, damaged ones are skipped, a non-finite loss stops the run
with the last good checkpoint untouched."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from corruptions import UsageError
from objectives_cli.train import checkpoints
from objectives_cli.train import step as step_module
from objectives_cli.train.loop import NonFiniteLoss, train
from tests.train.conftest import QUIET, tiny


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ckpt") / "run"
    train(tiny(out, steps=5, save_every=1, keep=3), QUIET)
    return out


def test_keeps_the_newest_and_nothing_half_written(run: Path) -> None:
    assert [s for s, _ in checkpoints.list_checkpoints(run)] == [3, 4, 5]
    assert not [p for p in (run / "checkpoints").iterdir() if ".tmp" in p.name]
    assert {p.name for p in run.iterdir()} >= {"config.json", "tokenizer.json", "metrics.jsonl"}


def test_an_unfinished_write_is_not_a_checkpoint(run: Path) -> None:
    tmp = run / "checkpoints" / ".step-00000009.tmp123"
    tmp.mkdir()
    try:
        assert max(s for s, _ in checkpoints.list_checkpoints(run)) == 5
    finally:
        tmp.rmdir()


def test_a_damaged_checkpoint_falls_back_to_the_previous(run: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    newest = checkpoints.list_checkpoints(copy)[-1][1] / "model.safetensors"
    newest.write_bytes(newest.read_bytes()[:100])
    warnings: list[str] = []
    model = torch.nn.Module()
    with pytest.raises(checkpoints.RunError):  # every checkpoint fails for the wrong model...
        checkpoints.load_latest(copy, model, warnings.append)
    warnings.clear()
    from objectives_cli.train.inference import load_run

    loaded = load_run(copy, "cpu", warn=warnings.append)  # ...and the right one loads step 4
    assert loaded.step == 4
    assert len(warnings) == 1
    assert "step-00000005 is damaged" in warnings[0]
    expected = load_file(str(checkpoints.list_checkpoints(copy)[-2][1] / "model.safetensors"))
    assert all(torch.equal(v, expected[k]) for k, v in loaded.model.state_dict().items())


def test_a_fresh_run_refuses_an_existing_run_dir(run: Path) -> None:
    with pytest.raises(UsageError, match="already holds a run"):
        train(tiny(run, steps=1), QUIET)


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = step_module.term_losses
    calls = {"n": 0}

    def poisoned(outputs, accuracy=False):  # type: ignore[no-untyped-def]
        losses = real(outputs, accuracy)
        calls["n"] += not accuracy
        if calls["n"] > 3 and not accuracy:  # training steps from the 4th on
            return {k: (v * float("nan"), c) for k, (v, c) in losses.items()}
        return losses

    monkeypatch.setattr(step_module, "term_losses", poisoned)
    cfg = tiny(tmp_path / "run", steps=8, save_every=2, log_every=4)
    with pytest.raises(NonFiniteLoss, match="diverged at step 4") as stopped:
        train(cfg, QUIET)
    assert "step-00000002" in stopped.value.message
    saved = checkpoints.list_checkpoints(cfg.out)
    assert [s for s, _ in saved] == [2]
    weights = load_file(str(saved[0][1] / "model.safetensors"))
    assert all(torch.isfinite(v).all() for v in weights.values())


def test_a_step_is_saved_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    saved: list[int] = []
    real = checkpoints.save

    def counting(run_dir, step, model, state, keep):  # type: ignore[no-untyped-def]
        saved.append(step)
        return real(run_dir, step, model, state, keep)

    monkeypatch.setattr(checkpoints, "save", counting)
    cfg = tiny(tmp_path / "run", steps=4, save_every=2)
    train(cfg, QUIET)
    assert saved == [2, 4]  # the end of the run does not write step 4 again
    train(cfg, QUIET, resume=True)  # nothing left to do: nothing rewritten
    assert saved == [2, 4]


def test_each_step_is_evaluated_once_and_config_holds_every_parameter(tmp_path: Path) -> None:
    import json

    cfg = tiny(tmp_path / "run", steps=4, eval_every=2, params=(("rate", "0.2"),))
    summary = train(cfg, QUIET)
    evals = [r for r in checkpoints.read_metrics(cfg.out) if "eval_loss" in r]
    assert [r["step"] for r in evals] == [0, 2, 4]  # the end reuses the evaluation of step 4
    assert summary["eval_mlm_acc"] == round(evals[-1]["eval_mlm_acc"], 4)
    params = json.loads((Path(cfg.out) / "config.json").read_text())["objective"]["params"]
    assert params["rate"] == 0.2  # the override
    assert params["mask_replace"] == 0.8  # and the defaults

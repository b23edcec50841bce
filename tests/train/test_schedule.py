"""Learning rate, budgets and settings: warmup then decay, token and time budgets."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import pytest

from corruptions import UsageError
from objectives_cli.cli.options import parse_budget
from objectives_cli.train import checkpoints
from objectives_cli.train.config import TrainConfig, config_for, lr_at
from objectives_cli.train.loop import train
from tests.train.conftest import QUIET, tiny


def rates(cfg: TrainConfig) -> list[float]:
    """The rate of every step, each taken where the step ends, as the loop does."""
    return [lr_at(cfg, s, (s + 1) / cfg.steps) for s in range(cfg.steps)]


def test_warmup_then_linear_decay_to_min_lr() -> None:
    cfg = TrainConfig(steps=100, lr=1.0, warmup=0.1, min_lr=0.1)
    lrs = rates(cfg)
    assert lrs[0] == pytest.approx(0.1)  # the first step learns: 1 / 10 of the peak, never 0
    assert lrs[4] == pytest.approx(0.5)
    assert lrs[9] == pytest.approx(1.0)  # the 10th step reaches the peak
    assert max(lrs) == pytest.approx(1.0)
    assert all(a < b for a, b in itertools.pairwise(lrs[:10]))
    assert all(a > b for a, b in itertools.pairwise(lrs[9:]))
    assert lrs[-1] == pytest.approx(0.1)  # the last step runs at min_lr


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_a_share_of_the_run_and_the_same_warmup_in_steps_give_the_same_rates(
    schedule: str,
) -> None:
    share = TrainConfig(steps=200, lr=1.0, warmup=0.05, schedule=schedule)
    steps = TrainConfig(steps=200, lr=1.0, warmup=10, schedule=schedule)
    assert rates(share) == pytest.approx(rates(steps), abs=1e-12)


def test_cosine_and_warmup_in_steps() -> None:
    cfg = TrainConfig(steps=10, lr=1.0, warmup=2, schedule="cosine", min_lr=0.0)
    lrs = rates(cfg)
    assert lrs[:2] == [0.5, 1.0]
    t = (6 / 10 - 0.2) / 0.8  # step 5 ends at 6 / 10 of the run; decay runs from 2 / 10
    assert lrs[5] == pytest.approx(0.5 * (1 + math.cos(math.pi * t)))
    assert lrs[-1] == pytest.approx(0.0)


def test_time_budget_uses_the_elapsed_share() -> None:
    cfg = TrainConfig(budget=100.0, lr=1.0, warmup=0.1, min_lr=0.0)
    assert lr_at(cfg, 999, 0.05) == pytest.approx(0.5)
    assert lr_at(cfg, 999, 0.55) == pytest.approx(0.5)


def test_time_budget_with_a_warmup_in_steps_decays_only_after_warmup() -> None:
    """Slow first steps: warmup (10 steps) ends at 40% of the budget. Decay runs from there,
    so the rate after warmup continues from the peak instead of dropping to 60% of it."""
    cfg = TrainConfig(budget=100.0, lr=1.0, warmup=10, min_lr=0.0)
    assert lr_at(cfg, 8, 0.36) == pytest.approx(0.9)
    assert lr_at(cfg, 9, 0.40) == pytest.approx(1.0)  # the peak step records warm_end = 0.4
    assert lr_at(cfg, 10, 0.43, warm_end=0.40) == pytest.approx(1 - 0.03 / 0.6)
    assert lr_at(cfg, 50, 1.0, warm_end=0.40) == pytest.approx(0.0)


def test_tokens_set_the_steps() -> None:
    cfg = config_for("tiny", tokens=10_000, seq_len=100, batch_size=4, grad_accum=2)
    assert cfg.steps == math.ceil(10_000 / (4 * 2 * 100))
    assert config_for("tiny", tokens=10_000, world=5, seq_len=100, batch_size=4).steps == 5


def test_presets_give_defaults_that_settings_override() -> None:
    assert config_for("base").seq_len == 512
    assert config_for("base", seq_len=64).seq_len == 64


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("2h", 7200), ("90m", 5400), ("1h30m", 5400), ("45s", 45), ("600", 600), ("1.5h", 5400)],
)
def test_budget_strings(text: str, seconds: float) -> None:
    assert parse_budget(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "2d", "h"])
def test_bad_budget_strings(text: str) -> None:
    with pytest.raises(UsageError):
        parse_budget(text)


@pytest.mark.parametrize(
    "bad",
    [{"model": "huge"}, {"packing": "tight"}, {"steps": 0}, {"schedule": "step"}, {"dropout": 1.0}],
)
def test_impossible_settings_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(UsageError):
        TrainConfig(**bad)  # type: ignore[arg-type]


def test_the_loop_runs_each_step_at_the_rate_where_it_ends(tmp_path: Path) -> None:
    """The default warmup is a share of the run: its first step must learn, at the rate the
    same warmup in steps gives (it ran at 0 when the loop took the rate where a step starts)."""
    logged = {}
    for warmup in (0.5, 2.0):
        cfg = tiny(tmp_path / str(warmup), steps=4, warmup=warmup, lr=1e-3, min_lr=0.0)
        train(cfg, QUIET)
        logged[warmup] = [r["lr"] for r in checkpoints.read_metrics(cfg.out) if "lr" in r]
    assert logged[0.5] == pytest.approx([5e-4, 1e-3, 5e-4, 0.0])
    assert logged[0.5] == pytest.approx(logged[2.0])

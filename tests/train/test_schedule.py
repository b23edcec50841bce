"""Learning rate, budgets and settings: warmup then decay, token and time budgets."""

from __future__ import annotations

import itertools
import math

import pytest

from corruptions import UsageError
from objectives_cli.cli.options import parse_budget
from objectives_cli.train.config import TrainConfig, config_for, lr_at


def test_warmup_then_linear_decay_to_min_lr() -> None:
    cfg = TrainConfig(steps=100, lr=1.0, warmup=0.1, min_lr=0.1)
    lrs = [lr_at(cfg, s, s / cfg.steps) for s in range(cfg.steps)]
    assert lrs[0] == 0.0
    assert lrs[5] == pytest.approx(0.5)
    assert max(lrs) == pytest.approx(1.0)
    assert lrs[10] == pytest.approx(1.0)
    assert all(a >= b for a, b in itertools.pairwise(lrs[10:]))
    assert lr_at(cfg, 100, 1.0) == pytest.approx(0.1)


def test_cosine_and_warmup_in_steps() -> None:
    cfg = TrainConfig(steps=10, lr=1.0, warmup=2, schedule="cosine", min_lr=0.0)
    assert [lr_at(cfg, s, s / 10) for s in (0, 1)] == [0.5, 1.0]
    middle = 0.2 + 0.8 * 0.5
    assert lr_at(cfg, 6, middle) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5)))


def test_time_budget_uses_the_elapsed_share() -> None:
    cfg = TrainConfig(budget=100.0, lr=1.0, warmup=0.1, min_lr=0.0)
    assert lr_at(cfg, 999, 0.05) == pytest.approx(0.5)
    assert lr_at(cfg, 999, 0.55) == pytest.approx(0.5)


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

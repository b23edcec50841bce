"""Pretraining helps: a pretrained tiny model beats its own random initialisation (the same
shape and initial weights, `--baseline random`) by a margin well outside the noise of
fine-tuning seeds. Slow: it pretrains a tiny model on 1M tokens (1-15 minutes on a 2-core CPU,
depending on its load) and fine-tunes it six times.

Measured first (docs/compare.md, three fine-tuning seeds each, twice: the same numbers):

    clm, 1M tokens, fits    0.591 0.613 0.639 (0.614 ± 0.024)   random init 0.490 0.509 0.544
                                                                (0.514 ± 0.028)
    any objective, next     within noise of random init at 1M tokens (best: xlnet-plm 0.539 ±
                            0.005 against 0.506 ± 0.019), so `next` has no case here

The margin asked for is three times the larger seed deviation and at least 0.05.
"""

from __future__ import annotations

import statistics
from pathlib import Path

import pytest

from objectives_cli.data.builtin_tasks import builtin_task
from objectives_cli.train.config import config_for
from objectives_cli.train.finetune import FinetuneSettings, finetune
from objectives_cli.train.inference import load_run
from objectives_cli.train.loop import train
from tests.train.conftest import QUIET

SEEDS = 3


@pytest.mark.slow
@pytest.mark.parametrize(("objective", "task"), [("clm", "fits")])
def test_a_pretrained_tiny_model_beats_random_init(
    tmp_path: Path, objective: str, task: str
) -> None:
    cfg = config_for("tiny", 1_000_000, objective=objective, out=str(tmp_path), device="cpu")
    train(cfg, QUIET)
    run = load_run(tmp_path, "cpu", warn=lambda _: None)
    the_task = builtin_task(task)
    scores = {
        init: [
            finetune(run, the_task, FinetuneSettings(seed=seed), init)["test"]["accuracy"]
            for seed in range(SEEDS)
        ]
        for init in (False, True)
    }
    noise = max(statistics.stdev(scores[False]), statistics.stdev(scores[True]))
    margin = statistics.fmean(scores[False]) - statistics.fmean(scores[True])
    assert margin > max(3 * noise, 0.05), scores

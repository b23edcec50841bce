"""`compile=True` on CPU (inductor): the same losses as eager, and recompilation that settles.

One tiny run per model shape (encoder, decoder, encoder-decoder) trains eagerly and compiled;
the loss curves must agree, and dynamo must stop compiling new graphs after the first steps.
Rows of varying length and the boolean gathers of scored positions (graph breaks, each leaving a
graph whose size depends on the data) cost one recompile each, with dynamic shapes; a Python
scalar or shape that changed every step would cost one per step and hit `recompile_limit`, which
here fails the run instead of silently falling back to eager. Slow: 20-50 s of compilation per
model on a cold inductor cache (2 cores), a few seconds warm.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch._dynamo.utils import counters

from objectives_cli.train.checkpoints import read_metrics
from objectives_cli.train.loop import train
from objectives_cli.train.report import PlainReporter
from tests.helpers import NON_LEAF_GRAD
from tests.train.conftest import QUIET, tiny

STEPS = 6
SETTLED_BY = 3  # steps after which no new graph may be compiled
RECOMPILE_LIMIT = 4  # per code object; torch's default is 8
MAX_GRAPHS = 16  # measured: bert-mlm 2, clm 3, t5-span 10
TOLERANCE = 1e-4  # relative; measured gaps are below 1e-6


class GraphCount(PlainReporter):
    """Records how many graphs dynamo has compiled so far after every step."""

    def __init__(self) -> None:
        super().__init__(quiet=True)
        self.graphs: list[int] = []

    def advance(self, done: float, row: dict[str, float] | None) -> None:
        self.graphs.append(counters["stats"]["unique_graphs"])


@pytest.fixture(autouse=True)
def _fresh_dynamo() -> Iterator[None]:
    torch._dynamo.reset()
    counters.clear()
    yield
    torch._dynamo.reset()


def losses(run: Path) -> list[float]:
    return [r["loss"] for r in read_metrics(run) if "loss" in r]


@pytest.mark.slow
@pytest.mark.filterwarnings(NON_LEAF_GRAD)
@pytest.mark.parametrize("name", ["bert-mlm", "clm", "t5-span"])
def test_compiled_training_matches_eager_and_stops_recompiling(name: str, tmp_path: Path) -> None:
    eager = train(tiny(tmp_path / "eager", name, steps=STEPS), QUIET)
    count = GraphCount()
    with torch._dynamo.config.patch(
        recompile_limit=RECOMPILE_LIMIT, fail_on_recompile_limit_hit=True
    ):
        compiled = train(tiny(tmp_path / "compiled", name, steps=STEPS, compile=True), count)
    assert count.graphs[0] > 0, "nothing was compiled"
    assert count.graphs[SETTLED_BY - 1 :] == [count.graphs[SETTLED_BY - 1]] * (
        STEPS - SETTLED_BY + 1
    )
    assert count.graphs[-1] <= MAX_GRAPHS
    assert losses(tmp_path / "compiled") == pytest.approx(losses(tmp_path / "eager"), rel=TOLERANCE)
    assert compiled["eval_loss"] == pytest.approx(eager["eval_loss"], rel=TOLERANCE)

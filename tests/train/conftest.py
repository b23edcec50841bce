"""Fixtures for the trainer tests: one torch thread (tiny models gain nothing from more, and a
busy machine makes two threads much slower), a tiny configuration, a session cache directory."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from objectives_cli.train.config import TrainConfig, config_for
from objectives_cli.train.report import PlainReporter


@pytest.fixture(autouse=True, scope="package")
def _one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny(out: Path, objective: str = "bert-mlm", **settings: Any) -> TrainConfig:
    """A run small enough for a test: tiny model, 32-token rows, 8 rows per step."""
    values: dict[str, Any] = {
        "objective": objective,
        "out": str(out),
        "seq_len": 32,
        "batch_size": 8,
        "steps": 6,
        "log_every": 1,
        "eval_batches": 2,
        "device": "cpu",
        **settings,
    }
    return config_for("tiny", **values)


QUIET = PlainReporter(quiet=True)

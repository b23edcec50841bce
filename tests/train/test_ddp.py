"""Two gloo processes on CPU train exactly like one process at the same global batch: each rank
reads its own shard (micro-batch m of rank r is shard m x world + r), and the loss is normalised
by the targets of the whole step across ranks."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file

from objectives_cli import checkpoints
from objectives_cli.train import train
from tests.train.conftest import QUIET, tiny

SETTINGS = {"steps": 4, "batch_size": 4, "dropout": 0.1, "eval_batches": 1}


def _worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(rank),
                       "LOCAL_RANK": str(rank), "WORLD_SIZE": str(world)})
    torch.set_num_threads(1)
    train(tiny(Path(out), "spanbert", grad_accum=1, **SETTINGS), QUIET)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def final(run: Path) -> tuple[list[float], dict[str, torch.Tensor]]:
    losses = [r["loss"] for r in checkpoints.read_metrics(run) if "loss" in r]
    weights = load_file(str(checkpoints.list_checkpoints(run)[-1][1] / "model.safetensors"))
    return losses, weights


@pytest.mark.slow
def test_two_ranks_equal_one_rank_with_two_micro_batches(tmp_path: Path) -> None:
    one = tmp_path / "one"
    train(tiny(one, "spanbert", grad_accum=2, **SETTINGS), QUIET)
    two = tmp_path / "two"
    mp.spawn(_worker, args=(2, free_port(), str(two)), nprocs=2, join=True)
    losses_one, weights_one = final(one)
    losses_two, weights_two = final(two)
    assert losses_two == pytest.approx(losses_one, rel=1e-6)
    for key, value in weights_one.items():
        torch.testing.assert_close(weights_two[key], value, rtol=1e-6, atol=1e-7)

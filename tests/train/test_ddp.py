"""Two gloo processes on CPU train exactly like one process at the same global batch: each rank
reads its own shard (micro-batch m of rank r is shard m x world + r), and the loss is normalised
by the targets of the whole step across ranks."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file

from corruptions import ObjectivesError
from objectives_cli.train import checkpoints
from objectives_cli.train import loop as train_module
from objectives_cli.train.loop import train
from tests.train.conftest import QUIET, tiny

SETTINGS = {"steps": 4, "batch_size": 4, "dropout": 0.1, "eval_batches": 1}


def _worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(
        {
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
            "WORLD_SIZE": str(world),
        }
    )
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


# --- a failure on one rank stops every rank, and is reported once -----------------------------


def _failing_worker(rank: int, world: int, port: int, out: str, where: str) -> None:
    os.environ.update(
        {
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
            "WORLD_SIZE": str(world),
        }
    )
    torch.set_num_threads(1)
    settings: dict[str, object] = {"steps": 8, "save_every": 2, "eval_every": 4, "batch_size": 4}
    if where == "data":
        settings["data"] = str(Path(out) / "missing.txt")
    if where == "save" and rank == 0:

        def save(run_dir: Path, step: int, *args: object, **kwargs: object) -> Path:
            if step >= 4:
                raise checkpoints.WriteError(run_dir / "x", OSError(28, "No space left"), run_dir)
            return real_save(run_dir, step, *args, **kwargs)  # type: ignore[arg-type]

        real_save = checkpoints.save
        checkpoints.save = save  # type: ignore[assignment]
    if where == "eval" and rank == 0:

        def broken(*args: object, **kwargs: object) -> dict[str, float]:
            raise RuntimeError("evaluation broke")

        train_module.evaluate = broken  # type: ignore[assignment]
    try:
        train(tiny(Path(out) / "run", "bert-mlm", **settings), QUIET)  # type: ignore[arg-type]
        outcome = "finished"
    except ObjectivesError as exc:
        outcome = f"{type(exc).__name__} {exc.exit_code}"
    except RuntimeError as exc:
        outcome = f"RuntimeError {exc}"
    Path(out, f"rank{rank}.txt").write_text(outcome)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("where", "rank0"),
    [
        ("data", "DataError 1"),  # rank 0 reads the data first; the others never start on it
        ("save", "WriteError 1"),  # only rank 0 writes checkpoints
        ("eval", "RuntimeError evaluation broke"),  # only rank 0 evaluates; a bug keeps its type
    ],
)
def test_a_failure_on_rank_0_alone_stops_the_other_rank_quietly(
    tmp_path: Path, where: str, rank0: str
) -> None:
    """Without the shared outcome, rank 1 would wait in its next collective (forever on NCCL)
    or die with a gloo traceback; now it exits at once with rank 0's status and prints nothing."""
    context = mp.start_processes(
        _failing_worker,
        args=(2, free_port(), str(tmp_path), where),
        nprocs=2,
        join=False,
        start_method="spawn",
    )
    deadline = time.monotonic() + 120
    while not context.join(timeout=1):
        assert time.monotonic() < deadline, "a rank hung after the other failed"
    assert (tmp_path / "rank0.txt").read_text() == rank0
    status = 1  # DataError, WriteError and an unexpected exception all exit with 1
    assert (tmp_path / "rank1.txt").read_text() == f"QuietExit {status}"


# --- the process group follows --device ---------------------------------------------------------


class FakeDist:
    """torch.distributed as far as `distributed()` uses it: records the backend."""

    def __init__(self) -> None:
        self.backend: str | None = None

    def is_initialized(self) -> bool:
        return False

    def init_process_group(self, backend: str, timeout: object) -> None:
        self.backend = backend

    def get_rank(self) -> int:
        return 1

    def get_world_size(self) -> int:
        return 2


@pytest.mark.parametrize(
    ("device", "backend", "current"),
    [
        ("cpu", "gloo", None),  # --device cpu on a CUDA host: no NCCL for CPU tensors
        ("cuda", "cpu:gloo,cuda:nccl", "cuda:1"),  # rank with LOCAL_RANK 1 works on GPU 1
        ("auto", "cpu:gloo,cuda:nccl", "cuda:1"),
    ],
)
def test_the_process_group_follows_the_device(
    monkeypatch: pytest.MonkeyPatch, device: str, backend: str, current: str | None
) -> None:
    import torch.distributed

    from objectives_cli.train.runtime import distributed, resolve_device

    fake, chosen = FakeDist(), []
    for name in ("is_initialized", "init_process_group", "get_rank", "get_world_size"):
        monkeypatch.setattr(torch.distributed, name, getattr(fake, name))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "set_device", lambda d: chosen.append(str(d)))
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert distributed(resolve_device(device, 1)) == (1, 2, 1, True)
    assert fake.backend == backend
    assert chosen == ([current] if current else [])

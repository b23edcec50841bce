"""Where and how a run computes: device, precision, processes, signals and the optimizer.

Kept apart from the loop (train.py) so that eval, fill and the benchmarks pick the same device,
autocast and AdamW as training does.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from datetime import timedelta
from typing import Any

import torch
from torch import Tensor, nn

from corruptions import ObjectivesError, UsageError, make_generator

from .config import TrainConfig


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise UsageError(f"unknown device {name!r}", "use auto, cpu, cuda or cuda:N")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(
                "--device cuda was asked for but CUDA is not available", "use --device cpu"
            )
        if device.index is None:
            device = torch.device("cuda", local_rank)
    return device


def amp_context(cfg: TrainConfig, device: torch.device) -> Any:
    """bf16 autocast on CUDA by default, plain fp32 on CPU."""
    precision = cfg.precision
    if precision == "auto":
        precision = "bf16" if device.type == "cuda" else "fp32"
    return (
        nullcontext() if precision == "fp32" else torch.autocast(device.type, dtype=torch.bfloat16)
    )


# Dense peak TFLOP/s per GPU (bf16, TF32), from NVIDIA's datasheets; matched on the device name,
# the more specific names first. A device not listed has no MFU.
PEAK_TFLOPS: tuple[tuple[str, float, float], ...] = (
    ("H100 PCIe", 756.0, 378.0),
    ("H100 NVL", 835.0, 418.0),
    ("H100", 989.4, 494.7),  # SXM
    ("H200", 989.4, 494.7),
    ("GH200", 989.4, 494.7),
    ("A100", 312.0, 156.0),
    ("L40S", 362.0, 183.0),
    ("L4", 121.0, 60.0),
)


def peak_flops(device: torch.device, precision: str) -> float | None:
    """The device's dense peak in FLOP/s at the run's precision (bf16 autocast, or fp32 matmuls
    in TF32), when it is known: CUDA devices of `PEAK_TFLOPS`; None for a CPU or another GPU."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    bf16 = precision in ("auto", "bf16")
    for key, dense_bf16, dense_tf32 in PEAK_TFLOPS:
        if key in name:
            return (dense_bf16 if bf16 else dense_tf32) * 1e12
    return None


# How long a collective may wait (torch's default is 10 minutes for NCCL): long enough for the
# first process to tokenise a corpus of several GB while the others wait for it. Failures do not
# wait for it: see shared_failure.
PROCESS_GROUP_TIMEOUT = timedelta(hours=2)


def distributed(device: torch.device) -> tuple[int, int, int, bool]:
    """(rank, world size, local rank, whether we started the process group) under torchrun.

    `device` is the resolved --device of this rank (`resolve_device` with LOCAL_RANK): the
    process group follows it, gloo for a CPU run (even on a CUDA host) and gloo for CPU tensors
    + NCCL for CUDA ones on a CUDA run, and a CUDA rank makes its own GPU the current device
    (else every rank's current device, and NCCL's, would be GPU 0).
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if world <= 1:
        return 0, 1, 0, False
    import torch.distributed as dist

    started = not dist.is_initialized()
    if started:  # the others wait while each machine's first process tokenises the corpus
        dist.init_process_group(process_group_backend(device), timeout=PROCESS_GROUP_TIMEOUT)
    return dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")), started


def process_group_backend(device: torch.device) -> str:
    return "cpu:gloo,cuda:nccl" if device.type == "cuda" else "gloo"


def all_reduce(t: Tensor, world: int, op: str = "sum") -> Tensor:
    if world > 1:
        import torch.distributed as dist

        dist.all_reduce(t, op=dist.ReduceOp.SUM if op == "sum" else dist.ReduceOp.MAX)
    return t


class QuietExit(ObjectivesError):
    """Exit with `exit_code` and print nothing: another rank of this torchrun job reports the
    error, so a job with 8 processes prints it once rather than 8 times (or as 7 tracebacks)."""

    quiet = True

    def __init__(self, exit_code: int) -> None:
        super().__init__("another process of this run stopped with an error")
        self.exit_code = exit_code


@contextmanager
def shared_failure(world: int, device: torch.device) -> Iterator[None]:
    """Every rank leaves the block knowing whether any rank failed in it.

    Work that only rank 0 does (writing checkpoints and metrics, evaluating) or does first
    (filling the data cache) would otherwise leave the other ranks waiting in their next
    collective for a process that is gone: forever with NCCL, or until a gloo peer error. Here
    the failing rank raises its own error and the others raise QuietExit with its exit status.
    All ranks must enter the block; its body may be empty on some.
    """
    failure: Exception | None = None
    try:
        yield
    except Exception as exc:  # re-raised below, once the other ranks know
        failure = exc
    if world > 1:
        code = 0 if failure is None else getattr(failure, "exit_code", 1) or 1
        worst = int(all_reduce(torch.tensor([float(code)], device=device), world, "max").item())
        if failure is None and worst > 0:
            raise QuietExit(worst)
    if failure is not None:
        raise failure


class StopNow(KeyboardInterrupt):
    """A second SIGINT/SIGTERM: stop wherever the process is, without saving (a checkpoint being
    written is dropped whole). A KeyboardInterrupt, so that no `except Exception` keeps it."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


@contextmanager
def catch_signals(ack: Callable[[int], None]) -> Iterator[list[int]]:
    """Record the first SIGINT/SIGTERM instead of dying, so the loop can save a checkpoint and
    stop, and acknowledge it at once through `ack(signum)`; a second one raises `StopNow`."""
    caught: list[int] = []

    def handler(signum: int, frame: Any) -> None:
        if caught:
            raise StopNow(signum)
        caught.append(signum)
        ack(signum)

    previous: dict[int, Any] = {}
    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, handler)
    except ValueError:  # not the main thread: leave signals alone
        pass
    try:
        yield caught
    finally:
        for sig, handler_before in previous.items():
            signal.signal(sig, handler_before)


def make_optimizer(cfg: TrainConfig, model: nn.Module, device: torch.device) -> torch.optim.AdamW:
    """AdamW, fused where torch has the kernel; weight decay on matrices only."""
    params = list(model.parameters())
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(
        groups, lr=cfg.lr, betas=(0.9, 0.98), eps=1e-6, fused=fused_adamw(device)
    )


def fused_adamw(device: torch.device) -> bool:
    """Whether torch has a fused AdamW kernel for `device`: CUDA, and CPU since torch 2.4, where
    one fused step is 4-10x faster than the default for-each one (tiny and small models)."""
    from torch.utils import _foreach_utils

    supported = getattr(_foreach_utils, "_get_fused_kernels_supported_devices", lambda: ["cuda"])
    return device.type in supported()


def derived_seed(seed: int, *keys: int | str) -> int:
    """A seed for torch's global RNG (dropout, ELECTRA's sampling) that follows from `keys`."""
    return make_generator(seed, "rng", *keys).initial_seed()

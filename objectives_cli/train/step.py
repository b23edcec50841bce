"""One optimizer step, the textbook part of the loop: micro-batches, losses normalised by the
step's scored tokens, backward, clipping, AdamW. `loop.py` runs it; benchmarks call it as is."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

import torch
from torch import Tensor, nn

from objectives_cli.model.flops import head_of, step_flops
from objectives_cli.model.model import Model

from .config import TrainConfig
from .losses import LOSS_WEIGHTS, term_losses
from .metrics import Step
from .runtime import all_reduce, derived_seed


def finite(model: nn.Module, optimizer: dict[str, Any]) -> Tensor:
    """Whether every weight and every optimizer moment is finite: a 0-dim bool tensor (no sync)."""
    moments = [v for s in optimizer["state"].values() for v in s.values() if torch.is_tensor(v)]
    tensors = [*(p.detach() for p in model.parameters()), *moments]
    return torch.stack([torch.isfinite(t).all().to(tensors[0].device) for t in tensors]).all()


def train_step(
    cfg: TrainConfig,
    net: nn.Module,
    model: Model,
    opt: torch.optim.Optimizer,
    get_batch: Any,
    step: int,
    rank: int,
    world: int,
    amp: Any,
    learning_rate: Callable[[], float],
) -> Step:
    """One optimizer step over `grad_accum` micro-batches at the rate `learning_rate()` gives
    just before the update (see `Step` for what it returns).

    Every term is normalised by its scored targets over the whole step (all micro-batches and
    ranks), so micro-batches with more masks weigh more, as in one big batch.
    """
    micro = [get_batch(step, m, rank) for m in range(cfg.grad_accum)]
    counts: dict[str, Tensor] = {}
    flops: Tensor | int = 0
    for batch, _ in micro:
        scored = model.scored(batch)
        for name, chosen in scored.items():
            counts[name] = counts.get(name, 0) + chosen.sum()
        flops = flops + step_flops(model.cfg, batch, scored[head_of(model.cfg)].sum())
    names = sorted(counts)
    local_tokens = torch.tensor(sum(n for _, n in micro), device=counts[names[0]].device)
    totals = all_reduce(torch.stack([*(counts[k] for k in names), local_tokens]), world)
    n_tokens = int(totals[-1]) if world > 1 else int(local_tokens)
    total = dict(zip(names, totals[:-1].clamp(min=1), strict=True))
    sums = {k: torch.zeros((), device=totals.device) for k in names}
    for i, (batch, _) in enumerate(micro):
        sync = world == 1 or i == len(micro) - 1 or not hasattr(net, "no_sync")
        with nullcontext() if sync else net.no_sync():  # type: ignore[operator]
            torch.manual_seed(derived_seed(cfg.seed, "step", step, i * world + rank))
            with amp:
                outputs = net(batch)
            losses = term_losses(outputs)
            loss = sum(
                (LOSS_WEIGHTS.get(k, 1.0) * v[0] / total[k] for k, v in losses.items()),
                torch.zeros((), device=totals.device),
            )
            (loss * world).backward()  # DDP averages gradients over ranks; we want their sum
        for k, (value, _) in losses.items():
            sums[k] += value.detach()
    grads = [p for p in model.parameters() if p.grad is not None]
    norm = nn.utils.get_total_norm([p.grad for p in grads])  # type: ignore[misc]
    if cfg.clip > 0:
        nn.utils.clip_grads_with_norm_(grads, cfg.clip, norm)
    lr = learning_rate()
    for group in opt.param_groups:
        group["lr"] = lr
    opt.step()
    opt.zero_grad(set_to_none=True)
    return Step({k: sums[k] / total[k] for k in names}, n_tokens, lr, norm, flops)  # type: ignore[arg-type]

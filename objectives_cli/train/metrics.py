"""What a run logs besides its checkpoints: the window of steps a metrics row averages, the
run's summary (read back from metrics.jsonl, so a resumed run writes the same one), and how long
things take, in words.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch
from torch import Tensor

from .runtime import all_reduce


class Step(NamedTuple):
    """What `loop.train_step` returns."""

    losses: dict[str, Tensor]  # this rank's share of each term's mean loss (rows sum ranks)
    tokens: int  # content tokens of the step, every rank's
    lr: float  # the rate it ran at
    grad_norm: Tensor  # before clipping; inf or NaN: the update poisoned the weights
    flops: Tensor  # this rank's training FLOPs (model/flops.py)


@dataclass
class Window:
    """The steps since the last metrics row: each term's loss summed over them (this rank's
    share: rows sum over ranks), steps, content tokens (of every rank) and training seconds. A
    checkpoint keeps it, so the row after a resume averages the same steps as without one."""

    loss: dict[str, Tensor] = field(default_factory=dict)
    steps: int = 0
    tokens: int = 0
    seconds: float = 0.0
    flops: Tensor | float = 0.0  # this rank's

    def add(self, step: Step, seconds: float) -> None:
        for k, v in step.losses.items():
            self.loss[k] = self.loss[k] + v.detach() if k in self.loss else v.detach().clone()
        self.steps += 1
        self.tokens += step.tokens
        self.seconds += seconds
        self.flops = self.flops + step.flops.double()

    def flops_all(self, world: int) -> float:
        """Training FLOPs of the window over every rank."""
        if not torch.is_tensor(self.flops):
            return float(self.flops)
        return float(all_reduce(self.flops.double().clone(), world))

    def means(self, world: int) -> dict[str, float]:
        names = sorted(self.loss)
        sums = all_reduce(torch.stack([self.loss[k].float() for k in names]), world).tolist()
        return {k: v / max(self.steps, 1) for k, v in zip(names, sums, strict=True)}

    def state(self, world: int) -> dict[str, Any]:
        """What a checkpoint keeps: losses summed over ranks (a collective: every rank calls)."""
        names = sorted(self.loss)
        sums = (
            all_reduce(torch.stack([self.loss[k] for k in names]).clone(), world).cpu()
            if names
            else torch.zeros(0)
        )
        return {
            "names": names,
            "loss": sums,
            "steps": self.steps,
            "tokens": self.tokens,
            "seconds": self.seconds,
            "flops": self.flops_all(world),
        }

    @staticmethod
    def from_state(state: dict[str, Any] | None, device: torch.device) -> Window:
        if not state:  # a checkpoint from before windows were kept
            return Window()
        loss = {k: state["loss"][i].to(device) for i, k in enumerate(state["names"])}
        steps, tokens, seconds = int(state["steps"]), int(state["tokens"]), float(state["seconds"])
        return Window(loss, steps, tokens, seconds, float(state.get("flops", 0.0)))


def summary_of(
    rows: list[dict[str, Any]], step: int, tokens: int, times: dict[str, float]
) -> dict[str, Any]:
    """A run's summary from its metrics rows: the loss of the last training row (the mean over
    its window), the held-out loss at the start and the held-out figures at `step`."""
    summary: dict[str, Any] = {"steps": step, "tokens": tokens, **times}
    trained = [r for r in rows if "loss" in r and r["step"] <= step]
    if trained:
        summary["train_loss"] = rounded(trained[-1]["loss"])
    evals = {r["step"]: r for r in rows if "eval_loss" in r}
    if 0 in evals and step > 0:
        summary["start_eval_loss"] = rounded(evals[0]["eval_loss"])
    summary.update({k: rounded(v) for k, v in evals.get(step, {}).items() if k != "step"})
    return summary


def rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def duration(seconds: float) -> str:
    """`45 s`, `12 min`, `3 h 05 min`."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    return f"{minutes} min" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


def clock_at(seconds: float) -> str:
    """The local time `seconds` from now, as HH:MM."""
    return time.strftime("%H:%M", time.localtime(time.time() + seconds))


SLOW_SECONDS = 3600.0  # a forecast beyond this is a warning


def forecast(cfg: Any, step: int, elapsed: float, device: Any, per_step: float) -> str:
    """How long the run will take from `step`, at `per_step` seconds a step; a warning when that
    is very long for the chosen size on this device."""
    if cfg.budget > 0:
        left = max(0.0, cfg.budget - elapsed)
        return (
            f"training for {duration(left)} more (--budget), until about {clock_at(left)}; "
            f"{per_step:.2f} s per step"
        )
    n = cfg.steps - step
    left, steps = n * per_step, f"{n:,} more step{'s' if n != 1 else ''}"
    if left > SLOW_SECONDS:
        return (
            f"warning: {steps} of model {cfg.model} on {device.type} "
            f"{'take' if n != 1 else 'takes'} about {duration(left)} ({per_step:.1f} s per "
            "step); a smaller --model, fewer --steps, a --budget (e.g. 30m) or a GPU make it "
            "shorter"
        )
    return (
        f"about {duration(left)} to go for {steps} ({per_step:.2f} s per step), done "
        f"around {clock_at(left)}"
    )

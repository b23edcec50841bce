"""The settings of a run: `TrainConfig`, the size presets' defaults, and the learning-rate
schedule they imply. config.json stores a `TrainConfig` resolved; resume reads it back and lets
only `RESUMABLE` settings change.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from corruptions import UsageError

from .packing import PACKINGS

SCHEDULES = ("linear", "cosine")
PRECISIONS = ("auto", "fp32", "bf16")
PRESET_DEFAULTS: dict[str, dict[str, Any]] = {  # per model preset: what "sensible" means
    "tiny": {"seq_len": 128, "batch_size": 16, "lr": 2e-3},
    "small": {"seq_len": 256, "batch_size": 32, "lr": 1e-3},
    "base": {"seq_len": 512, "batch_size": 32, "lr": 4e-4},
}
RESUMABLE = frozenset(
    {  # settings a resumed run may change; the others would change the run
        "steps",
        "budget",
        "device",
        "compile",
        "log_every",
        "eval_every",
        "eval_batches",
        "save_every",
        "keep",
        "out",
    }
)


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """Every setting of a run; config.json stores it resolved and resume reads it back."""

    objective: str = "bert-mlm"  # registered objective (or a+b composition)
    params: tuple[tuple[str, str], ...] = ()  # objective parameter overrides, as --param k=v
    data: str | None = None  # documents (see data.read_documents); None: the embedded corpus
    eval_data: str | None = None  # held-out documents; None: a fixed split of `data`
    tokenizer: str | None = None  # tokenizer file; None: the default tokenizer
    model: str = "tiny"  # shape preset: tiny | small | base
    positions: str = "learned"  # learned | rotary
    dropout: float = 0.0  # dropout probability
    seq_len: int = 128  # content tokens per row, before the objective frames it
    packing: str = "auto"  # auto | documents | rows | concat (see packing.py)
    batch_size: int = 16  # rows per micro-batch, per rank
    grad_accum: int = 1  # micro-batches per optimizer step
    steps: int = 1000  # optimizer steps (a --tokens or --budget run sets it)
    budget: float = 0.0  # wall-clock seconds; > 0: stop then, LR schedule follows elapsed time
    lr: float = 2e-3  # peak learning rate
    min_lr: float = 0.1  # final learning rate, as a share of lr
    warmup: float = 0.05  # linear LR ramp: share of the run (< 1) or steps (>= 1)
    schedule: str = "linear"  # decay after warmup: linear | cosine
    weight_decay: float = 0.01  # AdamW decay on matrices (not biases, norms)
    clip: float = 1.0  # gradient-norm clip (0: off)
    seed: int = 0  # data order, corruption, initialisation, dropout
    precision: str = "auto"  # auto (bf16 autocast on CUDA, fp32 on CPU) | fp32 | bf16
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    compile: bool = False  # torch.compile the model
    log_every: int = 10  # steps between metrics lines
    eval_every: int = 0  # steps between held-out evaluations (0: start and end only)
    eval_batches: int = 8  # held-out micro-batches per evaluation
    save_every: int = 0  # steps between checkpoints (0: at the end and on SIGINT/SIGTERM)
    keep: int = 3  # checkpoints kept
    out: str = "runs/run"  # run directory

    def __post_init__(self) -> None:
        checks = [
            (self.model in PRESET_DEFAULTS, f"model must be one of {', '.join(PRESET_DEFAULTS)}"),
            (
                self.packing in ("auto", *PACKINGS),
                f"packing must be auto or one of {', '.join(PACKINGS)}",
            ),
            (self.schedule in SCHEDULES, f"schedule must be one of {', '.join(SCHEDULES)}"),
            (self.precision in PRECISIONS, f"precision must be one of {', '.join(PRECISIONS)}"),
            (self.positions in ("learned", "rotary"), "positions must be learned or rotary"),
            (self.seq_len >= 2, f"--seq-len must be at least 2, not {self.seq_len}"),
            (self.batch_size >= 1, f"--batch-size must be at least 1, not {self.batch_size}"),
            (self.grad_accum >= 1, f"--grad-accum must be at least 1, not {self.grad_accum}"),
            (self.steps >= 1 or self.budget > 0, "give steps >= 1, or a time budget"),
            (self.lr > 0, f"--lr must be above 0, not {self.lr}"),
            (0 <= self.min_lr <= 1, f"--min-lr is a share of --lr, in [0, 1], not {self.min_lr}"),
            (self.warmup >= 0, f"--warmup must be at least 0, not {self.warmup}"),
            (self.log_every >= 1, f"--log-every must be at least 1, not {self.log_every}"),
            (self.keep >= 1, f"--keep must be at least 1, not {self.keep}"),
            (self.eval_batches >= 1, f"--eval-batches must be at least 1, not {self.eval_batches}"),
            (0 <= self.dropout < 1, f"--dropout must be in [0, 1), not {self.dropout}"),
        ]
        for ok, message in checks:
            if not ok:
                raise UsageError(message)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["params"] = [list(p) for p in self.params]
        return out

    @staticmethod
    def from_json(data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(TrainConfig)}
        values = {k: v for k, v in data.items() if k in known}
        values["params"] = tuple(tuple(p) for p in values.get("params", ()))
        return TrainConfig(**values)


def config_for(
    model: str = "tiny", tokens: int = 0, world: int = 1, **settings: Any
) -> TrainConfig:
    """A `TrainConfig` with the preset's defaults for whatever `settings` leaves out.

    `tokens` > 0 sets steps from a token budget: tokens / (rows per step x seq_len).
    """
    values = {
        **PRESET_DEFAULTS.get(model, {}),
        **{k: v for k, v in settings.items() if v is not None},
    }
    cfg = TrainConfig(model=model, **values)
    if tokens > 0:
        per_step = cfg.batch_size * cfg.grad_accum * world * cfg.seq_len
        cfg = replace(cfg, steps=max(1, math.ceil(tokens / per_step)))
    return cfg


# --- learning rate ------------------------------------------------------------------------------


def lr_at(cfg: TrainConfig, step: int, progress: float) -> float:
    """Learning rate for optimizer step `step` (0-based) at `progress` in [0, 1] of the run
    (steps done / steps, or elapsed / budget): linear warmup, then linear or cosine decay."""
    if cfg.warmup >= 1:  # warmup in steps
        if step < cfg.warmup:
            return cfg.lr * (step + 1) / cfg.warmup
        warm = cfg.warmup / cfg.steps if cfg.budget <= 0 else 0.0
    else:
        warm = cfg.warmup
        if progress < warm:
            return cfg.lr * progress / warm
    t = min(1.0, max(0.0, (progress - warm) / max(1e-12, 1.0 - warm)))
    decay = 1.0 - t if cfg.schedule == "linear" else 0.5 * (1.0 + math.cos(math.pi * t))
    return cfg.lr * (cfg.min_lr + (1.0 - cfg.min_lr) * decay)

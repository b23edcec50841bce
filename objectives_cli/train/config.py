"""The settings of a run: `TrainConfig`, the size presets' defaults, and the learning-rate
schedule they imply. config.json stores a `TrainConfig` resolved; resume reads it back and lets
only `RESUMABLE` settings change.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from corruptions.errors import UsageError
from objectives_cli.data import PACKINGS

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
        "lr",
        "device",
        "compile",
        "log_every",
        "eval_every",
        "eval_batches",
        "save_every",
        "save_minutes",
        "keep",
        "out",
    }
)


# Help panels of `objectives train --help`, in this order.
PANELS = ("Objective and data", "Model", "Length and optimisation", "Device", "Run directory")


def setting(default: Any, help: str, panel: str, least: float | None = None) -> Any:
    """A `TrainConfig` field with its help text, its `--help` panel and its least value: the CLI
    option is generated from this (cli/training.py), so each setting is declared once."""
    return field(default=default, metadata={"help": help, "panel": panel, "least": least})


DATA, MODEL, OPTIM, DEVICE, RUN = PANELS


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """Every setting of a run; config.json stores it resolved and resume reads it back."""

    objective: str = setting(
        "bert-mlm",
        "Objective name or alias (see 'objectives list'); a+b composes BART noising.",
        DATA,
    )
    params: tuple[tuple[str, str], ...] = setting(
        (), "Objective parameter override (repeatable); see 'objectives describe NAME'.", DATA
    )
    data: str | None = setting(
        None,
        "Training text: a file (documents separated by blank lines), a directory, "
        ".jsonl/.parquet with a 'text' column, or hf:NAME[:CONFIG]. Default: the built-in corpus.",
        DATA,
    )
    eval_data: str | None = setting(
        None,
        "Held-out text. Default: 1% of the documents of --data, chosen by a hash of their text "
        "(the built-in corpus has its own split).",
        DATA,
    )
    tokenizer: str | None = setting(
        None, "Tokenizer JSON file. Default: the built-in tokenizer.", DATA
    )
    model: str = setting(
        "tiny",
        "Model size: tiny (tests, CPU demos), small, or base (BERT-base / BART-base / GPT-2 "
        "small).",
        MODEL,
    )
    positions: str = setting("learned", "learned or rotary position embeddings.", MODEL)
    dropout: float = setting(0.0, "Dropout probability.", MODEL)
    seq_len: int = setting(
        128, "Content tokens per row, before the objective frames it.", DATA, least=2
    )
    packing: str = setting("auto", "auto, documents, rows or concat; see docs/training.md.", DATA)
    batch_size: int = setting(16, "Rows per micro-batch, per process.", OPTIM, least=1)
    grad_accum: int = setting(1, "Micro-batches per optimizer step.", OPTIM, least=1)
    steps: int = setting(
        1000, "Optimizer steps (--tokens and --budget set them instead).", OPTIM, least=1
    )
    budget: float = setting(
        0.0,
        "Wall-clock budget, e.g. 2h or 45m: train until then, with the learning-rate schedule "
        "stretched over it.",
        OPTIM,
    )
    lr: float = setting(2e-3, "Peak learning rate.", OPTIM)
    min_lr: float = setting(0.1, "Final learning rate, as a share of --lr.", OPTIM)
    warmup: float = setting(0.05, "Linear warmup: a share of the run (< 1) or steps (>= 1).", OPTIM)
    schedule: str = setting("linear", "Decay after warmup: linear or cosine.", OPTIM)
    weight_decay: float = setting(
        0.01, "AdamW weight decay on matrices (not biases, norms).", OPTIM
    )
    clip: float = setting(1.0, "Gradient-norm clip; 0 = off.", OPTIM)
    seed: int = setting(0, "Seed of data order, corruption, initialisation and dropout.", OPTIM)
    precision: str = setting(
        "auto", "auto (bf16 autocast on CUDA, fp32 on CPU), fp32 or bf16.", DEVICE
    )
    device: str = setting("auto", "auto (CUDA when available), cpu, cuda or cuda:N.", DEVICE)
    compile: bool = setting(False, "torch.compile the model.", DEVICE)
    log_every: int = setting(10, "Steps per metrics line.", RUN, least=1)
    eval_every: int = setting(
        0, "Steps between held-out evaluations; 0 = at the start and the end.", RUN, least=0
    )
    eval_batches: int = setting(8, "Held-out micro-batches per evaluation.", RUN, least=1)
    save_every: int = setting(
        0, "Steps between checkpoints; 0 = by --save-minutes only.", RUN, least=0
    )
    save_minutes: float = setting(
        10.0,
        "Minutes of wall clock between checkpoints, whatever the steps; 0 = off. A checkpoint is "
        "also written at the end and on Ctrl-C.",
        RUN,
        least=0,
    )
    keep: int = setting(3, "Checkpoints kept (the newest); bounds the disk used.", RUN, least=1)
    out: str = setting("runs/run", "Run directory. Default: runs/OBJECTIVE.", RUN)

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
            (self.save_minutes >= 0, f"--save-minutes must be at least 0, not {self.save_minutes}"),
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


def resumed(stored: TrainConfig, given: dict[str, Any], run_dir: str) -> TrainConfig:
    """The config of a resumed run: `stored`, with the settings of `given` that a resumed run
    may change (`RESUMABLE`); any other given setting must equal the stored one."""
    fixed = sorted(k for k, v in given.items() if k not in RESUMABLE and getattr(stored, k) != v)
    if fixed:
        option = "--" + fixed[0].replace("_", "-")
        raise UsageError(
            f"{option} cannot change when resuming (the run used {getattr(stored, fixed[0])!r})",
            "resuming continues the same run; start a new one with another --out",
        )
    changed = {k: v for k, v in given.items() if k in RESUMABLE}
    return TrainConfig.from_json({**stored.to_json(), **changed, "out": run_dir})


# --- learning rate ------------------------------------------------------------------------------


def lr_at(cfg: TrainConfig, step: int, progress: float, warm_end: float | None = None) -> float:
    """Learning rate of optimizer step `step` (0-based), taken where that step ends: `progress`
    in [0, 1] is the share of the run done once it is applied ((step + 1) / steps, or the elapsed
    share of --budget). Linear warmup to --lr, then linear or cosine decay to min_lr x lr.

    Warmup in steps (--warmup >= 1) ramps as (step + 1) / warmup and a share of the run (< 1) as
    progress / warmup: the same rates when warmup x steps is the warmup in steps, and never 0.
    Decay starts where warmup ended: `warm_end`, the progress of the step that reached the peak
    (known in advance on a step count; under --budget with a warmup in steps the loop records it,
    None meaning "this step").
    """
    if cfg.warmup >= 1:  # warmup in steps
        if step + 1 < cfg.warmup:
            return cfg.lr * (step + 1) / cfg.warmup
        if cfg.budget <= 0:
            warm = cfg.warmup / cfg.steps
        else:
            warm = progress if warm_end is None else warm_end
    else:
        warm = cfg.warmup
        if progress < warm:
            return cfg.lr * progress / warm
    t = min(1.0, max(0.0, (progress - warm) / max(1e-12, 1.0 - warm)))
    decay = 1.0 - t if cfg.schedule == "linear" else 0.5 * (1.0 + math.cos(math.pi * t))
    return cfg.lr * (cfg.min_lr + (1.0 - cfg.min_lr) * decay)

"""Setting a run up: data, corruption, objective facts and model shape (probed on a fresh run,
read from config.json on resume), the run directory's first files, and the lines that describe
the run before its first step.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from corruptions import ObjectivesError, UsageError, create, model_facts, resolve
from objectives_cli.data.packing import Blocks
from objectives_cli.model.config import ModelConfig, heads_for, preset
from objectives_cli.model.model import Model, param_counts

from . import checkpoints
from .batches import Data, ObjectiveInfo, load_data, probe
from .config import RESUMABLE, TrainConfig, lr_at
from .lock import RunLock


def run_config(cfg: TrainConfig, model_cfg: ModelConfig, info: ObjectiveInfo) -> dict[str, Any]:
    """config.json: the settings, the model shape, what the probe found and every objective
    parameter's value (defaults included; `train.params` holds only the overrides)."""
    objective = {**info.to_json(), "params": resolve(cfg.objective, dict(cfg.params))[1]}
    return {"train": cfg.to_json(), "model": asdict(model_cfg), "objective": objective}


@dataclass(frozen=True)
class StoredRun:
    """A run's config.json, read and checked: what it stores, as the trainer's own types."""

    config: dict[str, Any]
    train: TrainConfig
    info: ObjectiveInfo
    model: ModelConfig


def read_run(run_dir: Path) -> StoredRun:
    """config.json of `run_dir`; a file that is not a run's config is one `RunError`."""
    config = checkpoints.read_config(run_dir)
    try:
        return StoredRun(
            config,
            TrainConfig.from_json(config["train"]),
            ObjectiveInfo.from_json(config["objective"]),
            ModelConfig(**config["model"]),
        )
    except (TypeError, ValueError, KeyError, AttributeError, ObjectivesError) as exc:
        reason = exc.message if isinstance(exc, ObjectivesError) else str(exc)
        raise checkpoints.bad_config(Path(run_dir) / "config.json", reason) from None


def prepare(
    cfg: TrainConfig, resume: bool, say: Callable[[str], None] = lambda text: None
) -> tuple[Data, Any, ObjectiveInfo, ModelConfig]:
    """Data, corruption, objective facts and model shape: probed on a fresh run, read on resume
    (`say` tells how reading and tokenising go)."""
    run_dir = Path(cfg.out)
    tokenizer = str(run_dir / "tokenizer.json") if resume else cfg.tokenizer
    corruption = create(cfg.objective, **dict(cfg.params))
    if not resume:  # before reading the data, which can take a while
        check_fresh(run_dir)
    data = load_data(cfg, tokenizer, say)
    if resume:
        stored = read_run(run_dir)
        before = stored.train
        changed = [
            k for k in asdict(cfg) if k not in RESUMABLE and getattr(before, k) != getattr(cfg, k)
        ]
        if changed:
            raise UsageError(
                f"cannot resume {run_dir} with another {changed[0]} "
                f"({getattr(before, changed[0])!r} -> {getattr(cfg, changed[0])!r})",
                "resuming continues the same run; start a new one with another --out",
            )
        info, model_cfg = stored.info, stored.model
    else:
        info, sample = probe(cfg, data, corruption)
        model_cfg = ModelConfig(
            arch=info.arch,
            vocab_size=data.vocab.size,
            max_len=max(64, 2 * cfg.seq_len),
            positions=cfg.positions,
            dropout=cfg.dropout,
            lm_bias=info.arch == "encoder-decoder",  # GPT-2 has none; BART's final_logits_bias
            **preset(cfg.model, info.arch),
            **heads_for(info.arch, sample, info.electra, data.vocab.mask),  # type: ignore[arg-type]
            # SpanBERT's offset table has a row per SBO target of a span (its max_pair_targets)
            sbo_offsets=model_facts(corruption, data.vocab).sbo_offsets or ModelConfig.sbo_offsets,
        )
    return data, corruption, info, model_cfg


def start_run(cfg: TrainConfig, data: Data, info: ObjectiveInfo, model_cfg: ModelConfig) -> None:
    # prepare() has checked the directory (check_fresh) before reading the data
    checkpoints.start(Path(cfg.out), run_config(cfg, model_cfg, info), data.tok.to_str())


def record_changes(run_dir: Path, cfg: TrainConfig, step: int, say: Callable[[str], None]) -> None:
    """Write into config.json the settings a resumed run changed (`RESUMABLE`), with the step
    it resumed at under `resumes`, so the next resume and the reader of the run see them; say
    how a new --steps or --lr reshapes the learning rate from here on."""
    stored = read_run(run_dir)
    changed = {
        k: [getattr(stored.train, k), getattr(cfg, k)]
        for k in sorted(RESUMABLE - {"out"})
        if getattr(stored.train, k) != getattr(cfg, k)
    }
    if not changed:
        return
    config = dict(stored.config)
    config["train"] = {**cfg.to_json(), "out": stored.train.out}
    config["resumes"] = [*config.get("resumes", []), {"step": step, "changed": changed}]
    checkpoints.write_config(run_dir, config)
    if {"steps", "budget", "lr"} & changed.keys() and stored.train.budget <= 0 and cfg.budget <= 0:
        before = lr_at(stored.train, step, min(1.0, (step + 1) / stored.train.steps))
        now = lr_at(cfg, step, min(1.0, (step + 1) / cfg.steps))
        if not math.isclose(before, now):
            say(
                f"warning: the learning-rate schedule now spans {cfg.steps} steps at peak "
                f"{cfg.lr:g}: step {step + 1} runs at {now:.2e} instead of {before:.2e}"
            )


def lock_run(cfg: TrainConfig, resume: bool, say: Callable[[str], None]) -> RunLock:
    """Lock the run directory for this process (after checking that it is one to resume, or one
    a fresh run may use, so that a refused directory gets no lock file) and remove what an
    interrupted write left there."""
    run_dir = Path(cfg.out)
    if resume:
        read_run(run_dir)
    else:
        check_fresh(run_dir)
    lock = RunLock(run_dir, say)
    removed = checkpoints.remove_unfinished(run_dir)
    if removed:
        say(f"removed {len(removed)} unfinished write(s) left by an interrupted run: {removed[0]}")
    return lock


def check_fresh(run_dir: Path) -> None:
    """Refuse an --out that holds a run, or files of another kind (a run that stopped before its
    first checkpoint is simply started again)."""
    if checkpoints.list_checkpoints(run_dir):
        raise UsageError(
            f"{run_dir} already holds a run",
            f"continue it with --resume {run_dir}, or pick another --out",
        )
    if run_dir.exists() and not run_dir.is_dir():
        raise UsageError(f"--out {run_dir} is a file", "give a directory for the run")
    others = [p for p in run_dir.iterdir() if p.name != RunLock.NAME] if run_dir.is_dir() else []
    if others and not checkpoints.is_run(run_dir):
        raise UsageError(
            f"{run_dir} holds files that are not a run; they would be overwritten",
            "pick another --out (a new or empty directory)",
        )


def describe_run(
    model: Model,
    info: ObjectiveInfo,
    cfg: TrainConfig,
    device: torch.device,
    blocks: tuple[Blocks, Blocks],
    world: int,
) -> list[str]:
    counts = param_counts(model)
    parts = ", ".join(f"{k} {v / 1e6:.2f}M" for k, v in counts.items() if k != "total")
    shape = model.cfg
    layers = (
        f"{shape.n_layers}+{shape.n_decoder_layers}"
        if shape.arch == "encoder-decoder"
        else str(shape.n_layers)
    )
    return [
        f"objective {info.name} ({info.arch}), model {cfg.model}: {layers} layers x "
        f"{shape.d_model}, {counts['total'] / 1e6:.2f}M parameters ({parts})",
        f"data: {len(blocks[0]):,} train rows, {len(blocks[1]):,} held-out rows of <= "
        f"{cfg.seq_len} tokens, packing {info.packing}; {cfg.batch_size} x {cfg.grad_accum} x "
        f"{world} rows per step; device {device}",
    ]

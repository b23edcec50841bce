"""The run directory: settings, tokenizer, metrics and checkpoints, every file written atomically.

    RUN/config.json                  every setting resolved: train, model, objective, versions
    RUN/tokenizer.json               the tokenizer the run was trained with
    RUN/metrics.jsonl                one JSON object per logged step or evaluation
    RUN/checkpoints/step-00000100/   model.safetensors + state.pt (optimizer, RNG, step, clock)

A checkpoint directory is written under a temporary name and renamed when complete, so a crash
mid-write never leaves a checkpoint that looks whole. `load_latest` falls back to the previous
checkpoint when the newest cannot be read. `state.pt` holds only tensors and plain types, so
`torch.load(..., weights_only=True)` reads it.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from corruptions import ObjectivesError

CHECKPOINTS = "checkpoints"
PREFIX = "step-"


class RunError(ObjectivesError):
    """A run directory that cannot be used (missing, damaged, or for another model)."""


def write_atomic(path: Path, data: bytes | str) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)


def write_config(run_dir: Path, config: dict[str, Any]) -> None:
    config = {
        **config,
        "versions": {"torch": torch.__version__, "python": platform.python_version()},
    }
    write_atomic(run_dir / "config.json", json.dumps(config, indent=2) + "\n")


def read_config(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / "config.json"
    if not path.exists():
        raise RunError(
            f"{run_dir} is not a run directory (no config.json)",
            "pass the --out directory of an `objectives train` run",
        )
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError) as exc:
        raise RunError(f"{path} cannot be read: {exc}") from None


def list_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints, oldest first."""
    root = Path(run_dir) / CHECKPOINTS
    found = []
    for path in root.glob(f"{PREFIX}*") if root.exists() else ():
        suffix = path.name[len(PREFIX) :]
        if path.is_dir() and suffix.isdigit():
            found.append((int(suffix), path))
    return sorted(found)


def save(run_dir: Path, step: int, model: nn.Module, state: dict[str, Any], keep: int) -> Path:
    """Write checkpoint `step` (weights + state) atomically and keep the newest `keep`."""
    root = Path(run_dir) / CHECKPOINTS
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"{PREFIX}{step:08d}"
    tmp = root / f".{final.name}.tmp{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    weights = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(weights, str(tmp / "model.safetensors"))
    torch.save({**state, "step": step}, tmp / "state.pt")
    for name in ("model.safetensors", "state.pt"):
        with open(tmp / name, "rb") as f:
            os.fsync(f.fileno())
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)
    for _, old in list_checkpoints(run_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def read_checkpoint(
    path: Path, with_state: bool = True
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(weights, state) of one checkpoint directory; raises if either file is damaged."""
    weights = load_file(str(path / "model.safetensors"))
    state = torch.load(path / "state.pt", weights_only=True) if with_state else {}
    return weights, state


def load_latest(
    run_dir: Path, model: nn.Module, warn: Callable[[str], None], with_state: bool = True
) -> dict[str, Any] | None:
    """Load the newest readable checkpoint into `model`; returns its state (None: no checkpoint).

    A damaged checkpoint is reported through `warn` and the previous one is tried.
    """
    for step, path in reversed(list_checkpoints(run_dir)):
        try:
            weights, state = read_checkpoint(path, with_state)
            model.load_state_dict(weights)
        except Exception as exc:  # truncated or corrupted files, or another model's weights
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            warn(
                f"warning: checkpoint {path.name} is damaged ({first[:200]}); "
                "trying the previous one"
            )
            continue
        return {**state, "step": state.get("step", step), "path": str(path)}
    if list_checkpoints(run_dir):
        raise RunError(
            f"no readable checkpoint in {Path(run_dir) / CHECKPOINTS}",
            "every checkpoint is damaged; start a new run",
        )
    return None


class Metrics:
    """metrics.jsonl: one JSON object per line, appended and flushed as the run goes."""

    def __init__(self, run_dir: Path, after_step: int | None = None) -> None:
        self.path = Path(run_dir) / "metrics.jsonl"
        if after_step is not None and self.path.exists():  # a resumed run redoes later steps
            rows = [line for line in self.path.read_text().splitlines() if line.strip()]
            kept = [r for r in rows if json.loads(r).get("step", 0) <= after_step]
            write_atomic(self.path, "".join(r + "\n" for r in kept))

    def write(self, row: dict[str, Any]) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    path = Path(run_dir) / "metrics.jsonl"
    return (
        [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        if path.exists()
        else []
    )

"""The run directory: settings, tokenizer, metrics and checkpoints, every file written atomically.

    RUN/config.json                  every setting resolved: train, model, objective, versions
    RUN/tokenizer.json               the tokenizer the run was trained with
    RUN/metrics.jsonl                one JSON object per logged step or evaluation
    RUN/checkpoints/step-00000100/   model.safetensors + state.pt (optimizer, step, clock)

A checkpoint directory is written under a temporary name and renamed when complete, so a crash
mid-write never leaves a checkpoint that looks whole. `load_latest` falls back to the previous
checkpoint when the newest cannot be read. `state.pt` holds only tensors and plain types, so
`torch.load(..., weights_only=True)` reads it.

A write that fails (full disk, no permission) removes what it half-wrote, leaves the complete
checkpoints alone and raises `WriteError`, which names the path, the OS reason and the last good
checkpoint. Files are written by `data.files` from bytes serialised in memory, so a full disk
keeps its errno.
"""

from __future__ import annotations

import errno
import io
import json
import os
import platform
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes
from torch import nn

from corruptions import ObjectivesError
from objectives_cli.data import files

CHECKPOINTS = "checkpoints"
PREFIX = "step-"


class RunError(ObjectivesError):
    """A run directory that cannot be used (missing, damaged, or for another model)."""


class WriteError(RunError):
    """A file of the run directory could not be written; what was half-written is gone and the
    complete checkpoints are untouched."""

    def __init__(self, path: Path, exc: OSError, run_dir: Path) -> None:
        reason = exc.strerror or str(exc) or type(exc).__name__
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            fix = "free some space"
        elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            fix = f"make {run_dir} writable"
        else:
            fix = "fix the disk"
        saved = list_checkpoints(run_dir)
        if saved:
            hint = (
                f"{fix}, then continue with: objectives train --resume {run_dir} "
                f"(the last good checkpoint is {saved[-1][1].name})"
            )
        else:
            hint = f"{fix}, then start the run again (no checkpoint was written yet)"
        super().__init__(f"cannot write {path}: {reason}", hint)
        self.path, self.reason = path, reason


def write_atomic(path: Path, data: bytes | str) -> None:
    """`files.write_atomic`, raising WriteError (run dir = its folder)."""
    try:
        files.write_atomic(path, data)
    except OSError as exc:
        raise WriteError(path, exc, path.parent) from None


def start(run_dir: Path, config: dict[str, Any], tokenizer_json: str) -> None:
    """Set up a fresh run directory: config.json, tokenizer.json, no metrics.jsonl."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "metrics.jsonl").unlink(missing_ok=True)
    except OSError as exc:
        raise WriteError(run_dir, exc, run_dir) from None
    write_config(run_dir, config)
    write_atomic(run_dir / "tokenizer.json", tokenizer_json)


def write_config(run_dir: Path, config: dict[str, Any]) -> None:
    config = {
        **config,
        "versions": {"torch": torch.__version__, "python": platform.python_version()},
    }
    write_atomic(run_dir / "config.json", json.dumps(config, indent=2) + "\n")


def is_run(run_dir: Path) -> bool:
    """Whether `run_dir` holds a config.json that `objectives train` wrote."""
    try:
        config = json.loads((Path(run_dir) / "config.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and {"train", "model", "objective"} <= config.keys()


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
    """Write checkpoint `step` (weights + state) atomically and keep the newest `keep`.

    Raises:
        WriteError: the checkpoint could not be written; its temporary directory is removed and
            no older checkpoint is deleted.
    """
    root = Path(run_dir) / CHECKPOINTS
    final = root / f"{PREFIX}{step:08d}"
    tmp, replaced = (root / f".{final.name}.{kind}{os.getpid()}" for kind in ("tmp", "old"))
    weights = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    state_bytes = io.BytesIO()
    torch.save({**state, "step": step}, state_bytes)
    try:
        root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        files.write_file(tmp / "model.safetensors", safetensors_bytes(weights))
        files.write_file(tmp / "state.pt", state_bytes.getbuffer())
        if final.exists():  # the same step again (resumed past a damaged checkpoint)
            final.rename(replaced)
        tmp.rename(final)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if replaced.exists() and not final.exists():
            replaced.rename(final)
        raise WriteError(final, exc, run_dir) from None
    shutil.rmtree(replaced, ignore_errors=True)
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
            rows = parse_rows(self.path.read_text(errors="replace"))
            kept = [json.dumps(r) for r in rows if r.get("step", 0) <= after_step]
            write_atomic(self.path, "".join(r + "\n" for r in kept))

    def write(self, row: dict[str, Any]) -> None:
        """Append `row` as one line, whole or not at all (a failed write is cut off again)."""
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                end = os.lseek(fd, 0, os.SEEK_END)
                try:
                    files.write_all(fd, (json.dumps(row) + "\n").encode())
                except OSError:
                    os.ftruncate(fd, end)
                    raise
            finally:
                os.close(fd)
        except OSError as exc:
            raise WriteError(self.path, exc, self.path.parent) from None


def parse_rows(text: str) -> list[dict[str, Any]]:
    """The JSON objects of a metrics.jsonl; a line a crash or power loss cut short is skipped."""
    rows = []
    for line in text.splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    path = Path(run_dir) / "metrics.jsonl"
    return parse_rows(path.read_text(errors="replace")) if path.exists() else []

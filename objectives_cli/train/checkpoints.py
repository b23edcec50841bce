"""The run directory: settings, tokenizer, metrics and checkpoints, every file written atomically.

    RUN/config.json                  every setting resolved: train, model, objective, versions
    RUN/tokenizer.json               the tokenizer the run was trained with
    RUN/metrics.jsonl                one JSON object per logged step or evaluation
    RUN/checkpoints/step-00000100/   model.safetensors + state.pt (optimizer, step, clock)
                                     + manifest.json (size and SHA-256 of each, written last)
    RUN/.lock                        held (flock) by the process that trains the run (lock.py)

A checkpoint directory is written under a temporary name and renamed when complete, so a crash
mid-write never leaves a checkpoint that looks whole; what a crash leaves under a temporary
name is removed when the run starts or resumes (`remove_unfinished`). `load_latest` checks each
file against the manifest, the state's contents and the model's shape, and falls back to the
previous checkpoint when the newest fails any of them. `state.pt` holds only tensors and plain
types, so `torch.load(..., weights_only=True)` reads it.

A write that fails (full disk, no permission) removes what it half-wrote, leaves the complete
checkpoints alone and raises `WriteError`, which names the path, the OS reason and the last good
checkpoint. Files are written by `data.files` from bytes serialised in memory, so a full disk
keeps its errno.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import platform
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as safetensors_load
from safetensors.torch import save as safetensors_bytes
from torch import nn

from corruptions import ObjectivesError
from objectives_cli.data import files

CHECKPOINTS = "checkpoints"
PREFIX = "step-"
MANIFEST = "manifest.json"  # written last: {"files": {name: {"bytes": n, "sha256": hex}}}
STATE_KEYS = {"optimizer": dict, "step": int, "elapsed": float, "tokens": int}


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
    """config.json as written by `start`: an object with train, model and objective objects."""
    path = Path(run_dir) / "config.json"
    if not path.exists():
        raise RunError(
            f"{run_dir} is not a run directory (no config.json)",
            "pass the --out directory of an `objectives train` run",
        )
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise RunError(f"{path} cannot be read: {exc}") from None
    if not isinstance(config, dict):
        raise bad_config(path, f"it holds a JSON {type(config).__name__}, not an object")
    for key in ("train", "model", "objective"):
        if not isinstance(config.get(key), dict):
            raise bad_config(path, f"it has no '{key}' object")
    return config


def bad_config(path: Path, reason: str) -> RunError:
    return RunError(
        f"{path} is not the config of a run: {reason}",
        "restore the config.json that `objectives train` wrote there, or start a new run",
    )


def list_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints, oldest first."""
    root = Path(run_dir) / CHECKPOINTS
    found = []
    for path in root.glob(f"{PREFIX}*") if root.exists() else ():
        suffix = path.name[len(PREFIX) :]
        if path.is_dir() and suffix.isdigit():
            found.append((int(suffix), path))
    return sorted(found)


def step_dir(run_dir: Path, step: int) -> Path:
    return Path(run_dir) / CHECKPOINTS / f"{PREFIX}{step:08d}"


def save(run_dir: Path, step: int, model: nn.Module, state: dict[str, Any], keep: int) -> Path:
    """Write checkpoint `step` (weights, state, then the manifest) atomically and keep the
    newest `keep`.

    Raises:
        WriteError: the checkpoint could not be written; its temporary directory is removed and
            no older checkpoint is deleted. An interruption (KeyboardInterrupt) leaves the same.
    """
    root = Path(run_dir) / CHECKPOINTS
    final = step_dir(run_dir, step)
    tmp, replaced = (root / f".{final.name}.{kind}{os.getpid()}" for kind in ("tmp", "old"))
    weights = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    state_bytes = io.BytesIO()
    torch.save({**state, "step": step}, state_bytes)
    payload = {"model.safetensors": safetensors_bytes(weights), "state.pt": state_bytes.getvalue()}
    manifest = {
        "files": {
            name: {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
            for name, data in payload.items()
        }
    }
    try:
        root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        for name, data in payload.items():
            files.write_file(tmp / name, data)
        files.write_file(tmp / MANIFEST, (json.dumps(manifest, indent=1) + "\n").encode())
        if final.exists():  # the same step again (resumed past a damaged checkpoint)
            final.rename(replaced)
        tmp.rename(final)
    except BaseException as exc:  # a full disk, or a second Ctrl-C: leave what was there
        shutil.rmtree(tmp, ignore_errors=True)
        if replaced.exists() and not final.exists():
            replaced.rename(final)
        if isinstance(exc, OSError):
            raise WriteError(final, exc, run_dir) from None
        raise
    shutil.rmtree(replaced, ignore_errors=True)
    for _, old in list_checkpoints(run_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


DIVERGED = "diverged-"


def set_aside(run_dir: Path, step: int) -> str:
    """Rename checkpoint `step` (weights that give inf or NaN on the next step) to
    `diverged-step-*`, which resume never reads, replacing one set aside before; returns what
    to tell the user ("" when there is no such checkpoint)."""
    path = step_dir(run_dir, step)
    if not path.exists():
        return ""
    dest = path.with_name(DIVERGED + path.name)
    for old in path.parent.glob(f"{DIVERGED}*"):
        shutil.rmtree(old, ignore_errors=True)
    try:
        path.rename(dest)
    except OSError:
        return ""
    return f" ({path.name}, whose next step diverged, was set aside as {dest.name})"


def remove_unfinished(run_dir: Path) -> list[str]:
    """Remove what an interrupted write left under a temporary name: checkpoint directories
    (`.step-*.tmp<pid>`) and files (`.NAME.<pid>-<hex>.tmp`). A checkpoint set aside while its
    step was written again (`.step-*.old<pid>`) goes back in place if that write never finished.
    Only safe while the run is locked (no other process writes). Returns what was removed."""
    removed = []
    root = Path(run_dir) / CHECKPOINTS
    for path in sorted(root.glob(f".{PREFIX}*")) if root.is_dir() else ():
        name, _, kind = path.name[1:].rpartition(".")
        final = root / name
        if kind.startswith("old") and not final.exists():
            path.rename(final)
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(str(path.relative_to(run_dir)))
    for path in sorted(Path(run_dir).glob(".*.tmp")):
        path.unlink(missing_ok=True)
        removed.append(path.name)
    return removed


class DamagedCheckpoint(Exception):
    """A checkpoint file whose contents are not what was written (or not a checkpoint)."""


def read_checkpoint(
    path: Path, with_state: bool = True
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(weights, state) of one checkpoint directory, each file checked against the manifest
    (checkpoints written before manifests existed are read unchecked).

    Raises:
        DamagedCheckpoint: a file differs from the manifest, or the state lacks a key.
        Exception: whatever safetensors or torch.load raise on a file they cannot parse.
    """
    listed = read_manifest(path)
    weights = safetensors_load(verified(path, "model.safetensors", listed))
    if not with_state:
        return weights, {}
    state = torch.load(io.BytesIO(verified(path, "state.pt", listed)), weights_only=True)
    if not isinstance(state, dict):
        raise DamagedCheckpoint(f"state.pt holds a {type(state).__name__}, not a checkpoint state")
    for key, kind in STATE_KEYS.items():
        if not isinstance(state.get(key), kind | int if kind is float else kind):
            raise DamagedCheckpoint(f"state.pt has no '{key}' ({kind.__name__})")
    if state["step"] != int(path.name[len(PREFIX) :]):
        raise DamagedCheckpoint(f"state.pt is of step {state['step']}, not of {path.name}")
    return weights, state


def read_manifest(path: Path) -> dict[str, Any] | None:
    """The manifest's file entries; None for a checkpoint written before manifests."""
    if not (path / MANIFEST).exists():
        return None
    try:
        listed = json.loads((path / MANIFEST).read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DamagedCheckpoint(f"{MANIFEST} cannot be read ({exc})") from None
    if not isinstance(listed, dict):
        raise DamagedCheckpoint(f"{MANIFEST} lists no files")
    return listed


def verified(path: Path, name: str, listed: dict[str, Any] | None) -> bytes:
    """The bytes of `path / name`, if they are what the manifest says was written."""
    data = (path / name).read_bytes()
    if listed is None:
        return data
    entry = listed.get(name)
    if not isinstance(entry, dict):
        raise DamagedCheckpoint(f"{MANIFEST} does not list {name}")
    if entry.get("bytes") != len(data):
        raise DamagedCheckpoint(f"{name} is {len(data)} bytes, {entry.get('bytes')} were written")
    if entry.get("sha256") != hashlib.sha256(data).hexdigest():
        raise DamagedCheckpoint(f"{name} does not match its SHA-256 in {MANIFEST}")
    return data


def load_latest(
    run_dir: Path,
    model: nn.Module,
    warn: Callable[[str], None],
    with_state: bool = True,
    restore: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any] | None:
    """Load the newest readable checkpoint into `model` (and, through `restore`, whatever else
    its state feeds: the optimizer); returns its state (None: no checkpoint).

    A damaged checkpoint (unreadable, not matching its manifest, missing state, another model's
    weights, state that `restore` rejects) is reported through `warn`, and the previous one is
    tried.
    """
    for step, path in reversed(list_checkpoints(run_dir)):
        try:
            weights, state = read_checkpoint(path, with_state)
            model.load_state_dict(weights)
            if restore is not None:
                restore(state)
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

"""The directory of a prepare: what its shards depend on (`Settings`), its progress file,
its index, its lock, and where an interrupted prepare goes on (see prepare.py)."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from corruptions.errors import DataError, UsageError

from . import shards
from .files import write_atomic
from .sources import Meter
from .streams import changed


@dataclass(frozen=True)
class Settings:
    """What the shards of a directory depend on; a prepare resumes only with the same."""

    source: str
    identity: dict[str, Any]
    tokenizer_sha256: str
    dtype: str
    heldout: float
    shard_tokens: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def check_source(settings: Settings) -> None:
    """Stop when the source changed or disappeared while it was read."""
    if "path" not in settings.identity:
        return
    how = changed(Path(settings.source), settings.identity)
    if how is not None:
        raise DataError(
            f"{settings.source} changed while it was being prepared: {how}",
            "run the same command again when it no longer changes: it starts over",
        )


def save_progress(
    root: Path,
    settings: Settings,
    written: dict[str, list[shards.ShardInfo]],
    documents: int,
    split: tuple[bool, bool],
) -> None:
    """DIR/progress.json: the complete shards and how many source documents they hold."""
    data = {
        "settings": settings.to_json(),
        "documents": documents,
        "split": list(split),
        "shards": {k: [s.to_json() for s in v] for k, v in written.items()},
    }
    try:
        write_atomic(root / shards.PROGRESS, json.dumps(data, indent=1) + "\n")
    except OSError as exc:
        raise DataError(f"cannot write {root / shards.PROGRESS}: {exc.strerror}") from None


def write_index(
    root: Path,
    settings: Settings,
    tokenizer_json: str,
    written: dict[str, list[shards.ShardInfo]],
    documents: int,
    characters: int,
    meter: Meter,
) -> dict[str, Any]:
    """tokenizer.json, then index.json (what makes the directory a corpus), then progress.json
    goes."""
    splits = {}
    for split in shards.SPLITS:
        infos = written.get(split, [])
        splits[split] = {
            "tokens": sum(s.tokens for s in infos),
            "documents": sum(s.documents for s in infos),
            "shards": [s.to_json() for s in infos],
        }
    if not splits["train"]["tokens"]:
        raise DataError(
            f"{settings.source} holds no text that the tokenizer turns into tokens",
            "check the source" + (f" ({meter.skipped.warning()})" if meter.skipped.count else ""),
        )
    index = {
        "format": shards.FORMAT,
        "version": shards.VERSION,
        "tokenizer": {"sha256": settings.tokenizer_sha256},
        "dtype": settings.dtype,
        "settings": settings.to_json(),
        "documents": documents,
        "characters": characters,
        "splits": splits,
        "skipped": {"count": meter.skipped.count, "first": meter.skipped.first},
    }
    try:
        write_atomic(root / shards.TOKENIZER, tokenizer_json)
        write_atomic(root / shards.INDEX, json.dumps(index, indent=1) + "\n")
    except OSError as exc:
        raise DataError(f"cannot write the index of {root}: {exc.strerror}") from None
    (root / shards.PROGRESS).unlink(missing_ok=True)
    return index


def check_out(root: Path) -> None:
    """`out` must be new, empty, or a prepare's directory."""
    if root.exists() and not root.is_dir():
        raise UsageError(f"--out {root} is a file", "give a directory for the prepared corpus")
    if root.is_dir() and not shards.is_prepared(root):
        others = [p.name for p in root.iterdir() if p.name != LOCK]
        if others:
            raise UsageError(
                f"{root} holds files that are not a prepared corpus ({others[0]}, ...)",
                "pick another --out (a new or empty directory)",
            )


def finished(root: Path, settings: Settings) -> dict[str, Any] | None:
    """The index of `root` when it holds this corpus already; an error when it holds another."""
    if not (root / shards.INDEX).is_file():
        return None
    index = shards.read_index(root)
    before = index.get("settings", {})
    if before == settings.to_json():
        return index
    what = differs(before, settings)
    raise UsageError(
        f"{root} holds a corpus prepared with another {what}",
        "pick another --out, or delete it to prepare it again",
    )


def differs(before: dict[str, Any], settings: Settings, but: str = "") -> str:
    names = {
        "source": "source",
        "identity": "version of the source (it changed since)",
        "tokenizer_sha256": "tokenizer",
        "dtype": "tokenizer",
        "heldout": "--heldout",
        "shard_tokens": "shard size",
    }
    now = settings.to_json()
    return next((names[k] for k in names if k != but and before.get(k) != now[k]), "format")


def resume_state(root: Path, settings: Settings) -> tuple[dict[str, Any], str | None]:
    """Where to start: after the shards an interrupted prepare left (when its settings are
    these and its shards are whole), else from the start (and why, when there was one)."""
    fresh: dict[str, Any] = {
        "documents": 0,
        "split": [False, False],
        "shards": {"train": [], "heldout": []},
    }
    path = root / shards.PROGRESS
    if not path.is_file():
        return fresh, None
    try:
        saved = json.loads(path.read_bytes())
        before = saved["settings"]
        done = {
            k: [shards.ShardInfo(**s) for s in saved["shards"].get(k, [])] for k in shards.SPLITS
        }
    except (OSError, ValueError, KeyError, TypeError):
        path.unlink(missing_ok=True)
        return fresh, "its progress file could not be read"
    if before != settings.to_json():
        if {**before, "identity": None} != {**settings.to_json(), "identity": None}:
            raise UsageError(
                f"{root} holds an unfinished prepare with another "
                f"{differs(before, settings, but='identity')}",
                "run it with the settings it was started with, or delete it to start again",
            )
        path.unlink()
        return fresh, f"{settings.source} changed since it was interrupted"
    for split in done.values():
        for info in split:
            shard = shards.Shard(root / info.file, info, settings.dtype)
            whole = shard.path.is_file() and shard.path.stat().st_size == info.bytes
            if not whole or shards.file_sha256(shard.path) != info.sha256:
                path.unlink()
                return fresh, f"its shard {info.file} is damaged"
    return {"documents": saved["documents"], "split": saved["split"], "shards": done}, None


LOCK = ".lock"


@contextlib.contextmanager
def lock(root: Path, wait: bool) -> Iterator[None]:
    """One prepare per directory at a time (flock on DIR/.lock)."""
    fd = os.open(root / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            raise DataError(
                f"{root} is being prepared by another process",
                "wait for it to finish, or pick another --out",
            ) from None
        except OSError:  # a file system without flock: go on unlocked
            pass
        yield
    finally:
        os.close(fd)


def remove_older(root: Path, source: str) -> None:
    """Remove cached corpora of an earlier version of `source` (not `root`)."""
    for other in root.parent.iterdir():
        if other == root or not (other / shards.INDEX).is_file():
            continue
        with contextlib.suppress(OSError, ValueError, DataError):
            index = shards.read_index(other)
            if index["settings"]["source"] == source:
                for path in other.iterdir():
                    path.unlink()
                other.rmdir()

"""Where derived data is kept, and the one way this project writes a file.

Every file the project writes (the corpus and token caches, tokenizers, a run's config, metrics
and checkpoints) goes through `write_atomic` or `write_file`: bytes serialised in memory first,
then `os.write` to a temporary name in the same directory, fsync, rename. A crash never leaves a
file that looks whole, and a full disk raises `OSError` with its errno (ENOSPC vs EACCES), which
`torch.save` and safetensors do not give (they report RuntimeError("unexpected pos ...")).
"""

from __future__ import annotations

import os
import secrets
import stat
from collections.abc import Sequence
from pathlib import Path

from corruptions.errors import DataError, UsageError

KINDS = {  # what lstat says a path is, for the files the project refuses to write over
    stat.S_IFDIR: "a directory",
    stat.S_IFLNK: "a symbolic link",
    stat.S_IFIFO: "a named pipe",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}


def cache_dir() -> Path:
    """Where the corpus and tokenised data are cached: $OBJECTIVES_CACHE, else
    $XDG_CACHE_HOME/objectives, else ~/.cache/objectives."""
    if os.environ.get("OBJECTIVES_CACHE"):
        return Path(os.environ["OBJECTIVES_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "objectives"


def write_all(fd: int, data: bytes | memoryview) -> None:
    """Write all of `data` to `fd` (one `os.write` may take only part of it)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


Data = bytes | memoryview | Sequence[bytes | memoryview]  # one buffer, or several in order


def write_file(path: Path, data: Data) -> None:
    """Create `path` holding `data`, flushed to disk; raises OSError (errno kept) on failure."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        for part in [data] if isinstance(data, (bytes, memoryview)) else data:
            write_all(fd, part)
        os.fsync(fd)
    finally:
        os.close(fd)


def kind_of(path: Path) -> str | None:
    """What `path` is, in words, unless it is a regular file or nothing (None); a symbolic link
    is itself, whatever it points to."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return None
    return None if stat.S_ISREG(mode) else KINDS.get(stat.S_IFMT(mode), "not a regular file")


def check_output_file(path: Path) -> None:
    """Refuse, before any work, an output file the project would write over but does not own:
    anything but a regular file or a new path (a device, a named pipe, a symbolic link, a
    directory), or a path below a file.

    Raises:
        UsageError: `path` is something else than a regular file or a new path.
        DataError: a parent of `path` is a file.
    """
    kind = kind_of(path)
    if kind is not None:
        raise UsageError(
            f"refusing to write over {path}: it is {kind}, not a regular file",
            "give a new path or a regular file",
        )
    for parent in path.parents:
        if parent.exists() and not parent.is_dir():
            raise DataError(f"cannot write {path}: {parent} is a file, not a directory")


def write_output_file(path: Path, data: bytes | str) -> None:
    """`write_atomic` for a file the user named: checked again just before (`check_output_file`),
    so a device or a link that appeared meanwhile is refused, not replaced."""
    check_output_file(path)
    write_atomic(path, data)


def write_atomic(path: Path, data: Data | str) -> None:
    """Replace `path` by `data` (several buffers are written one after the other, never joined
    in memory) whole or not at all (parent directories are created).

    Raises:
        OSError: the file could not be written; nothing is left behind.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    try:
        write_file(tmp, data.encode() if isinstance(data, str) else data)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise

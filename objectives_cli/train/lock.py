"""One writer per run directory: an exclusive `fcntl.flock` on RUN/.lock, held by the process
that trains the run (rank 0 under torchrun) from its start to its end, fresh or resumed.

The file holds the owner's "pid host", for the error a second writer gets. The kernel drops a
flock when its holder dies, so a run that was killed never blocks the next one.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
from collections.abc import Callable
from pathlib import Path

from .checkpoints import RunError, WriteError

HOST = socket.gethostname()


class RunLock:
    """An exclusive lock on a run directory, so that one process at a time trains it:
    `fcntl.flock` on RUN/.lock, which holds the owner's "pid host". The kernel drops a flock
    when its holder dies, so a lock left by a killed run never blocks; one still held by a
    child that outlived it (a forked worker) is taken over when the pid it names is gone."""

    NAME = ".lock"

    def __init__(self, run_dir: Path, warn: Callable[[str], None]) -> None:
        self.run_dir, self.fd = Path(run_dir), -1
        self.created = not self.run_dir.exists()
        path = self.run_dir / self.NAME
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            for _ in range(3):  # another process may replace a stale lock file meanwhile
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
                if self.take(fd, path):
                    break
                os.close(fd)
            else:
                raise RunError(f"cannot lock {self.run_dir}: its lock keeps changing")
        except OSError as exc:
            if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                raise WriteError(path, exc, self.run_dir) from None
            warn(
                f"warning: {self.run_dir} cannot be locked here ({exc.strerror}); make sure "
                "no other run writes to it"
            )

    def take(self, fd: int, path: Path) -> bool:
        """Lock `fd` (the open lock file) and write our name in it; False: try again."""
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.pread(fd, 200, 0).decode(errors="replace").split()
            if not stale(owner):
                os.close(fd)
                who = f"process {owner[0]}" if owner else "another process"
                where = f" on {owner[1]}" if len(owner) > 1 and owner[1] != HOST else ""
                raise RunError(
                    f"{self.run_dir} is in use by {who}{where}",
                    "wait for that run to finish (or stop it); a second run needs its own --out",
                ) from None
            path.unlink(missing_ok=True)  # held by a dead process's child: a fresh lock file
            return False
        if not path.exists() or path.stat().st_ino != os.fstat(fd).st_ino:
            return False  # the file was replaced or removed while we took it
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {HOST}\n".encode(), 0)
        self.fd = fd
        return True

    def release(self) -> None:
        """Unlock; a directory this lock created and nothing else filled is removed again."""
        if self.fd < 0:
            return
        path = self.run_dir / self.NAME
        if self.created and [p.name for p in self.run_dir.iterdir()] == [self.NAME]:
            path.unlink(missing_ok=True)
            self.run_dir.rmdir()
        os.close(self.fd)
        self.fd = -1


HOST = socket.gethostname()


def stale(owner: list[str]) -> bool:
    """Whether the lock owner "pid host" is a process of this machine that no longer runs."""
    if len(owner) < 2 or owner[1] != HOST or not owner[0].isdigit():
        return False
    try:
        os.kill(int(owner[0]), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False

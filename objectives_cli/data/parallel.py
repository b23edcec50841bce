"""Work shared out to processes, the results in input order: `data prepare` and `corrupt
--workers` run on this.

Workers are forked: what a task needs besides its argument (a tokenizer, a corruption, how to
write an example) is set in this process before the fork and inherited, never pickled; a task's
argument and result travel through a pipe. At most IN_FLIGHT tasks per worker wait ahead of the
one whose result comes next, so reading never runs far ahead and memory stays bounded. Fork, not
spawn: spawn would import the parent's `__main__` again in every worker (a second each, and it
fails for `python -`). The workers use no thread pools: each sets one thread (`one_thread`), and
the cores are shared out as processes.
"""

from __future__ import annotations

import contextlib
import copyreg
import io
import multiprocessing
import os
import pickle
import sys
import traceback
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")
IN_FLIGHT = 3  # tasks queued per worker
PROTOCOL = pickle.HIGHEST_PROTOCOL
Map = Callable[[Callable[[Any], Any], Iterable[Any]], Iterator[Any]]


def default_workers() -> int:
    """All the cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def one_thread() -> None:
    """No thread pools in this process: tokenizers' Rayon (TOKENIZERS_PARALLELISM, read at each
    call) and torch's intra-op threads, when torch is loaded. On a busy machine each of a batch's
    many small ops would wait for a second thread to be scheduled (10-250x slower)."""
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)


class threads:  # lower case: used as a function, `with threads(1):`
    """Run a block with `n` intra-op torch threads and (for 1) no tokenizers thread pool, then
    restore both: `one_thread` for a stretch of this process (corrupt's examples, CPU
    training's batch building) rather than for the rest of it. Reusable: one per step is free
    (setting the count costs well under a microsecond)."""

    def __init__(self, n: int = 1) -> None:
        self.n = n
        self.saved: list[tuple[str | None, int | None]] = []

    def __enter__(self) -> None:
        # torch is not imported for this (prepare needs none); where it is used, it is loaded
        torch = sys.modules.get("torch")
        count = torch.get_num_threads() if torch is not None else None
        self.saved.append((os.environ.get("TOKENIZERS_PARALLELISM"), count))
        if self.n == 1:
            os.environ["TOKENIZERS_PARALLELISM"] = "false"
        if torch is not None:
            torch.set_num_threads(self.n)

    def __exit__(self, *exc: object) -> None:
        env, count = self.saved.pop()
        torch = sys.modules.get("torch")
        if torch is not None and count is not None:
            torch.set_num_threads(count)
        if env is None:
            os.environ.pop("TOKENIZERS_PARALLELISM", None)
        else:
            os.environ["TOKENIZERS_PARALLELISM"] = env


@contextlib.contextmanager
def ordered(workers: int, start: Callable[[], None] = one_thread) -> Iterator[Map]:
    """A `map` over `workers` forked processes, each set up by `start`, yielding results in
    input order; in this process when `workers` is 1 (`start` is then the caller's to run)."""
    if workers <= 1:
        yield map
        return
    with multiprocessing.get_context("fork").Pool(workers, initializer=start) as pool:

        def run(fn: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
            pending: deque[Any] = deque()
            for item in items:
                pending.append(pool.apply_async(_pickled, (fn, dumps(item))))
                if len(pending) >= IN_FLIGHT * workers:
                    yield pickle.loads(pending.popleft().get())
            while pending:
                yield pickle.loads(pending.popleft().get())

        yield run


def _pickled(fn: Callable[[Any], Any], item: bytes) -> bytes:
    """`fn` on a task pickled by `dumps`, its result pickled the same way. An exception that
    would not unpickle in the parent (which would stop the pool's result thread and leave the
    parent waiting for ever) is raised as a RuntimeError with the worker's traceback."""
    try:
        return dumps(fn(pickle.loads(item)))
    except Exception as exc:
        try:
            pickle.loads(pickle.dumps(exc))
        except Exception:
            raise RuntimeError(f"in a worker process:\n{traceback.format_exc()}") from None
        raise


def dumps(value: Any) -> bytes:
    """`value` pickled, its CPU tensors as numpy arrays: as bytes in the pipe, not as torch's
    shared-memory files (a file and a descriptor each) nor through torch.save (a zip archive
    each), both of which cost more than the work of a small task."""
    buffer = io.BytesIO()
    pickler = pickle.Pickler(buffer, PROTOCOL)
    torch = sys.modules.get("torch")
    if torch is not None:
        pickler.dispatch_table = {**copyreg.dispatch_table, torch.Tensor: _reduce_tensor}
    pickler.dump(value)
    return buffer.getvalue()


def _reduce_tensor(tensor: Any) -> tuple[Callable[[Any], Any], tuple[Any]]:
    return _tensor, (tensor.numpy(),)


def _tensor(array: Any) -> Any:
    import torch

    return torch.from_numpy(array)

"""`objectives data prepare`: a source read as a stream, tokenised in parallel, into shards.

    source --(streams.py, a block at a time)--> documents --(splits.HeldoutSplit)--> units of
    about UNIT_CHARS characters --(workers: tokenise)--> arrays --(in input order)--> a
    `shards.ShardWriter` per split --> DIR/train-*.bin, DIR/heldout-*.bin, then DIR/index.json

The main process reads, splits and writes; `workers` processes tokenise (`--workers`, all cores
by default), each with one thread (`TOKENIZERS_PARALLELISM=false`: processes, not threads,
share out the cores). Units are written in input order whatever finishes first, so the shards
depend on the source, the tokenizer and the settings only, not on the number of workers. A
document longer than a unit (one 50 MB line) is cut into units at its sentence pieces
(`encoding.pieces`) and tokenised a unit at a time, with progress, in bounded memory.

Interrupted (Ctrl-C, a crash, a full disk), a prepare leaves its complete shards and
DIR/progress.json, which lists them and how many documents of the source they hold: the same
command goes on after them, reading the source again up to there without tokenising it. A source
that changed meanwhile (its size or time, `streams.identity`) is prepared again from the start.
Shards are written under a temporary name and renamed when whole, and DIR/index.json, written
last, is what makes DIR a corpus: a reader never trusts a half-written shard.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from corruptions.errors import DataError

from . import shards
from .encoding import EncodedArrays, encode_arrays, pieces
from .files import cache_dir
from .parallel import ordered, threads
from .prepared import (
    Settings,
    check_out,
    check_source,
    finished,
    lock,
    remove_older,
    resume_state,
    save_progress,
    write_index,
)
from .sources import Meter, existing, load_hf, path_documents
from .splits import HELDOUT_SHARE, HeldoutSplit, iter_sentences
from .streams import identity, row_documents, text_documents

UNIT_CHARS = 1 << 18  # characters tokenised at a time by one worker
UNIT_DOCUMENTS = 2048  # and documents
SHARD_TOKENS = 1 << 24  # tokens per shard (16.8 M: 38 MB with uint16 ids); whole documents each
REPORT_SECONDS = 0.5  # progress, at most this often


@dataclass
class Progress:
    """How far a prepare is: bytes read (of `total` when known), documents, tokens written."""

    read: int = 0
    total: int | None = None
    documents: int = 0
    tokens: int = 0
    shards: int = 0
    seconds: float = 0.0
    resumed: int = 0  # documents that an earlier, interrupted prepare had done

    def line(self) -> str:
        """How far it is, in one line: bytes, documents, tokens and tokens per second."""
        read = f"{self.read / 1e6:,.1f}"
        share = f"{read} of {self.total / 1e6:,.1f} MB" if self.total else f"{read} MB"
        rate = self.tokens / self.seconds / 1e6 if self.seconds else 0.0
        return (
            f"{share} read, {self.documents:,} documents, {self.tokens:,} tokens "
            f"({rate:.2f} M tokens/s)"
        )


@dataclass
class Result:
    """What `prepare` did: the directory, its index, and whether there was anything to do."""

    root: Path
    index: dict[str, Any]
    progress: Progress
    done_before: bool = False  # the directory held this corpus already
    restarted: str | None = None  # why an unfinished prepare was started again


@dataclass
class Unit:
    """Documents to tokenise at once: (held out, text or its pieces) each."""

    items: list[tuple[bool, Any]]
    ends: bool = True  # False: the last document goes on in the next unit
    pushed: int = 0  # source documents read when the unit was cut
    resumable: bool = False  # nothing held back: a prepare may resume after this unit
    state: tuple[bool, bool] = (False, False)  # the held-out split's (trained, held)


# ---- workers ------------------------------------------------------------------------------

_TOKENIZER: Any = None  # set before the workers fork: they inherit it


def _encode(items: list[tuple[bool, Any]], dtype: str) -> EncodedArrays:
    per_doc = [
        [p for s in iter_sentences(x) for p in pieces(s)] if isinstance(x, str) else x
        for _, x in items
    ]
    return encode_arrays(_TOKENIZER, per_doc, np.dtype(dtype).type)


def _encode_task(task: tuple[list[tuple[bool, Any]], str]) -> EncodedArrays:
    return _encode(*task)


def encoded(
    units: Iterator[Unit], workers: int, tokenizer_json: str, dtype: str
) -> Iterator[tuple[Unit, EncodedArrays]]:
    """(unit, its tokens) in input order, tokenised by `workers` processes (this one when 1),
    one thread each (`parallel.one_thread`, `parallel.threads`)."""
    global _TOKENIZER
    from tokenizers import Tokenizer

    _TOKENIZER = Tokenizer.from_str(tokenizer_json)
    kept: deque[Unit] = deque()  # the units sent, whose tokens come back in the same order

    def sent() -> Iterator[tuple[list[tuple[bool, Any]], str]]:
        for unit in units:
            kept.append(unit)
            yield unit.items, dtype

    with threads(1) if workers <= 1 else contextlib.nullcontext(), ordered(workers) as run:
        for arrays in run(_encode_task, sent()):
            yield kept.popleft(), arrays


# ---- reading ------------------------------------------------------------------------------


def read_source(source: str, meter: Meter, nodes: tuple[int, int] | None = None) -> Iterator[str]:
    """The documents of `source` as a stream: a file, a directory, '-' (stdin), or hf:NAME
    (streamed; `nodes` = (this node, nodes): only this node's share of the rows)."""
    if source == "-":
        return text_documents(sys.stdin.buffer, "<stdin>", meter)
    if source.startswith("hf:"):
        dataset = load_hf(source[3:], streaming=True)
        if nodes is not None and nodes[1] > 1:
            from datasets.distributed import split_dataset_by_node

            dataset = split_dataset_by_node(dataset, rank=nodes[0], world_size=nodes[1])
        return row_documents(dataset, source, meter)
    return path_documents(existing(source), meter)


def source_identity(source: str, nodes: tuple[int, int] | None = None) -> dict[str, Any]:
    """What names the source's content: a path's size and times, a dataset's name (and this
    node's share; a dataset changed on the Hub is not noticed), or the time for stdin."""
    if source == "-":  # read once: never the same as before, so never resumed or reused
        return {"stdin": time.time_ns()}
    if source.startswith("hf:"):
        return {"dataset": source, "nodes": list(nodes) if nodes else None}
    return identity(existing(source))


def units(documents: Iterator[str], split: HeldoutSplit) -> Iterator[Unit]:
    """The documents, held-out ones marked, as units of about UNIT_CHARS characters."""
    items: list[tuple[bool, Any]] = []
    size = pushed = 0

    def cut() -> Unit:
        nonlocal items, size
        unit = Unit(items, True, pushed, not split.holding, (split.trained, split.held))
        items, size = [], 0
        return unit

    def add(routed: Iterator[tuple[bool, str]]) -> Iterator[Unit]:
        nonlocal size
        for held, text in routed:
            if len(text) > UNIT_CHARS:
                if items:
                    yield cut()
                yield from long_document(held, text, pushed)
            else:
                items.append((held, text))
                size += len(text)

    for document in documents:
        pushed += 1
        yield from add(split.push(document))
        if size >= UNIT_CHARS or len(items) >= UNIT_DOCUMENTS:  # after all of one push
            yield cut()
    yield from add(split.finish())
    if items:
        yield cut()


def long_document(held: bool, text: str, pushed: int) -> Iterator[Unit]:
    """A document longer than a unit, as units of its sentence pieces (the last one ends it)."""
    group: list[tuple[str, int]] = []
    size = 0
    for piece in (p for s in iter_sentences(text) for p in pieces(s)):
        group.append(piece)
        size += len(piece[0])
        if size >= UNIT_CHARS:
            yield Unit([(held, group)], False, pushed)
            group, size = [], 0
    yield Unit([(held, group)], True, pushed)


# ---- writing ------------------------------------------------------------------------------


@dataclass
class Writers:
    """The two splits' shard writers, and a sentence opening carried between the units of one
    long document (a unit whose last sentence yielded no token yet)."""

    train: shards.ShardWriter
    heldout: shards.ShardWriter
    opening: bool = False
    written: dict[str, list[shards.ShardInfo]] = field(default_factory=dict)

    def add(self, unit: Unit, arrays: EncodedArrays) -> None:
        held = np.array([h for h, _ in unit.items], dtype=bool)
        if self.opening and len(arrays.ids):  # a sentence opened in the unit before
            arrays.sentence_starts[0] = True
        self.opening = (self.opening and not len(arrays.ids)) or arrays.trailing_open
        if unit.ends:
            self.opening = False
        per_token = np.repeat(held, arrays.lengths)
        for writer, mine, tokens in (
            (self.train, ~held, ~per_token),
            (self.heldout, held, per_token),
        ):
            lengths = arrays.lengths[mine]
            if len(lengths):
                writer.add(
                    arrays.ids[tokens],
                    arrays.word_starts[tokens],
                    arrays.sentence_starts[tokens],
                    lengths,
                    ends=unit.ends or not mine[-1],
                )

    @property
    def full(self) -> bool:
        return self.train.full or self.heldout.full

    def flush(self) -> None:
        for split, writer in (("train", self.train), ("heldout", self.heldout)):
            info = writer.flush()
            if info is not None:
                self.written.setdefault(split, []).append(info)


def prepare(
    source: str,
    out: str | Path,
    tokenizer_json: str,
    vocab_size: int,
    workers: int = 1,
    heldout: float = HELDOUT_SHARE,
    shard_tokens: int = SHARD_TOKENS,
    report: Callable[[Progress], None] | None = None,
    nodes: tuple[int, int] | None = None,
    wait: bool = False,
) -> Result:
    """Tokenise `source` into shards in `out` (see the module docstring): resumed where an
    interrupted prepare of the same source and settings stopped, nothing done when `out` holds
    this corpus already. `report` is called with the progress every REPORT_SECONDS. `wait`: for
    another process preparing `out` (else that is an error).

    Raises:
        DataError: bad input, a source that changed while read, a full disk.
        UsageError: `out` holds something else.
    """
    root = Path(out)
    started = time.monotonic()
    if source != "-" and not source.startswith("hf:"):
        source = str(existing(source).resolve())  # the same file from another directory
    settings = Settings(
        source,
        source_identity(source, nodes),
        shards.sha256_text(tokenizer_json),
        shards.id_type(vocab_size),
        heldout,
        shard_tokens,
    )
    check_out(root)
    root.mkdir(parents=True, exist_ok=True)
    with lock(root, wait):
        done = finished(root, settings)
        if done is not None:
            return Result(root, done, Progress(), done_before=True)
        state, restarted = resume_state(root, settings)
        shards.remove_leftovers(root, {s.file for split in state["shards"].values() for s in split})
        return run(
            root, settings, tokenizer_json, state, workers, nodes, report, started, restarted
        )


def run(
    root: Path,
    settings: Settings,
    tokenizer_json: str,
    state: dict[str, Any],
    workers: int,
    nodes: tuple[int, int] | None,
    report: Callable[[Progress], None] | None,
    started: float,
    restarted: str | None,
) -> Result:
    meter = Meter()
    done: dict[str, list[shards.ShardInfo]] = state["shards"]
    progress = Progress(
        tokens=sum(s.tokens for split in done.values() for s in split),
        shards=sum(map(len, done.values())),
        resumed=state["documents"],
    )
    characters = 0

    def counting(documents: Iterator[str]) -> Iterator[str]:
        nonlocal characters
        for doc in documents:
            progress.documents += 1
            characters += len(doc)
            yield doc

    stream = counting(read_source(settings.source, meter, nodes))
    for _ in range(state["documents"]):  # what the shards hold already: read, not tokenised
        if next(stream, None) is None:
            raise DataError(
                f"{settings.source} holds fewer documents than its interrupted prepare read",
                f"delete {root} and prepare it again",
            )
    split = HeldoutSplit(settings.heldout)
    if state["documents"]:
        split.resume(state["documents"], *state["split"])
    writers = Writers(
        shards.ShardWriter(
            root, "train", settings.dtype, settings.shard_tokens, len(done["train"])
        ),
        shards.ShardWriter(
            root, "heldout", settings.dtype, settings.shard_tokens, len(done["heldout"])
        ),
        written={k: list(v) for k, v in done.items()},
    )
    said = time.monotonic()

    def tell(force: bool = False) -> None:
        nonlocal said
        if report is not None and (force or time.monotonic() - said >= REPORT_SECONDS):
            said = time.monotonic()
            progress.read, progress.total = meter.read, meter.total
            progress.seconds = time.monotonic() - started
            report(progress)

    unsaved = False  # shards written since progress.json was
    for unit, arrays in encoded(units(stream, split), workers, tokenizer_json, settings.dtype):
        writers.add(unit, arrays)
        progress.tokens += len(arrays.ids)
        if writers.full and unit.ends:
            writers.flush()
            progress.shards = sum(map(len, writers.written.values()))
            check_source(settings)
            unsaved = True
        if unsaved and unit.resumable:  # nothing held back: a place to go on from
            save_progress(root, settings, writers.written, unit.pushed, unit.state)
            unsaved = False
        tell()
    writers.flush()
    check_source(settings)
    index = write_index(
        root, settings, tokenizer_json, writers.written, progress.documents, characters, meter
    )
    progress.shards = sum(map(len, writers.written.values()))
    tell(force=True)
    return Result(root, index, progress, restarted=restarted)


def cached(
    source: str,
    tokenizer_json: str,
    vocab_size: int,
    heldout: float,
    workers: int,
    report: Callable[[Progress], None] | None = None,
    nodes: tuple[int, int] | None = None,
) -> Result:
    """`prepare` into the cache (`prepared/` in the cache directory), keyed by the source's
    identity, the tokenizer and the settings: what `train --data` does with a large raw source.
    The first run prepares (or finishes an interrupted prepare), later ones find it at once;
    when a source changes, the directory of its older version is removed."""
    key = json.dumps(
        [
            source_identity(source, nodes),
            shards.sha256_text(tokenizer_json),
            heldout,
            shards.VERSION,
        ]
    )
    name = hashlib.sha256(key.encode()).hexdigest()[:24]
    root = cache_dir() / "prepared" / name
    result = prepare(
        source,
        root,
        tokenizer_json,
        vocab_size,
        workers,
        heldout,
        report=report,
        nodes=nodes,
        wait=True,
    )
    if not result.done_before:
        remove_older(root, source)
    return result

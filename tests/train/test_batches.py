"""Which rows a step reads: every micro-batch of every rank its own rows, every row once an epoch,
the same rows for the same (seed, step) whatever the process count."""

from __future__ import annotations

from collections import Counter
from typing import Any

import torch

from corruptions import IGNORE, Corrupted, Tokens
from objectives_cli.data.encoding import EncodedDoc
from objectives_cli.data.packing import corpus_from, pack
from objectives_cli.train.batches import ObjectiveInfo, batch_fn
from tests.helpers import TINY
from tests.train.conftest import tiny

ROWS = 48  # documents of one row each; a row's tokens all hold its number + 11


class Recorder:
    """A corruption that notes which rows it was given."""

    def __init__(self) -> None:
        self.rows: list[list[int]] = []

    def __call__(self, batch: Tokens, vocab: Any, gen: Any, **_: Any) -> Corrupted:
        self.rows.append([int(i) - 11 for i in batch.ids[:, 0]])
        return Corrupted(batch.ids, batch.real, torch.full_like(batch.ids, IGNORE))


def read(grad_accum: int, world: int, steps: int) -> list[list[list[int]]]:
    """Per step, the rows of each (micro-batch, rank) in shard order."""
    docs = [EncodedDoc([r + 11] * 4, [True] * 4, [True, False, False, False]) for r in range(ROWS)]
    blocks = pack(corpus_from(docs), 4, "rows")
    cfg = tiny("unused", batch_size=4, grad_accum=grad_accum)
    info = ObjectiveInfo("fake", "encoder", "rows", 0, [], [], None, False, False)
    corruption = Recorder()
    get = batch_fn(cfg, blocks, corruption, TINY, info, torch.device("cpu"), world)
    out = []
    for step in range(steps):
        for micro in range(grad_accum):
            for rank in range(world):
                get(step, micro, rank)
        out.append(corruption.rows[-grad_accum * world :])
        del corruption.rows[:]
    return out


def test_each_shard_of_a_step_reads_its_own_rows_and_an_epoch_reads_every_row_once() -> None:
    steps = read(grad_accum=2, world=3, steps=2)  # 2 steps x 6 shards x 4 rows = one epoch
    for shards in steps:
        flat = [r for shard in shards for r in shard]
        assert len(set(flat)) == len(flat)  # no row twice in a step
    assert Counter(r for shards in steps for shard in shards for r in shard) == Counter(range(ROWS))


def test_a_step_reads_the_same_rows_whatever_the_process_count() -> None:
    one = read(grad_accum=4, world=1, steps=3)
    two = read(grad_accum=2, world=2, steps=3)
    for a, b in zip(one, two, strict=True):
        assert sorted(map(sorted, a)) == sorted(map(sorted, b))


class ThreadCounter(Recorder):
    """A corruption that notes torch's intra-op thread count when it is called."""

    def __init__(self) -> None:
        super().__init__()
        self.threads: list[int] = []

    def __call__(self, batch: Tokens, vocab: Any, gen: Any, **kw: Any) -> Corrupted:
        self.threads.append(torch.get_num_threads())
        return super().__call__(batch, vocab, gen, **kw)


def test_cpu_batches_are_corrupted_on_one_thread_and_the_model_keeps_its_threads() -> None:
    docs = [EncodedDoc([r + 11] * 4, [True] * 4, [True, False, False, False]) for r in range(8)]
    blocks = pack(corpus_from(docs), 4, "rows")
    info = ObjectiveInfo("fake", "encoder", "rows", 0, [], [], None, False, False)
    corruption = ThreadCounter()
    get = batch_fn(
        tiny("unused", batch_size=4), blocks, corruption, TINY, info, torch.device("cpu"), 1
    )
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        get(0, 0, 0)
        get(1, 0, 0)
        assert corruption.threads == [1, 1]
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)

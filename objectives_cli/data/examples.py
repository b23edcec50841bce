"""Text in, corrupted examples out: the pipeline behind `corrupt`, `describe` and the docs.

Documents are tokenised and cut into blocks of at most `max_length` tokens (`packing.pack`'s
rows, never crossing a document), in input order. Block i is example i. Blocks are corrupted
`BATCH` at a time, one whole-batch call each, every batch padded to `max_length` columns, and
batch k draws from `make_generator(seed, k)`. A batch's make-up therefore follows from the input
alone, so example i is the same whatever `--limit` asks for, and the same input and seed give
the same bytes. (Changing `BATCH` changes the examples; the golden files pin it.)

Each block keeps the text it was cut from and each token's characters in it (the tokenizer's
offsets), for the show view (`Example.text`, `Example.offsets`); JSONL rows do without
(`with_text=False` spares that work per token).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import tokenizers
import torch

from corruptions import IGNORE, Corrupted, Corruption, Vocab, make_generator
from corruptions.errors import DataError

from .encoding import EncodedDoc
from .parallel import ordered
from .rows import Part, Rows, batches, chunks, encode_group, marked, pack_groups, text_blocks

BATCH = 16  # blocks per corruption call; part of what defines example i

SAMPLE_DOCUMENTS: tuple[str, ...] = (
    "The quick brown fox jumps over the lazy dog. The dog does not move. "
    "After a while the fox gets bored and walks back into the forest.",
    "Python is a programming language that lets you work quickly. "
    "It runs on many platforms, and its standard library is large.",
)  # the fixed text that `describe` and the generated docs corrupt


@dataclass(frozen=True)
class Example:
    """One corrupted block with padding trimmed, as plain Python values."""

    index: int
    source_ids: list[int]  # the clean block (content only, no specials added)
    input_ids: list[int]
    labels: list[int]  # encoder/decoder: aligned with input_ids; seq2seq: the target sequence
    decoder_input_ids: list[int] | None  # seq2seq only
    ops: list[int] | None  # `Op` code per source token
    extras: dict[str, Any]  # per-example scalars or lists, trimmed like the sequence they follow
    origin: list[int] | None = None  # source position per input token, -1: none (Corrupted.origin)
    text: str = ""  # the input text the block was cut from, first token to last, as written
    # per source token, its characters in `text` (start, end), whitespace around it left out: a
    # token of whitespace only (a lone `Ġ` or `▁`) is (end, end); None when the text is unknown
    offsets: list[tuple[int, int]] | None = None

    @property
    def seq2seq(self) -> bool:
        return self.decoder_input_ids is not None


def corrupt_documents(
    corruption: Corruption,
    tok: tokenizers.Tokenizer,
    vocab: Vocab,
    documents: Iterable[str],
    max_length: int,
    seed: int,
    limit: int | None = None,
    with_text: bool = True,
    workers: int = 1,
    finish: Callable[[Example], Any] | None = None,
    unknown: UnknownCount | None = None,
) -> Iterator[Any]:
    """Examples 0, 1, ... (at most `limit`) of `documents` corrupted with `seed`, each with the
    text it was cut from unless `with_text` is False, or what `finish` makes of each (a JSONL
    line); a DataError when the documents hold no token at all (only characters the tokenizer
    drops). `unknown` counts the [UNK] tokens of the examples given.

    With `workers` > 1, forked processes (`parallel.ordered`) tokenise groups of documents and
    corrupt (and `finish`) batches, while this one reads, packs and regroups: example i is made
    from the same batch, with the same generator, so the output is the same, in the same order.
    """
    global _JOB
    _JOB = Job(corruption, tok, vocab, seed, with_text, finish, max_length, vocab.pad)
    sent: deque[list[Part]] = deque()  # groups sent to tokenise, in order

    def groups() -> Iterator[tuple[list[Part], bool]]:
        for group, whole in marked(chunks(documents)):
            sent.append(group)
            yield group, whole

    def numbered(source: Iterable[Rows]) -> Iterator[tuple[int, Rows, int]]:
        first = 0
        for number, rows in enumerate(source):
            yield number, rows, first
            first += len(rows)

    if limit == 0:
        return
    index = 0
    try:
        with ordered(workers) as run:
            encoded = ((sent.popleft(), docs) for docs in run(_encode_task, groups()))
            made = batches(pack_groups(encoded, max_length, vocab.pad, with_text), BATCH)
            for results in run(_corrupt_task, numbered(made)):
                for payload, n_tokens, n_unknown in results:
                    if unknown is not None:
                        unknown.n_tokens += n_tokens
                        unknown.n_unknown += n_unknown
                    yield payload
                    index += 1
                    if limit is not None and index >= limit:
                        return
    finally:
        _JOB = None
    if index == 0:
        raise DataError(
            "the input holds no tokens: only spaces or characters the tokenizer "
            "drops (zero-width or control characters)"
        )


@dataclass(frozen=True)
class Job:
    """What the workers of one `corrupt_documents` need besides their task: set in this process
    before they fork, so none of it is pickled."""

    corruption: Corruption
    tok: tokenizers.Tokenizer
    vocab: Vocab
    seed: int
    with_text: bool
    finish: Callable[[Example], Any] | None
    max_length: int = 0
    pad: int = 0

    def encode(self, group: list[Part], whole: bool) -> list[EncodedDoc] | Rows | None:
        return encode_group(self.tok, group, whole, self.with_text, self.max_length, self.pad)


_JOB: Job | None = None


def _encode_task(task: tuple[list[Part], bool]) -> list[EncodedDoc] | Rows | None:
    assert _JOB is not None
    return _JOB.encode(*task)


def _corrupt_task(task: tuple[int, Rows, int]) -> list[tuple[Any, int, int]]:
    """Batch `number` corrupted: per example, (it or what `finish` makes of it, its tokens,
    its [UNK] tokens)."""
    assert _JOB is not None
    number, rows, first = task
    job = _JOB
    out = job.corruption(rows.tokens, job.vocab, make_generator(job.seed, number), with_origin=True)
    return [
        (
            example if job.finish is None else job.finish(example),
            len(example.source_ids),
            example.source_ids.count(job.vocab.unk),
        )
        for example in unbatch(rows, out, first)
    ]


def corrupt_batches(
    corruption: Corruption, vocab: Vocab, source: Iterable[Rows], seed: int, limit: int | None
) -> Iterator[Example]:
    """`corrupt_documents` on batches already made (`batches(text_blocks(...), BATCH)`)."""
    index = 0
    for number, rows in enumerate(source):
        if limit is not None and index >= limit:
            return
        out = corruption(rows.tokens, vocab, make_generator(seed, number), with_origin=True)
        for example in unbatch(rows, out, index):
            if limit is not None and example.index >= limit:
                return
            yield example
        index += len(rows)
    if index == 0 and limit != 0:
        raise DataError(
            "the input holds no tokens: only spaces or characters the tokenizer "
            "drops (zero-width or control characters)"
        )


def zoo(
    tok: tokenizers.Tokenizer,
    vocab: Vocab,
    documents: Sequence[str],
    max_length: int,
    seed: int,
    limit: int | None = 1,
) -> Iterator[tuple[str, Iterator[Example]]]:
    """The same text under every registered objective: (name, its first `limit` examples) in
    the registry's order. Example i of an objective is the one `corrupt_documents` gives it (the
    text is tokenised and batched once, for all of them)."""
    import corruptions

    made: list[Rows] = []  # the batches read so far, shared by every objective
    source = batches(text_blocks(tok, documents, max_length, vocab.pad), BATCH)

    def replay() -> Iterator[Rows]:
        yield from made
        for batch in source:
            made.append(batch)
            yield batch

    for objective in corruptions.list_objectives():
        yield (
            objective.name,
            corrupt_batches(corruptions.create(objective.name), vocab, replay(), seed, limit),
        )


UNKNOWN_WARN_SHARE = 0.05  # warn when this share of the tokens or more is the unknown token


@dataclass
class UnknownCount:
    """How many source tokens of the examples that went through `watch` are [UNK]: text the
    tokenizer cannot represent (Chinese with the English WordPiece), which no objective then
    corrupts, since [UNK] is special."""

    unk: int
    n_unknown: int = 0
    n_tokens: int = 0

    def watch(self, examples: Iterable[Example]) -> Iterator[Example]:
        for example in examples:
            self.n_tokens += len(example.source_ids)
            self.n_unknown += example.source_ids.count(self.unk)
            yield example

    def warning(self, source: str | None) -> tuple[str, str] | None:
        """A warning and a hint when UNKNOWN_WARN_SHARE or more of the tokens are [UNK]."""
        if not self.n_tokens or self.n_unknown < UNKNOWN_WARN_SHARE * self.n_tokens:
            return None
        return (
            f"{self.n_unknown / self.n_tokens:.0%} of the {self.n_tokens} tokens are [UNK] (which "
            "no objective corrupts): the tokenizer cannot represent this text",
            f"train one on it: objectives tokenizer train {source or 'FILE'} --out tok.json, "
            "then --tokenizer tok.json",
        )


def unbatch(rows: Rows, out: Corrupted, first_index: int) -> Iterator[Example]:
    """Split a corrupted batch into per-example lists, padding trimmed."""
    batch = rows.tokens
    source_lens = batch.lengths.tolist()
    input_lens = out.attention_mask.sum(1).tolist()
    if out.decoder_input_ids is not None:  # the target runs to its last scored token
        scored = out.labels != IGNORE
        last = torch.where(scored, torch.arange(scored.size(1), device=scored.device) + 1, 0)
        target_lens = last.max(1).values.tolist() if scored.size(1) else [0] * len(input_lens)
    else:
        target_lens = input_lens
    # extras follow the input, the target or the source: whichever width they have (input first)
    widths = {batch.ids.size(1): source_lens, out.labels.size(1): target_lens}
    widths[out.input_ids.size(1)] = input_lens
    ids, inputs, labels = batch.ids.tolist(), out.input_ids.tolist(), out.labels.tolist()
    decoder = None if out.decoder_input_ids is None else out.decoder_input_ids.tolist()
    ops = None if out.ops is None else out.ops.tolist()
    origin = None if out.origin is None else out.origin.tolist()
    extras = {
        key: (value.tolist(), widths.get(value.size(1)) if value.dim() > 1 else None)
        for key, value in out.extras.items()
    }
    for b, (n, s, t) in enumerate(zip(source_lens, input_lens, target_lens, strict=True)):
        yield Example(
            index=first_index + b,
            source_ids=ids[b][:n],
            input_ids=inputs[b][:s],
            labels=labels[b][:t],
            decoder_input_ids=None if decoder is None else decoder[b][:t],
            ops=None if ops is None else ops[b][:n],
            extras={
                key: values[b] if lens is None else values[b][: lens[b]]
                for key, (values, lens) in extras.items()
            },
            origin=None if origin is None else origin[b][:s],
            text=rows.texts[b],
            offsets=rows.offsets[b],
        )

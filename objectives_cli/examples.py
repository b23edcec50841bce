"""Text in, corrupted examples out: the pipeline behind `corrupt`, `describe` and the docs.

Documents are tokenised and cut into blocks of at most `max_length` tokens (`batch_blocks`,
never crossing a document), in input order. Block i is example i. Blocks are corrupted
`BATCH` at a time, one whole-batch call each, every batch padded to `max_length` columns, and
batch k draws from `make_generator(seed, k)`. A batch's make-up therefore follows from the input
alone, so example i is the same whatever `--limit` asks for, and the same input and seed give
the same bytes. (Changing `BATCH` changes the examples; the golden files pin it.)
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import tokenizers
import torch
import torch.nn.functional as F

from corruptions import IGNORE, Corrupted, Corruption, Tokens, Vocab, make_generator
from corruptions.errors import DataError

from .tokenizer import batch_blocks, encode_documents

BATCH = 16  # blocks per corruption call; part of what defines example i
DOCS_PER_CHUNK = 64  # documents tokenised at a time, so `--limit 5` reads little of a big corpus

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

    @property
    def seq2seq(self) -> bool:
        return self.decoder_input_ids is not None


def blocks(
    tok: tokenizers.Tokenizer, documents: Sequence[str], max_length: int, pad: int
) -> Iterator[Tokens]:
    """The blocks of `documents` in order, a few documents' worth at a time, padded to
    `max_length` columns."""
    for start in range(0, len(documents), DOCS_PER_CHUNK):
        encoded = encode_documents(tok, documents[start : start + DOCS_PER_CHUNK])
        encoded = [doc for doc in encoded if doc.ids]
        if encoded:
            yield pad_to(batch_blocks(encoded, max_length, pad), max_length, pad)


def pad_to(batch: Tokens, width: int, pad: int) -> Tokens:
    """`batch` with exactly `width` columns (random draws depend on the shape)."""
    extra = width - batch.ids.size(1)

    def widen(t: torch.Tensor | None, fill: int | bool) -> torch.Tensor | None:
        return None if t is None else F.pad(t, (0, extra), value=fill)

    return Tokens(
        widen(batch.ids, pad),
        batch.lengths,
        widen(batch.word_starts, False),
        widen(batch.sentence_starts, False),
    )


def batches(chunks: Iterable[Tokens], size: int = BATCH) -> Iterator[Tokens]:
    """Regroup a stream of blocks into batches of `size` consecutive blocks (the last may be
    smaller)."""
    held: list[Tokens] = []
    n_held = 0
    for chunk in chunks:
        held.append(chunk)
        n_held += chunk.ids.size(0)
        while n_held >= size:
            merged = concat(held)
            yield take(merged, 0, size)
            rest = take(merged, size, n_held)
            held, n_held = ([rest] if n_held > size else []), n_held - size
    if n_held:
        yield concat(held)


def concat(parts: list[Tokens]) -> Tokens:
    if len(parts) == 1:
        return parts[0]
    columns = zip(*(p._tensors() for p in parts), strict=True)
    return Tokens(*(None if any(t is None for t in c) else torch.cat(c) for c in columns))


def take(batch: Tokens, start: int, stop: int) -> Tokens:
    return Tokens(*(None if t is None else t[start:stop] for t in batch._tensors()))


def corrupt_documents(
    corruption: Corruption,
    tok: tokenizers.Tokenizer,
    vocab: Vocab,
    documents: Sequence[str],
    max_length: int,
    seed: int,
    limit: int | None = None,
) -> Iterator[Example]:
    """Examples 0, 1, ... (at most `limit`) of `documents` corrupted with `seed`; a DataError
    when the documents hold no token at all (only characters the tokenizer drops)."""
    index = 0
    for number, batch in enumerate(batches(blocks(tok, documents, max_length, vocab.pad))):
        if limit is not None and index >= limit:
            return
        out = corruption(batch, vocab, make_generator(seed, number), with_origin=True)
        for example in unbatch(batch, out, index):
            if limit is not None and example.index >= limit:
                return
            yield example
        index += batch.ids.size(0)
    if index == 0 and limit != 0:
        raise DataError(
            "the input holds no tokens: only spaces or characters the tokenizer "
            "drops (zero-width or control characters)"
        )


def unbatch(batch: Tokens, out: Corrupted, first_index: int) -> Iterator[Example]:
    """Split a corrupted batch into per-example lists, padding trimmed."""
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
        )

"""Documents in, padded blocks out, in input order and a little text at a time: what
`corrupt` (data/examples.py) cuts its examples from.

Documents are tokenised in groups (`chunks`: up to DOCS_PER_CHUNK documents and about
CHARS_PER_CHUNK characters; a longer document is split between groups at a sentence or a piece),
so `--limit 3` reads and tokenises the start of a 50 MB line, not all of it. A group of whole
documents is packed where it is tokenised (in a worker of `corrupt --workers`); a document
split between groups is joined back row by row (`pack_groups`). The rows are those of
`packing.pack(..., "rows")` on the whole text, so the output does not depend on the grouping.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import tokenizers
import torch
import torch.nn.functional as F

from corruptions import Tokens

from .encoding import (
    AFTER_SPACE,
    EncodedArrays,
    EncodedDoc,
    encode_arrays,
    encode_pieces,
    pieces,
)
from .packing import corpus_from, corpus_of, pack
from .splits import sentence_spans

DOCS_PER_CHUNK = 64  # documents tokenised at a time, so `--limit 5` reads little of a big corpus
CHARS_PER_CHUNK = 1 << 16  # and characters: one huge document is tokenised a chunk at a time


@dataclass(frozen=True)
class Rows:
    """Consecutive blocks: their tokens, and per block the text it covers (`Example.text`,
    `Example.offsets`; "" and None when not asked for)."""

    tokens: Tokens
    texts: list[str]
    offsets: list[list[tuple[int, int]] | None]

    def __len__(self) -> int:
        return len(self.texts)


@dataclass(frozen=True)
class Part:
    """Pieces (`encoding.pieces`) of one document's sentences, to tokenise with others."""

    document: str
    pieces: list[tuple[str, int]] | None = None  # None: all of the document's (`filled`)
    starts: list[int] = field(default_factory=list)  # where each piece starts in the document
    ends: bool = True  # the document ends with these pieces

    def filled(self) -> Part:
        """This part with its pieces found, when they were left to the worker."""
        if self.pieces is not None:
            return self
        found = list(document_pieces(self.document))
        return replace(self, pieces=[p for p, _ in found], starts=[s for _, s in found])


def blocks(
    tok: tokenizers.Tokenizer, documents: Iterable[str], max_length: int, pad: int
) -> Iterator[Tokens]:
    """The tokens of `text_blocks`."""
    return (rows.tokens for rows in text_blocks(tok, documents, max_length, pad, False))


def text_blocks(
    tok: tokenizers.Tokenizer,
    documents: Iterable[str],
    max_length: int,
    pad: int,
    with_text: bool = True,
) -> Iterator[Rows]:
    """The blocks of `documents` in order, a little text at a time (`chunks`), each group
    padded to `max_length` columns: so `--limit 3` tokenises the start of a 50 MB line, not
    all of it. Each block comes with the text it covers (`with_text`)."""
    groups = (
        (group, encode_group(tok, group, whole, with_text, max_length, pad))
        for group, whole in marked(chunks(documents))
    )
    return pack_groups(groups, max_length, pad, with_text)


def marked(groups: Iterable[list[Part]]) -> Iterator[tuple[list[Part], bool]]:
    """Each group, and whether it holds whole documents only (nothing of one goes on from the
    group before or to the next): those are packed where they are tokenised."""
    open_before = False
    for group in groups:
        yield group, not open_before and all(part.ends for part in group)
        open_before = not group[-1].ends


def encode_group(
    tok: tokenizers.Tokenizer,
    group: list[Part],
    whole: bool,
    with_text: bool,
    max_length: int,
    pad: int,
) -> list[EncodedDoc] | Rows | None:
    """A group's tokens; its rows when it holds `whole` documents (`marked`): numbered from 0,
    None when they hold no token. (What a worker of `corrupt --workers` does with a group.)"""
    group = [part.filled() for part in group]
    if whole and not with_text:  # no text to keep: whole-array numpy (encoding.encode_arrays)
        arrays = encode_arrays(tok, [part.pieces or [] for part in group], np.int32)
        return array_rows(arrays, max_length, pad)
    starts = [part.starts for part in group] if with_text else None
    encoded = encode_pieces(tok, [part.pieces or [] for part in group], starts)
    if not whole:
        return encoded
    pairs = zip(encoded, group, strict=True)
    ready = [(doc, part.document, n) for n, (doc, part) in enumerate(pairs)]
    return block_rows(ready, max_length, pad, with_text)


def pack_groups(
    groups: Iterable[tuple[list[Part], list[EncodedDoc] | Rows | None]],
    max_length: int,
    pad: int,
    with_text: bool,
) -> Iterator[Rows]:
    """The blocks of tokenised groups (`Job.encode`: rows already, or tokens), in order.

    The rows of a document are cut greedily from its start (`packing.pack`), so every row but
    the last of the tokens seen so far is final: those are packed now, and the last row's
    tokens wait for the rest of the document. The blocks are the same however the text is
    chunked.
    """
    carry: EncodedDoc | None = None  # the tail of a document whose rest is still to come
    number = 0  # the input document being read: rows carry it (`Tokens.row_documents`)
    for group, made in groups:
        if not isinstance(made, list):  # whole documents, packed already (None: no token)
            if made is not None:
                assert made.tokens.row_documents is not None
                numbers = made.tokens.row_documents + number
                yield replace(made, tokens=replace(made.tokens, row_documents=numbers))
            number += len(group)
            continue
        ready = []
        for doc, part in zip(made, group, strict=True):
            if carry is not None:
                doc, carry = join(carry, doc), None
            if not part.ends:
                doc, carry = split_last_row(doc, max_length)
            ready.append((doc, part.document, number))
            number += part.ends
        rows = block_rows(ready, max_length, pad, with_text)
        if rows is not None:
            yield rows


def block_rows(
    ready: list[tuple[EncodedDoc, str, int]], max_length: int, pad: int, with_text: bool
) -> Rows | None:
    """The rows of documents' tokens ((tokens, text, number) each), padded to `max_length`;
    None when they hold no token."""
    ready = [(doc, text, n) for doc, text, n in ready if doc.ids]
    if not ready:
        return None
    docs = [doc for doc, _, _ in ready]
    packed = pack(corpus_from(docs), max_length, "rows")  # `rows_of`, row starts kept
    rows = packed.take(torch.arange(len(packed)), pad)
    assert rows.row_documents is not None
    which = rows.row_documents.tolist()
    numbers = torch.tensor([n for _, _, n in ready], dtype=torch.long)
    rows = replace(rows, row_documents=numbers[rows.row_documents])
    if not with_text:
        return Rows(pad_to(rows, max_length, pad), [""] * len(which), [None] * len(which))
    flat = [span for doc in docs for span in doc.offsets or ()]
    cut = zip(which, packed.starts.tolist(), packed.lengths.tolist(), strict=True)
    texts, offsets = zip(
        *(row_text(ready[d][1], flat[start : start + n]) for d, start, n in cut), strict=True
    )
    return Rows(pad_to(rows, max_length, pad), list(texts), list(offsets))


def array_rows(arrays: EncodedArrays, max_length: int, pad: int) -> Rows | None:
    """`block_rows` of whole documents tokenised by `encode_arrays`, without their text: the
    same rows, numbered from 0, with no Python work per token."""
    numbers = np.flatnonzero(arrays.lengths > 0)  # documents with tokens, as corpus_of keeps
    if not len(numbers):
        return None
    packed = pack(corpus_of(arrays), max_length, "rows")
    rows = packed.take(torch.arange(len(packed)), pad)
    assert rows.row_documents is not None
    rows = replace(rows, row_documents=torch.from_numpy(numbers)[rows.row_documents])
    return Rows(pad_to(rows, max_length, pad), [""] * len(packed), [None] * len(packed))


def row_text(document: str, spans: Sequence[tuple[int, int]]) -> tuple[str, list[tuple[int, int]]]:
    """The text of `document` that a row's tokens cover, and their spans in it, each without
    the whitespace around it (the tokenizers' offsets include a `Ġ`'s or `▁`'s space)."""
    trimmed = []
    for start, end in spans:
        chars = document[start:end]
        inner = chars.strip()
        if not inner:
            trimmed.append((end, end))
            continue
        start += len(chars) - len(chars.lstrip())
        trimmed.append((start, start + len(inner)))
    first = trimmed[0][0] if trimmed else 0
    last = max((end for _, end in trimmed), default=first)
    return document[first:last], [(s - first, e - first) for s, e in trimmed]


def chunks(documents: Iterable[str]) -> Iterator[list[Part]]:
    """The documents as groups to tokenise at once: up to DOCS_PER_CHUNK documents and about
    CHARS_PER_CHUNK characters. A document longer than that is split between groups, at a
    sentence or a piece, here; the others are split into sentences where they are tokenised
    (`Part.pieces` None)."""
    group: list[Part] = []
    size = 0
    for document in documents:
        if len(document) <= CHARS_PER_CHUNK:
            group.append(Part(document, None))
            size += len(document)
        else:
            part = Part(document, [], [])
            for piece, start in document_pieces(document):
                part.pieces.append(piece)  # type: ignore[union-attr]
                part.starts.append(start)
                size += len(piece[0])
                if size >= CHARS_PER_CHUNK:
                    yield [*group, replace(part, ends=False)]
                    group, part, size = [], Part(document, [], []), 0
            group.append(part)
        if len(group) >= DOCS_PER_CHUNK or size >= CHARS_PER_CHUNK:
            yield group
            group, size = [], 0
    if group:
        yield group


def document_pieces(document: str) -> Iterator[tuple[tuple[str, int], int]]:
    """The `pieces` of a document's sentences, each with where it starts in the document."""
    for first, last in sentence_spans(document):
        at = first
        for piece, where in pieces(document[first:last]):
            at += where == AFTER_SPACE  # the space the cut left out
            yield (piece, where), at
            at += len(piece)


def join(head: EncodedDoc, tail: EncodedDoc) -> EncodedDoc:
    return EncodedDoc(
        head.ids + tail.ids,
        head.word_starts + tail.word_starts,
        head.sentence_starts + tail.sentence_starts,
        None if head.offsets is None or tail.offsets is None else head.offsets + tail.offsets,
    )


def split_last_row(doc: EncodedDoc, max_length: int) -> tuple[EncodedDoc, EncodedDoc]:
    """(the tokens of `doc`'s final rows, the tokens of its last row): `pack` cuts the same rows
    from the first part alone, and the last row may still grow."""
    starts = pack(corpus_from([doc]), max_length, "rows").starts if doc.ids else None
    cut = int(starts[-1]) if starts is not None and len(starts) else 0
    offsets = doc.offsets
    return (
        EncodedDoc(
            doc.ids[:cut],
            doc.word_starts[:cut],
            doc.sentence_starts[:cut],
            None if offsets is None else offsets[:cut],
        ),
        EncodedDoc(
            doc.ids[cut:],
            doc.word_starts[cut:],
            doc.sentence_starts[cut:],
            None if offsets is None else offsets[cut:],
        ),
    )


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
        row_documents=batch.row_documents,
    )


def batches(chunks: Iterable[Rows], size: int) -> Iterator[Rows]:
    """Regroup a stream of blocks into batches of `size` consecutive blocks (the last may be
    smaller)."""
    held: list[Rows] = []
    n_held = 0
    for chunk in chunks:
        held.append(chunk)
        n_held += len(chunk)
        while n_held >= size:
            merged = concat(held)
            yield take(merged, 0, size)
            rest = take(merged, size, n_held)
            held, n_held = ([rest] if n_held > size else []), n_held - size
    if n_held:
        yield concat(held)


def concat(parts: list[Rows]) -> Rows:
    if len(parts) == 1:
        return parts[0]
    columns = zip(*(p.tokens._tensors() for p in parts), strict=True)
    return Rows(
        Tokens(*(None if any(t is None for t in c) else torch.cat(c) for c in columns)),
        [text for p in parts for text in p.texts],
        [spans for p in parts for spans in p.offsets],
    )


def take(rows: Rows, start: int, stop: int) -> Rows:
    return Rows(
        Tokens(*(None if t is None else t[start:stop] for t in rows.tokens._tensors())),
        rows.texts[start:stop],
        rows.offsets[start:stop],
    )

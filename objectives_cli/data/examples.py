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
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import tokenizers
import torch
import torch.nn.functional as F

from corruptions import IGNORE, Corrupted, Corruption, Tokens, Vocab, make_generator
from corruptions.errors import DataError

from .packing import corpus_from, corpus_of, pack
from .parallel import ordered
from .sources import sentence_spans
from .tokenizer import (
    AFTER_SPACE,
    EncodedArrays,
    EncodedDoc,
    encode_arrays,
    encode_pieces,
    pieces,
)

BATCH = 16  # blocks per corruption call; part of what defines example i
DOCS_PER_CHUNK = 64  # documents tokenised at a time, so `--limit 5` reads little of a big corpus
CHARS_PER_CHUNK = 1 << 16  # and characters: one huge document is tokenised a chunk at a time

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
    """Pieces (`tokenizer.pieces`) of one document's sentences, to tokenise with others."""

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
    job = Job(None, tok, None, 0, with_text, None, max_length, pad)  # type: ignore[arg-type]
    groups = ((group, job.encode(group, whole)) for group, whole in marked(chunks(documents)))
    return pack_groups(groups, max_length, pad, with_text)


def marked(groups: Iterable[list[Part]]) -> Iterator[tuple[list[Part], bool]]:
    """Each group, and whether it holds whole documents only (nothing of one goes on from the
    group before or to the next): those are packed where they are tokenised."""
    open_before = False
    for group in groups:
        yield group, not open_before and all(part.ends for part in group)
        open_before = not group[-1].ends


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


def batches(chunks: Iterable[Rows], size: int = BATCH) -> Iterator[Rows]:
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
            made = batches(pack_groups(encoded, max_length, vocab.pad, with_text))
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
        """A group's tokens; its rows when it holds `whole` documents (`marked`): numbered
        from 0, None when they hold no token."""
        group = [part.filled() for part in group]
        if whole and not self.with_text:  # no text to keep: whole-array numpy (tokenizer.py)
            arrays = encode_arrays(self.tok, [part.pieces or [] for part in group], np.int32)
            return array_rows(arrays, self.max_length, self.pad)
        starts = [part.starts for part in group] if self.with_text else None
        encoded = encode_pieces(self.tok, [part.pieces or [] for part in group], starts)
        if not whole:
            return encoded
        pairs = zip(encoded, group, strict=True)
        ready = [(doc, part.document, n) for n, (doc, part) in enumerate(pairs)]
        return block_rows(ready, self.max_length, self.pad, self.with_text)


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
    """`corrupt_documents` on batches already made (`batches(text_blocks(...))`)."""
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
    source = batches(text_blocks(tok, documents, max_length, vocab.pad))

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

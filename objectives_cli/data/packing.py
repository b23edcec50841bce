"""Documents -> fixed-length training rows, with word and sentence starts kept.

The tokenised corpus is one flat stream (`Corpus`: ids, word/sentence starts, document offsets),
cached on disk keyed by a hash of the documents and the tokenizer. `Blocks` are rows of that
stream, described only by (start, length), so packing costs no copy and `take` gathers a batch:

    documents  several documents per row, cut at fixed length; `Tokens.document_ids` says which
               document each token belongs to, so attention can stay inside it (encoder
               objectives that keep token positions: BERT, SpanBERT, ELECTRA, XLNet)
    rows       one chunk of one document per row, padded (BART's `complete_doc`, NSP/SOP, UniLM:
               objectives that move or add tokens; CLM and prefix LM, one EOS and one prefix
               split per row)
    concat     documents glued and cut at fixed length, attention crossing them (T5's
               `reduce_concat_tokens`, GPT's `group_texts`)

A row's first token always opens a word and a sentence: a chunk cut from the middle of a document
starts fresh. A row that would end inside a word ends before it instead (unless the word alone is
longer than a row), so whole-word objectives see whole words. This is the one packer: training
reads `Blocks` by step, and `corrupt`, `describe` and the docs read the "rows" packing in input
order (`examples.text_blocks`, which also finds each row's text; `rows_of` for a few documents).
"""

from __future__ import annotations

import array
import contextlib
import hashlib
import io
import itertools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from tokenizers import Tokenizer
from torch import Tensor

from corruptions import Tokens

from . import PACKINGS
from .files import cache_dir as root_cache_dir
from .files import write_atomic
from .tokenizer import EncodedDoc, encode_documents

ENCODE_CHUNK = 2000  # documents tokenised at once (bounds the Python lists encode_documents makes)


@dataclass(frozen=True, eq=False)
class Corpus:
    """Tokenised documents, concatenated."""

    ids: Tensor  # (N,) int32
    word_starts: Tensor  # (N,) bool
    sentence_starts: Tensor  # (N,) bool
    offsets: Tensor  # (D + 1,) int64: document d is ids[offsets[d]:offsets[d + 1]]

    @property
    def n_documents(self) -> int:
        return self.offsets.numel() - 1

    def __len__(self) -> int:
        return self.ids.numel()

    def to_dict(self) -> dict[str, Tensor]:
        return {
            "ids": self.ids,
            "word_starts": self.word_starts,
            "sentence_starts": self.sentence_starts,
            "offsets": self.offsets,
        }

    @staticmethod
    def concat(parts: Sequence[Corpus]) -> Corpus:
        sizes = torch.tensor([0] + [len(p) for p in parts[:-1]]).cumsum(0)
        offsets = [parts[0].offsets[:1]]
        offsets += [p.offsets[1:] + s for p, s in zip(parts, sizes, strict=True)]
        return Corpus(
            torch.cat([p.ids for p in parts]),
            torch.cat([p.word_starts for p in parts]),
            torch.cat([p.sentence_starts for p in parts]),
            torch.cat(offsets),
        )


def corpus_from(docs: Iterable[EncodedDoc]) -> Corpus:
    """A `Corpus` from encoded documents; empty ones are dropped."""
    docs = [d for d in docs if d.ids]
    lengths = torch.tensor([0, *(len(d.ids) for d in docs)], dtype=torch.long)
    return Corpus(
        _flat(docs, "ids", "i", torch.int32),
        _flat(docs, "word_starts", "b", torch.int8).bool(),
        _flat(docs, "sentence_starts", "b", torch.int8).bool(),
        lengths.cumsum(0),
    )


def _flat(docs: Sequence[EncodedDoc], field: str, code: str, dtype: torch.dtype) -> Tensor:
    """One field of every document, concatenated into a 1-d tensor (via array: ~10x faster than
    torch.tensor on a list)."""
    values = array.array(code, itertools.chain.from_iterable(getattr(d, field) for d in docs))
    if not values:
        return torch.zeros(0, dtype=dtype)
    return torch.frombuffer(values, dtype=dtype).clone()


def cache_dir() -> Path:
    """Where tokenised corpora are kept: `encoded/` in the cache directory."""
    return root_cache_dir() / "encoded"


def corpus_key(tokenizer_json: str, documents: Sequence[str]) -> str:
    """A stable hash of the documents and the tokenizer: the cache key."""
    h = hashlib.blake2b(digest_size=16)
    h.update(tokenizer_json.encode())
    for doc in documents:
        h.update(b"\x00")
        h.update(doc.encode("utf-8", "surrogatepass"))
    return h.hexdigest()


def encode_corpus(
    tok: Tokenizer,
    documents: Sequence[str],
    cache: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> Corpus:
    """Tokenise `documents` (in chunks), or load the result from the on-disk cache.

    `progress(done, total)` is called after each chunk of documents tokenised (not when the
    cache has them).
    """
    path = cache_dir() / f"{corpus_key(tok.to_str(), documents)}.pt"
    if cache and path.exists():
        try:
            return Corpus(**torch.load(path, weights_only=True))
        except Exception:  # a damaged cache file is rebuilt
            path.unlink(missing_ok=True)
    parts = []
    for i in range(0, len(documents), ENCODE_CHUNK):
        parts.append(corpus_from(encode_documents(tok, documents[i : i + ENCODE_CHUNK])))
        if progress is not None:
            progress(min(i + ENCODE_CHUNK, len(documents)), len(documents))
    corpus = Corpus.concat(parts) if parts else corpus_from([])
    if cache:
        store(path, corpus)
    return corpus


def store(path: Path, corpus: Corpus) -> None:
    """Cache `corpus` at `path` if the disk lets us: a full or read-only cache only costs the
    next run the encoding."""
    buffer = io.BytesIO()
    torch.save(corpus.to_dict(), buffer)
    with contextlib.suppress(OSError):
        write_atomic(path, buffer.getbuffer())


@dataclass(frozen=True, eq=False)
class Blocks:
    """Training rows over a `Corpus`: row r is corpus tokens [starts[r], starts[r] + lengths[r])."""

    corpus: Corpus
    starts: Tensor  # (R,) int64
    lengths: Tensor  # (R,) int64
    width: int  # the longest row
    with_documents: bool  # fill Tokens.document_ids

    def __len__(self) -> int:
        return self.starts.numel()

    @property
    def n_tokens(self) -> int:
        return int(self.lengths.sum())

    def take(self, rows: Tensor, pad: int) -> Tokens:
        """The rows `rows` as a padded `Tokens` batch (CPU), width trimmed to the longest."""
        starts, lengths = self.starts[rows], self.lengths[rows]
        width = int(lengths.max()) if rows.numel() else 0
        col = torch.arange(width)
        real = col < lengths[:, None]
        last = (starts + lengths - 1).clamp(min=0)[:, None]
        at = torch.minimum(starts[:, None] + col, last)  # padding repeats the last token's index
        c = self.corpus
        ids = c.ids[at].long().masked_fill(~real, pad)
        words = c.word_starts[at] & real
        sents = c.sentence_starts[at] & real
        words[:, :1] |= real[:, :1]  # a row opens a word and a sentence
        sents[:, :1] |= real[:, :1]
        docs = None
        if self.with_documents:
            doc = torch.searchsorted(c.offsets, at, right=True) - 1
            docs = doc - doc[:, :1]
        first = torch.searchsorted(c.offsets, starts, right=True) - 1  # the document of each row
        return Tokens(ids, lengths.clone(), words, sents, docs, row_documents=first)


def pack(corpus: Corpus, max_length: int, mode: str) -> Blocks:
    """Rows of at most `max_length` tokens over `corpus` (see the module docstring for `mode`).

    A row that would end inside a word ends before that word instead (unless the word alone is
    longer than a row), so whole-word objectives see whole words.
    """
    if mode not in PACKINGS:
        raise ValueError(f"packing must be one of {', '.join(PACKINGS)}, not {mode!r}")
    if max_length < 1:
        raise ValueError(f"max_length must be positive, not {max_length}")
    n = len(corpus)
    # last_word[i]: the last word start at or before token i
    last_word = torch.where(corpus.word_starts, torch.arange(n), 0).cummax(0).values
    starts: list[int] = []
    bounds = corpus.offsets.tolist() if mode == "rows" else [0, n]
    for begin, end in itertools.pairwise(bounds):
        pos = begin
        while end - pos > max_length:
            cut = int(last_word[pos + max_length])  # the word that would straddle the row's end
            if cut <= pos:  # one word longer than a row: cut it
                cut = pos + max_length
            starts.append(pos)
            pos = cut
        if end > pos:
            starts.append(pos)
    start_t = torch.tensor(starts, dtype=torch.long)
    ends = torch.tensor([*starts[1:], n], dtype=torch.long)
    if mode == "rows":  # a row never runs past its document
        doc = torch.searchsorted(corpus.offsets, start_t, right=True) - 1
        ends = torch.minimum(ends, corpus.offsets[doc + 1])
    lengths = ends - start_t
    width = int(lengths.max()) if lengths.numel() else 0
    return Blocks(corpus, start_t, lengths, width, with_documents=mode == "documents")


def rows_of(docs: Sequence[EncodedDoc], max_length: int, pad: int) -> Tokens:
    """Every document cut into consecutive rows of at most `max_length` tokens (`pack`'s "rows"
    mode), in input order, as one padded batch as wide as the longest row."""
    blocks = pack(corpus_from(docs), max_length, "rows")
    return blocks.take(torch.arange(len(blocks)), pad)

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
order (`rows.text_blocks`, which also finds each row's text; `rows_of` for a few documents).

The packer reads its corpus only through `TokenStore`'s methods, which `Corpus` (in memory) and
`shards.MappedCorpus` (a prepared directory, memory-mapped) both have: it walks the word starts a
million tokens at a time and the document offsets a million documents at a time, so packing a
corpus larger than memory holds only the rows' starts and lengths (16 bytes a row).
"""

from __future__ import annotations

import array
import contextlib
import hashlib
import io
import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from tokenizers import Tokenizer
from torch import Tensor

from corruptions import Tokens

from . import PACKINGS
from .encoding import EncodedArrays, EncodedDoc, encode_texts
from .files import cache_dir as root_cache_dir
from .files import write_atomic

ENCODE_CHUNK = 2000  # documents tokenised at once (bounds the arrays encode_arrays makes)
WALK_TOKENS = 1 << 20  # word starts the packer reads at a time
WALK_DOCUMENTS = 1 << 20  # document offsets the packer reads at a time


class TokenStore(Protocol):
    """What the packer and `Blocks.take` read of a tokenised corpus (`Corpus`, in memory, or
    `shards.MappedCorpus`, mapped): arrays in, arrays (numpy or torch) out."""

    def __len__(self) -> int: ...

    @property
    def n_documents(self) -> int: ...

    def gather(self, at: Any) -> tuple[Any, Any, Any]:
        """(ids as int64, word starts, sentence starts) of the tokens at positions `at`."""

    def document_of(self, at: Any) -> Any:
        """The document of each token position in `at`."""

    def word_starts_in(self, lo: int, hi: int) -> np.ndarray:
        """Word starts of tokens [lo, hi) as a bool array."""

    def document_offsets(self, chunk: int) -> Iterator[np.ndarray]:
        """Document bounds, `chunk` documents at a time (each array ends where the next begins)."""


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

    def gather(self, at: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        return self.ids[at].long(), self.word_starts[at], self.sentence_starts[at]

    def document_of(self, at: Tensor) -> Tensor:
        return torch.searchsorted(self.offsets, at, right=True) - 1

    def word_starts_in(self, lo: int, hi: int) -> np.ndarray:
        return self.word_starts[lo:hi].numpy()

    def document_offsets(self, chunk: int) -> Iterator[np.ndarray]:
        offsets = self.offsets.numpy()
        for lo in range(0, self.n_documents, chunk):
            yield offsets[lo : lo + chunk + 1]

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


def corpus_of(arrays: EncodedArrays) -> Corpus:
    """A `Corpus` from `encode_arrays`' output; documents without tokens are dropped."""
    lengths = arrays.lengths[arrays.lengths > 0]
    return Corpus(
        torch.from_numpy(arrays.ids.astype(np.int32)),
        torch.from_numpy(arrays.word_starts),
        torch.from_numpy(arrays.sentence_starts),
        torch.from_numpy(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)),
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
        parts.append(corpus_of(encode_texts(tok, documents[i : i + ENCODE_CHUNK])))
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
    """Training rows over a corpus: row r is corpus tokens [starts[r], starts[r] + lengths[r])."""

    corpus: TokenStore
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
        ids, words, sents = map(torch.as_tensor, self.corpus.gather(at))
        ids = ids.masked_fill(~real, pad)
        words = words & real
        sents = sents & real
        words[:, :1] |= real[:, :1]  # a row opens a word and a sentence
        sents[:, :1] |= real[:, :1]
        docs = None
        if self.with_documents:
            doc = torch.as_tensor(self.corpus.document_of(at))
            docs = doc - doc[:, :1]
        first = torch.as_tensor(self.corpus.document_of(starts))  # the document of each row
        return Tokens(ids, lengths.clone(), words, sents, docs, row_documents=first)


def pack(corpus: TokenStore, max_length: int, mode: str, most: int | None = None) -> Blocks:
    """Rows of at most `max_length` tokens over `corpus` (see the module docstring for `mode`);
    only the first `most` when given (they are the same: rows are cut from the start).

    A row that would end inside a word ends before that word instead (unless the word alone is
    longer than a row), so whole-word objectives see whole words.
    """
    if mode not in PACKINGS:
        raise ValueError(f"packing must be one of {', '.join(PACKINGS)}, not {mode!r}")
    if max_length < 1:
        raise ValueError(f"max_length must be positive, not {max_length}")
    cutter = RowCutter(corpus, max_length, most)
    if mode == "rows":  # a row never runs past its document
        for bounds in corpus.document_offsets(WALK_DOCUMENTS):
            if cutter.done:
                break
            cutter.documents(bounds)
    else:
        cutter.walk(0, len(corpus))
    starts, ends = (t[:most] for t in cutter.rows())
    lengths = ends - starts
    width = int(lengths.max()) if lengths.numel() else 0
    return Blocks(corpus, starts, lengths, width, with_documents=mode == "documents")


class RowCutter:
    """Cuts token ranges into rows greedily from their start: a row ends before the word that
    would straddle its end (`walk`). Rows are kept as two arrays of int64, 16 bytes a row."""

    def __init__(self, corpus: TokenStore, max_length: int, most: int | None = None) -> None:
        self.corpus, self.max_length, self.most = corpus, max_length, most
        self.starts, self.ends = array.array("q"), array.array("q")
        # last_word[i]: the last word start at or before token base + i, and base when there is
        # none after it: for a row from pos >= base, any value <= pos means "none in the row"
        self.base, self.last_word = 0, np.zeros(0, dtype=np.int64)

    @property
    def done(self) -> bool:
        return self.most is not None and len(self.starts) >= self.most

    def rows(self) -> tuple[Tensor, Tensor]:
        as_tensor = lambda a: torch.from_numpy(np.frombuffer(a, dtype=np.int64).copy())  # noqa: E731
        return as_tensor(self.starts), as_tensor(self.ends)

    def _last_word(self, i: int, pos: int) -> int:
        """The last word start in (pos, i], or a value <= pos when there is none."""
        if i - self.base >= len(self.last_word):
            hi = min(len(self.corpus), max(i + 1, pos + WALK_TOKENS))
            words = self.corpus.word_starts_in(pos, hi)
            self.base = pos
            self.last_word = np.maximum.accumulate(np.where(words, np.arange(pos, hi), pos))
        return int(self.last_word[i - self.base])

    def walk(self, begin: int, end: int) -> None:
        """The rows of tokens [begin, end)."""
        pos, n = begin, self.max_length
        while end - pos > n and not self.done:
            cut = self._last_word(pos + n, pos)  # the word that would straddle the row's end
            if cut <= pos:  # one word longer than a row: cut it
                cut = pos + n
            self.starts.append(pos)
            self.ends.append(cut)
            pos = cut
        if end > pos:
            self.starts.append(pos)
            self.ends.append(end)

    def documents(self, bounds: np.ndarray) -> None:
        """The rows of each document between consecutive `bounds`: a document that fits in a
        row is one row (done for all of them at once), a longer one is walked."""
        begins, ends = bounds[:-1].astype(np.int64), bounds[1:].astype(np.int64)
        sizes = ends - begins
        done = 0
        for d in [*np.flatnonzero(sizes > self.max_length).tolist(), len(sizes)]:
            if self.done:
                return
            keep = sizes[done:d] > 0
            self.starts.frombytes(begins[done:d][keep].tobytes())
            self.ends.frombytes(ends[done:d][keep].tobytes())
            if d < len(sizes):
                self.walk(int(begins[d]), int(ends[d]))
            done = d + 1


def rows_of(docs: Sequence[EncodedDoc], max_length: int, pad: int) -> Tokens:
    """Every document cut into consecutive rows of at most `max_length` tokens (`pack`'s "rows"
    mode), in input order, as one padded batch as wide as the longest row."""
    blocks = pack(corpus_from(docs), max_length, "rows")
    return blocks.take(torch.arange(len(blocks)), pad)

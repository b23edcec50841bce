"""Text to token ids with word and sentence starts: what the packer, `corrupt` and `data
prepare` read. Each sentence (cut into pieces of at most PIECE_CHARS characters) is encoded on
its own by the tokenizer's `encode_batch`, so its first token opens a sentence and a word; word
starts come from `Encoding.word_ids`, so they follow each tokenizer kind's own notion of a word.
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from tokenizers import Tokenizer


@dataclass(frozen=True)
class EncodedDoc:
    ids: list[int]
    word_starts: list[bool]  # from the tokenizer's word ids: same for WordPiece, BPE, Unigram
    sentence_starts: list[bool]  # True at the first token of every sentence
    # (start, end) of each token's characters in the document (the tokenizer's offsets), when
    # asked for (`encode_pieces(..., starts=...)`): what the show view prints
    offsets: list[tuple[int, int]] | None = None


def encode_documents(tok: Tokenizer, documents: Sequence[str]) -> list[EncodedDoc]:
    """Tokenise without adding specials (fast: encode_batch).

    Each sentence (`data.split_sentences`) is encoded on its own, so its first token opens a
    sentence and a word; sentences that yield no tokens are skipped.
    """
    from .splits import split_sentences

    return encode_pieces(
        tok, [[p for s in split_sentences(d) for p in pieces(s)] for d in documents]
    )


PIECE_CHARS = 4096  # a longer sentence (no real one is) is encoded in pieces of at most this
OPENS, AFTER_SPACE, INSIDE_WORD = 0, 1, 2  # where a piece of text starts: a sentence, a word, ...


def pieces(sentence: str) -> Iterator[tuple[str, int]]:
    """`sentence` as pieces of at most PIECE_CHARS characters, cut at a space where there is one:
    (text, OPENS for the first piece, else AFTER_SPACE or INSIDE_WORD).

    A file that is one unpunctuated line is one sentence; in pieces, no call tokenises
    megabytes at once and a reader can stop early. The tokens are those of the whole sentence
    (except that byte-level BPE counts a run of several spaces at a cut as one). The pieces
    cover the sentence but for the one space at each AFTER_SPACE cut (`piece_starts`).
    """
    start, where = 0, OPENS
    while len(sentence) - start > PIECE_CHARS:
        cut = sentence.rfind(" ", start + 1, start + PIECE_CHARS + 1)
        if cut <= start:  # no space: a hard cut inside a word
            yield sentence[start : start + PIECE_CHARS], where
            start, where = start + PIECE_CHARS, INSIDE_WORD
        else:
            yield sentence[start:cut], where
            start, where = cut + 1, AFTER_SPACE
    yield sentence[start:], where


def piece_starts(sentence_pieces: Iterable[tuple[str, int]], start: int = 0) -> Iterator[int]:
    """Where each of a sentence's `pieces` starts, the sentence starting at `start`."""
    for text, where in sentence_pieces:
        start += where == AFTER_SPACE  # the space the cut dropped
        yield start
        start += len(text)


def encode_pieces(
    tok: Tokenizer,
    per_doc: Sequence[Sequence[tuple[str, int]]],
    starts: Sequence[Sequence[int]] | None = None,
) -> list[EncodedDoc]:
    """`encode_documents` for documents given as their sentences' `pieces`: a piece that opens
    a sentence opens a sentence and a word, one after a space a word. With `starts` (where each
    piece starts in its document), each token's characters in the document too
    (`EncodedDoc.offsets`)."""
    flat = [text for doc in per_doc for text, _ in doc]
    encodings = iter(tok.encode_batch(flat, add_special_tokens=False))
    out = []
    for d, doc in enumerate(per_doc):
        ids: list[int] = []
        words: list[bool] = []
        sentence_starts: list[bool] = []
        offsets: list[tuple[int, int]] | None = None if starts is None else []
        opening = False  # a sentence began and has no token yet
        for p, ((_, where), enc) in enumerate(
            zip(doc, itertools.islice(encodings, len(doc)), strict=True)
        ):
            opening |= where == OPENS
            piece_ids = enc.ids
            if not piece_ids:
                continue
            word_ids = enc.word_ids
            ids += piece_ids
            # A token opens a word when its word id differs from the previous token's.
            words += map(operator.ne, word_ids, [-1, *word_ids])
            if where == INSIDE_WORD:
                words[len(ids) - len(piece_ids)] = False
            sentence_starts.append(opening)
            opening = False
            sentence_starts += (
                _FALSE[: len(piece_ids) - 1]
                if len(piece_ids) <= len(_FALSE)
                else ([False] * (len(piece_ids) - 1))
            )
            if offsets is not None and starts is not None:
                base = starts[d][p]
                offsets += [(base + s, base + e) for s, e in enc.offsets]
        out.append(EncodedDoc(ids, words, sentence_starts, offsets))
    return out


_FALSE = [False] * 4096


@dataclass(frozen=True, eq=False)
class EncodedArrays:
    """Documents tokenised into flat arrays: what `encode_pieces` gives, concatenated, in numpy
    (the training corpus and the prepared shards are built from these)."""

    ids: np.ndarray  # (N,) of the dtype asked for
    word_starts: np.ndarray  # (N,) bool
    sentence_starts: np.ndarray  # (N,) bool
    lengths: np.ndarray  # (D,) int64: tokens of each document, 0 for one that yields none
    # a sentence of the last document opened after its last token (its pieces yielded none
    # yet): the next piece of that document, tokenised apart, opens a sentence
    trailing_open: bool = False


def encode_texts(tok: Tokenizer, documents: Sequence[str], dtype: type = np.int32) -> EncodedArrays:
    """`encode_documents` as arrays: each sentence tokenised on its own."""
    from .splits import split_sentences

    return encode_arrays(
        tok, [[p for s in split_sentences(d) for p in pieces(s)] for d in documents], dtype
    )


def encode_arrays(
    tok: Tokenizer, per_doc: Sequence[Sequence[tuple[str, int]]], dtype: type = np.int64
) -> EncodedArrays:
    """`encode_pieces`, the same tokens and flags, as flat arrays built by whole-array numpy
    operations: the Python work is per piece, not per token."""
    flat = [text for doc in per_doc for text, _ in doc]
    where = np.fromiter((w for doc in per_doc for _, w in doc), np.int8, len(flat))
    encodings = tok.encode_batch(flat, add_special_tokens=False)
    piece_lens = np.fromiter(map(len, encodings), np.int64, len(encodings))
    total = int(piece_lens.sum())
    ids = np.fromiter(itertools.chain.from_iterable(e.ids for e in encodings), dtype, total)
    # word ids, None (an added token such as a literal [MASK]) as -2: equal to itself, as None is
    word = np.array(
        list(itertools.chain.from_iterable(e.word_ids for e in encodings)), dtype=np.float64
    )
    word = np.nan_to_num(word, nan=-2.0)
    first = np.cumsum(piece_lens) - piece_lens  # (P,) the token each piece starts at
    full = np.flatnonzero(piece_lens > 0)  # pieces that yield tokens
    before = np.empty_like(word)
    before[1:] = word[:-1]
    before[first[full]] = -1  # a piece's first token is compared with -1, as in encode_pieces
    word_starts = word != before
    word_starts[first[full[where[full] == INSIDE_WORD]]] = False
    # a piece opens a sentence when an OPENS piece came since the previous piece with tokens of
    # its document (pieces without tokens pass the opening on)
    n_pieces = np.fromiter(map(len, per_doc), np.int64, len(per_doc))
    doc_first = np.repeat(np.cumsum(n_pieces) - n_pieces, n_pieces)  # (P,) its document's first
    opens = np.concatenate([[0], np.cumsum(where == OPENS)])
    previous = np.concatenate([[-1], full[:-1]])
    since = np.maximum(previous, doc_first[full] - 1)
    sentence_starts = np.zeros(total, dtype=bool)
    sentence_starts[first[full]] = opens[full + 1] > opens[since + 1]
    piece_ends = np.concatenate([[0], np.cumsum(piece_lens)])
    doc_ends = np.concatenate([[0], np.cumsum(n_pieces)])
    lengths = piece_ends[doc_ends[1:]] - piece_ends[doc_ends[:-1]]
    trailing_open = False
    if len(n_pieces) and n_pieces[-1]:  # the last document's pieces after its last token
        begin = len(flat) - int(n_pieces[-1])
        tail = full[full >= begin]
        after = int(tail[-1]) + 1 if len(tail) else begin
        trailing_open = bool(opens[len(flat)] > opens[after])
    return EncodedArrays(ids, word_starts, sentence_starts, lengths, trailing_open)

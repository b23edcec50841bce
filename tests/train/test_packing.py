"""Packing documents into rows: nothing lost, nothing crossing where it must not, words whole."""

from __future__ import annotations

import itertools

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from corruptions.errors import DataError
from objectives_cli.data import packing
from objectives_cli.data.encoding import EncodedDoc
from objectives_cli.data.packing import Corpus, corpus_from, encode_corpus, pack
from objectives_cli.data.splits import split_heldout
from objectives_cli.data.tokenizer import load_tokenizer


def doc(n: int, start: int, word_every: int = 2) -> EncodedDoc:
    return EncodedDoc(
        list(range(start, start + n)),
        [i % word_every == 0 for i in range(n)],
        [i % 5 == 0 for i in range(n)],
    )


@pytest.fixture(scope="module")
def corpus() -> Corpus:
    return corpus_from([doc(7, 100), doc(3, 200), doc(0, 300), doc(12, 400), doc(1, 500)])


def test_corpus_drops_empty_documents(corpus: Corpus) -> None:
    assert corpus.offsets.tolist() == [0, 7, 10, 22, 23]
    assert len(corpus) == 23


@pytest.mark.parametrize("mode", ["documents", "rows", "concat"])
def test_every_token_once_in_order_words_whole(corpus: Corpus, mode: str) -> None:
    blocks = pack(corpus, 4, mode)
    batch = blocks.take(torch.arange(len(blocks)), pad=0)
    assert torch.equal(batch.ids[batch.real], corpus.ids.long())
    assert (batch.lengths <= 4).all()
    assert batch.word_starts[:, 0].all()
    assert batch.sentence_starts[:, 0].all()
    ends = (blocks.starts + blocks.lengths)[:-1]  # no row ends inside a word (words of 2 here)
    assert corpus.word_starts[ends].all()


def test_rows_never_cross_documents(corpus: Corpus) -> None:
    blocks = pack(corpus, 4, "rows")
    doc_of = torch.searchsorted(corpus.offsets, blocks.starts + blocks.lengths - 1, right=True)
    assert torch.equal(doc_of, torch.searchsorted(corpus.offsets, blocks.starts, right=True))
    assert blocks.take(torch.arange(len(blocks)), pad=0).document_ids is None


def test_documents_share_rows_and_are_numbered(corpus: Corpus) -> None:
    blocks = pack(corpus, 6, "documents")
    batch = blocks.take(torch.arange(len(blocks)), pad=0)
    assert batch.document_ids is not None
    shared = (batch.document_ids.amax(1) > 0).sum()
    assert shared >= 1  # at least one row holds two documents
    at = blocks.starts[:, None] + torch.arange(batch.ids.size(1))  # corpus index of each cell
    doc = torch.searchsorted(corpus.offsets, at, right=True)
    expected = doc - doc[:, :1]
    assert torch.equal(batch.document_ids[batch.real], expected[batch.real])


def test_a_word_longer_than_a_row_is_cut() -> None:
    corpus = corpus_from([doc(10, 0, word_every=100)])
    assert pack(corpus, 4, "concat").lengths.tolist() == [4, 4, 2]


def test_tokenised_corpus_is_cached(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OBJECTIVES_CACHE", str(tmp_path))
    tok = load_tokenizer()
    docs = ["The cat sat on the mat. It was warm.", "Another document here."]
    first = encode_corpus(tok, docs)
    cached = list((tmp_path / "encoded").glob("*.pt"))
    assert len(cached) == 1
    again = encode_corpus(tok, docs)
    assert torch.equal(first.ids, again.ids)
    assert torch.equal(first.offsets, again.offsets)
    cached[0].write_bytes(b"damaged")  # a broken cache file is rebuilt
    assert torch.equal(encode_corpus(tok, docs).ids, first.ids)
    assert first.n_documents == 2


def test_held_out_text_is_never_trained_on() -> None:
    docs = [f"Document number {i} says something. It has two sentences." for i in range(200)]
    train, held = split_heldout(docs)
    assert held
    assert set(train).isdisjoint(held)
    assert sorted(train + held) == sorted(docs)
    sentences = " ".join(f"Sentence {i} is here." for i in range(20))
    assert split_heldout([sentences]) == (
        [" ".join(f"Sentence {i} is here." for i in range(18))],
        [" ".join(f"Sentence {i} is here." for i in range(18, 20))],
    )
    words = " ".join(f"w{i}" for i in range(50))  # one long sentence: its last words are held out
    train, held = split_heldout([words])
    assert train[0].split() + held[0].split() == words.split()
    assert len(held[0].split()) == 5
    with pytest.raises(DataError, match="single word"):
        split_heldout(["alone"])


def reference_pack(corpus: Corpus, max_length: int, mode: str) -> tuple[list[int], list[int]]:
    """The packer as it was written first, whole-corpus tensors and all: (starts, lengths)."""
    n = len(corpus)
    last_word = torch.where(corpus.word_starts, torch.arange(n), 0).cummax(0).values
    starts: list[int] = []
    bounds = corpus.offsets.tolist() if mode == "rows" else [0, n]
    for begin, end in itertools.pairwise(bounds):
        pos = begin
        while end - pos > max_length:
            cut = int(last_word[pos + max_length])
            if cut <= pos:
                cut = pos + max_length
            starts.append(pos)
            pos = cut
        if end > pos:
            starts.append(pos)
    start_t = torch.tensor(starts, dtype=torch.long)
    ends = torch.tensor([*starts[1:], n], dtype=torch.long)
    if mode == "rows":
        doc = torch.searchsorted(corpus.offsets, start_t, right=True) - 1
        ends = torch.minimum(ends, corpus.offsets[doc + 1])
    return starts, (ends - start_t).tolist()


@given(
    sizes=st.lists(st.integers(0, 40), min_size=1, max_size=30),
    word_every=st.integers(1, 9),
    max_length=st.integers(1, 12),
    walk=st.sampled_from([3, 16, 1 << 20]),
)
def test_the_packer_reads_a_little_at_a_time_and_cuts_the_rows_it_always_did(
    sizes: list[int], word_every: int, max_length: int, walk: int
) -> None:
    corpus = corpus_from([doc(n, 10 * i, word_every) for i, n in enumerate(sizes)])
    saved = packing.WALK_TOKENS, packing.WALK_DOCUMENTS
    packing.WALK_TOKENS, packing.WALK_DOCUMENTS = walk, walk  # buffers refilled mid-walk
    try:
        for mode in ("documents", "rows", "concat"):
            blocks = pack(corpus, max_length, mode)
            starts, lengths = reference_pack(corpus, max_length, mode)
            assert blocks.starts.tolist() == starts
            assert blocks.lengths.tolist() == lengths
            assert pack(corpus, max_length, mode, most=3).starts.tolist() == starts[:3]
    finally:
        packing.WALK_TOKENS, packing.WALK_DOCUMENTS = saved

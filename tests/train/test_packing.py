"""Packing documents into rows: nothing lost, nothing crossing where it must not, words whole."""

from __future__ import annotations

import pytest
import torch

from corruptions.errors import DataError
from objectives_cli.data.packing import Corpus, corpus_from, encode_corpus, pack
from objectives_cli.data.sources import split_heldout
from objectives_cli.data.tokenizer import EncodedDoc, load_tokenizer


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

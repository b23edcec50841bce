"""Shared test fixtures: an odd test vocabulary and batch builders.

`TINY` uses odd ids (pad 3, mask 7, sentinels mid-range and counting down), so code that assumes
pad 0 or sentinels at the end of the vocabulary fails at once.
"""

from __future__ import annotations

import functools

import torch

from corruptions import Tokens, Vocab

TINY = Vocab(
    size=300,
    pad=3,
    unk=1,
    bos=5,
    eos=6,
    mask=7,
    sentinels=tuple(range(199, 99, -1)),  # <extra_id_0> = 199 ... <extra_id_99> = 100
    extra={"[NLU]": 8, "[NLG]": 9, "[S2S]": 10},
)
FIRST_WORD_ID = 11
LAST_WORD_ID = 99  # ordinary ids are 11..99 and 200..299
ORDINARY = [*range(FIRST_WORD_ID, LAST_WORD_ID + 1), *range(200, 300)]


def tokens(rows: list[list[int]], word_every: int = 0, sentence_every: int = 0) -> Tokens:
    """A padded batch; every `word_every`-th token opens a word (0: every token), and every
    `sentence_every`-th token opens a sentence (0: one sentence per row)."""
    words = [[word_every == 0 or i % word_every == 0 for i in range(len(r))] for r in rows]
    sents = [
        [(i % sentence_every == 0) if sentence_every else i == 0 for i in range(len(r))]
        for r in rows
    ]
    return Tokens.from_lists(rows, TINY.pad, words, sents)


def random_batch(
    batch: int, length: int, seed: int = 0, word_every: int = 0, sentence_every: int = 0
) -> Tokens:
    """Full rows of random ordinary ids, for statistical tests."""
    gen = torch.Generator().manual_seed(seed)
    pool = torch.tensor(ORDINARY)
    ids = pool[torch.randint(0, len(pool), (batch, length), generator=gen)]
    lengths = torch.full((batch,), length, dtype=torch.long)
    positions = torch.arange(length).expand(batch, length)
    words = positions % word_every == 0 if word_every else torch.ones_like(ids, dtype=torch.bool)
    sents = (positions % sentence_every == 0) if sentence_every else positions == 0
    return Tokens(ids, lengths, words, sents)


# torch.compile: dynamo probes .grad of the non-leaf tensors a graph break hands on and hides the
# warning that raises (torch._logging.hide_warnings); pytest's "error" filter would turn it into a
# failure. For @pytest.mark.filterwarnings on tests that compile.
NON_LEAF_GRAD = "ignore:The .grad attribute of a Tensor that is not a leaf:UserWarning"

_ENCODED: dict[str, list] = {}  # split -> EncodedDoc prefix of the default corpus, grown on demand


def _encoded_prefix(split: str, n_tokens: int) -> list:
    """The shortest prefix of the split's documents, encoded, that holds n_tokens (or all)."""
    from objectives_cli.data.encoding import encode_documents
    from objectives_cli.data.sources import default_corpus
    from objectives_cli.data.tokenizer import load_tokenizer

    done = _ENCODED.setdefault(split, [])
    documents = default_corpus(split)  # type: ignore[arg-type]
    total = sum(len(d.ids) for d in done)
    step = 64
    while total < n_tokens and len(done) < len(documents):
        more = encode_documents(load_tokenizer(), documents[len(done) : len(done) + step])
        done.extend(more)
        total += sum(len(d.ids) for d in more)
        step *= 2
    out, total = [], 0
    for doc in done:
        if total >= n_tokens:
            break
        out.append(doc)
        total += len(doc.ids)
    return out


@functools.cache
def corpus_tokens(n_tokens: int = 200_000, length: int = 512, split: str = "train") -> Tokens:
    """At least n_tokens tokens of the default corpus with the default tokenizer, as full-ish
    rows of `length` (rows_of the documents, taken in order until n_tokens), cached per
    process.

    Raises ValueError when the split holds fewer tokens (the held-out split has ~10k)."""
    from objectives_cli.data.packing import rows_of

    docs = _encoded_prefix(split, n_tokens)
    total = sum(len(d.ids) for d in docs)
    if total < n_tokens:
        raise ValueError(f"the {split} split has only {total} tokens, not {n_tokens}")
    return rows_of(docs, length, corpus_vocab().pad)


@functools.cache
def corpus_vocab() -> Vocab:
    """The Vocab of the default tokenizer: vocab_of(load_tokenizer())."""
    from objectives_cli.data.tokenizer import load_tokenizer, vocab_of

    return vocab_of(load_tokenizer())

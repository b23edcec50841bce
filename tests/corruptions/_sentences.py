"""Synthetic batches with sentence structure for the sentence-pair and UniLM tests.

`unique_batch` gives every token a distinct id that encodes (row, position), so an output can be
traced back exactly; `sentence_batch` gives many rows of TINY ids with random sentence starts.
"""

from __future__ import annotations

import torch

from corruptions import IGNORE, Corrupted, Tokens, Vocab
from tests.helpers import ORDINARY, TINY

BIG = Vocab(size=100_000, pad=0, unk=1, bos=2, eos=3, mask=4)
FIRST = 10  # ids FIRST + row * width + position


def unique_batch(
    n_rows: int,
    width: int,
    seed: int,
    p_sentence: float = 0.1,
    p_word: float = 0.7,
    min_len: int = 1,
) -> Tokens:
    """Rows of 1..width distinct ids (id = FIRST + row * width + position), random sentence and
    word starts (position 0 opens both)."""
    assert FIRST + n_rows * width <= BIG.size
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.randint(min_len, width + 1, (n_rows,), generator=gen)
    pos = torch.arange(width).expand(n_rows, width)
    real = pos < lengths.unsqueeze(1)
    ids = (FIRST + torch.arange(n_rows).unsqueeze(1) * width + pos).masked_fill(~real, BIG.pad)
    sents = ((torch.rand(n_rows, width, generator=gen) < p_sentence) | (pos == 0)) & real
    # a sentence start opens a word, as in real text
    words = ((torch.rand(n_rows, width, generator=gen) < p_word) | sents) & real
    return Tokens(ids, lengths, words, sents)


def sentence_batch(
    n_rows: int, width: int, seed: int, p_sentence: float, p_word: float = 1.0
) -> Tokens:
    """Full rows of random ordinary TINY ids with random sentence and word starts."""
    gen = torch.Generator().manual_seed(seed)
    pool = torch.tensor(ORDINARY)
    ids = pool[torch.randint(0, len(pool), (n_rows, width), generator=gen)]
    first = torch.arange(width).expand(n_rows, width) == 0
    sents = (torch.rand(n_rows, width, generator=gen) < p_sentence) | first
    words = (torch.rand(n_rows, width, generator=gen) < p_word) | sents
    assert TINY.pad not in ORDINARY
    return Tokens(ids, torch.full((n_rows,), width), words, sents)


def originals(out: Corrupted) -> torch.Tensor:
    """The pair before MLM: labels where a token was predicted, the input elsewhere."""
    return torch.where(out.labels != IGNORE, out.labels, out.input_ids)


def decode(token: int, width: int) -> tuple[int, int]:
    """(row, position) of a `unique_batch` id."""
    return (token - FIRST) // width, (token - FIRST) % width


def segments(out: Corrupted, row: int) -> tuple[list[int], list[int]]:
    """The two segments of `[CLS] A [SEP] B [SEP]` in output row `row`, as original ids."""
    ids = originals(out)[row, : int(out.attention_mask[row].sum())].tolist()
    types = out.extras["token_type_ids"][row, : len(ids)].tolist()
    first_sep = types.index(1) - 1 if 1 in types else len(ids) - 2
    return ids[1:first_sep], ids[first_sep + 1 : -1]

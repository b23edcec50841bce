"""Sentence-pair objectives: BERT next-sentence prediction (Devlin et al. 2018, arXiv 1810.04805)
and ALBERT sentence-order prediction (Lan et al. 2019, arXiv 1909.11942).

A row (one chunk of one document) is split at a sentence start into A and B. NSP replaces B half
the time by a segment of another row, i.e. another document (label 1); SOP keeps B but swaps the
two half the time (label 1). A pooled-[CLS] classifier predicts the label, and MLM runs on the pair:

    row          A1 A2 A3 | B1 B2            another row   X1 X2 X3 X4
    nsp label 0  [CLS] A1 A2 A3 [SEP] B1 B2 [SEP]
    nsp label 1  [CLS] A1 A2 A3 [SEP] X3 X4 [SEP]    (X from a random sentence start, cut to fit)
    sop label 0  [CLS] A1 A2 A3 [SEP] B1 B2 [SEP]
    sop label 1  [CLS] B1 B2 [SEP] A1 A2 A3 [SEP]
    token types    0   0  0  0    0   1  1    1

Rows with a single sentence always take B from another row (label 1) in both: google-research/bert
does so, and ALBERT's SOP data keeps these NSP-style negatives (albert #234). The pair fits the
row's own length (A + B <= tokens in the row, at least 2), cut from the longer side as bert's
`truncate_seq_pair`. Each row must come from a different document (the data layer's blocks); a
batch of one row has no other document, so there a single sentence is split at a random token
(NSP: label 0 always, never a B from the same document, the mislabelling of
NVIDIA/DeepLearningExamples #421; SOP: the two halves are swapped as usual).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ._ngrams import choose_ngrams, size_probs
from ._ops import encoder_batch, rand, round_half_even
from ._pairs import (
    Pair,
    Sentences,
    assemble,
    mlm_on_pair,
    other_rows,
    pair_word_starts,
    segment_from,
    sentences_of,
    source_ops,
    split_points,
    truncate_pair,
)
from .registry import param, register
from .types import Corrupted, Op, Tokens, Vocab


def _check_mlm(rate: float, mask_replace: float, random_replace: float, max_predictions: int
               ) -> None:
    if not 0.0 < rate <= 1.0:
        raise ValueError(f"rate must be in (0, 1], got {rate}")
    if mask_replace < 0 or random_replace < 0 or mask_replace + random_replace > 1.0 + 1e-9:
        raise ValueError("mask_replace and random_replace must be >= 0 and sum to <= 1")
    if max_predictions < 0:
        raise ValueError("max_predictions must be >= 0")


def _budget(pair: Pair, rate: float, max_predictions: int) -> Tensor:
    """(B,) google-research/bert's min(max_pred, max(1, round(rate x len))), len with 3 specials."""
    k = round_half_even(pair.lengths.double() * rate).clamp(min=1)
    return k.clamp(max=max_predictions) if max_predictions else k


def _row_budget(lengths: Tensor) -> Tensor:
    """(B,) tokens A + B may hold: the row's own length, at least one each (bert's max_num_tokens
    is the model length minus the three specials; here the row is that length)."""
    return torch.where(lengths > 0, lengths.clamp(min=2), 0)


def _second(batch: Tokens, sents: Sentences, a_end: Tensor, random: Tensor, gen: torch.Generator
            ) -> tuple[Tensor, Tensor, Tensor]:
    """(row, start, length) of B: the rest of the row after A, or where `random`, a segment of
    another row (another document) that starts at a sentence and fills the row's budget."""
    own = torch.arange(batch.ids.size(0), device=batch.ids.device)
    rest = (own, a_end, batch.lengths - a_end)
    if batch.ids.size(0) < 2:
        return rest
    rows = other_rows(batch.lengths, gen)
    need = _row_budget(batch.lengths) - a_end
    start, length = segment_from(sents, rows, batch.lengths, need, gen)
    return (torch.where(random, rows, own), torch.where(random, start, a_end),
            torch.where(random, length, rest[2]))


def _fitted(batch: Tokens, vocab: Vocab, a: tuple[Tensor, Tensor, Tensor],
            b: tuple[Tensor, Tensor, Tensor], swap: Tensor, gen: torch.Generator) -> Pair:
    """Truncate (A, B) to each row's budget, then lay out A,B or, where `swap`, B,A."""
    (a_row, a_start, a_len), (b_row, b_start, b_len) = a, b
    a_front, a_back, b_front, b_back = truncate_pair(a_len, b_len, _row_budget(batch.lengths), gen)
    a = (a_row, a_start + a_front, a_len - a_front - a_back)
    b = (b_row, b_start + b_front, b_len - b_front - b_back)
    first = (torch.where(swap, b[0], a[0]), torch.where(swap, b[1], a[1]),
             torch.where(swap, b[2], a[2]))
    second = (torch.where(swap, a[0], b[0]), torch.where(swap, a[1], b[1]),
              torch.where(swap, a[2], b[2]))
    return assemble(batch.ids, batch.lengths, first, second, vocab)


@dataclass(frozen=True)
class NextSentence:
    """NSP pairs with BERT MLM (exact budget, 80/10/10) on `[CLS] A [SEP] B [SEP]`."""

    random_next: float = param(0.5, "probability that B comes from another row (label 1); "
                                    "single-sentence rows always do (google-research/bert)")
    rate: float = param(0.15, "share of the pair's tokens, specials counted, chosen for MLM")
    mask_replace: float = param(0.8, "share of chosen tokens replaced by [MASK]")
    random_replace: float = param(0.1, "share of chosen tokens replaced by a random token")
    max_predictions: int = param(0, "cap on MLM predictions per pair (0: none; bert uses 20 at "
                                    "128 tokens, ~77-80 at 512)")
    exclude_special_random: bool = param(
        False, "draw random replacements from ordinary tokens only (the reference draws from all)")

    def __post_init__(self) -> None:
        if not 0.0 <= self.random_next <= 1.0:
            raise ValueError(f"random_next must be in [0, 1], got {self.random_next}")
        _check_mlm(self.rate, self.mask_replace, self.random_replace, self.max_predictions)

    def __call__(self, batch: Tokens, vocab: Vocab, gen: torch.Generator) -> Corrupted:
        own = torch.arange(batch.ids.size(0), device=batch.ids.device)
        sents = sentences_of(batch)
        alone = batch.ids.size(0) < 2  # no other document to draw B from: label 0 only
        a_end = split_points(sents, batch.lengths, gen, split_single=alone)
        label = ((sents.count < 2) | (rand(batch.lengths, gen) < self.random_next)) & (not alone)
        b = _second(batch, sents, a_end, label, gen)
        pair = _fitted(batch, vocab, (own, torch.zeros_like(a_end), a_end), b,
                       torch.zeros_like(label), gen)
        budget = _budget(pair, self.rate, self.max_predictions)
        # single tokens: the uniform choice of `_ops.choose_k`, with a topk instead of a sort
        chosen = choose_ngrams(pair.plain, None, budget, (1.0,), gen).chosen
        input_ids, labels, ops = mlm_on_pair(pair, vocab, chosen, gen, self.mask_replace,
                                             self.random_replace, self.exclude_special_random)
        extras = {"token_type_ids": pair.token_type_ids, "next_sentence_label": label.long()}
        return encoder_batch(input_ids, pair.lengths, labels, source_ops(pair, ops, batch),
                             extras)


@dataclass(frozen=True)
class SentenceOrder:
    """SOP pairs with ALBERT's n-gram whole-word MLM on `[CLS] A [SEP] B [SEP]`."""

    swap: float = param(0.5, "probability that A and B are swapped (label 1)")
    rate: float = param(0.15, "share of the pair's tokens, specials counted, chosen for MLM")
    max_predictions: int = param(
        20, "cap on MLM predictions per pair: ALBERT's flags and README use 20 at 512 tokens, "
            "i.e. 3.9% rather than 15% (albert #51); 0: no cap")
    ngram: int = param(3, "longest masked n-gram, in words (ALBERT's --ngram)")
    favor_shorter: bool = param(True, "n-gram sizes with P(n) proportional to 1/n (6/11, 3/11, "
                                      "2/11 for n <= 3) rather than uniform")
    whole_word: bool = param(True, "n-grams count whole words (ALBERT's do_whole_word_mask); "
                                   "false: tokens")
    mask_replace: float = param(0.8, "share of chosen tokens replaced by [MASK]")
    random_replace: float = param(0.1, "share of chosen tokens replaced by a random token")
    exclude_special_random: bool = param(
        False, "draw random replacements from ordinary tokens only (the reference draws from all)")

    def __post_init__(self) -> None:
        if not 0.0 <= self.swap <= 1.0:
            raise ValueError(f"swap must be in [0, 1], got {self.swap}")
        if self.ngram < 1:
            raise ValueError(f"ngram must be >= 1, got {self.ngram}")
        _check_mlm(self.rate, self.mask_replace, self.random_replace, self.max_predictions)

    def __call__(self, batch: Tokens, vocab: Vocab, gen: torch.Generator) -> Corrupted:
        own = torch.arange(batch.ids.size(0), device=batch.ids.device)
        sents = sentences_of(batch)
        alone = batch.ids.size(0) < 2  # no other document: a single sentence is split in two
        a_end = split_points(sents, batch.lengths, gen, split_single=alone)
        single = (sents.count < 2) & (not alone)  # B from another document, label 1 (albert #234)
        swap = (rand(batch.lengths, gen) < self.swap) & ~single
        b = _second(batch, sents, a_end, single, gen)
        label = swap | single
        pair = _fitted(batch, vocab, (own, torch.zeros_like(a_end), a_end), b, swap, gen)
        words = pair_word_starts(batch, pair, self.whole_word)
        budget = _budget(pair, self.rate, self.max_predictions)
        sizes = size_probs(self.ngram, self.favor_shorter)
        chosen = choose_ngrams(pair.plain, words, budget, sizes, gen).chosen
        input_ids, labels, ops = mlm_on_pair(pair, vocab, chosen, gen, self.mask_replace,
                                             self.random_replace, self.exclude_special_random)
        ops = ops.masked_fill(swap.unsqueeze(1) & pair.content & (ops == int(Op.KEEP)),
                              int(Op.MOVED))
        extras = {"token_type_ids": pair.token_type_ids, "sentence_order_label": label.long()}
        return encoder_batch(input_ids, pair.lengths, labels, source_ops(pair, ops, batch),
                             extras)


@register("nsp", arch="encoder", paper="Devlin et al. 2018, arXiv 1810.04805",
          needs_sentences=True, aliases=("bert-nsp",))
def nsp(**overrides: Any) -> NextSentence:
    """BERT next-sentence prediction: B is the true next segment or (50%) another document's; + MLM.

    Label 1 = B is random (google-research/bert). Single-sentence rows always get a random B, so
    P(label 1) = 0.5 + 0.5 q with q their share. MLM as bert-mlm on the whole pair (exact budget
    round(0.15 x length with the three specials), 80/10/10). Extras: token_type_ids,
    next_sentence_label.
    """
    return NextSentence(**overrides)


@register("sop", arch="encoder", paper="Lan et al. 2019, arXiv 1909.11942", needs_words=True,
          needs_sentences=True, aliases=("albert-sop",))
def sop(**overrides: Any) -> SentenceOrder:
    """ALBERT sentence-order prediction: A and B consecutive, swapped 50% (label 1); + n-gram MLM.

    Single-sentence rows take B from another document with label 1, as ALBERT's data does
    (albert #234), so P(label 1) = 0.5 (1 - q) + q. MLM: whole-word n-grams of up to 3 words,
    P(n) proportional to 1/n, at most 20 predictions per pair (ALBERT's flags; 3.9% at 512 tokens).
    Extras: token_type_ids, sentence_order_label.
    """
    return SentenceOrder(**overrides)

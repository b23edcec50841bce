"""Sentence-pair objectives: BERT next-sentence prediction (Devlin et al. 2018, arXiv 1810.04805)
and ALBERT sentence-order prediction (Lan et al. 2019, arXiv 1909.11942).

A row (one chunk of one document) is split at a sentence start into A and B. NSP replaces B half
the time by a segment of another row, i.e. another document (label 1); SOP keeps B but swaps the
two half the time (label 1). A pooled-[CLS] classifier predicts the label, and MLM runs on the pair:

    row          A1 A2 A3 | B1 B2            another row   X1 X2 X3 X4
    nsp label 0  [CLS] A1 A2 A3 [SEP] B1 B2 [SEP]
    nsp label 1  [CLS] A1 A2 A3 [SEP] X3 X4 [SEP]    (X from a sentence start, cut to fit)
    sop label 0  [CLS] A1 A2 A3 [SEP] B1 B2 [SEP]
    sop label 1  [CLS] B1 B2 [SEP] A1 A2 A3 [SEP]
    token types    0   0  0  0    0   1  1    1

With probability short_seq_prob (0.1, as bert and ALBERT) a row's pair targets a uniform length in
[2, row length] instead: its chunk is its first sentences, whole, until they reach the target
(and a random B grows, whole sentences, until A + B reaches it), so a short pair holds at least
the target and ends on a sentence boundary, as google-research/bert's
`create_instances_from_document` (which draws the target per document, here per row, the same
share). Chunks with a single sentence always take B from another row (label 1) in both:
google-research/bert does so, and ALBERT's SOP data keeps these NSP-style negatives (albert #234).
Every pair is then cut to the row's own length (A + B <= tokens in the row, at least 2; bert's
max_num_tokens), from the longer side as bert's `truncate_seq_pair`, never to the short target.
A random B comes from a row with text enough for it, starting at a sentence with text enough
after it (see `_pairs.segment_from`: otherwise a short pair would give its label away), and from
another document: rows of one document (`Tokens.row_documents`, as when a long document is cut
into several rows) never give each other a random B; without `row_documents` every row counts
as a document of its own. A row with no other document in its batch (a batch of one row, or of
one document) cannot take a random B, so there a single sentence is split at a random token
(NSP: label 0 always, never a B from the same document, the mislabelling of
NVIDIA/DeepLearningExamples #421; SOP: the two halves are swapped as usual).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor

from ._ngrams import choose_ngrams, size_probs
from ._ops import ORDINARY_RANDOM, check_mlm, encoder_batch, rand, round_half_even
from ._pairs import (
    Pair,
    Sentences,
    assemble,
    mlm_on_pair,
    no_other_document,
    other_rows,
    pair_origin,
    pair_word_starts,
    segment_from,
    sentences_of,
    source_ops,
    split_points,
    truncate_pair,
)
from .registry import param, register
from .types import Corrupted, Op, Tokens, Vocab


def _check_short(short_seq_prob: float) -> None:
    if not 0.0 <= short_seq_prob <= 1.0:
        raise ValueError(f"short_seq_prob must be in [0, 1], got {short_seq_prob}")


def _budget(pair: Pair, rate: float, max_predictions: int) -> Tensor:
    """(B,) google-research/bert's min(max_pred, max(1, round(rate x len))), len with 3 specials."""
    k = round_half_even(pair.lengths.double() * rate).clamp(min=1)
    return k.clamp(max=max_predictions) if max_predictions else k


def _row_budget(lengths: Tensor) -> Tensor:
    """(B,) tokens A + B may hold: the row's own length, at least one each (bert's max_num_tokens
    is the model length minus the three specials; here the row is that length)."""
    return torch.where(lengths > 0, lengths.clamp(min=2), 0)


@dataclass(frozen=True)
class Chunks:
    """What each row's pair is built from: with probability short_seq_prob a row's target is a
    uniform length in [2, its budget], and its chunk is its first sentences up to the first that
    reaches the target (google-research/bert's `target_seq_length`, drawn there per document;
    the rest of such a row is left unused); otherwise the target is the budget and the chunk the
    whole row."""

    rows: Tokens  # the source rows with their lengths cut to the chunks
    sentences: Sentences  # the chunks' sentences
    # (B,) int64: the length the chunk, and A with a random B, grow to in whole sentences
    # (bert's target_seq_length); the pair is cut to the row's budget, not to this
    target: Tensor


def chunks(batch: Tokens, sents: Sentences, short_seq_prob: float, gen: torch.Generator) -> Chunks:
    budget = _row_budget(batch.lengths)
    u, v = rand(budget, gen), rand(budget, gen)
    short = (u < short_seq_prob) & (budget > 2)
    target = torch.where(short, 2 + (v * (budget - 1)).long().clamp(max=budget - 2), budget)
    # the chunk ends at the first sentence start at or past the target (or at the row's end)
    end = sents.starts.gather(
        1, torch.searchsorted(sents.starts, target.unsqueeze(1)).clamp(max=sents.starts.size(1) - 1)
    ).squeeze(1)
    end = torch.where(short, end.minimum(batch.lengths), batch.lengths)
    if not bool(short.any()):
        return Chunks(batch, sents, target)
    rows = replace(batch, lengths=end)
    return Chunks(rows, sentences_of(rows), target)


def _pair(
    batch: Tokens,
    vocab: Vocab,
    sents: Sentences,
    chunk: Chunks,
    a_end: Tensor,
    from_other: Tensor,
    swap: Tensor | None,
    gen: torch.Generator,
) -> Pair:
    """`[CLS] A [SEP] B [SEP]` per row. A is the chunk up to `a_end`; B the rest of the chunk or,
    where `from_other`, a segment of another (whole) row, i.e. another document, that starts at a
    sentence and takes whole sentences until A + B reaches the target. Both are then truncated
    to the row's budget (bert's max_num_tokens, not the target); A and B trade places where
    `swap`."""
    lengths = chunk.rows.lengths
    own = torch.arange(lengths.size(0), device=lengths.device)
    need = chunk.target - a_end  # bert's target_b_length
    b_row, b_start, b_len = own, a_end, lengths - a_end
    if lengths.size(0) >= 2:
        rows = other_rows(batch.lengths, gen, need, batch.row_documents)
        start, length = segment_from(sents, rows, batch.lengths, need, gen)
        b_row = torch.where(from_other, rows, own)
        b_start = torch.where(from_other, start, a_end)
        b_len = torch.where(from_other, length, b_len)
    budget = _row_budget(batch.lengths)
    a_front, a_back, b_front, b_back = truncate_pair(a_end, b_len, budget, gen)
    a = torch.stack([own, a_front, a_end - a_front - a_back])  # (row, start, length) x B
    b = torch.stack([b_row, b_start + b_front, b_len - b_front - b_back])
    if swap is not None:
        a, b = torch.where(swap, b, a), torch.where(swap, a, b)
    return assemble(batch.ids, batch.lengths, a.unbind(), b.unbind(), vocab)


@dataclass(frozen=True)
class NextSentence:
    """NSP pairs with BERT MLM (exact budget, 80/10/10) on `[CLS] A [SEP] B [SEP]`."""

    random_next: float = param(
        0.5,
        "probability that B comes from a row of another document (label 1); "
        "single-sentence rows always do (google-research/bert)",
    )
    short_seq_prob: float = param(
        0.1,
        "probability that a row's pair targets a uniform length in [2, row length] instead, "
        "reached in whole sentences (bert's short_seq_prob)",
    )
    rate: float = param(0.15, "share of the pair's tokens, specials counted, chosen for MLM")
    mask_replace: float = param(0.8, "share of chosen tokens replaced by [MASK]")
    random_replace: float = param(
        0.1, f"share of chosen tokens replaced by a random token ({ORDINARY_RANDOM})"
    )
    max_predictions: int = param(
        0, "cap on MLM predictions per pair (0: none; bert uses 20 at 128 tokens, ~77-80 at 512)"
    )

    def __post_init__(self) -> None:
        if not 0.0 <= self.random_next <= 1.0:
            raise ValueError(f"random_next must be in [0, 1], got {self.random_next}")
        _check_short(self.short_seq_prob)
        check_mlm(self.rate, self.mask_replace, self.random_replace, self.max_predictions)

    def __call__(
        self, batch: Tokens, vocab: Vocab, gen: torch.Generator, *, with_origin: bool = False
    ) -> Corrupted:
        sents = sentences_of(batch)
        chunk = chunks(batch, sents, self.short_seq_prob, gen)
        alone = no_other_document(batch.lengths, batch.row_documents)  # B cannot be random
        a_end = split_points(chunk.sentences, chunk.rows.lengths, gen, split_single=alone)
        single = chunk.sentences.count < 2
        label = (single | (rand(batch.lengths, gen) < self.random_next)) & ~alone
        pair = _pair(batch, vocab, sents, chunk, a_end, label, None, gen)
        budget = _budget(pair, self.rate, self.max_predictions)
        # single tokens, uniformly, as `_ops.choose_k` would choose them but from other draws
        # (one int64 key per slot); kept so that NSP's outputs stay as they were
        chosen = choose_ngrams(pair.plain, None, budget, (1.0,), gen).chosen
        input_ids, labels, ops = mlm_on_pair(
            pair,
            vocab,
            chosen,
            gen,
            self.mask_replace,
            self.random_replace,
        )
        extras = {"token_type_ids": pair.token_type_ids, "next_sentence_label": label.long()}
        origin = pair_origin(pair, batch.ids.size(1)) if with_origin else None
        ops = source_ops(pair, ops, batch)
        return encoder_batch(input_ids, pair.lengths, labels, ops, extras, origin)


@dataclass(frozen=True)
class SentenceOrder:
    """SOP pairs with ALBERT's n-gram whole-word MLM on `[CLS] A [SEP] B [SEP]`."""

    swap: float = param(0.5, "probability that A and B are swapped (label 1)")
    short_seq_prob: float = param(
        0.1,
        "probability that a row's pair targets a uniform length in [2, row length] instead, "
        "reached in whole sentences (ALBERT's short_seq_prob)",
    )
    rate: float = param(0.15, "share of the pair's tokens, specials counted, chosen for MLM")
    max_predictions: int = param(
        20,
        "cap on MLM predictions per pair: ALBERT's flags and README use 20 at 512 tokens, "
        "i.e. 3.9% rather than 15% (albert #51); 0: no cap",
    )
    ngram: int = param(3, "longest masked n-gram, in words (ALBERT's --ngram)")
    favor_shorter: bool = param(
        True,
        "n-gram sizes with P(n) proportional to 1/n (6/11, 3/11, "
        "2/11 for n <= 3) rather than uniform",
    )
    whole_word: bool = param(
        True, "n-grams count whole words (ALBERT's do_whole_word_mask); false: tokens"
    )
    mask_replace: float = param(0.8, "share of chosen tokens replaced by [MASK]")
    random_replace: float = param(
        0.1, f"share of chosen tokens replaced by a random token ({ORDINARY_RANDOM})"
    )

    def __post_init__(self) -> None:
        if not 0.0 <= self.swap <= 1.0:
            raise ValueError(f"swap must be in [0, 1], got {self.swap}")
        _check_short(self.short_seq_prob)
        if self.ngram < 1:
            raise ValueError(f"ngram must be >= 1, got {self.ngram}")
        check_mlm(self.rate, self.mask_replace, self.random_replace, self.max_predictions)

    def __call__(
        self, batch: Tokens, vocab: Vocab, gen: torch.Generator, *, with_origin: bool = False
    ) -> Corrupted:
        sents = sentences_of(batch)
        chunk = chunks(batch, sents, self.short_seq_prob, gen)
        alone = no_other_document(batch.lengths, batch.row_documents)  # split a single sentence
        a_end = split_points(chunk.sentences, chunk.rows.lengths, gen, split_single=alone)
        # one sentence: B from another document, label 1 (albert #234)
        single = (chunk.sentences.count < 2) & ~alone
        swap = (rand(batch.lengths, gen) < self.swap) & ~single
        label = swap | single
        pair = _pair(batch, vocab, sents, chunk, a_end, single, swap, gen)
        words = pair_word_starts(batch, pair, self.whole_word)
        budget = _budget(pair, self.rate, self.max_predictions)
        sizes = size_probs(self.ngram, self.favor_shorter)
        chosen = choose_ngrams(pair.plain, words, budget, sizes, gen).chosen
        input_ids, labels, ops = mlm_on_pair(
            pair,
            vocab,
            chosen,
            gen,
            self.mask_replace,
            self.random_replace,
        )
        ops = ops.masked_fill(
            swap.unsqueeze(1) & pair.content & (ops == int(Op.KEEP)), int(Op.MOVED)
        )
        extras = {"token_type_ids": pair.token_type_ids, "sentence_order_label": label.long()}
        origin = pair_origin(pair, batch.ids.size(1)) if with_origin else None
        ops = source_ops(pair, ops, batch)
        return encoder_batch(input_ids, pair.lengths, labels, ops, extras, origin)


@register(
    "nsp",
    arch="encoder",
    paper="Devlin et al. 2018, arXiv 1810.04805",
    needs_sentences=True,
    aliases=("bert-nsp",),
)
def nsp(**overrides: Any) -> NextSentence:
    """BERT next-sentence prediction: B is the true next segment or (50%) another document's; + MLM.

    Label 1 = B is random (google-research/bert). Single-sentence chunks always get a random B, so
    P(label 1) = 0.5 + 0.5 q with q their share. 10% of pairs target a shorter length, reached in
    whole sentences. MLM as bert-mlm on the whole pair (exact budget round(0.15 x length with the
    three specials), 80/10/10). Extras: token_type_ids, next_sentence_label.
    """
    return NextSentence(**overrides)


@register(
    "sop",
    arch="encoder",
    paper="Lan et al. 2019, arXiv 1909.11942",
    needs_words=True,
    needs_sentences=True,
    aliases=("albert-sop",),
)
def sop(**overrides: Any) -> SentenceOrder:
    """ALBERT sentence-order prediction: A and B consecutive, swapped 50% (label 1); + n-gram MLM.

    Single-sentence chunks take B from another document with label 1, as ALBERT's data does
    (albert #234), so P(label 1) = 0.5 (1 - q) + q. 10% of pairs target a shorter length, reached
    in whole sentences. MLM: whole-word n-grams of up to 3 words, P(n) proportional to 1/n, at
    most 20 predictions per pair (ALBERT's flags; 3.9% at 512 tokens). Extras: token_type_ids,
    sentence_order_label.
    """
    return SentenceOrder(**overrides)

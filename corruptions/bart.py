"""BART noising functions (Lewis et al. 2019, arXiv 1910.13461; fairseq `denoising_dataset.py`).

The encoder reads a noised document, the decoder rewrites the whole clean document:

    ids      A b c . D e . F g h .                          (three sentences, every token a word)
    permute  F g h . A b c . D e .                          bart-permute: sentences reordered
    infill   F <mask> . A b c . <mask> <mask> e .           bart-infill: "g h" -> one <mask>, a
                                                           zero-length span inserts a <mask>,
                                                           "D" -> one <mask>
    rotate   c . <mask> <mask> e . F <mask> . A b          bart-rotate: a cyclic shift
    input    <s> c . <mask> <mask> e . F <mask> . A b </s>
    labels   <s> A b c . D e . F g h . </s>                 (<s> carries no loss, see below)
    decoder  </s> <s> A b c . D e . F g h .                 labels shifted behind </s>

Noising functions: `bart-mask` (token masking), `bart-delete` (token deletion), `bart-infill`
(text infilling: Poisson span lengths counted in words, one <mask> per span), `bart-permute`
(sentence permutation), `bart-rotate` (document rotation) and `bart` (BART-large: infilling +
permutation). They compose (`bart-infill+bart-rotate`); whatever order they are named in, they
run in the reference's fixed order: permute -> mask / infill / delete -> insert -> rotate. The
insertion step is the one text infilling asks for (its zero-length spans).

The family is built from shared stages: a noise mask (`_ops.pick_k` for exact per-row budgets,
`span_lengths` and word coverage for spans), an input transform (replace, `compact`, `_insert`,
reorder) and the target (`_finish`). Each noising function is one stage on a `_Doc` (the content
without <s>/</s>, its clean base text and the op codes); `BartNoising` runs the stages and frames
the result: source `<s> x </s>`, target the clean `<s> x </s>`, decoder input `</s> <s> x`
(fairseq moves the final </s> to the front; Hugging Face's `decoder_start_token_id` is </s>).
Labels are IGNORE at <s> (it always follows the start token, a free prediction the project's
contract does not score) and at special tokens of the content. Sentence permutation reorders the
base text itself, sentence starts included, so permuted sentences keep their boundaries.

Special tokens inside the content are walls: they are never chosen, masked, deleted or covered by a
span (a span stops in front of one, as fairseq's spans stop at </s>) and do not count in the
budgets. Permutation and rotation carry them along with their neighbours; their ops stay KEEP.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

import torch
from torch import Tensor

from ._ops import compact, frame, length_mask, pick_k, positions, random_tokens
from .errors import UsageError
from .registry import param, register
from .types import IGNORE, Corrupted, Corruption, Op, Tokens, Vocab

PAPER = "Lewis et al. 2019, arXiv 1910.13461"
LAMBDA_HELP = (
    "mean span length in words, Poisson(lambda) truncated where the pmf falls below 1e-7 "
    "(paper: 3; the BART-large command in fairseq #1899 used 3.5)"
)
MASK_RANDOM_HELP = "share of masks that are a random token instead (BART-large command: 0.1)"
EXCLUDE_SPECIAL_HELP = (
    "draw random tokens from ordinary tokens only (fairseq draws from the whole vocabulary)"
)
SUBWORD_RATE_HELP = (
    "share of tokens hit, budget ceil(rate x tokens) per document (0.3 as BART-large; the rate "
    "behind the paper's base-size Table 1 rows is not stated)"
)


# ---------------------------------------------------------------------------------------------
# The document being noised


@dataclass(frozen=True)
class _Doc:
    """Documents mid-noising: content only (no <s>/</s>).

    `base` is the clean text the token stages start from: the input, or after sentence
    permutation the permuted input, whose positions map back to the input's through `perm`
    (None: the identity). `ops` are Op codes on base positions. `pristine` while `ids` are still
    `base.ids` (nothing masked, removed, inserted or rotated yet).
    """

    ids: Tensor  # (B, W) int64
    lengths: Tensor  # (B,) int64
    base: Tokens
    protected: Tensor  # (B, L) bool: special ids of the base content, never noised
    ops: Tensor  # (B, L) int8 on base positions
    perm: Tensor | None = None  # (B, L) int64: input position of each base position
    pristine: bool = True
    any_special: bool = True  # False: `protected` is all False (nothing to carry or wall off)

    @staticmethod
    def start(batch: Tokens, vocab: Vocab) -> _Doc:
        protected = vocab.is_special(batch.ids) & batch.real
        return _Doc(
            ids=batch.ids,
            lengths=batch.lengths,
            base=batch,
            protected=protected,
            ops=torch.zeros_like(batch.ids, dtype=torch.int8),
            any_special=bool(protected.any()),
        )

    @property
    def real(self) -> Tensor:
        return length_mask(self.lengths, self.ids.size(1))

    def untouched(self, stage: str) -> None:
        """Masking and permutation work on base positions: nothing may have moved before."""
        if not self.pristine:
            raise RuntimeError(f"{stage} must run before tokens are masked, removed or moved")

    def changed(self, ids: Tensor, ops: Tensor, lengths: Tensor | None = None) -> _Doc:
        return replace(
            self,
            ids=ids,
            ops=ops,
            pristine=False,
            lengths=self.lengths if lengths is None else lengths,
        )

    def source_ops(self) -> Tensor:
        """(B, L) Op codes on the input's positions; specials and padding KEEP."""
        keep = self.protected | ~self.base.real if self.any_special else ~self.base.real
        ops = self.ops.masked_fill(keep, int(Op.KEEP))
        if self.perm is None:
            return ops
        return torch.empty_like(ops).scatter_(1, self.perm, ops)


def _budget(count: Tensor, rate: float) -> Tensor:
    """ceil(count x rate) in float32, as fairseq computes it on its float word-start tensor."""
    return torch.ceil(count.float() * rate).long()


def _put(target: Tensor, idx: Tensor, valid: Tensor, values: Tensor | int | bool) -> Tensor:
    """A copy of `target` (B, W) with values written at idx[b, j] where valid[b, j]."""
    spare = target.size(1)
    out = torch.cat([target, target.new_zeros(target.size(0), 1)], dim=1)
    values = torch.as_tensor(values, dtype=target.dtype, device=target.device).expand(idx.shape)
    return out.scatter_(1, torch.where(valid, idx, spare), values)[:, :-1]


def _masks(
    idx: Tensor,
    valid: Tensor,
    mask_random: float,
    vocab: Vocab,
    gen: torch.Generator,
    exclude_special: bool = False,
) -> tuple[Tensor, Tensor]:
    """(ids, is_random) for picked positions: <mask>, or a random id with prob `mask_random`
    (drawn from the whole vocabulary, as fairseq, unless `exclude_special`)."""
    is_random = valid & (torch.rand(idx.shape, generator=gen, device=idx.device) < mask_random)
    random_ids = random_tokens(idx, vocab, gen, exclude_special)
    return torch.where(is_random, random_ids, vocab.mask), is_random


# ---------------------------------------------------------------------------------------------
# Shared stages: choose tokens, Poisson spans, insertion


def _subword_pick(doc: _Doc, rate: float, gen: torch.Generator) -> tuple[Tensor, Tensor]:
    """ceil(rate x ordinary tokens) distinct ordinary tokens per row (fairseq: subword)."""
    ordinary = doc.base.real & ~doc.protected
    return pick_k(ordinary, _budget(ordinary.sum(1), rate), gen)


def poisson_cdf(lam: float) -> list[float]:
    """CDF of Poisson(lam) truncated after the first k whose pmf is below 1e-7 (fairseq's table)."""
    pmf, term = [], math.exp(-lam)
    for k in range(128):
        pmf.append(term)
        if term < 1e-7:
            break
        term *= lam / (k + 1)
    total, acc, cdf = sum(pmf), 0.0, []
    for p in pmf:
        acc += p
        cdf.append(acc / total)
    return cdf


def poisson_draws(
    shape: tuple[int, int], lam: float, gen: torch.Generator, device: torch.device | str = "cpu"
) -> Tensor:
    """i.i.d. span lengths from fairseq's truncated Poisson table (inverse CDF), int64."""
    cdf = torch.tensor(poisson_cdf(lam), dtype=torch.float64, device=device)
    u = torch.rand(shape, generator=gen, device=device, dtype=torch.float64)
    return torch.searchsorted(cdf, u, right=True).clamp(max=cdf.numel() - 1)


def span_lengths(budget: Tensor, lam: float, gen: torch.Generator) -> tuple[Tensor, Tensor]:
    """Poisson span lengths per row until their sum reaches `budget`, the last one trimmed.

    As fairseq: draw, append draws while the running sum is short, cut at the first index where
    it reaches the budget and shorten that length so the total is exactly the budget. Zero lengths
    stay in the list (they become insertions).

    Returns:
        (lengths, used): (B, K) int64 and bool; sum(lengths[used]) == budget per row.
    """
    most = int(budget.max()) if budget.numel() else 0
    width = math.ceil(most / lam * 1.25) + 8  # enough draws for nearly every row in one round
    draws: list[Tensor] = []
    total = torch.zeros_like(budget)
    while True:
        draws.append(poisson_draws((budget.size(0), width), lam, gen, budget.device))
        total = total + draws[-1].sum(1)
        if not bool((total < budget).any()):
            break
    lengths = torch.cat(draws, dim=1)
    cum = lengths.cumsum(1)
    cut = (cum < budget.unsqueeze(1)).sum(1, keepdim=True)  # first index where the sum is reached
    before = torch.where(cut > 0, cum.gather(1, (cut - 1).clamp(min=0)), 0)
    col = positions(lengths)
    lengths = torch.where(col == cut, budget.unsqueeze(1) - before, lengths)
    used = (col <= cut) & (budget > 0).unsqueeze(1)
    return lengths.masked_fill(~used, 0), used


def _words(doc: _Doc) -> tuple[Tensor | None, Tensor, Tensor | None]:
    """Word structure with specials as walls: (word index per token, None when every token is a
    word; ordinary word starts; special flags, None when the batch has none).

    A special token is a word of its own and the token after it opens a word; the first token of
    a row opens a word even if the data layer says it continues one (a block cut inside a word).
    """
    real, word_starts = doc.base.real, doc.base.word_starts
    special = doc.protected if doc.any_special else None
    if word_starts is None and special is None:
        return None, real, None
    starts = real.clone() if word_starts is None else word_starts & real
    starts[:, 0] |= real[:, 0]
    if special is not None:
        starts[:, 1:] |= special[:, :-1] & real[:, 1:]
        starts |= special
    ordinary = starts if special is None else starts & ~special
    return starts.long().cumsum(1) - 1, ordinary, special


def _ends(doc: _Doc, word: Tensor | None, special: Tensor | None, idx: Tensor) -> Tensor:
    """Word index of the first wall at or after each picked position: the next special token,
    else the end of the row (as fairseq's </s>)."""
    if word is None:
        return doc.lengths.unsqueeze(1).expand_as(idx)
    n_words = word.gather(1, (doc.lengths - 1).clamp(min=0).unsqueeze(1)) + 1
    if special is None:
        return n_words.expand_as(idx)
    width = word.size(1)
    nxt = torch.where(special, positions(word), width).flip(1).cummin(1).values.flip(1)
    nxt = nxt.gather(1, idx)
    return torch.where(nxt < width, word.gather(1, nxt.clamp(max=width - 1)), n_words)


def coverage(first: Tensor, last: Tensor, valid: Tensor, width: int) -> tuple[Tensor, Tensor]:
    """How many spans cover each of `width` words, and which spans keep their <mask>.

    Spans are [first, last) in words (B, S), where `valid`. A difference array (+1 at a span's
    first word, -1 after its last) summed along the row counts the spans over every word. A
    span keeps its <mask> when no other span covers its first word: starts are distinct words,
    so any other span there started earlier, and fairseq's extension of that span deletes the
    later start. Abutting spans keep a <mask> each.

    Returns:
        (cover, head): (B, width) int64 and (B, S) bool.
    """
    cover = torch.zeros(first.size(0), width + 2, dtype=torch.long, device=first.device)
    spare = torch.full_like(first, width + 1)
    cover.scatter_add_(1, torch.where(valid, first, spare), valid.long())
    cover.scatter_add_(1, torch.where(valid, last, spare), -valid.long())
    cover = cover.cumsum(1)
    head = valid & (cover.gather(1, first) == 1)
    return cover[:, :width], head


def _span_noise(
    doc: _Doc,
    rate: float,
    lam: float,
    mask_random: float,
    vocab: Vocab,
    gen: torch.Generator,
    exclude_special: bool = False,
) -> tuple[_Doc, Tensor]:
    """fairseq's span-poisson masking with replace_length 1, in words.

    Spans start at distinct random ordinary word starts and cover `length` words (stopping at a
    wall). A span's first token becomes <mask> unless it lies inside another span that started
    earlier (overlaps are not merged: the reference deletes the later start); every other covered
    token is deleted. Returns the noised doc and the number of masks to insert per row.
    """
    doc.untouched("text infilling")
    real, width = doc.base.real, doc.ids.size(1)
    if width == 0:
        return doc, doc.lengths
    word, ordinary, special = _words(doc)
    n_ordinary = ordinary.sum(1)
    budget = _budget(n_ordinary, rate)
    lengths, used = span_lengths(budget, lam, gen)
    nonzero = used & (lengths > 0)
    n_insert = (used & (lengths == 0)).sum(1)
    idx, valid = pick_k(ordinary, nonzero.sum(1), gen, n_ordinary)
    span_len = compact(lengths, nonzero, 0)[:, : idx.size(1)]  # paired with the random starts
    first = idx if word is None else word.gather(1, idx).clamp(min=0)  # (padding of empty rows)
    last = torch.minimum(first + span_len, _ends(doc, word, special, idx))  # exclusive
    cover, head = coverage(first, last, valid, width)
    covered = (cover if word is None else cover.gather(1, word.clamp(min=0))) > 0
    covered &= real
    fill, is_random = _masks(idx, head, mask_random, vocab, gen, exclude_special)
    ops = _put(
        doc.ops.masked_fill(covered, int(Op.SPAN)),
        idx,
        head,
        torch.where(is_random, int(Op.RANDOM), int(Op.MASK)),
    )
    keep = real & (ops != int(Op.SPAN))  # covered tokens go, except each span's <mask>
    # compact the kept tokens, then write each span's <mask> at its token's new place
    kept = keep.long().cumsum(1)
    new_len = kept[:, -1]
    out_width = int(new_len.max())
    dest = torch.where(keep, kept - 1, out_width)
    ids = doc.ids.new_zeros((doc.ids.size(0), out_width + 1)).scatter_(1, dest, doc.ids)
    ids.scatter_(1, torch.where(head, dest.gather(1, idx), out_width), fill)
    return doc.changed(ids[:, :out_width], ops, new_len), n_insert


def _insert(
    doc: _Doc,
    n_insert: Tensor,
    mask_random: float,
    vocab: Vocab,
    gen: torch.Generator,
    exclude_special: bool = False,
) -> _Doc:
    """fairseq's insertion noise: n_insert[b] new tokens at uniformly random slots of the
    lengthened content (never before <s> or after </s>); the first ceil(n x mask_random) of them
    random ids, the rest <mask>. Exactly n_insert tokens (fairseq's ceil(len x n/len) adds one
    more on a float rounding error now and then)."""
    if not bool((n_insert > 0).any()):
        return doc
    width = doc.ids.size(1) + int(n_insert.max())
    new_len = doc.lengths + n_insert
    slots = length_mask(new_len, width)
    idx, valid = pick_k(slots, n_insert, gen, new_len)
    n_random = torch.ceil(n_insert.double() * mask_random).long()
    rank = torch.arange(idx.size(1), device=idx.device).unsqueeze(0)
    random_ids = random_tokens(idx, vocab, gen, exclude_special)
    fill = torch.where(rank < n_random.unsqueeze(1), random_ids, vocab.mask)
    at = torch.where(valid, idx, width)  # invalid picks go to a spare last column
    inserted = slots.new_zeros((slots.size(0), width + 1)).scatter_(1, at, True)[:, :width]
    old = torch.cat([doc.ids, doc.ids.new_zeros(doc.ids.size(0), 1)], dim=1)
    source = ((~inserted).long().cumsum(1) - 1).clamp(0, doc.ids.size(1))  # old position
    source = torch.cat([source, source.new_full((source.size(0), 1), doc.ids.size(1))], dim=1)
    ids = old.gather(1, source)
    ids[:, :width].masked_fill_(~slots, 0)
    ids.scatter_(1, at, fill)
    return replace(doc, ids=ids[:, :width], lengths=new_len)


# ---------------------------------------------------------------------------------------------
# Composition


def compose(parts: Sequence[Corruption]) -> BartNoising:
    """Chain BART noising functions in the reference's order (permute, mask/infill/delete, insert,
    rotate), whatever order they were given in; two of one kind cannot be combined."""
    flat: list[Any] = []
    for part in parts:
        flat.extend(getattr(part, "parts", (part,)))
    stages = sorted(flat, key=lambda p: p.stage)
    for a, b in itertools.pairwise(stages):
        if a.stage == b.stage:
            raise UsageError(
                f"{a.kind} and {b.kind} cannot be combined",
                "BART applies one of each: permutation, then one of masking / deletion / "
                "infilling, then rotation",
            )
    return BartNoising(tuple(stages))


@dataclass(frozen=True)
class BartNoising:
    """BART noising functions in the reference's order; source and target framed `<s> x </s>`."""

    parts: tuple[Any, ...] = field(default=())
    combine: ClassVar = staticmethod(compose)

    def __call__(self, batch: Tokens, vocab: Vocab, gen: torch.Generator) -> Corrupted:
        doc = _Doc.start(batch, vocab)
        for part in self.parts:
            doc = part.apply(doc, vocab, gen)
        return _finish(doc, batch, vocab)


def _finish(doc: _Doc, batch: Tokens, vocab: Vocab) -> Corrupted:
    """Frame source and target as `<s> x </s>`; decoder input `</s> <s> x` (fairseq's shift).

    Built in place rather than through `seq2seq`: the target's labels and decoder input come
    straight from the batch (labels IGNORE at <s>, specials and padding).
    """
    width = doc.ids.size(1)
    source = frame(doc.ids, doc.lengths, vocab.pad, vocab.bos, vocab.eos)
    ids, n = batch.ids, batch.lengths
    real = batch.real
    unscored = ~real
    if doc.any_special:  # back on the input's positions
        unscored |= (
            doc.protected
            if doc.perm is None
            else torch.empty_like(doc.protected).scatter_(1, doc.perm, doc.protected)
        )
    labels = ids.new_full((ids.size(0), ids.size(1) + 2), IGNORE)
    labels[:, 1:-1] = ids.masked_fill(unscored, IGNORE)
    labels.scatter_(1, (n + 1).unsqueeze(1), vocab.eos)
    decoder = ids.new_empty((ids.size(0), ids.size(1) + 2))
    decoder[:, 0] = vocab.eos
    decoder[:, 1] = vocab.bos
    decoder[:, 2:] = ids.masked_fill(~real, vocab.pad)
    return Corrupted(
        input_ids=source,
        attention_mask=length_mask(doc.lengths + 2, width + 2),
        labels=labels,
        decoder_input_ids=decoder,
        ops=doc.source_ops(),
    )


class _Stage:
    """What every noising function shares: its place in the order and how it composes."""

    stage: ClassVar[int]
    kind: ClassVar[str]
    combine: ClassVar = staticmethod(compose)

    def apply(self, doc: _Doc, vocab: Vocab, gen: torch.Generator) -> _Doc:
        raise NotImplementedError

    def __call__(self, batch: Tokens, vocab: Vocab, gen: torch.Generator) -> Corrupted:
        return BartNoising((self,))(batch, vocab, gen)


def _check_rate(name: str, value: float, low_open: bool = True) -> None:
    ok = (0.0 < value <= 1.0) if low_open else (0.0 <= value <= 1.0)
    if not ok:
        raise ValueError(f"{name} must be in {'(0' if low_open else '[0'}, 1], got {value}")


# ---------------------------------------------------------------------------------------------
# The noising functions


@dataclass(frozen=True)
class SentencePermutation(_Stage):
    """Shuffle ceil(ratio x sentences) randomly chosen sentences among their own slots."""

    stage: ClassVar[int] = 0
    kind: ClassVar[str] = "sentence permutation"
    permute_ratio: float = param(1.0, "share of sentences shuffled among their slots (BART: all)")

    def __post_init__(self) -> None:
        _check_rate("permute_ratio", self.permute_ratio, low_open=False)

    def apply(self, doc: _Doc, vocab: Vocab, gen: torch.Generator) -> _Doc:
        doc.untouched("sentence permutation")
        base, real = doc.base, doc.base.real
        if base.sentence_starts is None:  # one sentence: nothing to permute
            return doc
        index = _sentence_order(base.sentence_starts & real, real, self.permute_ratio, gen)
        moved = index != positions(real)  # padding stays in place
        # the token stages after this one read words, never sentences: those are not carried
        new = Tokens(
            base.ids.gather(1, index),
            base.lengths,
            None if base.word_starts is None else base.word_starts.gather(1, index),
        )
        return replace(
            doc,
            ids=new.ids,
            base=new,
            protected=doc.protected.gather(1, index) if doc.any_special else doc.protected,
            ops=doc.ops.masked_fill(moved, int(Op.MOVED)),  # pristine: all were KEEP
            perm=index if doc.perm is None else doc.perm.gather(1, index),
        )


def _fill_slots(chosen: Tensor, valid: Tensor, slot_ids: Tensor, n_slots: int) -> Tensor:
    """(B, n_slots) sentence placed in each slot: the chosen sentences (random order) fill the
    slots they came from taken in increasing order; the others stay."""
    chosen = torch.where(valid, chosen, n_slots)
    # the same sentences in their own order are the slots they fill (a sort of distinct ids)
    marked = torch.zeros(chosen.size(0), n_slots + 1, dtype=torch.bool, device=chosen.device)
    marked = marked.scatter_(1, chosen, True)[:, :n_slots]
    slots = compact(slot_ids[:, :-1].expand_as(marked), marked, n_slots)
    slots = torch.cat(
        [slots, chosen.new_full((chosen.size(0), chosen.size(1) - slots.size(1)), n_slots)], dim=1
    )
    return slot_ids.expand(chosen.size(0), -1).clone().scatter_(1, slots, chosen)[:, :n_slots]


def _sentence_order(starts: Tensor, real: Tensor, ratio: float, gen: torch.Generator) -> Tensor:
    """(B, L) index: the position each output position takes its token from, after shuffling
    ceil(ratio x sentences) random sentences among their own slots (fairseq's
    permute_sentences); padding stays in place."""
    starts[:, :1] |= real[:, :1]  # a row's first token opens a sentence (starts is ours)
    sentence = (starts.cumsum(1) - 1).clamp(min=0)  # (B, L)
    n_sent = starts.sum(1)
    n_slots = max(int(n_sent.max()) if n_sent.numel() else 0, 1)
    k = torch.ceil(n_sent.double() * 2 * ratio / 2.0).long()  # fairseq's ceil(n x 2p / 2)
    slot_ids = torch.arange(n_slots + 1, device=real.device).unsqueeze(0)
    chosen, valid = pick_k(slot_ids[:, :-1] < n_sent.unsqueeze(1), k, gen)  # random order
    if chosen.size(1) == n_slots and bool((k >= n_sent).all()):
        # every sentence is chosen (BART's ratio 1): slot j takes the j-th chosen sentence
        order = torch.where(valid, chosen, slot_ids[:, :-1])
    else:
        order = _fill_slots(chosen, valid, slot_ids, n_slots)
    slot_of = torch.empty_like(order).scatter_(1, order, slot_ids[:, :-1].expand_as(order))
    sent_len = torch.zeros(real.size(0), n_slots + 1, dtype=torch.long, device=real.device)
    ones = sentence.new_ones(1, 1).expand_as(sentence)  # padding counts in the spare column
    sent_len = sent_len.scatter_add_(1, torch.where(real, sentence, n_slots), ones)
    sent_len = sent_len[:, :n_slots]
    old_start = sent_len.cumsum(1) - sent_len
    out_len = sent_len.gather(1, order)
    new_start = (out_len.cumsum(1) - out_len).gather(1, slot_of)
    pos = positions(real).expand_as(sentence)
    dest = (new_start - old_start).gather(1, sentence) + pos
    dest = torch.where(real, dest, pos)  # where each token goes
    return torch.empty_like(dest).scatter_(1, dest, pos)


@dataclass(frozen=True)
class TokenMasking(_Stage):
    """Replace ceil(rate x tokens) random tokens by <mask> (fairseq mask_length=subword,
    replace_length=1)."""

    stage: ClassVar[int] = 1
    kind: ClassVar[str] = "token masking"
    rate: float = param(0.3, SUBWORD_RATE_HELP)
    mask_random: float = param(0.1, MASK_RANDOM_HELP)
    exclude_special_random: bool = param(False, EXCLUDE_SPECIAL_HELP)

    def __post_init__(self) -> None:
        _check_rate("rate", self.rate)
        _check_rate("mask_random", self.mask_random, low_open=False)

    def apply(self, doc: _Doc, vocab: Vocab, gen: torch.Generator) -> _Doc:
        doc.untouched("token masking")
        idx, valid = _subword_pick(doc, self.rate, gen)
        fill, is_random = _masks(
            idx, valid, self.mask_random, vocab, gen, self.exclude_special_random
        )
        ops = _put(doc.ops, idx, valid, torch.where(is_random, int(Op.RANDOM), int(Op.MASK)))
        return doc.changed(_put(doc.ids, idx, valid, fill), ops)


@dataclass(frozen=True)
class TokenDeletion(_Stage):
    """Delete ceil(rate x tokens) random tokens (fairseq mask_length=subword, replace_length=0)."""

    stage: ClassVar[int] = 1
    kind: ClassVar[str] = "token deletion"
    rate: float = param(0.3, SUBWORD_RATE_HELP)

    def __post_init__(self) -> None:
        _check_rate("rate", self.rate)

    def apply(self, doc: _Doc, vocab: Vocab, gen: torch.Generator) -> _Doc:
        doc.untouched("token deletion")
        idx, valid = _subword_pick(doc, self.rate, gen)
        keep = _put(doc.base.real, idx, valid, False)
        return doc.changed(
            compact(doc.ids, keep, 0), _put(doc.ops, idx, valid, int(Op.DELETE)), keep.sum(1)
        )


@dataclass(frozen=True)
class TextInfilling(_Stage):
    """Replace Poisson-length word spans by one <mask> each; zero-length spans insert a <mask>."""

    stage: ClassVar[int] = 1
    kind: ClassVar[str] = "text infilling"
    rate: float = param(0.3, "share of words in spans, budget ceil(rate x words) (BART: 0.3)")
    poisson_lambda: float = param(3.0, LAMBDA_HELP)
    mask_random: float = param(0.1, MASK_RANDOM_HELP)
    exclude_special_random: bool = param(False, EXCLUDE_SPECIAL_HELP)

    def __post_init__(self) -> None:
        _check_rate("rate", self.rate)
        _check_rate("mask_random", self.mask_random, low_open=False)
        if not 0.0 < self.poisson_lambda <= 64.0:
            raise ValueError(f"poisson_lambda must be in (0, 64], got {self.poisson_lambda}")

    def apply(self, doc: _Doc, vocab: Vocab, gen: torch.Generator) -> _Doc:
        doc, n_insert = _span_noise(
            doc,
            self.rate,
            self.poisson_lambda,
            self.mask_random,
            vocab,
            gen,
            self.exclude_special_random,
        )
        return _insert(doc, n_insert, self.mask_random, vocab, gen, self.exclude_special_random)


@dataclass(frozen=True)
class DocumentRotation(_Stage):
    """Rotate the document to start at a random token (offset uniform in 1..L-1, L with <s></s>)."""

    stage: ClassVar[int] = 3
    kind: ClassVar[str] = "document rotation"
    rotate: float = param(
        1.0,
        "probability that a document is rotated (fairseq default 0.5, "
        "BART-large 0; 1 for the paper's rotation experiment)",
    )

    def __post_init__(self) -> None:
        _check_rate("rotate", self.rotate, low_open=False)

    def apply(self, doc: _Doc, vocab: Vocab, gen: torch.Generator) -> _Doc:
        n = doc.lengths
        draw = torch.rand((n.size(0), 2), generator=gen, device=n.device, dtype=torch.float64)
        # fairseq: offset in {1, ..., n + 1} over <s> x </s>; offsets 1 and n + 1 keep the order
        shift = torch.floor(draw[:, 1] * (n + 1).double()).long().clamp(max=n)
        shift = torch.where(draw[:, 0] < self.rotate, shift % n.clamp(min=1), 0)
        pos = positions(doc.ids)
        index = torch.where(doc.real, (pos + shift.unsqueeze(1)) % n.clamp(min=1).unsqueeze(1), pos)
        # every token still in the document moves: those not masked, deleted or moved before
        turned = (shift > 0).unsqueeze(1) & (doc.ops == int(Op.KEEP)) & doc.base.real
        return doc.changed(doc.ids.gather(1, index), doc.ops.masked_fill(turned, int(Op.MOVED)))


@dataclass(frozen=True)
class Bart:
    """BART-large's noise: sentence permutation of all sentences, then text infilling."""

    rate: float = param(0.3, "share of words in spans, budget ceil(rate x words) (BART: 0.3)")
    poisson_lambda: float = param(3.0, LAMBDA_HELP)
    mask_random: float = param(0.1, MASK_RANDOM_HELP)
    exclude_special_random: bool = param(False, EXCLUDE_SPECIAL_HELP)
    permute_ratio: float = param(1.0, "share of sentences shuffled among their slots (BART: all)")
    combine: ClassVar = staticmethod(compose)

    @property
    def parts(self) -> tuple[Any, ...]:
        return (
            SentencePermutation(self.permute_ratio),
            TextInfilling(
                self.rate, self.poisson_lambda, self.mask_random, self.exclude_special_random
            ),
        )

    def __post_init__(self) -> None:
        _ = self.parts  # building the parts validates every value

    def __call__(self, batch: Tokens, vocab: Vocab, gen: torch.Generator) -> Corrupted:
        return BartNoising(self.parts)(batch, vocab, gen)


# ---------------------------------------------------------------------------------------------
# Registered objectives


@register("bart-infill", arch="encoder-decoder", paper=PAPER, needs_words=True)
def bart_infill(**overrides: Any) -> TextInfilling:
    """BART text infilling: 30% of words in Poisson(3) spans, each span one <mask>.

    Budget ceil(0.3 x words) per document, span lengths counted in words (Tokens.word_starts;
    none given: every token is a word). Span lengths are drawn until they reach the budget (the
    last one trimmed); zero-length spans insert a <mask> (insertion noise, as fairseq; a popular
    port drops them). Overlapping spans are not merged: a start inside an earlier span is deleted,
    so ~26.7% of tokens are replaced or removed. 10% of masks are random tokens. lambda: the
    paper says 3 (used here), the BART-large command used 3.5.
    """
    return TextInfilling(**overrides)


@register("bart-mask", arch="encoder-decoder", paper=PAPER)
def bart_mask(**overrides: Any) -> TokenMasking:
    """BART token masking: 30% of tokens replaced by <mask> (10% of them by a random token)."""
    return TokenMasking(**overrides)


@register("bart-delete", arch="encoder-decoder", paper=PAPER)
def bart_delete(**overrides: Any) -> TokenDeletion:
    """BART token deletion: 30% of tokens removed; the decoder must find where."""
    return TokenDeletion(**overrides)


@register("bart-permute", arch="encoder-decoder", paper=PAPER, needs_sentences=True)
def bart_permute(**overrides: Any) -> SentencePermutation:
    """BART sentence permutation: the document's sentences in a random order.

    Sentences come from Tokens.sentence_starts and move whole; with a single sentence the
    document is unchanged.
    """
    return SentencePermutation(**overrides)


@register("bart-rotate", arch="encoder-decoder", paper=PAPER)
def bart_rotate(**overrides: Any) -> DocumentRotation:
    """BART document rotation: the document starts at a random token and wraps around.

    fairseq's offset is uniform in 1..L-1 over `<s> x </s>`, so two offsets give the identity:
    P(unchanged) = 2/(L-1).
    """
    return DocumentRotation(**overrides)


@register("bart", arch="encoder-decoder", paper=PAPER, needs_words=True, needs_sentences=True)
def bart(**overrides: Any) -> Bart:
    """BART-large: all sentences permuted, then text infilling of 30% of words (Poisson 3).

    As the BART-large command of fairseq #1899 (mask 0.3, span-poisson, replace-length 1,
    mask-random 0.1, permute-sentences 1, rotate 0, insert 0) except lambda: the paper's 3, where
    the command used 3.5 (mBART's value). Noising functions compose (bart+bart-rotate) and always
    run in the reference's order: permute, mask / infill / delete, insert, rotate.
    """
    return Bart(**overrides)

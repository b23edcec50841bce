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

Every noising function is a stage on a `_Doc` (content without <s>/</s>, plus where each token came
from); `BartNoising` runs the stages and frames the result: source `<s> x </s>`, target the clean
`<s> x </s>`, decoder input `</s> <s> x` (fairseq moves the final </s> to the front; Hugging
Face's `decoder_start_token_id` is </s>). Labels are IGNORE at <s> (it always follows the start
token, a free prediction the project's contract does not score) and at special tokens of the
content.

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

from ._ops import compact, frame, length_mask, positions, random_tokens, seq2seq
from .errors import UsageError
from .registry import param, register
from .types import IGNORE, Corrupted, Corruption, Op, Tokens, Vocab

PAPER = "Lewis et al. 2019, arXiv 1910.13461"
LAMBDA_HELP = (
    "mean span length in words, Poisson(lambda) truncated where the pmf falls below 1e-7 "
    "(paper: 3; the BART-large command in fairseq #1899 used 3.5)"
)
MASK_RANDOM_HELP = "share of masks that are a random token instead (BART-large command: 0.1)"
SUBWORD_RATE_HELP = (
    "share of tokens hit, budget ceil(rate x tokens) per document (0.3 as BART-large; the rate "
    "behind the paper's base-size Table 1 rows is not stated)"
)


# ---------------------------------------------------------------------------------------------
# The document being noised


@dataclass(frozen=True)
class _Doc:
    """Documents mid-noising: content only (no <s>/</s>), each token tagged with its origin."""

    ids: Tensor  # (B, W) int64
    lengths: Tensor  # (B,) int64
    origin: Tensor  # (B, W) int64: source position of the token, -1 for inserted tokens / padding
    word_starts: Tensor  # (B, W) bool
    sentence_starts: Tensor  # (B, W) bool
    special: Tensor  # (B, W) bool: a special id of the content (never noised)
    ops: Tensor  # (B, L) int8 Op codes on the SOURCE positions

    @staticmethod
    def start(batch: Tokens, vocab: Vocab) -> _Doc:
        real = batch.real
        ones = torch.ones_like(real)
        return _Doc(
            ids=batch.ids,
            lengths=batch.lengths,
            origin=torch.where(real, positions(batch.ids).expand_as(batch.ids), -1),
            word_starts=(ones if batch.word_starts is None else batch.word_starts) & real,
            sentence_starts=(real & (positions(real) == 0) if batch.sentence_starts is None
                             else batch.sentence_starts & real),
            special=vocab.is_special(batch.ids) & real,
            ops=torch.zeros_like(batch.ids, dtype=torch.int8),
        )

    @property
    def real(self) -> Tensor:
        return length_mask(self.lengths, self.ids.size(1))

    def reorder(self, index: Tensor) -> _Doc:
        """Gather every per-token tensor along `index` (B, W): a permutation of each row."""
        return replace(self, **{name: getattr(self, name).gather(1, index) for name in
                                ("ids", "origin", "word_starts", "sentence_starts", "special")})

    def mark(self, at: Tensor, op: Tensor | int, only_kept: bool = False) -> _Doc:
        """Record `op` (scalar or (B, W)) for the source tokens at current positions `at` (B, W)."""
        at = at & (self.origin >= 0)
        dest = torch.where(at, self.origin, self.ops.size(1))  # others go to a spare column
        ops = torch.cat([self.ops, self.ops.new_zeros(self.ops.size(0), 1)], dim=1)
        value = torch.as_tensor(op, dtype=torch.int8, device=self.ids.device).expand(at.shape)
        if only_kept:
            current = ops.gather(1, dest)
            value = torch.where(current == int(Op.KEEP), value, current)
        ops.scatter_(1, dest, value)
        return replace(self, ops=ops[:, :-1])


def _pick(allowed: Tensor, k: Tensor, gen: torch.Generator) -> tuple[Tensor, Tensor]:
    """`min(k[b], allowed[b].sum())` distinct allowed positions per row, uniformly, in random order.

    Returns:
        (idx, valid), both (B, K) with K = max k: idx[b, j] is a position where valid[b, j].
    """
    width = allowed.size(1)
    k = torch.minimum(k, allowed.sum(1))
    top = min(int(k.max()) if k.numel() else 0, width)
    scores = torch.rand(allowed.shape, generator=gen, device=allowed.device)
    scores = scores.masked_fill(~allowed, 2.0)
    idx = scores.topk(top, dim=1, largest=False).indices  # sorted: a random order of the chosen
    valid = torch.arange(top, device=allowed.device).unsqueeze(0) < k.unsqueeze(1)
    return idx, valid


def _budget(count: Tensor, rate: float) -> Tensor:
    """ceil(count x rate) in float32, as fairseq computes it on its float word-start tensor."""
    return torch.ceil(count.float() * rate).long()


def _scatter_flags(shape: torch.Size, idx: Tensor, valid: Tensor) -> Tensor:
    """(B, W) bool, True at idx[b, j] where valid[b, j]."""
    out = torch.zeros(shape[0], shape[1] + 1, dtype=torch.bool, device=idx.device)
    out.scatter_(1, torch.where(valid, idx, shape[1]), True)
    return out[:, :-1]


def _replace_at(doc: _Doc, idx: Tensor, valid: Tensor, mask_random: float, vocab: Vocab,
                gen: torch.Generator) -> tuple[Tensor, Tensor]:
    """Write <mask> (a random id with prob `mask_random`) at idx where valid.

    Returns (ids, is_random) with is_random (B, K) per picked position."""
    is_random = valid & (torch.rand(idx.shape, generator=gen, device=idx.device) < mask_random)
    fill = torch.where(is_random, random_tokens(idx, vocab, gen), vocab.mask)
    spare = doc.ids.size(1)
    ids = torch.cat([doc.ids, doc.ids.new_zeros(doc.ids.size(0), 1)], dim=1)
    ids.scatter_(1, torch.where(valid, idx, spare), fill)
    return ids[:, :-1], is_random


def _keep_only(doc: _Doc, keep: Tensor) -> _Doc:
    """Delete the tokens where `keep` is False and left-align what is left."""
    return replace(
        doc,
        ids=compact(doc.ids, keep, 0),
        lengths=keep.sum(1),
        origin=compact(doc.origin, keep, -1),
        word_starts=compact(doc.word_starts, keep, False),
        sentence_starts=compact(doc.sentence_starts, keep, False),
        special=compact(doc.special, keep, False),
    )


# ---------------------------------------------------------------------------------------------
# Shared stages: choose tokens, Poisson spans, insertion


def _subword_pick(doc: _Doc, rate: float, gen: torch.Generator) -> tuple[Tensor, Tensor]:
    """ceil(rate x ordinary tokens) distinct ordinary tokens per row (fairseq: subword)."""
    ordinary = doc.real & ~doc.special
    return _pick(ordinary, _budget(ordinary.sum(1), rate), gen)


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


def span_lengths(budget: Tensor, lam: float, gen: torch.Generator) -> tuple[Tensor, Tensor]:
    """Poisson span lengths per row until their sum reaches `budget`, the last one trimmed.

    As fairseq: draw, append draws while the running sum is short, cut at the first index where
    it reaches the budget and shorten that length so the total is exactly the budget. Zero lengths
    stay in the list (they become insertions).

    Returns:
        (lengths, used): (B, K) int64 and bool; sum(lengths[used]) == budget per row.
    """
    device = budget.device
    cdf = torch.tensor(poisson_cdf(lam), dtype=torch.float64, device=device)
    width = max(int(budget.max()) if budget.numel() else 0, 1)
    draws: list[Tensor] = []
    total = torch.zeros_like(budget)
    while True:  # one round almost always (width = the largest budget, as fairseq draws)
        u = torch.rand((budget.size(0), width), generator=gen, device=device, dtype=torch.float64)
        draws.append(torch.searchsorted(cdf, u, right=True).clamp(max=cdf.numel() - 1))
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


def _words(doc: _Doc) -> tuple[Tensor, Tensor]:
    """Word structure with specials as walls: (word index per token, is a word start).

    A special token is a word of its own and the token after it opens a word; the first token of
    a row opens a word even if the data layer says it continues one (a block cut inside a word).
    """
    real = doc.real
    after_special = torch.zeros_like(doc.special)
    after_special[:, 1:] = doc.special[:, :-1]
    starts = (doc.word_starts | doc.special | after_special | (positions(real) == 0)) & real
    return starts.long().cumsum(1) - 1, starts


def _span_noise(doc: _Doc, rate: float, lam: float, mask_random: float, vocab: Vocab,
                gen: torch.Generator) -> tuple[_Doc, Tensor]:
    """fairseq's span-poisson masking with replace_length 1, in words.

    Spans start at distinct random ordinary word starts and cover `length` words (stopping at a
    wall). A span's first token becomes <mask> unless it lies inside another span that started
    earlier (overlaps are not merged: the reference deletes the later start); every other covered
    token is deleted. Returns the noised doc and the number of masks to insert per row.
    """
    real, width = doc.real, doc.ids.size(1)
    word, starts = _words(doc)
    ordinary_starts = starts & ~doc.special
    budget = _budget(ordinary_starts.sum(1), rate)
    lengths, used = span_lengths(budget, lam, gen)
    nonzero = used & (lengths > 0)
    n_insert = (used & (lengths == 0)).sum(1)
    span_len = compact(lengths, nonzero, 0)  # (B, S)
    idx, valid = _pick(ordinary_starts, nonzero.sum(1), gen)
    span_len = span_len[:, : idx.size(1)]
    first = word.gather(1, idx)
    # the first wall (special token, or the end of the row) at or after each start, in words
    wall_pos = torch.where(doc.special, positions(real), width).flip(1).cummin(1).values.flip(1)
    wall_pos = wall_pos.gather(1, idx)
    n_words = starts.sum(1, keepdim=True)
    wall = torch.where(wall_pos < width, word.gather(1, wall_pos.clamp(max=width - 1)), n_words)
    last = torch.minimum(first + span_len, wall)  # exclusive
    # how many spans cover each word: +1 at its first word, -1 after its last (a difference array)
    spare = width + 1
    cover = torch.zeros(doc.ids.size(0), width + 2, dtype=torch.long, device=doc.ids.device)
    cover.scatter_add_(1, torch.where(valid, first, spare), valid.long())
    cover.scatter_add_(1, torch.where(valid, last, spare), -valid.long())
    cover = cover.cumsum(1)
    covered = (cover.gather(1, word.clamp(min=0)) > 0) & real
    head = valid & (cover.gather(1, first) == 1)  # covered by its own span only
    ids, is_random = _replace_at(doc, idx, head, mask_random, vocab, gen)
    ops = torch.full_like(doc.ids, int(Op.SPAN), dtype=torch.int8)
    ops = torch.where(_scatter_flags(ops.shape, idx, head & ~is_random), int(Op.MASK), ops)
    ops = torch.where(_scatter_flags(ops.shape, idx, head & is_random), int(Op.RANDOM), ops)
    doc = replace(doc, ids=ids).mark(covered, ops.to(torch.int8))
    keep = real & (~covered | _scatter_flags(covered.shape, idx, head))
    return _keep_only(doc, keep), n_insert


def _insert(doc: _Doc, n_insert: Tensor, mask_random: float, vocab: Vocab,
            gen: torch.Generator) -> _Doc:
    """fairseq's insertion noise: n_insert[b] new tokens at uniformly random slots of the
    lengthened content (never before <s> or after </s>); the first ceil(n x mask_random) of them
    random ids, the rest <mask>. Exactly n_insert tokens (fairseq's ceil(len x n/len) adds one
    more on a float rounding error now and then)."""
    if not bool((n_insert > 0).any()):
        return doc
    extra = int(n_insert.max())
    width = doc.ids.size(1) + extra
    new_len = doc.lengths + n_insert
    slots = length_mask(new_len, width)
    idx, valid = _pick(slots, n_insert, gen)
    n_random = torch.ceil(n_insert.double() * mask_random).long()
    rank = torch.arange(idx.size(1), device=idx.device).unsqueeze(0)
    fill = torch.where(rank < n_random.unsqueeze(1), random_tokens(idx, vocab, gen), vocab.mask)
    inserted = _scatter_flags(torch.Size((idx.size(0), width)), idx, valid)
    new_ids = torch.zeros(idx.size(0), width + 1, dtype=torch.long, device=idx.device)
    new_ids = new_ids.scatter_(1, torch.where(valid, idx, width), fill)[:, :-1]
    source = ((~inserted).long().cumsum(1) - 1).clamp(0, doc.ids.size(1))  # old position

    def spread(values: Tensor, new: Tensor | int | bool, pad: int | bool) -> Tensor:
        old = torch.cat([values, values[:, :1].new_full((values.size(0), 1), pad)], dim=1)
        return torch.where(inserted, new, old.gather(1, source)).masked_fill(~slots, pad)

    return replace(doc, ids=spread(doc.ids, new_ids, 0), lengths=new_len,
                   origin=spread(doc.origin, -1, -1),
                   word_starts=spread(doc.word_starts, True, False),
                   sentence_starts=spread(doc.sentence_starts, False, False),
                   special=spread(doc.special, False, False))


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
    """Frame source and target as `<s> x </s>`; decoder input `</s> <s> x` (fairseq's shift)."""
    source = frame(doc.ids, doc.lengths, vocab.pad, vocab.bos, vocab.eos)
    target = frame(batch.ids, batch.lengths, vocab.pad, vocab.bos, vocab.eos)
    out = seq2seq(source, doc.lengths + 2, target, batch.lengths + 2, vocab, start=vocab.eos,
                  ops=doc.ops.masked_fill(~batch.real, int(Op.KEEP)))
    unscored = frame(vocab.is_special(batch.ids), batch.lengths, True, True, False)
    return replace(out, labels=out.labels.masked_fill(unscored, IGNORE))


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
        real = doc.real
        starts = doc.sentence_starts | (real & (positions(real) == 0))
        sentence = (starts.long().cumsum(1) - 1).clamp(min=0)  # (B, W)
        n_sent = starts.sum(1)
        n_slots = max(int(n_sent.max()) if n_sent.numel() else 0, 1)
        # fairseq: ceil(n x 2 x p / 2) sentences, shuffled among their own slots
        k = torch.ceil(n_sent.double() * 2 * self.permute_ratio / 2.0).long()
        slot_ids = torch.arange(n_slots, device=real.device).unsqueeze(0)
        chosen, valid = _pick(slot_ids < n_sent.unsqueeze(1), k, gen)  # random order
        slots = torch.where(valid, chosen, n_slots).sort(1).values  # the same set, ascending
        order = torch.arange(n_slots + 1, device=real.device).repeat(real.size(0), 1)  # per slot
        order.scatter_(1, slots, torch.where(valid, chosen, n_slots))
        order = order[:, :n_slots]
        slot_of = torch.empty_like(order).scatter_(1, order, slot_ids.expand_as(order))
        sent_len = torch.zeros(real.size(0), n_slots + 1, dtype=torch.long, device=real.device)
        sent_len.scatter_add_(1, torch.where(real, sentence, n_slots), real.long())
        sent_len = sent_len[:, :n_slots]
        old_start = sent_len.cumsum(1) - sent_len
        out_len = sent_len.gather(1, order)
        new_start = (out_len.cumsum(1) - out_len).gather(1, slot_of)
        pos = positions(real).expand_as(doc.ids)
        dest = new_start.gather(1, sentence) + pos - old_start.gather(1, sentence)
        dest = torch.where(real, dest, pos)
        index = torch.empty_like(dest).scatter_(1, dest, pos)  # source of each output position
        moved = doc.reorder(index)
        shifted = (index != pos) & real & ~moved.special
        return moved.mark(shifted, int(Op.MOVED), only_kept=True)


@dataclass(frozen=True)
class TokenMasking(_Stage):
    """Replace ceil(rate x tokens) random tokens by <mask> (fairseq mask_length=subword,
    replace_length=1)."""

    stage: ClassVar[int] = 1
    kind: ClassVar[str] = "token masking"
    rate: float = param(0.3, SUBWORD_RATE_HELP)
    mask_random: float = param(0.1, MASK_RANDOM_HELP)

    def __post_init__(self) -> None:
        _check_rate("rate", self.rate)
        _check_rate("mask_random", self.mask_random, low_open=False)

    def apply(self, doc: _Doc, vocab: Vocab, gen: torch.Generator) -> _Doc:
        idx, valid = _subword_pick(doc, self.rate, gen)
        ids, is_random = _replace_at(doc, idx, valid, self.mask_random, vocab, gen)
        shape = doc.ids.shape
        ops = torch.where(_scatter_flags(shape, idx, is_random), int(Op.RANDOM), int(Op.MASK))
        return replace(doc, ids=ids).mark(_scatter_flags(shape, idx, valid), ops.to(torch.int8))


@dataclass(frozen=True)
class TokenDeletion(_Stage):
    """Delete ceil(rate x tokens) random tokens (fairseq mask_length=subword, replace_length=0)."""

    stage: ClassVar[int] = 1
    kind: ClassVar[str] = "token deletion"
    rate: float = param(0.3, SUBWORD_RATE_HELP)

    def __post_init__(self) -> None:
        _check_rate("rate", self.rate)

    def apply(self, doc: _Doc, vocab: Vocab, gen: torch.Generator) -> _Doc:
        idx, valid = _subword_pick(doc, self.rate, gen)
        cut = _scatter_flags(doc.ids.shape, idx, valid)
        return _keep_only(doc.mark(cut, int(Op.DELETE)), doc.real & ~cut)


@dataclass(frozen=True)
class TextInfilling(_Stage):
    """Replace Poisson-length word spans by one <mask> each; zero-length spans insert a <mask>."""

    stage: ClassVar[int] = 1
    kind: ClassVar[str] = "text infilling"
    rate: float = param(0.3, "share of words in spans, budget ceil(rate x words) (BART: 0.3)")
    poisson_lambda: float = param(3.0, LAMBDA_HELP)
    mask_random: float = param(0.1, MASK_RANDOM_HELP)

    def __post_init__(self) -> None:
        _check_rate("rate", self.rate)
        _check_rate("mask_random", self.mask_random, low_open=False)
        if not 0.0 < self.poisson_lambda <= 64.0:
            raise ValueError(f"poisson_lambda must be in (0, 64], got {self.poisson_lambda}")

    def apply(self, doc: _Doc, vocab: Vocab, gen: torch.Generator) -> _Doc:
        doc, n_insert = _span_noise(doc, self.rate, self.poisson_lambda, self.mask_random, vocab,
                                    gen)
        return _insert(doc, n_insert, self.mask_random, vocab, gen)


@dataclass(frozen=True)
class DocumentRotation(_Stage):
    """Rotate the document to start at a random token (offset uniform in 1..L-1, L with <s></s>)."""

    stage: ClassVar[int] = 3
    kind: ClassVar[str] = "document rotation"
    rotate: float = param(1.0, "probability that a document is rotated (fairseq default 0.5, "
                               "BART-large 0; 1 for the paper's rotation experiment)")

    def __post_init__(self) -> None:
        _check_rate("rotate", self.rotate, low_open=False)

    def apply(self, doc: _Doc, vocab: Vocab, gen: torch.Generator) -> _Doc:
        n = doc.lengths
        draw = torch.rand((n.size(0), 2), generator=gen, device=n.device, dtype=torch.float64)
        # fairseq: offset in {1, ..., n + 1} over <s> x </s>; offsets 1 and n + 1 keep the order
        shift = torch.floor(draw[:, 1] * (n + 1).double()).long().clamp(max=n)
        shift = torch.where(draw[:, 0] < self.rotate, shift % n.clamp(min=1), 0)
        pos = positions(doc.ids).expand_as(doc.ids)
        index = torch.where(doc.real, (pos + shift.unsqueeze(1)) % n.clamp(min=1).unsqueeze(1), pos)
        moved = doc.reorder(index)
        turned = (shift > 0).unsqueeze(1) & moved.real & ~moved.special
        return moved.mark(turned, int(Op.MOVED), only_kept=True)


@dataclass(frozen=True)
class Bart:
    """BART-large's noise: sentence permutation of all sentences, then text infilling."""

    rate: float = param(0.3, "share of words in spans, budget ceil(rate x words) (BART: 0.3)")
    poisson_lambda: float = param(3.0, LAMBDA_HELP)
    mask_random: float = param(0.1, MASK_RANDOM_HELP)
    permute_ratio: float = param(1.0, "share of sentences shuffled among their slots (BART: all)")
    combine: ClassVar = staticmethod(compose)

    @property
    def parts(self) -> tuple[Any, ...]:
        return (SentencePermutation(self.permute_ratio),
                TextInfilling(self.rate, self.poisson_lambda, self.mask_random))

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

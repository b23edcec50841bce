"""The tensor stages behind BART's noising functions (bart.py): the document mid-noising, exact
per-row budgets, Poisson span lengths and word coverage, insertion, and the final framing.

Each stage works on a `Doc` (the content without <s>/</s>, its clean base text and the op codes)
and returns a new one; `finish` frames the result. Why the stages do what they do, and where they
follow fairseq's `denoising_dataset.py`, is in bart.py's module docstring.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
from torch import Tensor

from ._ops import compact, frame, length_mask, origin_of, pick_k, positions, random_tokens
from .types import IGNORE, Corrupted, Op, Tokens, Vocab

# ---------------------------------------------------------------------------------------------
# The document being noised


@dataclass(frozen=True)
class Doc:
    """Documents mid-noising: content only (no <s>/</s>).

    `base` is the clean text the token stages start from: the input, or after sentence
    permutation the permuted input, whose positions map back to the input's through `perm`
    (None: the identity). `ops` are Op codes on base positions. `pristine` while `ids` are still
    `base.ids` (nothing masked, removed, inserted or rotated yet). `origin`, when tracked, is the
    input position of each token of `ids` (-1: inserted), moved along with them by every stage.
    """

    ids: Tensor  # (B, W) int64
    lengths: Tensor  # (B,) int64
    base: Tokens
    protected: Tensor  # (B, L) bool: special ids of the base content, never noised
    ops: Tensor  # (B, L) int8 on base positions
    perm: Tensor | None = None  # (B, L) int64: input position of each base position
    pristine: bool = True
    any_special: bool = True  # False: `protected` is all False (nothing to carry or wall off)
    origin: Tensor | None = None  # (B, W) int64 when tracked (`Corrupted.origin`)

    @staticmethod
    def start(batch: Tokens, vocab: Vocab, with_origin: bool = False) -> Doc:
        protected = vocab.is_special(batch.ids) & batch.real
        return Doc(
            ids=batch.ids,
            lengths=batch.lengths,
            base=batch,
            protected=protected,
            ops=torch.zeros_like(batch.ids, dtype=torch.int8),
            any_special=bool(protected.any()),
            origin=origin_of(batch.lengths, batch.ids.size(1)) if with_origin else None,
        )

    @property
    def real(self) -> Tensor:
        return length_mask(self.lengths, self.ids.size(1))

    def untouched(self, stage: str) -> None:
        """Masking and permutation work on base positions: nothing may have moved before."""
        if not self.pristine:
            raise RuntimeError(f"{stage} must run before tokens are masked, removed or moved")

    def changed(
        self,
        ids: Tensor,
        ops: Tensor,
        lengths: Tensor | None = None,
        move: Callable[[Tensor], Tensor] | None = None,
    ) -> Doc:
        """The doc after a stage; `move` moves a (B, W) tensor as the stage moved the tokens
        (applied to `origin`), None when they stayed in place."""
        return replace(
            self,
            ids=ids,
            ops=ops,
            pristine=False,
            lengths=self.lengths if lengths is None else lengths,
            origin=self.origin if move is None or self.origin is None else move(self.origin),
        )

    def source_ops(self) -> Tensor:
        """(B, L) Op codes on the input's positions; specials and padding KEEP."""
        keep = self.protected | ~self.base.real if self.any_special else ~self.base.real
        ops = self.ops.masked_fill(keep, int(Op.KEEP))
        if self.perm is None:
            return ops
        return torch.empty_like(ops).scatter_(1, self.perm, ops)


def ceil_budget(count: Tensor, rate: float) -> Tensor:
    """ceil(count x rate) in float32, as fairseq computes it on its float word-start tensor."""
    return torch.ceil(count.float() * rate).long()


def put_at(target: Tensor, idx: Tensor, valid: Tensor, values: Tensor | int | bool) -> Tensor:
    """A copy of `target` (B, W) with values written at idx[b, j] where valid[b, j]."""
    spare = target.size(1)
    out = torch.cat([target, target.new_zeros(target.size(0), 1)], dim=1)
    values = torch.as_tensor(values, dtype=target.dtype, device=target.device).expand(idx.shape)
    return out.scatter_(1, torch.where(valid, idx, spare), values)[:, :-1]


def mask_ids(
    idx: Tensor,
    valid: Tensor,
    mask_random: float,
    vocab: Vocab,
    gen: torch.Generator,
) -> tuple[Tensor, Tensor]:
    """(ids, is_random) for picked positions: <mask>, or a random id with prob `mask_random`
    (an ordinary id, `_ops.random_tokens`; fairseq draws from [1, V), specials included)."""
    is_random = valid & (torch.rand(idx.shape, generator=gen, device=idx.device) < mask_random)
    random_ids = random_tokens(idx, vocab, gen)
    return torch.where(is_random, random_ids, vocab.mask), is_random


# ---------------------------------------------------------------------------------------------
# Shared stages: choose tokens, Poisson spans, insertion


def subword_pick(doc: Doc, rate: float, gen: torch.Generator) -> tuple[Tensor, Tensor]:
    """ceil(rate x ordinary tokens) distinct ordinary tokens per row (fairseq: subword)."""
    ordinary = doc.base.real & ~doc.protected
    return pick_k(ordinary, ceil_budget(ordinary.sum(1), rate), gen)


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


def word_structure(doc: Doc) -> tuple[Tensor | None, Tensor, Tensor | None]:
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


def walls(doc: Doc, word: Tensor | None, special: Tensor | None, idx: Tensor) -> Tensor:
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


def span_noise(
    doc: Doc,
    rate: float,
    lam: float,
    mask_random: float,
    vocab: Vocab,
    gen: torch.Generator,
) -> tuple[Doc, Tensor]:
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
    word, ordinary, special = word_structure(doc)
    n_ordinary = ordinary.sum(1)
    budget = ceil_budget(n_ordinary, rate)
    lengths, used = span_lengths(budget, lam, gen)
    nonzero = used & (lengths > 0)
    n_insert = (used & (lengths == 0)).sum(1)
    idx, valid = pick_k(ordinary, nonzero.sum(1), gen, n_ordinary)
    span_len = compact(lengths, nonzero, 0)[:, : idx.size(1)]  # paired with the random starts
    first = idx if word is None else word.gather(1, idx).clamp(min=0)  # (padding of empty rows)
    last = torch.minimum(first + span_len, walls(doc, word, special, idx))  # exclusive
    cover, head = coverage(first, last, valid, width)
    covered = (cover if word is None else cover.gather(1, word.clamp(min=0))) > 0
    covered &= real
    fill, is_random = mask_ids(idx, head, mask_random, vocab, gen)
    ops = put_at(
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

    def move(values: Tensor, fill_with: int = -1) -> Tensor:
        out = values.new_full((values.size(0), out_width + 1), fill_with)
        return out.scatter_(1, dest, values)

    ids = move(doc.ids, 0)
    ids.scatter_(1, torch.where(head, dest.gather(1, idx), out_width), fill)
    return doc.changed(ids[:, :out_width], ops, new_len, lambda o: move(o)[:, :out_width]), n_insert


def insert_masks(
    doc: Doc,
    n_insert: Tensor,
    mask_random: float,
    vocab: Vocab,
    gen: torch.Generator,
) -> Doc:
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
    random_ids = random_tokens(idx, vocab, gen)
    fill = torch.where(rank < n_random.unsqueeze(1), random_ids, vocab.mask)
    at = torch.where(valid, idx, width)  # invalid picks go to a spare last column
    inserted = slots.new_zeros((slots.size(0), width + 1)).scatter_(1, at, True)[:, :width]
    source = ((~inserted).long().cumsum(1) - 1).clamp(0, doc.ids.size(1))  # old position
    source = torch.cat([source, source.new_full((source.size(0), 1), doc.ids.size(1))], dim=1)

    def move(values: Tensor, new: Tensor | int, fill_with: int) -> Tensor:
        """`values` (B, W) at their new places, `new` at the inserted ones, `fill_with` after."""
        old = torch.cat([values, values.new_zeros(values.size(0), 1)], dim=1)
        out = old.gather(1, source)
        out[:, :width].masked_fill_(~slots, fill_with)
        new = new if isinstance(new, Tensor) else torch.full_like(at, new)
        return out.scatter_(1, at, new)[:, :width]

    origin = None if doc.origin is None else move(doc.origin, -1, -1)
    return replace(doc, ids=move(doc.ids, fill, 0), lengths=new_len, origin=origin)


def finish(doc: Doc, batch: Tokens, vocab: Vocab) -> Corrupted:
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
        origin=None if doc.origin is None else frame(doc.origin, doc.lengths, -1, -1, -1),
    )

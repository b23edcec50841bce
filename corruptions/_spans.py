"""Span samplers shared by the span-based families: length distributions, word groups, runs,
SpanBERT's anchored word spans, span-boundary targets and unigram replacements, and BERT's
whole-word choice, all whole-batch (no loop over rows, spans or tokens).

Length helpers return probability tables so that a family can show, test and sample the same
distribution: `truncated_geometric(0.2, 1, 10)` is SpanBERT's, `poisson(3.0, 30)` BART's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ._ops import positions, rand


def truncated_geometric(p: float, lower: int, upper: int) -> Tensor:
    """P(k) ∝ p·(1−p)^(k−lower) for k = lower..upper, renormalised (SpanBERT's span lengths).

    Returns:
        float64 (upper − lower + 1,) probabilities of lower, lower + 1, ..., upper.
    """
    k = torch.arange(upper - lower + 1, dtype=torch.float64)
    probs = p * (1.0 - p) ** k
    return probs / probs.sum()


def poisson(lam: float, upper: int) -> Tensor:
    """P(k) = λ^k e^−λ / k! for k = 0..upper, renormalised (BART's infilling span lengths).

    Returns:
        float64 (upper + 1,) probabilities of 0, 1, ..., upper.
    """
    k = torch.arange(upper + 1, dtype=torch.float64)
    log_p = k * math.log(lam) - lam - torch.lgamma(k + 1)
    probs = log_p.exp()
    return probs / probs.sum()


def draw_lengths(
    probs: Tensor,
    shape: tuple[int, ...],
    gen: torch.Generator,
    device: torch.device,
    lower: int = 0,
) -> Tensor:
    """int64 lengths shaped `shape`: `lower + i` with probability `probs[i]` (inverse CDF)."""
    cdf = probs.cumsum(0).to(device)
    cdf[-1] = 1.0  # guard against rounding: u < 1 always lands inside the table
    u = torch.rand(shape, generator=gen, device=device, dtype=torch.float64)
    return torch.searchsorted(cdf, u, right=True).clamp(max=len(probs) - 1) + lower


def word_groups(allowed: Tensor, word_starts: Tensor | None) -> Tensor:
    """(B, L) bool: True at the first token of every word among the `allowed` tokens.

    A word opens where `word_starts` says so, and also after any token that is not allowed (a
    special or the row start), so a word never spans a special token. `word_starts=None`: every
    token is a word.
    """
    if word_starts is None:
        return allowed.clone()
    after_gap = torch.ones_like(allowed)
    after_gap[:, 1:] = ~allowed[:, :-1]
    return allowed & (word_starts | after_gap)


def run_bounds(flags: Tensor) -> tuple[Tensor, Tensor]:
    """First and last column of the run of True each position lies in (meaningful where True).

    Returns:
        (start, end), both (B, L) int64, inclusive.
    """
    width = flags.size(1)
    col = positions(flags).expand_as(flags)
    opens = flags.clone()
    opens[:, 1:] &= ~flags[:, :-1]
    closes = flags.clone()
    closes[:, :-1] &= ~flags[:, 1:]
    start = torch.where(opens, col, -1).cummax(1).values
    end = torch.where(closes, col, width).flip(1).cummin(1).values.flip(1)
    return start, end


@dataclass(frozen=True)
class AnchoredSpans:
    """What `anchored_word_spans` chose, plus the sampled lengths for statistics."""

    chosen: Tensor  # (B, L) bool: the masked tokens, exactly `budget` per row when reachable
    span_words: Tensor  # (B, D) int64: sampled length (words) of every draw
    anchors: Tensor  # (B, D) int64: anchor token of every draw
    accepted: Tensor  # (B, D) bool: the draw was made (budget not yet met) and not discarded
    draws: Tensor  # (B,) int64: draws made until the row's budget was met (discards included)


def anchored_word_spans(
    allowed: Tensor,
    starts: Tensor,
    budget: Tensor,
    probs: Tensor,
    lower: int,
    gen: torch.Generator,
    chunk: int = 0,
) -> AnchoredSpans:
    """SpanBERT's span sampler (facebookresearch/SpanBERT `PairWithSpanMaskingScheme.mask`).

    The reference repeats, one draw at a time, until `budget` tokens are masked: draw a length s
    (words) from `probs`, draw an anchor token uniformly; discard both if the anchor is already
    masked; else mask from the start of the anchor's word on, s whole words, stopping at the row
    end, or at the very token where the budget is met (the last span can end mid-word). Spans may
    run into masked territory (only the anchor is checked).

    Here a chunk of K draws is made for all rows at once and resolved exactly as the sequential
    loop would: a draw is accepted iff no earlier accepted draw covers its anchor word (settled
    in a few rounds of one scatter each, see `_accept_in_order`); every word gets the first
    accepted draw that covers it; a cumulative token count per draw finds the draw that meets
    the budget, and the tokens it adds are cut in position order. Rows still short after K draws
    (rare: K is twice the expected need) get another chunk, continuing the same sequence, so the
    result is distributed exactly as the reference's (the tests replay the draws through the
    reference loop); only the random stream differs. Anchors are drawn among `allowed` tokens
    (the reference's blocks hold no specials, so this is the same there).

    Args:
        allowed: (B, L) bool, the tokens that may be masked.
        starts: (B, L) bool, the first token of each word (`word_groups`).
        budget: (B,) int64 tokens to mask per row (clamped to the allowed count).
        probs: span-length probabilities of `lower`, `lower` + 1, ... words.
        chunk: draws per row per round; 0 = twice the expected need of the largest budget.
    """
    batch, width = allowed.shape
    device = allowed.device
    longest = lower + len(probs) - 1
    word_of = starts.cumsum(1)  # (B, L) 1 + word index of each token
    n_words = word_of[:, -1:]  # (B, 1)
    # word index of each allowed token; the others point at the spare column `width` of `owner`
    word_of = torch.where(allowed, word_of - 1, width)
    allowed_upto = allowed.cumsum(1)  # (B, L) allowed tokens up to each position
    n_allowed = allowed_upto[:, -1:]  # (B, 1)
    none_allowed = n_allowed == 0
    ones = torch.ones_like(word_of)
    remaining = budget.minimum(n_allowed.squeeze(1)).clamp(min=0)
    mean_len = float((probs * torch.arange(lower, longest + 1, dtype=probs.dtype)).sum())
    covered: Tensor | None = None  # (B, L + 1) bool by word: masked by an earlier chunk
    chosen = torch.zeros_like(allowed)
    record: list[tuple[Tensor, Tensor, Tensor]] = []
    draws = torch.zeros_like(remaining)
    busy = bool((remaining > 0).any()) if width else False
    while busy:
        k = chunk or max(4, math.ceil(2.0 * int(remaining.max()) / mean_len) + 4)
        span = draw_lengths(probs, (batch, k), gen, device, lower)  # (B, K) words
        u = torch.rand((batch, k), generator=gen, device=device, dtype=torch.float64)
        pick = (u * n_allowed).long().minimum(n_allowed - 1).clamp(min=0)  # (B, K) rank
        # (B, K) token index of the anchor: where the allowed count reaches pick + 1 (0 if none)
        anchor = torch.searchsorted(allowed_upto, pick + 1).masked_fill_(none_allowed, 0)
        # (B, K) anchor word = the span's first word (0 in a row without words)
        first = word_of.gather(1, anchor).masked_fill_(none_allowed, 0)
        rejected = (
            covered.gather(1, first)
            if covered is not None
            else torch.zeros_like(first, dtype=torch.bool)
        )
        accepted, owner = _accept_in_order(first, span, n_words, rejected, width, longest)
        owner[:, width] = k  # the spare column: tokens that are not allowed belong to nobody
        if covered is not None:
            owner = owner.masked_fill(covered, k + 1)  # K: nobody's, K + 1: an earlier chunk's
        token_owner = owner.gather(1, word_of)  # (B, L)
        # tokens each draw adds, the draw that meets the budget, and the cut inside it
        added = torch.zeros(batch, k + 2, dtype=torch.long, device=device)
        added = added.scatter_add_(1, token_owner, ones)[:, :k]
        total = added.cumsum(1)  # (B, K) tokens masked after draw j
        before = total - added
        last = (total < remaining.unsqueeze(1)).sum(1, keepdim=True)  # (B, 1), K = not met
        room = remaining.unsqueeze(1) - before.gather(1, last.clamp(max=k - 1))
        room = room.masked_fill(last == k, 0)  # not met: every accepted draw counts in full
        in_last = token_owner == last
        new = (token_owner < last) | (in_last & (in_last.cumsum(1) <= room))
        record.append((span, anchor, accepted & (before < remaining.unsqueeze(1))))
        draws += torch.where(remaining > 0, (last.squeeze(1) + 1).clamp(max=k), 0)
        chosen |= new
        remaining = remaining - new.sum(1)
        busy = bool((remaining > 0).any())
        if busy:
            covered = owner < k if covered is None else covered | (owner < k)
    if not record:
        empty = torch.zeros(batch, 0, dtype=torch.long, device=device)
        record.append((empty, empty, empty.bool()))
    span_words, anchors, accepted = (torch.cat(parts, 1) for parts in zip(*record, strict=True))
    return AnchoredSpans(chosen, span_words, anchors, accepted, draws)


def _accept_in_order(
    first: Tensor, span: Tensor, n_words: Tensor, rejected: Tensor, width: int, longest: int
) -> tuple[Tensor, Tensor]:
    """Which draws the sequential loop accepts, and the first accepted draw covering each word.

    Draw j covers words [first[j], first[j] + span[j]) (cut at the row's last word); it is
    accepted iff it is not `rejected` up front and no earlier accepted draw covers `first[j]`.
    Settled in rounds, each one scatter over the draws still alive: a draw whose anchor word's
    lowest alive coverer is itself is accepted; one whose lowest alive coverer is accepted is
    rejected. The earliest open draw is always settled, so the loop ends; in practice after two
    or three rounds.

    Returns:
        accepted (B, K) bool; owner (B, width + 1) int64, K where no accepted draw covers a word.
    """
    batch, k = first.shape
    offset = torch.arange(longest, device=first.device)
    words = first.unsqueeze(2) + offset  # (B, K, longest)
    outside = (offset >= span.unsqueeze(2)) | (words >= n_words.unsqueeze(2))
    words = words.masked_fill_(outside, width).view(batch, -1)  # the spare column
    draw = torch.arange(k, device=first.device)
    while True:
        # a dead draw scatters K, which changes nothing under amin (cheaper than moving its words)
        index = torch.where(rejected, k, draw).unsqueeze(2).expand(batch, k, longest)
        owner = torch.full((batch, width + 1), k, dtype=torch.long, device=first.device)
        owner.scatter_reduce_(1, words, index.reshape(batch, -1), "amin")
        lowest = owner.gather(1, first)  # (B, K) lowest alive draw covering the anchor word
        alive = ~rejected
        accepted = alive & (lowest == draw)
        blocked = alive & (lowest < draw) & accepted.gather(1, lowest.clamp(max=k - 1))
        if not bool(blocked.any()):
            return accepted, owner
        rejected = rejected | blocked


def whole_words(allowed: Tensor, starts: Tensor, budget: Tensor, gen: torch.Generator) -> Tensor:
    """google-research/bert's whole-word choice, the same outcome for the same word order.

    The reference shuffles the words and walks them: it stops once `budget` pieces are chosen,
    skips a word that would overshoot and goes on with the next (shorter ones may still fit).
    Here the words of every row are ordered by a random score, and each round takes, among the
    words still open that fit the remaining budget, the longest prefix whose cumulative piece
    count fits; words that no longer fit close. That is the walk exactly: a round ends where
    the walk first skips a word, the next round resumes after it with the smaller remainder,
    which falls by at least one per round, so rounds <= 1 + the longest word (2 or 3 in practice).
    Only the first budget + 32 words of the order are sorted (`topk`); a row that could still
    take one of the others after them sends the batch through a full sort of the same scores.

    Args:
        allowed: (B, L) bool, pieces that may be chosen.
        starts: (B, L) bool, first piece of each word (`word_groups`: no allowed piece comes
            before the first start).
        budget: (B,) int64, pieces per row.
    Returns:
        (B, L) bool: all pieces of the chosen words.
    """
    batch, width = allowed.shape
    # (B, L) word index of each allowed token; the others point at a spare column `width`
    word_of = torch.where(allowed, starts.cumsum(1) - 1, width)
    pieces = torch.zeros(batch, width + 1, dtype=torch.long, device=allowed.device)
    pieces.scatter_add_(1, word_of, allowed.long())
    pieces = pieces[:, :width]  # (B, W) pieces per word, 0 past the last word
    score = rand(pieces, gen).masked_fill(pieces == 0, 2.0)
    n_words = int(starts.sum(1).max()) if batch else 0
    head = min(n_words, int(budget.max()) + 32) if batch else 0
    order = score.topk(head, dim=1, largest=False, sorted=True).indices
    taken, left = _walk(pieces.gather(1, order), budget)
    if head < n_words and bool((left > 0).any()):  # a full row takes no other word
        unseen_fit = (pieces.masked_fill(pieces == 0, width + 1) <= left).sum(1) - (
            (pieces.gather(1, order) <= left).sum(1)
        )
        if bool((unseen_fit > 0).any()):
            order = score.argsort(1)
            taken, _ = _walk(pieces.gather(1, order), budget)
    chosen_word = torch.zeros(batch, width + 1, dtype=torch.bool, device=allowed.device)
    chosen_word.scatter_(1, order, taken)  # the spare column stays False
    return chosen_word.gather(1, word_of)


def _walk(size: Tensor, budget: Tensor) -> tuple[Tensor, Tensor]:
    """The reference's walk over words of `size` pieces (B, W) in order, budget (B,) pieces.

    Returns:
        taken (B, W) bool; left (B, 1) pieces of the budget not used.
    """
    left = budget.unsqueeze(1).clone()
    open_ = (size > 0) & (size <= left)
    taken = torch.zeros_like(open_)
    while bool(open_.any()):
        now = open_ & ((size * open_).cumsum(1) <= left)
        taken |= now
        left = left - (size * now).sum(1, keepdim=True)
        open_ = open_ & ~now & (size <= left)
    return taken, left


def unigram_tokens(ids: Tensor, allowed: Tensor, gen: torch.Generator) -> Tensor:
    """Ids shaped like `ids`, each drawn from the `allowed` tokens of the whole batch."""
    pool = ids.masked_select(allowed)
    if pool.numel() == 0:
        return ids
    return pool.take(torch.randint(0, pool.numel(), ids.shape, generator=gen, device=ids.device))


def sbo_targets(
    framed: Tensor,
    first: Tensor,
    last: Tensor,
    lengths: Tensor,
    max_targets: int,
    document_ids: Tensor | None = None,
) -> dict[str, Tensor]:
    """SpanBERT's span-boundary targets, (B, L + 2) int64 each, -1 where none.

    `framed` marks the masked tokens at their `input_ids` index ([CLS] at 0), `first`/`last` the
    runs they form (`run_bounds`). A merged span gets SBO targets only if both outside
    neighbours lie inside the block (the reference skips spans touching either end although
    [CLS]/[SEP] would be there); only its first `max_targets` tokens are targets. The
    reference's blocks never cross documents; where several documents share a row
    (`document_ids`, (B, L)), each document is a block: a span with an outside neighbour in
    another document, or running across documents, gets no targets.
    """
    offset = positions(framed) - first
    sbo = framed & (first > 1) & (last < lengths.unsqueeze(1)) & (offset < max_targets)
    if document_ids is not None:
        doc = torch.full_like(first, -1)
        doc[:, 1:-1] = document_ids
        left, right = (first - 1).clamp(min=0), (last + 1).clamp(max=doc.size(1) - 1)
        sbo &= doc.gather(1, left) == doc.gather(1, right)
    return {
        "span_left": torch.where(sbo, first - 1, -1),
        "span_right": torch.where(sbo, last + 1, -1),
        "span_offset": torch.where(sbo, offset, -1),
    }

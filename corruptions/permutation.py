"""XLNet permutation language modelling (Yang et al. 2019, arXiv 1906.08237).

About 1/6 of the tokens, mostly in n-grams, are predicted autoregressively in a random
factorisation order; the input keeps the original tokens (no [MASK]) and the order reaches the
model as one rank per position, from which it builds XLNet's two-stream attention masks:

    ids        a  b  c  d  e  f                   (words start at a, c, d, f)
    input_ids  a  b  c  d  e  f  <sep> <cls>      (row framed as XLNet frames A: x <sep> <cls>)
    labels     -  -  c  d  -  -   -     -         (the 2-gram "c d" is predicted)
    perm_rank -1 -1  2  0 -1 -1   3     1         (context first, then targets and functionals
                                                   in a random order)

Here d is predicted first, seeing only a b e f; c comes next and also sees d and <cls>.

Choosing what to predict follows zihangdai/xlnet `data_utils._sample_mask`: walk the row with a
cursor; each round draws n in 1..5 with P(n) ∝ 1/n (capped at what is left of the goal), a
context of 6n tokens with a uniform left part l, starts the n-gram at the first word start at or
after cursor + l, covers n PIECES from there (the reference code counts pieces, not words;
xlnet PR #16, issue #220; `ngram_unit=word` gives the intended whole-word n-grams), and moves the
cursor to the end of the n-gram plus the right context; single random positions then top the
row up to its goal.

Adaptations, since the zoo has no Transformer-XL memory (objectives.md §4.4):
* The reference predicts 85 tokens per 512 (43 in the reused half, 42 in the new half, each half
  permuted on its own so that memory reuse cannot leak). Without memory one permutation over the
  whole row is leak-free, so the row is one segment: goal = round(S × 85/512), S = the framed
  length (content + <sep> + <cls>), which is exactly 85 for S = 512.
* The row is framed `x <sep> <cls>` (vocab.eos, vocab.bos; CLS last as in the reference). Those two
  are the functional tokens: they keep a rank in the order but are never predicted. Functional
  tokens are identified by position, not by id, so a [SEP] inside the text is plain context.
* N-grams may cover the functional tokens or special ids inside the text (both count as word
  starts, like the reference's `<...>` pieces); such positions are dropped, and the random fill
  draws only from predictable content, so with piece n-grams every row gets exactly
  min(goal, predictable) targets (the reference tops up marks from every position and then drops
  functional ones: <= 85 targets; word n-grams can overshoot the goal, as noted in §4.4).
* Special ids inside the text are plain context (rank -1), never predicted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ._ops import (
    candidates,
    choose_k,
    frame,
    length_mask,
    origin_of,
    positions,
    rand,
    round_half_even,
)
from .registry import param, register
from .types import IGNORE, Corrupted, Op, Tokens, Vocab

UNITS = ("piece", "word")


@dataclass(frozen=True)
class PermutationLM:
    """Choose n-gram targets, frame as `x <sep> <cls>`, draw a factorisation order."""

    rate: float = param(
        85 / 512,
        "share of the framed row to predict: goal = round(rate x (length + 2)); the reference "
        "predicts 85 of 512 (num_predict)",
    )
    max_ngram: int = param(5, "longest n-gram; n is drawn with P(n) ∝ 1/n on 1..max_ngram")
    context: int = param(
        6, "each n-gram sits in a context of context x n tokens (mask_alpha / mask_beta = 6 / 1)"
    )
    ngram_unit: str = param(
        "piece",
        "piece: an n-gram is n tokens from a word start (the reference code, xlnet PR #16); "
        "word: n whole words (the intended behaviour; may overshoot the goal)",
    )
    mask_targets: bool = param(
        False,
        "write [MASK] into the input at targets (Hugging Face's collator); the original "
        "keeps the real tokens, the query stream hides them",
    )

    def __post_init__(self) -> None:
        if not 0.0 < self.rate <= 1.0:
            raise ValueError(f"rate must be in (0, 1], got {self.rate}")
        if self.max_ngram < 1:
            raise ValueError(f"max_ngram must be >= 1, got {self.max_ngram}")
        if self.context < 1:
            raise ValueError(f"context must be >= 1, got {self.context}")
        if self.ngram_unit not in UNITS:
            raise ValueError(
                f"ngram_unit must be one of {', '.join(UNITS)}, got '{self.ngram_unit}'"
            )

    def choose(self, batch: Tokens, vocab: Vocab, gen: torch.Generator) -> Tensor:
        """(B, L + 2) bool: the targets, on the framed row `x <sep> <cls>`."""
        lengths = batch.lengths
        width = batch.ids.size(1) + 2
        allowed = _widen(candidates(batch, vocab), width)
        words = batch.word_starts if batch.word_starts is not None else batch.real
        # special ids and the functional tokens count as word starts, like XLNet's <...> pieces
        starts = _widen(words, width) | ~allowed
        goal = round_half_even((lengths + 2).double() * self.rate)
        marked = sample_ngrams(
            starts, lengths + 2, goal, gen, self.max_ngram, self.context, self.ngram_unit
        )
        chosen = marked & allowed
        missing = (goal - chosen.sum(1)).clamp(min=0)
        return chosen | choose_k(allowed & ~chosen, missing, gen)

    def __call__(
        self, batch: Tokens, vocab: Vocab, gen: torch.Generator, *, with_origin: bool = False
    ) -> Corrupted:
        chosen = self.choose(batch, vocab, gen)
        lengths = batch.lengths
        ids = frame(
            frame(batch.ids, lengths, vocab.pad, last=vocab.eos),
            lengths + 1,
            vocab.pad,
            last=vocab.bos,
        )
        framing = positions(ids)
        functional = (framing == lengths.unsqueeze(1)) | (framing == lengths.unsqueeze(1) + 1)
        rank = factorisation_rank(chosen | functional, gen)
        input_ids = ids.masked_fill(chosen, vocab.mask) if self.mask_targets else ids
        content = chosen[:, : batch.ids.size(1)]
        ops = torch.full_like(batch.ids, int(Op.KEEP), dtype=torch.int8)
        ops = ops.masked_fill(content, int(Op.MASK if self.mask_targets else Op.PREDICT))
        return Corrupted(
            input_ids=input_ids,
            attention_mask=length_mask(lengths + 2, ids.size(1)),
            labels=ids.masked_fill(~chosen, IGNORE),
            ops=ops,
            extras={"perm_rank": rank},
            origin=origin_of(lengths, ids.size(1)) if with_origin else None,
        )


def _widen(flags: Tensor, width: int) -> Tensor:
    """Pad a (B, L) bool tensor with False columns to (B, width)."""
    return torch.cat([flags, flags.new_zeros(flags.size(0), width - flags.size(1))], dim=1)


def sample_ngrams(
    starts: Tensor,
    seg_lens: Tensor,
    goal: Tensor,
    gen: torch.Generator,
    max_ngram: int = 5,
    context: int = 6,
    unit: str = "piece",
) -> Tensor:
    """The n-gram phase of XLNet's `_sample_mask` for every row at once (no random fill).

    Args:
        starts: (B, W) bool, the positions an n-gram may begin at (word starts).
        seg_lens: (B,) int64, the segment length of each row (positions >= it are outside).
        goal: (B,) int64, stop once this many positions are marked (the cap shortens the last n).
        unit: "piece" counts n positions from the start, "word" counts n words.
    Returns:
        (B, W) bool, the marked positions.
    """
    n, u_left = draw_rounds(starts, gen, max_ngram)
    return walk_ngrams(starts, seg_lens, goal, n, u_left, max_ngram, context, unit)


def draw_rounds(like: Tensor, gen: torch.Generator, max_ngram: int = 5) -> tuple[Tensor, Tensor]:
    """One round's draws per cursor position: n with P(n) ∝ 1/n on 1..max_ngram, and a uniform
    u_left for the left context (floor(u_left x context x n)); both (B, W).

    A single uniform gives both: n by its inverse CDF, u_left by rescaling it inside n's bucket.
    """
    weights = [1.0 / n for n in range(1, max_ngram + 1)]
    probs = [w / sum(weights) for w in weights]
    lower = [sum(probs[:i]) for i in range(max_ngram)]
    u = rand(like, gen)
    bucket = torch.zeros_like(u, dtype=torch.long)
    for edge in lower[1:]:  # max_ngram - 1 comparisons: cheaper than bucketize
        bucket += u >= edge
    low, width = (torch.tensor(v, device=like.device) for v in (lower, probs))
    u_left = ((u - low.take(bucket)) / width.take(bucket)).clamp(0.0, 1.0)
    return bucket + 1, u_left


def walk_ngrams(
    starts: Tensor,
    seg_lens: Tensor,
    goal: Tensor,
    n: Tensor,
    u_left: Tensor,
    max_ngram: int = 5,
    context: int = 6,
    unit: str = "piece",
) -> Tensor:
    """XLNet's n-gram walk, with the round at cursor position c using n[:, c] and u_left[:, c].

    The reference walks a cursor round by round: draw n (capped at goal - predicted), a left
    context l uniform on [0, context x n), begin at the first word start at or after cursor + l,
    mark n pieces (or words), stop if that runs to the segment end, move the cursor past the
    n-gram and the right context (context x n - l). The cursor only moves right, so every position
    is a cursor at most once and drawing the round per cursor POSITION gives the same
    distribution; the walk then is the orbit of 0 under a fixed per-row jump table, found by
    pointer doubling (log2 of the number of rounds gathers). The goal cap only changes the last
    round, which is recomputed with the capped n.
    """
    n_rows, width = starts.shape
    dev = starts.device
    sink = width  # index W: "outside the row", the absorbing state of the walk
    cols = torch.arange(width, device=dev).unsqueeze(0)
    seg = seg_lens.unsqueeze(1)
    in_row = starts & (cols < seg)
    here = torch.where(in_row, cols, sink)
    here = torch.cat([here, here.new_full((n_rows, 1), sink)], dim=1)
    next_start = here.flip(1).cummin(1).values.flip(1)  # (B, W + 1) first start at or after p
    words = _word_starts_table(in_row, max_ngram) if unit == "word" else None

    def round_at(cursor: Tensor, n_gram: Tensor, u: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        ctx = context * n_gram
        left = torch.minimum((u * ctx).long(), ctx - 1)
        beg = next_start.gather(1, (cursor + left).clamp(max=sink))
        if words is None:
            end = beg + n_gram
        else:  # the start of the (n + 1)-th word from beg, W when the row has no such word
            count, spots = words
            end = spots.gather(1, count.gather(1, beg) - 1 + n_gram)
        return beg, end, end + ctx - left

    # the round a cursor at c would play; c >= seg_len never plays (its n-gram cannot fit)
    beg, end, after = round_at(cols, n, u_left)
    valid = end < seg
    jump = torch.where(after < seg, after, sink)  # after < seg implies valid
    jump = torch.cat([jump, jump.new_full((n_rows, 1), sink)], dim=1)  # (B, W + 1)

    # every round moves the cursor by >= context + 1, so no row has more rounds than this
    max_rounds = width // (context + 1) + 1
    orbit = torch.zeros(n_rows, 1 << (max_rounds - 1).bit_length(), dtype=torch.long, device=dev)
    done = 1  # orbit[:, :done] holds rounds 0 .. done - 1; jump is F^done
    while done < max_rounds:
        orbit[:, done : 2 * done] = jump.gather(1, orbit[:, :done])
        done *= 2
        if done < max_rounds:
            jump = jump.gather(1, jump)
    active = orbit < sink  # (B, R) rounds the uncapped walk reaches
    at = orbit.clamp(max=width - 1)
    pieces = torch.where(active & valid.gather(1, at), (end - beg).gather(1, at), 0)
    before = pieces.cumsum(1) - pieces  # positions marked before each round
    left_over = goal.unsqueeze(1) - before
    happens = active & (left_over > 0)
    n_eff = torch.minimum(n.gather(1, at), left_over.clamp(min=1))
    beg_r, end_r, _ = round_at(at, n_eff, u_left.gather(1, at))
    span = happens & (end_r < seg)

    delta = torch.zeros(n_rows, width + 1, dtype=torch.long, device=dev)
    delta.scatter_add_(1, torch.where(span, beg_r, sink), span.long())
    delta.scatter_add_(1, torch.where(span, end_r, sink), -span.long())
    return delta.cumsum(1)[:, :width] > 0


def _word_starts_table(starts: Tensor, max_ngram: int) -> tuple[Tensor, Tensor]:
    """(count, spots): count[b, p] = word starts at or before p ((B, W + 1), the sink column holds
    the total); spots[b, k] = position of the k-th word start, W past the last ((B, W + n + 1))."""
    n_rows, width = starts.shape
    count = starts.long().cumsum(1)
    count = torch.cat([count, count[:, -1:]], dim=1)
    spots = torch.full(
        (n_rows, width + max_ngram + 1), width, dtype=torch.long, device=starts.device
    )
    cols = torch.arange(width, device=starts.device).expand(n_rows, width)
    spots.scatter_(1, torch.where(starts, count[:, :width] - 1, width + max_ngram), cols)
    spots[:, width + max_ngram] = width  # the column non-starts were written to
    return count, spots


def factorisation_rank(ordered: Tensor, gen: torch.Generator) -> Tensor:
    """(B, S) int64: a uniformly random order of the `ordered` positions of each row (0, 1, ...),
    -1 elsewhere (context, which comes before all of them).

    Sorts random keys for the k-th ordered position of each row only ((B, max count) instead of
    (B, S): a sixth of the row, and sorting is most of the cost).
    """
    counts = ordered.sum(1, keepdim=True)
    width = int(counts.max()) if ordered.numel() else 0
    slots = torch.arange(width, device=ordered.device).unsqueeze(0)
    keys = torch.rand((ordered.size(0), width), generator=gen, device=ordered.device)
    order = keys.masked_fill(slots >= counts, 2.0).argsort(dim=1)
    slot_rank = torch.empty_like(order)
    slot_rank.scatter_(1, order, slots.expand_as(order).contiguous())
    slot = (ordered.long().cumsum(1) - 1).clamp(0, max(width - 1, 0))
    if width == 0:
        return torch.full_like(slot, -1)
    return slot_rank.gather(1, slot).masked_fill(~ordered, -1)


def perm_mask_from_rank(
    perm_rank: Tensor, labels: Tensor, functional: Tensor | None = None
) -> Tensor:
    """XLNet's `perm_mask` from the compact `perm_rank` extra (objectives.md §4.4 step 3).

    `out[b, i, j]` is True when position i may NOT attend to position j (XLNet's and Hugging
    Face's meaning): j is a target or functional token and rank'(i) <= rank(j), where
    rank'(i) = rank(i) for targets and rank(i) + 1 otherwise. So a target sees the context and the
    targets/functionals earlier in the order but not itself (the query stream; the content stream
    re-opens the diagonal); context (rank -1) sees only context, and everyone sees context.

    Args:
        perm_rank: (B, S) int64, -1 for context, an order 0, 1, ... for targets and functionals.
        labels: (B, S) int64, IGNORE except at targets.
        functional: (B, S) bool; by default the ranked positions that carry no label.
    Returns:
        (B, S, S) bool.
    """
    targets = labels != IGNORE
    ordered = targets | functional if functional is not None else perm_rank >= 0
    own = torch.where(targets, perm_rank, perm_rank + 1)
    return ordered.unsqueeze(1) & (own.unsqueeze(2) <= perm_rank.unsqueeze(1))


@register(
    "xlnet-plm",
    arch="encoder",
    paper="Yang et al. 2019, arXiv 1906.08237",
    needs_words=True,
    aliases=("xlnet", "plm"),
)
def xlnet_plm(**overrides: Any) -> PermutationLM:
    """XLNet permutation LM: 85/512 of each row predicted in n-grams, in a random order.

    N-grams (n <= 5, P(n) ∝ 1/n, one per 6n-token context, starting at a word start, n counted
    in pieces as zihangdai/xlnet does) then single random tokens up to round(85/512 x length);
    input = the original tokens framed as `x <sep> <cls>`; `perm_rank` (-1 = context) gives the
    factorisation order, see `perm_mask_from_rank`. One permutation per row (no memory).
    """
    return PermutationLM(**overrides)

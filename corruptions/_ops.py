"""Whole-batch tensor helpers shared by every family: no loops over rows, tokens or spans.

Ragged results (deleted tokens, spans collapsed to one sentinel) are left-aligned and re-padded
by `compact`; framing with [CLS]/[SEP] or <s>/</s> is `frame`; the 80/10/10 rule is
`replace_selected` (its settings checked by `check_mlm`); an exact per-row budget of positions is
`pick_k` (indices in random order) or `choose_k` (a mask).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

import torch
from torch import Tensor

from .types import IGNORE, Corrupted, Op, Tokens, Vocab

# how help texts say where random replacements come from (`random_tokens`)
ORDINARY_RANDOM = (
    "an ordinary id, never a special one; the reference draws from the whole vocabulary"
)


def make_generator(
    seed: int, *keys: int | str, device: torch.device | str = "cpu"
) -> torch.Generator:
    """A generator seeded from `(seed, *keys)` by a stable hash (blake2b, not `hash()`).

    Used to derive one stream per (seed, step, micro-batch, rank) or (seed, example index) so that
    results never depend on worker count or on what ran before.
    """
    digest = hashlib.blake2b(repr((seed, *keys)).encode(), digest_size=8).digest()
    gen = torch.Generator(device=device)
    gen.manual_seed(int.from_bytes(digest, "little") & (2**63 - 1))
    return gen


def positions(like: Tensor) -> Tensor:
    """(1, L) int64 column indices for a (B, L) tensor."""
    return torch.arange(like.size(1), device=like.device).unsqueeze(0)


def length_mask(lengths: Tensor, width: int) -> Tensor:
    """(B, width) bool: True for the first `lengths[b]` positions of each row."""
    return torch.arange(width, device=lengths.device).unsqueeze(0) < lengths.unsqueeze(1)


def candidates(batch: Tokens, vocab: Vocab) -> Tensor:
    """(B, L) bool: real, non-special positions, the only ones an objective may corrupt."""
    return batch.real & ~vocab.is_special(batch.ids)


def round_half_even(x: Tensor) -> Tensor:
    """Python's `round` on a tensor (half to even), in float64 as the references compute it."""
    return torch.round(x.double()).long()


def rand(like: Tensor, gen: torch.Generator) -> Tensor:
    """Uniform [0, 1) floats shaped like `like`, on its device, from `gen`."""
    return torch.rand(like.shape, generator=gen, device=like.device)


def pick_k(
    allowed: Tensor, k: Tensor, gen: torch.Generator, n_allowed: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """`min(k[b], allowed[b].sum())` distinct allowed positions per row, uniformly, in random order.

    The k smallest of one uniform score per position win: a `topk` (about 3x faster than a full
    sort at L = 512), or where few are needed of many, a topk over the narrow slice of scores
    that can win (`_smallest_few`, the same positions in the same order). One (B, L) draw from
    `gen` always, even when no row needs a position. The order is random, so callers that pair
    the picks with other draws (BART's span lengths, a sentence order) may use it.

    Args:
        allowed: (B, L) bool, the positions that may be picked.
        k: (B,) int64 budget per row.
        n_allowed: (B,) `allowed.sum(1)`, where the caller has it already.
    Returns:
        (idx, valid), both (B, K) with K = the largest budget met: idx[b, j] is a picked position
        where valid[b, j], and anything (a repeat of another pick too) elsewhere.
    """
    if n_allowed is None:
        n_allowed = allowed.sum(1)
    k = torch.minimum(k, n_allowed)
    top = min(int(k.max()) if k.numel() else 0, allowed.size(1))
    scores = rand(allowed, gen).masked_fill_(~allowed, 2.0)
    idx = _smallest_few(scores, k, n_allowed, top) if 16 <= top <= allowed.size(1) // 4 else None
    if idx is None:
        idx = scores.topk(top, dim=1, largest=False).indices  # sorted: a random order
    valid = torch.arange(top, device=allowed.device).unsqueeze(0) < k.unsqueeze(1)
    return idx, valid


def _smallest_few(scores: Tensor, k: Tensor, n_allowed: Tensor, top: int) -> Tensor | None:
    """`scores.topk(top, largest=False).indices` where the first k[b] matter, on a narrow slice.

    The k[b] smallest of n[b] uniform scores lie below k/n with some slack (a binomial tail of
    four standard deviations and then some): only the scores under that threshold are moved
    left and ranked, a topk over a few dozen columns instead of the whole row. The result is
    the same positions in the same order. None where a row has too few scores under its
    threshold (the caller then ranks whole rows).
    """
    need = k.double()
    cut = ((need + 4.0 * need.sqrt() + 8.0) / n_allowed.clamp(min=1).double()).clamp(max=1.0)
    below = scores < cut.float().unsqueeze(1)  # never a disallowed one (2.0)
    count = below.sum(1)
    if bool((count < k).any()):
        return None
    width = max(int(count.max()), top)
    if 2 * width > scores.size(1):
        return None
    dest = below.cumsum(1) * below  # left-aligned from column 1, the rest to the spare column 0
    narrow = scores.new_full((scores.size(0), width + 1), 2.0).scatter_(1, dest, scores)
    where = torch.zeros_like(narrow, dtype=torch.long).scatter_(
        1, dest, positions(scores).expand_as(dest)
    )
    rank = narrow[:, 1:].topk(top, dim=1, largest=False).indices
    return where[:, 1:].gather(1, rank)


def choose_k(allowed: Tensor, k: Tensor, gen: torch.Generator) -> Tensor:
    """`pick_k` as a mask: (B, L) bool, `min(k[b], allowed[b].sum())` positions per row chosen
    uniformly without replacement. Nothing is drawn when no row needs a position.

    Args:
        allowed: (B, L) bool, the positions that may be chosen.
        k: (B,) int64 budget per row.
    """
    if not k.numel() or int(k.max()) <= 0:
        return torch.zeros_like(allowed)
    idx, valid = pick_k(allowed, k, gen)
    width = allowed.size(1)  # invalid picks (any position, repeats too) go to a spare column
    out = allowed.new_zeros((allowed.size(0), width + 1))
    return out.scatter_(1, torch.where(valid, idx, width), True)[:, :width]


def draw_with_replacement(allowed: Tensor, k: Tensor, gen: torch.Generator) -> Tensor:
    """(B, L) bool: the distinct positions among k[b] uniform draws with replacement per row."""
    n = allowed.sum(1, keepdim=True)
    n_max = int(k.max()) if k.numel() else 0
    u = torch.rand(
        (allowed.size(0), n_max), generator=gen, device=allowed.device, dtype=torch.float64
    )
    pick = (u * n).long().minimum(n - 1)
    at = torch.searchsorted(allowed.long().cumsum(1), pick + 1).clamp(max=allowed.size(1) - 1)
    valid = (torch.arange(n_max, device=allowed.device) < k.unsqueeze(1)) & (n > 0)
    hits = torch.zeros(allowed.shape, dtype=torch.long, device=allowed.device)
    return (hits.scatter_add_(1, at, valid.long()) > 0) & allowed


ORDINARY_RANDOM = (
    "an ordinary id, never a special one; the reference draws from the whole vocabulary"
)


def random_tokens(like: Tensor, vocab: Vocab, gen: torch.Generator) -> Tensor:
    """Ids shaped like `like`, uniform over the ordinary (non-special) ids of `vocab`.

    Every objective's random replacements come from here. The references draw from the whole
    vocabulary (google-research/bert, transformers #15342) or from [1, V) (fairseq), so a
    [CLS], a <mask> or a T5 sentinel can land in the input, where it means something else (a
    sentinel makes a BART input look like T5's); here it never does.
    """
    pool = vocab.ordinary_ids(like.device)
    pick = torch.randint(0, pool.numel(), like.shape, generator=gen, device=like.device)
    return pool.index_select(0, pick.view(-1)).view(like.shape)  # faster than take on CPU


def check_replacement(mask_replace: float, random_replace: float) -> None:
    """The 80/10/10 settings of `replace_selected`: shares >= 0 that sum to <= 1 (the rest of
    the chosen tokens stay as they are); ValueError names the bad setting."""
    if mask_replace < 0 or random_replace < 0:
        raise ValueError("mask_replace and random_replace must be >= 0")
    if mask_replace + random_replace > 1.0 + 1e-9:
        raise ValueError("mask_replace + random_replace must be <= 1")


def check_mlm(
    rate: float, mask_replace: float, random_replace: float, max_predictions: int = 0
) -> None:
    """The settings every MLM variant shares: a rate in (0, 1], the 80/10/10 shares
    (`check_replacement`) and a cap >= 0; ValueError names the bad setting."""
    if not 0.0 < rate <= 1.0:
        raise ValueError(f"rate must be in (0, 1], got {rate}")
    check_replacement(mask_replace, random_replace)
    if max_predictions < 0:
        raise ValueError("max_predictions must be >= 0")


def replace_selected(
    ids: Tensor,
    chosen: Tensor,
    vocab: Vocab,
    gen: torch.Generator,
    mask_prob: float = 0.8,
    random_prob: float = 0.1,
    u: Tensor | None = None,
    random_ids: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """BERT's rule at each chosen position: [MASK] with `mask_prob`, a random id with
    `random_prob`, else unchanged (but still predicted). One uniform draw per position decides.

    Args:
        u: (B, L) the uniform draws to decide by, when the caller shares one draw between several
            positions (SpanBERT: one per span); drawn here if None.
        random_ids: (B, L) the ids to write at "random" positions (SpanBERT: corpus unigrams);
            uniform over the ordinary ids (`random_tokens`) if None. A caller that never writes
            random ids (random_prob = 0) may pass `ids` to save the draw.
    Returns:
        (input ids, ops): the new ids and the `Op` code of every position (int8).
    """
    if u is None:
        u = rand(ids, gen)
    to_mask = chosen & (u < mask_prob)
    out = ids.masked_fill(to_mask, vocab.mask)
    ops = torch.full_like(ids, int(Op.KEEP), dtype=torch.int8)
    ops = ops.masked_fill(chosen, int(Op.PREDICT)).masked_fill(to_mask, int(Op.MASK))
    if random_ids is None:  # drawn even when random_prob = 0: one stream for every caller
        random_ids = random_tokens(ids, vocab, gen)
    to_random = chosen & (u >= mask_prob) & (u < mask_prob + random_prob)
    out = torch.where(to_random, random_ids, out)
    ops = ops.masked_fill(to_random, int(Op.RANDOM))
    return out, ops


def compact(values: Tensor, keep: Tensor, fill: int | float | bool) -> Tensor:
    """Left-align the kept entries of every row and fill the rest: (B, L) -> (B, max kept)."""
    width = int(keep.sum(1).max()) if keep.numel() else 0
    # kept entries go to their place, dropped ones to a spare last column
    dest = torch.where(keep, keep.long().cumsum(1) - 1, width)
    out = values.new_full((values.size(0), width + 1), fill)
    out.scatter_(1, dest, values)
    return out[:, :width]


def frame(
    values: Tensor,
    lengths: Tensor,
    fill: int | bool,
    first: int | bool | None = None,
    last: int | bool | None = None,
) -> Tensor:
    """Put `first` before and `last` after the real part of each row; pad the rest with `fill`.

    Works for ids ([CLS] x [SEP]), labels (IGNORE at both ends) and masks alike:
    (B, L) -> (B, L + (first is not None) + (last is not None)).
    """
    lead = int(first is not None)
    width = values.size(1) + lead + int(last is not None)
    out = values.new_full((values.size(0), width), fill)
    real = length_mask(lengths, values.size(1))
    filler = torch.tensor(fill, dtype=values.dtype, device=values.device)
    out[:, lead : lead + values.size(1)] = torch.where(real, values, filler)
    if first is not None:
        out[:, 0] = first
    if last is not None:
        out.scatter_(
            1,
            (lengths + lead).unsqueeze(1),
            torch.full_like(lengths.unsqueeze(1), last, dtype=values.dtype),
        )
    return out


def origin_of(lengths: Tensor, width: int, lead: int = 0) -> Tensor:
    """`Corrupted.origin` of rows that keep their content in place behind `lead` framing
    tokens: (B, width) int64, j - lead for lead <= j < lead + lengths[b], else -1 (framing,
    anything appended, padding)."""
    pos = torch.arange(-lead, width - lead, device=lengths.device).unsqueeze(0)
    return torch.where((pos >= 0) & (pos < lengths.unsqueeze(1)), pos, -1)


def encoder_batch(
    input_ids: Tensor,
    lengths: Tensor,
    labels: Tensor,
    ops: Tensor | None = None,
    extras: Mapping[str, Tensor] | None = None,
    origin: Tensor | None = None,
) -> Corrupted:
    """A `Corrupted` for an encoder or decoder: attention on the first `lengths` positions,
    IGNORE labels outside them."""
    mask = length_mask(lengths, input_ids.size(1))
    return Corrupted(
        input_ids=input_ids,
        attention_mask=mask,
        labels=labels.masked_fill(~mask, IGNORE),
        ops=ops,
        extras=dict(extras or {}),
        origin=origin,
    )


def seq2seq(
    inputs: Tensor,
    input_lengths: Tensor,
    targets: Tensor,
    target_lengths: Tensor,
    vocab: Vocab,
    start: int,
    ops: Tensor | None = None,
    extras: Mapping[str, Tensor] | None = None,
    origin: Tensor | None = None,
) -> Corrupted:
    """A `Corrupted` for an encoder-decoder.

    `labels` = targets (IGNORE past `target_lengths`); `decoder_input_ids` = targets shifted right
    behind `start` (BART: </s>, T5: pad), padded with `vocab.pad`.
    """
    in_mask = length_mask(input_lengths, inputs.size(1))
    out_mask = length_mask(target_lengths, targets.size(1))
    shifted = torch.cat([targets.new_full((targets.size(0), 1), start), targets[:, :-1]], dim=1)
    return Corrupted(
        input_ids=inputs.masked_fill(~in_mask, vocab.pad),
        attention_mask=in_mask,
        labels=targets.masked_fill(~out_mask, IGNORE),
        decoder_input_ids=shifted.masked_fill(~out_mask, vocab.pad),
        ops=ops,
        extras=dict(extras or {}),
        origin=origin,
    )

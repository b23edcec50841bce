"""Whole-batch tensor helpers shared by every family: no loops over rows, tokens or spans.

Ragged results (deleted tokens, spans collapsed to one sentinel) are left-aligned and re-padded
by `compact`; framing with [CLS]/[SEP] or <s>/</s> is `frame`; the 80/10/10 rule is
`replace_selected`; an exact per-row budget of positions is `choose_k`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

import torch
from torch import Tensor

from .types import IGNORE, Corrupted, Op, Tokens, Vocab


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


def choose_k(allowed: Tensor, k: Tensor, gen: torch.Generator) -> Tensor:
    """Choose `min(k[b], allowed[b].sum())` positions uniformly without replacement in each row.

    The k smallest of one uniform score per position win (`topk`, about 3x faster than a full
    sort at L = 512; the same positions as ranking all scores).

    Args:
        allowed: (B, L) bool, the positions that may be chosen.
        k: (B,) int64 budget per row.
    Returns:
        (B, L) bool, the chosen positions.
    """
    scores = rand(allowed, gen).masked_fill(~allowed, 2.0)
    k = k.clamp(min=0, max=allowed.size(1))
    n_max = int(k.max()) if k.numel() else 0
    if n_max == 0:
        return torch.zeros_like(allowed)
    picked = scores.topk(n_max, dim=1, largest=False, sorted=True).indices  # (B, n_max)
    take = torch.arange(n_max, device=allowed.device).unsqueeze(0) < k.unsqueeze(1)
    return torch.zeros_like(allowed).scatter_(1, picked, take) & allowed


def random_tokens(
    like: Tensor, vocab: Vocab, gen: torch.Generator, exclude_special: bool = False
) -> Tensor:
    """Uniformly random ids shaped like `like`.

    The references draw from the whole vocabulary, specials included (google-research/bert,
    transformers #15342); `exclude_special=True` draws only ordinary tokens.
    """
    if not exclude_special:
        return torch.randint(0, vocab.size, like.shape, generator=gen, device=like.device)
    assert vocab.special is not None
    pool = (~vocab.special).nonzero().squeeze(1).to(like.device)
    pick = torch.randint(0, pool.numel(), like.shape, generator=gen, device=like.device)
    return pool[pick]


def replace_selected(
    ids: Tensor,
    chosen: Tensor,
    vocab: Vocab,
    gen: torch.Generator,
    mask_prob: float = 0.8,
    random_prob: float = 0.1,
    exclude_special: bool = False,
    u: Tensor | None = None,
    random_ids: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """BERT's rule at each chosen position: [MASK] with `mask_prob`, a random id with
    `random_prob`, else unchanged (but still predicted). One uniform draw per position decides.

    Args:
        u: (B, L) the uniform draws to decide by, when the caller shares one draw between several
            positions (SpanBERT: one per span); drawn here if None.
        random_ids: (B, L) the ids to write at "random" positions (SpanBERT: corpus unigrams);
            uniform over the vocabulary (`random_tokens`) if None. A caller that never writes
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
        random_ids = random_tokens(ids, vocab, gen, exclude_special)
    to_random = chosen & (u >= mask_prob) & (u < mask_prob + random_prob)
    out = torch.where(to_random, random_ids, out)
    ops = ops.masked_fill(to_random, int(Op.RANDOM))
    return out, ops


def run_starts(flags: Tensor) -> Tensor:
    """(B, L) bool: True where a run of True begins."""
    first = flags.clone()
    first[:, 1:] &= ~flags[:, :-1]
    return first


def run_index(flags: Tensor) -> Tensor:
    """(B, L) int64: the number (0, 1, ...) of the run of True each position belongs to.

    Meaningful only where `flags` is True; positions before the first run get 0.
    """
    return (run_starts(flags).long().cumsum(1) - 1).clamp(min=0)


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


def encoder_batch(
    input_ids: Tensor,
    lengths: Tensor,
    labels: Tensor,
    ops: Tensor | None = None,
    extras: Mapping[str, Tensor] | None = None,
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
    )

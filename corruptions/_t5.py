"""T5's span and prefix preprocessors as whole-batch tensor operations, shared by t5-span,
t5-iid, the prefix LMs and UL2 (Raffel et al. 2020; t5 `preprocessors.py`).

`random_spans_noise_mask` draws T5's span layout for every row at once, `denoise` turns a noise
mask into inputs and targets (with sentinels, or without as a prefix LM does), `prefix_split`
draws T5's prefix length. Where these differ from the reference code, and why, is recorded in
span_corruption.py's module docstring (span counts, rounding, special ids).

A composition of `total` into `parts` positive parts is a uniformly random choice of `parts - 1`
of the `total - 1` gaps, picked by the top-k of random scores; sorted, the chosen gaps are the
cumulative part ends. Rows of different lengths share one set of tensor operations.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import Tensor

from ._ops import length_mask, positions, round_half_even
from .errors import NotEnoughSentinels
from .types import IGNORE, Corrupted, Op, Vocab


def check_spans(density: float, mean_span: float) -> None:
    """Raise ValueError unless (density, mean_span) gives valid random span masks."""
    if not 0.0 < density < 1.0:
        raise ValueError(f"density must be in (0, 1), got {density}")
    if mean_span < 1.0:
        raise ValueError(f"mean_span must be >= 1 token, got {mean_span}")


def span_counts(
    lengths: Tensor, density: float | Tensor, mean_span: float | Tensor, max_spans: int = 0
) -> tuple[Tensor, Tensor, Tensor]:
    """T5's per-row budget: (positions worked on, noise tokens, noise spans), each (B,) int64.

    A row of n tokens is worked on as max(n, 2) positions (the mask is truncated afterwards).
    `density` and `mean_span` may be (B,) float64 tensors (one denoiser per row, as UL2).
    `max_spans` > 0 caps the spans (not in T5; UL2's guard against running out of sentinels).
    """
    work = lengths.clamp(min=2)
    n_noise = torch.minimum(round_half_even(work.double() * density).clamp(min=1), work - 1)
    n_clean = work - n_noise
    # T5's count, capped at the non-noise tokens (each span needs one before it): equal to T5
    # wherever T5's own partition is valid, and valid at any density (transformers #22246)
    n_spans = round_half_even(n_noise.double() / mean_span).clamp(min=1).minimum(n_clean)
    if max_spans > 0:
        n_spans = n_spans.clamp(max=max_spans)
    return work, n_noise, n_spans


def span_count(length: int, density: float, mean_span: float) -> int:
    """`span_counts` for one row length, in plain Python (the same half-to-even rounding)."""
    work = max(length, 2)
    n_noise = min(max(round(work * density), 1), work - 1)
    return min(max(1, round(n_noise / mean_span)), work - n_noise)


def random_composition(totals: Tensor, parts: Tensor, gen: torch.Generator) -> Tensor:
    """Uniformly random compositions of `totals[b]` into `parts[b]` positive parts, per row.

    Args:
        totals: (B,) int64, each >= parts.
        parts: (B,) int64, each >= 1.
    Returns:
        (B, max parts) int64 cumulative part ends: column j holds the sum of the first j + 1 parts
        (`totals[b]` from column parts[b] - 1 on).
    """
    n_rows, width = totals.size(0), int(parts.max()) if parts.numel() else 1
    n_gaps = int(totals.max()) - 1 if totals.numel() else 0
    if width == 1 or n_gaps <= 0:
        return totals.unsqueeze(1).expand(n_rows, width).contiguous()
    # parts - 1 of the totals - 1 gaps, uniformly = the top random scores among valid gaps; every
    # row takes exactly width - 1 by adding width - parts forced picks that stand for "no cut"
    top = 2**31 - 1  # int32 scores: topk runs faster on them than on floats
    scores = torch.randint(
        0, top, (n_rows, n_gaps), generator=gen, device=totals.device, dtype=torch.int32
    )
    scores.masked_fill_(positions(scores) >= (totals - 1).unsqueeze(1), -1)
    forced = torch.arange(width - 1, device=totals.device) < (width - parts).unsqueeze(1)
    scores = torch.cat([scores, torch.where(forced, top, -1).int()], dim=1)
    picked = scores.topk(width - 1, dim=1, sorted=False).indices
    cuts = torch.where(picked < n_gaps, picked + 1, totals.unsqueeze(1)).sort(dim=1).values
    return torch.cat([cuts, totals.unsqueeze(1)], dim=1)


def random_spans_noise_mask(
    lengths: Tensor,
    width: int,
    density: float | Tensor,
    mean_span: float | Tensor,
    gen: torch.Generator,
    random_roll: bool = False,
    max_spans: int = 0,
) -> Tensor:
    """T5's `random_spans_noise_mask` for every row at once.

    Args:
        lengths: (B,) int64 real tokens per row.
        width: columns of the result (>= lengths.max()).
        density, mean_span: floats, or (B,) float64 tensors for one setting per row.
        max_spans: if > 0, the most spans a row gets (see `span_counts`).
    Returns:
        (B, width) bool, True at noise positions; False at padding. Without `random_roll` every row
        of n >= 2 tokens starts with non-noise and ends with noise.
    """
    work, n_noise, n_spans = span_counts(lengths, density, mean_span, max_spans)
    noise_ends = random_composition(n_noise, n_spans, gen)  # (B, K) cumulative
    clean_ends = random_composition(work - n_noise, n_spans, gen)
    noise_before = torch.cat([torch.zeros_like(noise_ends[:, :1]), noise_ends[:, :-1]], dim=1)
    span_start = clean_ends + noise_before  # span j follows non-noise parts 0..j
    span_end = clean_ends + noise_ends  # unused spans (j >= n_spans) are empty at `work`
    full = max(width, 2)
    edges = torch.zeros((lengths.size(0), full + 1), dtype=torch.long, device=lengths.device)
    edges.scatter_add_(1, span_start, torch.ones_like(span_start))
    edges.scatter_add_(1, span_end, torch.full_like(span_end, -1))
    noise = edges.cumsum(1)[:, :full] > 0
    if random_roll:
        offset = (
            torch.rand(lengths.shape, generator=gen, device=lengths.device, dtype=torch.float64)
            * work
        ).long()
        source = (positions(noise) - offset.unsqueeze(1)) % work.unsqueeze(1)
        noise = noise.gather(1, source)
    return noise[:, :width] & length_mask(lengths, width)


def denoise(
    ids: Tensor,
    lengths: Tensor,
    noise: Tensor,
    vocab: Vocab,
    lead: int | Tensor | None = None,
    sentinels: bool | Tensor = True,
    no_loss: Tensor | None = None,
    with_origin: bool = False,
) -> Corrupted:
    """Inputs = the non-noise tokens, targets = the noise tokens, EOS after both; decoder start =
    pad (seqio's `make_autoregressive_inputs`).

    With sentinels (T5's `noise_span_to_unique_sentinel` for inputs and
    `nonnoise_span_to_unique_sentinel` for targets) the j-th noise run becomes `<j>` in the
    inputs and `<j>` precedes it in the targets, plus a trailing sentinel when the row ends with
    non-noise. Without (T5's `drop_noise_tokens` / `drop_nonnoise_tokens`, the prefix LM) the
    noise is simply moved to the targets. Every output is placed by one scatter, no compaction.

    Args:
        ids: (B, L) clean rows; lengths: (B,) real tokens.
        noise: (B, L) bool, the tokens that go to the targets.
        lead: an id, or (B,) ids, put before every input (UL2's paradigm token); None: nothing.
        sentinels: whether noise runs get sentinels, for all rows or per row ((B,) bool).
        no_loss: (B, L) bool, noise tokens that stay in the targets without loss (special ids).
        with_origin: also place each input token's source position (`Corrupted.origin`; a
            sentinel's is its run's first position).
    Raises:
        NotEnoughSentinels: a row has more runs than the vocabulary has sentinels.
    """
    n_rows, pad = ids.size(0), vocab.pad
    if ids.size(1) == 0:
        ids, noise = ids.new_full((n_rows, 1), pad), noise.new_zeros((n_rows, 1))
    real = length_mask(lengths, ids.size(1))
    noise = noise & real
    first = noise.clone()  # the first token of each noise run that gets a sentinel
    first[:, 1:] &= ~noise[:, :-1]
    use = torch.as_tensor(sentinels, device=ids.device).expand(n_rows)
    first &= use.unsqueeze(1)
    noise_no, run_no = noise.cumsum(1), first.cumsum(1)  # int64, inclusive counts
    n_noise, n_runs = noise_no[:, -1], run_no[:, -1]
    ends_clean = ~noise.gather(1, (lengths - 1).clamp(min=0).unsqueeze(1)).squeeze(1)
    trailing = use & (ends_clean | (lengths == 0))  # T5's sentinel after a last clean run
    has_lead = int(lead is not None)
    input_lens = lengths - n_noise + n_runs + has_lead + 1
    target_lens = n_noise + n_runs + trailing + 1
    needed, in_width, out_width = torch.stack(
        [(n_runs + trailing).max(), input_lens.max(), target_lens.max()]
    ).tolist()
    fill = vocab.sentinel_tensor(ids.device)
    if needed > fill.numel():
        raise NotEnoughSentinels(needed=needed, available=fill.numel())
    fill = fill if fill.numel() else ids.new_full((1,), pad)
    sentinel = fill.index_select(0, (run_no - 1).clamp(0, fill.numel() - 1).flatten())
    sentinel = sentinel.view_as(ids)  # <k> for a token that opens run k

    at = torch.where(
        real & (~noise | first), positions(ids) - noise_no + run_no + has_lead, in_width
    )
    inputs, origin = place_inputs(
        torch.where(first, sentinel, ids), at, lead, input_lens, in_width, vocab, with_origin
    )

    targets = torch.where(noise, noise_no - 1 + run_no, out_width)  # where noise tokens go
    last = fill.index_select(0, n_runs.clamp(max=fill.numel() - 1))
    labels, decoder = place_targets(
        ids, noise, first, targets, sentinel, trailing, last, target_lens, out_width, vocab, no_loss
    )
    return Corrupted(
        input_ids=inputs,
        attention_mask=length_mask(input_lens, in_width),
        labels=labels,
        decoder_input_ids=decoder,
        origin=origin,
    )


def place_inputs(
    values: Tensor,
    at: Tensor,
    lead: int | Tensor | None,
    input_lens: Tensor,
    width: int,
    vocab: Vocab,
    with_origin: bool,
) -> tuple[Tensor, Tensor | None]:
    """(inputs, origin), each (B, width): `values` (B, L) at their slots `at` (`width` = dropped),
    `lead` in slot 0 when given, EOS at `input_lens - 1`, pad after; origin (when asked) the
    source position of each placed value, -1 at the lead, the EOS and the padding."""
    inputs = values.new_full((values.size(0), width + 1), vocab.pad)
    inputs.scatter_(1, at, values)
    if lead is not None:
        inputs[:, 0] = lead
    inputs.scatter_(1, (input_lens - 1).unsqueeze(1), torch.full_like(values[:, :1], vocab.eos))
    if not with_origin:
        return inputs[:, :width], None
    origin = values.new_full((values.size(0), width + 1), -1)
    return inputs[:, :width], origin.scatter_(1, at, positions(at).expand_as(at))[:, :width]


def place_targets(
    ids: Tensor,
    noise: Tensor,
    first: Tensor,
    place: Tensor,
    sentinel: Tensor,
    trailing: Tensor,
    last: Tensor,
    target_lens: Tensor,
    width: int,
    vocab: Vocab,
    no_loss: Tensor | None,
) -> tuple[Tensor, Tensor]:
    """(labels, decoder inputs), each (B, width): noise tokens at `place` (`width` = drop), `<k>`
    just before the token that opens run k, `last` after a clean ending, then EOS."""
    pad, n_rows = vocab.pad, ids.size(0)
    eos = torch.full_like(ids[:, :1], vocab.eos)
    targets = ids.new_full((n_rows, width + 1), pad)
    targets.scatter_(1, place, ids)
    targets.scatter_(1, torch.where(first, place - 1, width), sentinel)
    end = target_lens - 1
    targets.scatter_(1, torch.where(trailing, end - 1, width).unsqueeze(1), last.unsqueeze(1))
    targets.scatter_(1, end.unsqueeze(1), eos)
    decoder = torch.cat([torch.full_like(eos, pad), targets[:, :-1]], dim=1)
    decoder.scatter_(1, target_lens.unsqueeze(1), torch.full_like(eos, pad))
    labels = targets[:, :width].masked_fill(~length_mask(target_lens, width), IGNORE)
    if no_loss is not None:
        quiet = torch.zeros_like(targets, dtype=torch.bool)
        quiet.scatter_(1, place, no_loss & noise)
        labels.masked_fill_(quiet[:, :width], IGNORE)
    return labels, decoder[:, :width]


def prefix_split(lengths: Tensor, density: float | Tensor, gen: torch.Generator) -> Tensor:
    """T5's `random_prefix_noise_mask` as a length: (B,) prefix lengths k.

    k is uniform on [min(n - 1, max(1, round((1 - 2 density)(n - 1)))), n - 1]; density (the
    suffix share, a float or (B,) float64) 0.5 gives [1, n - 1]. Rows of n <= 1 get k = 0.
    """
    if not isinstance(density, Tensor) and not 0.0 < density <= 0.5:
        raise ValueError(f"prefix density (suffix share) must be in (0, 0.5], got {density}")
    longest = (lengths - 1).clamp(min=0)
    shortest = torch.minimum(
        round_half_even((1 - 2 * density) * longest.double()).clamp(min=1), longest
    )
    u = torch.rand(lengths.shape, generator=gen, device=lengths.device, dtype=torch.float64)
    k = shortest + (u * (longest - shortest + 1).double()).long()
    return torch.minimum(k, longest)


def prefix_seq2seq(
    ids: Tensor,
    lengths: Tensor,
    split: Tensor,
    vocab: Vocab,
    lead: int | Tensor | None = None,
    with_origin: bool = False,
) -> Corrupted:
    """Encoder-decoder prefix LM: inputs = the first `split` tokens + EOS, targets = the rest +
    EOS (T5's `prefix_lm`: `drop_noise_tokens` / `drop_nonnoise_tokens` of a prefix mask).

    Args:
        ids: (B, L) clean rows; lengths: (B,) real tokens; split: (B,) prefix lengths.
        lead: an id (or (B,) ids) put before every input (UL2's [S2S]), or None.
    Special ids in the suffix stay in the targets (the decoder reads them) but carry no loss.
    """
    real = length_mask(lengths, ids.size(1))
    suffix = real & (positions(ids) >= split.unsqueeze(1))
    special = vocab.is_special(ids)
    out = denoise(
        ids, lengths, suffix, vocab, lead, False, suffix & special, with_origin=with_origin
    )
    return replace(out, ops=prefix_ops(real, suffix, special))


def prefix_ops(real: Tensor, suffix: Tensor, special: Tensor) -> Tensor:
    """(B, L) int8: CONTEXT on the prefix, PREDICT on the suffix, KEEP on specials and padding."""
    ordinary = real & ~special
    context = (ordinary & ~suffix).to(torch.int8) * int(Op.CONTEXT)
    return context + (ordinary & suffix).to(torch.int8) * int(Op.PREDICT)

"""T5 span corruption with sentinels (Raffel et al. 2020, arXiv 1910.10683, §3.3 and §4.7 of the
zoo's reference).

About 15% of the tokens are cut out in spans of mean length 3; each cut span becomes one sentinel
in the input, and the decoder writes every cut span back behind its sentinel:

    ids      a  b  c  d  e  f  g  h
    noise    .  .  x  x  .  .  x  x         (starts with non-noise, ends with noise)
    input    a  b  <0>  e  f  <1>  </s>
    labels   <0>  c  d  <1>  g  h  </s>

The mask is T5's `random_spans_noise_mask`: for a row of n tokens (worked on max(n, 2) positions,
then truncated) num_noise = round(0.15 n) clamped to [1, n - 1], num_spans = max(1,
round(num_noise / 3)); the noise tokens and the non-noise tokens are each split into num_spans
parts by a uniformly random composition, and the parts are interleaved non-noise first. Rounding
is half-to-even in float64, as Python's `round` in the Hugging Face port (T5's TF code rounds in
float32, which differs on a few lengths, e.g. 0.15 x 30). `<k>` is `vocab.sentinels[k]`.

The whole batch is done at once: a composition of `total` into `parts` positive parts is a
uniformly random choice of `parts - 1` of the `total - 1` gaps, picked by the top-k of random
scores; sorted, the chosen gaps are the cumulative part ends. Rows of different lengths share one
set of tensor operations.

Reference choices:
* Span count: T5's formula with the guard of transformers PR #22938 (round(min(noise, non-noise) /
  mean)), which equals T5's own formula whenever noise <= non-noise and keeps density > 0.5 valid.
* Special ids in content (`vocab.special`) are never noise: the drawn mask is cleared there, which
  may split a span in two (T5 itself has no notion of protected ids).
* Targets put `<j>` before the j-th noise span and, as T5, one trailing sentinel when the row ends
  with non-noise (n = 1 gives targets `<0> </s>`). With `random_roll` a row can start with noise;
  T5's code then misnumbers the target sentinels by one, this module keeps them aligned.
* Rows are corrupted as the data layer packed them; T5 cuts raw pieces of 568 tokens so that the
  inputs are exactly 512 (`random_spans_helper` gives those lengths) and trims to 511 + EOS. Pack
  rows of `random_spans_helper(...)[0]` tokens to reproduce that.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ._ops import compact, frame, length_mask, positions, round_half_even, run_starts, seq2seq
from .errors import NotEnoughSentinels
from .registry import param, register
from .types import Corrupted, Op, Tokens, Vocab


@dataclass(frozen=True)
class SpanCorruption:
    """Cut random spans, replace each by one sentinel, predict sentinels + cut tokens."""

    density: float = param(0.15, "share of tokens that end up inside a cut span (noise_density)")
    mean_span: float = param(3.0, "average cut span length in tokens (mean_noise_span_length)")
    random_roll: bool = param(
        False, "rotate each row's mask by a random offset, so the last token is not always cut "
        "(T5's random_roll; off in span_corruption)"
    )

    def __post_init__(self) -> None:
        check_spans(self.density, self.mean_span)

    def __call__(self, batch: Tokens, vocab: Vocab, gen: torch.Generator) -> Corrupted:
        noise = random_spans_noise_mask(batch.lengths, batch.ids.size(1), self.density,
                                        self.mean_span, gen, self.random_roll)
        return sentinel_seq2seq(batch.ids, batch.lengths, noise & ~vocab.is_special(batch.ids),
                                vocab)


@dataclass(frozen=True)
class IidCorruption:
    """Each token is noise independently; runs of noise become sentinels as in span corruption."""

    density: float = param(0.15, "probability that a token is cut (T5's iid_noise_mask)")

    def __post_init__(self) -> None:
        if not 0.0 < self.density < 1.0:
            raise ValueError(f"density must be in (0, 1), got {self.density}")

    def __call__(self, batch: Tokens, vocab: Vocab, gen: torch.Generator) -> Corrupted:
        u = torch.rand(batch.ids.shape, generator=gen, device=batch.ids.device)
        noise = (u < self.density) & batch.real & ~vocab.is_special(batch.ids)
        return sentinel_seq2seq(batch.ids, batch.lengths, noise, vocab)


def check_spans(density: float, mean_span: float) -> None:
    """Raise ValueError unless (density, mean_span) gives valid random span masks."""
    if not 0.0 < density < 1.0:
        raise ValueError(f"density must be in (0, 1), got {density}")
    if mean_span < 1.0:
        raise ValueError(f"mean_span must be >= 1 token, got {mean_span}")


def span_counts(lengths: Tensor, density: float, mean_span: float, max_spans: int = 0
                ) -> tuple[Tensor, Tensor, Tensor]:
    """T5's per-row budget: (positions worked on, noise tokens, noise spans), each (B,) int64.

    A row of n tokens is worked on as max(n, 2) positions (the mask is truncated afterwards).
    `max_spans` > 0 caps the spans (not in T5; UL2's guard against running out of sentinels).
    """
    work = lengths.clamp(min=2)
    n_noise = torch.minimum(round_half_even(work.double() * density).clamp(min=1), work - 1)
    n_clean = work - n_noise
    # transformers PR #22938: min(noise, non-noise) keeps num_spans <= non-noise tokens
    n_spans = round_half_even(torch.minimum(n_noise, n_clean).double() / mean_span).clamp(min=1)
    if max_spans > 0:
        n_spans = n_spans.clamp(max=max_spans)
    return work, n_noise, n_spans


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
    ends = totals.unsqueeze(1).expand(n_rows, width)
    n_gaps = int(totals.max()) - 1 if totals.numel() else 0
    if width == 1 or n_gaps <= 0:
        return ends.contiguous()
    # choosing parts - 1 of the totals - 1 gaps uniformly = the top scores among valid gaps
    scores = torch.rand((n_rows, n_gaps), generator=gen, device=totals.device)
    scores = scores.masked_fill(positions(scores) >= (totals - 1).unsqueeze(1), -1.0)
    gaps = scores.topk(width - 1, dim=1).indices  # (B, max parts - 1), best first
    used = positions(gaps) < (parts - 1).unsqueeze(1)
    cuts = torch.where(used, gaps + 1, totals.unsqueeze(1)).sort(dim=1).values
    return torch.cat([cuts, totals.unsqueeze(1)], dim=1)


def random_spans_noise_mask(
    lengths: Tensor,
    width: int,
    density: float,
    mean_span: float,
    gen: torch.Generator,
    random_roll: bool = False,
    max_spans: int = 0,
) -> Tensor:
    """T5's `random_spans_noise_mask` for every row at once.

    Args:
        lengths: (B,) int64 real tokens per row.
        width: columns of the result (>= lengths.max()).
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
        offset = (torch.rand(lengths.shape, generator=gen, device=lengths.device,
                             dtype=torch.float64) * work).long()
        source = (positions(noise) - offset.unsqueeze(1)) % work.unsqueeze(1)
        noise = noise.gather(1, source)
    return noise[:, :width] & length_mask(lengths, width)


def collapse_runs(ids: Tensor, run: Tensor, keep: Tensor, fill: Tensor, pad: int
                  ) -> tuple[Tensor, Tensor]:
    """Replace the k-th run of True in each row of `run` by fill[k]; keep the other `keep` tokens.

    Args:
        ids: (B, L) int64.
        run: (B, L) bool, the runs to collapse (only where `keep`).
        keep: (B, L) bool, the positions that exist (False at padding).
        fill: (N,) int64, one id per run.
    Returns:
        ((B, W) ids left-aligned and padded with `pad`, (B,) lengths).
    Raises:
        NotEnoughSentinels: a row has more runs than `fill` has ids.
    """
    run = run & keep
    first = run_starts(run)
    needed = int(first.sum(1).max()) if first.numel() else 0
    if needed > fill.numel():
        raise NotEnoughSentinels(needed=needed, available=fill.numel())
    values = ids
    if needed:
        k = (first.long().cumsum(1) - 1).clamp(min=0, max=fill.numel() - 1)
        values = torch.where(first, fill[k], ids)
    kept = keep & (~run | first)
    return compact(values, kept, pad), kept.sum(1)


def sentinel_seq2seq(ids: Tensor, lengths: Tensor, noise: Tensor, vocab: Vocab,
                     lead: int | None = None) -> Corrupted:
    """T5's `noise_span_to_unique_sentinel` (inputs) and `nonnoise_span_to_unique_sentinel`
    (targets), EOS appended to both, decoder start = pad (`make_autoregressive_inputs`).

    Args:
        ids: (B, L) clean rows; lengths: (B,) real tokens.
        noise: (B, L) bool, the tokens to cut (False at padding and at special ids).
        lead: an id put before every input (UL2's paradigm token), or None.
    """
    real = length_mask(lengths, ids.size(1))
    fill = vocab.sentinel_tensor(ids.device)
    inputs, input_lens = collapse_runs(ids, noise, real, fill, vocab.pad)
    # a virtual non-noise token in front makes <0> precede the first span even if a row starts
    # with noise; otherwise it merges into the first non-noise run and changes nothing
    ones = torch.ones_like(real[:, :1])
    targets, target_lens = collapse_runs(
        torch.cat([torch.full_like(ids[:, :1], vocab.pad), ids], dim=1),
        torch.cat([ones, real & ~noise], dim=1),
        torch.cat([ones, real], dim=1),
        fill,
        vocab.pad,
    )
    inputs = frame(inputs, input_lens, vocab.pad, lead, vocab.eos)
    targets = frame(targets, target_lens, vocab.pad, None, vocab.eos)
    ops = torch.where(noise & real, int(Op.SPAN), int(Op.KEEP)).to(torch.int8)
    return seq2seq(inputs, input_lens + 1 + int(lead is not None), targets, target_lens + 1,
                   vocab, start=vocab.pad, ops=ops)


def random_spans_helper(
    inputs_length: int,
    noise_density: float,
    mean_noise_span_length: float,
    extra_tokens_per_span_inputs: int = 1,
    extra_tokens_per_span_targets: int = 1,
) -> tuple[int, int]:
    """T5's length arithmetic: the raw piece length whose corrupted inputs fill `inputs_length`
    (EOS included), and the targets length it then needs.

    Returns:
        (raw tokens per piece, targets length): (568, 114) for (512, 0.15, 3.0).
    """
    if inputs_length < 2:
        raise ValueError(f"inputs_length must be >= 2, got {inputs_length}")
    check_spans(noise_density, mean_noise_span_length)

    def corrupted_lengths(n: int) -> tuple[int, int]:
        n_noise = round(n * noise_density)  # Python round: half to even, as the reference
        n_spans = round(n_noise / mean_noise_span_length)
        return (n - n_noise + n_spans * extra_tokens_per_span_inputs + 1,
                n_noise + n_spans * extra_tokens_per_span_targets + 1)

    n = inputs_length - 1
    while corrupted_lengths(n + 1)[0] <= inputs_length:
        n += 1
    targets_length = corrupted_lengths(n)[1]
    # the reference's "minor hack": at density 0.5 make targets no longer than inputs
    if noise_density == 0.5 and targets_length > inputs_length:
        n -= 1
        targets_length -= 1
    return n, targets_length


@register("t5-span", arch="encoder-decoder", paper="Raffel et al. 2020, arXiv 1910.10683",
          aliases=("t5",))
def t5_span(**overrides: Any) -> SpanCorruption:
    """T5 span corruption: 15% of tokens cut in spans of mean length 3, one sentinel per span.

    Inputs are `x </s>` with each cut span replaced by its sentinel <extra_id_j>; targets are the
    sentinels each followed by its cut tokens, then `</s>`; the decoder starts from pad. A
    568-token row gives 85 noise tokens in 28 spans, inputs 512 and targets 114. Rows needing more
    spans than the vocabulary has sentinels raise NotEnoughSentinels.
    """
    return SpanCorruption(**overrides)


@register("t5-iid", arch="encoder-decoder", paper="Raffel et al. 2020, arXiv 1910.10683")
def t5_iid(**overrides: Any) -> IidCorruption:
    """T5 i.i.d. denoising baseline: each token cut with probability 0.15, runs become sentinels.

    The baseline objective of T5's Tables 2-7 (iid_noise_mask); span corruption replaced it.
    """
    return IidCorruption(**overrides)

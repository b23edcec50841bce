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
float32, which differs on 18 lengths up to 2048 at density 0.15, the first 190: float32 gives
28.500002 -> 29, float64 28.5 -> 28). `<k>` is `vocab.sentinels[k]`.

The mask and the sentinel layout are computed for the whole batch at once by the shared T5
preprocessors in `_t5.py` (also used by the prefix LMs and UL2).

Reference choices:
* Span count: T5's round(noise / mean), capped at the non-noise tokens. That equals T5 wherever
  T5's partition is valid and keeps density > 0.5 valid (transformers #22246). The fix merged
  there, PR #22938, rounds min(noise, non-noise) / mean instead, which differs from T5 at density
  0.5 on rows of 4k + 3 tokens (15 tokens: 2 spans, T5 3), lengths UL2's 50% denoisers meet.
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

from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor

from ._t5 import check_spans, denoise, random_spans_noise_mask
from .registry import param, register
from .types import Corrupted, Op, Tokens, Vocab


@dataclass(frozen=True)
class SpanCorruption:
    """Cut random spans, replace each by one sentinel, predict sentinels + cut tokens."""

    density: float = param(0.15, "share of tokens that end up inside a cut span (noise_density)")
    mean_span: float = param(3.0, "average cut span length in tokens (mean_noise_span_length)")
    random_roll: bool = param(
        False,
        "rotate each row's mask by a random offset, so the last token is not always cut "
        "(T5's random_roll; off in span_corruption)",
    )

    def __post_init__(self) -> None:
        check_spans(self.density, self.mean_span)

    def __call__(
        self, batch: Tokens, vocab: Vocab, gen: torch.Generator, *, with_origin: bool = False
    ) -> Corrupted:
        noise = random_spans_noise_mask(
            batch.lengths, batch.ids.size(1), self.density, self.mean_span, gen, self.random_roll
        )
        return spans_batch(batch, noise & ~vocab.is_special(batch.ids), vocab, with_origin)


@dataclass(frozen=True)
class IidCorruption:
    """Each token is noise independently; runs of noise become sentinels as in span corruption."""

    density: float = param(0.15, "probability that a token is cut (T5's iid_noise_mask)")

    def __post_init__(self) -> None:
        if not 0.0 < self.density < 1.0:
            raise ValueError(f"density must be in (0, 1), got {self.density}")

    def __call__(
        self, batch: Tokens, vocab: Vocab, gen: torch.Generator, *, with_origin: bool = False
    ) -> Corrupted:
        u = torch.rand(batch.ids.shape, generator=gen, device=batch.ids.device)
        noise = (u < self.density) & batch.real & ~vocab.is_special(batch.ids)
        return spans_batch(batch, noise, vocab, with_origin)


def spans_batch(batch: Tokens, noise: Tensor, vocab: Vocab, with_origin: bool = False) -> Corrupted:
    """Sentinel inputs and targets for `noise`, ops = SPAN on the cut tokens."""
    out = denoise(batch.ids, batch.lengths, noise, vocab, with_origin=with_origin)
    return replace(out, ops=noise.to(torch.int8) * int(Op.SPAN))


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
        return (
            n - n_noise + n_spans * extra_tokens_per_span_inputs + 1,
            n_noise + n_spans * extra_tokens_per_span_targets + 1,
        )

    n = inputs_length - 1
    while corrupted_lengths(n + 1)[0] <= inputs_length:
        n += 1
    targets_length = corrupted_lengths(n)[1]
    # the reference's "minor hack": at density 0.5 make targets no longer than inputs
    if noise_density == 0.5 and targets_length > inputs_length:
        n -= 1
        targets_length -= 1
    return n, targets_length


@register(
    "t5-span",
    arch="encoder-decoder",
    paper="Raffel et al. 2020, arXiv 1910.10683",
    aliases=("t5",),
    sentinels=True,
)
def t5_span(**overrides: Any) -> SpanCorruption:
    """T5 span corruption: 15% of tokens cut in spans of mean length 3, one sentinel per span.

    Inputs are `x </s>` with each cut span replaced by its sentinel <extra_id_j>; targets are the
    sentinels each followed by its cut tokens, then `</s>`; the decoder starts from pad. A
    568-token row gives 85 noise tokens in 28 spans, inputs 512 and targets 114. Rows needing more
    spans than the vocabulary has sentinels raise NotEnoughSentinels.
    """
    return SpanCorruption(**overrides)


@register(
    "t5-iid", arch="encoder-decoder", paper="Raffel et al. 2020, arXiv 1910.10683", sentinels=True
)
def t5_iid(**overrides: Any) -> IidCorruption:
    """T5 i.i.d. denoising baseline: each token cut with probability 0.15, runs become sentinels.

    The baseline objective of T5's Tables 2-7 (iid_noise_mask); span corruption replaced it.
    """
    return IidCorruption(**overrides)

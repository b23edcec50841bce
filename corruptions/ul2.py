"""UL2 mixture of denoisers (Tay et al. 2022, arXiv 2205.05131; seqio `ul2_objective`).

Each row draws one denoiser: T5 span corruption with a (mean span, density) of its own (R:
regular, X: extreme), or the S-denoiser, an encoder-decoder prefix LM. A paradigm token naming the
denoiser's mode opens the input:

    ids      a  b  c  d  e  f  g  h
    R        input  [NLU] a  b  <0>  e  f  <1>  </s>     labels  <0> c  d  <1> g  h  </s>
    X        input  [NLG] a  <0>  g  <1> </s>            labels  <0> b  c  d  e  f  <1>  h  </s>
    S        input  [S2S] a  b  c  </s>                  labels  d  e  f  g  h  </s>

Default denoisers (index = extras['denoiser']): 0 R(μ3, r.15), 1 R(μ8, r.15), 2 X(μ3, r.5),
3 X(μ8, r.5), 4 X(μ64, r.15), 5 X(μ64, r.5), 6 S (split uniform, T5 `prefix_lm`).

Reference choices (the sources disagree, reference §5 #12/#13):
* Rates: 40% R split evenly, 40% X split evenly, 20% S, as the public ports that cite the paper;
  seqio's `ul2_objective` defaults to uniform rates (set `rates` to seven equal numbers for that).
* S: the appendix code's uniform split (suffix share r = 0.5); some summaries of the paper give
  S with r = 0.25 (a 75% prefix): set the S entry's density to 0.25 for that.
* Paradigm tokens: the released 20B checkpoint's [NLU] / [NLG] / [S2S] (HF card, after the R/S
  swap fix); the paper writes [R] / [X] / [S]. They are looked up in `vocab.extra`.
* seqio cuts raw pieces per denoiser (568, 588, 766, 908, 600, 1006 tokens) so that every input
  fills 512; here every denoiser corrupts the row as packed, so X inputs are shorter.
* (μ3, r.5) needs 101 sentinels from rows of 603 tokens on (T5 has 100): the batch is checked up
  front against every span denoiser, whichever rows draw it, and raises NotEnoughSentinels;
  `cap_spans=true` caps spans at the sentinel count instead (longer spans, same density).
* X (μ64, r.15) cuts one span from rows shorter than ~640 tokens, and T5's layout puts the last
  span at the row's end: on 512-token rows it is the suffix of 77 tokens, a suffix LM, as in
  seqio (reference §4.13's pitfall); at 128 tokens X (μ64, r.5) is the S denoiser's midpoint
  split. Neither is rolled (t5-span's `random_roll` is not offered here).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch

from ._ops import positions
from ._t5 import check_spans, denoise, prefix_split, random_spans_noise_mask, span_count
from .errors import NotEnoughSentinels, ObjectivesError
from .registry import param, register
from .types import Corrupted, ModelFacts, Op, Tokens, Vocab

MODES = ("R", "X", "S")
DENOISERS = (
    ("R", 3.0, 0.15),
    ("R", 8.0, 0.15),
    ("X", 3.0, 0.5),
    ("X", 8.0, 0.5),
    ("X", 64.0, 0.15),
    ("X", 64.0, 0.5),
    ("S", 0.0, 0.5),
)


@dataclass(frozen=True)
class MixtureOfDenoisers:
    """Draw a denoiser per row, corrupt each group of rows at once, merge into one batch."""

    denoisers: tuple[tuple[str, float, float], ...] = param(
        DENOISERS,
        "(mode, mean span, density) per denoiser; mode R/X = T5 span corruption, S = prefix LM "
        "with suffix share `density` (mean span unused)",
    )
    rates: tuple[float, ...] = param(
        (0.2, 0.2, 0.1, 0.1, 0.1, 0.1, 0.2),
        "sampling weight per denoiser (normalised): 40% R, 40% X, 20% S as the public ports; "
        "seqio's default is uniform",
    )
    tokens: tuple[str, ...] = param(
        ("[NLU]", "[NLG]", "[S2S]"),
        "paradigm token for R, X, S (names in the tokenizer; the paper's are [R], [X], [S])",
    )
    prompt: bool = param(True, "prepend the paradigm token to every input")
    cap_spans: bool = param(
        False, "cap a row's spans at the number of sentinels instead of failing on long rows"
    )

    def __post_init__(self) -> None:
        if not self.denoisers:
            raise ValueError("denoisers must not be empty")
        for entry in self.denoisers:
            if len(entry) != 3 or entry[0] not in MODES:
                raise ValueError(
                    f"each denoiser is (mode, mean span, density) with mode in "
                    f"{'/'.join(MODES)}, got {entry!r}"
                )
            mode, mean, density = entry
            if mode == "S" and not 0.0 < density <= 0.5:
                raise ValueError(f"S density (suffix share) must be in (0, 0.5], got {density}")
            if mode != "S":
                check_spans(float(density), float(mean))
        if len(self.rates) != len(self.denoisers):
            raise ValueError(
                f"rates needs one weight per denoiser ({len(self.denoisers)}), "
                f"got {len(self.rates)}"
            )
        if any(r < 0 for r in self.rates) or sum(self.rates) <= 0:
            raise ValueError("rates must be >= 0 and not all 0")
        if len(self.tokens) != len(MODES):
            raise ValueError("tokens needs one name for each of R, X, S")

    def __call__(
        self, batch: Tokens, vocab: Vocab, gen: torch.Generator, *, with_origin: bool = False
    ) -> Corrupted:
        ids, lengths, device = batch.ids, batch.lengths, batch.ids.device
        leads = self.paradigm_ids(vocab)
        self.check_sentinels(int(lengths.max()) if lengths.numel() else 0, len(vocab.sentinels))
        # one row per denoiser: mode, mean span (S: unused), density, paradigm id, rate
        table = torch.tensor(
            [
                [
                    MODES.index(mode),
                    max(float(mean), 1.0),
                    float(density),
                    leads[MODES.index(mode)] if leads else 0,
                    float(rate),
                ]
                for (mode, mean, density), rate in zip(self.denoisers, self.rates, strict=True)
            ],
            dtype=torch.float64,
            device=device,
        )
        choice = torch.multinomial(table[:, 4], ids.size(0), replacement=True, generator=gen)
        mode, mean, density, lead = table[choice, :4].unbind(1)
        is_s = mode == MODES.index("S")
        # every row in one pass: span rows get their own (mean, density); S rows are given
        # length 0 there (one empty span, no cost) and a prefix split instead
        span_noise = random_spans_noise_mask(
            lengths.masked_fill(is_s, 0),
            ids.size(1),
            density,
            mean,
            gen,
            max_spans=len(vocab.sentinels) if self.cap_spans else 0,
        )
        split = prefix_split(lengths, density.clamp(max=0.5), gen)
        ordinary = batch.real & ~vocab.is_special(ids)
        suffix = (positions(ids) >= split.unsqueeze(1)) & is_s.unsqueeze(1) & batch.real
        span_noise &= ordinary
        out = denoise(
            ids,
            lengths,
            span_noise | suffix,
            vocab,
            lead.long() if leads else None,
            sentinels=~is_s,
            no_loss=suffix & ~ordinary,
            with_origin=with_origin,
        )
        s_rows = ordinary & is_s.unsqueeze(1)
        ops = span_noise.to(torch.int8) * int(Op.SPAN)
        ops += (s_rows & ~suffix).to(torch.int8) * int(Op.CONTEXT)
        ops += (s_rows & suffix).to(torch.int8) * int(Op.PREDICT)
        return replace(out, ops=ops, extras={"denoiser": choice})

    def check_sentinels(self, longest: int, available: int) -> None:
        """Fail up front, whichever rows draw which denoiser, if a span denoiser can need more
        sentinels than the vocabulary has (unless `cap_spans`)."""
        if self.cap_spans:
            return
        for mode, mean, density in self.denoisers:
            needed = 0 if mode == "S" else span_count(longest, float(density), float(mean))
            if needed > available:
                raise NotEnoughSentinels(needed=needed, available=available)

    def model_facts(self, vocab: Vocab) -> ModelFacts:
        """The paradigm token id of each mode R, X, S (none without `prompt`)."""
        return ModelFacts(paradigm_ids=dict(zip(MODES, self.paradigm_ids(vocab), strict=False)))

    def paradigm_ids(self, vocab: Vocab) -> tuple[int, ...]:
        """The ids of the R, X, S paradigm tokens (none without `prompt`)."""
        if not self.prompt:
            return ()
        missing = [t for t in self.tokens if t not in vocab.extra]
        if missing:
            raise ObjectivesError(
                f"the tokenizer has no paradigm token {missing[0]} for ul2",
                "use a tokenizer with " + ", ".join(self.tokens) + " as special tokens, set "
                "tokens=... to ones it has, or prompt=false",
            )
        return tuple(vocab.extra[t] for t in self.tokens)


@register("ul2", arch="encoder-decoder", paper="Tay et al. 2022, arXiv 2205.05131", sentinels=True)
def ul2(**overrides: Any) -> MixtureOfDenoisers:
    """UL2 mixture of denoisers: per row R, X (T5 spans) or S (prefix LM), paradigm token first.

    R (μ3, r.15), (μ8, r.15) with [NLU]; X (μ3, r.5), (μ8, r.5), (μ64, r.15), (μ64, r.5) with
    [NLG]; S (uniform split) with [S2S]; rates 40% R, 40% X, 20% S, split evenly.
    extras['denoiser'] = the index of each row's denoiser in `denoisers`.
    """
    return MixtureOfDenoisers(**overrides)

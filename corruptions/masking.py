"""BERT masked language modelling (Devlin et al. 2018, arXiv 1810.04805).

A budget of content tokens is chosen; each chosen token becomes [MASK] (80%), a random token
(10%) or stays (10%), and only chosen tokens are predicted:

    ids     a  b  c  d  e
    input   [CLS] a  [MASK]  c  q  e  [SEP]      (b masked, d replaced by a random q)
    labels   -    -    b     -  d  -    -
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ._ops import (
    candidates,
    choose_k,
    encoder_batch,
    frame,
    rand,
    replace_selected,
    round_half_even,
)
from .registry import param, register
from .types import IGNORE, Corrupted, Op, Tokens, Vocab

BUDGETS = ("exact", "bernoulli")


@dataclass(frozen=True)
class TokenMasking:
    """Choose tokens to predict, apply 80/10/10, frame as `[CLS] x [SEP]`."""

    rate: float = param(0.15, "share of tokens chosen for prediction (masked_lm_prob)")
    mask_replace: float = param(0.8, "share of chosen tokens replaced by [MASK]")
    random_replace: float = param(0.1, "share of chosen tokens replaced by a random token")
    budget: str = param(
        "exact",
        "exact: max(1, round(rate x length incl. [CLS]/[SEP])) tokens per sequence, as "
        "google-research/bert; bernoulli: each token independently, as Hugging Face's collator",
    )
    max_predictions: int = param(0, "cap on chosen tokens per sequence (0: no cap)")
    exclude_special_random: bool = param(
        False, "draw random replacements from ordinary tokens only (the reference draws from all)"
    )

    def __post_init__(self) -> None:
        if not 0.0 < self.rate <= 1.0:
            raise ValueError(f"rate must be in (0, 1], got {self.rate}")
        if self.mask_replace < 0 or self.random_replace < 0:
            raise ValueError("mask_replace and random_replace must be >= 0")
        if self.mask_replace + self.random_replace > 1.0 + 1e-9:
            raise ValueError("mask_replace + random_replace must be <= 1")
        if self.budget not in BUDGETS:
            raise ValueError(f"budget must be one of {', '.join(BUDGETS)}, got '{self.budget}'")
        if self.max_predictions < 0:
            raise ValueError("max_predictions must be >= 0")

    def choose(self, batch: Tokens, vocab: Vocab, gen: torch.Generator) -> torch.Tensor:
        """(B, L) bool: the content tokens to predict."""
        allowed = candidates(batch, vocab)
        if self.budget == "bernoulli":
            chosen = allowed & (rand(allowed, gen) < self.rate)
            if self.max_predictions:
                chosen = choose_k(chosen, torch.full_like(batch.lengths, self.max_predictions), gen)
            return chosen
        # google-research/bert counts [CLS] and [SEP] in the length the budget is taken of
        k = round_half_even((batch.lengths + 2).double() * self.rate).clamp(min=1)
        if self.max_predictions:
            k = k.clamp(max=self.max_predictions)
        return choose_k(allowed, k, gen)

    def __call__(self, batch: Tokens, vocab: Vocab, gen: torch.Generator) -> Corrupted:
        chosen = self.choose(batch, vocab, gen)
        return mlm_batch(batch, vocab, chosen, gen, self.mask_replace, self.random_replace,
                         self.exclude_special_random)


def mlm_batch(
    batch: Tokens,
    vocab: Vocab,
    chosen: torch.Tensor,
    gen: torch.Generator,
    mask_replace: float = 0.8,
    random_replace: float = 0.1,
    exclude_special_random: bool = False,
) -> Corrupted:
    """Apply 80/10/10 at `chosen`, frame as `[CLS] x [SEP]`, labels = originals at `chosen`."""
    ids = batch.ids
    corrupted, ops = replace_selected(ids, chosen, vocab, gen, mask_replace, random_replace,
                                      exclude_special_random)
    labels = ids.masked_fill(~chosen, IGNORE)
    return encoder_batch(
        frame(corrupted, batch.lengths, vocab.pad, vocab.bos, vocab.eos),
        batch.lengths + 2,
        frame(labels, batch.lengths, IGNORE, IGNORE, IGNORE),
        ops=ops.masked_fill(~batch.real, int(Op.KEEP)),
    )


@register("bert-mlm", arch="encoder", paper="Devlin et al. 2018, arXiv 1810.04805",
          aliases=("bert", "mlm"))
def bert_mlm(**overrides: Any) -> TokenMasking:
    """BERT masked LM: 15% of tokens predicted; of those 80% [MASK], 10% random, 10% unchanged.

    The budget per sequence is exact, max(1, round(0.15 x length)) with [CLS] and [SEP] counted,
    as google-research/bert's create_pretraining_data.py; `budget=bernoulli` gives Hugging Face's
    dynamic per-token draw instead.
    """
    return TokenMasking(**overrides)

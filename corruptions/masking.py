"""Masked language modelling: BERT, whole-word masking, SpanBERT and ELECTRA's generator input.

Devlin et al. 2018 (arXiv 1810.04805); whole-word masking: google-research/bert README
(2019-05-31) and Cui et al. 2019 (arXiv 1906.08101); Joshi et al. 2019 (arXiv 1907.10529);
Clark et al. 2020 (arXiv 2003.10555).

A budget of content tokens is chosen: single tokens (bert-mlm, electra), whole words
(whole-word) or runs of whole words (spanbert). Each chosen token becomes [MASK], a random
token, or stays; only chosen tokens are predicted. With the words a | b c | d | e ("b c" is one
word of two pieces), one possible outcome of each:

    ids          a     b       c       d      e
    bert-mlm     a   [MASK]    c       q      e     b masked, d replaced by a random q
      labels     -     b       -       d      -
    whole-word   a   [MASK]    c       d      e     both pieces of "b c" predicted, each
      labels     -     b       c       -      -     with its own draw (c stayed)
    spanbert     a   [MASK]  [MASK]  [MASK]   e     one span of 2 words ("b c", "d"), one
      labels     -     b       c       d      -     draw for all; SBO predicts b c d from a, e
    electra      a   [MASK]    c       d      e     85% [MASK], 15% unchanged, never random
      labels     -     b       c       -      -

Every input is framed `[CLS] x [SEP]`; labels there are ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ._ops import (
    ORDINARY_RANDOM,
    candidates,
    check_mlm,
    choose_k,
    draw_with_replacement,
    encoder_batch,
    frame,
    origin_of,
    rand,
    replace_selected,
    round_half_even,
)
from ._spans import (
    AnchoredSpans,
    anchored_word_spans,
    run_bounds,
    sbo_targets,
    truncated_geometric,
    unigram_tokens,
    whole_words,
    word_groups,
)
from .registry import param, register
from .types import IGNORE, Corrupted, ModelFacts, Tokens, Vocab

BUDGETS = ("exact", "bernoulli")
REPLACEMENTS = ("span", "word_piece")


def exact_budget(lengths: Tensor, rate: float, max_predictions: int = 0) -> Tensor:
    """google-research/bert's per-sequence budget: min(cap, max(1, round(rate x (length + 2)))).

    [CLS] and [SEP] count in the length, and `round` is half to even (0.15 x 30 = 4.5 -> 4).
    """
    k = round_half_even((lengths + 2).double() * rate).clamp(min=1)
    return k.clamp(max=max_predictions) if max_predictions else k


@dataclass(frozen=True)
class TokenMasking:
    """Choose tokens to predict, apply 80/10/10, frame as `[CLS] x [SEP]`."""

    rate: float = param(0.15, "share of tokens chosen for prediction (masked_lm_prob)")
    mask_replace: float = param(0.8, "share of chosen tokens replaced by [MASK]")
    random_replace: float = param(
        0.1, f"share of chosen tokens replaced by a random token ({ORDINARY_RANDOM})"
    )
    budget: str = param(
        "exact",
        "exact: max(1, round(rate x length incl. [CLS]/[SEP])) tokens per sequence, as "
        "google-research/bert; bernoulli: each token independently, as Hugging Face's collator",
    )
    max_predictions: int = param(0, "cap on chosen tokens per sequence (0: no cap)")

    def __post_init__(self) -> None:
        check_mlm(self.rate, self.mask_replace, self.random_replace, self.max_predictions)
        if self.budget not in BUDGETS:
            raise ValueError(f"budget must be one of {', '.join(BUDGETS)}, got '{self.budget}'")

    def choose(self, batch: Tokens, vocab: Vocab, gen: torch.Generator) -> Tensor:
        """(B, L) bool: the content tokens to predict."""
        allowed = candidates(batch, vocab)
        if self.budget == "bernoulli":
            chosen = allowed & (rand(allowed, gen) < self.rate)
            if self.max_predictions:
                chosen = choose_k(chosen, torch.full_like(batch.lengths, self.max_predictions), gen)
            return chosen
        return choose_k(allowed, exact_budget(batch.lengths, self.rate, self.max_predictions), gen)

    def __call__(
        self, batch: Tokens, vocab: Vocab, gen: torch.Generator, *, with_origin: bool = False
    ) -> Corrupted:
        chosen = self.choose(batch, vocab, gen)
        return mlm_batch(
            batch,
            vocab,
            chosen,
            gen,
            self.mask_replace,
            self.random_replace,
            with_origin=with_origin,
        )


def mlm_batch(
    batch: Tokens,
    vocab: Vocab,
    chosen: Tensor,
    gen: torch.Generator,
    mask_replace: float = 0.8,
    random_replace: float = 0.1,
    u: Tensor | None = None,
    random_ids: Tensor | None = None,
    extras: dict[str, Tensor] | None = None,
    with_origin: bool = False,
) -> Corrupted:
    """Apply 80/10/10 at `chosen`, frame as `[CLS] x [SEP]`, labels = originals at `chosen`.

    `chosen` must lie inside the real tokens (every variant picks among `candidates`): then the
    labels and ops are already IGNORE / KEEP outside them, and framing the labels is a shift.
    `u` and `random_ids` pass through to `replace_selected` (shared draws, other random sources);
    `extras` must already be framed (indices into `input_ids`).
    """
    ids = batch.ids
    corrupted, ops = replace_selected(
        ids,
        chosen,
        vocab,
        gen,
        mask_replace,
        random_replace,
        u=u,
        random_ids=random_ids,
    )
    labels = ids.new_full((ids.size(0), ids.size(1) + 2), IGNORE)
    labels[:, 1:-1] = torch.where(chosen, ids, IGNORE)
    return encoder_batch(
        frame(corrupted, batch.lengths, vocab.pad, vocab.bos, vocab.eos),
        batch.lengths + 2,
        labels,
        ops=ops,
        extras=extras,
        origin=origin_of(batch.lengths, ids.size(1) + 2, lead=1) if with_origin else None,
    )


@register(
    "bert-mlm",
    arch="encoder",
    paper="Devlin et al. 2018, arXiv 1810.04805",
    aliases=("bert", "mlm"),
)
def bert_mlm(**overrides: Any) -> TokenMasking:
    """BERT masked LM: 15% of tokens predicted; of those 80% [MASK], 10% random, 10% unchanged.

    The budget per sequence is exact, max(1, round(0.15 x length)) with [CLS] and [SEP] counted,
    as google-research/bert's create_pretraining_data.py; `budget=bernoulli` gives Hugging Face's
    dynamic per-token draw instead. Random tokens are ordinary ids (the reference draws from the
    whole vocabulary, [CLS], [SEP] and [MASK] included), in every objective of the zoo.
    """
    return TokenMasking(**overrides)


# ---------------------------------------------------------------------------- whole-word masking


@dataclass(frozen=True)
class WholeWordMasking:
    """Choose whole words up to a budget counted in pieces, then 80/10/10 per piece."""

    rate: float = param(0.15, "share of pieces chosen for prediction (masked_lm_prob)")
    mask_replace: float = param(0.8, "share of chosen pieces replaced by [MASK] (each piece draws)")
    random_replace: float = param(
        0.1, f"share of chosen pieces replaced by a random token ({ORDINARY_RANDOM})"
    )
    max_predictions: int = param(0, "cap on chosen pieces per sequence (0: no cap)")

    def __post_init__(self) -> None:
        check_mlm(self.rate, self.mask_replace, self.random_replace, self.max_predictions)

    def choose(self, batch: Tokens, vocab: Vocab, gen: torch.Generator) -> Tensor:
        """(B, L) bool: every piece of the chosen words."""
        allowed = candidates(batch, vocab)
        starts = word_groups(allowed, batch.word_starts)
        return whole_words(
            allowed, starts, exact_budget(batch.lengths, self.rate, self.max_predictions), gen
        )

    def __call__(
        self, batch: Tokens, vocab: Vocab, gen: torch.Generator, *, with_origin: bool = False
    ) -> Corrupted:
        chosen = self.choose(batch, vocab, gen)
        return mlm_batch(
            batch,
            vocab,
            chosen,
            gen,
            self.mask_replace,
            self.random_replace,
            with_origin=with_origin,
        )


@register(
    "whole-word",
    arch="encoder",
    needs_words=True,
    aliases=("wwm", "bert-wwm"),
    paper="google-research/bert README 2019-05-31; Cui et al. 2019, arXiv 1906.08101",
)
def whole_word(**overrides: Any) -> WholeWordMasking:
    """BERT whole-word masking: whole words up to 15% of pieces; 80/10/10 drawn per piece.

    Words come from `Tokens.word_starts` (any tokenizer, not '##' strings). The budget is bert's,
    max(1, round(0.15 x pieces incl. [CLS]/[SEP])); a word that would overshoot it is skipped and
    shorter ones still fill it, as create_pretraining_data.py --do_whole_word_mask. Each piece of
    a chosen word draws its own fate (the README's choice; bert #910 calls it a bug).
    """
    return WholeWordMasking(**overrides)


# ------------------------------------------------------------------------------------- SpanBERT


@dataclass(frozen=True)
class SpanMasking:
    """Mask spans of whole words up to ceil(rate x length); one fate per span; SBO targets."""

    rate: float = param(0.15, "share of each block masked: ceil(rate x length), exact (mask_ratio)")
    geometric_p: float = param(
        0.2,
        "span length in words ~ Geometric(p) clipped to [span_lower, span_upper]; 0.2 is the "
        "published command and paper (the code's flag default is 0.3)",
    )
    span_lower: int = param(1, "shortest span, in words")
    span_upper: int = param(10, "longest span, in words")
    replacement: str = param(
        "span",
        "span: one 80/10/10 draw per merged span (published command); word_piece: one "
        "per token (the code's flag default)",
    )
    mask_replace: float = param(0.8, "share of masked spans written as [MASK]")
    random_replace: float = param(
        0.1,
        "share of masked spans written as random tokens, drawn from the unigram distribution "
        "of the batch's own tokens (the reference draws from the corpus stream)",
    )
    max_pair_targets: int = param(15, "span-boundary (SBO) targets per span: its first N tokens")

    def __post_init__(self) -> None:
        check_mlm(self.rate, self.mask_replace, self.random_replace, 0)
        if not 0.0 < self.geometric_p <= 1.0:
            raise ValueError(f"geometric_p must be in (0, 1], got {self.geometric_p}")
        if not 1 <= self.span_lower <= self.span_upper:
            raise ValueError("need 1 <= span_lower <= span_upper")
        if self.replacement not in REPLACEMENTS:
            raise ValueError(
                f"replacement must be one of {', '.join(REPLACEMENTS)}, got '{self.replacement}'"
            )
        if self.max_pair_targets < 1:
            raise ValueError("max_pair_targets must be >= 1")

    def model_facts(self, vocab: Vocab) -> ModelFacts:
        """The SBO head embeds a span offset 0 .. max_pair_targets - 1."""
        return ModelFacts(sbo_offsets=self.max_pair_targets)

    def spans(
        self, batch: Tokens, vocab: Vocab, gen: torch.Generator, allowed: Tensor | None = None
    ) -> AnchoredSpans:
        """The masked tokens, with the sampled length of every accepted span."""
        if allowed is None:
            allowed = candidates(batch, vocab)
        budget = torch.ceil(batch.lengths.double() * self.rate).long()  # no [CLS]/[SEP] here
        probs = truncated_geometric(self.geometric_p, self.span_lower, self.span_upper)
        return anchored_word_spans(
            allowed, word_groups(allowed, batch.word_starts), budget, probs, self.span_lower, gen
        )

    def __call__(
        self, batch: Tokens, vocab: Vocab, gen: torch.Generator, *, with_origin: bool = False
    ) -> Corrupted:
        allowed = candidates(batch, vocab)
        chosen = self.spans(batch, vocab, gen, allowed).chosen
        framed = torch.zeros(
            chosen.size(0), chosen.size(1) + 2, dtype=torch.bool, device=chosen.device
        )
        framed[:, 1:-1] = chosen  # (B, L + 2): the masked tokens at their input_ids index
        first, last = run_bounds(framed)  # merged spans = runs of masked tokens
        u = rand(chosen, gen)
        if self.replacement == "span":  # the draw at a span's first token decides it all
            u = u.gather(1, (first[:, 1:-1] - 1).clamp(min=0))
        random_ids = unigram_tokens(batch.ids, allowed, gen)
        extras = sbo_targets(
            framed, first, last, batch.lengths, self.max_pair_targets, batch.document_ids
        )
        return mlm_batch(
            batch,
            vocab,
            chosen,
            gen,
            self.mask_replace,
            self.random_replace,
            u=u,
            random_ids=random_ids,
            extras=extras,
            with_origin=with_origin,
        )


@register("spanbert", arch="encoder", needs_words=True, paper="Joshi et al. 2019, arXiv 1907.10529")
def spanbert(**overrides: Any) -> SpanMasking:
    """SpanBERT: spans of whole words (geometric, mean 3.8) to 15%, one fate per span, SBO.

    Defaults are the published pretraining command (geometric_p 0.2, span replacement, 15 pair
    targets), not the code's flag defaults. Budget ceil(0.15 x block) tokens, exact; the last
    span may stop mid-word there, as in the reference. Random replacements come from the batch's
    own tokens (the reference: its corpus stream). Extras span_left, span_right, span_offset
    index `input_ids` (see `Corrupted`).
    """
    return SpanMasking(**overrides)


# ------------------------------------------------------------------------------- ELECTRA masking


@dataclass(frozen=True)
class ElectraMasking:
    """The generator's input: k positions without replacement, 85% [MASK], 15% unchanged."""

    mask_prob: float = param(0.15, "share of real tokens (incl. [CLS]/[SEP]) chosen (mask_prob)")
    mask_replace: float = param(0.85, "share of chosen tokens replaced by [MASK]; the rest stay")
    max_seq_length: int = param(
        512,
        "the model's sequence length incl. [CLS]/[SEP] (or the batch's, if longer): caps "
        "the chosen tokens at N = int((mask_prob + 0.005) x it), the reference's "
        "max_predictions_per_seq (79 at 512; it only binds for short configurations)",
    )
    with_replacement: bool = param(
        False,
        "draw the k positions with replacement, as the reference does (~7% duplicates, "
        "electra #41); default: without, the fix #41 recommends",
    )

    def __post_init__(self) -> None:
        check_mlm(self.mask_prob, self.mask_replace, 0.0, 0)
        if self.max_seq_length < 1:
            raise ValueError("max_seq_length must be >= 1")

    def choose(self, batch: Tokens, vocab: Vocab, gen: torch.Generator) -> Tensor:
        """(B, L) bool: the positions the generator predicts."""
        allowed = candidates(batch, vocab)
        cap = int((self.mask_prob + 0.005) * max(self.max_seq_length, batch.ids.size(1) + 2))
        # max(1, min(N, round(#real x p))) as pretrain_helpers.mask, #real counting [CLS]/[SEP]
        k = round_half_even((batch.lengths + 2).double() * self.mask_prob).clamp(max=cap)
        k = k.clamp(min=1)
        if self.with_replacement:
            return draw_with_replacement(allowed, k, gen)
        return choose_k(allowed, k, gen)

    def __call__(
        self, batch: Tokens, vocab: Vocab, gen: torch.Generator, *, with_origin: bool = False
    ) -> Corrupted:
        chosen = self.choose(batch, vocab, gen)
        # no random replacement in ELECTRA's generator input: `ids` stand in for random ids
        return mlm_batch(
            batch,
            vocab,
            chosen,
            gen,
            self.mask_replace,
            0.0,
            random_ids=batch.ids,
            with_origin=with_origin,
        )


@register("electra", arch="encoder", paper="Clark et al. 2020, arXiv 2003.10555", heads=("rtd",))
def electra(**overrides: Any) -> ElectraMasking:
    """ELECTRA generator input: 15% of positions, 85% [MASK] / 15% unchanged, no random ids.

    k = max(1, min(N, round(0.15 x real tokens incl. [CLS]/[SEP]))) positions per sequence,
    drawn without replacement (the reference draws with replacement, ~7% duplicates; electra #41
    suggests this fix; `with_replacement=true` restores it). Labels are the generator's MLM
    targets; the trainer samples the generator and builds the discriminator's labels.
    """
    return ElectraMasking(**overrides)

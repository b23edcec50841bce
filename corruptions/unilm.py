"""UniLM (Dong et al. 2019, arXiv 1905.03197): one encoder, four language models by attention mask.

Every row becomes `[CLS] S1 [SEP] S2 [SEP]` (split at a sentence start, as NSP's true-next case)
and draws a mode: bidirectional (1/3), left-to-right (1/6), right-to-left (1/6) or seq2seq (1/3).
Masked positions are predicted cloze-style in every mode; only who may attend to whom changes.
Pre-training masks tokens of both segments in every mode, seq2seq included (paper §2.3: "we
randomly choose tokens in both segments"); masking only the target S2 and its final [SEP], so
that the model learns to stop, is the paper's fine-tuning recipe (§3), `seq2seq_masking=target`:

    row            a b c | d e
    input          [CLS] a b [MASK] [SEP] d [MASK] [SEP]     (bidirectional: c and e masked)
    seq2seq input  [CLS] a [MASK] c [SEP] d [MASK] [SEP]     (b in S1 and e in S2 masked)
      target only  [CLS] a b c [SEP] [MASK] e [MASK]         (d and the final [SEP] masked)
    seq2seq mask   rows [CLS]..first [SEP] see only those columns; target rows also see the
                   target columns up to themselves

Masking (paper): 15% of the candidate tokens, 80/10/10; a masked unit is one token 80% of the
time and a bigram or trigram 20% of the time. Budget per row min(max_pred, max(1, round(0.15 x
candidates))). The v1 pretraining code was never released (unilm #3, #295); unit selection follows
`_ngrams` (tiles visited in random order) rather than the fine-tuning loader's loop, and settles
the budget as that loop does: the unit that reaches it is taken whole and the overshoot dropped
from random masked positions. A row with one sentence is split at a random token so that every
mode has two segments.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ._ngrams import NgramChoice, choose_ngrams
from ._ops import ORDINARY_RANDOM, check_mlm, encoder_batch, positions, round_half_even
from ._pairs import (
    Pair,
    assemble,
    mlm_on_pair,
    pair_origin,
    pair_word_starts,
    sentences_of,
    source_ops,
    split_points,
)
from .registry import param, register
from .types import Corrupted, Op, Tokens, Vocab

BIDIRECTIONAL, LEFT_TO_RIGHT, RIGHT_TO_LEFT, SEQ2SEQ = 0, 1, 2, 3
MODES = ("bidirectional", "left-to-right", "right-to-left", "seq2seq")  # attention_mode codes 0..3
SEQ2SEQ_MASKINGS = ("both", "target")


def attention_mask_for(mode: Tensor, prefix_lengths: Tensor, attention_mask: Tensor) -> Tensor:
    """(B, S, S) bool, True where query i may attend to key j, per UniLM mode (paper §2.2-2.3).

    bidirectional: every key; left-to-right: j <= i; right-to-left: j >= i; seq2seq: every row
    sees the source columns j < prefix_lengths ([CLS] S1 [SEP]), target rows i >= prefix also see
    target columns j <= i, source rows never see the target. Padding columns are always False;
    padding rows see every real column (their outputs are never used, and a row with no allowed
    key would make softmax NaN).

    Args:
        mode: (B,) int64 attention_mode codes.
        prefix_lengths: (B,) int64, read for seq2seq rows only.
        attention_mask: (B, S) bool, real positions.
    """
    i = positions(attention_mask).squeeze(0).unsqueeze(1)  # (S, 1)
    j = i.T  # (1, S)
    m = mode.view(-1, 1, 1)
    prefix = prefix_lengths.view(-1, 1, 1)
    s2s = (j < prefix) | ((i >= prefix) & (j <= i))
    allowed = torch.where(m == SEQ2SEQ, s2s, torch.where(m == RIGHT_TO_LEFT, j >= i, j <= i))
    allowed = allowed | (m == BIDIRECTIONAL)
    keys = attention_mask.unsqueeze(1)  # (B, 1, S)
    return torch.where(attention_mask.unsqueeze(2), allowed & keys, keys)


@dataclass(frozen=True)
class UniLMMasking:
    """Per-row UniLM mode, `[CLS] S1 [SEP] S2 [SEP]`, cloze masking with uni/bi/tri-gram units."""

    mode_probs: tuple[float, ...] = param(
        (1 / 3, 1 / 6, 1 / 6, 1 / 3),
        "P(mode) per row for bidirectional, left-to-right, "
        "right-to-left, seq2seq (paper: 1/3, 1/6, 1/6, 1/3)",
    )
    rate: float = param(0.15, "share of the mode's candidate tokens masked")
    max_predictions: int = param(
        0, "cap on masked tokens per row (0: none; the fine-tuning code's default is 20)"
    )
    ngram_prob: float = param(
        0.2,
        "share of masked units that are n-grams of 2..ngram tokens "
        "rather than single tokens (paper: 20% bigram or trigram)",
    )
    ngram: int = param(3, "longest masked n-gram; its sizes 2..ngram are equally likely")
    whole_word: bool = param(False, "units count whole words (the loader's mask_whole_word)")
    mask_replace: float = param(0.8, "share of masked tokens replaced by [MASK]")
    random_replace: float = param(
        0.1, f"share of masked tokens replaced by a random token ({ORDINARY_RANDOM})"
    )
    seq2seq_masking: str = param(
        "both",
        "seq2seq rows: both = mask tokens of both segments, as every other mode (the paper's "
        "pre-training, §2.3); target = only the target and its final [SEP] (the fine-tuning "
        "recipe, §3)",
    )
    mode_segments: bool = param(
        False,
        "token_type_ids name the mode as the code's new_segment_ids: bidirectional 0/1, "
        "left-to-right 2, right-to-left 3 (our pick), seq2seq 4/5; false: 0/1 always",
    )

    def __post_init__(self) -> None:
        probs = self.mode_probs
        if len(probs) != len(MODES) or min(probs) < 0 or sum(probs) <= 0:
            raise ValueError(
                f"mode_probs needs {len(MODES)} non-negative weights, not all 0 "
                f"({', '.join(MODES)})"
            )
        check_mlm(self.rate, self.mask_replace, self.random_replace, self.max_predictions)
        if not 0.0 <= self.ngram_prob <= 1.0:
            raise ValueError(f"ngram_prob must be in [0, 1], got {self.ngram_prob}")
        if self.ngram < 1 or (self.ngram == 1 and self.ngram_prob > 0):
            raise ValueError("ngram must be >= 2 when ngram_prob > 0 (and >= 1 always)")
        if self.seq2seq_masking not in SEQ2SEQ_MASKINGS:
            raise ValueError(
                f"seq2seq_masking must be one of {', '.join(SEQ2SEQ_MASKINGS)}, "
                f"got '{self.seq2seq_masking}'"
            )

    def unit_probs(self) -> tuple[float, ...]:
        """P(unit has n tokens or words), n = 1..ngram."""
        if self.ngram == 1:
            return (1.0,)
        return (1 - self.ngram_prob, *([self.ngram_prob / (self.ngram - 1)] * (self.ngram - 1)))

    def choose(
        self, allowed: Tensor, words: Tensor | None, budget: Tensor, gen: torch.Generator
    ) -> NgramChoice:
        """The masked units: `budget` tokens per row in units of `unit_probs`, the unit that
        reaches the budget taken whole and the overshoot then dropped at random, as the loader
        does (a cut unit would bias the n-gram share down on short rows)."""
        return choose_ngrams(allowed, words, budget, self.unit_probs(), gen, overflow="random")

    def draw_modes(self, n_rows: int, gen: torch.Generator, device: torch.device) -> Tensor:
        """(B,) int64 attention_mode codes drawn with `mode_probs`."""
        probs = torch.tensor(self.mode_probs, dtype=torch.float64, device=device)
        cum = (probs / probs.sum()).cumsum(0)[:-1]
        u = torch.rand(n_rows, generator=gen, device=device, dtype=torch.float64)
        return (u.unsqueeze(1) >= cum).sum(1)

    def __call__(
        self, batch: Tokens, vocab: Vocab, gen: torch.Generator, *, with_origin: bool = False
    ) -> Corrupted:
        own = torch.arange(batch.ids.size(0), device=batch.ids.device)
        a_end = split_points(sentences_of(batch), batch.lengths, gen, split_single=True)
        mode = self.draw_modes(batch.ids.size(0), gen, batch.ids.device)
        pair = assemble(
            batch.ids,
            batch.lengths,
            (own, torch.zeros_like(a_end), a_end),
            (own, a_end, batch.lengths - a_end),
            vocab,
        )
        s2s = (mode == SEQ2SEQ).unsqueeze(1)
        allowed = pair.plain  # the content of both segments
        if self.seq2seq_masking == "target":
            final_sep = positions(pair.ids) == (pair.lengths - 1).unsqueeze(1)
            target = pair.token_type_ids.bool() & (allowed | final_sep)
            allowed = torch.where(s2s, target, allowed)
        budget = round_half_even(allowed.sum(1).double() * self.rate).clamp(min=1)
        if self.max_predictions:
            budget = budget.clamp(max=self.max_predictions)
        words = pair_word_starts(batch, pair, self.whole_word)
        chosen = self.choose(allowed, words, budget, gen).chosen
        input_ids, labels, ops = mlm_on_pair(
            pair,
            vocab,
            chosen,
            gen,
            self.mask_replace,
            self.random_replace,
        )
        source = s2s & pair.content & ~pair.token_type_ids.bool() & (ops == int(Op.KEEP))
        ops = ops.masked_fill(source, int(Op.CONTEXT))
        prefix = torch.where(
            mode == SEQ2SEQ, pair.first_len + 2, torch.where(mode == BIDIRECTIONAL, pair.lengths, 0)
        )
        extras = {
            "attention_mode": mode,
            "token_type_ids": self._types(pair, mode),
            "prefix_lengths": prefix,
        }
        origin = pair_origin(pair, batch.ids.size(1)) if with_origin else None
        ops = source_ops(pair, ops, batch)
        return encoder_batch(input_ids, pair.lengths, labels, ops, extras, origin)

    def _types(self, pair: Pair, mode: Tensor) -> Tensor:
        if not self.mode_segments:
            return pair.token_type_ids
        base = torch.tensor([0, 2, 3, 4], device=mode.device)[mode].unsqueeze(1)
        types = (
            torch.where((mode == LEFT_TO_RIGHT) | (mode == RIGHT_TO_LEFT), 0, 1).unsqueeze(1)
            * pair.token_type_ids
            + base
        )
        return types.masked_fill(~pair.real, 0)


@register("unilm", arch="encoder", paper="Dong et al. 2019, arXiv 1905.03197", needs_sentences=True)
def unilm(**overrides: Any) -> UniLMMasking:
    """UniLM: per-row bidirectional/left-to-right/right-to-left/seq2seq attention, cloze MLM.

    Modes 1/3, 1/6, 1/6, 1/3 (paper); 15% of the tokens of both segments masked in every mode,
    seq2seq too, as the paper's pre-training (`seq2seq_masking=target`: seq2seq rows mask only
    the target and its final [SEP], the fine-tuning recipe); 80% single tokens / 20% bi- or
    trigrams, 80/10/10. Extras: attention_mode,
    token_type_ids, prefix_lengths (seq2seq: [CLS] S1 [SEP]; bidirectional: the whole input;
    left-to-right and right-to-left: 0, attention_mode decides); `unilm.attention_mask_for` turns
    them into (B, S, S) masks. The paper adds NSP to bidirectional rows; that head is not built
    here (use `nsp` for it).
    """
    return UniLMMasking(**overrides)

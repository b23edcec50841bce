"""MASS: masked sequence-to-sequence pre-training (Song et al. 2019, arXiv 1905.02450).

One contiguous fragment of half the sentence is masked in the encoder input (80% [MASK], 10%
random, 10% unchanged); the decoder writes the fragment back, reading at each step the original
token just before the position it predicts:

    ids                  a  b  c  d  e  f             (framed length l = 8, m = round(4.0) = 4)
    input_ids      <s>   a  b  [M] [M] e  [M] </s>    (fragment c d e f; e kept unchanged)
    decoder_input_ids          b   c   d  e
    labels                     c   d   e  f
    decoder_position_ids       2   3   4  5           (positions of b c d e in input_ids)

Follows MASS-unsupNMT `restricted_mask_sent` (microsoft/MASS), sentence-level examples:
* Framing: the reference stores `</s> w1 … wn </s>`; the zoo uses BART's `<s> x </s>` (vocab.bos,
  vocab.eos). Position 0 is never masked; like the reference's trailing `</s>`, the closing `</s>`
  belongs to the sentence and may end the fragment (it is then masked and predicted).
* Fragment length m = round(0.5 × l) with l = the framed length (n + 2), rounded half to even,
  per row. The reference takes l from the PADDED batch and the placement range from the first
  sentence (MASS #64), which misplaces fragments in mixed-length batches.
* Placement: 20% at the start (position 1), 20% at the end (reaching position l - 1), 60% start
  uniform on 1 .. l - m (hard-coded in `shuffle_segments`), so P(start = 1) = 0.2 + 0.6/(l - m).
* Decoder input: the original token before each fragment position (the code; MASS #19, #96);
  `decoder_start=mask` gives the paper's [MASK] at the first step instead.
* `decoder_position_ids` (extras): the true position, in `input_ids`, of each decoder input
  token (fragment position - 1, as the code passes `positions = pos - 1`); 0 at padding.
* Special ids inside the text stay as they are and carry no loss, but keep their place in the
  fragment (it stays contiguous).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ._ops import (
    ORDINARY_RANDOM,
    check_replacement,
    frame,
    length_mask,
    origin_of,
    positions,
    rand,
    replace_selected,
    round_half_even,
)
from .registry import param, register
from .types import IGNORE, Corrupted, Op, Tokens, Vocab

DECODER_STARTS = ("previous", "mask")


@dataclass(frozen=True)
class FragmentMasking:
    """Mask one contiguous fragment per sentence; the decoder predicts it."""

    fragment: float = param(
        0.5, "share of the framed sentence (<s> x </s>) masked as one fragment (word_mass)"
    )
    start_prob: float = param(0.2, "probability that the fragment starts right after <s>")
    end_prob: float = param(0.2, "probability that the fragment ends at the closing </s>")
    mask_replace: float = param(0.8, "share of fragment tokens replaced by [MASK] (word_mask)")
    random_replace: float = param(
        0.1, f"share of fragment tokens replaced by a random token ({ORDINARY_RANDOM})"
    )
    decoder_start: str = param(
        "previous",
        "first decoder input: previous = the token before the fragment (MASS code); "
        "mask = [MASK] (the paper)",
    )

    def __post_init__(self) -> None:
        if not 0.0 < self.fragment < 1.0:
            raise ValueError(f"fragment must be in (0, 1), got {self.fragment}")
        if self.start_prob < 0 or self.end_prob < 0 or self.start_prob + self.end_prob > 1.0:
            raise ValueError("start_prob and end_prob must be >= 0 with a sum <= 1")
        check_replacement(self.mask_replace, self.random_replace)
        if self.decoder_start not in DECODER_STARTS:
            raise ValueError(
                f"decoder_start must be one of {', '.join(DECODER_STARTS)}, "
                f"got '{self.decoder_start}'"
            )

    def place(self, lengths: Tensor, gen: torch.Generator) -> tuple[Tensor, Tensor]:
        """(start, m) per row, in positions of the framed row `<s> x </s>` of length + 2."""
        framed = lengths + 2
        m = round_half_even(framed.double() * self.fragment).clamp(1)
        m = torch.minimum(m, framed - 1)  # position 0 stays visible
        n_starts = framed - m  # the fragment may start at 1 .. l - m
        u = rand(lengths, gen)
        anywhere = 1 + (rand(lengths, gen) * n_starts).long().clamp(max=n_starts - 1)
        start = torch.where(
            u >= 1.0 - self.start_prob,
            1,
            torch.where(u >= 1.0 - self.start_prob - self.end_prob, n_starts, anywhere),
        )
        return start, m

    def __call__(
        self, batch: Tokens, vocab: Vocab, gen: torch.Generator, *, with_origin: bool = False
    ) -> Corrupted:
        lengths = batch.lengths
        ids = frame(batch.ids, lengths, vocab.pad, vocab.bos, vocab.eos)  # (B, L + 2)
        start, m = self.place(lengths, gen)
        at = positions(ids)
        inside = (at >= start.unsqueeze(1)) & (at < (start + m).unsqueeze(1))
        text = (at >= 1) & (at <= lengths.unsqueeze(1))
        scored = inside & ~(text & vocab.is_special(ids))  # specials in the text carry no loss
        input_ids, ops = replace_selected(
            ids,
            scored,
            vocab,
            gen,
            self.mask_replace,
            self.random_replace,
        )

        width = int(m.max()) if m.numel() else 0
        step = torch.arange(width, device=ids.device).unsqueeze(0)
        real = step < m.unsqueeze(1)  # (B, T)
        where = (start.unsqueeze(1) + step).clamp(max=ids.size(1) - 1)  # fragment positions
        labels = ids.gather(1, where).masked_fill(~scored.gather(1, where) | ~real, IGNORE)
        decoder_input_ids = ids.gather(1, where - 1)
        if self.decoder_start == "mask":
            decoder_input_ids[:, 0] = vocab.mask
        return Corrupted(
            input_ids=input_ids,
            attention_mask=length_mask(lengths + 2, ids.size(1)),
            labels=labels,
            decoder_input_ids=decoder_input_ids.masked_fill(~real, vocab.pad),
            ops=ops[:, 1 : batch.ids.size(1) + 1].masked_fill(~batch.real, int(Op.KEEP)),
            extras={"decoder_position_ids": (where - 1).masked_fill(~real, 0)},
            origin=origin_of(lengths, ids.size(1), lead=1) if with_origin else None,
        )


@register("mass", arch="encoder-decoder", paper="Song et al. 2019, arXiv 1905.02450")
def mass(**overrides: Any) -> FragmentMasking:
    """MASS: half of each sentence masked as one fragment that the decoder reconstructs.

    Fragment of round(0.5 x length) tokens of `<s> x </s>` (never <s>), placed at the start 20%,
    at the end 20%, anywhere 60%; 80/10/10 inside it; the decoder reads the token before each
    fragment position, as MASS-unsupNMT does. Meant for sentence-level rows.
    """
    return FragmentMasking(**overrides)

"""Causal and prefix language modelling (GPT: Radford et al. 2019, Brown et al. 2020, arXiv
2005.14165; prefix LM: Raffel et al. 2020, arXiv 1910.10683 §3.2).

Causal LM predicts every next token; labels are the inputs, and the model shifts them (label t is
predicted at position t - 1, the Hugging Face convention). A prefix LM splits each row at s: the
first s tokens are a bidirectional prefix without loss, the rest is predicted causally:

    ids       a  b  c  d  e
    clm       input  a  b  c  d  e  </s>     labels  -  b  c  d  e  </s>
    prefix    input  a  b  c  d  e  </s>     labels  -  -  c  d  e  </s>   (s = 2: a b see each
                                                                           other, prefix_lengths 2)

Conventions (T5's `pack_prefix_lm_decoder_only` restated for unshifted labels): input positions
< s attend bidirectionally among themselves (T5: positions <= s of its right-shifted inputs);
labels at positions >= s carry loss (T5: loss weights at positions >= s), so label s is predicted
from the last prefix position, which sees the whole prefix. s is uniform on [1, n - 1] for a row of
n content tokens (n = 1: s = 1, only the EOS is predicted); loss positions = n - s, plus one for
the EOS.

EOS: the zoo appends one `</s>` after each row's content by default (§4.8 recommends an EOS per
document; rows never cross documents, so a row cut from the middle of a long document gets one
too) and predicts it. Label 0 is IGNORE: no position predicts it, so counting labels counts loss
positions. Special ids inside content are never predicted (IGNORE), unlike Hugging Face's
collator, which only skips padding.

Encoder-decoder prefix LM (T5's `prefix_lm`, UL2's S-denoiser; `_t5.prefix_seq2seq`): the
prefix length k is uniform on [max(1, round((1 - 2r)(n - 1))), n - 1] for suffix share r (0.5:
uniform on [1, n - 1]; n = 1 gives k = 0); inputs = prefix + EOS, targets = suffix + EOS, decoder
start = pad.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor

from ._ops import encoder_batch, frame, origin_of, positions
from ._t5 import prefix_split
from .registry import param, register
from .types import IGNORE, Corrupted, Op, Tokens, Vocab


@dataclass(frozen=True)
class CausalLM:
    """Predict every next token; labels = inputs (the model shifts)."""

    append_eos: bool = param(
        True,
        "append </s> to each row and predict it (one EOS per document, §4.8's advice; "
        "run_clm.py appends none)",
    )

    def __call__(
        self, batch: Tokens, vocab: Vocab, gen: torch.Generator, *, with_origin: bool = False
    ) -> Corrupted:
        ids, lengths, predicted = lm_rows(batch, vocab, self.append_eos)
        predicted[:, 0] = False  # nothing comes before the first token
        return lm_batch(batch, ids, lengths, predicted, None, with_origin)


@dataclass(frozen=True)
class PrefixLM:
    """Split each row at a uniform s; bidirectional prefix, causal suffix, loss on the suffix."""

    append_eos: bool = param(True, "append </s> to each row and predict it, as clm does")

    def __call__(
        self, batch: Tokens, vocab: Vocab, gen: torch.Generator, *, with_origin: bool = False
    ) -> Corrupted:
        split = prefix_split(batch.lengths, 0.5, gen)
        split = torch.maximum(split, batch.lengths.clamp(max=1))  # n = 1: the token is the prefix
        ids, lengths, predicted = lm_rows(batch, vocab, self.append_eos)
        in_prefix = positions(ids) < split.unsqueeze(1)
        out = lm_batch(
            batch, ids, lengths, predicted & ~in_prefix, predicted & in_prefix, with_origin
        )
        return replace(out, extras={"prefix_lengths": split})


def lm_rows(batch: Tokens, vocab: Vocab, append_eos: bool) -> tuple[Tensor, Tensor, Tensor]:
    """(ids, lengths, predictable): the rows with an optional EOS after the content, and where a
    label may be set (real, not a special id in content; the appended EOS is predictable)."""
    ids, lengths = batch.ids, batch.lengths
    predicted = batch.real & ~vocab.is_special(ids)
    if append_eos:
        ids = frame(ids, lengths, vocab.pad, None, vocab.eos)
        predicted = frame(predicted, lengths, False, None, True)
        lengths = lengths + 1
    return ids, lengths, predicted


def lm_batch(
    batch: Tokens,
    ids: Tensor,
    lengths: Tensor,
    predicted: Tensor,
    context: Tensor | None,
    with_origin: bool = False,
) -> Corrupted:
    """A decoder `Corrupted`: labels = ids where `predicted`, ops on the source positions;
    the content keeps its place, so origin is the identity (-1 at the EOS appended)."""
    width = batch.ids.size(1)
    real = batch.real
    ops = (predicted[:, :width] & real).to(torch.int8) * int(Op.PREDICT)
    if context is not None:  # disjoint from `predicted`
        ops += (context[:, :width] & real).to(torch.int8) * int(Op.CONTEXT)
    origin = origin_of(batch.lengths, ids.size(1)) if with_origin else None
    return encoder_batch(ids, lengths, ids.masked_fill(~predicted, IGNORE), ops, origin=origin)


@register(
    "clm",
    arch="decoder",
    paper="Radford et al. 2019 (GPT-2); Brown et al. 2020, arXiv 2005.14165",
    aliases=("gpt", "causal-lm"),
    one_document_per_row=True,
)
def clm(**overrides: Any) -> CausalLM:
    """GPT causal language modelling: predict every next token, an EOS appended per row.

    labels = input_ids (the model shifts them by one); n - 1 loss positions per row of n tokens,
    plus the appended </s>. Causal attention over the whole row.
    """
    return CausalLM(**overrides)


@register(
    "prefix-lm",
    arch="decoder",
    paper="Raffel et al. 2020, arXiv 1910.10683",
    aliases=("prefixlm",),
    one_document_per_row=True,
)
def prefix_lm(**overrides: Any) -> PrefixLM:
    """Prefix LM (decoder-only): split uniform on [1, n-1], bidirectional prefix, loss on the rest.

    extras['prefix_lengths'] = s: input positions < s attend to each other both ways, the rest
    causally; labels at positions >= s carry loss (T5's pack_prefix_lm_decoder_only).
    """
    return PrefixLM(**overrides)

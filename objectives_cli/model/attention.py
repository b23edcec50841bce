"""Attention for every model shape: masks built from the objective's extras, SDPA, rotary.

A `Mask` is what one `scaled_dot_product_attention` call gets. The cheap cases stay cheap: a
causal decoder passes `is_causal=True` and no tensor, and keys that are all real pass no mask at
all (as Hugging Face's SDPA path does), so both can run on the flash kernels on a GPU. Only
objectives that need a shape SDPA cannot express (prefix LM, UniLM modes, XLNet's query stream,
packed documents) build a dense (B, 1, S, S) bool mask.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class Mask(NamedTuple):
    """How one attention call may look: a bool mask (True = may attend) or SDPA's causal path."""

    allowed: Tensor | None  # (B, 1, S, S) or (B, 1, 1, S) bool
    causal: bool = False  # SDPA is_causal fast path (allowed is None)
    empty: Tensor | None = None  # (B, 1, S, 1) rows with nothing to attend to: output zeroed


def key_padding(attention_mask: Tensor) -> Mask:
    """Every query may see every real key (bidirectional encoder, cross-attention).

    When every key is real (packed rows, the benchmark's full rows) no mask is passed, so SDPA
    may pick its flash kernel; this costs one device sync per forward pass, as in transformers.
    """
    if bool(attention_mask.all()):
        return Mask(None)
    return Mask(attention_mask[:, None, None, :])


def _custom(allowed: Tensor) -> Mask:
    """Wrap a (B, S, S) mask; rows that may see nothing attend uniformly and are zeroed after."""
    empty = ~allowed.any(-1, keepdim=True)
    return Mask((allowed | empty)[:, None], False, empty[:, None])


def self_attention_mask(attention_mask: Tensor, extras: Mapping[str, Tensor], causal: bool) -> Mask:
    """The self-attention of an encoder (`causal=False`) or decoder, from the objective's extras.

    prefix_lengths: positions < p attend among themselves, the rest causally (prefix LM).
    attention_mode (UniLM): 0 bidirectional, 1 left-to-right, 2 right-to-left, 3 seq2seq (prefix).
    document_ids: attention never crosses a packed document boundary (block-diagonal).
    Padding keys are never attended. Right padding keeps the causal fast path valid.
    """
    doc = extras.get("document_ids")
    prefix = extras.get("prefix_lengths")
    mode = extras.get("attention_mode")
    if doc is None and prefix is None and mode is None:
        return Mask(None, True) if causal else key_padding(attention_mask)
    n = attention_mask.size(1)
    i = torch.arange(n, device=attention_mask.device)[:, None]
    j = torch.arange(n, device=attention_mask.device)[None, :]
    lower, upper = (j <= i).unsqueeze(0), (j >= i).unsqueeze(0)  # (1, S, S)
    base = lower if causal else torch.ones_like(lower)
    if prefix is not None:
        with_prefix = lower | (j.unsqueeze(0) < prefix[:, None, None])  # prefix block + causal rest
        base = (
            with_prefix
            if mode is None
            else torch.where(mode[:, None, None] == 3, with_prefix, base)
        )
    if mode is not None:
        m = mode[:, None, None]
        base = torch.where(
            m == 0, True, torch.where(m == 1, lower, torch.where(m == 2, upper, base))
        )
    allowed = base & attention_mask[:, None, :]
    if doc is not None:
        allowed = allowed & (doc[:, :, None] == doc[:, None, :])
    return _custom(allowed)


def two_stream_masks(
    attention_mask: Tensor, rank: Tensor, labels: Tensor, doc: Tensor | None
) -> tuple[Mask, Mask]:
    """XLNet (content, query) masks from `perm_rank`: the query stream never sees its own token,
    the content stream re-opens the diagonal (zihangdai/xlnet `two_stream_rel_attn`)."""
    from corruptions.permutation import perm_mask_from_rank

    query = ~perm_mask_from_rank(rank, labels) & attention_mask[:, None, :]
    if doc is not None:
        query = query & (doc[:, :, None] == doc[:, None, :])
    eye = torch.eye(rank.size(1), dtype=torch.bool, device=rank.device)
    return _custom(query | eye), _custom(query)


def position_ids(input_ids: Tensor, doc: Tensor | None) -> Tensor:
    """(B, S) positions, restarting at every packed document so each looks like a fresh row."""
    n = input_ids.size(1)
    pos = torch.arange(n, device=input_ids.device).expand_as(input_ids)
    if doc is None:
        return pos
    starts = torch.ones_like(doc, dtype=torch.bool)
    starts[:, 1:] = doc[:, 1:] != doc[:, :-1]
    first = torch.where(starts, pos, 0).cummax(1).values
    return pos - first


def attend(q: Tensor, k: Tensor, v: Tensor, mask: Mask, dropout: float) -> Tensor:
    out = F.scaled_dot_product_attention(
        q, k, v, attn_mask=mask.allowed, dropout_p=dropout, is_causal=mask.causal
    )
    return out if mask.empty is None else out.masked_fill(mask.empty, 0.0)


class Rotary(nn.Module):
    """Rotary position embedding (Su et al. 2021, arXiv 2104.09864) for one head width."""

    def __init__(self, head_dim: int, base: float = 10000.0) -> None:
        super().__init__()
        inv = 1.0 / base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
        self.register_buffer("inv_freq", inv, persistent=False)

    def forward(self, positions: Tensor) -> tuple[Tensor, Tensor]:
        angles = positions[:, None, :, None].float() * self.inv_freq  # (B, 1, S, hd/2)
        angles = torch.cat([angles, angles], dim=-1)
        return angles.cos(), angles.sin()


def rotate(x: Tensor, rope: tuple[Tensor, Tensor] | None) -> Tensor:
    if rope is None:
        return x
    cos, sin = rope
    half = x.size(-1) // 2
    turned = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return (x * cos + turned * sin).to(x.dtype)

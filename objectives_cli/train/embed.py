"""Contextual embeddings of a trained run: one vector per text, or one per token (ELMo/BERT-style
features for a downstream model or a probe).

Each text is tokenised and framed as the objective frames its inputs ([CLS] x [SEP] for BERT),
run through the model's own stack (the encoder of an encoder or encoder-decoder, the decoder of
a decoder; ELECTRA's discriminator; XLNet's content stream) in batches without gradients, and
read at one layer:

    layer   last (default): the final states after the last LayerNorm, what the heads read;
            K: the residual stream after block K (1 = the first block); mean: the mean of
            blocks 1..L
    pool    cls: the first token (BERT's [CLS]); last: the last real token (GPT); mean: the
            mean over the text's tokens, framing included; none: every token's vector

The defaults follow each architecture's paper: cls for encoders, last for decoders, mean of the
encoder states for encoder-decoders. A prefix LM reads the whole text as its bidirectional
prefix. Texts longer than the model's positions are cut (the count is reported).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from corruptions import IGNORE, Corrupted, UsageError

from .inference import LoadedRun

POOLS = ("cls", "mean", "last", "none")
DEFAULT_POOL = {"encoder": "cls", "decoder": "last", "encoder-decoder": "mean"}


@dataclass(frozen=True)
class Embedded:
    """The embedding of one text."""

    index: int  # the text's position in the input
    ids: list[int]  # the token ids the model read, framing included
    vector: Tensor  # (D,) pooled, or (T, D) per token (pool "none"); float32 on the CPU
    cut: bool  # the text was longer than the model reads and was cut


def check_options(run: LoadedRun, pool: str | None, layer: str) -> tuple[str, int | None]:
    """(pool, block index or None for 'last', -1 for 'mean'), checked against the run."""
    pool = pool or DEFAULT_POOL[run.model.cfg.arch]
    if pool not in POOLS:
        raise UsageError(f"unknown pooling '{pool}'", f"use one of: {', '.join(POOLS)}")
    blocks = len(stack_of(run).blocks)
    if layer == "last":
        return pool, None
    if layer == "mean":
        return pool, -1
    if not layer.isdigit() or not 1 <= int(layer) <= blocks:
        raise UsageError(f"unknown layer '{layer}'", f"use last, mean or a block 1..{blocks}")
    return pool, int(layer)


def stack_of(run: LoadedRun) -> Any:
    model = run.model
    return model.decoder if model.cfg.arch == "decoder" else model.encoder


def embed_texts(
    run: LoadedRun,
    texts: Sequence[str],
    pool: str | None = None,
    layer: str = "last",
    batch_size: int = 32,
) -> Iterator[Embedded]:
    """The embeddings of `texts`, in order, computed `batch_size` texts at a time."""
    pool, block = check_options(run, pool, layer)
    for start in range(0, len(texts), batch_size):
        framed = [frame(run, text) for text in texts[start : start + batch_size]]
        states, mask = hidden_states(run, [ids for ids, _ in framed], block)
        for i, ((ids, cut), h, m) in enumerate(zip(framed, states, mask, strict=True)):
            n = int(m.sum())
            yield Embedded(start + i, ids, pooled(h[:n], pool).float().cpu(), cut)


def frame(run: LoadedRun, text: str) -> tuple[list[int], bool]:
    """The framed ids of `text`, its content cut to fit the model; whether it was cut."""
    prefix, suffix = run.info.frame_prefix, run.info.frame_suffix
    ids = run.tok.encode(text, add_special_tokens=False).ids
    room = run.model.cfg.max_len - len(prefix) - len(suffix)
    return [*prefix, *ids[:room], *suffix], len(ids) > room


def pooled(h: Tensor, pool: str) -> Tensor:
    """(T, D) states of one text -> its vector (or all of them, for 'none')."""
    if pool == "cls":
        return h[0]
    if pool == "last":
        return h[-1]
    if pool == "mean":
        return h.mean(0)
    return h


@torch.no_grad()
def hidden_states(
    run: LoadedRun, rows: list[list[int]], block: int | None
) -> tuple[Tensor, Tensor]:
    """(B, S, D) states of the chosen layer for right-padded `rows`, and the (B, S) real mask."""
    model, device = run.model, run.device
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), run.vocab.pad, dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row)
    ids = ids.to(device)
    mask = ids.new_zeros(ids.shape, dtype=torch.bool)
    for i, row in enumerate(rows):
        mask[i, : len(row)] = True
    extras: dict[str, Tensor] = {}
    if model.cfg.token_types:  # one segment, as a single sentence is
        extras["token_type_ids"] = torch.zeros_like(ids)
    if run.info.prefix:  # a prefix LM reads the text as its (bidirectional) prefix
        extras["prefix_lengths"] = mask.sum(1)
    batch = Corrupted(ids, mask, torch.full_like(ids, IGNORE), extras=extras)
    captured: list[Tensor] = []
    hooks = [
        b.register_forward_hook(lambda m, i, out: captured.append(out[0]))
        for b in stack_of(run).blocks
    ]
    try:
        if model.cfg.arch == "decoder":
            last = model.run_decoder(batch)
        elif model.cfg.arch == "encoder":
            last, _ = model.run_encoder(batch)
        else:
            last, _ = model.encode(batch)
    finally:
        for hook in hooks:
            hook.remove()
    if block is None:
        return last, mask
    if block == -1:
        return torch.stack(captured).mean(0), mask
    return captured[block - 1], mask

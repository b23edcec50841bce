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


def check_options(
    run: LoadedRun, pool: str | None, layer: str, decoder: bool = False
) -> tuple[str, int | None]:
    """(pool, block index or None for 'last', -1 for 'mean'), checked against the run (the
    decoder's blocks with `decoder`)."""
    pool = pool or DEFAULT_POOL[run.model.cfg.arch]
    if pool not in POOLS:
        raise UsageError(f"unknown pooling '{pool}'", f"use one of: {', '.join(POOLS)}")
    blocks = len(stack_of(run, decoder).blocks)
    if layer == "last":
        return pool, None
    if layer == "mean":
        return pool, -1
    if not layer.isdigit() or not 1 <= int(layer) <= blocks:
        raise UsageError(f"unknown layer '{layer}'", f"use last, mean or a block 1..{blocks}")
    return pool, int(layer)


def stack_of(run: LoadedRun, decoder: bool = False) -> Any:
    """The stack whose states are read: the decoder of a decoder (or, with `decoder`, of an
    encoder-decoder), else the encoder."""
    model = run.model
    return model.decoder if decoder or model.cfg.arch == "decoder" else model.encoder


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
    run: LoadedRun,
    rows: list[list[int]],
    block: int | None,
    segments: list[list[int]] | None = None,
    decoder: bool = False,
) -> tuple[Tensor, Tensor]:
    """`layer_states` without gradients (embeddings and probes)."""
    return layer_states(run, rows, block, segments, decoder)


def layer_states(
    run: LoadedRun,
    rows: list[list[int]],
    block: int | None,
    segments: list[list[int]] | None = None,
    decoder: bool = False,
) -> tuple[Tensor, Tensor]:
    """(B, S, D) states of the chosen layer for right-padded `rows`, and the (B, S) real mask.

    `segments`: each row's token types (0 = sentence A, 1 = B), used where the model has
    segment embeddings. `decoder`: an encoder-decoder's decoder states, the decoder fed the row
    after its start token while reading the encoder's states of the row (BART's
    classification recipe); the mask then covers the start token too. Fine-tuning calls this
    with gradients.
    """
    model, device = run.model, run.device
    lengths = torch.tensor([len(r) for r in rows])
    ids = pad_rows(rows, run.vocab.pad).to(device)
    mask = (torch.arange(ids.size(1)) < lengths[:, None]).to(device)
    extras: dict[str, Tensor] = {}
    if model.cfg.token_types:  # one segment for a single text, two for a pair
        extras["token_type_ids"] = (
            torch.zeros_like(ids) if segments is None else pad_rows(segments, 0).to(device)
        )
    if run.info.prefix:  # a prefix LM reads the text as its (bidirectional) prefix
        extras["prefix_lengths"] = mask.sum(1)
    batch = Corrupted(ids, mask, torch.full_like(ids, IGNORE), extras=extras)
    captured: list[Tensor] = []
    hooks = [
        b.register_forward_hook(lambda m, i, out: captured.append(out[0]))
        for b in (stack_of(run, decoder).blocks if block is not None else ())
    ]
    try:
        if model.cfg.arch == "decoder":
            last = model.run_decoder(batch)
        elif model.cfg.arch == "encoder":
            last, _ = model.run_encoder(batch)
        elif decoder:
            start = run.info.decoder_start if run.info.decoder_start is not None else run.vocab.pad
            fed = torch.cat([ids.new_full((len(rows), 1), start), ids], 1)
            last = model.decode(fed, *model.encode(batch))
            mask = torch.cat([mask[:, :1], mask], 1)
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


def pad_rows(rows: list[list[int]], pad: int) -> Tensor:
    """(B, longest) int64: the rows left-aligned, the rest `pad`."""
    width = max(len(r) for r in rows)
    return torch.tensor([[*r, *[pad] * (width - len(r))] for r in rows], dtype=torch.long)

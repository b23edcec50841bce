"""What `fill` writes for decoders and encoder-decoders: a continuation, or the target of a
corrupted input, decoded greedily, by sampling or by beam search (`decoding.py`).

An encoder-decoder is fed as in training (the decoder inputs the probe found before the first
target, UL2's paradigm token, MASS's decoder positions): T5 spans are spliced back behind their
sentinels, BART's target is the text itself, MASS fills each [MASK] run in place; a decoder
continues the text (a prefix LM reads it as its bidirectional prefix).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from corruptions import IGNORE, Corrupted, NotEnoughSentinels, UsageError, create, model_facts

from .decoding import Decoding, Step, search
from .inference import LoadedRun, as_batch, decode, encode_ids, encode_text

DEFAULT_NEW = 40  # tokens a continuation (or, beyond the input's length, a target) may take


@torch.no_grad()
def generate(
    run: LoadedRun, text: str, max_new: int | None = None, how: Decoding | None = None
) -> dict[str, Any]:
    """Seq2seq: the target for a corrupted input; decoder: a continuation.

    `max_new` bounds the tokens written: by default 40 for a continuation, and the input's
    length + 40 for a seq2seq target (BART's rewrites the whole input). MASS writes as many
    tokens as each fragment has masks.
    """
    how = how or Decoding()
    if run.info.arch == "decoder":
        return continue_text(run, text, max_new or DEFAULT_NEW, how)
    if run.model.cfg.cross_hide >= 0:  # set for objectives that place decoder tokens (MASS)
        return fill_fragments(run, text, how)
    return reconstruct(run, text, max_new, how)


def decoder_step(run: LoadedRun, prompt: int) -> Step:
    """Next-token logits of a decoder for rows that share a prompt of `prompt` tokens."""
    model = run.model

    def step(ids: Tensor) -> Tensor:
        ids = ids.to(run.device)
        extras = {}
        if run.info.prefix:  # a prefix LM sees its prompt both ways
            extras["prefix_lengths"] = torch.full((ids.size(0),), prompt, device=run.device)
        real = torch.ones_like(ids, dtype=torch.bool)
        batch = Corrupted(ids, real, torch.full_like(ids, IGNORE), extras=extras)
        return model.lm_logits(model.run_decoder(batch)[:, -1]).cpu()

    return step


def seq2seq_step(run: LoadedRun, source: list[int], first_position: int | None = None) -> Step:
    """Next-token logits of the decoder for rows that all read `source`; `first_position`: the
    decoder's positions run from it (MASS) instead of from 0."""
    model, device = run.model, run.device
    memory, mask = model.encode(as_batch(source, device))

    def step(ids: Tensor) -> Tensor:
        ids = ids.to(device)
        n = ids.size(0)
        positions = None
        if first_position is not None:
            positions = torch.arange(first_position, first_position + ids.size(1), device=device)
            positions = positions.clamp(min=0).unsqueeze(0).expand(n, -1)
        allowed = None if mask.allowed is None else mask.allowed.expand(n, *mask.allowed.shape[1:])
        h = model.decode(ids, memory.expand(n, -1, -1), mask._replace(allowed=allowed), positions)
        return model.lm_logits(h[:, -1]).cpu()

    return step


def continue_text(run: LoadedRun, text: str, max_new: int, how: Decoding) -> dict[str, Any]:
    """Decoder: a continuation of `text`."""
    ids = [*run.info.frame_prefix, *encode_text(run, text, frame=False)]
    room = max(0, min(max_new, run.model.cfg.max_len - len(ids)))
    written = strip_eos(
        search(decoder_step(run, len(ids)), ids, [], room, run.vocab.eos, how), run.vocab.eos
    )
    return {
        "kind": "continuation",
        "input": text,
        "generated": decode(run, written),
        "output": decode(run, [*ids, *written]),
    }


def reconstruct(run: LoadedRun, text: str, max_new: int | None, how: Decoding) -> dict[str, Any]:
    """Encoder-decoder: encode the corrupted text as the objective frames it, decode its target
    after the probed decoder prefix, and put the text back together.

    T5-style targets are spliced into the input behind their sentinels; UL2's S mode (text with
    nothing to fill) continues the text; any other target (BART) is the text itself.
    """
    vocab = run.vocab
    content = as_marked(run, run.tok.encode(text, add_special_tokens=False).ids)
    lead, content, continuation = paradigm(run, content)
    spans = any(t in vocab.sentinels or t == vocab.mask for t in content)
    if run.info.sentinels and not spans and not continuation:
        raise UsageError(
            "the text has no span to fill",
            'mark each with [MASK] or a sentinel, e.g. "The cat <extra_id_0> the mat ."',
        )
    source = encode_ids(run, [*lead, *content])
    start = run.info.decoder_prefix or [
        run.info.decoder_start if run.info.decoder_start is not None else vocab.pad
    ]
    limit = min(max_new or len(source) + DEFAULT_NEW, run.model.cfg.max_len - len(start) + 1)
    tokens = search(seq2seq_step(run, source), start[:1], start[1:], limit, vocab.eos, how)
    written = strip_eos(tokens[len(start) - 1 :], vocab.eos)
    if continuation:
        output = [*content, *written]
    elif run.info.sentinels:
        output = splice(content, written, vocab.sentinels)
    else:
        output = written
    return {
        "kind": "seq2seq",
        "input": text,
        "generated": decode(run, written),
        "output": decode(run, output),
    }


def fill_fragments(run: LoadedRun, text: str, how: Decoding) -> dict[str, Any]:
    """MASS: each run of [MASK] is a fragment that the decoder writes back in place, fed as in
    training: first the token before the fragment (or [MASK], with decoder_start=mask) at that
    token's position, then each written token at its own position (`decoder_position_ids`)."""
    vocab, info = run.vocab, run.info
    content = as_marked(run, run.tok.encode(text, add_special_tokens=False).ids)
    # MASS's sentence is <s> x </s>; the probe misses the </s> (the fragment may mask it)
    ids = [*info.frame_prefix, *content, vocab.eos][: run.model.cfg.max_len]
    fragments = mask_runs(ids, vocab.mask)
    if not fragments:
        raise UsageError(
            "the text has no [MASK] to fill",
            'MASS writes back a fragment of one [MASK] per token, e.g. "The cat [MASK] [MASK] '
            'the mat ."',
        )
    fixed = info.decoder_prefix[0] if info.decoder_prefix else None
    if info.decoder_prefix is None and info.decoder_start == vocab.mask:  # older runs
        fixed = vocab.mask
    out, dropped, written = list(ids), set(), []
    for start, end in fragments:
        first = fixed if fixed is not None else (ids[start - 1] if start > 0 else vocab.bos)
        step = seq2seq_step(run, ids, first_position=start - 1)
        tokens = search(step, [first], [], end - start, vocab.eos, how)
        out[start : start + len(tokens)] = tokens
        if tokens and tokens[-1] == vocab.eos:  # the sentence ended inside the fragment
            dropped.update(range(start + len(tokens) - 1, end))
        written.append(decode(run, strip_eos(tokens, vocab.eos)))
    text_at = range(len(info.frame_prefix), min(len(info.frame_prefix) + len(content), len(ids)))
    return {
        "kind": "seq2seq",
        "input": text,
        "generated": " | ".join(written),
        "fragments": written,
        "output": decode(run, [out[i] for i in text_at if i not in dropped]),
    }


def as_marked(run: LoadedRun, ids: list[int]) -> list[int]:
    """The user's span marks as the objective writes them: with sentinels (T5, UL2), every
    sentinel and every run of [MASK] becomes the next sentinel in order; otherwise (BART, MASS)
    a sentinel becomes [MASK]."""
    vocab = run.vocab
    sentinels = set(vocab.sentinels)
    if not run.info.sentinels:
        return [vocab.mask if t in sentinels else t for t in ids]
    out: list[int] = []
    k = 0  # sentinels placed so far
    for i, t in enumerate(ids):
        if t in sentinels or (t == vocab.mask and (i == 0 or ids[i - 1] != vocab.mask)):
            if k == len(vocab.sentinels):
                raise NotEnoughSentinels(needed=k + 1, available=len(vocab.sentinels))
            out.append(vocab.sentinels[k])
            k += 1
        elif t != vocab.mask:
            out.append(t)
    return out


def paradigm(run: LoadedRun, content: list[int]) -> tuple[list[int], list[int], bool]:
    """UL2's paradigm token for `content`: ([token], content without one the user gave, whether
    it asks for a continuation). A given token is kept; else [NLU] (R) when there are spans to
    fill and [S2S] (S, prefix LM) when there are none. Objectives without paradigm tokens get
    ([], content, False)."""
    corruption = create(run.cfg.objective, **dict(run.cfg.params))
    ids = model_facts(corruption, run.vocab).paradigm_ids
    if not ids:
        return [], content, False
    leads, regular, sequential = tuple(ids.values()), ids["R"], ids["S"]
    if content and content[0] in leads:
        return content[:1], content[1:], content[0] == sequential
    spans = any(t in run.vocab.sentinels for t in content)
    return ([regular] if spans else [sequential]), content, not spans


def mask_runs(ids: list[int], mask: int) -> list[tuple[int, int]]:
    """(start, end) of each run of `mask` in `ids`."""
    runs: list[tuple[int, int]] = []
    for i, t in enumerate(ids):
        if t != mask:
            continue
        if runs and runs[-1][1] == i:
            runs[-1] = (runs[-1][0], i + 1)
        else:
            runs.append((i, i + 1))
    return runs


def strip_eos(ids: list[int], eos: int) -> list[int]:
    return ids[: ids.index(eos)] if eos in ids else ids


def splice(source: list[int], target: list[int], sentinels: tuple[int, ...]) -> list[int]:
    """T5: put the span the decoder wrote behind each sentinel in place of that sentinel in the
    input; a sentinel the decoder wrote nothing for stays."""
    where = set(sentinels)
    spans: dict[int, list[int]] = {}
    current = None
    for t in target:
        if t in where:
            current = t
            spans[current] = []
        elif current is not None:
            spans[current].append(t)
    out: list[int] = []
    for t in source:
        out.extend(spans.get(t, [t]) if t in where else [t])
    return out

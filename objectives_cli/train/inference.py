"""Using a trained run: load it, evaluate it on held-out text, fill in masks or generate.

`fill` does what the run's architecture can: an encoder ranks candidates for every [MASK]; an
encoder-decoder greedily writes the decoder's target for a corrupted input, fed as in training
(the decoder inputs the probe found before the first target, UL2's paradigm token, MASS's
decoder positions): T5 spans are spliced back behind their sentinels, BART's target is the text
itself, MASS fills each [MASK] run in place; a decoder continues the text.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from corruptions import (
    IGNORE,
    Corrupted,
    DataError,
    NotEnoughSentinels,
    UsageError,
    create,
    model_facts,
)
from objectives_cli.data.packing import pack
from objectives_cli.data.tokenizer import load_tokenizer, vocab_of
from objectives_cli.model.model import Model

from . import checkpoints
from .batches import ObjectiveInfo, eval_batches, eval_corpus, load_data, packed
from .config import TrainConfig
from .losses import evaluate
from .runtime import amp_context, resolve_device
from .setup import read_run


@dataclass(frozen=True, eq=False)
class LoadedRun:
    run_dir: Path
    cfg: TrainConfig
    info: ObjectiveInfo
    model: Model
    tok: Any  # tokenizers.Tokenizer
    vocab: Any  # corruptions.Vocab
    step: int
    device: torch.device


def load_run(
    run_dir: Path, device: str = "auto", warn: Any = print, step: int | None = None
) -> LoadedRun:
    """The newest readable checkpoint of `run_dir` (or the one of `step`), in eval mode."""
    stored = read_run(run_dir)
    cfg, info, model = stored.train, stored.info, Model(stored.model)
    if step is not None:
        load_step(run_dir, model, step)
    else:
        state = checkpoints.load_latest(run_dir, model, warn, with_state=False)
        if state is None:
            raise checkpoints.RunError(
                f"{run_dir} has no checkpoint yet",
                "train it first (a checkpoint is written at the end)",
            )
        step = int(Path(state["path"]).name.split("-")[-1])
    if not all(bool(torch.isfinite(p).all()) for p in model.parameters()):
        raise checkpoints.RunError(
            f"checkpoint {checkpoints.step_dir(run_dir, step).name} of {run_dir} holds inf or NaN "
            "weights (the run diverged before it was saved)",
            f"continue from an earlier checkpoint at a lower rate: objectives train --resume "
            f"{run_dir} --lr {cfg.lr / 10:g}",
        )
    torch_device = resolve_device(device)
    tok = load_tokenizer(Path(run_dir) / "tokenizer.json")
    return LoadedRun(
        Path(run_dir),
        cfg,
        info,
        model.to(torch_device).eval(),
        tok,
        vocab_of(tok),
        step,
        torch_device,
    )


def load_step(run_dir: Path, model: Model, step: int) -> None:
    """Load the checkpoint of `step` into `model` (a RunError names the steps there are)."""
    saved = dict(checkpoints.list_checkpoints(run_dir))
    if step not in saved:
        have = ", ".join(map(str, saved)) or "none"
        raise checkpoints.RunError(f"{run_dir} has no checkpoint of step {step} (it has: {have})")
    try:
        weights, _ = checkpoints.read_checkpoint(saved[step], with_state=False)
        model.load_state_dict(weights)
    except Exception as exc:  # truncated or corrupted files, or another model's weights
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        name = saved[step].name
        raise checkpoints.RunError(f"checkpoint {name} is damaged ({first[:200]})") from None


def evaluate_run(
    run: LoadedRun, data: str | None = None, batches: int | None = None
) -> dict[str, Any]:
    """Held-out loss and accuracy per term: on the run's held-out split, or on `data`, over at
    most `batches` micro-batches (default: the run's --eval-batches, so on its held-out split
    the rows and the figures are those of the run's own final evaluation)."""
    cfg = run.cfg
    corruption = create(cfg.objective, **dict(cfg.params))
    if data is None:
        blocks = packed(load_data(cfg, str(run.run_dir / "tokenizer.json")), cfg, run.info)[1]
    else:
        blocks = pack(eval_corpus(data, run.tok), cfg.seq_len, run.info.packing)
    if len(blocks) == 0:
        raise UsageError("the evaluation data holds no tokens")
    result = evaluate(
        run.model,
        eval_batches(cfg, blocks, corruption, run.vocab, run.info, run.device, batches),
        amp_context(cfg, run.device),
        cfg.seed,
    )
    if result["loss"] is None:
        raise DataError(
            f"nothing to score: the {result['rows']:,} rows evaluated hold no token that "
            f"{cfg.objective} scores (text the tokenizer cannot represent is all [UNK], which "
            "is never masked)",
            "evaluate on text the run's tokenizer covers, or train a tokenizer on such text "
            "(objectives tokenizer train) and a run with it",
        )
    if not all(math.isfinite(v) for v in result.values() if v is not None):
        raise checkpoints.RunError(
            f"evaluating {run.run_dir} at step {run.step} gave an inf or NaN loss",
            "its weights are finite but overflow on this text; train it with a lower --lr",
        )
    return {
        "run": str(run.run_dir),
        "step": run.step,
        "objective": cfg.objective,
        "data": data or "held-out split",
        **result,
    }


def encode_text(run: LoadedRun, text: str, frame: bool = True) -> list[int]:
    """The ids of `text`, framed as the objective's inputs are (unless `frame` is False); a text
    longer than the model reads is refused rather than cut (a cut could drop its [MASK])."""
    ids: list[int] = run.tok.encode(text, add_special_tokens=False).ids
    return encode_ids(run, ids) if frame else fits(run, ids)


def fits(run: LoadedRun, ids: list[int]) -> list[int]:
    """`ids`, unless the model cannot read that many (a UsageError)."""
    most = run.model.cfg.max_len
    if len(ids) > most:
        raise UsageError(
            f"the text is {len(ids)} tokens long, and this model reads at most {most}",
            "shorten the text",
        )
    return ids


def as_batch(
    ids: list[int],
    device: torch.device,
    labels: list[int] | None = None,
    extras: dict[str, Tensor] | None = None,
) -> Corrupted:
    t = torch.tensor([ids], device=device)
    lab = (
        torch.tensor([labels], device=device) if labels is not None else torch.full_like(t, IGNORE)
    )
    return Corrupted(t, torch.ones_like(t, dtype=torch.bool), lab, extras=extras or {})


@torch.no_grad()
def fill_masks(run: LoadedRun, text: str, top_k: int = 5) -> dict[str, Any]:
    """Encoder: the top-k tokens for each [MASK] of `text`, and the text with the best ones."""
    ids = encode_text(run, text)
    mask = run.vocab.mask
    at = [i for i, t in enumerate(ids) if t == mask]
    if not at:
        raise UsageError(
            "the text has no [MASK] to fill", 'e.g. "The capital of France is [MASK] ."'
        )
    labels = [t if t == mask else IGNORE for t in ids]
    extras: dict[str, Tensor] = {}
    if run.model.cfg.token_types:  # one segment, as a single sentence would be
        extras["token_type_ids"] = torch.zeros(1, len(ids), dtype=torch.long, device=run.device)
    if run.model.cfg.two_stream:
        # XLNet: every mask is a target of the same rank, so each one sees the context alone. In
        # training a later target sees an earlier one's real token; here that token is unknown,
        # and its [MASK] id is input the model never saw there.
        rank = [0 if t == mask else -1 for t in ids]
        extras["perm_rank"] = torch.tensor([rank], device=run.device)
    torch.manual_seed(0)
    logits = run.model(as_batch(ids, run.device, labels, extras))["mlm"][0].float()
    probs = logits.softmax(-1)
    top = probs.topk(min(top_k, probs.size(-1)), dim=-1)
    masks = []
    filled = list(ids)
    for row, i in enumerate(at):
        choices = [
            {"token": run.tok.id_to_token(int(t)), "probability": round(float(p), 4)}
            for p, t in zip(top.values[row], top.indices[row], strict=True)
        ]
        masks.append({"position": i, "top": choices})
        filled[i] = int(top.indices[row, 0])
    return {"kind": "masks", "input": text, "masks": masks, "output": decode(run, filled)}


def decode(run: LoadedRun, ids: list[int]) -> str:
    special = {*run.info.frame_prefix, *run.info.frame_suffix, run.vocab.pad}
    return str(run.tok.decode([i for i in ids if i not in special], skip_special_tokens=False))


DEFAULT_NEW = 40  # tokens a continuation (or, beyond the input's length, a target) may take


@torch.no_grad()
def generate(run: LoadedRun, text: str, max_new: int | None = None) -> dict[str, Any]:
    """Seq2seq: greedy decoding of the target for a corrupted input; decoder: a continuation.

    `max_new` bounds the tokens written: by default 40 for a continuation, and the input's
    length + 40 for a seq2seq target (BART's rewrites the whole input). MASS writes as many
    tokens as each fragment has masks.
    """
    torch.manual_seed(0)
    if run.info.arch == "decoder":
        return continue_text(run, text, max_new or DEFAULT_NEW)
    if run.model.cfg.cross_hide >= 0:  # set for objectives that place decoder tokens (MASS)
        return fill_fragments(run, text)
    return reconstruct(run, text, max_new)


def continue_text(run: LoadedRun, text: str, max_new: int) -> dict[str, Any]:
    """Decoder: greedy continuation of `text` (a prefix LM sees it as its bidirectional prefix)."""
    model, eos, device = run.model, run.vocab.eos, run.device
    ids = [*run.info.frame_prefix, *encode_text(run, text, frame=False)]
    prompt = len(ids)
    for _ in range(max(0, min(max_new, model.cfg.max_len - len(ids)))):
        extras = (
            {"prefix_lengths": torch.tensor([prompt], device=device)} if run.info.prefix else {}
        )
        h = model.run_decoder(as_batch(ids, device, extras=extras))
        nxt = int(model.lm_logits(h[0, -1]).argmax())
        if nxt == eos:
            break
        ids.append(nxt)
    return {
        "kind": "continuation",
        "input": text,
        "generated": decode(run, ids[prompt:]),
        "output": decode(run, ids),
    }


def reconstruct(run: LoadedRun, text: str, max_new: int | None) -> dict[str, Any]:
    """Encoder-decoder: encode the corrupted text as the objective frames it, decode its target
    greedily after the probed decoder prefix, and put the text back together.

    T5-style targets are spliced into the input behind their sentinels; UL2's S mode (text with
    nothing to fill) continues the text; any other target (BART) is the text itself.
    """
    vocab, model = run.vocab, run.model
    content = as_marked(run, run.tok.encode(text, add_special_tokens=False).ids)
    lead, content, continuation = paradigm(run, content)
    spans = any(t in vocab.sentinels or t == vocab.mask for t in content)
    if run.info.sentinels and not spans and not continuation:
        raise UsageError(
            "the text has no span to fill",
            'mark each with [MASK] or a sentinel, e.g. "The cat <extra_id_0> the mat ."',
        )
    source = encode_ids(run, [*lead, *content])
    memory, memory_mask = model.encode(as_batch(source, run.device))
    start = run.info.decoder_prefix or [
        run.info.decoder_start if run.info.decoder_start is not None else vocab.pad
    ]
    limit = max_new or len(source) + DEFAULT_NEW
    written = strip_eos(greedy(run, memory, memory_mask, start, limit), vocab.eos)
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


def fill_fragments(run: LoadedRun, text: str) -> dict[str, Any]:
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
    memory, memory_mask = run.model.encode(as_batch(ids, run.device))
    fixed = info.decoder_prefix[0] if info.decoder_prefix else None
    if info.decoder_prefix is None and info.decoder_start == vocab.mask:  # older runs
        fixed = vocab.mask
    out, dropped, written = list(ids), set(), []
    for start, end in fragments:
        first = fixed if fixed is not None else (ids[start - 1] if start > 0 else vocab.bos)
        tokens = greedy(run, memory, memory_mask, [first], end - start, first_position=start - 1)
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


def greedy(
    run: LoadedRun,
    memory: Tensor,
    memory_mask: Any,
    start: list[int],
    limit: int,
    first_position: int | None = None,
) -> list[int]:
    """Greedy decoding after the decoder inputs `start`: up to `limit` tokens, the last one
    </s> if it stopped there. `first_position`: decoder positions run from it (MASS) instead of
    from 0."""
    model, device = run.model, run.device
    out = list(start)
    for _ in range(max(0, min(limit, model.cfg.max_len - len(start) + 1))):
        positions = None
        if first_position is not None:
            positions = torch.arange(first_position, first_position + len(out), device=device)
            positions = positions.clamp(min=0).unsqueeze(0)
        h = model.decode(torch.tensor([out], device=device), memory, memory_mask, positions)
        nxt = int(model.lm_logits(h[0, -1]).argmax())
        out.append(nxt)
        if nxt == run.vocab.eos:
            break
    return out[len(start) :]


def encode_ids(run: LoadedRun, ids: list[int]) -> list[int]:
    """`ids` framed as the objective's inputs are (refused when longer than the model reads)."""
    prefix, suffix = run.info.frame_prefix, run.info.frame_suffix
    if prefix and ids[: len(prefix)] != prefix:
        ids = [*prefix, *ids]
    if suffix and ids[-len(suffix) :] != suffix:
        ids = [*ids, *suffix]
    return fits(run, ids)


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

"""Using a trained run: load it, evaluate it on held-out text, fill in masks or generate.

`fill` does what the run's architecture can: an encoder ranks candidates for every [MASK]; an
encoder-decoder greedily writes the decoder's target for a corrupted input (T5 sentinels are
spliced back into the input, BART's output is the text itself); a decoder continues the text.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from corruptions import IGNORE, Corrupted, UsageError, create

from . import checkpoints
from .batches import ObjectiveInfo, eval_batches, load_data, packed
from .models import Model, ModelConfig
from .packing import encode_corpus, pack
from .train import TrainConfig, amp_context, evaluate, resolve_device


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


def load_run(run_dir: Path, device: str = "auto", warn: Any = print) -> LoadedRun:
    """The newest readable checkpoint of `run_dir`, in eval mode."""
    from .tokenizer import load_tokenizer, vocab_of

    stored = checkpoints.read_config(run_dir)
    cfg = TrainConfig.from_json(stored["train"])
    info = ObjectiveInfo(**stored["objective"])
    model = Model(ModelConfig(**stored["model"]))
    state = checkpoints.load_latest(run_dir, model, warn, with_state=False)
    if state is None:
        raise checkpoints.RunError(
            f"{run_dir} has no checkpoint yet",
            "train it first (a checkpoint is written at the end)",
        )
    step = int(Path(state["path"]).name.split("-")[-1])
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


def evaluate_run(run: LoadedRun, data: str | None = None, batches: int = 50) -> dict[str, Any]:
    """Held-out loss and accuracy per term: on the run's held-out split, or on `data`."""
    from .data import read_documents

    cfg = run.cfg
    corruption = create(cfg.objective, **dict(cfg.params))
    if data is None:
        blocks = packed(load_data(cfg, str(run.run_dir / "tokenizer.json")), cfg, run.info)[1]
    else:
        blocks = pack(encode_corpus(run.tok, read_documents(data)), cfg.seq_len, run.info.packing)
    if len(blocks) == 0:
        raise UsageError("the evaluation data holds no tokens")
    result = evaluate(
        run.model,
        eval_batches(cfg, blocks, corruption, run.vocab, run.info, run.device, batches),
        amp_context(cfg, run.device),
        cfg.seed,
    )
    rows = min(len(blocks), batches * cfg.batch_size)
    return {
        "run": str(run.run_dir),
        "step": run.step,
        "objective": cfg.objective,
        "data": data or "held-out split",
        "rows": rows,
        **result,
    }


def encode_text(run: LoadedRun, text: str, frame: bool = True) -> list[int]:
    ids: list[int] = run.tok.encode(text, add_special_tokens=False).ids
    prefix, suffix = run.info.frame_prefix, run.info.frame_suffix
    if frame and prefix and ids[: len(prefix)] != prefix:
        ids = [*prefix, *ids]
    if frame and suffix and ids[-len(suffix) :] != suffix:
        ids = [*ids, *suffix]
    return ids[: run.model.cfg.max_len]


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
    if run.model.cfg.two_stream:  # XLNet: masks are targets, predicted left to right
        rank = [-1] * len(ids)
        for order, i in enumerate(at):
            rank[i] = order
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


@torch.no_grad()
def generate(run: LoadedRun, text: str, max_new: int = 40) -> dict[str, Any]:
    """Seq2seq: greedy decoding of the target for a corrupted input; decoder: a continuation."""
    model, eos, device = run.model, run.vocab.eos, run.device
    torch.manual_seed(0)
    if run.info.arch == "encoder-decoder":
        ids = encode_text(run, text)
        memory, memory_mask = model.encode(as_batch(ids, device))
        out = [run.info.decoder_start if run.info.decoder_start is not None else run.vocab.pad]
        for _ in range(min(max_new, model.cfg.max_len - 1)):
            h = model.decode(torch.tensor([out], device=device), memory, memory_mask)
            nxt = int(model.lm_logits(h[0, -1]).argmax())
            out.append(nxt)
            if nxt == eos:
                break
        target = out[1:]
        return {
            "kind": "seq2seq",
            "input": text,
            "generated": decode(run, strip_eos(target, eos)),
            "output": decode(run, splice(ids, strip_eos(target, eos), run.vocab.sentinels)),
        }
    ids = encode_text(run, text, frame=False)
    ids = [*run.info.frame_prefix, *ids]
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


def strip_eos(ids: list[int], eos: int) -> list[int]:
    return ids[: ids.index(eos)] if eos in ids else ids


def splice(source: list[int], target: list[int], sentinels: tuple[int, ...]) -> list[int]:
    """T5: put the spans the decoder wrote behind each sentinel back in place of that sentinel in
    the input; any other target (BART: the whole text) is the output itself."""
    where = {s: k for k, s in enumerate(sentinels)}
    if not any(t in where for t in source) or not target or target[0] not in where:
        return target
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
        out.extend(spans.get(t, []) if t in where else [t])
    return out

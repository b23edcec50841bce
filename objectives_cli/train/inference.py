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
    UsageError,
    create,
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
    if result.get("lm_loss") is not None:  # a language-model term: next token or seq2seq target
        result["lm_ppl"] = math.exp(min(result["lm_loss"], 700.0))  # perplexity
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


def encode_ids(run: LoadedRun, ids: list[int]) -> list[int]:
    """`ids` framed as the objective's inputs are (refused when longer than the model reads)."""
    prefix, suffix = run.info.frame_prefix, run.info.frame_suffix
    if prefix and ids[: len(prefix)] != prefix:
        ids = [*prefix, *ids]
    if suffix and ids[-len(suffix) :] != suffix:
        ids = [*ids, *suffix]
    return fits(run, ids)

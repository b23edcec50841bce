"""Every loss the trainer computes, written once: per term, cross-entropy over the scored
positions (binary cross-entropy for ELECTRA's replaced-token detection), weighted into one total.

The model returns logits and targets per term (`Model.forward`); nothing here knows an objective.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from corruptions import Corrupted
from objectives_cli.model.model import Head, Model

from .runtime import derived_seed

LOSS_WEIGHTS: Mapping[str, float] = {
    "rtd": 50.0
}  # ELECTRA: lambda = 50 (Clark et al. 2020, sec. 2); others 1


def term_losses(
    outputs: dict[str, Head], accuracy: bool = False
) -> dict[str, tuple[Tensor, Tensor]]:
    """Per term: (summed loss, correct predictions) — cross-entropy, or binary for (N,) logits."""
    out = {}
    for name, (logits, targets) in outputs.items():
        if logits.dim() == 1:
            loss = F.binary_cross_entropy_with_logits(
                logits.float(), targets.float(), reduction="sum"
            )
            correct = ((logits > 0) == (targets > 0.5)).sum() if accuracy else loss.new_zeros(())
        else:
            loss = F.cross_entropy(logits.float(), targets, reduction="sum")
            correct = (logits.argmax(-1) == targets).sum() if accuracy else loss.new_zeros(())
        out[name] = (loss, correct)
    return out


def weighted_total(means: dict[str, float]) -> float:
    return sum(LOSS_WEIGHTS.get(k, 1.0) * v for k, v in means.items())


@torch.no_grad()
def evaluate(
    model: Model, batches: Iterator[Corrupted], amp: Any, seed: int
) -> dict[str, float | None]:
    """Held-out loss and accuracy per term, the weighted total ('loss') and the rows evaluated.

    A term with no scored target in these batches (text the tokenizer maps to [UNK], which no
    objective corrupts) has loss and accuracy None, and so has the total: nothing scored is not
    a perfect score.
    """
    was_training = model.training
    model.eval()
    sums: dict[str, list[float]] = {}
    rows = 0
    for i, batch in enumerate(batches):
        torch.manual_seed(derived_seed(seed, "eval", i))
        rows += batch.input_ids.size(0)
        counts = {k: int(v.sum()) for k, v in model.scored(batch).items()}
        with amp:
            outputs = model(batch)
        for name, (loss, correct) in term_losses(outputs, accuracy=True).items():
            acc = sums.setdefault(name, [0.0, 0.0, 0.0])
            acc[0] += float(loss)
            acc[1] += float(correct)
            acc[2] += counts.get(name, 0)
    model.train(was_training)
    result: dict[str, float | None] = {}
    for name, (loss, correct, count) in sums.items():
        result[f"{name}_loss"] = loss / count if count else None
        result[f"{name}_acc"] = correct / count if count else None
    means = {k: result[f"{k}_loss"] for k in sums}
    scored = all(v is not None for v in means.values()) and bool(means)
    result["loss"] = weighted_total(means) if scored else None  # type: ignore[arg-type]
    result["rows"] = rows
    return result

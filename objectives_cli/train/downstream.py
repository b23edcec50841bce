"""What fine-tuning and probing share: a task's examples as model inputs, the pooled state a
classifier reads, the scores, the random-init control and the result files.

Inputs are framed as the objective frames its own (BERT `[CLS] A [SEP] B [SEP]` with segment
ids 0/1 where the model has segment embeddings; XLNet `A <sep> B <sep> <cls>`; GPT `A [SEP] B
[SEP]`). A pair longer than the model's positions is cut from its longer side (BERT's
`_truncate_seq_pair`); the cuts are counted and reported once.

The state a classifier reads follows each architecture's paper:

    encoder          the first token ([CLS], BERT); XLNet, whose <cls> closes the input, its
                     last token (XLNet's summary_type "last")
    decoder          the last real token (GPT)
    encoder-decoder  the decoder's last state, the decoder fed the input too (BART, sec. 3.1)

`--pool mean` takes the mean over the real tokens instead. Results go to
RUN/downstream/TASK-METHOD.json (TASK-METHOD-random.json for the random-init control;
`compare` adds -seedK).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from corruptions import ObjectivesError, UsageError
from objectives_cli.data import files
from objectives_cli.data.tasks import Example, Task
from objectives_cli.model.model import Model

from .inference import LoadedRun
from .runtime import derived_seed

POOLS = ("cls", "last", "mean")
FOLDER = "downstream"


@dataclass(frozen=True)
class Inputs:
    """One split of a task as model inputs."""

    rows: list[list[int]]  # framed token ids
    segments: list[list[int]] | None  # token types (pairs on a model with segment embeddings)
    labels: Tensor  # (N,) int64
    cut: int  # examples cut to fit the model


def reads_decoder(run: LoadedRun) -> bool:
    """Whether the classifier reads decoder states (an encoder-decoder, BART's recipe)."""
    return run.model.cfg.arch == "encoder-decoder"


def default_pool(run: LoadedRun) -> str:
    """The paper's pooling for the run's architecture (see the module docstring)."""
    if run.model.cfg.arch == "encoder" and run.info.frame_prefix:
        return "cls"
    return "last"


def check_pool(run: LoadedRun, pool: str | None) -> str:
    pool = pool or default_pool(run)
    if pool not in POOLS:
        raise UsageError(f"unknown pooling '{pool}'", f"use one of: {', '.join(POOLS)}")
    return pool


def encode(run: LoadedRun, examples: list[Example]) -> Inputs:
    """Tokenise and frame `examples`: prefix A [sep B] suffix, cut to the model's positions."""
    prefix, suffix = run.info.frame_prefix, run.info.frame_suffix
    sep = suffix[:1] or [run.vocab.eos]
    pair = any(e.text_pair is not None for e in examples)
    room = run.model.cfg.max_len - len(prefix) - len(suffix) - reads_decoder(run)
    room -= len(sep) if pair else 0
    first = [e.ids for e in run.tok.encode_batch([e.text for e in examples], False)]
    second = (
        [e.ids for e in run.tok.encode_batch([e.text_pair or "" for e in examples], False)]
        if pair
        else [[] for _ in examples]
    )
    rows, segments, cut = [], [], 0
    for a, b in zip(first, second, strict=True):
        la, lb = fit_pair(len(a), len(b), room)
        cut += (la, lb) != (len(a), len(b))
        head = [*prefix, *a[:la], *(sep if pair else [])]
        rows.append([*head, *b[:lb], *suffix])
        segments.append([0] * len(head) + [1] * (lb + len(suffix)))
    labels = torch.tensor([e.label for e in examples], dtype=torch.long)
    typed = pair and run.model.cfg.token_types > 0
    return Inputs(rows, segments if typed else None, labels, cut)


def fit_pair(la: int, lb: int, room: int) -> tuple[int, int]:
    """Lengths of A and B after cutting the longer one until both fit in `room` (BERT)."""
    if la + lb <= room:
        return la, lb
    if min(la, lb) <= room // 2:
        return (la, room - la) if la < lb else (room - lb, lb)
    return room // 2, room - room // 2


def pooled(states: Tensor, mask: Tensor, pool: str) -> Tensor:
    """(B, S, D) states and their (B, S) real mask -> (B, D) by `pool`."""
    if pool == "cls":
        return states[:, 0]
    lengths = mask.sum(1)
    if pool == "last":
        return states[torch.arange(states.size(0), device=states.device), lengths - 1]
    return (states * mask.unsqueeze(-1)).sum(1) / lengths.unsqueeze(-1)


def scores(predicted: Tensor, gold: Tensor, n_classes: int) -> dict[str, float]:
    """Accuracy and macro-F1 (the mean over classes of each class's F1)."""
    confusion = torch.bincount(gold * n_classes + predicted, minlength=n_classes**2)
    confusion = confusion.view(n_classes, n_classes).double()  # rows: gold, columns: predicted
    hits = confusion.diag()
    precision = hits / confusion.sum(0).clamp(min=1)
    recall = hits / confusion.sum(1).clamp(min=1)
    f1 = 2 * precision * recall / (precision + recall).clamp(min=1e-12)
    accuracy = float((predicted == gold).double().mean())
    return {"accuracy": round(accuracy, 4), "macro_f1": round(float(f1.mean()), 4)}


def randomly_initialised(run: LoadedRun) -> LoadedRun:
    """The run as it was before its first step: the same shape and the same initial weights
    (the trainer seeds initialisation from the run's seed alike), the control that shows what
    pretraining added."""
    torch.manual_seed(derived_seed(run.cfg.seed, "init"))
    model = Model(run.model.cfg).to(run.device).eval()
    return replace(run, model=model, step=0)


def result_path(
    run_dir: Path, task: Task, method: str, random_init: bool, seed: int | None = None
) -> Path:
    """RUN/downstream/TASK-METHOD[-random][-seedK].json (a seed: one cell of a comparison)."""
    name = f"{task.name}-{method}{'-random' if random_init else ''}"
    return run_dir / FOLDER / f"{name}{'' if seed is None else f'-seed{seed}'}.json"


def write_result(path: Path, result: dict[str, Any]) -> None:
    """`result` as JSON, atomically. A file that cannot be written (a read-only run directory,
    a full disk) is one error line; callers print a result before they store it."""
    try:
        files.write_atomic(path, json.dumps(result, indent=1) + "\n")
    except OSError as exc:
        raise ObjectivesError(
            f"cannot write {path}: {exc.strerror or exc}",
            "what was computed before is kept; free space or make the folder writable",
        ) from None


def read_result(path: Path) -> dict[str, Any] | None:
    """A stored result, or None when there is none (or it is unreadable: it is redone)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def describe(run: LoadedRun, task: Task, random_init: bool) -> dict[str, Any]:
    """What every result records of its run and task."""
    return {
        "run": str(run.run_dir),
        "objective": run.cfg.objective,
        "arch": run.model.cfg.arch,
        "step": run.step,
        "init": "random" if random_init else "pretrained",
        "task": task.name,
        "task_source": task.source,
        "task_fingerprint": task.fingerprint(),
        "classes": list(task.classes),
        "sizes": task.sizes(),
    }

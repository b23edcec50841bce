"""Fine-tuning a run on a classification task: every weight, plus a new head, the second half of
the BERT recipe.

The head is RoBERTa's and BART's (dense, tanh, projection to the classes, dropout before each)
on the pooled state (downstream.py). AdamW with the trainer's groups and betas
(runtime.make_optimizer), linear warmup then linear decay to zero over the epochs
(config.lr_at), gradient clipping at 1.0, the trainer's precision (runtime.amp_context). After
each epoch the validation split is scored; the weights of the best epoch are kept, and training
stops after `patience` epochs without a better one. Everything random (head initialisation,
dropout, the order of examples) follows from `seed`, so a seed gives the same result again.
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from corruptions import UsageError, make_generator
from objectives_cli.data.tasks import Task

from . import downstream
from .config import lr_at
from .embed import layer_states
from .inference import LoadedRun
from .report import PlainReporter, Reporter
from .runtime import amp_context, derived_seed, make_optimizer

# Peak learning rate per model preset: BERT fine-tunes base at 2e-5..5e-5; smaller models take
# larger rates (the tiny preset pretrains at 2e-3; tiny runs learned `fits` at 1e-3).
LR = {"tiny": 1e-3, "small": 1e-4, "base": 3e-5}


@dataclass(frozen=True)
class FinetuneSettings:
    """How a run is fine-tuned; stored with every result."""

    epochs: int = 3  # passes over the training split at most
    lr: float | None = None  # peak learning rate; None: LR of the run's preset
    batch_size: int = 32  # examples per step
    warmup: float = 0.1  # share of the steps with a rising learning rate
    patience: int = 1  # epochs without a better validation score before stopping
    dropout: float = 0.1  # in the head
    pool: str | None = None  # cls, last or mean; None: the architecture's own
    seed: int = 0

    def __post_init__(self) -> None:
        for name, ok in (
            ("--epochs", self.epochs >= 1),
            ("--batch-size", self.batch_size >= 1),
            ("--lr", self.lr is None or self.lr > 0),
            ("--patience", self.patience >= 1),
        ):
            if not ok:
                raise UsageError(f"{name} must be positive")


class Head(nn.Module):
    """RoBERTa's / BART's classification head: dropout, dense, tanh, dropout, projection."""

    def __init__(self, width: int, n_classes: int, dropout: float) -> None:
        super().__init__()
        self.drop = nn.Dropout(dropout)
        self.dense = nn.Linear(width, width)
        self.out = nn.Linear(width, n_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.out(self.drop(torch.tanh(self.dense(self.drop(x)))))


class Classifier(nn.Module):
    """A run's model with a head on its pooled state."""

    def __init__(self, run: LoadedRun, n_classes: int, pool: str, dropout: float) -> None:
        super().__init__()
        self.run, self.pool = run, pool
        self.model = run.model  # registered, so .parameters() and .train() reach it
        self.head = Head(run.model.cfg.d_model, n_classes, dropout).to(run.device)

    def forward(self, rows: list[list[int]], segments: list[list[int]] | None) -> Tensor:
        decoder = downstream.reads_decoder(self.run)
        states, mask = layer_states(self.run, rows, None, segments, decoder)
        return self.head(downstream.pooled(states, mask, self.pool))


def finetune(
    run: LoadedRun,
    task: Task,
    settings: FinetuneSettings,
    random_init: bool = False,
    reporter: Reporter | None = None,
) -> dict[str, Any]:
    """Fine-tune a copy of the run's model (or of its step-0 weights, `random_init`) on `task`:
    test and validation scores with the settings (the caller stores them). The run's own
    weights are not changed."""
    reporter = reporter or PlainReporter(quiet=True)
    began = time.perf_counter()
    base = downstream.randomly_initialised(run) if random_init else run
    run = replace(base, model=copy.deepcopy(base.model))
    chosen = resolved(run, settings)
    pool, lr = chosen["pool"], chosen["lr"]
    splits = {s: downstream.encode(run, task.of(s)) for s in ("train", "validation", "test")}
    torch.manual_seed(derived_seed(settings.seed, "finetune", "init"))
    net = Classifier(run, len(task.classes), pool, settings.dropout)
    per_epoch = -(-len(splits["train"].rows) // settings.batch_size)
    cfg = replace(
        run.cfg, lr=lr, steps=settings.epochs * per_epoch, warmup=settings.warmup, min_lr=0.0
    )
    cfg = replace(cfg, schedule="linear", budget=0.0, weight_decay=0.01, clip=1.0)
    opt = make_optimizer(cfg, net, run.device)
    amp = amp_context(cfg, run.device)
    reporter.start(cfg.steps, 0, "steps")
    best: tuple[float, int, dict[str, Tensor]] = (-1.0, 0, {})
    epoch = 0
    for epoch in range(1, settings.epochs + 1):
        train_epoch(net, opt, cfg, amp, splits["train"], settings, epoch, per_epoch, reporter)
        score = evaluate(net, splits["validation"], len(task.classes), amp, settings.batch_size)
        if score["accuracy"] > best[0]:
            best = (score["accuracy"], epoch, copy.deepcopy(net.state_dict()))
        elif epoch - best[1] >= settings.patience:
            break
    net.load_state_dict(best[2])
    n = len(task.classes)
    result = {
        **downstream.describe(run, task, random_init),
        "method": "finetune",
        "settings": chosen,
        "test": evaluate(net, splits["test"], n, amp, settings.batch_size),
        "validation": evaluate(net, splits["validation"], n, amp, settings.batch_size),
        "best_epoch": best[1],
        "epochs_run": epoch,
        "cut": sum(s.cut for s in splits.values()),
        "seconds": round(time.perf_counter() - began, 1),
    }
    reporter.message(
        f"finetune {task.name}: test accuracy {result['test']['accuracy']:.4f} "
        f"(best epoch {best[1]} of {epoch})"
    )
    return result


def resolved(run: LoadedRun, settings: FinetuneSettings) -> dict[str, Any]:
    """The settings as they apply to `run`: its preset's learning rate, its pooling."""
    lr = settings.lr or LR.get(run.cfg.model, LR["base"])
    return {**asdict(settings), "lr": lr, "pool": downstream.check_pool(run, settings.pool)}


def train_epoch(
    net: Classifier,
    opt: torch.optim.Optimizer,
    cfg: Any,
    amp: Any,
    data: downstream.Inputs,
    settings: FinetuneSettings,
    epoch: int,
    per_epoch: int,
    reporter: Reporter,
) -> None:
    """One pass over the training split in a seeded order."""
    net.train()
    order = torch.randperm(
        len(data.rows), generator=make_generator(settings.seed, "finetune", epoch)
    ).tolist()
    clock, tokens = time.perf_counter(), 0
    for i in range(per_epoch):
        step = (epoch - 1) * per_epoch + i
        for group in opt.param_groups:
            group["lr"] = lr = lr_at(cfg, step, step / cfg.steps)
        at = order[i * settings.batch_size : (i + 1) * settings.batch_size]
        rows = [data.rows[j] for j in at]
        segments = None if data.segments is None else [data.segments[j] for j in at]
        torch.manual_seed(derived_seed(settings.seed, "finetune", step))  # dropout
        with amp:
            logits = net(rows, segments)
        loss = F.cross_entropy(logits.float(), data.labels[at].to(logits.device))
        loss.backward()
        nn.utils.clip_grad_norm_(net.parameters(), cfg.clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        tokens += sum(map(len, rows))
        row = None
        if (step + 1) % 10 == 0:
            speed = tokens / max(time.perf_counter() - clock, 1e-9)
            row = {"step": step + 1, "loss": float(loss.detach()), "lr": lr, "tokens_per_s": speed}
        reporter.advance(step + 1, row)
    net.eval()


@torch.no_grad()
def evaluate(
    net: Classifier, data: downstream.Inputs, n_classes: int, amp: Any, batch_size: int
) -> dict[str, float]:
    """Accuracy and macro-F1 of `net` on one split (batched by length: less padding)."""
    net.eval()
    order = sorted(range(len(data.rows)), key=lambda j: len(data.rows[j]))
    predicted = torch.empty(len(order), dtype=torch.long)
    for start in range(0, len(order), 4 * batch_size):
        at = order[start : start + 4 * batch_size]
        segments = None if data.segments is None else [data.segments[j] for j in at]
        with amp:
            logits = net([data.rows[j] for j in at], segments)
        predicted[at] = logits.argmax(-1).cpu()
    return downstream.scores(predicted, data.labels, n_classes)

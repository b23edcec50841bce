"""Probing a run: its frozen features and a linear classifier on them, and the bag-of-words
baseline that every score is reported beside.

Features are read through `embed.hidden_states` (the code `objectives embed` uses): batched,
without gradients, at `--layer` (last, mean or a block), pooled as fine-tuning pools
(downstream.py), and cached per (run step, task, layer, pool) under RUN/downstream/cache/.
The classifier is softmax regression on standardised features, fitted on the whole training
split at once with L-BFGS from zero weights, so it is deterministic; its L2 strength is the one
of `L2` with the best validation accuracy.

The bag-of-words baseline is the same classifier on word counts (words and punctuation, as
written), once with one bag per example and, for pairs, once with a bag per sentence, which
can see which words open the second sentence.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save
from torch import Tensor

from corruptions import ObjectivesError
from objectives_cli.data import files
from objectives_cli.data.files import cache_dir
from objectives_cli.data.tasks import SPLITS, Example, Task

from . import downstream
from .embed import check_options, hidden_states
from .inference import LoadedRun

L2 = (1e-4, 1e-3, 1e-2, 1e-1)  # penalties tried, on the mean cross-entropy
WORD = re.compile(r"\w+|[^\w\s]")
Split = tuple[Tensor, Tensor]  # features (N, D), dense or sparse; labels (N,)


def probe(
    run: LoadedRun,
    task: Task,
    layer: str = "last",
    pool: str | None = None,
    random_init: bool = False,
    batch_size: int = 64,
    warn: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Linear probe of the run's frozen features on `task`: test and validation scores."""
    began = time.perf_counter()
    pool = downstream.check_pool(run, pool)
    check_options(run, "mean", layer, downstream.reads_decoder(run))
    if random_init:
        run = downstream.randomly_initialised(run)
    data, cut = features(run, task, layer, pool, random_init, batch_size, warn)
    fitted = fit_best(data, len(task.classes))
    return {
        **downstream.describe(run, task, random_init),
        "method": "probe",
        "settings": {"layer": layer, "pool": pool},
        "l2": fitted["l2"],
        "test": fitted["test"],
        "validation": fitted["validation"],
        "cut": cut,
        "seconds": round(time.perf_counter() - began, 1),
    }


def features(
    run: LoadedRun,
    task: Task,
    layer: str,
    pool: str,
    random_init: bool,
    batch_size: int,
    warn: Callable[[str], None] = print,
) -> tuple[dict[str, Split], int]:
    """The pooled features of every split, from the cache or computed (and cached)."""
    init = "random" if random_init else f"step{run.step}"
    name = f"{task.name}-{task.fingerprint()}-{init}-{layer}-{pool}.safetensors"
    path = run.run_dir / downstream.FOLDER / "cache" / name
    if path.exists():
        try:
            stored = load_file(path)
            cut = int(stored.pop("cut"))
            return {s: (stored[f"{s}_x"], stored[f"{s}_y"]) for s in SPLITS}, cut
        except Exception:  # a damaged cache file is computed again
            pass
    decoder = downstream.reads_decoder(run)
    _, block = check_options(run, "mean", layer, decoder)
    out: dict[str, Split] = {}
    cut = 0
    for split in SPLITS:
        inputs = downstream.encode(run, task.of(split))
        cut += inputs.cut
        order = sorted(range(len(inputs.rows)), key=lambda j: len(inputs.rows[j]))
        x = torch.empty(len(order), run.model.cfg.d_model)
        for start in range(0, len(order), batch_size):
            at = order[start : start + batch_size]
            segments = None if inputs.segments is None else [inputs.segments[j] for j in at]
            states, mask = hidden_states(
                run, [inputs.rows[j] for j in at], block, segments, decoder
            )
            x[at] = downstream.pooled(states, mask, pool).float().cpu()
        out[split] = (x, inputs.labels)
    tensors = {f"{s}_{k}": t for s, (x, y) in out.items() for k, t in (("x", x), ("y", y))}
    try:
        files.write_atomic(path, save({**tensors, "cut": torch.tensor(cut)}))
    except OSError as exc:
        warn(f"warning: the features were not cached ({exc.strerror or exc})")
    return out, cut


def fit_linear(x: Tensor, y: Tensor, n_classes: int, l2: float) -> tuple[Tensor, Tensor]:
    """Softmax regression by full-batch L-BFGS from zeros: weights (D, C) and bias (C,)."""
    weight = torch.zeros(x.size(1), n_classes, requires_grad=True)
    bias = torch.zeros(n_classes, requires_grad=True)
    opt = torch.optim.LBFGS(
        [weight, bias], max_iter=300, history_size=20, line_search_fn="strong_wolfe"
    )

    def closure() -> Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(linear(x, weight, bias), y) + l2 * weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)  # type: ignore[no-untyped-call]
    return weight.detach(), bias.detach()


def linear(x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    return (torch.sparse.mm(x, weight) if x.is_sparse else x @ weight) + bias


def fit_best(data: dict[str, Split], n_classes: int) -> dict[str, Any]:
    """The classifier of the L2 strength with the best validation accuracy, and its scores.
    Dense features are standardised with the training split's mean and deviation."""
    if not data["train"][0].is_sparse:
        mean, std = data["train"][0].mean(0), data["train"][0].std(0).clamp(min=1e-6)
        data = {s: ((x - mean) / std, y) for s, (x, y) in data.items()}
    best: dict[str, Any] = {}
    for l2 in L2:
        weight, bias = fit_linear(*data["train"], n_classes, l2)
        found = {
            s: downstream.scores(linear(x, weight, bias).argmax(-1), y, n_classes)
            for s, (x, y) in data.items()
        }
        if not best or found["validation"]["accuracy"] > best["validation"]["accuracy"]:
            best = {**found, "l2": l2}
    return best


# --- the bag-of-words baseline ------------------------------------------------------------------


def bag(example: Example, per_sentence: bool) -> list[str]:
    first, second = WORD.findall(example.text), WORD.findall(example.text_pair or "")
    if per_sentence:
        return [*(f"a:{w}" for w in first), *(f"b:{w}" for w in second)]
    return first + second


def counts(task: Task, per_sentence: bool) -> dict[str, Split]:
    """Sparse word-count features of every split (the training split's words)."""
    index: dict[str, int] = {}
    for e in task.of("train"):
        for w in bag(e, per_sentence):
            index.setdefault(w, len(index))
    out = {}
    for split in SPLITS:
        examples = task.of(split)
        rows, cols, values = [], [], []
        for i, e in enumerate(examples):
            for w, c in Counter(bag(e, per_sentence)).items():
                if w in index:
                    rows.append(i)
                    cols.append(index[w])
                    values.append(float(c))
        x = torch.sparse_coo_tensor(
            torch.tensor([rows, cols], dtype=torch.long).view(2, -1),
            torch.tensor(values),
            (len(examples), len(index)),
            check_invariants=True,
        ).coalesce()
        out[split] = (x, torch.tensor([e.label for e in examples]))
    return out


def baselines(task: Task, warn: Callable[[str], None] = print) -> dict[str, float]:
    """Test accuracy of the majority class and of the bag-of-words classifiers (cached per
    task content under the cache directory)."""
    path = cache_dir() / "downstream" / f"baselines-{task.name}-{task.fingerprint()}.json"
    found = downstream.read_result(path)
    if found is not None:
        return {k: float(v) for k, v in found.items()}
    out = {"majority": round(task.majority(), 4)}
    out["bow"] = fit_best(counts(task, False), len(task.classes))["test"]["accuracy"]
    if task.pair:
        out["bow_per_sentence"] = fit_best(counts(task, True), len(task.classes))["test"][
            "accuracy"
        ]
    try:
        downstream.write_result(path, out)
    except ObjectivesError as exc:
        warn(f"warning: the baselines were not cached ({exc.message})")
    return out

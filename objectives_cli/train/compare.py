"""`objectives compare`: objectives pretrained at an equal budget, then fine-tuned and probed on
the same tasks, the way BART's Table 1 and T5's Table 4 compare them.

    COMPARE/settings.json        what every new run and every score shares
    COMPARE/runs/OBJECTIVE/      the pretraining run of each objective named
    RUN/downstream/TASK-METHOD[-random]-seedK.json    one cell: run, task, method, seed
    COMPARE/compare.json         the table (mean and std per cell), baselines, loss curves

New runs share the model preset, tokenizer, data, row length, seed and budget: `tokens` input
tokens each (rows x seq-len per step, the same steps for all) or `budget` seconds each. Finished
runs given as directories are used as they are. Every run is then fine-tuned over `seeds` seeds
and probed (deterministic: once) on every task, next to the random-init control of each model
shape (the runs' step-0 weights). Nothing finished is redone: a run that reached its budget is
kept (an interrupted one resumes), and a cell whose file holds the same settings is read back.
"""

from __future__ import annotations

import hashlib
import json
import statistics
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from corruptions import ObjectivesError, UsageError, get
from objectives_cli.data.tasks import Task, read_task

from . import checkpoints, downstream
from .config import TrainConfig, config_for, resumed
from .finetune import FinetuneSettings, finetune, resolved
from .inference import LoadedRun, load_run
from .loop import Interrupted, train
from .probe import baselines, probe
from .report import PlainReporter, Reporter

DEFAULT_TASKS = ("fits", "next")
DEFAULT_TOKENS = 2_000_000
SHARED = ("model", "tokenizer", "data", "seq_len", "seed", "tokens", "budget", "epochs")
HEAD_FIELDS = ("sbo", "classifier", "two_stream", "electra", "generator_ratio", "sbo_offsets")
HEAD_FIELDS += ("sbo_dim", "cross_hide", "lm_bias", "embed_norm")


@dataclass(frozen=True)
class CompareSettings:
    entries: tuple[str, ...]  # objective names (pretrained now) or run directories
    tasks: tuple[str, ...] = DEFAULT_TASKS
    out: str = "compare"
    model: str = "tiny"
    tokenizer: str | None = None
    data: str | None = None
    seq_len: int | None = None
    seed: int = 0  # of every new pretraining run
    tokens: int = 0  # input tokens per new run (0 and no budget: DEFAULT_TOKENS)
    budget: float = 0.0  # seconds per new run
    seeds: int = 3  # fine-tuning seeds
    epochs: int = 3  # fine-tuning epochs at most
    methods: tuple[str, ...] = ("finetune", "probe")
    device: str = "auto"


@dataclass(frozen=True)
class Entry:
    label: str  # its row in the table
    run_dir: Path
    cfg: TrainConfig | None  # the pretraining of a named objective; None for a given run


@dataclass(frozen=True)
class Row:
    label: str
    run: LoadedRun
    random_init: bool


def compare(
    settings: CompareSettings, reporter: Reporter | None = None, warn: Callable[[str], None] = print
) -> dict[str, Any]:
    """Pretrain, fine-tune and probe; write COMPARE/compare.json and return what it holds."""
    reporter = reporter or PlainReporter()
    entries = plan(settings)
    tasks = [read_task(t) for t in dict.fromkeys(settings.tasks)]
    out = Path(settings.out)
    check_settings(out, settings)
    try:
        for entry in entries:
            if entry.cfg is not None:
                pretrain(entry, settings, reporter)
        rows = table_rows(entries, settings, warn)
        results = {
            (row.label, task.name, method): cells(row, task, method, settings, reporter)
            for row in rows
            for task in tasks
            for method in settings.methods
        }
    except (KeyboardInterrupt, Interrupted):
        raise Stopped() from None
    summary = summarise(settings, rows, tasks, results, warn)
    downstream.write_result(out / "compare.json", summary)
    return summary


class Stopped(ObjectivesError):
    exit_code = 130

    def __init__(self) -> None:
        super().__init__(
            "interrupted; every finished run and score is kept",
            "run the same command again to continue where it stopped",
        )


def plan(settings: CompareSettings) -> list[Entry]:
    """The rows to compare, each checked before any work: a run directory or an objective."""
    if len(settings.entries) < 2:
        raise UsageError(
            "compare needs at least two objectives or runs",
            "e.g. objectives compare bert-mlm clm --tokens 1M",
        )
    entries = []
    for name in settings.entries:
        path = Path(name)
        if "/" in name or (path.is_dir() and checkpoints.is_run(path)):
            if not checkpoints.is_run(path):
                raise checkpoints.RunError(
                    f"{name} is not a run directory (no config.json)",
                    "give objective names, or the --out directories of finished runs",
                )
            entries.append(Entry(path.resolve().name, path, None))
            continue
        objective = get(name).name  # an unknown name: UnknownObjective, with a suggestion
        cfg = pretraining(settings, objective, Path(settings.out) / "runs" / objective)
        entries.append(Entry(objective, Path(cfg.out), cfg))
    labels = [e.label for e in entries]
    twice = sorted({x for x in labels if labels.count(x) > 1})
    if twice:
        raise UsageError(f"'{twice[0]}' is named twice", "give each objective or run once")
    return entries


def pretraining(settings: CompareSettings, objective: str, out: Path) -> TrainConfig:
    """The shared pretraining settings of a new run: evaluated ten times, checkpointed as often."""
    tokens = settings.tokens or (0 if settings.budget else DEFAULT_TOKENS)
    cfg = config_for(
        settings.model,
        tokens,
        objective=objective,
        out=str(out),
        data=settings.data,
        tokenizer=settings.tokenizer,
        seq_len=settings.seq_len,
        seed=settings.seed,
        budget=settings.budget,
        device=settings.device,
    )
    every = max(1, cfg.steps // 10) if not settings.budget else 100
    return replace(cfg, eval_every=every, save_every=every, log_every=max(1, every // 5), keep=1)


def check_settings(out: Path, settings: CompareSettings) -> None:
    """A comparison directory keeps its shared settings: refuse others (new objectives, tasks
    and seeds may be added)."""
    mine = {k: getattr(settings, k) for k in SHARED}
    path = out / "settings.json"
    stored = downstream.read_result(path)
    if stored is not None:
        changed = [k for k in SHARED if k in stored and stored[k] != mine[k]]
        if changed:
            option = "--" + changed[0].replace("_", "-")
            raise UsageError(
                f"{out} holds a comparison made with {option} {stored[changed[0]]}",
                "give the same settings to continue it, or another --out for a new one",
            )
        return
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file", "give a directory")
    downstream.write_result(path, mine)


def pretrain(entry: Entry, settings: CompareSettings, reporter: Reporter) -> None:
    """Train the entry's run to its budget; resume one that stopped; leave a finished one."""
    assert entry.cfg is not None
    if checkpoints.list_checkpoints(entry.run_dir):
        stored = TrainConfig.from_json(checkpoints.read_config(entry.run_dir)["train"])
        cfg = resumed(stored, {"device": settings.device}, str(entry.run_dir))
        train(cfg, reporter, resume=True)
    else:
        reporter.message(f"pretraining {entry.label} ({entry.cfg.steps} steps) in {entry.run_dir}")
        train(entry.cfg, reporter)


def shape_key(run: LoadedRun) -> str:
    """What makes two runs' random-init controls the same: the model's body and tokenizer."""
    body = {k: v for k, v in asdict(run.model.cfg).items() if k not in HEAD_FIELDS}
    tok = hashlib.blake2b((run.run_dir / "tokenizer.json").read_bytes(), digest_size=8)
    return json.dumps(body, sort_keys=True) + tok.hexdigest()


def table_rows(
    entries: list[Entry], settings: CompareSettings, warn: Callable[[str], None]
) -> list[Row]:
    """Every run, then one random-init control per model shape."""
    rows = [Row(e.label, load_run(e.run_dir, settings.device, warn=warn), False) for e in entries]
    shapes: dict[str, Row] = {}
    for row in rows:
        shapes.setdefault(shape_key(row.run), row)
    archs = [r.run.model.cfg.arch for r in shapes.values()]
    controls = []
    for row in shapes.values():
        arch = row.run.model.cfg.arch
        label = f"random init ({arch})" if archs.count(arch) == 1 else f"random init ({row.label})"
        controls.append(Row(label, row.run, True))
    return rows + controls


def cells(
    row: Row, task: Task, method: str, settings: CompareSettings, reporter: Reporter
) -> list[dict[str, Any]]:
    """The results of one (run, task, method), a cell per seed: read back or computed."""
    seeds = range(settings.seeds) if method == "finetune" else range(1)
    found = []
    for seed in seeds:
        numbered = seed if method == "finetune" else None  # a probe has no seed
        path = downstream.result_path(row.run.run_dir, task, method, row.random_init, numbered)
        if method == "finetune":
            tuning = FinetuneSettings(epochs=settings.epochs, seed=seed)
            wanted = resolved(row.run, tuning)
        else:
            wanted = {"layer": "last", "pool": downstream.default_pool(row.run)}
        stored = downstream.read_result(path)
        step = 0 if row.random_init else row.run.step
        if (
            stored is not None
            and stored.get("settings") == wanted
            and stored.get("step") == step
            and stored.get("task_fingerprint") == task.fingerprint()
        ):
            found.append(stored)
            continue
        if method == "finetune":
            result = finetune(row.run, task, tuning, row.random_init)
        else:
            result = probe(row.run, task, random_init=row.random_init)
        downstream.write_result(path, result)
        reporter.message(
            f"{row.label} · {task.name} · {method}"
            + (f" seed {seed}" if method == "finetune" else "")
            + f": test accuracy {result['test']['accuracy']:.4f} ({result['seconds']:.0f} s)"
        )
        found.append(result)
    return found


def summarise(
    settings: CompareSettings,
    rows: list[Row],
    tasks: list[Task],
    results: dict[tuple[str, str, str], list[dict[str, Any]]],
    warn: Callable[[str], None],
) -> dict[str, Any]:
    """compare.json: settings, tasks with their baselines, rows of mean/std, the best per
    column (among pretrained runs) and every run's held-out loss curve."""
    columns = [f"{t.name}/{m}" for t in tasks for m in settings.methods]
    table = []
    for row in rows:
        scores = {}
        for task in tasks:
            for method in settings.methods:
                done = results[(row.label, task.name, method)]
                scores[f"{task.name}/{method}"] = spread(done)
        table.append(
            {
                "label": row.label,
                "init": "random" if row.random_init else "pretrained",
                "objective": row.run.cfg.objective,
                "arch": row.run.model.cfg.arch,
                "run": str(row.run.run_dir),
                "step": 0 if row.random_init else row.run.step,
                "scores": scores,
            }
        )
    pretrained = [r for r in table if r["init"] == "pretrained"]
    best = {c: max(pretrained, key=lambda r: r["scores"][c]["mean"])["label"] for c in columns}
    return {
        "settings": {**asdict(settings), "entries": list(settings.entries)},
        "tasks": {
            t.name: {
                "about": t.about,
                "source": t.source,
                "pair": t.pair,
                "classes": list(t.classes),
                "sizes": t.sizes(),
                "baselines": baselines(t, warn),
            }
            for t in tasks
        },
        "columns": columns,
        "rows": table,
        "best": best,
        "curves": {r.label: loss_curve(r.run.run_dir) for r in rows if not r.random_init},
    }


def spread(done: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and standard deviation of the test scores over seeds."""
    acc = [d["test"]["accuracy"] for d in done]
    f1 = [d["test"]["macro_f1"] for d in done]
    return {
        "mean": round(statistics.fmean(acc), 4),
        "std": round(statistics.stdev(acc), 4) if len(acc) > 1 else 0.0,
        "macro_f1": round(statistics.fmean(f1), 4),
        "validation": round(statistics.fmean(d["validation"]["accuracy"] for d in done), 4),
        "n": len(acc),
        "accuracies": acc,
    }


def loss_curve(run_dir: Path) -> list[dict[str, float]]:
    """(input tokens, held-out loss) at each evaluation of a run, from its metrics.jsonl."""
    rows = checkpoints.read_metrics(run_dir)
    seen = sorted({(int(r["step"]), int(r["tokens"])) for r in rows if "tokens" in r})
    per_step = seen[-1][1] / seen[-1][0] if seen and seen[-1][0] else 0.0
    tokens = dict(seen)
    return [
        {
            "step": int(r["step"]),
            "tokens": tokens.get(int(r["step"]), round(int(r["step"]) * per_step)),
            "loss": round(float(r["eval_loss"]), 4),
        }
        for r in rows
        if "eval_loss" in r
    ]

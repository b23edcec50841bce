"""Downstream evaluation: `finetune` and `probe` one run on a task, `compare` objectives.

Results go to stdout (a table on a terminal, JSON otherwise) and into the run directory
(RUN/downstream/); the task's summary, progress and warnings go to stderr.
"""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from corruptions.errors import UsageError
from objectives_cli.render import tables

from .app import app
from .options import DeviceOpt, Format, FormatOpt, parse_budget, table_or_json
from .training import FREE_GPU, cuda_memory_hint

if TYPE_CHECKING:
    from objectives_cli.data.tasks import Task
    from objectives_cli.train.inference import LoadedRun


class Baseline(str, Enum):
    random = "random"


RunArg = Annotated[Path, typer.Argument(help="A run directory written by 'objectives train'.")]
TaskOpt = Annotated[
    str,
    typer.Option(
        "--task",
        "-t",
        help="A built-in task (fits, next), a CSV/TSV/JSONL/parquet file with 'text' and "
        "'label' columns (optional 'text_pair', 'split'), or hf:NAME[:CONFIG].",
    ),
]
PoolOpt = Annotated[
    str | None,
    typer.Option(
        show_default=False,
        help="cls, last or mean. Default: the first token of an encoder ([CLS]; XLNet's last), "
        "the last token of a decoder, the decoder's last state of an encoder-decoder.",
    ),
]
BaselineOpt = Annotated[
    Baseline | None,
    typer.Option(
        show_default=False,
        help="random: the run's model before its first step (same shape, same initial "
        "weights), the control that shows what pretraining added.",
    ),
]
LayerOpt = Annotated[
    str, typer.Option(help="last (after the final LayerNorm), mean (of the blocks), or 1..L.")
]


@app.command()
def finetune(
    run_dir: RunArg,
    task: TaskOpt,
    epochs: Annotated[
        int, typer.Option(min=1, help="Passes over the training split, at most.")
    ] = 3,
    lr: Annotated[
        float | None,
        typer.Option(
            show_default=False,
            help="Peak learning rate. Default: tiny 1e-3, small 1e-4, base 3e-5.",
        ),
    ] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Examples per step.")] = 32,
    patience: Annotated[
        int, typer.Option(min=1, help="Epochs without a better validation score before stopping.")
    ] = 1,
    pool: PoolOpt = None,
    seed: Annotated[int, typer.Option(help="Seed of the head, dropout and example order.")] = 0,
    baseline: BaselineOpt = None,
    device: DeviceOpt = "auto",
    fmt: FormatOpt = None,
) -> None:
    """Fine-tune a run on a classification task (all weights and a new head): test accuracy
    and macro-F1, beside the majority-class and bag-of-words baselines.

    objectives finetune runs/sb --task fits
    """
    from objectives_cli.render.progress import RichReporter
    from objectives_cli.train import finetune as tuning
    from objectives_cli.train.report import PlainReporter

    settings = tuning.FinetuneSettings(
        epochs=epochs, lr=lr, batch_size=batch_size, patience=patience, pool=pool, seed=seed
    )
    the_task, run = task_and_run(task, run_dir, device)
    reporter: Any = RichReporter.on_terminal() or PlainReporter()
    try:
        with cuda_memory_hint(f"fine-tuning {run_dir}", f"lower --batch-size, or {FREE_GPU}"):
            result = tuning.finetune(run, the_task, settings, baseline is not None, reporter)
    finally:
        if isinstance(reporter, RichReporter):
            reporter.close()
    report(result, the_task, run, fmt)


@app.command()
def probe(
    run_dir: RunArg,
    task: TaskOpt,
    layer: LayerOpt = "last",
    pool: PoolOpt = None,
    baseline: BaselineOpt = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Texts per forward pass.")] = 64,
    device: DeviceOpt = "auto",
    fmt: FormatOpt = None,
) -> None:
    """Probe a run: a linear classifier on its frozen features (cached per layer), test
    accuracy and macro-F1 beside the majority-class and bag-of-words baselines.

    objectives probe runs/sb --task fits --layer mean
    """
    from objectives_cli.train import probe as probing

    the_task, run = task_and_run(task, run_dir, device)
    with cuda_memory_hint(f"probing {run_dir}", f"lower --batch-size, or {FREE_GPU}"):
        result = probing.probe(
            run, the_task, layer, pool, baseline is not None, batch_size, tables.warn
        )
    report(result, the_task, run, fmt)


def task_and_run(task: str, run_dir: Path, device: str) -> tuple[Task, LoadedRun]:
    """The task (its summary on stderr) and the run, both checked before any work."""
    from objectives_cli.data.tasks import read_task
    from objectives_cli.train.inference import load_run

    the_task = read_task(task)
    run = load_run(run_dir, device, warn=tables.warn)
    tables.warn(the_task.summary())
    return the_task, run


def report(result: dict[str, Any], task: Task, run: LoadedRun, fmt: Format | None) -> None:
    """Baselines beside the score; stdout first, then RUN/downstream/ (a file that cannot be
    written is an error after the result has been printed)."""
    from objectives_cli.render import downstream as view
    from objectives_cli.train import downstream, probe

    random_init = result["init"] == "random"
    result["baselines"] = probe.baselines(task, tables.warn)
    if not random_init:
        control = downstream.read_result(
            downstream.result_path(run.run_dir, task, result["method"], True)
        )
        if control is not None and control.get("settings") == result["settings"]:
            result["baselines"]["random_init"] = control["test"]["accuracy"]
    if result["cut"]:
        tables.warn(
            f"warning: {result['cut']} example(s) were longer than the model's "
            f"{run.model.cfg.max_len} positions and were cut"
        )
    if table_or_json(fmt) is Format.json:
        print(json.dumps(result))
    else:
        view.print_result(result)
    path = downstream.result_path(run.run_dir, task, result["method"], random_init)
    downstream.write_result(path, result)
    tables.warn(f"wrote {path}")


@app.command()
def compare(
    entries: Annotated[
        list[str],
        typer.Argument(
            metavar="NAME|RUN_DIR",
            help="Objectives to pretrain now (see 'objectives list'), or finished run "
            "directories to use as they are; at least two.",
            show_default=False,
        ),
    ],
    task: Annotated[
        list[str] | None,
        typer.Option(
            "--task",
            "-t",
            show_default=False,
            help="Task to evaluate on (repeatable): built-in, file or hf:NAME. Default: fits "
            "and next.",
        ),
    ] = None,
    tokens: Annotated[
        str | None,
        typer.Option(
            show_default=False,
            help="Pretraining budget: input tokens each objective reads, e.g. 2M or 500k.",
        ),
    ] = None,
    budget: Annotated[
        str | None,
        typer.Option(show_default=False, help="Pretraining budget in wall-clock time, e.g. 10m."),
    ] = None,
    model: Annotated[str, typer.Option(help="Model preset of new runs.")] = "tiny",
    tokenizer: Annotated[
        str | None, typer.Option(show_default=False, help="Tokenizer JSON. Default: built-in.")
    ] = None,
    data: Annotated[
        str | None,
        typer.Option(
            show_default=False,
            help="Pretraining text (as train --data). Default: the built-in corpus.",
        ),
    ] = None,
    seq_len: Annotated[
        int | None,
        typer.Option(min=2, show_default=False, help="Tokens per row. Default: the preset's."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of every pretraining run.")] = 0,
    seeds: Annotated[int, typer.Option(min=1, help="Fine-tuning seeds per run and task.")] = 3,
    epochs: Annotated[int, typer.Option(min=1, help="Fine-tuning epochs, at most.")] = 3,
    probe_only: Annotated[
        bool, typer.Option("--probe-only", help="Probe only; skip fine-tuning.")
    ] = False,
    out: Annotated[
        Path, typer.Option(help="Directory of the comparison: runs, results, pictures.")
    ] = Path("compare"),
    device: DeviceOpt = "auto",
    fmt: FormatOpt = None,
) -> None:
    """Pretrain objectives at an equal budget, then fine-tune and probe each on each task.

    objectives compare bert-mlm electra clm --tokens 2M --model tiny
    """
    from objectives_cli.render import compare as view
    from objectives_cli.render.progress import RichReporter
    from objectives_cli.train import compare as comparing
    from objectives_cli.train.report import PlainReporter

    if tokens is not None and budget is not None:
        raise UsageError("give --tokens or --budget, not both")
    settings = comparing.CompareSettings(
        entries=tuple(entries),
        tasks=tuple(task or comparing.DEFAULT_TASKS),
        out=str(out),
        model=model,
        tokenizer=tokenizer,
        data=data,
        seq_len=seq_len,
        seed=seed,
        tokens=parse_count(tokens) if tokens is not None else 0,
        budget=parse_budget(budget) if budget is not None else 0.0,
        seeds=seeds,
        epochs=epochs,
        methods=("probe",) if probe_only else ("finetune", "probe"),
        device=device,
    )
    reporter: Any = RichReporter.on_terminal() or PlainReporter()
    try:
        with cuda_memory_hint("comparing objectives", FREE_GPU):
            result = comparing.compare(settings, reporter, tables.warn)
    finally:
        if isinstance(reporter, RichReporter):
            reporter.close()
    written = view.write_outputs(result, out)
    if table_or_json(fmt) is Format.json:
        print(json.dumps(result))
    else:
        view.print_table(result)
    tables.warn("wrote " + ", ".join(str(p) for p in written))


def parse_count(text: str) -> int:
    """'2M', '500k', '1.5m' or a plain number -> an integer."""
    scale = {"k": 10**3, "m": 10**6, "g": 10**9, "b": 10**9}
    value = text.strip().lower().replace("_", "").replace(",", "")
    try:
        number = float(value[:-1]) * scale[value[-1]] if value[-1:] in scale else float(value)
    except ValueError:
        number = -1.0
    if number < 1:
        raise UsageError(
            f"cannot read the token count '{text}'", "write it like 2M, 500k or 800000"
        )
    return int(number)

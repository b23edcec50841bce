"""The training commands: `train`, `eval` and `fill`.

Progress, warnings and the summary go to stderr (a Rich progress bar on a terminal, one line per
log interval otherwise); `eval` and `fill` print their results on stdout, as a table or JSON.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import torch
import typer
from rich.console import Console
from rich.table import Table

from corruptions import ObjectivesError, UsageError

from . import inference
from .app import app
from .config import PRESET_DEFAULTS, RESUMABLE, TrainConfig, config_for
from .progress import PlainReporter, RichReporter
from .train import train as run_training


class Format(str, Enum):
    table = "table"
    json = "json"


FormatOpt = Annotated[
    Format | None,
    typer.Option(
        "--format",
        "-f",
        show_default=False,
        help="table (for people) or json (for programs). Default: table on a terminal, else json.",
    ),
]
DeviceOpt = Annotated[str, typer.Option(help="auto (CUDA when available), cpu, cuda or cuda:N.")]


def parse_budget(text: str) -> float:
    """'2h', '90m', '1h30m', '45s' or plain seconds -> seconds."""
    parts = re.fullmatch(
        r"\s*(?:(\d+(?:\.\d+)?)h)?\s*(?:(\d+(?:\.\d+)?)m)?\s*(?:(\d+(?:\.\d+)?)s?)?\s*", text
    )
    if not text.strip() or parts is None or not any(parts.groups()):
        raise UsageError(
            f"cannot read the time budget '{text}'", "write it like 2h, 90m, 1h30m or 600s"
        )
    hours, minutes, seconds = (float(g) if g else 0.0 for g in parts.groups())
    total = hours * 3600 + minutes * 60 + seconds
    if total <= 0:  # 0 would silently mean "no budget" and train --steps instead
        raise UsageError(f"the time budget '{text}' is zero", "give a positive budget, e.g. 2h")
    return total


def parse_params(items: list[str]) -> tuple[tuple[str, str], ...]:
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--param expects KEY=VALUE, got '{item}'", "e.g. --param rate=0.2")
        out[key.strip()] = value.strip()
    return tuple(out.items())


@app.command()
def train(
    objective: Annotated[
        str | None,
        typer.Option(
            "--objective",
            "-o",
            show_default=False,
            help="Objective name or alias (see 'objectives list').",
        ),
    ] = None,
    data: Annotated[
        str | None,
        typer.Option(
            show_default=False,
            help="Training text: a file (documents separated by blank lines), a "
            "directory, .jsonl/.parquet with a 'text' column, or hf:NAME[:CONFIG]. Default: the "
            "built-in corpus.",
        ),
    ] = None,
    eval_data: Annotated[
        str | None,
        typer.Option(
            show_default=False,
            help="Held-out text. Default: 1% of the documents of --data, chosen "
            "by a hash of their text (the built-in corpus has its own split).",
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            show_default=False,
            help="Model size: tiny (default; tests, CPU demos), small, or base "
            "(BERT-base / BART-base / GPT-2 small).",
        ),
    ] = None,
    steps: Annotated[
        int | None, typer.Option(min=1, show_default=False, help="Optimizer steps. Default 1000.")
    ] = None,
    tokens: Annotated[
        int | None,
        typer.Option(min=1, show_default=False, help="Train on this many tokens (sets --steps)."),
    ] = None,
    budget: Annotated[
        str | None,
        typer.Option(
            show_default=False,
            help="Wall-clock budget, e.g. 2h or 45m: train until then, with the "
            "learning-rate schedule stretched over it.",
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(show_default=False, help="Run directory. Default: runs/OBJECTIVE."),
    ] = None,
    resume: Annotated[
        Path | None,
        typer.Option(
            show_default=False, help="Continue the run in this directory where it stopped."
        ),
    ] = None,
    param: Annotated[
        list[str] | None,
        typer.Option(
            "--param",
            "-p",
            metavar="KEY=VALUE",
            show_default=False,
            help="Objective parameter override (repeatable).",
        ),
    ] = None,
    tokenizer: Annotated[
        str | None,
        typer.Option(
            show_default=False, help="Tokenizer JSON file. Default: the built-in tokenizer."
        ),
    ] = None,
    seq_len: Annotated[
        int | None,
        typer.Option(
            min=2, show_default=False, help="Tokens per row (tiny 128, small 256, base 512)."
        ),
    ] = None,
    batch_size: Annotated[
        int | None,
        typer.Option(
            min=1, show_default=False, help="Rows per micro-batch per process (tiny 16, else 32)."
        ),
    ] = None,
    grad_accum: Annotated[
        int | None,
        typer.Option(
            min=1, show_default=False, help="Micro-batches per optimizer step. Default 1."
        ),
    ] = None,
    lr: Annotated[
        float | None,
        typer.Option(
            show_default=False, help="Peak learning rate (tiny 2e-3, small 1e-3, base 4e-4)."
        ),
    ] = None,
    warmup: Annotated[
        float | None,
        typer.Option(
            show_default=False, help="Warmup: share of the run (< 1) or steps (>= 1). Default 0.05."
        ),
    ] = None,
    schedule: Annotated[
        str | None,
        typer.Option(show_default=False, help="Decay after warmup: linear (default) or cosine."),
    ] = None,
    min_lr: Annotated[
        float | None,
        typer.Option(
            show_default=False, help="Final learning rate as a share of --lr. Default 0.1."
        ),
    ] = None,
    weight_decay: Annotated[
        float | None, typer.Option(show_default=False, help="Default 0.01.")
    ] = None,
    clip: Annotated[
        float | None,
        typer.Option(show_default=False, help="Gradient-norm clip, 0 = off. Default 1.0."),
    ] = None,
    dropout: Annotated[float | None, typer.Option(show_default=False, help="Default 0.")] = None,
    positions: Annotated[
        str | None,
        typer.Option(show_default=False, help="learned (default) or rotary position embeddings."),
    ] = None,
    packing: Annotated[
        str | None,
        typer.Option(
            show_default=False,
            help="auto (default), documents, rows or concat; see docs/training.md.",
        ),
    ] = None,
    seed: Annotated[int | None, typer.Option(show_default=False, help="Default 0.")] = None,
    device: Annotated[
        str | None,
        typer.Option(show_default=False, help="auto (CUDA when available), cpu, cuda or cuda:N."),
    ] = None,
    precision: Annotated[
        str | None,
        typer.Option(
            show_default=False, help="auto (bf16 autocast on CUDA, fp32 on CPU), fp32 or bf16."
        ),
    ] = None,
    compile_model: Annotated[
        bool | None,
        typer.Option("--compile/--no-compile", show_default=False, help="torch.compile the model."),
    ] = None,
    log_every: Annotated[
        int | None,
        typer.Option(min=1, show_default=False, help="Steps per metrics line. Default 10."),
    ] = None,
    eval_every: Annotated[
        int | None,
        typer.Option(
            min=0,
            show_default=False,
            help="Steps between evaluations; 0 = start and end. Default 0.",
        ),
    ] = None,
    eval_batches: Annotated[
        int | None,
        typer.Option(
            min=1, show_default=False, help="Held-out micro-batches per evaluation. Default 8."
        ),
    ] = None,
    save_every: Annotated[
        int | None,
        typer.Option(
            min=0, show_default=False, help="Steps between checkpoints; 0 = at the end. Default 0."
        ),
    ] = None,
    keep: Annotated[
        int | None, typer.Option(min=1, show_default=False, help="Checkpoints kept. Default 3.")
    ] = None,
) -> None:
    """Train a model with an objective; checkpoints, metrics and config go to the run directory.

    objectives train -o spanbert --data corpus/ --model base --steps 20000 --out runs/sb
    """
    settings: dict[str, Any] = {
        "data": data,
        "eval_data": eval_data,
        "steps": steps,
        "tokenizer": tokenizer,
        "seq_len": seq_len,
        "batch_size": batch_size,
        "grad_accum": grad_accum,
        "lr": lr,
        "warmup": warmup,
        "schedule": schedule,
        "min_lr": min_lr,
        "weight_decay": weight_decay,
        "clip": clip,
        "dropout": dropout,
        "positions": positions,
        "packing": packing,
        "seed": seed,
        "device": device,
        "precision": precision,
        "compile": compile_model,
        "log_every": log_every,
        "eval_every": eval_every,
        "eval_batches": eval_batches,
        "save_every": save_every,
        "keep": keep,
        "budget": parse_budget(budget) if budget else None,
        "params": parse_params(param) if param else None,
    }
    world = int(os.environ.get("WORLD_SIZE", "1"))  # torchrun: --tokens counts every rank
    if resume is not None:
        if out is not None and out.resolve() != resume.resolve():
            raise UsageError(
                "--out cannot be combined with --resume: the run continues in its own directory",
                f"copy {resume} first to continue a copy of it",
            )
        cfg = resumed_config(resume, objective, model, tokens, settings)
    else:
        if objective is None:
            raise UsageError(
                "which objective? give --objective (or --resume RUN_DIR)",
                "see 'objectives list'; e.g. objectives train -o bert-mlm",
            )
        model = model or "tiny"
        if model not in PRESET_DEFAULTS:
            raise UsageError(
                f"unknown model '{model}'", f"use one of: {', '.join(PRESET_DEFAULTS)}"
            )
        cfg = config_for(
            model,
            tokens or 0,
            world,
            objective=objective,
            out=str(out or Path("runs") / objective),
            **settings,
        )
    stderr = Console(stderr=True)
    reporter: Any = RichReporter(stderr) if stderr.is_terminal else PlainReporter()
    try:
        with cuda_memory_hint(
            f"({cfg.batch_size} rows x {cfg.seq_len} tokens, model {cfg.model})",
            "lower --batch-size and raise --grad-accum to keep the step size, shorten "
            "--seq-len, or pick a smaller --model",
        ):
            run_training(cfg, reporter, resume=resume is not None)
    finally:
        if isinstance(reporter, RichReporter):
            reporter.close()


FREE_GPU = "free GPU memory (other processes?) or use --device cpu"


@contextmanager
def cuda_memory_hint(what: str, hint: str) -> Iterator[None]:
    """Turn CUDA running out of memory into one error line and a hint, not a traceback."""
    try:
        yield
    except torch.cuda.OutOfMemoryError:
        raise ObjectivesError(f"CUDA ran out of memory {what}", hint) from None


def resumed_config(
    run_dir: Path,
    objective: str | None,
    model: str | None,
    tokens: int | None,
    settings: dict[str, Any],
) -> TrainConfig:
    """The stored config of `run_dir`, with only the settings a resumed run may change."""
    from . import checkpoints

    stored = TrainConfig.from_json(checkpoints.read_config(run_dir)["train"])
    given = {k: v for k, v in settings.items() if v is not None}
    if objective is not None and objective != stored.objective:
        given["objective"] = objective
    if model is not None and model != stored.model:
        given["model"] = model
    if tokens:
        raise UsageError(
            "--tokens cannot be combined with --resume", "give --steps to train longer"
        )
    fixed = sorted(k for k, v in given.items() if k not in RESUMABLE and getattr(stored, k) != v)
    if fixed:
        option = "--" + fixed[0].replace("_", "-")
        raise UsageError(
            f"{option} cannot change when resuming (the run used {getattr(stored, fixed[0])!r})",
            "resuming continues the same run; start a new one with another --out",
        )
    return TrainConfig.from_json(
        {**stored.to_json(), **{k: given[k] for k in given if k in RESUMABLE}, "out": str(run_dir)}
    )


def default_format(fmt: Format | None) -> Format:
    return fmt or (Format.table if sys.stdout.isatty() else Format.json)


@app.command("eval")
def eval_command(
    run_dir: Annotated[Path, typer.Argument(help="A run directory written by 'objectives train'.")],
    data: Annotated[
        str | None,
        typer.Option(
            show_default=False,
            help="Text to evaluate on (as train --data). Default: the run's held-out split.",
        ),
    ] = None,
    batches: Annotated[int, typer.Option(min=1, help="Micro-batches to evaluate at most.")] = 50,
    device: DeviceOpt = "auto",
    fmt: FormatOpt = None,
) -> None:
    """Held-out loss and accuracy per loss term of a trained run.

    objectives eval runs/sb --data held_out.txt
    """
    warn = Console(stderr=True).print
    with cuda_memory_hint(f"evaluating {run_dir}", FREE_GPU):
        run = inference.load_run(run_dir, device, warn=lambda text: warn(text, markup=False))
        result = inference.evaluate_run(run, data, batches)
    if default_format(fmt) is Format.json:
        print(json.dumps(result))
        return
    table = Table(
        title=f"{run.cfg.objective} at step {run.step} on {result['data']} ({result['rows']} rows)"
    )
    for column in ("term", "loss", "accuracy"):
        table.add_column(column, justify="left" if column == "term" else "right")
    terms = sorted({k.rsplit("_", 1)[0] for k in result if k.endswith("_acc")})
    for term in terms:
        table.add_row(term, f"{result[f'{term}_loss']:.4f}", f"{result[f'{term}_acc']:.4f}")
    table.add_row("total (weighted)", f"{result['loss']:.4f}", "")
    Console().print(table)


@app.command()
def fill(
    run_dir: Annotated[Path, typer.Argument(help="A run directory written by 'objectives train'.")],
    text: Annotated[
        str,
        typer.Argument(
            help="Text with [MASK] (encoders), sentinels or masks (seq2seq), or a prompt "
            "(decoders)."
        ),
    ],
    top_k: Annotated[int, typer.Option(min=1, help="Candidates shown per [MASK].")] = 5,
    max_new: Annotated[
        int | None,
        typer.Option(
            min=1,
            show_default=False,
            help="Most tokens generated. Default: 40 for a continuation, the input's length + 40 "
            "for a seq2seq target; MASS writes one token per [MASK].",
        ),
    ] = None,
    device: DeviceOpt = "auto",
    fmt: FormatOpt = None,
) -> None:
    """Fill in masks (encoder), reconstruct a corrupted input (seq2seq) or continue text (decoder).

    objectives fill runs/sb "The capital of France is [MASK] ."
    """
    warn = Console(stderr=True).print
    with cuda_memory_hint(f"filling in with {run_dir}", FREE_GPU):
        run = inference.load_run(run_dir, device, warn=lambda text: warn(text, markup=False))
        if run.info.arch == "encoder":
            result = inference.fill_masks(run, text, top_k)
        else:
            result = inference.generate(run, text, max_new)
    if default_format(fmt) is Format.json:
        print(json.dumps(result))
        return
    console = Console()
    if result["kind"] == "masks":
        table = Table(title=result["output"])
        table.add_column("position", justify="right")
        for k in range(top_k):
            table.add_column(f"#{k + 1}")
        for entry in result["masks"]:
            table.add_row(
                str(entry["position"]),
                *(f"{c['token']} {c['probability']:.3f}" for c in entry["top"]),
            )
        console.print(table)
    else:
        console.print(result["output"], markup=False, highlight=False)


__all__ = ["eval_command", "fill", "train"]

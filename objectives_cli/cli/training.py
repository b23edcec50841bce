"""The training commands: `train`, `eval` and `fill`.

`train`'s options are generated from the fields of `TrainConfig` (train/config.py), where each
setting is declared once with its default, help text and help panel; only the options that are
not settings (`--tokens`, `--resume`) and the ones typed differently from how they are stored
(`--param`, `--budget`, `--compile`) are written here. Progress, warnings and the summary go to
stderr; `eval` and `fill` print their results on stdout, as a table or JSON.
"""

from __future__ import annotations

import inspect
import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import Field, fields
from pathlib import Path
from typing import Annotated, Any, get_type_hints

import typer

from corruptions.errors import ObjectivesError, UsageError
from objectives_cli.render import tables
from objectives_cli.train.config import PANELS, PRESET_DEFAULTS, TrainConfig, config_for, resumed

from .app import app
from .options import (
    DeviceOpt,
    Format,
    FormatOpt,
    at_least,
    complete_objective,
    parse_budget,
    parse_params,
    table_or_json,
)

# Settings typed on the command line otherwise than they are stored: option names, the type
# typed, and how that becomes the stored value.
NAMES = {
    "objective": ("--objective", "-o"),
    "params": ("--param", "-p"),
    "compile": ("--compile/--no-compile",),
}
TYPED = {"params": list[str], "budget": str}
METAVARS = {  # where the option's name in capitals (the default, see app.metavar) says less
    "objective": "NAME",
    "params": "KEY=VALUE",
    "data": "PATH",
    "eval_data": "PATH",
    "tokenizer": "FILE",
    "out": "DIR",
    "budget": "TIME",
}
NOTES = {"objective": "Required for a new run."}  # what the command line adds to a setting's help
NO_DEFAULT = {"objective", "params", "budget", "compile"}  # settings whose help shows no default
PARSE: dict[str, Callable[[Any], Any]] = {"params": parse_params, "budget": parse_budget}
EXTRA = {  # options of `train` that are not settings of the run
    "tokens": (
        int,
        typer.Option(
            callback=at_least(1),
            show_default=False,
            help="Train on this many tokens (sets --steps).",
            rich_help_panel=PANELS[2],
        ),
    ),
    "resume": (
        Path,
        typer.Option(
            metavar="RUN_DIR",
            show_default=False,
            help="Continue the run in this directory where it stopped.",
            rich_help_panel=PANELS[4],
        ),
    ),
}


def default_text(f: Field[Any]) -> str:
    """What the help says of a setting's default: the value, or each preset's."""
    if f.name in PRESET_DEFAULTS["tiny"]:
        return "(" + ", ".join(f"{m} {d[f.name]:g}" for m, d in PRESET_DEFAULTS.items()) + ")"
    if "Default" in f.metadata["help"] or f.name in NO_DEFAULT:
        return ""
    return f"Default {f.default}."


def setting_option(f: Field[Any], kind: Any) -> inspect.Parameter:
    """The `train` option of one `TrainConfig` field (None when not given on the command line)."""
    meta = f.metadata
    option = typer.Option(
        *NAMES.get(f.name, ()),
        help=" ".join(filter(None, (meta["help"], NOTES.get(f.name), default_text(f)))),
        show_default=False,
        callback=None if meta["least"] is None else at_least(meta["least"]),
        rich_help_panel=meta["panel"],
        metavar=METAVARS.get(f.name),
        autocompletion=complete_objective if f.name == "objective" else None,
    )
    annotation = Annotated[TYPED.get(f.name, kind) | None, option]  # type: ignore[valid-type]
    return inspect.Parameter(
        f.name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=annotation
    )


def train_options() -> list[inspect.Parameter]:
    """Every option of `train`, grouped by help panel."""
    hints = get_type_hints(TrainConfig)
    params = [
        setting_option(f, next(t for t in getattr(hints[f.name], "__args__", (hints[f.name],))))
        for f in fields(TrainConfig)
    ]
    params += [
        inspect.Parameter(
            name,
            inspect.Parameter.KEYWORD_ONLY,
            default=None,
            annotation=Annotated[kind | None, opt],
        )
        for name, (kind, opt) in EXTRA.items()
    ]
    order = {panel: i for i, panel in enumerate(PANELS)}
    return sorted(params, key=lambda p: order[p.annotation.__metadata__[0].rich_help_panel])


def train(**options: Any) -> None:
    """Train a model with an objective.

    Checkpoints, metrics and the config go to the run directory (--out).

    objectives train -o spanbert --data corpus/ --model base --steps 20000 --out runs/sb
    """
    from objectives_cli.render.progress import RichReporter
    from objectives_cli.train.loop import train as run_training
    from objectives_cli.train.report import PlainReporter

    resume, tokens = options.pop("resume"), options.pop("tokens")
    settings = {k: PARSE[k](v) if v is not None and k in PARSE else v for k, v in options.items()}
    cfg = resumed_config(resume, tokens, settings) if resume else fresh_config(tokens, settings)
    reporter: Any = RichReporter.on_terminal() or PlainReporter()
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


train.__signature__ = inspect.Signature(train_options())  # type: ignore[attr-defined]
train.__annotations__ = {p.name: p.annotation for p in train.__signature__.parameters.values()}  # type: ignore[attr-defined]
app.command()(train)


def fresh_config(tokens: int | None, settings: dict[str, Any]) -> TrainConfig:
    """A new run's config: the preset's defaults for whatever the options leave out."""
    objective = settings["objective"]
    if objective is None:
        raise UsageError(
            "which objective? give --objective (or --resume RUN_DIR)",
            "see 'objectives list'; e.g. objectives train -o bert-mlm",
        )
    model = settings.pop("model") or "tiny"
    if model not in PRESET_DEFAULTS:
        raise UsageError(f"unknown model '{model}'", f"use one of: {', '.join(PRESET_DEFAULTS)}")
    settings["out"] = settings["out"] or str(Path("runs") / objective)
    world = int(os.environ.get("WORLD_SIZE", "1"))  # torchrun: --tokens counts every rank
    return config_for(model, tokens or 0, world, **settings)


def resumed_config(run_dir: Path, tokens: int | None, settings: dict[str, Any]) -> TrainConfig:
    """The stored config of `run_dir`, with only the settings a resumed run may change."""
    from objectives_cli.train.setup import read_run

    out = settings.pop("out")
    if out is not None and Path(out).resolve() != run_dir.resolve():
        raise UsageError(
            "--out cannot be combined with --resume: the run continues in its own directory",
            f"copy {run_dir} first to continue a copy of it",
        )
    if tokens:
        raise UsageError(
            "--tokens cannot be combined with --resume", "give --steps to train longer"
        )
    stored = read_run(run_dir).train
    given = {k: v for k, v in settings.items() if v is not None}
    return resumed(stored, given, str(run_dir))


FREE_GPU = "free GPU memory (other processes?) or use --device cpu"


@contextmanager
def cuda_memory_hint(what: str, hint: str) -> Iterator[None]:
    """Turn CUDA running out of memory into one error line and a hint, not a traceback."""
    import torch

    try:
        yield
    except torch.cuda.OutOfMemoryError:
        raise ObjectivesError(f"CUDA ran out of memory {what}", hint) from None


@app.command("eval")
def eval_command(
    run_dir: Annotated[
        Path,
        typer.Argument(metavar="RUN_DIR", help="A run directory written by 'objectives train'."),
    ],
    data: Annotated[
        str | None,
        typer.Option(
            metavar="PATH",
            show_default=False,
            help="Text to evaluate on (as train --data). Default: the run's held-out split.",
        ),
    ] = None,
    batches: Annotated[
        int | None,
        typer.Option(
            callback=at_least(1),
            show_default=False,
            help="Micro-batches to evaluate at most. Default: the run's --eval-batches, so the "
            "held-out figures are those of its final evaluation.",
        ),
    ] = None,
    device: DeviceOpt = "auto",
    fmt: FormatOpt = None,
) -> None:
    """Held-out loss and accuracy of a trained run, per loss term.

    objectives eval runs/sb --data held_out.txt
    """
    from objectives_cli.train import inference

    with cuda_memory_hint(f"evaluating {run_dir}", FREE_GPU):
        run = inference.load_run(run_dir, device, warn=tables.warn)
        result = inference.evaluate_run(run, data, batches)
    if table_or_json(fmt) is Format.json:
        print(json.dumps(result, allow_nan=False))  # NaN is not JSON; evaluate_run refuses it
    else:
        tables.print_eval(result, run.cfg.objective, run.step)


@app.command()
def fill(
    run_dir: Annotated[
        Path,
        typer.Argument(metavar="RUN_DIR", help="A run directory written by 'objectives train'."),
    ],
    text: Annotated[
        str,
        typer.Argument(
            metavar="TEXT",
            help="Text with [MASK] (encoders), sentinels or masks (seq2seq), or a prompt "
            "(decoders).",
        ),
    ],
    top_k: Annotated[
        int | None,
        typer.Option(
            callback=at_least(1),
            show_default=False,
            help="Encoders: candidates shown per [MASK] (default 5). Sampling: draw from the K "
            "most likely tokens only (default: all).",
        ),
    ] = None,
    max_new: Annotated[
        int | None,
        typer.Option(
            callback=at_least(1),
            show_default=False,
            help="Most tokens generated. Default: 40 for a continuation, the input's length + 40 "
            "for a seq2seq target; MASS writes one token per [MASK].",
        ),
    ] = None,
    temperature: Annotated[
        float,
        typer.Option(
            callback=at_least(0),
            rich_help_panel="Decoding",
            help="0 writes the most likely token each step (greedy); above 0 samples at this "
            "temperature.",
        ),
    ] = 0.0,
    top_p: Annotated[
        float,
        typer.Option(
            rich_help_panel="Decoding",
            help="Sampling: draw from the fewest tokens that hold this much probability.",
        ),
    ] = 1.0,
    beams: Annotated[
        int,
        typer.Option(
            callback=at_least(1),
            rich_help_panel="Decoding",
            help="Beam search with this many beams (transformers' defaults).",
        ),
    ] = 1,
    seed: Annotated[int, typer.Option(rich_help_panel="Decoding", help="Sampling seed.")] = 0,
    device: DeviceOpt = "auto",
    fmt: FormatOpt = None,
) -> None:
    """Fill in masks or continue text with a trained run.

    Encoders fill each [MASK], seq2seq models write what the decoder reconstructs, decoders
    continue the text: greedily, by sampling or by beam search, as transformers' generate does.

    objectives fill runs/sb "The capital of France is [MASK] ."
    """
    from objectives_cli.train import generation, inference
    from objectives_cli.train.decoding import Decoding

    with cuda_memory_hint(f"filling in with {run_dir}", FREE_GPU):
        run = inference.load_run(run_dir, device, warn=tables.warn)
        if run.info.arch == "encoder":
            if temperature or beams > 1 or top_p < 1:
                raise UsageError(
                    "an encoder ranks candidates for each [MASK]; --temperature, --top-p and "
                    "--beams are for decoders and encoder-decoders",
                    "use --top-k to see more candidates",
                )
            top_k = top_k or 5
            result = inference.fill_masks(run, text, top_k)
        else:
            how = Decoding(temperature, top_k or 0, top_p, beams, seed=seed)
            result = generation.generate(run, text, max_new, how)
    if table_or_json(fmt) is Format.json:
        print(json.dumps(result, allow_nan=False))
    else:
        tables.print_fill(result, top_k or 5)

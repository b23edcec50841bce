"""The user-facing commands: `list`, `describe`, `corrupt`, and `objectives --version`.

Every objective comes from the registry, so a newly registered one shows up here unchanged.
Usage errors (Click's own included) become one `error:` line and a `hint:` line, exit 2; data
errors exit 1 (see main.py).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from enum import Enum
from importlib import metadata
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

try:  # recent typer carries its own copy of Click
    from typer._click.exceptions import NoArgsIsHelpError, UsageError
except ImportError:  # pragma: no cover
    from click.exceptions import NoArgsIsHelpError, UsageError  # type: ignore[no-redef]

import corruptions
from corruptions.registry import params_of

from . import output, views
from .app import app
from .data import read_documents, read_piped_or_default
from .examples import corrupt_documents
from .tokenizer import load_tokenizer, vocab_of

SHOW_LIMIT = 5  # examples show/text print unless --limit says otherwise


class CorruptFormat(str, Enum):
    show = "show"
    text = "text"
    jsonl = "jsonl"


class ListFormat(str, Enum):
    table = "table"
    json = "json"


class OneLineUsageErrors(TyperGroup):
    """Click's usage errors (bad option, missing argument, bad value) as one `error:` line and
    one `hint:` line on stderr, exit status 2, instead of Click's usage block. Done here rather
    than in main.run so that `CliRunner().invoke(app, ...)` sees the same status."""

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: typer.Context | None = None,
        **extra: Any,
    ) -> typer.Context:
        with one_line_usage_errors():
            return super().make_context(info_name, args, parent=parent, **extra)

    def invoke(self, ctx: typer.Context) -> Any:
        with one_line_usage_errors():
            return super().invoke(ctx)


@contextmanager
def one_line_usage_errors() -> Iterator[None]:
    try:
        yield
    except NoArgsIsHelpError:  # `objectives` alone prints the help
        raise
    except UsageError as exc:
        message = " ".join(exc.format_message().split()).rstrip(".")
        command = exc.ctx.command_path if exc.ctx is not None else "objectives"
        if os.environ.get("RANK", "0") == "0":  # under torchrun every rank parses the same argv
            output.print_error(message[:1].lower() + message[1:], f"see '{command} --help'")
        raise typer.Exit(2) from None


def version() -> str:
    """The installed version, or the one in pyproject.toml when run from a checkout."""
    try:
        return metadata.version("objectives")
    except metadata.PackageNotFoundError:
        pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
        found = re.search(r'^version = "([^"]+)"', pyproject.read_text(), re.MULTILINE)
        return found.group(1) if found else "unknown"


def print_version(value: bool) -> None:
    if value:
        typer.echo(f"objectives {version()}")
        raise typer.Exit()


@app.callback(cls=OneLineUsageErrors)
def main(
    show_version: Annotated[
        bool,
        typer.Option(
            "--version", help="Print the version and exit.", callback=print_version, is_eager=True
        ),
    ] = False,
) -> None:
    """See, compare and train with pretraining objectives (BERT, SpanBERT, XLNet, MASS, BART,
    T5, ...)."""


@app.command("list")
def list_command(
    pattern: Annotated[str, typer.Argument(help="Only names matching this glob.")] = "*",
    fmt: Annotated[
        ListFormat,
        typer.Option("--format", "-f", help="table (for people) or json (for machines)."),
    ] = ListFormat.table,
) -> None:
    """List the registered objectives: architecture, paper and key defaults.

    objectives list 'bart-*'   |   objectives list --format json
    """
    objectives = corruptions.list_objectives(pattern)
    if not objectives:
        raise corruptions.UsageError(
            f"no objective matches '{pattern}'",
            "names and aliases are matched as globs, e.g. 'bart*'; see 'objectives list'",
        )
    if fmt is ListFormat.json:
        output.write_json([output.objective_record(o) for o in objectives])
    else:
        output.print_objectives(objectives, output.use_rich())


@app.command()
def describe(
    name: Annotated[str, typer.Argument(metavar="NAME", help="An objective name or alias.")],
) -> None:
    """Explain one objective: parameters, paper, what it needs, and an example.

    objectives describe t5-span
    """
    objective = corruptions.get(name)
    tok = load_tokenizer()
    output.print_description(
        objective, views.sample(objective.name, tok, vocab_of(tok)), output.use_rich()
    )


@app.command()
def corrupt(
    objective: Annotated[
        str,
        typer.Option(
            "--objective",
            "-o",
            show_default=False,
            help="Objective name or alias (see 'objectives list'); a+b composes BART noising.",
        ),
    ],
    path: Annotated[
        str | None,
        typer.Argument(
            show_default=False,
            metavar="PATH|-",
            help="Text file (documents separated by blank lines), directory, .jsonl/.parquet "
            "with a 'text' column, hf:NAME[:CONFIG], or '-' for stdin. Default: text piped into "
            "stdin, else the built-in corpus.",
        ),
    ] = None,
    data: Annotated[
        str | None,
        typer.Option(
            "--data", show_default=False, help="The text, as PATH (give one or the other)."
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed; same input and seed, same output.")] = 0,
    param: Annotated[
        list[str] | None,
        typer.Option(
            "--param",
            "-p",
            metavar="KEY=VALUE",
            show_default=False,
            help="Override a parameter (repeatable); see 'objectives describe NAME'.",
        ),
    ] = None,
    tokenizer: Annotated[
        Path | None,
        typer.Option(
            "--tokenizer",
            dir_okay=False,
            show_default=False,
            help="Tokenizer JSON file. Default: the built-in tokenizer.",
        ),
    ] = None,
    max_length: Annotated[
        int,
        typer.Option(
            "--max-length",
            min=1,
            help="Tokens per example: documents are cut into blocks of at most this many tokens.",
        ),
    ] = 128,
    limit: Annotated[
        int | None,
        typer.Option(
            min=0,
            show_default=False,
            help=f"Number of examples; default {SHOW_LIMIT} for show/text, all for jsonl; 0 = all.",
        ),
    ] = None,
    fmt: Annotated[
        CorruptFormat | None,
        typer.Option(
            "--format",
            "-f",
            show_default=False,
            help="show (colour on a terminal), text (show, always plain) or jsonl (one JSON object "
            "per example). Default: show on a terminal, jsonl otherwise.",
        ),
    ] = None,
    show: Annotated[bool, typer.Option("--show", help="Same as --format show.")] = False,
) -> None:
    """Corrupt text with an objective and print what the model sees and predicts.

    objectives corrupt -o t5-span --show   |   cat notes.txt | objectives corrupt -o bart -
    """
    if path is not None and data is not None:
        raise corruptions.UsageError("give the text as PATH or with --data, not both")
    if show and fmt not in (None, CorruptFormat.show):
        raise corruptions.UsageError(f"--show contradicts --format {fmt.value}")
    if show:
        fmt = CorruptFormat.show
    if fmt is None:
        fmt = CorruptFormat.show if output.is_terminal() else CorruptFormat.jsonl
    if limit is None:
        limit = None if fmt is CorruptFormat.jsonl else SHOW_LIMIT
    overrides = parse_params(param or [])
    corruption = corruptions.create(objective, **overrides)
    name, params = resolved(objective, overrides)
    tok = load_tokenizer(tokenizer)
    vocab = vocab_of(tok)
    source = path if path is not None else data
    documents = read_documents(source) if source is not None else read_piped_or_default()
    examples = corrupt_documents(corruption, tok, vocab, documents, max_length, seed, limit or None)
    if fmt is CorruptFormat.jsonl:
        output.write_jsonl(output.jsonl_row(e, name, params, seed, tok) for e in examples)
    else:
        pieces = views.Pieces(tok, vocab)
        output.print_views(
            (views.build(e, pieces) for e in examples),
            name,
            fmt is CorruptFormat.show and output.use_rich(),
        )


def resolved(objective: str, overrides: dict[str, str]) -> tuple[str, dict[str, Any]]:
    """The canonical name and every parameter's value, of each part of an `a+b` composition."""
    names, params = [], {}
    for part in objective.split("+"):
        found = corruptions.get(part.strip())
        mine = {p.name for p in found.params}
        built = corruptions.create(found.name, **{k: v for k, v in overrides.items() if k in mine})
        names.append(found.name)
        params.update({p.name: p.default for p in params_of(built)})
    return "+".join(names), params


def parse_params(items: list[str]) -> dict[str, str]:
    """`key=value` strings as a dict (the last one wins); values stay strings for `create`."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise corruptions.InvalidParameter(
                f"--param expects KEY=VALUE, got '{item}'", "for example --param rate=0.3"
            )
        out[key.strip()] = value
    return out

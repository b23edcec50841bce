"""The Typer application: usage errors as one line, `--version`, and the group every command
module registers on (see main.py)."""

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
    from typer._click.exceptions import NoArgsIsHelpError, NoSuchOption, UsageError
except ImportError:  # pragma: no cover
    from click.exceptions import (  # type: ignore[no-redef]
        NoArgsIsHelpError,
        NoSuchOption,
        UsageError,
    )

from objectives_cli.render.output import print_error

HELP_NAMES = ["-h", "--help"]  # -h as every argparse-era tool


class ObjectivesGroup(TyperGroup):
    """The root command: help that reads like git's (`tidy_help`), `objectives` alone printing
    it with status 0, and Click's usage errors (bad option, missing argument, bad value) as one
    `error:` line and one `hint:` line on stderr, exit status 2, instead of Click's usage block.
    Done here rather than in main.run so that `CliRunner().invoke(app, ...)` sees the same."""

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: typer.Context | None = None,
        **extra: Any,
    ) -> typer.Context:
        tidy_help(self)  # here: Typer adds the completion options after building the group
        with one_line_usage_errors():
            return super().make_context(info_name, args, parent=parent, **extra)

    def invoke(self, ctx: typer.Context) -> Any:
        with one_line_usage_errors():
            return super().invoke(ctx)


@contextmanager
def one_line_usage_errors() -> Iterator[None]:
    try:
        yield
    except NoArgsIsHelpError as exc:  # `objectives` or `objectives tokenizer` alone: the help
        text = exc.format_message()  # empty when Rich has printed it already
        if text:
            typer.echo(text)
        raise typer.Exit(0) from None
    except UsageError as exc:
        message = " ".join(exc.format_message().split()).rstrip(".")
        command = exc.ctx.command_path if exc.ctx is not None else "objectives"
        hint = f"see '{command} --help'"
        if isinstance(exc, NoSuchOption) and exc.option_name == "-o":
            hint = "-o is --objective in every command; " + (
                "write the tokenizer with --out FILE"
                if exc.ctx is not None and any("--out" in p.opts for p in exc.ctx.command.params)
                else hint
            )
        if os.environ.get("RANK", "0") == "0":  # under torchrun every rank parses the same argv
            print_error(message[:1].lower() + message[1:], hint)
        raise typer.Exit(2) from None


def tidy_help(command: Any) -> None:
    """Help like git's, for `command` and every command below it: a flag shows no type, a value
    a short metavar (N for a count, the choices of a choice, else the option's name in capitals;
    an explicit `metavar=` wins), and -h/--help goes into the last panel of a command whose
    options all have one. (Typer 0.2x shows `<bool>`, `<str>`, `<int range>` otherwise.)"""
    for sub in getattr(command, "commands", {}).values():
        tidy_help(sub)
    for param in command.params:
        if param.param_type_name == "argument" and hasattr(param, "display_type_rich"):
            param.display_type_rich = no_type  # its metavar names it: PATH, NAME, RUN_DIR
        elif param.metavar is None:
            param.metavar = metavar(param)
    try:  # made once and cached by the command (Click >= 8.2; older ones print no types anyway)
        help_option = command.get_help_option(typer.Context(command, help_option_names=HELP_NAMES))
    except Exception:  # pragma: no cover - an older Click without the cache
        return
    if help_option is not None:
        help_option.metavar = ""
        options = [p for p in command.params if p.param_type_name == "option"]
        options = [p for p in options if p is not help_option]
        if options and all(getattr(p, "rich_help_panel", None) for p in options):
            help_option.rich_help_panel = options[-1].rich_help_panel


def no_type(ctx: typer.Context) -> None:
    return None


def metavar(param: Any) -> str | None:
    """The metavar of a parameter that declares none (see `tidy_help`)."""
    if getattr(param, "is_flag", False):
        return ""
    kind = getattr(getattr(param, "type_descriptor", None), "annotation", None)
    if kind is None:  # an older Typer: Click's own metavars, which carry no angle brackets
        return None
    if isinstance(kind, type) and issubclass(kind, Enum):
        return "|".join(str(m.value) for m in kind)
    if kind is int:
        return "N"
    return (param.name or "value").upper()


app = typer.Typer(
    name="objectives",
    help="See, compare and train with pretraining objectives "
    "(BERT, SpanBERT, XLNet, MASS, BART, T5, ...).",
    no_args_is_help=True,
    context_settings={"help_option_names": HELP_NAMES},
    add_completion=True,  # --install-completion / --show-completion (bash, zsh, fish, PowerShell)
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


def version() -> str:
    """The installed version, or the one in pyproject.toml when run from a checkout."""
    try:
        return metadata.version("objectives")
    except metadata.PackageNotFoundError:
        pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
        found = re.search(r'^version = "([^"]+)"', pyproject.read_text(), re.MULTILINE)
        return found.group(1) if found else "unknown"


def print_version(value: bool) -> None:
    if value:
        typer.echo(f"objectives {version()}")
        raise typer.Exit()


@app.callback(cls=ObjectivesGroup)
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

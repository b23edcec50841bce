"""The Typer application: usage errors as one line, `--version`, and the group every command
module registers on (see main.py)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

try:  # recent typer carries its own copy of Click
    from typer._click.exceptions import NoArgsIsHelpError, UsageError
except ImportError:  # pragma: no cover
    from click.exceptions import NoArgsIsHelpError, UsageError  # type: ignore[no-redef]

from objectives_cli.render.output import print_error


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
            print_error(message[:1].lower() + message[1:], f"see '{command} --help'")
        raise typer.Exit(2) from None


app = typer.Typer(
    name="objectives",
    help="See, compare and train with pretraining objectives "
    "(BERT, SpanBERT, XLNet, MASS, BART, T5, ...).",
    no_args_is_help=True,
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

"""What several commands share: output formats, option types, and how option strings become
values (`--param KEY=VALUE`, `--budget 1h30m`). Declared once here."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from enum import Enum
from typing import Annotated, Any

import typer

from corruptions.errors import UsageError


class Format(str, Enum):
    """Output of `list`, `eval` and `fill`."""

    table = "table"
    json = "json"


class CorruptFormat(str, Enum):
    """Output of `corrupt`."""

    show = "show"
    text = "text"
    jsonl = "jsonl"


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


def at_least(least: float, most: float | None = None) -> Callable[[Any], Any]:
    """An option callback that bounds a number (`min=` would print `[x>=1]` in the help)."""

    def check(value: Any) -> Any:
        if value is not None and value < least:
            raise typer.BadParameter(f"must be at least {least:g}, not {value}")
        if value is not None and most is not None and value > most:
            raise typer.BadParameter(f"must be at most {most:g}, not {value}")
        return value

    return check


def complete_objective(incomplete: str) -> list[tuple[str, str]]:
    """Shell completion of an objective name: names and aliases from the cached catalog, so a
    TAB never waits for torch."""
    from objectives_cli.data import catalog

    return catalog.completions(incomplete)


def table_or_json(fmt: Format | None) -> Format:
    """The format asked for, else a table on a terminal and JSON in a pipe."""
    return fmt or (Format.table if sys.stdout.isatty() else Format.json)


def parse_params(items: list[str]) -> tuple[tuple[str, str], ...]:
    """`KEY=VALUE` strings as (key, value) pairs, keys and values stripped, the last of a key
    winning; values stay strings (the registry converts them to each parameter's type)."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--param expects KEY=VALUE, got '{item}'", "e.g. --param rate=0.3")
        out[key.strip()] = value.strip()
    return tuple(out.items())


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

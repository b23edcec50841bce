"""The one place that formats: Rich on a colour terminal, plain text otherwise, JSON for machines.

Rich is used only when stdout is a terminal that shows colour and NO_COLOR is unset (Rich's own
detection, so FORCE_COLOR and TTY_COMPATIBLE work too, and TERM=dumb gets plain text), and never
for JSON or JSONL, which go straight to stdout. Views are at most 80 columns wide in both forms.

Plain-text markers (the same information as the colours):

    [MASK]        masked: the mask token stands in the input, the original is predicted
    «x»           x is a random token put in place of the original, which is predicted
    ⟨x⟩           x is unchanged in the input but predicted
    ~~x~~         x was deleted: it is not in the input
    S⟦x y⟧        the span "x y" was collapsed into the one token S (a sentinel or [MASK])
    ↷x y↶         x y were moved (sentence permutation, rotation, swapped segments)
    ⌈x y⌉         visible context without loss (a prefix, segment A)
    ++x++         x was inserted: no source token accounts for it
"""

from __future__ import annotations

import inspect
import json
import os
import sys
import textwrap
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from itertools import groupby
from typing import TYPE_CHECKING, Any

from rich.console import Console, Group
from rich.rule import Rule
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:  # imported where used: `list`, `--help` and errors need no torch
    from corruptions import Objective

    from .views import Cell, View

WIDTH = 80  # views never need more columns than this
LABEL_WIDTH = 11  # the label column of a view, its gap included
FACT_WIDTH = 14  # the label column of describe's facts

MARKS = {  # kind: (before, after, legend); the text is the token itself where both are empty
    "mask": ("", "", "[MASK] masked"),
    "random": ("«", "»", "«x» random token"),
    "predict": ("⟨", "⟩", "⟨x⟩ predicted, unchanged"),
    "delete": ("~~", "~~", "~~x~~ deleted"),
    "span": ("", "", "S⟦x⟧ span collapsed into S"),
    "moved": ("↷", "↶", "↷x↶ moved"),
    "context": ("⌈", "⌉", "⌈x⌉ context, no loss"),
    "inserted": ("++", "++", "++x++ inserted"),
}
STYLES = {
    "keep": "",
    "mask": "bold white on blue",
    "random": "bold black on yellow",
    "predict": "bold green underline",
    "delete": "red strike",
    "span": "bold white on magenta",
    "moved": "bold cyan",
    "context": "italic blue",
    "inserted": "bold yellow",
    "special": "dim",
}
LEGEND_NAMES = {
    "mask": "masked",
    "random": "random token",
    "predict": "predicted, unchanged",
    "delete": "deleted",
    "span": "span",
    "moved": "moved",
    "context": "context, no loss",
    "inserted": "inserted",
}


def stdout_console() -> Console:
    """A Console on stdout, at most 80 columns wide."""
    console = Console(file=sys.stdout, highlight=False)
    console.width = min(console.width, WIDTH)
    return console


def is_terminal() -> bool:
    """True when stdout is a terminal (Rich's detection, FORCE_COLOR included)."""
    return Console(file=sys.stdout).is_terminal


def use_rich() -> bool:
    """Rich output: stdout is a terminal that shows colour (not TERM=dumb) and NO_COLOR is not
    set. The show view's colours carry its meaning, so without them the plain markers are used."""
    console = Console(file=sys.stdout)
    return console.is_terminal and console.color_system is not None and not console.no_color


def count(n: int, noun: str) -> str:
    """`n` things for people: '1 document', '9,999 characters', '12.3 k characters',
    '1.66 M characters'."""
    number = f"{n:,}"
    for scale, unit in ((1e9, "G"), (1e6, "M"), (1e4, "k")):
        if n >= scale:
            number = f"{n / (scale if unit != 'k' else 1e3):.3g} {unit}"
            break
    return f"{number} {noun}{'' if n == 1 else 's'}"


def print_error(message: str, hint: str | None = None) -> None:
    """A user error as main.run prints one: `error: ...` and maybe `hint: ...` on stderr."""
    print(f"error: {message}", file=sys.stderr)
    if hint:
        print(f"hint: {hint}", file=sys.stderr)


def print_warning(message: str, hint: str | None = None) -> None:
    """`warning: ...` and maybe `hint: ...` on stderr, after what stdout holds so far."""
    with suppress(OSError, ValueError):  # a reader that went away gets nothing more
        sys.stdout.flush()
    print(f"warning: {message}", file=sys.stderr)
    if hint:
        print(f"hint: {hint}", file=sys.stderr)


# ---- JSON ---------------------------------------------------------------------------------


@contextmanager
def until_pipe_closes() -> Iterator[None]:
    """Stop writing, quietly and with success, when the reader goes away (`| head`)."""
    try:
        yield
    except BrokenPipeError:
        with suppress(OSError, ValueError):  # what is still buffered goes nowhere at exit
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def write_jsonl(rows: Iterable[dict[str, Any]]) -> None:
    """Stream one JSON object per line to stdout."""
    with until_pipe_closes():
        for row in rows:
            sys.stdout.write(json.dumps(row, ensure_ascii=False, default=list) + "\n")


def write_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, ensure_ascii=False, indent=2, default=list) + "\n")


# ---- views (corrupt --show / --format text, describe, docs) ---------------------------------


def runs(cells: Sequence[Cell]) -> Iterator[tuple[str, list[Cell]]]:
    """Consecutive cells of one kind; spans, masks and specials stay one cell per run."""
    for kind, group in groupby(cells, key=lambda c: c.kind):
        members = list(group)
        if kind in ("span", "mask", "special", "keep") or any(c.hidden for c in members):
            yield from ((kind, [c]) for c in members)
        else:
            yield kind, members


def plain_cells(cells: Sequence[Cell]) -> str:
    """Cells as text with the markers of the module docstring."""
    out = []
    for kind, members in runs(cells):
        before, after, _ = MARKS.get(kind, ("", "", ""))
        inner = "".join(("" if c.glue or i == 0 else " ") + c.text for i, c in enumerate(members))
        hidden = f"⟦{members[0].hidden}⟧" if members[0].hidden else ""
        out.append(("" if members[0].glue or not out else " ") + before + inner + after + hidden)
    return "".join(out)


def rich_cells(cells: Sequence[Cell]) -> Text:
    """Cells as styled text; spans show what they stand for in dim brackets."""
    text = Text()
    for kind, members in runs(cells):
        if text and not members[0].glue:
            text.append(" ")
        inner = "".join(("" if c.glue or i == 0 else " ") + c.text for i, c in enumerate(members))
        text.append(inner, style=STYLES.get(kind, ""))
        if members[0].hidden:
            text.append(f"⟦{members[0].hidden}⟧", style="dim magenta")
    return text


def view_lines(view: View) -> list[tuple[str, str | list[Cell]]]:
    """The labelled lines of a view, in order; cell lists are formatted per medium."""
    lines: list[tuple[str, str | list[Cell]]] = [("original", view.original), ("input", view.input)]
    lines.append(("target", view.target_note or view.target))
    lines.extend(view.extras)
    lines.append(("summary", view.summary))
    return lines


def title(objective: str, view: View) -> str:
    return f"{objective} · example {view.index}"


def plain_view(view: View, objective: str) -> str:
    """A view as plain text lines of at most 80 columns, ending in a newline."""
    head = f"── {title(objective, view)} "
    out = [head + "─" * max(0, WIDTH - len(head))]
    for label, value in view_lines(view):
        text = value if isinstance(value, str) else plain_cells(value)
        out.append(wrap(label, text))
    legend = [MARKS[k][2] for k in view.kinds if k in MARKS]
    if legend:
        out.append(wrap_items("legend", legend))
    return "\n".join(out) + "\n"


def wrap_items(label: str, items: list[str], sep: str = " · ") -> str:
    """Like `wrap`, but breaking only between items."""
    lines = [label.ljust(LABEL_WIDTH) + items[0]]
    for item in items[1:]:
        if len(lines[-1]) + len(sep) + len(item) <= WIDTH:
            lines[-1] += sep + item
        else:
            lines[-1] += sep.rstrip()
            lines.append(" " * LABEL_WIDTH + item)
    return "\n".join(lines)


def wrap(label: str, text: str, label_width: int = LABEL_WIDTH) -> str:
    """`label` in a column of its own, `text` wrapped beside it."""
    wrapper = textwrap.TextWrapper(
        width=WIDTH,
        initial_indent=label.ljust(label_width),
        subsequent_indent=" " * label_width,
        break_on_hyphens=False,
    )
    return "\n".join(wrapper.wrap(text or "(empty)"))


def rich_view(view: View, objective: str) -> Group:
    """A view as Rich renderables: a rule, a label/value grid, a legend."""
    grid = Table.grid(padding=(0, 1))
    grid.add_column(style="bold", width=LABEL_WIDTH - 1, no_wrap=True)
    grid.add_column(overflow="fold")
    for label, value in view_lines(view):
        grid.add_row(label, Text(value) if isinstance(value, str) else rich_cells(value))
    legend = Text()
    for kind in (k for k in view.kinds if k in LEGEND_NAMES):
        legend.append(" " if legend else "")
        legend.append(LEGEND_NAMES[kind], style=STYLES[kind])
    if legend:
        grid.add_row("legend", legend)
    return Group(Rule(title(objective, view), align="left", characters="─"), grid)


def print_views(views: Iterable[View], objective: str, rich: bool) -> None:
    """Stream views to stdout, Rich or plain."""
    console = stdout_console() if rich else None
    with until_pipe_closes():
        for view in views:
            if console is not None:
                console.print(rich_view(view, objective))
            else:
                sys.stdout.write(plain_view(view, objective))


# ---- list and describe ----------------------------------------------------------------------


def key_defaults(params: dict[str, dict[str, Any]], n: int = 3, longest: int = 24) -> str:
    """The first `n` parameters of a catalog record as name=value, long values shortened."""
    values = ((k, format_value(p["default"])) for k, p in list(params.items())[:n])
    return " ".join(f"{k}={v if len(v) <= longest else v[: longest - 1] + '…'}" for k, v in values)


def format_value(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (tuple, list)):
        return json.dumps(value)
    return str(value)


def print_objectives(records: Sequence[dict[str, Any]], rich: bool) -> None:
    """Catalog records (`data.catalog`) as a table: a Rich one on a terminal, aligned columns
    otherwise."""
    rows = [(r["name"], r["arch"], r["paper"], key_defaults(r["params"])) for r in records]
    header = ("name", "architecture", "paper", "key defaults")
    if rich:  # names never wrap or shorten; the other columns fold on a narrow terminal
        table = Table(header_style="bold")
        table.add_column(header[0], no_wrap=True, min_width=max(len(r[0]) for r in rows))
        for name in header[1:]:
            table.add_column(name, overflow="fold")
        for row in rows:
            table.add_row(*row)
        stdout_console().print(table)
        return
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(3)]
    for row in (header, *rows):
        sys.stdout.write(
            "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=False)) + "  " + row[3] + "\n"
        )


def print_description(objective: Objective, examples: Sequence[View], rich: bool) -> None:
    """`describe`: what the objective is, its parameters and a rendered example."""
    facts = [
        ("architecture", f"{objective.arch} (family: {objective.family})"),
        ("paper", objective.paper),
        (
            "needs",
            f"word boundaries: {yes(objective.needs_words)} · "
            f"sentence boundaries: {yes(objective.needs_sentences)}",
        ),
    ]
    if objective.aliases:
        facts.insert(0, ("aliases", ", ".join(objective.aliases)))
    more = inspect.cleandoc(objective.description).partition("\n")[2].strip()
    if rich:
        describe_rich(objective, facts, more, examples)
    else:
        sys.stdout.write(describe_plain(objective, facts, more, examples))


def yes(flag: bool) -> str:
    return "yes" if flag else "no"


def describe_plain(
    objective: Objective, facts: list[tuple[str, str]], more: str, examples: Sequence[View]
) -> str:
    out = [textwrap.fill(f"{objective.name}: {objective.summary}", WIDTH), ""]
    out += [wrap(label, text, FACT_WIDTH) for label, text in facts]
    if more:
        out += ["", *(textwrap.fill(p, WIDTH) for p in more.split("\n\n"))]
    out += ["", "parameters (--param NAME=VALUE)"]
    for p in objective.params:
        out.append(
            textwrap.fill(
                f"  {p.name} = {format_value(p.default)}",
                WIDTH,
                subsequent_indent="      ",
                break_on_hyphens=False,
            )
        )
        out.append(
            textwrap.fill(p.help, WIDTH, initial_indent="      ", subsequent_indent="      ")
        )
    if not objective.params:
        out.append("  none")
    out += ["", "example (seed 0, the sample text)"]
    return "\n".join(out) + "\n" + "".join(plain_view(v, objective.name) for v in examples)


def describe_rich(
    objective: Objective, facts: list[tuple[str, str]], more: str, examples: Sequence[View]
) -> None:
    console = stdout_console()
    console.print(Text.assemble((objective.name, "bold"), ": ", objective.summary))
    grid = Table.grid(padding=(0, 1))
    grid.add_column(style="bold", width=FACT_WIDTH - 1, no_wrap=True)
    grid.add_column(overflow="fold")
    for label, text in facts:
        grid.add_row(label, text)
    console.print(grid)
    if more:
        console.print()
        for paragraph in more.split("\n\n"):
            console.print(Text(" ".join(paragraph.split())))
    table = Table(
        "parameter",
        "default",
        "help",
        title="parameters (--param NAME=VALUE)",
        title_justify="left",
        header_style="bold",
    )
    for p in objective.params:
        table.add_row(p.name, format_value(p.default), p.help)
    console.print()
    console.print(table)
    console.print()
    for view in examples:
        console.print(rich_view(view, objective.name))

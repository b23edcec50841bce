"""A training run on a terminal: a Rich progress bar and a summary table, on stderr. It keeps
the `train.report.Reporter` protocol (the plain, one-line-per-interval form lives there)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from objectives_cli.data.streams import throttled

if TYPE_CHECKING:
    from objectives_cli.data.prepare import Progress as PrepareProgress

T = TypeVar("T")
PLAIN_SECONDS = 5.0  # a plain progress line at most this often
STATUS_SECONDS = 0.2  # a status on a terminal is rewritten at most this often


def track(items: Iterable[T], total: int, label: str = "") -> Iterator[T]:
    """`items`, with a progress bar on stderr when it is a terminal (and more than a few)."""
    console = Console(stderr=True)
    if not console.is_terminal or total < 100:
        yield from items
        return
    with Progress(
        TextColumn(label),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task(label, total=total)
        for item in items:
            yield item
            progress.advance(task)


class RichReporter:
    """A Rich progress bar on stderr: step, loss, lr, tokens/s, ETA; the summary as a table."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.progress: Progress | None = None
        self.task: Any = None

    @staticmethod
    def on_terminal() -> RichReporter | None:
        """A reporter on stderr when stderr is a terminal, else None."""
        console = Console(stderr=True)
        return RichReporter(console) if console.is_terminal else None

    def message(self, text: str) -> None:
        self.console.print(text, markup=False, highlight=False)

    def start(self, total: float, done: float, unit: str) -> None:
        label = "{task.completed:.0f}/{task.total:.0f} " + unit
        self.progress = Progress(
            TextColumn("train"),
            BarColumn(),
            TextColumn(label),
            TextColumn("{task.fields[stats]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=self.console,
        )
        self.progress.start()
        self.task = self.progress.add_task("train", total=total, completed=done, stats="")

    def advance(self, done: float, row: dict[str, float] | None) -> None:
        if self.progress is None:
            return
        if row is not None:
            stats = f"loss {row['loss']:.3f}  lr {row['lr']:.1e}  {row['tokens_per_s']:,.0f} tok/s"
            self.progress.update(self.task, completed=done, stats=stats)
        else:
            self.progress.update(self.task, completed=done)

    def finish(self, summary: dict[str, Any]) -> None:
        self.close()
        self.console.print(summary_table(summary))

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


def summary_table(summary: dict[str, Any]) -> Table:
    table = Table(title="training summary", show_header=False)
    for key, value in summary.items():
        table.add_row(key, f"{value:,}" if isinstance(value, int) else str(value))
    return table


def plain_lines(label: str) -> Callable[[str], None]:
    """`say(text)` that prints "label: text" on stderr at most PLAIN_SECONDS apart, so a log
    gets a few lines and a short run none."""
    return throttled(
        PLAIN_SECONDS, lambda text: print(f"{label}: {text}", file=sys.stderr, flush=True)
    )


@contextmanager
def preparing(label: str) -> Iterator[Callable[[PrepareProgress], None]]:
    """A prepare's progress on stderr: a Rich bar of the bytes read with documents, tokens and
    tokens per second on a terminal; else a line every PLAIN_SECONDS."""
    console = Console(stderr=True)
    if not console.is_terminal:
        say = plain_lines(label)
        yield lambda p: say(p.line())
        return
    with Progress(
        TextColumn(label),
        BarColumn(),
        TextColumn("{task.fields[stats]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task(label, total=None, stats="")

        def bar(p: PrepareProgress) -> None:
            rate = p.tokens / p.seconds / 1e6 if p.seconds else 0.0
            stats = f"{p.read / 1e6:,.0f} MB  {p.documents:,} docs  {rate:.2f} M tok/s"
            progress.update(task, total=p.total, completed=p.read, stats=stats)

        yield bar


@contextmanager
def status(label: str) -> Iterator[Callable[[str], None]]:
    """A one-line status on stderr that a long command updates (`say(text)`): rewritten in place
    on a terminal, at most STATUS_SECONDS apart, and gone at the end; else printed as a line at
    most PLAIN_SECONDS apart, so a log gets a few lines and a short run none."""
    console = Console(stderr=True)
    if not console.is_terminal or sys.stdout.isatty():  # a bar between lines of data: plain
        yield plain_lines(label)
        return
    with Progress(
        TextColumn(label + ": {task.fields[text]}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        redirect_stdout=False,  # the data goes to stdout's bytes, never through Rich
        redirect_stderr=False,
    ) as progress:
        task = progress.add_task(label, total=None, text="starting")
        yield throttled(STATUS_SECONDS, lambda text: progress.update(task, text=text))

"""How a training run talks: a Rich progress bar on a terminal, one line per log interval
otherwise, and a summary table at the end; all of it on stderr."""

from __future__ import annotations

import sys
from typing import Any, Protocol

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table


class Reporter(Protocol):
    """Where a run talks: messages, per-step progress, metric rows, the final summary."""

    def message(self, text: str) -> None: ...
    def start(self, total: float, done: float, unit: str) -> None: ...
    def advance(self, done: float, row: dict[str, float] | None) -> None: ...
    def finish(self, summary: dict[str, Any]) -> None: ...


class PlainReporter:
    """One line per log interval on stderr (the CLI uses a Rich progress bar on a terminal)."""

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet

    def message(self, text: str) -> None:
        if not self.quiet:
            print(text, file=sys.stderr, flush=True)

    def start(self, total: float, done: float, unit: str) -> None:
        pass

    def advance(self, done: float, row: dict[str, float] | None) -> None:
        if row is not None:
            self.message(format_row(row))

    def finish(self, summary: dict[str, Any]) -> None:
        self.message("  ".join(f"{k} {v}" for k, v in summary.items()))


def format_row(row: dict[str, float]) -> str:
    parts = []
    for key, value in row.items():
        if key == "step":
            parts.append(f"step {int(value)}")
        elif key == "lr":
            parts.append(f"lr {value:.2e}")
        elif key in ("tokens_per_s", "tokens"):
            parts.append(f"{key.replace('_per_s', '/s')} {value:,.0f}")
        elif isinstance(value, float):
            parts.append(f"{key} {value:.4f}")
    return "  ".join(parts)


class RichReporter:
    """A Rich progress bar on stderr: step, loss, lr, tokens/s, ETA; the summary as a table."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.progress: Progress | None = None
        self.task: Any = None

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

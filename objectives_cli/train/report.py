"""How a run talks while it trains: the `Reporter` protocol the loop calls, and `PlainReporter`,
one line per log interval on stderr. (A Rich progress bar is `render.progress.RichReporter`.)"""

from __future__ import annotations

import sys
from typing import Any, Protocol


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


def format_row(row: dict[str, Any]) -> str:
    """A metrics row as one line: `step 10  loss 6.1234  lr 2.00e-03  tokens/s 12,345`."""
    parts = []
    for key, value in row.items():
        if key == "step":
            parts.append(f"step {int(value)}")
        elif key == "lr":
            parts.append(f"lr {value:.2e}")
        elif key in ("tokens_per_s", "tokens"):
            parts.append(f"{key.replace('_per_s', '/s')} {value:,.0f}")
        elif key.endswith("rows"):
            parts.append(f"{key} {value:,}")
        elif isinstance(value, float):
            parts.append(f"{key} {value:.4f}")
        elif value is None:  # a term with nothing to score
            parts.append(f"{key} -")
    return "  ".join(parts)

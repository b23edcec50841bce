"""How a run talks while it trains: the `Reporter` protocol the loop calls, and `PlainReporter`,
one line per log interval on stderr. (A Rich progress bar is `render.progress.RichReporter`.)"""

from __future__ import annotations

import sys
import time
from typing import Any, Protocol


class Reporter(Protocol):
    """Where a run talks: messages, per-step progress, metric rows, the final summary."""

    def message(self, text: str) -> None: ...
    def start(self, total: float, done: float, unit: str) -> None: ...
    def advance(self, done: float, row: dict[str, float] | None) -> None: ...
    def finish(self, summary: dict[str, Any]) -> None: ...


class PlainReporter:
    """One line per log interval on stderr, ending with the time left at the pace so far (the
    CLI uses a Rich progress bar on a terminal)."""

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet
        self.begun = (0.0, 0.0, 0.0)  # (total, done, time) at start

    def message(self, text: str) -> None:
        if not self.quiet:
            print(text, file=sys.stderr, flush=True)

    def start(self, total: float, done: float, unit: str) -> None:
        self.begun = (total, done, time.monotonic())

    def advance(self, done: float, row: dict[str, float] | None) -> None:
        if row is not None:
            total, first, began = self.begun
            pace = (time.monotonic() - began) / max(done - first, 1e-9)  # seconds per unit
            self.message(f"{format_row(row)}  ETA {short_duration((total - done) * pace)}")

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
        elif key == "flops_per_token":
            parts.append(f"flops/token {value:.3g}")
        elif key == "mfu":
            parts.append(f"mfu {value:.1%}")
        elif key.endswith("rows"):
            parts.append(f"{key} {value:,}")
        elif isinstance(value, float):
            parts.append(f"{key} {value:.4f}")
        elif value is None:  # a term with nothing to score
            parts.append(f"{key} -")
    return "  ".join(parts)


def short_duration(seconds: float) -> str:
    """`45s`, `12m30s`, `1h05m`."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"

"""A fine-tuning or probing result as a table on stdout (`--format json` bypasses it)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

BASELINE_NAMES = {
    "majority": "majority class",
    "bow": "bag of words",
    "bow_per_sentence": "bag of words per sentence",
    "random_init": "random init (same settings)",
}


def print_result(result: dict[str, Any]) -> None:
    """Test and validation scores, then each baseline's test accuracy."""
    init = " (random init)" if result["init"] == "random" else ""
    title = (
        f"{result['method']} {result['objective']}{init} at step {result['step']} "
        f"on {result['task']}"
    )
    table = Table(title=title)
    for name in ("", "accuracy", "macro-F1"):
        table.add_column(name, justify="left" if not name else "right")
    for split in ("test", "validation"):
        scores = result[split]
        table.add_row(split, f"{scores['accuracy']:.4f}", f"{scores['macro_f1']:.4f}")
    for key, value in result.get("baselines", {}).items():
        table.add_row(f"[dim]{BASELINE_NAMES.get(key, key)}[/dim]", f"[dim]{value:.4f}[/dim]", "")
    Console().print(table)

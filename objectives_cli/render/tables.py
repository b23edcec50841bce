"""The results of `eval` and `fill` as tables on stdout (`--format json` bypasses these)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table


def print_eval(result: dict[str, Any], objective: str, step: int) -> None:
    """Held-out loss and accuracy per term, then the weighted total."""
    table = Table(title=f"{objective} at step {step} on {result['data']} ({result['rows']} rows)")
    for column in ("term", "loss", "accuracy", "perplexity"):
        table.add_column(column, justify="left" if column == "term" else "right")
    terms = sorted({k.rsplit("_", 1)[0] for k in result if k.endswith("_acc")})
    for term in terms:
        ppl = result.get(f"{term}_ppl")
        table.add_row(
            term,
            f"{result[f'{term}_loss']:.4f}",
            f"{result[f'{term}_acc']:.4f}",
            "" if ppl is None else f"{ppl:.2f}",
        )
    table.add_row("total (weighted)", f"{result['loss']:.4f}", "", "")
    Console().print(table)


def print_fill(result: dict[str, Any], top_k: int) -> None:
    """Candidates per [MASK] (encoders), or the text the model wrote."""
    console = Console()
    if result["kind"] != "masks":
        console.print(result["output"], markup=False, highlight=False)
        return
    table = Table(title=result["output"])
    table.add_column("position", justify="right")
    for k in range(top_k):
        table.add_column(f"#{k + 1}")
    for entry in result["masks"]:
        table.add_row(
            str(entry["position"]),
            *(f"{c['token']} {c['probability']:.3f}" for c in entry["top"]),
        )
    console.print(table)


def warn(text: str) -> None:
    """A warning on stderr, printed as it is: no Rich markup, one line however long (a wrapped
    warning reads as two)."""
    Console(stderr=True).print(text, markup=False, highlight=False, soft_wrap=True)

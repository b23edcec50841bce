"""What `objectives compare` shows: the table (on stdout and as compare.md) and two pictures,
held-out loss against tokens (loss.png) and task scores with error bars (scores.png).

Scores are test accuracy, mean ± standard deviation over fine-tuning seeds (a probe is
deterministic: one value); the best pretrained run of each column is marked. Every task's
majority-class and bag-of-words baselines follow the runs. Pictures are drawn with matplotlib's
Agg backend: no display is needed.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from objectives_cli.data.files import write_atomic

BASELINES = {
    "majority": "majority class",
    "bow": "bag of words",
    "bow_per_sentence": "bag of words per sentence",
}


def cell(score: dict[str, Any]) -> str:
    return f"{score['mean']:.3f} ± {score['std']:.3f}" if score["n"] > 1 else f"{score['mean']:.3f}"


def baseline_rows(result: dict[str, Any]) -> list[tuple[str, list[str]]]:
    """(name, one value per column) of each baseline; '' where a task lacks it."""
    rows = []
    for key, name in BASELINES.items():
        values = []
        for column in result["columns"]:
            found = result["tasks"][column.split("/")[0]]["baselines"].get(key)
            values.append("" if found is None else f"{found:.3f}")
        if any(values):
            rows.append((name, values))
    return rows


def print_table(result: dict[str, Any]) -> None:
    """Objective x task/method on stdout; the best of each column in bold with a *."""
    table = Table(title="test accuracy (mean ± std over fine-tuning seeds)")
    table.add_column("run")
    for column in result["columns"]:
        table.add_column(column, justify="right")
    for row in result["rows"]:
        values = []
        for column in result["columns"]:
            text = cell(row["scores"][column])
            best = result["best"][column] == row["label"]
            values.append(f"[bold]{text} *[/bold]" if best else text)
        table.add_row(row["label"], *values)
    for name, values in baseline_rows(result):
        table.add_row(f"[dim]{name}[/dim]", *(f"[dim]{v}[/dim]" for v in values))
    Console().print(table)


def markdown(result: dict[str, Any]) -> str:
    """compare.md: the settings, the table (best in bold) and the tasks."""
    s = result["settings"]
    budget = f"{s['budget']:.0f} s each" if s["budget"] else f"{s['tokens']:,} input tokens each"
    lines = [
        "# Objectives compared",
        "",
        f"Model {s['model']}, pretraining budget {budget}, seed {s['seed']}; fine-tuning: "
        f"{s['seeds']} seed(s), at most {s['epochs']} epochs. Test accuracy, mean ± std over "
        "seeds (a probe is deterministic); **bold**: the best pretrained run of the column.",
        "",
        "| run | " + " | ".join(result["columns"]) + " |",
        "|---|" + "---:|" * len(result["columns"]),
    ]
    for row in result["rows"]:
        values = []
        for column in result["columns"]:
            text = cell(row["scores"][column])
            values.append(f"**{text}**" if result["best"][column] == row["label"] else text)
        lines.append(f"| {row['label']} | " + " | ".join(values) + " |")
    for name, values in baseline_rows(result):
        lines.append(f"| *{name}* | " + " | ".join(values) + " |")
    lines += ["", "Tasks:", ""]
    for name, task in result["tasks"].items():
        sizes = task["sizes"]
        lines.append(
            f"- `{name}`: {task['about'] or task['source']} {sizes['train']} train / "
            f"{sizes['validation']} validation / {sizes['test']} test examples."
        )
    return "\n".join(lines) + "\n"


def write_outputs(result: dict[str, Any], out: Path) -> list[Path]:
    """compare.md, loss.png and scores.png in `out`; the paths written."""
    import matplotlib

    matplotlib.use("Agg")
    written = [out / "compare.md", out / "loss.png", out / "scores.png"]
    write_atomic(written[0], markdown(result))
    write_atomic(written[1], loss_figure(result))
    write_atomic(written[2], scores_figure(result))
    return written


def png(figure: Any) -> bytes:
    import io

    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


def loss_figure(result: dict[str, Any]) -> bytes:
    """One panel per run: its own held-out loss (the scales differ) against input tokens."""
    import matplotlib.pyplot as plt

    curves = {k: v for k, v in result["curves"].items() if v}
    n = max(1, len(curves))
    cols = min(4, n)
    rows = math.ceil(n / cols)
    figure, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), squeeze=False)
    for ax, (label, points) in zip(axes.flat, curves.items(), strict=False):
        ax.plot([p["tokens"] / 1e6 for p in points], [p["loss"] for p in points], marker=".")
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("tokens read, padding excluded (M)", fontsize=8)
        ax.set_ylabel("held-out loss", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(curves) :]:
        ax.set_visible(False)
    figure.suptitle("held-out pretraining loss (each objective's own)", fontsize=11)
    figure.tight_layout()
    return png(figure)


def scores_figure(result: dict[str, Any]) -> bytes:
    """Grouped bars: one group per task/method, one bar per run, error bars of one std; the
    bag-of-words and majority baselines as dashed and dotted lines over each group."""
    import matplotlib.pyplot as plt

    columns, rows = result["columns"], result["rows"]
    width = 0.8 / max(1, len(rows))
    figure, ax = plt.subplots(figsize=(min(14.0, 2.0 + 0.22 * len(columns) * len(rows)), 4))
    colors = plt.get_cmap("tab20").colors
    for i, row in enumerate(rows):
        means = [row["scores"][c]["mean"] for c in columns]
        stds = [row["scores"][c]["std"] for c in columns]
        xs = [j - 0.4 + width * (i + 0.5) for j in range(len(columns))]
        hatch = "//" if row["init"] == "random" else None
        ax.bar(
            xs,
            means,
            width,
            yerr=stds,
            capsize=2,
            label=row["label"],
            hatch=hatch,
            color=colors[i % len(colors)],
        )
    for j, column in enumerate(columns):
        found = result["tasks"][column.split("/")[0]]["baselines"]
        for key, style in (("bow", "--"), ("majority", ":")):
            if key in found:
                ax.hlines(found[key], j - 0.45, j + 0.45, colors="black", linestyles=style)
    ax.set_xticks(range(len(columns)), columns)
    ax.set_ylabel("test accuracy")
    low = min(min(r["scores"][c]["mean"] for r in rows for c in columns), 0.5)
    ax.set_ylim(max(0.0, low - 0.05), 1.0)
    ax.set_title("task scores (dashed: bag of words, dotted: majority class)", fontsize=10)
    ax.legend(fontsize=7, ncol=2, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    figure.tight_layout()
    return png(figure)

"""The Typer application object; command modules register on it (see main.py)."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="objectives",
    help="See, compare and train with pretraining objectives "
    "(BERT, SpanBERT, XLNet, MASS, BART, T5, ...).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)

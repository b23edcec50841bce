"""`objectives tokenizer ...`: train a tokenizer with the project's special tokens."""

from __future__ import annotations

import sys
import time
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from corruptions.errors import DataError

from .app import app
from .options import at_least

N_SENTINELS = 100  # data/tokenizer.py's (not imported here: `--help` stays light)

tokenizer_app = typer.Typer(
    help="Train a tokenizer (WordPiece, BPE, Unigram).", no_args_is_help=True
)
app.add_typer(tokenizer_app, name="tokenizer")


class Kind(str, Enum):
    wordpiece = "wordpiece"
    bpe = "bpe"
    unigram = "unigram"


@tokenizer_app.command("train")
def train(
    corpus: Annotated[
        str,
        typer.Argument(
            metavar="CORPUS",
            help="Text file, directory, .jsonl/.parquet, hf:NAME[:CONFIG], - for stdin, or "
            "'default' for the built-in corpus.",
        ),
    ],
    out: Annotated[
        Path,
        typer.Option("--out", metavar="FILE", dir_okay=False, help="The tokenizer JSON to write."),
    ],
    kind: Annotated[
        Kind,
        typer.Option(
            help="wordpiece: BERT (cased); bpe: byte-level, GPT-2/BART; unigram: "
            "SentencePiece-style, T5/ALBERT."
        ),
    ] = Kind.wordpiece,
    vocab_size: Annotated[
        int,
        typer.Option(
            callback=at_least(28),
            help="Ids in all, the special tokens (8 and the sentinels) included.",
        ),
    ] = 8000,
    sentinels: Annotated[
        int,
        typer.Option(
            callback=at_least(1),
            help="T5 sentinels <extra_id_0> ... : t5-span and ul2 need about one per 20 tokens "
            "of --seq-len (2048 needs ~103), as many as spans cut in a row.",
        ),
    ] = N_SENTINELS,
) -> None:
    """Train a tokenizer on CORPUS and write it to --out.

    Ids 0-7 are [PAD] [UNK] [CLS] [SEP] [MASK] [NLU] [NLG] [S2S], the last ids T5's
    sentinels (<extra_id_0> = V-1). Same corpus and settings, same file.

    objectives tokenizer train notes.txt --kind unigram --out tok.json
    """
    from objectives_cli.data.files import check_output_file, write_output_file
    from objectives_cli.data.sources import Skipped, read_documents
    from objectives_cli.render.output import count, print_warning

    check_output_file(out)  # before the training, not after it
    start = time.perf_counter()
    skipped = Skipped()
    documents = read_documents(None if corpus == "default" else corpus, skipped)
    if skipped.count:
        print_warning(skipped.warning() or "")
    print(  # before importing the trainer (and torch): a second or two
        f"training a {kind.value} tokenizer ({vocab_size} ids) on "
        f"{count(len(documents), 'document')} ({count(sum(map(len, documents)), 'character')})",
        file=sys.stderr,
        flush=True,
    )
    from objectives_cli.data.tokenizer import train_tokenizer

    try:  # the trainer's own progress bars, on a terminal
        tok = train_tokenizer(
            documents, kind.value, vocab_size, sys.stderr.isatty(), n_sentinels=sentinels
        )
    except ValueError as exc:  # a vocabulary too small for the kind
        raise typer.BadParameter(str(exc), param_hint="--vocab-size") from None
    try:
        write_output_file(out, tok.to_str())
    except OSError as exc:
        raise DataError(f"cannot write {out}: {exc.strerror}") from None
    size = tok.get_vocab_size()
    print(f"wrote {out}: {size} ids in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    if size < vocab_size:
        print(
            f"warning: the corpus yields only {size} of the {vocab_size} ids asked for; a "
            "bigger corpus gives the rest",
            file=sys.stderr,
        )

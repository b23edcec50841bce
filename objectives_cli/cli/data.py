"""`objectives data ...`: corpora larger than memory, prepared once into memory-mapped shards."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from corruptions.errors import ObjectivesError

from .app import app
from .options import at_least

data_app = typer.Typer(
    help="Prepare a corpus larger than memory: tokenised once into shards that train maps.",
    no_args_is_help=True,
)
app.add_typer(data_app, name="data")


@data_app.command("prepare")
def prepare(
    source: Annotated[
        str,
        typer.Argument(
            metavar="SOURCE",
            help="Text file (documents separated by blank lines), directory, .jsonl/.parquet "
            "with a 'text' column, hf:NAME[:CONFIG] (streamed), or - for stdin.",
        ),
    ],
    out: Annotated[
        Path,
        typer.Option(
            "--out", metavar="DIR", file_okay=False, help="The directory to write (new or empty)."
        ),
    ],
    tokenizer: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE",
            dir_okay=False,
            show_default=False,
            help="Tokenizer JSON file. Default: the built-in WordPiece.",
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            callback=at_least(1),
            show_default=False,
            help="Processes that tokenise, one thread each. Default: one per core.",
        ),
    ] = None,
    heldout: Annotated[
        float,
        typer.Option(
            callback=at_least(0, 0.5),
            help="Share of the documents held out for evaluation (chosen by a hash of their "
            "text); 0 = none.",
        ),
    ] = 0.01,
    node_rank: Annotated[
        int,
        typer.Option(
            callback=at_least(0),
            help="With --nodes: which machine this is. hf: sources only; a file is the same "
            "everywhere.",
        ),
    ] = 0,
    nodes: Annotated[
        int,
        typer.Option(callback=at_least(1), help="Machines that share an hf: dataset's rows."),
    ] = 1,
) -> None:
    """Tokenise SOURCE into memory-mapped shards in --out, for `train --data DIR`.

    The source is read as a stream and tokenised in parallel; the same source, tokenizer and
    settings give the same files whatever --workers is. Interrupted, the same command goes on
    after the last complete shard.

    objectives data prepare corpus.txt --out corpus/ && objectives train -o t5-span --data corpus/
    """
    import time

    from objectives_cli.data.parallel import default_workers
    from objectives_cli.data.prepare import prepare as run_prepare
    from objectives_cli.data.tokenizer import load_tokenizer
    from objectives_cli.render.output import count
    from objectives_cli.render.progress import preparing

    if node_rank >= nodes:
        raise typer.BadParameter(f"must be below --nodes ({nodes})", param_hint="--node-rank")
    tok = load_tokenizer(tokenizer)
    workers = workers or default_workers()
    started = time.monotonic()
    try:
        with preparing("preparing") as report:
            result = run_prepare(
                source,
                out,
                tok.to_str(),
                tok.get_vocab_size(),
                workers,
                heldout,
                report=report,
                nodes=(node_rank, nodes) if nodes > 1 else None,
            )
    except KeyboardInterrupt:
        print(
            f"interrupted: the complete shards stay in {out}; run the same command again to go "
            "on after them",
            file=sys.stderr,
        )
        raise SystemExit(130) from None
    except ObjectivesError:
        raise
    index, p = result.index, result.progress
    splits = index["splits"]
    size = sum(s["bytes"] for split in splits.values() for s in split["shards"])
    tokens = sum(split["tokens"] for split in splits.values())
    if result.restarted:
        print(f"started again from the start: {result.restarted}", file=sys.stderr)
    what = (
        f"{count(splits['train']['documents'], 'training document')} and "
        f"{count(splits['heldout']['documents'], 'held-out document')}, {count(tokens, 'token')} "
        f"({size / tokens:.2f} bytes per token)"
    )
    if result.done_before:
        print(f"{out} holds {source} prepared already: {what}", file=sys.stderr)
        return
    seconds = time.monotonic() - started
    resumed = f", after {p.resumed:,} documents done before" if p.resumed else ""
    print(
        f"prepared {source} into {out}: {what} in {seconds:.1f} s "
        f"({(p.tokens / seconds if seconds else 0) / 1e6:.2f} M tokens/s, {workers} "
        f"worker{'s' if workers > 1 else ''}{resumed})",
        file=sys.stderr,
    )
    skipped = index.get("skipped", {})
    if skipped.get("count"):
        from objectives_cli.data.sources import Skipped
        from objectives_cli.render.output import print_warning

        print_warning(Skipped(skipped["count"], skipped["first"]).warning() or "")

"""Looking at objectives: `list`, `describe` and `corrupt`.

Every objective comes from the registry, so a newly registered one shows up here unchanged.
Usage errors (Click's own included) become one `error:` line and a `hint:` line, exit 2; data
errors exit 1 (see main.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from corruptions.errors import UsageError
from objectives_cli.render import jsonl, output

from .app import app
from .options import CorruptFormat, Format, at_least, complete_objective, parse_params

if TYPE_CHECKING:
    from objectives_cli.data.examples import UnknownCount
    from objectives_cli.data.streams import Meter

T = TypeVar("T")
PROGRESS_EVERY = 256  # JSONL lines between two progress updates (shown at most ~5 a second)

SHOW_LIMIT = 5  # examples show/text print unless --limit says otherwise
# Every batch of 16 blocks is padded to --max-length columns (data/examples.py), so memory grows
# with it whatever the input: 64 Ki tokens cost ~300 MB; 10^8 would allocate until killed.
MAX_LENGTH = 1 << 16


@app.command("list")
def list_command(
    pattern: Annotated[
        str, typer.Argument(metavar="PATTERN", help="Only names or aliases matching this glob.")
    ] = "*",
    fmt: Annotated[
        Format,
        typer.Option("--format", "-f", help="table (for people) or json (for programs)."),
    ] = Format.table,
) -> None:
    """List the objectives: architecture, paper, key defaults.

    objectives list 'bart-*'   |   objectives list --format json
    """
    from objectives_cli.data import catalog

    records = catalog.matching(pattern)
    if not records:
        raise UsageError(
            f"no objective matches '{pattern}'",
            "names and aliases are matched as globs, e.g. 'bart*'; see 'objectives list'",
        )
    if fmt is Format.json:
        output.write_json(records)
    else:
        output.print_objectives(records, output.use_rich())


@app.command()
def describe(
    name: Annotated[
        str,
        typer.Argument(
            metavar="NAME", help="An objective name or alias.", autocompletion=complete_objective
        ),
    ],
) -> None:
    """Explain one objective: parameters, paper, an example.

    objectives describe t5-span
    """
    import corruptions
    from objectives_cli.data.tokenizer import load_tokenizer, vocab_of
    from objectives_cli.render import views

    objective = corruptions.get(name)
    tok = load_tokenizer()
    output.print_description(
        objective, views.sample(objective.name, tok, vocab_of(tok)), output.use_rich()
    )


OBJECTIVE, INPUT, OUTPUT = "Objective", "Input", "Output"  # corrupt's help panels


@app.command()
def corrupt(
    objective: Annotated[
        str | None,
        typer.Option(
            "--objective",
            "-o",
            metavar="NAME",
            show_default=False,
            help="Objective name or alias (see 'objectives list'); a+b composes BART noising. "
            "Without it: one example under every objective.",
            autocompletion=complete_objective,
            rich_help_panel=OBJECTIVE,
        ),
    ] = None,
    path: Annotated[
        str | None,
        typer.Argument(
            show_default=False,
            metavar="PATH|-",
            help="Text file (documents separated by blank lines), directory, .jsonl/.parquet, "
            "hf:NAME[:CONFIG], or - for stdin. Default: piped text, else the built-in corpus.",
        ),
    ] = None,
    data: Annotated[
        str | None,
        typer.Option(
            "--data",
            metavar="PATH",
            show_default=False,
            help="The same as PATH.",
            rich_help_panel=INPUT,
        ),
    ] = None,
    seed: Annotated[
        int,
        typer.Option(help="Same input and seed, same output.", rich_help_panel=OBJECTIVE),
    ] = 0,
    param: Annotated[
        list[str] | None,
        typer.Option(
            "--param",
            "-p",
            metavar="KEY=VALUE",
            show_default=False,
            help="Override a parameter (repeatable); see 'objectives describe NAME'.",
            rich_help_panel=OBJECTIVE,
        ),
    ] = None,
    tokenizer: Annotated[
        Path | None,
        typer.Option(
            "--tokenizer",
            metavar="FILE",
            dir_okay=False,
            show_default=False,
            help="Tokenizer JSON file. Default: the built-in WordPiece.",
            rich_help_panel=INPUT,
        ),
    ] = None,
    max_length: Annotated[
        int,
        typer.Option(
            "--max-length",
            callback=at_least(1, MAX_LENGTH),
            help=f"Tokens per example, at most {MAX_LENGTH}; longer documents are cut into blocks.",
            rich_help_panel=INPUT,
        ),
    ] = 128,
    limit: Annotated[
        int | None,
        typer.Option(
            callback=at_least(0),
            show_default=False,
            help=f"Examples: default {SHOW_LIMIT} for show and text, all for jsonl, 1 per "
            "objective without -o; 0 = all.",
            rich_help_panel=OUTPUT,
        ),
    ] = None,
    fmt: Annotated[
        CorruptFormat | None,
        typer.Option(
            "--format",
            "-f",
            show_default=False,
            help="show (in colour on a terminal), text (plain) or jsonl. Default: show on a "
            "terminal, else jsonl.",
            rich_help_panel=OUTPUT,
        ),
    ] = None,
    show: Annotated[
        bool, typer.Option("--show", help="Same as --format show.", rich_help_panel=OUTPUT)
    ] = False,
    fields: Annotated[
        str | None,
        typer.Option(
            "--fields",
            metavar="NAME,...",
            show_default=False,
            help="The JSONL fields to write, e.g. input_ids,labels (docs/jsonl.md). Default: "
            "all; the text fields (source, input, target) cost the most.",
            rich_help_panel=OUTPUT,
        ),
    ] = None,
    workers: Annotated[
        int,
        typer.Option(
            callback=at_least(1),
            help="Processes that tokenise and corrupt, one thread each; the output is the same "
            "for any number.",
            rich_help_panel=OUTPUT,
        ),
    ] = 1,
) -> None:
    """Show what an objective does to text, or write it as JSONL.

    objectives corrupt -o t5-span --show   |   cat notes.txt | objectives corrupt -o bart -

    objectives corrupt --show notes.txt    (the text under every objective)
    """
    import corruptions
    from objectives_cli.data import examples as made
    from objectives_cli.data.parallel import threads
    from objectives_cli.data.sources import Skipped, iter_documents, iter_piped_or_default
    from objectives_cli.data.streams import Meter
    from objectives_cli.data.tokenizer import load_tokenizer, vocab_of
    from objectives_cli.render import views
    from objectives_cli.render.progress import status

    if path is not None and data is not None:
        raise UsageError("give the text as PATH or with --data, not both")
    fmt, chosen = corrupt_format(objective, fmt, show, bool(param), fields)
    if limit is None:
        limit = 1 if objective is None else None if fmt is CorruptFormat.jsonl else SHOW_LIMIT
    if objective is not None:
        overrides = dict(parse_params(param or []))
        corruption = corruptions.create(objective, **overrides)
        name, params = corruptions.resolve(objective, overrides)
    tok = load_tokenizer(tokenizer)
    vocab = vocab_of(tok)
    source = path if path is not None else data
    skipped, meter = Skipped(), Meter()
    documents = (
        iter_documents(source, skipped, meter) if source is not None else iter_piped_or_default()
    )
    rich = fmt is CorruptFormat.show and output.use_rich()
    pieces = views.Pieces(tok, vocab)
    unknown = made.UnknownCount(vocab.unk)
    with threads(1):  # CPU corruption: parallel by --workers processes, never by threads
        if objective is None:
            for each, shown in made.zoo(tok, vocab, documents, max_length, seed, limit or None):
                examples = unknown.watch(shown)
                output.print_views((views.build(e, pieces) for e in examples), each, rich)
        else:
            as_jsonl = fmt is CorruptFormat.jsonl  # lines made by the workers; else views here
            made_examples = made.corrupt_documents(
                corruption,
                tok,
                vocab,
                documents,
                max_length,
                seed,
                limit or None,
                with_text=not as_jsonl,  # the show view's text; JSONL has none
                workers=workers,
                finish=jsonl.JsonlLine(name, params, seed, tok, chosen) if as_jsonl else None,
                unknown=unknown,
            )
            if as_jsonl:
                with status("corrupting") as say:
                    jsonl.write_lines(progressed(made_examples, meter, unknown, say))
            else:
                views_of = (views.build(e, pieces) for e in made_examples)
                output.print_views(views_of, name, rich)
    if skipped.count:
        output.print_warning(skipped.warning() or "")
    warning = unknown.warning(source if source not in (None, "-") else None)
    if warning:
        output.print_warning(*warning)


def corrupt_format(
    objective: str | None,
    fmt: CorruptFormat | None,
    show: bool,
    param: bool,
    fields: str | None,
) -> tuple[CorruptFormat, tuple[str, ...]]:
    """The format corrupt writes (--format, --show, a terminal or not) and the JSONL fields
    (--fields); a UsageError for options that contradict each other."""
    if show and fmt not in (None, CorruptFormat.show):
        raise UsageError(f"--show contradicts --format {fmt.value}")
    fmt = CorruptFormat.show if show else fmt
    if objective is None:  # the zoo at a glance
        if fmt is CorruptFormat.jsonl or param:
            raise UsageError(
                f"{'--param' if param else '--format jsonl'} needs one objective: give -o NAME",
                "without -o, corrupt shows one example under every objective (show or text)",
            )
        fmt = fmt or CorruptFormat.show  # a view, in a pipe too: JSONL is for one objective
    fmt = fmt or (CorruptFormat.show if output.is_terminal() else CorruptFormat.jsonl)
    if fields is not None and fmt is not CorruptFormat.jsonl:
        raise UsageError(f"--fields is for --format jsonl, not {fmt.value}")
    return fmt, jsonl_fields(fields) if fields is not None else jsonl.JSONL_FIELDS


def progressed(
    lines: Iterable[T], meter: Meter, unknown: UnknownCount, say: Callable[[str], None]
) -> Iterator[T]:
    """`lines`, telling `say` every PROGRESS_EVERY of them how far the reading is: bytes (of
    the whole when known), examples, tokens and tokens per second."""
    started = time.monotonic()
    for n, line in enumerate(lines, start=1):
        yield line
        if n % PROGRESS_EVERY == 0:
            seconds = time.monotonic() - started
            read = f"{meter.read / 1e6:,.1f}"
            share = f"{read} of {meter.total / 1e6:,.1f} MB" if meter.total else f"{read} MB"
            rate = unknown.n_tokens / seconds / 1e3 if seconds else 0.0
            say(f"{share} read, {n:,} examples, {unknown.n_tokens:,} tokens ({rate:,.0f} k/s)")


def jsonl_fields(text: str) -> tuple[str, ...]:
    """--fields NAME,...: the fields of docs/jsonl.md, in the schema's order."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in jsonl.JSONL_FIELDS]
    if unknown or not names:
        raise UsageError(
            f"--fields: {'unknown field ' + repr(unknown[0]) if unknown else 'no field given'}",
            f"choose among {', '.join(jsonl.JSONL_FIELDS)}",
        )
    return tuple(f for f in jsonl.JSONL_FIELDS if f in names)

"""Taking a trained run elsewhere: `export` (a transformers model directory) and `embed`
(contextual embeddings as features)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from corruptions.errors import DataError, UsageError
from objectives_cli.render import tables

from .app import app
from .options import DeviceOpt, Format, FormatOpt, table_or_json

if TYPE_CHECKING:
    from objectives_cli.train.embed import Embedded
    from objectives_cli.train.inference import LoadedRun

RunArg = Annotated[Path, typer.Argument(help="A run directory written by 'objectives train'.")]


@app.command()
def export(
    run_dir: RunArg,
    out: Annotated[Path, typer.Argument(help="The directory to write (new or empty).")],
    step: Annotated[
        int | None,
        typer.Option(show_default=False, help="Export this step's checkpoint. Default: newest."),
    ] = None,
    force: Annotated[bool, typer.Option(help="Replace OUT if it is not empty.")] = False,
    fmt: FormatOpt = None,
) -> None:
    """Write a trained run as a Hugging Face transformers model, with identical outputs.

    objectives export runs/sb hf-model/   then   AutoModelForMaskedLM.from_pretrained("hf-model")
    """
    from objectives_cli.train.export import export_run

    result = export_run(run_dir, out, step, force, warn=tables.warn)
    record = {
        "out": str(result.out),
        "architecture": result.architecture,
        "auto_class": result.auto_class,
        "max_logit_difference": result.max_diff,
        "notes": result.notes,
    }
    if table_or_json(fmt) is Format.json:
        print(json.dumps(record))
        return
    print(f"wrote {out}: {result.architecture} (load with transformers.{result.auto_class})")
    print(f"checked: the largest logit difference from the run is {result.max_diff:.1e}")
    for note in result.notes:
        print(f"note: {note}")


@app.command()
def embed(
    run_dir: RunArg,
    text: Annotated[
        str | None,
        typer.Argument(
            show_default=False,
            metavar="TEXT|FILE|-",
            help="A text, a file with one text per line, or '-' for stdin (the default when "
            "text is piped in).",
        ),
    ] = None,
    pool: Annotated[
        str | None,
        typer.Option(
            show_default=False,
            help="cls, mean, last, or none (a vector per token). Default: cls for encoders, "
            "last for decoders, mean for encoder-decoders.",
        ),
    ] = None,
    layer: Annotated[
        str, typer.Option(help="last (after the final LayerNorm), mean, or a block 1..L.")
    ] = "last",
    out: Annotated[
        Path | None,
        typer.Option(
            show_default=False,
            help="Write the vectors to a .npy (pooled) or .safetensors file instead of JSONL.",
        ),
    ] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Texts per forward pass.")] = 32,
    fmt: Annotated[
        VectorFormat | None,
        typer.Option(
            "--format",
            "-f",
            show_default=False,
            help="jsonl on stdout, or npy / safetensors into --out. Default: jsonl, or the "
            "--out file's suffix.",
        ),
    ] = None,
    device: DeviceOpt = "auto",
) -> None:
    """Contextual embeddings of texts from a trained run: JSONL on stdout, one line per text.

    objectives embed runs/sb notes.txt --pool mean --format jsonl > vectors.jsonl
    """
    from objectives_cli.render import output
    from objectives_cli.render.progress import track
    from objectives_cli.train import embed as embedding
    from objectives_cli.train.inference import load_run

    texts = read_texts(text)
    run = load_run(run_dir, device, warn=tables.warn)
    embedding.check_options(run, pool, layer)
    check_vector_format(fmt, out)
    cut = []

    def rows() -> Iterator[Embedded]:
        for e in track(
            embedding.embed_texts(run, texts, pool, layer, batch_size), len(texts), "embed"
        ):
            cut.extend([e.index] if e.cut else [])
            yield e

    if out is None:
        output.write_jsonl(as_row(e, texts[e.index], run) for e in rows())
    else:
        per_token = (pool or embedding.DEFAULT_POOL[run.model.cfg.arch]) == "none"
        write_vectors(out, list(rows()), per_token)
    if cut:
        tables.warn(
            f"warning: {len(cut)} text(s) were longer than the model's "
            f"{run.model.cfg.max_len} positions and were cut (the first: line {cut[0] + 1})"
        )


class VectorFormat(str, Enum):
    jsonl = "jsonl"
    npy = "npy"
    safetensors = "safetensors"


def check_vector_format(fmt: VectorFormat | None, out: Path | None) -> None:
    """--format and --out agree: JSONL goes to stdout, .npy and .safetensors into --out."""
    if out is None:
        if fmt not in (None, VectorFormat.jsonl):
            raise UsageError(f"--format {fmt.value} needs --out FILE.{fmt.value}")
        return
    if out.suffix not in (".npy", ".safetensors"):
        raise UsageError(f"cannot write {out}: use a .npy or .safetensors file")
    if fmt is not None and out.suffix != f".{fmt.value}":
        raise UsageError(
            f"--format {fmt.value} does not match --out {out}",
            "give an --out file ending in .npy or .safetensors, or leave out --format",
        )


def read_texts(text: str | None) -> list[str]:
    """The texts to embed: one per line of a file or of stdin, or the one text given."""
    if text is None or text == "-":
        if text is None and (sys.stdin is None or sys.stdin.isatty()):
            raise UsageError("no text to embed", "give TEXT, a FILE, or pipe lines into '-'")
        data = sys.stdin.buffer.read() if sys.stdin is not None else b""
        name = "<stdin>"
    elif Path(text).is_file():
        data, name = Path(text).read_bytes(), text
    else:
        return [text]
    try:
        lines = data.decode("utf-8-sig").splitlines()
    except UnicodeDecodeError as exc:
        raise DataError(f"{name} is not UTF-8 text (byte offset {exc.start})") from None
    if not lines:
        raise DataError(f"{name} holds no text", "one text per line")
    return lines


def as_row(e: Embedded, text: str, run: LoadedRun) -> dict[str, object]:
    """One JSONL line: the text, its index and its vector(s), rounded to 6 decimals."""
    row: dict[str, object] = {"index": e.index, "text": text}
    if e.vector.dim() == 1:
        row["embedding"] = [round(v, 6) for v in e.vector.tolist()]
    else:
        row["tokens"] = [run.tok.id_to_token(i) for i in e.ids]
        row["embeddings"] = [[round(v, 6) for v in r] for r in e.vector.tolist()]
    return row


def write_vectors(out: Path, done: list[Embedded], per_token: bool) -> None:
    """`.npy`: an (N, D) array of pooled vectors; `.safetensors`: "embeddings" (N, D), or, per
    token, "embeddings" (all tokens, D) and "offsets" (N + 1): text i is rows offsets[i]:[i+1]."""
    import io

    import torch

    from objectives_cli.data.files import write_atomic

    if out.suffix == ".npy":
        if per_token:
            raise UsageError("a .npy file holds pooled vectors only", "use .safetensors")
        import numpy as np

        buffer = io.BytesIO()
        np.save(buffer, torch.stack([e.vector for e in done]).numpy())
        data = buffer.getvalue()
    else:
        from safetensors.torch import save

        if per_token:
            lengths = torch.tensor([0, *(e.vector.size(0) for e in done)])
            tensors = {
                "embeddings": torch.cat([e.vector for e in done]),
                "offsets": lengths.cumsum(0),
            }
        else:
            tensors = {"embeddings": torch.stack([e.vector for e in done])}
        data = save(tensors)
    try:
        write_atomic(out, data)
    except OSError as exc:
        raise DataError(f"cannot write {out}: {exc.strerror}") from None
    print(f"wrote {out}: {len(done)} text(s)", file=sys.stderr)

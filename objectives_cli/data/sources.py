"""Documents in, documents out: read text from files, stdin or datasets, and the default corpus.

A document is a string; its paragraphs and sentences are separated by line breaks, and documents
in a plain text file are separated by blank lines (the convention of BERT's
`create_pretraining_data.py`). How a document splits into sentences, and documents into the
held-out share, is splits.py's.

The default corpus is real English prose that exists offline wherever Python runs: the language
reference topics of `pydoc_data` plus the docstrings of the standard library. Docstrings are read
from source with a small lexer (nothing is imported), cleaned and deduplicated; see `corpus.py`.
"""

from __future__ import annotations

import contextlib
import io
import os
import socket
import stat
import sys
import threading
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO, Literal

from corruptions.errors import DataError

from .streams import (  # noqa: F401 - split_documents and the suffixes are part of this API
    BINARY_SUFFIXES,
    JSONL_SUFFIXES,
    Meter,
    Skipped,
    path_documents,
    split_documents,
    text_documents,
    what,
)


def read_documents(source: str | Path | None, skipped: Skipped | None = None) -> list[str]:
    """Documents from: a text file (documents separated by blank lines), a directory of text
    files (recursively, *.txt and other text files, sorted), '-' (stdin), a .jsonl/.json-lines
    or .parquet file with a 'text' column, or 'hf:NAME[:CONFIG]' through datasets.load_dataset
    (split 'train'). None = the embedded default corpus, train split. Errors raise
    corruptions.DataError (CLI exit 1) naming the file and, for bad UTF-8, the byte offset; an
    empty result is an error too. Rows without a 'text' string are skipped and counted in
    `skipped` (see streams.py)."""
    return list(iter_documents(source, skipped))


def iter_documents(
    source: str | Path | None, skipped: Skipped | None = None, meter: Meter | None = None
) -> Iterator[str]:
    """`read_documents` as a stream: a file (or stdin) is read a block at a time as the
    documents are taken, so the first ones come at once from a file of any size. A missing file
    or a closed stdin is an error at once; bad UTF-8 or an empty source when read that far.
    `meter` counts the bytes read, for a progress line."""
    if source is None:
        return iter(default_corpus("train"))
    meter = meter if meter is not None else Meter()
    meter.skipped = skipped if skipped is not None else meter.skipped
    text = str(source)
    if text == "-":
        if stdin_state() == "closed":
            raise DataError(
                "standard input is closed", "pipe some text in, e.g. `echo 'the cat sat' | ...`"
            )
        docs = text_documents(_stdin_bytes(), "<stdin>", meter)
        return _nonempty(docs, "<stdin>", "pipe some text in, e.g. `echo 'the cat sat' | ...`")
    if text.startswith("hf:"):
        docs = iter(_read_hf(text[3:], meter.skipped))
        return _nonempty(docs, text, "check the dataset has a 'text' column")
    path = existing(text)
    hint = "the directory should hold UTF-8 text files" if path.is_dir() else None
    return _nonempty(
        path_documents(path, meter),
        str(path),
        hint or "documents are separated by blank lines",
        meter,
    )


def _stdin_bytes() -> BinaryIO:
    """Standard input as a binary stream (a test runner's has no buffer: read whole)."""
    stdin = sys.stdin
    if hasattr(stdin, "buffer"):
        return stdin.buffer
    return io.BytesIO(stdin.read().encode())


def existing(source: str | Path) -> Path:
    """`source` as a path that exists, else the one-line error."""
    path = Path(source)
    if not path.exists():
        raise DataError(
            f"no such file or directory: {path}",
            "pass a text file, a directory, '-' for stdin, or hf:NAME",
        )
    return path


def read_piped_or_default() -> list[str]:
    """`iter_piped_or_default`, as a list."""
    return list(iter_piped_or_default())


def iter_piped_or_default() -> Iterator[str]:
    """What a command reads when given no source: what is piped into standard input
    (`cat notes.txt | objectives corrupt ...`, read as a stream), else the default corpus
    (train split).

    A pipe or a redirected file is read even when it turns out empty, which is then an error
    (`grep NOMATCH f | objectives ...` must not quietly corrupt the default corpus instead); a
    terminal, /dev/null or a closed stdin mean that nothing is piped. (A stream without a file
    descriptor, as a test runner's, counts as piped when it holds anything.)"""
    state = stdin_state()
    hint = "nothing came through the pipe; without one, the built-in corpus is read"
    if state == "pipe":
        return _nonempty(text_documents(_stdin_bytes(), "<stdin>", Meter()), "<stdin>", hint)
    if state == "stream":
        raw = _read_stdin()
        if raw.strip():
            docs = text_documents(io.BytesIO(raw), "<stdin>", Meter())
            return _nonempty(docs, "<stdin>", hint)
    return iter(default_corpus("train"))


def stdin_state() -> Literal["closed", "terminal", "nothing", "pipe", "stream"]:
    """What standard input is: closed, a terminal, nothing (a character device such as
    /dev/null), a pipe (a pipe, socket or regular file), or a stream without a descriptor."""
    stdin = sys.stdin
    if stdin is None or stdin.closed:
        return "closed"
    try:
        fd = stdin.fileno()
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is both
        return "stream"
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        return "closed"
    if stdin.isatty():
        return "terminal"
    if stat.S_ISFIFO(mode) or stat.S_ISREG(mode) or stat.S_ISSOCK(mode):
        return "pipe"
    return "nothing"


def _read_stdin() -> bytes:
    stdin = sys.stdin
    return stdin.buffer.read() if hasattr(stdin, "buffer") else stdin.read().encode()


def default_corpus(split: Literal["train", "heldout"] = "train") -> list[str]:
    """Real English prose that exists offline wherever Python runs: pydoc_data.topics plus the
    standard library's docstrings, deduplicated (~2 MB), cached on disk after the first call,
    with a fixed held-out split."""
    from .corpus import corpus_split

    return corpus_split(split)


def _nonempty(
    docs: Iterator[str], name: str, hint: str | None = None, meter: Meter | None = None
) -> Iterator[str]:
    """The documents, and an error at their end when there were none."""
    empty = True
    for doc in docs:
        empty = False
        yield doc
    if empty:
        if meter is not None and meter.skipped.count:  # every row was skipped: say why
            raise DataError(f"{name} holds no text: {meter.skipped.warning()}", hint)
        raise DataError(f"{name} holds no text", hint)


def _text_column(rows: object, name: str, skipped: Skipped) -> list[str]:
    """The 'text' column of an Arrow table or a datasets.Dataset, as documents."""
    names = getattr(rows, "column_names", [])
    if "text" not in names:
        raise DataError(
            f"{name} has no 'text' column (columns: {', '.join(map(str, names))})",
            "the data layer reads the 'text' column",
        )
    column = rows["text"]  # type: ignore[index]
    values = column.to_pylist() if hasattr(column, "to_pylist") else list(column)
    docs = []
    for number, value in enumerate(values):
        if isinstance(value, str):
            docs.extend(split_documents(value))
        else:
            skipped.add(f"{name}, row {number}: the text is {what(value)}")
    return docs


HUB_TIMEOUT = 3.0  # seconds the Hub may take to accept a connection before we call it offline
TRUE = ("1", "ON", "YES", "TRUE")


def _read_hf(spec: str, skipped: Skipped) -> list[str]:
    """The documents of 'NAME[:CONFIG]', split 'train' (`load_hf`)."""
    return _text_column(load_hf(spec), f"hf:{spec}", skipped)


def load_hf(spec: str, streaming: bool = False, split: str | None = "train") -> Any:
    """'NAME[:CONFIG]' through datasets.load_dataset, split `split` (None: every split, as a
    DatasetDict) (`streaming`: rows come as they are downloaded, nothing is stored, unless the
    Hub cannot be reached: then from the local cache).

    Offline, `datasets` would spend half a minute in retries before failing; so unless
    HF_HUB_OFFLINE (or HF_DATASETS_OFFLINE) says so already, a connection to the Hub is tried
    first (HUB_TIMEOUT), and when it fails the dataset is loaded in offline mode: from the local
    cache, or one error line at once.
    """
    name, _, config = spec.partition(":")
    if not name:
        raise DataError("hf: needs a dataset name", "e.g. hf:wikitext:wikitext-2-raw-v1")
    offline = any(
        os.environ.get(v, "").upper() in TRUE for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
    )
    unreachable = not offline and not hub_reachable()
    with _offline_mode() if unreachable else contextlib.nullcontext():
        import datasets

        try:
            if streaming and not (offline or unreachable):
                return datasets.load_dataset(name, config or None, split=split, streaming=True)
            return datasets.load_dataset(name, config or None, split=split)
        except Exception as exc:  # network, missing dataset, bad config: all user-fixable
            if unreachable:
                raise DataError(
                    f"cannot load dataset hf:{spec}: the Hugging Face Hub ({hub_endpoint()}) "
                    "cannot be reached, and the dataset is not in the local cache",
                    "connect to the network, or load it once while online (it is cached)",
                ) from None
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise DataError(
                f"cannot load dataset hf:{spec}: {first}",
                "check the name and config, and that the Hub (or its cache) is reachable",
            ) from None


def hub_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT") or "https://huggingface.co"


def hub_reachable(timeout: float = HUB_TIMEOUT) -> bool:
    """Whether a TCP connection to the Hub (HF_ENDPOINT, else huggingface.co) opens within
    `timeout` seconds, name lookup included (it runs in a thread: a lookup can hang)."""
    url = urllib.parse.urlsplit(hub_endpoint())
    host = url.hostname or "huggingface.co"
    port = url.port or (80 if url.scheme == "http" else 443)
    result: list[bool] = []

    def connect() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=connect, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(result and result[0])


OFFLINE_FLAGS = ("huggingface_hub.constants", "datasets.config")  # modules that read it at import


@contextlib.contextmanager
def _offline_mode() -> Iterator[None]:
    """HF_HUB_OFFLINE for one load: the variable for the modules imported now, the flag they
    keep for the ones imported already; both as they were afterwards."""
    saved = os.environ.get("HF_HUB_OFFLINE")
    before = {m: sys.modules[m].HF_HUB_OFFLINE for m in OFFLINE_FLAGS if m in sys.modules}
    os.environ["HF_HUB_OFFLINE"] = "1"
    for m in before:
        sys.modules[m].HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = saved
        for m in OFFLINE_FLAGS:
            if m in sys.modules:
                sys.modules[m].HF_HUB_OFFLINE = before.get(m, (saved or "").upper() in TRUE)

"""Documents in, documents out: read text from files, stdin or datasets, and the default corpus.

A document is a string; its paragraphs and sentences are separated by line breaks, and documents
in a plain text file are separated by blank lines (the convention of BERT's
`create_pretraining_data.py`). `split_sentences` cuts a document into sentences, which is what
sentence-level objectives (NSP, SOP, BART sentence permutation, MASS) need.

The default corpus is real English prose that exists offline wherever Python runs: the language
reference topics of `pydoc_data` plus the docstrings of the standard library. Docstrings are read
from source with a small lexer (nothing is imported), cleaned and deduplicated; see `corpus.py`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import socket
import stat
import sys
import threading
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from corruptions.errors import DataError

# Extensions that are never text; anything else in a directory is tried as UTF-8.
BINARY_SUFFIXES = frozenset(
    {
        ".7z",
        ".a",
        ".arrow",
        ".bin",
        ".bmp",
        ".bz2",
        ".class",
        ".db",
        ".dll",
        ".dylib",
        ".exe",
        ".gif",
        ".gz",
        ".ico",
        ".jar",
        ".jpeg",
        ".jpg",
        ".lz4",
        ".mo",
        ".mp3",
        ".mp4",
        ".npy",
        ".npz",
        ".o",
        ".pdf",
        ".pkl",
        ".png",
        ".pt",
        ".pth",
        ".pyc",
        ".pyd",
        ".pyo",
        ".safetensors",
        ".so",
        ".sqlite",
        ".tar",
        ".tgz",
        ".wav",
        ".webp",
        ".whl",
        ".xz",
        ".zip",
        ".zst",
    }
)
JSONL_SUFFIXES = frozenset({".jsonl", ".json-lines", ".ndjson"})
HELDOUT_SHARE = 0.01  # documents held out of --data when no --eval-data is given


def read_documents(source: str | Path | None) -> list[str]:
    """Documents from: a text file (documents separated by blank lines), a directory of text
    files (recursively, *.txt and other text files, sorted), '-' (stdin), a .jsonl/.json-lines
    or .parquet file with a 'text' column, or 'hf:NAME[:CONFIG]' through datasets.load_dataset
    (split 'train'). None = the embedded default corpus, train split. Errors raise
    corruptions.DataError (CLI exit 1) naming the file and, for bad UTF-8, the byte offset; an
    empty result is an error too."""
    if source is None:
        return default_corpus("train")
    text = str(source)
    if text == "-":
        if stdin_state() == "closed":
            raise DataError(
                "standard input is closed", "pipe some text in, e.g. `echo 'the cat sat' | ...`"
            )
        docs = split_documents(_decode(_read_stdin(), "<stdin>"))
        return _nonempty(docs, "<stdin>", "pipe some text in, e.g. `echo 'the cat sat' | ...`")
    if text.startswith("hf:"):
        return _nonempty(_read_hf(text[3:]), text, "check the dataset has a 'text' column")
    path = Path(text)
    if not path.exists():
        raise DataError(
            f"no such file or directory: {path}",
            "pass a text file, a directory, '-' for stdin, or hf:NAME",
        )
    if path.is_dir():
        return _nonempty(_read_dir(path), str(path), "the directory should hold UTF-8 text files")
    return _nonempty(_read_file(path), str(path), "documents are separated by blank lines")


def read_piped_or_default() -> list[str]:
    """What a command reads when given no source: what is piped into standard input
    (`cat notes.txt | objectives corrupt ...`), else the default corpus (train split).

    A pipe or a redirected file is read even when it turns out empty, which is then an error
    (`grep NOMATCH f | objectives ...` must not quietly corrupt the default corpus instead); a
    terminal, /dev/null or a closed stdin mean that nothing is piped. (A stream without a file
    descriptor, as a test runner's, counts as piped when it holds anything.)"""
    state = stdin_state()
    if state in ("pipe", "stream"):
        raw = _read_stdin()
        if state == "pipe" or raw.strip():
            return _nonempty(
                split_documents(_decode(raw, "<stdin>")),
                "<stdin>",
                "nothing came through the pipe; without one, the built-in corpus is read",
            )
    return default_corpus("train")


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


def split_documents(text: str) -> list[str]:
    """Documents of a text: separated by blank lines; lines inside one are kept, trimmed."""
    docs = []
    for block in _BLANK_LINES.split(text):
        lines = [line.strip() for line in block.splitlines()]
        doc = "\n".join(line for line in lines if line)
        if doc:
            docs.append(doc)
    return docs


_BLANK_LINES = re.compile(r"\n[ \t\r\f\v]*\n")
# A sentence ends at ., ! or ? (closing quotes and brackets may follow) before whitespace, unless
# the next word starts in lowercase ("e.g. the", "approx. value") or the word is an abbreviation.
_SENTENCE_END = re.compile(r"""[.!?]+["'”’)\]]*\s+(?=[^\s])""")
_ABBREVIATIONS = frozenset(
    {
        "e.g",
        "i.e",
        "etc",
        "vs",
        "cf",
        "al",
        "approx",
        "no",
        "nos",
        "fig",
        "figs",
        "eq",
        "mr",
        "mrs",
        "ms",
        "dr",
        "prof",
        "st",
        "jr",
        "sr",
        "inc",
        "ltd",
        "co",
    }
)


def split_sentences(document: str) -> list[str]:
    """Sentences of a document: split at line breaks and after sentence-final punctuation."""
    return list(iter_sentences(document))


def iter_sentences(document: str) -> Iterator[str]:
    """`split_sentences`, one at a time (a 50 MB line need not be split whole to read its
    start)."""
    return (document[start:end] for start, end in sentence_spans(document))


def sentence_spans(document: str) -> Iterator[tuple[int, int]]:
    """Where the sentences of `iter_sentences` are in `document`: (start, end) of each, so the
    show view can print the text a block was cut from, as it was written."""
    line_start = 0
    for line in document.splitlines(keepends=True):
        start = 0
        for m in _SENTENCE_END.finditer(line):
            nxt = line[m.end()]
            if nxt.islower():
                continue
            word = line[start : m.start() + 1].rsplit(None, 1)[-1].rstrip(".").lower()
            if word in _ABBREVIATIONS or (len(word) == 1 and word.isalpha()):
                continue  # "e.g. Foo", "J. Smith"
            yield from _stripped(line, start, m.end(), line_start)
            start = m.end()
        yield from _stripped(line, start, len(line), line_start)
        line_start += len(line)


def _stripped(line: str, start: int, end: int, base: int) -> Iterator[tuple[int, int]]:
    """(start, end) of line[start:end] without its outer whitespace, offset by `base`; nothing
    when only whitespace is left."""
    text = line[start:end]
    stripped = text.strip()
    if stripped:
        first = start + len(text) - len(text.lstrip())
        yield base + first, base + first + len(stripped)


def split_heldout(
    documents: list[str], share: float = HELDOUT_SHARE
) -> tuple[list[str], list[str]]:
    """(train, held-out). A document is held out when the hash of its text falls in the first
    `share`, so the split stays put when documents are added or reordered. At least one document
    each way; a single document gives its last 10% of sentences (of words, when it reads as one
    sentence), never text it also trains on."""
    if len(documents) == 1:
        parts = split_sentences(documents[0])
        if len(parts) < 2:
            parts = documents[0].split()
        if len(parts) < 2:
            raise DataError(
                "the data is a single word, so none of it can be held out",
                "give more text, or held-out text with --eval-data",
            )
        cut = min(len(parts) - 1, max(1, round(len(parts) * 0.9)))
        return [" ".join(parts[:cut])], [" ".join(parts[cut:])]

    def bucket(doc: str) -> float:
        digest = hashlib.blake2b(doc.encode("utf-8", "surrogatepass"), digest_size=4).digest()
        return int.from_bytes(digest, "little") / 2**32

    held = [bucket(d) < share for d in documents]
    if not any(held):
        held[-1] = True
    if all(held):
        held[0] = False
    pairs = list(zip(documents, held, strict=True))
    return [d for d, h in pairs if not h], [d for d, h in pairs if h]


def default_corpus(split: Literal["train", "heldout"] = "train") -> list[str]:
    """Real English prose that exists offline wherever Python runs: pydoc_data.topics plus the
    standard library's docstrings, deduplicated (~2 MB), cached on disk after the first call,
    with a fixed held-out split."""
    from .corpus import corpus_split

    return corpus_split(split)


def _decode(data: bytes, name: str) -> str:
    """UTF-8 text (a BOM is dropped); DataError naming the file and the first bad byte."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{name} is not UTF-8 text: byte 0x{data[exc.start]:02x} at offset {exc.start} "
            f"({exc.reason})",
            "convert it, e.g. `iconv -f latin1 -t utf-8 FILE > FILE.utf8`",
        ) from None


def _nonempty(docs: list[str], name: str, hint: str | None = None) -> list[str]:
    if not docs:
        raise DataError(f"{name} holds no text", hint)
    return docs


def _read_file(path: Path) -> list[str]:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".parquet":
        return _read_parquet(path)
    if suffixes and suffixes[-1] in JSONL_SUFFIXES:
        return _read_jsonl(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror}") from None
    return split_documents(_decode(data, str(path)))


def _text_files(root: Path) -> Iterator[Path]:
    for path in sorted(root.rglob("*")):
        if (
            path.is_file()
            and not any(p.startswith(".") for p in path.relative_to(root).parts)
            and path.suffix.lower() not in BINARY_SUFFIXES
        ):
            yield path


def _read_dir(root: Path) -> list[str]:
    docs: list[str] = []
    for path in _text_files(root):
        docs.extend(_read_file(path))
    return docs


def _read_jsonl(path: Path) -> list[str]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror}") from None
    docs = []
    for number, line in enumerate(_decode(data, str(path)).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(
                f"{path}, line {number}: not JSON ({exc.msg})",
                "each line must be one JSON object with a 'text' field",
            ) from None
        if not isinstance(row, dict) or not isinstance(row.get("text"), str):
            raise DataError(
                f"{path}, line {number}: no 'text' string field",
                "each line must be one JSON object with a 'text' field",
            )
        docs.extend(split_documents(row["text"]))
    return docs


def _text_column(rows: object, name: str) -> list[str]:
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
    for value in values:
        if isinstance(value, str):
            docs.extend(split_documents(value))
    return docs


def _read_parquet(path: Path) -> list[str]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (OSError, ValueError) as exc:  # pyarrow.ArrowInvalid is a ValueError
        raise DataError(f"cannot read {path} as Parquet: {exc}") from None
    return _text_column(table, str(path))


HUB_TIMEOUT = 3.0  # seconds the Hub may take to accept a connection before we call it offline
TRUE = ("1", "ON", "YES", "TRUE")


def _read_hf(spec: str) -> list[str]:
    """'NAME[:CONFIG]' through datasets.load_dataset, split 'train'.

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
            dataset = datasets.load_dataset(name, config or None, split="train")
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
    return _text_column(dataset, f"hf:{spec}")


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

"""Documents read as a stream: a block of a file at a time, never the whole source at once.

Every file-like source (a text file, a directory of them, standard input, JSON Lines, Parquet,
the rows of a Hugging Face dataset) becomes an iterator of documents that holds in memory one
block of the file (BLOCK bytes) and the document being read. It gives the same documents, in the
same order, as splitting the whole text at once (`split_documents`), so a corpus prepared from a
stream is the corpus the in-memory path reads.

A text file is read as lines (split at "\\n" only): a line of nothing but spaces, tabs, "\\r",
"\\f" or "\\v" ends a document; any other line adds its `splitlines()` pieces, stripped, when not
empty. That is `split_documents`' regular expression (`\\n[ \\t\\r\\f\\v]*\\n`) read line by line.

A JSON line or a Parquet row without a 'text' string (not JSON, no such field, null, a number)
is skipped and counted in `Skipped`, its position kept for the warning: one bad row in the middle
of a 100 GB file costs that row, not the file. (`throttled` paces the progress lines that
reading a large source says.)
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from corruptions.errors import DataError

BLOCK = 1 << 20  # bytes read at a time
BOM = b"\xef\xbb\xbf"
BLANK = re.compile(r"[ \t\r\f\v]*")  # a line that separates documents (split_documents' class)
_BLANK_LINES = re.compile(r"\n[ \t\r\f\v]*\n")
NOT_UTF8_HINT = "convert it, e.g. `iconv -f latin1 -t utf-8 FILE > FILE.utf8`"


def split_documents(text: str) -> list[str]:
    """Documents of a text: separated by blank lines; lines inside one are kept, trimmed."""
    docs = []
    for block in _BLANK_LINES.split(text):
        lines = [line.strip() for line in block.splitlines()]
        doc = "\n".join(line for line in lines if line)
        if doc:
            docs.append(doc)
    return docs


def not_utf8(name: str, data: bytes, exc: UnicodeDecodeError, base: int = 0) -> DataError:
    """The error for bad UTF-8: the file, the first bad byte and its offset in the file."""
    return DataError(
        f"{name} is not UTF-8 text: byte 0x{data[exc.start]:02x} at offset {base + exc.start} "
        f"({exc.reason})",
        NOT_UTF8_HINT,
    )


def throttled(seconds: float, say: Callable[[str], None]) -> Callable[[str], None]:
    """`say`, passing a text on at most once per `seconds` (the first after `seconds`): a
    progress line that a long job updates often and a log gets only now and then."""
    said = time.monotonic()

    def maybe(text: str) -> None:
        nonlocal said
        if time.monotonic() - said >= seconds:
            said = time.monotonic()
            say(text)

    return maybe


@dataclass
class Skipped:
    """Rows without a 'text' string that a reader skipped: how many, and where the first was."""

    count: int = 0
    first: str | None = None  # "data.jsonl, line 7: not JSON (Expecting value)"

    def add(self, where: str) -> None:
        self.count += 1
        if self.first is None:
            self.first = where

    def warning(self) -> str | None:
        """One line for the user, or None when nothing was skipped."""
        if not self.count:
            return None
        rows = "row" if self.count == 1 else "rows"
        return f"skipped {self.count:,} {rows} without a 'text' string (the first: {self.first})"


@dataclass
class Meter:
    """What a stream has read so far: bytes of its files (of `total` when known), and skips."""

    read: int = 0
    total: int | None = None
    skipped: Skipped = field(default_factory=Skipped)


def lines(stream: IO[bytes], name: str, meter: Meter) -> Iterator[str]:
    """The lines of a binary stream, decoded as UTF-8 (a leading BOM dropped), without their
    "\\n"; a block at a time, a line longer than a block joined once. Bad UTF-8 is a DataError
    naming the byte and its offset in the file."""
    parts: list[bytes] = []  # a line that spans blocks, still open
    base = 0  # file offset of the first byte of parts[0] (or of the next block)
    first = True
    while True:
        block = stream.read(BLOCK)
        meter.read += len(block)
        cut = block.rfind(b"\n") + 1 if block else len(block)
        if block and not cut:  # no line ends in this block
            parts.append(block)
            continue
        data = b"".join([*parts, block[:cut]]) if parts else block[:cut]
        parts = [block[cut:]] if cut < len(block) else []
        skip = len(BOM) if first and data.startswith(BOM) else 0
        first = False
        try:
            text = data[skip:].decode("utf-8")
        except UnicodeDecodeError as exc:
            raise not_utf8(name, data[skip:], exc, base + skip) from None
        base += len(data)
        if text:
            pieces = text.split("\n")
            if text.endswith("\n"):
                pieces.pop()
            yield from pieces
        if not block:
            return


def text_documents(stream: IO[bytes], name: str, meter: Meter) -> Iterator[str]:
    """The documents of a text stream: `split_documents` of its whole text, line by line."""
    current: list[str] = []
    for line in lines(stream, name, meter):
        if BLANK.fullmatch(line):
            if current:
                yield "\n".join(current)
                current = []
            continue
        for piece in line.splitlines():
            piece = piece.strip()
            if piece:
                current.append(piece)
    if current:
        yield "\n".join(current)


def jsonl_documents(stream: IO[bytes], name: str, meter: Meter) -> Iterator[str]:
    """The documents of the 'text' field of every JSON line (a text may hold several)."""
    for number, line in enumerate(lines(stream, name, meter), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            meter.skipped.add(f"{name}, line {number}: not JSON ({exc.msg})")
            continue
        if not isinstance(row, dict) or not isinstance(row.get("text"), str):
            meter.skipped.add(f"{name}, line {number}: no 'text' string field")
            continue
        yield from split_documents(row["text"])


def parquet_documents(path: Path, meter: Meter) -> Iterator[str]:
    """The documents of the 'text' column of a Parquet file, a batch of rows at a time."""
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
        names = parquet.schema_arrow.names
    except (OSError, ValueError) as exc:  # pyarrow.ArrowInvalid is a ValueError
        raise DataError(f"cannot read {path} as Parquet: {exc}") from None
    if "text" not in names:
        raise DataError(
            f"{path} has no 'text' column (columns: {', '.join(map(str, names))})",
            "the data layer reads the 'text' column",
        )
    size, n_rows = path.stat().st_size, max(1, parquet.metadata.num_rows)
    start, row = meter.read, 0
    for batch in parquet.iter_batches(batch_size=4096, columns=["text"]):
        for value in batch.column(0).to_pylist():
            if isinstance(value, str):
                yield from split_documents(value)
            else:
                meter.skipped.add(f"{path}, row {row}: the text is {what(value)}")
            row += 1
        meter.read = start + size * row // n_rows  # Parquet is compressed: a share of the file


def row_documents(rows: Iterable[Any], name: str, meter: Meter) -> Iterator[str]:
    """The documents of the 'text' field of rows (a Hugging Face dataset, streamed or not)."""
    for number, row in enumerate(rows):
        value = row.get("text") if isinstance(row, dict) else None
        if isinstance(value, str):
            meter.read += len(value.encode("utf-8", "surrogatepass"))
            yield from split_documents(value)
        else:
            meter.skipped.add(f"{name}, row {number}: the text is {what(value)}")


def what(value: object) -> str:
    return "missing" if value is None else f"a {type(value).__name__}"


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


def text_files(root: Path) -> Iterator[Path]:
    """The files of a directory that are read as text: recursively, sorted, hidden ones and
    binary extensions skipped."""
    for path in sorted(root.rglob("*")):
        if (
            path.is_file()
            and not any(p.startswith(".") for p in path.relative_to(root).parts)
            and path.suffix.lower() not in BINARY_SUFFIXES
        ):
            yield path


def file_documents(path: Path, meter: Meter) -> Iterator[str]:
    """The documents of one file, by its suffix: Parquet, JSON Lines, else text."""
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        yield from parquet_documents(path, meter)
        return
    try:
        stream = open(path, "rb")  # noqa: SIM115 - closed below, also when the reader stops early
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror}") from None
    with stream:
        reader = jsonl_documents if suffix in JSONL_SUFFIXES else text_documents
        try:
            yield from reader(stream, str(path), meter)
        except OSError as exc:
            raise DataError(f"cannot read {path}: {exc.strerror}") from None


def path_documents(path: Path, meter: Meter) -> Iterator[str]:
    """The documents of a file or of every text file below a directory."""
    if not path.is_dir():
        meter.total = path.stat().st_size
        yield from file_documents(path, meter)
        return
    files = list(text_files(path))
    meter.total = sum(f.stat().st_size for f in files)
    for file in files:
        yield from file_documents(file, meter)


def identity(path: Path) -> dict[str, Any]:
    """What says that a file or directory is the one read before: its resolved path, and the
    size and modification time of each file (a digest of the list for a directory)."""
    path = path.resolve()
    if not path.is_dir():
        info = path.stat()
        return {"path": str(path), "size": info.st_size, "mtime_ns": info.st_mtime_ns}
    digest = hashlib.blake2b(digest_size=16)
    size = 0
    for file in text_files(path):
        info = file.stat()
        size += info.st_size
        digest.update(f"{file.relative_to(path)}\0{info.st_size}\0{info.st_mtime_ns}\n".encode())
    return {"path": str(path), "size": size, "files": digest.hexdigest()}


def changed(path: Path, before: dict[str, Any]) -> str | None:
    """How `path` differs from the identity `before` (it disappeared, or its size or time
    changed), or None when it is the same."""
    if not path.exists():
        return "it disappeared"
    now = identity(path)
    if now["size"] != before["size"]:
        return f"its size changed from {before['size']:,} to {now['size']:,} bytes"
    if now != before:
        return "it was modified"
    return None


def source_size(path: Path) -> int:
    """Bytes of a file, or of the files below a directory that are read as text."""
    return sum(f.stat().st_size for f in text_files(path)) if path.is_dir() else path.stat().st_size

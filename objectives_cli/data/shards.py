"""A prepared corpus: tokenised documents in shard files, read through memory maps.

The format is plain numpy memory maps, as nanoGPT's `train.bin` and Megatron's indexed dataset
(`.bin` + `.idx`): a reader needs numpy and the index, not this project. (Arrow through
`datasets` was the other candidate; its list<int64> column costs 8 bytes per token plus offsets,
and a row gather goes through Arrow's chunked arrays rather than one slice of a map.)

    DIR/index.json         written last: the format, the tokenizer's SHA-256, the id type, the
                           source and its identity, and per split its shards with their size,
                           SHA-256, tokens and documents. A directory without it is no corpus.
    DIR/tokenizer.json     the tokenizer the ids are of
    DIR/train-00000.bin    a shard: whole documents, in input order
    DIR/heldout-00000.bin

A shard of N tokens and D documents holds, one after the other (8-byte aligned):

    ids              N x uint16 (uint32 when the vocabulary has more than 65,536 ids)
    word starts      ceil(N / 8) bytes: one bit per token (numpy.packbits, first token = high bit)
    sentence starts  ceil(N / 8) bytes
    offsets          (D + 1) x int64: document d is tokens [offsets[d], offsets[d + 1])

so a token costs 2.25 bytes with uint16 ids, plus 8 bytes per document.

Nothing in a directory is trusted: its shards must have the size the index gives (and that
their counts imply) and the SHA-256 it records. Hashing reads every byte once, so a machine
remembers what it checked (`cache/verified/`, keyed by path, size, time and inode) and hashes a
shard again only when that changes. Rows are gathered through read-only memory maps (one copy in
the page cache for every process of a machine); long scans (packing) read the files instead,
so that they do not stay mapped into the process.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from corruptions.errors import DataError

from .files import cache_dir, write_atomic

FORMAT = "objectives-prepared"
VERSION = 1
INDEX, TOKENIZER, PROGRESS = "index.json", "tokenizer.json", "progress.json"
SPLITS = ("train", "heldout")
HASH_BLOCK = 1 << 22  # bytes hashed at a time


def id_type(vocab_size: int) -> str:
    """The narrowest unsigned type that holds every id."""
    return "uint16" if vocab_size <= 1 << 16 else "uint32"


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _align(n: int) -> int:
    return -(-n // 8) * 8


@dataclass(frozen=True)
class Layout:
    """Where each part of a shard of `tokens` tokens and `documents` documents starts."""

    tokens: int
    documents: int
    dtype: str

    @property
    def words(self) -> int:
        return _align(self.tokens * np.dtype(self.dtype).itemsize)

    @property
    def sentences(self) -> int:
        return self.words + -(-self.tokens // 8)

    @property
    def offsets(self) -> int:
        return _align(self.sentences + -(-self.tokens // 8))

    @property
    def size(self) -> int:
        return self.offsets + 8 * (self.documents + 1)


def shard_bytes(
    ids: np.ndarray, words: np.ndarray, sentences: np.ndarray, lengths: np.ndarray, dtype: str
) -> list[bytes]:
    """The parts of a shard file, in order (written one after the other, never joined)."""
    layout = Layout(len(ids), len(lengths), dtype)
    parts = [np.ascontiguousarray(ids, dtype=dtype).tobytes()]
    parts.append(bytes(layout.words - len(parts[0])))
    parts += [np.packbits(words).tobytes(), np.packbits(sentences).tobytes()]
    parts.append(bytes(layout.offsets - layout.sentences - len(parts[-1])))
    parts.append(np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)]).tobytes())
    return parts


@dataclass(frozen=True)
class ShardInfo:
    """One shard as the index lists it."""

    file: str
    tokens: int
    documents: int
    bytes: int
    sha256: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class ShardWriter:
    """Documents of one split -> shard files of about `target` tokens, whole documents each.

    `add` takes tokenised text whose last document may go on in the next call (`ends` False:
    a long document comes a chunk at a time); `flush` writes what is held as one shard, under a
    temporary name renamed when complete (`files.write_atomic`), and returns its `ShardInfo`.
    """

    def __init__(self, root: Path, split: str, dtype: str, target: int, first: int = 0) -> None:
        self.root, self.split, self.dtype, self.target = root, split, dtype, target
        self.number = first  # of the next shard
        self.parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.lengths: list[int] = []  # tokens of each complete document held
        self.open = 0  # tokens of the document that goes on, held already
        self.held = 0  # tokens held

    def add(
        self,
        ids: np.ndarray,
        words: np.ndarray,
        sentences: np.ndarray,
        lengths: Sequence[int],
        ends: bool = True,
    ) -> None:
        """Tokens of documents in order (`lengths` each; the first may continue the open one)."""
        if len(ids):
            self.parts.append((ids.astype(self.dtype, copy=False), words, sentences))
            self.held += len(ids)
        for i, n in enumerate(lengths):
            total = self.open + int(n)
            self.open = 0
            if i == len(lengths) - 1 and not ends:
                self.open = total
            elif total:  # a document without tokens is dropped, as corpus_from does
                self.lengths.append(total)

    @property
    def full(self) -> bool:
        return self.held >= self.target and not self.open

    def flush(self) -> ShardInfo | None:
        """Write the documents held as the next shard (None when nothing is held)."""
        assert not self.open, "a shard holds whole documents"
        if not self.held:
            return None
        ids, words, sents = (np.concatenate([p[k] for p in self.parts]) for k in range(3))
        parts = shard_bytes(ids, words, sents, np.asarray(self.lengths), self.dtype)
        digest = hashlib.sha256()
        for part in parts:
            digest.update(part)
        name = f"{self.split}-{self.number:05d}.bin"
        try:
            write_atomic(self.root / name, parts)
        except OSError as exc:
            raise DataError(
                f"cannot write {self.root / name}: {exc.strerror}",
                "free some space (or pick another --out) and run the same command again: it "
                "goes on after the last complete shard",
            ) from None
        info = ShardInfo(
            name, len(ids), len(self.lengths), sum(map(len, parts)), digest.hexdigest()
        )
        self.number += 1
        self.parts, self.lengths, self.held = [], [], 0
        return info


class Shard:
    """One shard file, mapped read-only (the map is made on first use)."""

    def __init__(self, path: Path, info: ShardInfo, dtype: str) -> None:
        self.path, self.info, self.dtype = path, info, dtype
        self.layout = Layout(info.tokens, info.documents, dtype)
        self._map: np.memmap | None = None

    @property
    def map(self) -> np.memmap:
        if self._map is None:
            self._map = np.memmap(self.path, dtype=np.uint8, mode="r")
        return self._map

    def ids(self) -> np.ndarray:
        return self.map[: self.layout.words].view(self.dtype)[: self.info.tokens]

    def bits(self, sentences: bool) -> np.ndarray:
        start = self.layout.sentences if sentences else self.layout.words
        return self.map[start : start + -(-self.info.tokens // 8)]

    def offsets(self) -> np.ndarray:
        return self.map[self.layout.offsets :].view(np.int64)

    def read(self, start: int, count: int, dtype: Any) -> np.ndarray:
        """`count` items of `dtype` from byte `start`, read from the file (not mapped)."""
        return np.fromfile(self.path, dtype=dtype, count=count, offset=start)

    def read_bits(self, sentences: bool, lo: int, hi: int) -> np.ndarray:
        """The flags of tokens [lo, hi) as bools, read from the file."""
        base = self.layout.sentences if sentences else self.layout.words
        raw = self.read(base + lo // 8, -(-hi // 8) - lo // 8, np.uint8)
        return np.unpackbits(raw)[lo % 8 : lo % 8 + hi - lo].astype(bool)

    def read_offsets(self, lo: int, hi: int) -> np.ndarray:
        """Offsets lo..hi (inclusive) of the shard's documents, read from the file."""
        return self.read(self.layout.offsets + 8 * lo, hi - lo + 1, np.int64)


def _bit(bits: np.ndarray, at: np.ndarray) -> np.ndarray:
    return ((bits[at >> 3] >> (7 - (at & 7)).astype(np.uint8)) & 1).astype(bool)


class MappedCorpus:
    """One split of a prepared directory: `packing.Corpus`'s reading methods over shard files.

    Token and document numbers run across the shards in order, as if the shards were one file.
    """

    def __init__(self, shards: list[Shard]) -> None:
        self.shards = shards
        self.token_base = np.concatenate([[0], np.cumsum([s.info.tokens for s in shards])])
        self.doc_base = np.concatenate([[0], np.cumsum([s.info.documents for s in shards])])

    def __len__(self) -> int:
        return int(self.token_base[-1])

    @property
    def n_documents(self) -> int:
        return int(self.doc_base[-1])

    def _split(self, at: np.ndarray) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """(shard number, which of `at`, their positions in it) for every shard `at` touches."""
        which = np.searchsorted(self.token_base, at, side="right") - 1
        for k in np.unique(which).tolist():
            chosen = which == k
            yield k, chosen, at[chosen] - self.token_base[k]

    def gather(self, at: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(ids int64, word starts, sentence starts) of the tokens at positions `at` (any shape)."""
        flat = np.asarray(at, dtype=np.int64).ravel()
        ids = np.empty(flat.shape, dtype=np.int64)
        words = np.empty(flat.shape, dtype=bool)
        sents = np.empty(flat.shape, dtype=bool)
        for k, chosen, local in self._split(flat):
            shard = self.shards[k]
            ids[chosen] = shard.ids()[local]
            words[chosen] = _bit(shard.bits(False), local)
            sents[chosen] = _bit(shard.bits(True), local)
        shape = np.shape(at)
        return ids.reshape(shape), words.reshape(shape), sents.reshape(shape)

    def document_of(self, at: np.ndarray) -> np.ndarray:
        """The document each token position of `at` belongs to."""
        flat = np.asarray(at, dtype=np.int64).ravel()
        out = np.empty(flat.shape, dtype=np.int64)
        for k, chosen, local in self._split(flat):
            found = np.searchsorted(self.shards[k].offsets(), local, side="right") - 1
            out[chosen] = found + self.doc_base[k]
        return out.reshape(np.shape(at))

    def word_starts_in(self, lo: int, hi: int) -> np.ndarray:
        """Word starts of tokens [lo, hi), read from the files."""
        parts = []
        for k, shard in enumerate(self.shards):
            a, b = max(lo, int(self.token_base[k])), min(hi, int(self.token_base[k + 1]))
            if a < b:
                base = int(self.token_base[k])
                parts.append(shard.read_bits(False, a - base, b - base))
        return np.concatenate(parts) if parts else np.zeros(0, dtype=bool)

    def document_offsets(self, chunk: int) -> Iterator[np.ndarray]:
        """The documents' offsets in the whole split, `chunk` documents at a time: each array
        holds the bounds of consecutive documents (its last value opens the next array)."""
        for k, shard in enumerate(self.shards):
            for lo in range(0, shard.info.documents, chunk):
                hi = min(lo + chunk, shard.info.documents)
                yield shard.read_offsets(lo, hi) + self.token_base[k]


@dataclass(frozen=True)
class Prepared:
    """A prepared directory, checked: its index, tokenizer and splits."""

    root: Path
    index: dict[str, Any]
    tokenizer_json: str
    train: MappedCorpus
    heldout: MappedCorpus

    @property
    def characters(self) -> int:
        return int(self.index.get("characters", 0))


def is_prepared(path: str | Path) -> bool:
    """Whether `path` is a directory that a prepare wrote into (finished or not)."""
    root = Path(path)
    return root.is_dir() and ((root / INDEX).is_file() or (root / PROGRESS).is_file())


def damaged(root: Path, what: str) -> DataError:
    return DataError(
        f"{root} is damaged: {what}",
        f"prepare it again: objectives data prepare SOURCE --out {root}",
    )


def read_index(root: Path) -> dict[str, Any]:
    """index.json of a prepared directory, checked for its format (not yet its shards)."""
    path = root / INDEX
    if not path.is_file():
        if (root / PROGRESS).is_file():
            raise DataError(
                f"{root} holds a prepare that did not finish",
                "run the same `objectives data prepare` again: it goes on where it stopped",
            )
        raise DataError(
            f"{root} is not a prepared corpus (it has no {INDEX})",
            "make one with `objectives data prepare SOURCE --out DIR`",
        )
    try:
        index = json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise damaged(root, f"{INDEX} cannot be read ({exc})") from None
    if not isinstance(index, dict) or index.get("format") != FORMAT:
        raise damaged(root, f"{INDEX} is not the index of a prepared corpus")
    if index.get("version") != VERSION:
        raise DataError(
            f"{root} was prepared in format version {index.get('version')}, this version reads "
            f"{VERSION}",
            "prepare it again with this version",
        )
    return index


def open_prepared(path: str | Path, tokenizer_json: str | None = None) -> Prepared:
    """A prepared directory, every part checked: its index, its tokenizer (and that it is
    `tokenizer_json`, when given), the size and SHA-256 of every shard.

    Raises:
        DataError: a directory that is not one, another tokenizer's, or one whose files differ
            from what its index says.
    """
    root = Path(path)
    index = read_index(root)
    try:
        text = (root / TOKENIZER).read_text(encoding="utf-8")
    except (OSError, ValueError) as exc:
        raise damaged(root, f"its {TOKENIZER} cannot be read ({exc})") from None
    recorded = index.get("tokenizer", {}).get("sha256")
    if sha256_text(text) != recorded:
        raise damaged(root, f"its {TOKENIZER} is not the one its shards were made with")
    if tokenizer_json is not None and sha256_text(tokenizer_json) != recorded:
        raise DataError(
            f"{root} was prepared with another tokenizer (SHA-256 {recorded[:12]}…, this "
            f"one's is {sha256_text(tokenizer_json)[:12]}…); its ids mean other tokens",
            f"leave out --tokenizer to use its own ({root / TOKENIZER}), or prepare the source "
            "again with this tokenizer",
        )
    dtype = index.get("dtype")
    if dtype not in ("uint16", "uint32"):
        raise damaged(root, f"{INDEX} gives the id type {dtype!r}")
    splits = {}
    for split in SPLITS:
        try:
            infos = [ShardInfo(**s) for s in index["splits"][split]["shards"]]
        except (KeyError, TypeError) as exc:
            raise damaged(root, f"{INDEX} does not list the {split} shards ({exc})") from None
        shards = [Shard(root / info.file, info, dtype) for info in infos]
        for shard in shards:
            check_size(root, shard)
        splits[split] = MappedCorpus(shards)
    verify(root, [s for split in SPLITS for s in splits[split].shards])
    return Prepared(root, index, text, splits["train"], splits["heldout"])


def check_size(root: Path, shard: Shard) -> None:
    """A shard file must be there and have the size its counts give."""
    try:
        size = shard.path.stat().st_size
    except OSError:
        raise damaged(root, f"{shard.info.file} is missing") from None
    if size != shard.info.bytes or size != shard.layout.size:
        raise damaged(
            root, f"{shard.info.file} has {size:,} bytes, its index says {shard.info.bytes:,}"
        )


def verify(root: Path, shards: list[Shard]) -> None:
    """Check the SHA-256 of every shard, except those this machine checked already and that
    have not changed since (same size, time and inode)."""
    record = cache_dir() / "verified" / f"{sha256_text(str(root.resolve()))[:32]}.json"
    try:
        known = json.loads(record.read_bytes())
    except (OSError, ValueError):
        known = {}
    checked = {}
    for shard in shards:
        info = shard.path.stat()
        key = [info.st_size, info.st_mtime_ns, info.st_ino, shard.info.sha256]
        if known.get(shard.info.file) != key and file_sha256(shard.path) != shard.info.sha256:
            raise damaged(root, f"{shard.info.file} differs from what was written (SHA-256)")
        checked[shard.info.file] = key
    if checked != known:
        with contextlib.suppress(OSError):  # a full or read-only cache: the next run checks again
            write_atomic(record, json.dumps(checked))


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, read a block at a time (not mapped)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def remove_leftovers(root: Path, keep: set[str]) -> list[str]:
    """Remove shard files (and temporary files) of an unfinished prepare that `keep` does not
    name; returns their names."""
    removed = []
    for path in sorted(root.iterdir()):
        name = path.name
        leftover = name.endswith(".tmp") or (
            name.endswith(".bin") and name.split("-")[0] in SPLITS and name not in keep
        )
        if leftover and path.is_file():
            os.unlink(path)
            removed.append(name)
    return removed

"""How text splits: a document into sentences (what NSP, SOP, BART's sentence permutation and
MASS read, and where tokenisation starts a sentence), and a stream of documents into training
and held-out ones (`HeldoutSplit`: by a hash of each document, so the split stays put).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator

from corruptions.errors import DataError

HELDOUT_SHARE = 0.01  # documents held out of --data when no --eval-data is given


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
    """(train, held-out) by `HeldoutSplit` (see there): a document is held out when the hash of
    its text falls in the first `share`, at least one document each way, and a single document
    gives its last 10% of sentences."""
    split = HeldoutSplit(share)
    routed = [r for doc in documents for r in split.push(doc)] + list(split.finish())
    return [d for held, d in routed if not held], [d for held, d in routed if held]


def heldout_bucket(document: str) -> float:
    """Where the hash of a document's text falls in [0, 1): below the share, it is held out."""
    digest = hashlib.blake2b(document.encode("utf-8", "surrogatepass"), digest_size=4).digest()
    return int.from_bytes(digest, "little") / 2**32


class HeldoutSplit:
    """The held-out split of a stream of documents: `push` each document and then `finish`, and
    (held out, document) pairs come out, each side in input order.

    A document is held out when the hash of its text falls in the first `share`, so the split
    stays put when documents are added or reordered. At least one document goes each way: when
    none is held out the last one is, and when all are the first one trains. A single document
    gives its last 10% of sentences (of words, when it reads as one sentence), never text it
    also trains on. So the stream holds back at most the first document (until a second one
    comes), the last training document (until one is held out) and the held-out ones (until
    one trains): the last two only at the start of a real corpus. `share` 0 holds nothing out.
    """

    def __init__(self, share: float) -> None:
        self.share = share
        self.n = 0  # documents pushed
        self.first: str | None = None  # the first document, until a second one comes
        self.back: str | None = None  # the last training document, while none is held out
        self.waiting: list[str] = []  # held-out documents, while none trains
        self.trained = self.held = False

    @property
    def holding(self) -> bool:
        """Whether documents pushed have not come out yet."""
        return self.first is not None or self.back is not None or bool(self.waiting)

    def resume(self, n: int, trained: bool, held: bool) -> None:
        """Go on after `n` documents whose split came out whole (`holding` was False)."""
        self.n, self.trained, self.held = n, trained, held

    def push(self, document: str) -> Iterator[tuple[bool, str]]:
        self.n += 1
        if self.n == 1:
            self.first = document
            return
        if self.first is not None:
            yield from self._route(self.first)
            self.first = None
        yield from self._route(document)

    def _route(self, document: str) -> Iterator[tuple[bool, str]]:
        if self.share <= 0:
            yield False, document
        elif heldout_bucket(document) < self.share:
            if not self.trained:
                self.waiting.append(document)
                return
            if self.back is not None:
                yield False, self.back
                self.back = None
            self.held = True
            yield True, document
        else:
            if not self.trained:
                self.trained = True
                self.held = bool(self.waiting)
                yield from ((True, d) for d in self.waiting)
                self.waiting = []
            if self.held:
                yield False, document
            else:
                if self.back is not None:
                    yield False, self.back
                self.back = document

    def finish(self) -> Iterator[tuple[bool, str]]:
        if self.first is not None:
            if self.share <= 0:
                yield False, self.first
            else:
                yield from _split_one(self.first)
        elif not self.trained and self.waiting:  # everything was held out: the first trains
            yield False, self.waiting[0]
            yield from ((True, d) for d in self.waiting[1:])
        elif self.back is not None:  # nothing was held out: the last document is
            yield True, self.back


def _split_one(document: str) -> Iterator[tuple[bool, str]]:
    parts = split_sentences(document)
    if len(parts) < 2:
        parts = document.split()
    if len(parts) < 2:
        raise DataError(
            "the data is a single word, so none of it can be held out",
            "give more text, or held-out text with --eval-data",
        )
    cut = min(len(parts) - 1, max(1, round(len(parts) * 0.9)))
    yield False, " ".join(parts[:cut])
    yield True, " ".join(parts[cut:])

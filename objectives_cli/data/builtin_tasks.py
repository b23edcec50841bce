"""Built-in downstream tasks, made deterministically from the default corpus: balanced, ~4000
examples each, and beyond a bag of words (a linear model on word counts is at chance on both).

Their text is the train split of the corpus that pretraining reads, as BERT's
Wikipedia-pretrained models are tested on SQuAD, which is made from Wikipedia: what is tested is
what the model learned about the language of that text (the changed sentences of `fits` and the
mismatched pairs of `next` were never read in pretraining).

    fits    single text. A sentence as written ("fits"), or with a third of its words (at least
            one) replaced by words drawn from the corpus's own word frequencies ("replaced"):
                fits      Return the number of items in the queue.
                replaced  Return the number of items added the queue.
            What goes in and what comes out follow the same word distribution, so both classes
            have the same word statistics; telling them apart needs to know which words go
            together.
    next    text pair. Two consecutive sentences of a document ("next"), or a sentence and a
            sentence of another document ("other"), BERT's next-sentence task:
                next   Create a new socket. | It is closed when the object is deleted.
                other  Create a new socket. | The default encoding is UTF-8.
            Every sentence is a real sentence in both classes; only the pairing differs.

A sentence has 6..30 words (split at spaces), at least three of them plain ASCII letters (the
words `fits` may replace, so punctuation statistics do not change either). Sentences and pairs
are taken once each in the order of a hash of their text; labels follow that order (balanced);
the split follows from a hash of the example (task.py: 70% train, 10% validation, 20% test).
Tried and left out because every tiny model measured was at chance on them (docs/compare.md):
one replaced word, two consecutive sentences in order or swapped, a sentence cut in two halves.
"""

from __future__ import annotations

import bisect
import functools
import hashlib
import random
from collections import Counter
from collections.abc import Iterator

from .sources import default_corpus
from .splits import split_sentences
from .tasks import Task, task_from_rows

SIZE = 4000  # examples per task (the corpus holds ~16k usable sentences and ~5k pairs)
MIN_WORDS, MAX_WORDS = 6, 30
SHARE = 1 / 3  # of a changed sentence's replaceable words that `fits` replaces (at least one)
BUILTIN = {
    "fits": "do all the words fit, or were a third of them replaced by random corpus words?",
    "next": "does the second sentence follow the first, or come from another document?",
}


def builtin_task(name: str) -> Task:
    """The built-in task `name` (see BUILTIN), built once per process."""
    return {"fits": fits_task, "next": next_task}[name]()


def key(text: str) -> int:
    """A stable hash for choosing and labelling; salted, so it is independent of the hash that
    picks an example's split (which would otherwise put the first-chosen all in test)."""
    digest = hashlib.blake2b(text.encode(), digest_size=8, salt=b"builtin").digest()
    return int.from_bytes(digest, "big")


def replaceable(word: str) -> bool:
    return word.isascii() and word.isalpha()


def usable(sentence: str) -> bool:
    words = sentence.split()
    return MIN_WORDS <= len(words) <= MAX_WORDS and sum(map(replaceable, words)) >= 3


def sentences() -> list[str]:
    """Every usable sentence of the corpus's train split, once, in corpus order."""
    seen: dict[str, None] = {}
    for document in default_corpus("train"):
        for sentence in split_sentences(document):
            if usable(sentence):
                seen.setdefault(sentence, None)
    return list(seen)


@functools.cache
def fits_task(share: float = SHARE) -> Task:
    """`fits`, with `share` of each changed sentence's replaceable words replaced (at least one)."""
    pool = sentences()
    counts = Counter(w for s in pool for w in s.split() if replaceable(w))
    words = sorted(counts)
    cumulative = list(accumulate(counts[w] for w in words))
    chosen = sorted(pool, key=lambda s: (key(s), s))[:SIZE]
    rows = []
    for i, sentence in enumerate(chosen):
        if i % 2 == 0:
            rows.append({"text": sentence, "label": "fits"})
            continue
        rng = random.Random(key(sentence))  # seeded by the text: the same on every machine
        tokens = sentence.split()
        slots = [j for j, w in enumerate(tokens) if replaceable(w)]
        rng.shuffle(slots)
        for at in slots[: max(1, round(share * len(slots)))]:
            for _ in range(20):  # a draw equal to the word itself is drawn again
                drawn = words[bisect.bisect_right(cumulative, rng.random() * cumulative[-1])]
                if drawn.lower() != tokens[at].lower():
                    break
            tokens[at] = drawn
        rows.append({"text": " ".join(tokens), "label": "replaced"})
    return described(task_from_rows("fits", rows, "fits"), "fits")


def accumulate(values: Iterator[int]) -> Iterator[int]:
    total = 0
    for v in values:
        total += v
        yield total


def consecutive_pairs() -> list[tuple[int, str, str]]:
    """(document, A, B) for consecutive usable sentences; no sentence is in two pairs."""
    pairs: dict[tuple[str, str], int] = {}
    for d, document in enumerate(default_corpus("train")):
        parts = split_sentences(document)
        for a, b in zip(parts[0::2], parts[1::2], strict=False):
            if a != b and usable(a) and usable(b):
                pairs.setdefault((a, b), d)
    chosen = sorted(pairs, key=lambda p: (key(f"{p[0]}\x1f{p[1]}"), p))
    return [(pairs[p], *p) for p in chosen]


@functools.cache
def next_task() -> Task:
    pairs = consecutive_pairs()[:SIZE]
    rows = []
    for i in range(0, len(pairs) - 3, 4):  # of four pairs: two stay, two trade their second
        (_, a, b), (_, c, d), (e_doc, e, f), (g_doc, g, h) = pairs[i : i + 4]
        rows += [
            {"text": a, "text_pair": b, "label": "next"},
            {"text": c, "text_pair": d, "label": "next"},
        ]
        if e_doc != g_doc:  # (nearly always: pairs are in hash order)
            rows += [
                {"text": e, "text_pair": h, "label": "other"},
                {"text": g, "text_pair": f, "label": "other"},
            ]
    return described(task_from_rows("next", rows, "next"), "next")


def described(task: Task, name: str) -> Task:
    return Task(task.name, task.classes, task.examples, task.source, BUILTIN[name])

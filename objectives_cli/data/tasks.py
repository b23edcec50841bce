"""Downstream classification tasks: labelled texts (or text pairs) split into train, validation
and test, from a built-in task, a file or a Hugging Face dataset.

    fits, next              built-in tasks made from the default corpus (builtin_tasks.py)
    reviews.csv             CSV, TSV, JSONL or parquet with columns `text`, `label`, and
                            optionally `text_pair` (sentence-pair tasks) and `split`
    hf:NAME[:CONFIG]        through `datasets`: its train/validation/test splits, with the
                            columns above (GLUE's `sentence`, `sentence1`/`sentence2` work too)

Labels may be strings or integers; classes are their sorted values. Without a `split` column an
example's split follows from a hash of its text (20% test, 10% validation), so adding rows never
moves the others. A task with one class, or a class with no training or test example, is refused
(`DataError`, exit status 1).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from corruptions.errors import DataError, UsageError

from .sources import load_hf
from .streams import BOM, not_utf8

SPLITS = ("train", "validation", "test")
SPLIT_NAMES = {"train": "train", "validation": "validation", "valid": "validation"}
SPLIT_NAMES |= {"val": "validation", "dev": "validation", "test": "test"}
TEST_SHARE, VALIDATION_SHARE = 0.2, 0.1  # of the examples, by hash, when no split is given
TEXT_COLUMNS = ("text", "sentence", "sentence1", "question", "premise")
PAIR_COLUMNS = ("text_pair", "sentence2", "hypothesis")
FILE_SUFFIXES = (".csv", ".tsv", ".tab", ".jsonl", ".json-lines", ".ndjson", ".parquet")


@dataclass(frozen=True)
class Example:
    text: str
    label: int  # index into Task.classes
    split: str  # train | validation | test
    text_pair: str | None = None


@dataclass(frozen=True)
class Task:
    """A classification task: its examples, the class names, where it came from."""

    name: str  # a short name for files: the built-in name, the file's stem, hf-NAME-CONFIG
    classes: tuple[str, ...]
    examples: tuple[Example, ...]
    source: str  # what the user gave (--task)
    about: str = ""  # one line: what the task asks

    @property
    def pair(self) -> bool:
        """A sentence-pair task (A [SEP] B)."""
        return any(e.text_pair is not None for e in self.examples)

    def of(self, split: str) -> list[Example]:
        return [e for e in self.examples if e.split == split]

    def sizes(self) -> dict[str, int]:
        counts = Counter(e.split for e in self.examples)
        return {s: counts[s] for s in SPLITS}

    def majority(self) -> float:
        """Test accuracy of always answering the training split's most frequent class."""
        common = Counter(e.label for e in self.of("train")).most_common(1)[0][0]
        test = self.of("test")
        return sum(e.label == common for e in test) / len(test)

    def fingerprint(self) -> str:
        """A hash of every example and class: the key of cached features and baselines."""
        h = hashlib.blake2b(digest_size=8)
        h.update(json.dumps(self.classes).encode())
        for e in self.examples:
            h.update(f"{e.split}\x1f{e.label}\x1f{e.text}\x1f{e.text_pair}\x1e".encode())
        return h.hexdigest()

    def summary(self) -> str:
        """One line: classes, split sizes and the majority baseline."""
        sizes = self.sizes()
        return (
            f"task {self.name}: {len(self.classes)} classes{', text pairs' if self.pair else ''}; "
            f"train/validation/test {sizes['train']}/{sizes['validation']}/{sizes['test']}; "
            f"majority class {self.majority():.3f}"
        )


def read_task(spec: str) -> Task:
    """The task `spec` names: a built-in task, a file, or hf:NAME[:CONFIG]."""
    from .builtin_tasks import BUILTIN, builtin_task

    if spec in BUILTIN:
        return builtin_task(spec)
    if spec.startswith("hf:"):
        return read_hf_task(spec)
    path = Path(spec)
    if path.is_file():
        return task_from_rows(path.stem, read_rows(path), spec)
    if path.suffix.lower() in FILE_SUFFIXES or path.exists() or "/" in spec:
        raise DataError(f"no such task file: {spec}", "give a CSV, TSV, JSONL or parquet file")
    raise UsageError(
        f"unknown task '{spec}'",
        f"use a built-in task ({', '.join(BUILTIN)}), a CSV/TSV/JSONL/parquet file, or hf:NAME",
    )


def read_rows(path: Path) -> list[dict[str, Any]]:
    """The rows of a task file as dicts, by its suffix."""
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            return list(pq.read_table(path).to_pylist())
        except (OSError, ValueError) as exc:  # pyarrow.ArrowInvalid is a ValueError
            raise DataError(f"cannot read {path} as parquet: {exc}") from None
    try:
        text = utf8_text(path.read_bytes(), str(path))
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror}") from None
    if suffix in (".jsonl", ".json-lines", ".ndjson"):
        return json_rows(text, path)
    if suffix not in (".csv", ".tsv", ".tab"):
        raise DataError(f"cannot tell the format of {path}", "use .csv, .tsv, .jsonl or .parquet")
    delimiter = "," if suffix == ".csv" else "\t"
    try:
        return list(csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter))
    except csv.Error as exc:
        raise DataError(f"{path}: not {suffix[1:].upper()} ({exc})") from None


def json_rows(text: str, path: Path) -> list[dict[str, Any]]:
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}, line {number}: not JSON ({exc.msg})") from None
        if not isinstance(row, dict):
            raise DataError(f"{path}, line {number}: not a JSON object")
        rows.append(row)
    return rows


def column(columns: Iterable[str], names: tuple[str, ...]) -> str | None:
    return next((n for n in names if n in columns), None)


def task_from_rows(name: str, rows: list[Mapping[str, Any]], source: str) -> Task:
    """A task from rows with `text`, `label` and optional `text_pair` and `split` values."""
    columns = list(rows[0]) if rows else []
    text_key, pair_key = column(columns, TEXT_COLUMNS), column(columns, PAIR_COLUMNS)
    if text_key is None or "label" not in columns:
        missing = "'text'" if text_key is None else "'label'"
        raise DataError(
            f"{source} has no {missing} column (columns: {', '.join(columns) or 'none'})",
            "a task file needs 'text' and 'label' columns, and may have 'text_pair' and 'split'",
        )
    labelled = []
    for number, row in enumerate(rows, start=1):
        text, label = row.get(text_key), row.get("label")
        if not isinstance(text, str) or not text.strip() or label in (None, "", -1):
            raise DataError(f"{source}, row {number}: no text or no label", "every row needs both")
        pair = row.get(pair_key) if pair_key else None
        labelled.append((text, None if pair is None else str(pair), str(label), row.get("split")))
    classes = tuple(sorted({lab for _, _, lab, _ in labelled}, key=class_order))
    index = {c: i for i, c in enumerate(classes)}
    examples = tuple(
        Example(text, index[lab], split_of(text, pair, given, source), pair)
        for text, pair, lab, given in labelled
    )
    return checked(Task(name, classes, with_validation(examples), source))


def class_order(label: str) -> tuple[int, float, str]:
    """Integers in numeric order, then strings in sorted order."""
    try:
        return (0, float(int(label)), "")
    except ValueError:
        return (1, 0.0, label)


def bucket(text: str, pair: str | None) -> float:
    """A fixed number in [0, 1) for an example: where the hash of its text falls."""
    key = text if pair is None else f"{text}\x1f{pair}"
    digest = hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def split_of(text: str, pair: str | None, given: Any, source: str) -> str:
    """The example's split: the `split` value when given, else by the hash of its text."""
    if given not in (None, ""):
        split = SPLIT_NAMES.get(str(given).strip().lower())
        if split is None:
            raise DataError(
                f"{source}: unknown split '{given}'", "use train, validation (or dev) or test"
            )
        return split
    b = bucket(text, pair)
    return (
        "test" if b < TEST_SHARE else "validation" if b < TEST_SHARE + VALIDATION_SHARE else "train"
    )


def with_validation(examples: tuple[Example, ...]) -> tuple[Example, ...]:
    """Given splits without a validation split: a hashed share of train becomes validation."""
    if any(e.split == "validation" for e in examples):
        return examples
    return tuple(
        Example(e.text, e.label, "validation", e.text_pair)
        if e.split == "train" and bucket(e.text, e.text_pair) < VALIDATION_SHARE
        else e
        for e in examples
    )


def checked(task: Task) -> Task:
    """`task`, unless it cannot be learned or scored: one class, or a class missing from the
    training or test split."""
    if len(task.classes) < 2:
        raise DataError(
            f"{task.source} has one class only ({task.classes[0] if task.classes else 'none'})",
            "a classification task needs at least two labels",
        )
    for split in ("train", "test"):
        have = {e.label for e in task.of(split)}
        lacking = [c for i, c in enumerate(task.classes) if i not in have]
        if lacking:
            raise DataError(
                f"{task.source}: class '{lacking[0]}' has no {split} example",
                "add examples of it, or give a 'split' column that puts some in each split",
            )
    return task


def read_hf_task(spec: str) -> Task:
    """hf:NAME[:CONFIG]: every split the dataset has, labelled rows only (GLUE's test labels
    are hidden: then its validation split is the test split and validation comes from train)."""
    name, _, config = spec[3:].partition(":")
    if not name:
        raise UsageError("hf: needs a dataset name", "e.g. hf:glue:sst2")
    splits = load_hf(spec[3:], split=None)  # offline: the local cache or one error at once
    rows: list[dict[str, Any]] = []
    for split, data in splits.items():
        labels = getattr(data.features.get("label"), "names", None)
        for row in data:
            if row.get("label", -1) in (-1, None):
                continue  # an unlabelled (hidden) test split
            label = labels[row["label"]] if labels else row["label"]
            rows.append({**row, "label": label, "split": split})
    given = {r["split"] for r in rows}
    if "test" not in given and "validation" in given:
        for r in rows:
            r["split"] = {"validation": "test"}.get(r["split"], r["split"])
    if not rows:
        raise DataError(f"{spec} has no labelled rows", "the dataset needs a 'label' column")
    return task_from_rows(f"hf-{name}-{config}".strip("-").replace("/", "-"), rows, spec)


def utf8_text(data: bytes, name: str) -> str:
    """UTF-8 text, a BOM dropped; a DataError naming the first bad byte at its file offset."""
    bom = len(BOM) if data.startswith(BOM) else 0
    try:
        return data[bom:].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise not_utf8(name, data[bom:], exc, bom) from None

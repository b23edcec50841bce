"""Task readers (data/tasks.py) and the built-in tasks (data/builtin_tasks.py)."""

from __future__ import annotations

import itertools
import json
from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar

import pytest

from corruptions.errors import DataError, UsageError
from objectives_cli.data import sources
from objectives_cli.data import tasks as tasks_module
from objectives_cli.data.builtin_tasks import MAX_WORDS, MIN_WORDS, builtin_task, sentences
from objectives_cli.data.sources import default_corpus
from objectives_cli.data.splits import split_sentences
from objectives_cli.data.tasks import read_task, task_from_rows


def write_csv(path: Path, rows: list[dict[str, Any]], delimiter: str = ",") -> Path:
    keys = list(rows[0])
    lines = [delimiter.join(keys)] + [delimiter.join(str(r[k]) for k in keys) for r in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def animals(n: int = 60) -> list[dict[str, Any]]:
    return [
        {"text": f"the {'cat' if i % 2 else 'dog'} number {i}", "label": i % 2} for i in range(n)
    ]


def test_csv_classes_sorted_and_split_by_hash(tmp_path: Path) -> None:
    rows = [{"text": f"text {i}", "label": ["b", "a", "10", "2"][i % 4]} for i in range(200)]
    task = read_task(str(write_csv(tmp_path / "t.csv", rows)))
    assert task.name == "t"
    assert task.classes == ("2", "10", "a", "b")  # integers numerically, then strings
    assert [task.classes[e.label] for e in task.examples] == [r["label"] for r in rows]
    sizes = task.sizes()
    assert sizes["test"] + sizes["validation"] + sizes["train"] == 200
    assert 20 <= sizes["test"] <= 60
    assert 5 <= sizes["validation"] <= 35
    # adding rows moves no other row to another split
    more = read_task(str(write_csv(tmp_path / "u.csv", [*rows, {"text": "new", "label": "a"}])))
    assert [e.split for e in more.examples[:200]] == [e.split for e in task.examples]


def test_tsv_jsonl_and_parquet_with_pairs_and_splits(tmp_path: Path) -> None:
    pytest.importorskip("pyarrow")
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [
        {"text": f"a {i}", "text_pair": f"b {i}", "label": f"c{i % 3}", "split": s}
        for i, s in enumerate(["train"] * 9 + ["dev"] * 3 + ["test"] * 3)
    ]
    tsv = read_task(str(write_csv(tmp_path / "t.tsv", rows, "\t")))
    (tmp_path / "t.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    jsonl = read_task(str(tmp_path / "t.jsonl"))
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "t.parquet")
    parquet = read_task(str(tmp_path / "t.parquet"))
    for task in (tsv, jsonl, parquet):
        assert task.pair
        assert task.sizes() == {"train": 9, "validation": 3, "test": 3}  # dev = validation
        assert task.examples[0].text_pair == "b 0"
        assert task.classes == ("c0", "c1", "c2")


def test_split_column_without_validation_takes_it_from_train(tmp_path: Path) -> None:
    rows = [
        {"text": f"t {i}", "label": i % 2, "split": "test" if i < 20 else "train"}
        for i in range(400)
    ]
    task = read_task(str(write_csv(tmp_path / "t.csv", rows)))
    sizes = task.sizes()
    assert sizes["test"] == 20
    assert 15 <= sizes["validation"] <= 70  # about 10% of train


@pytest.mark.parametrize(
    ("rows", "says"),
    [
        ([{"sentence_x": "a", "label": 1}], "no 'text' column"),
        ([{"text": "a", "score": 1}], "no 'label' column"),
        ([{"text": f"t {i}", "label": "same"} for i in range(30)], "one class only"),
        (
            [
                {"text": f"t {i}", "label": i % 2, "split": "test" if i < 4 and i % 2 else "train"}
                for i in range(30)
            ],
            "class '0' has no test example",
        ),
        ([{"text": "a", "label": 1, "split": "holdout"}], "unknown split 'holdout'"),
        ([{"text": "", "label": 1}], "row 1: no text or no label"),
    ],
)
def test_bad_task_files(tmp_path: Path, rows: list[dict[str, Any]], says: str) -> None:
    path = write_csv(tmp_path / "bad.csv", rows)
    with pytest.raises(DataError, match=says.replace("(", r"\(").replace(")", r"\)")):
        read_task(str(path))


def test_a_task_file_that_is_not_utf8_names_the_byte_at_its_file_offset(tmp_path: Path) -> None:
    good = "\ufefftext,label\ncaf\u00e9,a\n".encode()
    path = tmp_path / "latin.csv"
    path.write_bytes(good + "na\u00efve,b\n".encode("latin-1"))
    with pytest.raises(DataError, match=rf"not UTF-8 text: byte 0xef at offset {len(good) + 2}"):
        read_task(str(path))
    path.write_bytes(good + "".join(f"x{i},{'ab'[i % 2]}\n" for i in range(60)).encode())
    assert list(read_task(str(path)).classes) == ["a", "b"]


def test_unknown_task_is_a_usage_error_and_a_missing_file_a_data_error() -> None:
    with pytest.raises(UsageError, match="unknown task 'topik'") as found:
        read_task("topik")
    assert "fits" in (found.value.hint or "")
    with pytest.raises(DataError, match="no such task file"):
        read_task("missing.csv")


def test_hf_task_hidden_test_labels(monkeypatch: pytest.MonkeyPatch) -> None:
    """GLUE hides its test labels (-1): its validation split becomes the test split."""

    class Split(list):  # iterable rows with .features, as a datasets.Dataset
        features: ClassVar = {"label": SimpleNamespace(names=["negative", "positive"])}

    data = {
        "train": Split({"sentence": f"s {i}", "label": i % 2} for i in range(40)),
        "validation": Split({"sentence": f"v {i}", "label": i % 2} for i in range(10)),
        "test": Split({"sentence": f"t {i}", "label": -1} for i in range(10)),
    }
    import datasets

    asked = []
    monkeypatch.setattr(sources, "hub_reachable", lambda: True)
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: asked.append((a, k)) or data)
    task = read_task("hf:glue:sst2")
    assert asked == [(("glue", "sst2"), {"split": None})]
    assert task.name == "hf-glue-sst2"
    assert task.classes == ("negative", "positive")
    assert task.sizes()["test"] == 10
    assert all(e.text.startswith("v") for e in task.of("test"))


def test_hf_task_offline_is_one_error_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Offline, the task loader goes straight to the local cache (as `--data hf:` does) instead
    of datasets' half a minute of retries, and a dataset not cached is one error."""
    import datasets

    def missing(*args: object, **kwargs: object) -> None:
        raise ConnectionError("not cached")

    monkeypatch.setattr(sources, "hub_reachable", lambda: False)
    monkeypatch.setattr(datasets, "load_dataset", missing)
    with pytest.raises(DataError, match="cannot be reached, and the dataset is not in the local"):
        read_task("hf:glue:sst2")


# --- built-in tasks -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["fits", "next"])
def test_builtin_tasks_are_balanced_and_large(name: str) -> None:
    task = builtin_task(name)
    assert len(task.examples) >= 2000
    shares = Counter(e.label for e in task.examples)
    assert max(shares.values()) <= 0.51 * len(task.examples)
    sizes = task.sizes()
    assert sizes["test"] >= 0.15 * len(task.examples)
    assert sizes["validation"] >= 0.05 * len(task.examples)
    assert 0.4 <= task.majority() <= 0.6
    assert task.pair == (name == "next")


def test_fits_replaces_a_third_of_the_words_of_a_corpus_sentence() -> None:
    task = builtin_task("fits")
    pool = set(sentences())
    by_length: dict[int, list[list[str]]] = {}
    for s in pool:
        by_length.setdefault(len(s.split()), []).append(s.split())
    for e in task.examples[:200]:
        words = e.text.split()
        assert MIN_WORDS <= len(words) <= MAX_WORDS
        if task.classes[e.label] == "fits":
            assert e.text in pool
            continue
        assert e.text not in pool
        closest = min(
            (
                [(a, b) for a, b in zip(words, s, strict=True) if a != b]
                for s in by_length[len(words)]
            ),
            key=len,
        )
        letters = sum(w.isascii() and w.isalpha() for w in words)
        assert 1 <= len(closest) <= max(1, round(letters / 3)) + 1, e.text
        assert all(new.isalpha() and old.isalpha() for new, old in closest)
        assert all(new.lower() != old.lower() for new, old in closest)


def test_next_pairs_follow_or_come_from_another_document() -> None:
    task = builtin_task("next")
    consecutive, where = set(), {}
    for d, document in enumerate(default_corpus("train")):
        parts = split_sentences(document)
        consecutive.update(itertools.pairwise(parts))
        for part in parts:
            where.setdefault(part, set()).add(d)
    for e in task.examples[:300]:
        if task.classes[e.label] == "next":
            assert (e.text, e.text_pair) in consecutive
        else:
            assert (e.text, e.text_pair) not in consecutive
            assert where[e.text] != where[e.text_pair]


def test_task_fingerprint_follows_the_examples() -> None:
    rows = [{"text": f"t {i}", "label": i % 2} for i in range(40)]
    a, b = task_from_rows("x", rows, "x"), task_from_rows("x", rows, "x")
    rows[3] = {"text": "changed", "label": 1}
    assert a.fingerprint() == b.fingerprint() != task_from_rows("x", rows, "x").fingerprint()
    assert tasks_module.TEST_SHARE == 0.2

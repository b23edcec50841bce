"""`objectives corrupt` on large inputs: streamed (--limit reads little, a long document a chunk
at a time), --workers changes no byte, --fields, the fast JSONL encoder, progress on stderr, one
intra-op thread while corrupting."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

import corruptions
from objectives_cli.cli import inspect
from objectives_cli.data import examples as made
from objectives_cli.data import rows
from objectives_cli.data.sources import default_corpus
from objectives_cli.data.tokenizer import load_tokenizer, vocab_of
from objectives_cli.render import jsonl, progress
from tests.cli.runner import invoke
from tests.cli.test_corrupt import NAMES

LONG = " ".join(default_corpus("train"))[: 3 * rows.CHARS_PER_CHUNK]  # split over chunks


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Short documents, one document longer than a chunk, then short ones again."""
    docs = default_corpus("train")
    path = tmp_path_factory.mktemp("mixed") / "mixed.txt"
    path.write_text("\n\n".join([*docs[:150], LONG.replace(". ", ".\n"), *docs[150:260]]) + "\n")
    return path


@pytest.mark.parametrize(
    ("name", "fmt"), [("t5-span", "jsonl"), ("bert-mlm", "jsonl"), ("bart", "text")]
)
def test_workers_give_the_same_bytes_in_the_same_order(mixed: Path, name: str, fmt: str) -> None:
    args = ["corrupt", "-o", name, "--format", fmt, "--limit", "0", str(mixed)]
    one = invoke(*args, "--workers", "1")
    assert one.code == 0, one.stderr
    assert len(one.stdout.splitlines()) > 3 * made.BATCH
    for workers in ("2", "3"):
        assert invoke(*args, "--workers", workers).stdout == one.stdout


def rows_of(name: str, documents: list[str]) -> list[Any]:
    tok = load_tokenizer()
    vocab = vocab_of(tok)
    return list(
        made.corrupt_documents(
            corruptions.create(name), tok, vocab, documents, 64, 0, None, with_text=False
        )
    )


@pytest.mark.parametrize("name", NAMES)
def test_the_fast_jsonl_line_is_json_dumps_of_the_row(name: str) -> None:
    tok = load_tokenizer()
    params = corruptions.resolve(name, {})[1]
    docs = [*default_corpus("train")[:20], "café naïve — “quoted” 東京 🙂 done."]
    line = jsonl.JsonlLine(name, params, 7, tok)
    for example in rows_of(name, docs):
        row = jsonl.jsonl_row(example, name, params, 7, tok)
        expected = json.dumps(row, ensure_ascii=False, default=list) + "\n"
        assert line(example).decode() == expected


def test_fields_keeps_the_named_ones_in_schema_order_with_the_same_values(mixed: Path) -> None:
    args = ["corrupt", "-o", "t5-span", "--limit", "40", str(mixed)]
    full = [json.loads(r) for r in invoke(*args).stdout.splitlines()]
    few = invoke(*args, "--fields", "labels, input_ids,index")
    assert few.code == 0, few.stderr
    rows = [json.loads(r) for r in few.stdout.splitlines()]
    assert [list(r) for r in rows] == [["index", "input_ids", "labels"]] * 40
    assert rows == [{k: r[k] for k in ("index", "input_ids", "labels")} for r in full]


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--fields", "input_ids,nope"], ["unknown field 'nope'", "choose among"]),
        (["--fields", " , "], ["no field given"]),
        (["--fields", "labels", "--format", "text"], ["--fields is for --format jsonl"]),
    ],
)
def test_bad_fields_are_one_usage_error(args: list[str], words: list[str]) -> None:
    result = invoke("corrupt", "-o", "t5-span", *args)
    assert result.code == 2
    assert "Traceback" not in result.stderr
    assert all(w in result.stderr for w in words)


def test_limit_stops_reading_a_long_stream() -> None:
    taken = [0]

    def documents() -> Any:
        for doc in default_corpus("train") * 200:  # 100k+ documents
            taken[0] += 1
            yield doc

    tok = load_tokenizer()
    out = made.corrupt_documents(
        corruptions.create("bert-mlm"), tok, vocab_of(tok), documents(), 64, 0, 3
    )
    assert len(list(out)) == 3
    assert taken[0] <= 4 * rows.DOCS_PER_CHUNK


def test_a_long_document_is_tokenised_a_chunk_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = [0]
    real = rows.document_pieces

    def counted(document: str) -> Any:
        for piece in real(document):
            seen[0] += len(piece[0][0])
            yield piece

    monkeypatch.setattr(rows, "document_pieces", counted)
    tok = load_tokenizer()
    document = LONG * 40  # ~8 M characters, one document
    out = made.corrupt_documents(
        corruptions.create("t5-span"), tok, vocab_of(tok), [document], 64, 0, 3
    )
    assert len(list(out)) == 3
    assert seen[0] <= 2 * rows.CHARS_PER_CHUNK


def test_progress_goes_to_stderr_and_leaves_stdout_alone(
    mixed: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    args = ["corrupt", "-o", "t5-span", "--limit", "0", str(mixed)]
    monkeypatch.setattr(progress, "PLAIN_SECONDS", 1e9)  # a log gets a line only this often
    quiet = invoke(*args)
    monkeypatch.setattr(progress, "PLAIN_SECONDS", 0.0)
    monkeypatch.setattr(inspect, "PROGRESS_EVERY", 8)
    loud = invoke(*args)
    assert loud.stdout == quiet.stdout
    assert "corrupting: " in loud.stderr
    assert " MB read, 8 examples, " in loud.stderr
    assert "corrupting" not in quiet.stderr


def test_corrupt_runs_on_one_thread_and_gives_the_count_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    counts: list[int] = []
    real = made.unbatch

    def noted(*args: Any) -> Any:
        counts.append(torch.get_num_threads())
        return real(*args)

    monkeypatch.setattr(made, "unbatch", noted)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert invoke("corrupt", "-o", "bert-mlm", "--limit", "40").code == 0
        assert counts
        assert set(counts) == {1}
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_an_error_in_a_worker_is_one_line_and_the_same_as_with_one_worker(tmp_path: Path) -> None:
    """NotEnoughSentinels raised in a worker comes back whole (it once stopped the pool's
    result thread: the command then waited for ever)."""
    text = tmp_path / "long.txt"
    text.write_text(" ".join(default_corpus("train")[:60]) + "\n")  # rows of 2048 tokens
    args = ["corrupt", "-o", "t5-span", "--max-length", "2048", "--format", "jsonl", str(text)]
    results = [
        subprocess.run(
            [sys.executable, "-c", "from objectives_cli.cli.main import run; run()", *args, *more],
            capture_output=True,
            text=True,
            timeout=120,
        )
        for more in (["--workers", "1"], ["--workers", "2"])
    ]
    for done in results:
        assert done.returncode == 1
        assert done.stderr.startswith("error: this batch needs 102 sentinel tokens")
        assert "Traceback" not in done.stderr
    assert results[0].stderr == results[1].stderr

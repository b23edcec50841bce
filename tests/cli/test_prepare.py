"""`objectives data prepare`: the shards hold the corpus the in-memory path reads, whatever the
number of workers; an interrupted prepare goes on after its last shard; nothing half-written,
edited by hand or made with another tokenizer is ever read."""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from corruptions.errors import DataError, UsageError
from objectives_cli.data import encoding, files, prepare, shards
from objectives_cli.data.packing import Corpus, encode_corpus
from objectives_cli.data.shards import MappedCorpus, open_prepared
from objectives_cli.data.sources import read_documents
from objectives_cli.data.splits import split_heldout, split_sentences
from objectives_cli.data.tokenizer import load_tokenizer
from tests.cli.runner import INPUT, invoke

TOK = load_tokenizer()
TOK_JSON, VOCAB = TOK.to_str(), TOK.get_vocab_size()


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OBJECTIVES_CACHE", str(tmp_path / "cache"))


def source(tmp_path: Path, n: int = 120) -> Path:
    """Documents of a few sentences, and one long line in the middle."""
    text = INPUT.read_text(encoding="utf-8")
    docs = [f"Note {i}. " + " ".join(text.split()[i : i + 40]) for i in range(n)]
    docs[n // 2] = " ".join(text.split() * 3)  # longer than a unit below
    # a sentence whose first piece yields no token (zero-width spaces), in a long document: the
    # unit after it must open that sentence
    docs[n // 3] = "Intro. " + " ".join(["\u200b" * 9] * 500) + " then words. " + docs[n // 2]
    path = tmp_path / "corpus.txt"
    path.write_text("\n\n".join(docs) + "\n", encoding="utf-8")
    return path


def run(src: Path, out: Path, **kw: Any) -> prepare.Result:
    return prepare.prepare(str(src), out, TOK_JSON, VOCAB, **{"shard_tokens": 2000, **kw})


def same(mapped: MappedCorpus, corpus: Corpus) -> bool:
    ids, words, sents = mapped.gather(np.arange(len(mapped)))
    at = np.arange(len(mapped))
    return (
        len(mapped) == len(corpus)
        and mapped.n_documents == corpus.n_documents
        and np.array_equal(ids, corpus.ids.numpy())
        and np.array_equal(words, corpus.word_starts.numpy())
        and np.array_equal(sents, corpus.sentence_starts.numpy())
        and np.array_equal(mapped.document_of(at), corpus.document_of(torch.from_numpy(at)).numpy())
    )


@pytest.fixture
def small_units(monkeypatch: pytest.MonkeyPatch) -> None:
    """Units of 300 characters: the long line is tokenised in many units."""
    monkeypatch.setattr(prepare, "UNIT_CHARS", 300)
    monkeypatch.setattr(prepare, "UNIT_DOCUMENTS", 7)


@pytest.mark.usefixtures("small_units")
def test_the_shards_hold_the_corpus_the_in_memory_path_reads(tmp_path: Path) -> None:
    src = source(tmp_path)
    result = run(src, tmp_path / "out", shard_tokens=500)
    assert len(result.index["splits"]["train"]["shards"]) > 3  # documents cross no shard
    prepared = open_prepared(tmp_path / "out", TOK_JSON)
    train, held = split_heldout(read_documents(src))
    assert same(prepared.train, encode_corpus(TOK, train, cache=False))
    assert same(prepared.heldout, encode_corpus(TOK, held, cache=False))
    size = sum(p.stat().st_size for p in (tmp_path / "out").glob("*.bin"))
    assert size / (len(prepared.train) + len(prepared.heldout)) < 2.5  # bytes per token


@pytest.mark.usefixtures("small_units")
def test_the_number_of_workers_changes_no_byte(tmp_path: Path) -> None:
    src = source(tmp_path)
    run(src, tmp_path / "one", workers=1)
    run(src, tmp_path / "two", workers=2)
    names = sorted(p.name for p in (tmp_path / "one").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "two").iterdir())
    for name in names:
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()


def test_a_prepare_in_this_process_gives_its_threads_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One worker tokenises in this process (as train's implicit prepare may): on one thread,
    then the training that follows gets its torch threads and the tokenizers pool back."""
    seen: list[tuple[str | None, int]] = []
    real = prepare._encode

    def noted(*args: Any) -> Any:
        seen.append((os.environ.get("TOKENIZERS_PARALLELISM"), torch.get_num_threads()))
        return real(*args)

    monkeypatch.setattr(prepare, "_encode", noted)
    monkeypatch.delenv("TOKENIZERS_PARALLELISM", raising=False)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        run(source(tmp_path), tmp_path / "out", workers=1)
        assert seen
        assert set(seen) == {("false", 1)}
        assert torch.get_num_threads() == 2
        assert "TOKENIZERS_PARALLELISM" not in os.environ
    finally:
        torch.set_num_threads(before)


class Stop(Exception):
    pass


def interrupt(monkeypatch: pytest.MonkeyPatch, at: int) -> Callable[[], None]:
    """Stop a prepare (as Ctrl-C or a crash would) when it writes its `at`-th shard; returns
    what undoes that."""
    flush, calls = shards.ShardWriter.flush, [0]

    def stop(writer: shards.ShardWriter) -> Any:
        calls[0] += 1
        if calls[0] == at:
            raise Stop
        return flush(writer)

    monkeypatch.setattr(shards.ShardWriter, "flush", stop)
    return lambda: monkeypatch.setattr(shards.ShardWriter, "flush", flush)


@pytest.mark.usefixtures("small_units")
def test_an_interrupted_prepare_goes_on_after_its_last_shard(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = source(tmp_path)
    run(src, tmp_path / "straight")
    undo = interrupt(monkeypatch, at=5)
    with pytest.raises(Stop):
        run(src, tmp_path / "out")
    undo()
    assert not (tmp_path / "out" / shards.INDEX).exists()
    assert (tmp_path / "out" / shards.PROGRESS).exists()
    with pytest.raises(DataError, match="did not finish"):  # never read as a corpus
        open_prepared(tmp_path / "out")
    result = run(src, tmp_path / "out")
    assert result.progress.resumed > 0
    for path in (tmp_path / "straight").iterdir():
        assert (tmp_path / "out" / path.name).read_bytes() == path.read_bytes(), path.name
    assert not (tmp_path / "out" / shards.PROGRESS).exists()
    assert run(src, tmp_path / "out").done_before


def test_a_full_disk_leaves_no_half_shard_and_the_same_command_finishes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = source(tmp_path)
    write_all, written = files.write_all, [0]

    def full_after_three(fd: int, data: Any) -> None:
        written[0] += 1
        if written[0] > 3:  # a shard's first parts are written, then the disk is full
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        write_all(fd, data)

    monkeypatch.setattr(files, "write_all", full_after_three)
    with pytest.raises(DataError, match="No space left on device") as info:
        run(src, tmp_path / "out")
    assert "run the same command again" in (info.value.hint or "")
    monkeypatch.setattr(files, "write_all", write_all)
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.endswith(".tmp")]
    run(src, tmp_path / "out")
    open_prepared(tmp_path / "out", TOK_JSON)


def test_a_source_that_changes_while_prepared_is_one_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = source(tmp_path)
    monkeypatch.setattr(prepare, "REPORT_SECONDS", 0.0)

    def append(progress: prepare.Progress) -> None:
        with open(src, "a") as f:
            f.write("\n\nmore text")

    with pytest.raises(DataError, match=r"changed while it was being prepared: its size"):
        run(src, tmp_path / "out", report=append)


@pytest.mark.usefixtures("small_units")
def test_a_source_changed_since_an_interrupted_prepare_is_prepared_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = source(tmp_path)
    undo = interrupt(monkeypatch, at=9)
    with pytest.raises(Stop):
        run(src, tmp_path / "out", shard_tokens=10, heldout=0.3)
    undo()
    assert (tmp_path / "out" / shards.PROGRESS).exists()
    src.write_text("A new text. With two sentences.\n\nAnd a second document.\n")
    with pytest.raises(UsageError, match="unfinished prepare with another shard size"):
        run(src, tmp_path / "out", heldout=0.3)
    result = run(src, tmp_path / "out", shard_tokens=10, heldout=0.3)
    assert result.restarted is not None
    assert "changed since it was interrupted" in result.restarted
    assert open_prepared(tmp_path / "out").train.n_documents + 1 == 2


def edit(path: Path, at: int) -> None:
    """Flip a bit, as a hand edit would (which comes later than the file system's clock tick
    after the check: the time moves on by a second)."""
    data = bytearray(path.read_bytes())
    data[at] ^= 1
    before = path.stat().st_mtime_ns
    path.write_bytes(bytes(data))
    os.utime(path, ns=(before + 10**9, before + 10**9))


@pytest.mark.usefixtures("small_units")
def test_nothing_damaged_or_of_another_tokenizer_is_read(tmp_path: Path) -> None:
    src, out = source(tmp_path), tmp_path / "out"
    run(src, out, shard_tokens=500)
    open_prepared(out, TOK_JSON)  # checked once, remembered
    other = load_tokenizer()
    other.add_tokens(["zzqx"])
    with pytest.raises(DataError, match="prepared with another tokenizer") as info:
        open_prepared(out, other.to_str())
    assert "leave out --tokenizer" in (info.value.hint or "")
    edit(out / "train-00001.bin", 10)  # a hand edit: same size, other bytes
    with pytest.raises(DataError, match=r"train-00001\.bin differs from what was written"):
        open_prepared(out)
    edit(out / "train-00001.bin", 10)
    open_prepared(out)
    with open(out / "train-00002.bin", "ab") as f:
        f.write(b"\0")
    with pytest.raises(DataError, match=r"train-00002\.bin has [\d,]+ bytes, its index says"):
        open_prepared(out)
    index = json.loads((out / shards.INDEX).read_text())
    index["splits"]["train"]["shards"][0]["tokens"] += 1  # counts that do not fit the file
    (out / shards.INDEX).write_text(json.dumps(index))
    with pytest.raises(DataError, match="bytes, its index says"):
        open_prepared(out)
    (out / shards.INDEX).unlink()
    with pytest.raises(DataError, match="not a prepared corpus"):
        open_prepared(out)


def test_out_must_be_new_empty_or_the_same_corpus(tmp_path: Path) -> None:
    src = source(tmp_path, 20)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(UsageError, match="not a prepared corpus"):
        run(src, tmp_path / "busy")
    run(src, tmp_path / "out")
    other = tmp_path / "other.txt"
    other.write_text("Another text. Two sentences.\n\nAnd one more document.\n")
    with pytest.raises(UsageError, match="prepared with another source"):
        run(other, tmp_path / "out")
    with pytest.raises(UsageError, match="another --heldout"):
        run(src, tmp_path / "out", heldout=0.2)


def test_jsonl_rows_without_text_are_skipped_counted_and_named(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    rows = [json.dumps({"text": f"Row {i} holds a sentence."}) for i in range(50)]
    rows[20] = '{"title": "no text"}'
    rows[30] = "{not json"
    path.write_text("\n".join(rows) + "\n")
    result = invoke("data", "prepare", str(path), "--out", str(tmp_path / "out"))
    assert result.code == 0, result.stderr
    assert "warning: skipped 2 rows without a 'text' string (the first: " in result.stderr
    assert "rows.jsonl, line 21: no 'text' string field)" in result.stderr
    index = json.loads((tmp_path / "out" / shards.INDEX).read_text())
    assert index["skipped"]["count"] == 2
    assert index["documents"] == 48


def test_the_command_says_what_it_wrote(tmp_path: Path) -> None:
    src = source(tmp_path, 30)
    out = str(tmp_path / "out")
    result = invoke("data", "prepare", str(src), "--out", out, "--workers", "1")
    assert result.code == 0, result.stderr
    assert f"prepared {src} into {out}: " in result.stderr
    assert "bytes per token" in result.stderr
    again = invoke("data", "prepare", str(src), "--out", out)
    assert "prepared already" in again.stderr
    bad = invoke("data", "prepare", str(tmp_path / "missing.txt"), "--out", out)
    assert bad.code == 1
    assert "no such file or directory" in bad.stderr


@given(
    docs=st.lists(
        st.text(alphabet="ab cd.\n\u200b[MASK]", max_size=60).map(lambda t: t.replace("[", " [")),
        max_size=6,
    ),
    piece_chars=st.integers(2, 12),
)
def test_arrays_hold_the_tokens_and_flags_of_encode_pieces(
    docs: list[str], piece_chars: int
) -> None:
    """Pieces cut inside words, pieces and sentences without tokens (zero-width spaces), literal
    special tokens: the whole-array encoder gives encode_pieces' lists exactly."""
    saved = encoding.PIECE_CHARS
    encoding.PIECE_CHARS = piece_chars
    try:
        per_doc = [[p for s in split_sentences(d) for p in encoding.pieces(s)] for d in docs]
    finally:
        encoding.PIECE_CHARS = saved
    lists = encoding.encode_pieces(TOK, per_doc)
    arrays = encoding.encode_arrays(TOK, per_doc)
    assert arrays.ids.tolist() == [i for d in lists for i in d.ids]
    assert arrays.word_starts.tolist() == [w for d in lists for w in d.word_starts]
    assert arrays.sentence_starts.tolist() == [s for d in lists for s in d.sentence_starts]
    assert arrays.lengths.tolist() == [len(d.ids) for d in lists]

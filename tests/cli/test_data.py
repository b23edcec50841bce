"""The data layer: every source read_documents accepts, its errors, sentences, default corpus."""

from __future__ import annotations

import ast
import hashlib
import io
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from corruptions.errors import DataError
from objectives_cli.data import corpus, sources
from objectives_cli.data.sources import (
    Skipped,
    default_corpus,
    read_documents,
    split_documents,
)
from objectives_cli.data.splits import split_sentences

TEXT = "The cat sat.\nIt purred.\n\n\nA dog barked. Then it slept.\n  \nLast one\n"
DOCS = ["The cat sat.\nIt purred.", "A dog barked. Then it slept.", "Last one"]


# --- sources -------------------------------------------------------------------------------------


def test_text_file_documents_are_separated_by_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_text(TEXT, encoding="utf-8")
    assert read_documents(path) == DOCS
    assert read_documents(str(path)) == DOCS


def test_crlf_and_bom_are_handled(tmp_path: Path) -> None:
    path = tmp_path / "win.txt"
    path.write_bytes(b"\xef\xbb\xbf" + TEXT.replace("\n", "\r\n").encode())
    assert read_documents(path) == DOCS


def test_directory_is_read_recursively_sorted_and_skips_binary_and_hidden(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "2.md").write_text("second doc", encoding="utf-8")
    (tmp_path / "a.txt").write_text("first doc\n\nfirst again", encoding="utf-8")
    (tmp_path / "c.png").write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe")
    (tmp_path / ".hidden.txt").write_text("hidden", encoding="utf-8")
    assert read_documents(tmp_path) == ["first doc", "first again", "second doc"]


def test_stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(TEXT.encode())))
    assert read_documents("-") == DOCS


def test_jsonl_reads_the_text_field(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    rows = [{"text": "one doc. Two sentences.", "id": 1}, {"text": "para\n\nsplit"}]
    path.write_text("\n".join(map(json.dumps, rows)) + "\n\n", encoding="utf-8")
    assert read_documents(path) == ["one doc. Two sentences.", "para", "split"]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "line 2: not JSON"),
        ('{"title": "x"}', "line 2: no 'text' string field"),
        ('["text"]', "line 2: no 'text' string field"),
    ],
)
def test_a_jsonl_line_without_text_is_skipped_counted_and_named(
    tmp_path: Path, line: str, message: str
) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text('{"text": "fine"}\n' + line + '\n{"text": "after"}\n' + line + "\n")
    skipped = Skipped()
    assert read_documents(path, skipped) == ["fine", "after"]  # the rest is not lost
    assert skipped.count == 2
    assert (skipped.first or "").startswith(f"{path}, {message}")
    assert (skipped.warning() or "").startswith("skipped 2 rows without a 'text' string")
    path.write_text(line + "\n")
    with pytest.raises(DataError, match=r"holds no text: skipped 1 row .*line 1: n"):
        read_documents(path)


def test_parquet_reads_the_text_column(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    path = tmp_path / "d.parquet"
    pq.write_table(pa.table({"text": ["alpha beta.", None, "gamma"], "n": [1, 2, 3]}), path)
    assert read_documents(path) == ["alpha beta.", "gamma"]
    pq.write_table(pa.table({"body": ["x"]}), path)
    with pytest.raises(DataError, match="no 'text' column"):
        read_documents(path)


def test_parquet_that_is_not_parquet(tmp_path: Path) -> None:
    path = tmp_path / "d.parquet"
    path.write_text("plain text", encoding="utf-8")
    with pytest.raises(DataError, match="as Parquet"):
        read_documents(path)


def test_hf_calls_load_dataset_with_name_config_and_train_split(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    datasets = pytest.importorskip("datasets")
    calls = []

    def fake_load_dataset(name: str, config: str | None = None, split: str | None = None) -> object:
        calls.append((name, config, split))
        return _Rows()

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    monkeypatch.setattr(sources, "hub_reachable", lambda: True)
    assert read_documents("hf:wikitext:wikitext-2-raw-v1") == ["first row", "second row"]
    assert read_documents("hf:someone/corpus") == ["first row", "second row"]
    assert calls == [("wikitext", "wikitext-2-raw-v1", "train"), ("someone/corpus", None, "train")]


class _Rows:
    """Enough of a datasets.Dataset: column_names and a 'text' column."""

    column_names = ("text", "label")

    def __getitem__(self, key: str) -> list[str]:
        assert key == "text"
        return ["first row", "", "second row"]


def test_hf_failure_is_a_data_error(monkeypatch: pytest.MonkeyPatch) -> None:
    datasets = pytest.importorskip("datasets")

    def offline(*args: object, **kwargs: object) -> object:
        raise ConnectionError("Couldn't reach the Hub\nmore detail")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    monkeypatch.setattr(sources, "hub_reachable", lambda: True)
    with pytest.raises(DataError, match=r"cannot load dataset hf:nope: Couldn't reach the Hub$"):
        read_documents("hf:nope")
    with pytest.raises(DataError, match="needs a dataset name"):
        read_documents("hf:")


def test_none_is_the_default_corpus_train_split() -> None:
    assert read_documents(None) == default_corpus("train")


# --- errors --------------------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such file or directory") as info:
        read_documents(tmp_path / "nope.txt")
    assert info.value.hint
    assert "\n" not in info.value.message


@pytest.mark.parametrize("content", ["", "\n\n  \n\t\n"])
def test_empty_file(tmp_path: Path, content: str) -> None:
    path = tmp_path / "empty.txt"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match="holds no text"):
        read_documents(path)


def test_directory_without_text(tmp_path: Path) -> None:
    (tmp_path / "x.png").write_bytes(b"\x89PNG")
    (tmp_path / "empty.txt").write_text("\n", encoding="utf-8")
    with pytest.raises(DataError, match="holds no text"):
        read_documents(tmp_path)


def test_empty_stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"")))
    with pytest.raises(DataError, match="<stdin> holds no text"):
        read_documents("-")


def test_not_utf8_names_the_file_and_the_offset(tmp_path: Path) -> None:
    path = tmp_path / "latin1.txt"
    path.write_bytes(b"ok text\n\ncaf" + b"\xe9 au lait")
    with pytest.raises(DataError) as info:
        read_documents(path)
    assert str(path) in info.value.message
    assert "offset 12" in info.value.message
    assert "0xe9" in info.value.message
    assert "iconv" in (info.value.hint or "")


def test_not_utf8_inside_a_directory_names_that_file(tmp_path: Path) -> None:
    (tmp_path / "good.txt").write_text("fine", encoding="utf-8")
    (tmp_path / "bad.log").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(DataError, match=r"bad\.log is not UTF-8 text: byte 0xff at offset 0"):
        read_documents(tmp_path)


# --- sentences -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("document", "sentences"),
    [
        ("One. Two! Three? Four", ["One.", "Two!", "Three?", "Four"]),
        ("line one\nline two.", ["line one", "line two."]),
        ("Use e.g. this one. Then stop.", ["Use e.g. this one.", "Then stop."]),
        ("See e.g. Foo and i.e. Bar. Next.", ["See e.g. Foo and i.e. Bar.", "Next."]),
        ("Call os.path.join() here. Fine.", ["Call os.path.join() here.", "Fine."]),
        ("Pi is 3.14 today. Yes.", ["Pi is 3.14 today.", "Yes."]),
        ('He said "stop." Then left.', ['He said "stop."', "Then left."]),
        ("(Really?) Yes... Sure.", ["(Really?)", "Yes...", "Sure."]),
        ("Written by J. Smith et al. in 1999.", ["Written by J. Smith et al. in 1999."]),
        ("lowercase. after a stop stays", ["lowercase. after a stop stays"]),
        ("  padded  \n\n\t\n", ["padded"]),
        ("", []),
    ],
)
def test_split_sentences(document: str, sentences: list[str]) -> None:
    assert split_sentences(document) == sentences


@given(
    st.lists(
        st.sampled_from(
            [
                "word",
                "Word",
                "e.g.",
                "x.",
                "end.",
                "Why?",
                "Yes!",
                '"q."',
                "(a)",
                " ",
                "  ",
                "\n",
                "\t",
            ]
        ),
        max_size=40,
    ).map("".join)
)
def test_split_sentences_keeps_every_word_in_order(document: str) -> None:
    sentences = split_sentences(document)
    assert " ".join(sentences).split() == document.split()
    assert all(s and s == s.strip() and "\n" not in s for s in sentences)


def test_split_documents_trims_lines_and_drops_empty_ones() -> None:
    assert split_documents("  a  \n\n\n b\n\n  c \n d ") == ["a", "b", "c\nd"]


# --- the default corpus --------------------------------------------------------------------------


def test_default_corpus_size_and_split() -> None:
    train, heldout = default_corpus("train"), default_corpus("heldout")
    size = sum(map(len, train)) + sum(map(len, heldout))
    assert 1_200_000 <= size <= 3_000_000
    assert set(train).isdisjoint(heldout)
    assert 0.005 <= sum(map(len, heldout)) / size <= 0.05
    assert len(set(train)) == len(train)
    assert all(corpus.is_heldout(d) for d in heldout)
    assert not any(corpus.is_heldout(d) for d in train[:200])
    assert default_corpus() == train
    with pytest.raises(ValueError, match="split"):
        default_corpus("test")  # type: ignore[arg-type]


def test_default_corpus_is_clean_prose() -> None:
    lines = [
        line for d in default_corpus("heldout") + default_corpus()[:100] for line in d.split("\n")
    ]
    assert all(line == line.strip() and "  " not in line for line in lines)
    assert not any(line.startswith((">>>", "...", ".. ")) or "::=" in line for line in lines)
    assert all(min(map(len, d.split("\n"))) > 0 for d in default_corpus()[:100])
    assert sum(split_sentences(d).__len__() for d in default_corpus()[:100]) > 500


def test_heldout_membership_depends_on_the_text_only() -> None:
    doc = default_corpus("heldout")[0]
    assert corpus.is_heldout(doc)
    assert corpus.document_key(doc) == corpus.document_key(str(doc))
    assert corpus.document_key("a") != corpus.document_key("b")
    # A fixed value: the split must never change between runs, processes or machines.
    assert corpus.document_key("The cat sat on the mat.") == 0x5FAF202D3C0E9C32


def test_replaced_interpreter_hooks_do_not_change_the_corpus(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """pytest replaces sys.unraisablehook and typer sys.excepthook: the text must not notice."""
    pristine = dict(corpus._builtin_texts())["builtin:sys"]
    monkeypatch.setattr(sys, "excepthook", lambda *args: None)
    monkeypatch.setattr(sys, "unraisablehook", lambda *args: None)
    assert dict(corpus._builtin_texts())["builtin:sys"] == pristine


def test_corpus_gathered_here_equals_a_fresh_interpreter() -> None:
    """The cache is written by whichever process gathers first: a CLI run, a test, a notebook."""
    script = (
        "import hashlib; from objectives_cli.data.corpus import gather; "
        "print(hashlib.sha256('\\n\\n'.join(gather()).encode()).hexdigest())"
    )
    fresh = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert hashlib.sha256("\n\n".join(corpus.gather()).encode()).hexdigest() == fresh


def test_corpus_is_cached_on_disk_atomically(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OBJECTIVES_CACHE", str(tmp_path))
    fake = ["First document. It has two sentences.", "Second document."]
    monkeypatch.setattr(corpus, "gather", lambda: fake)
    corpus.corpus_documents.cache_clear()
    try:
        assert list(corpus.corpus_documents()) == fake
        cached = list(tmp_path.glob("corpus-v*.txt"))
        assert [p.name for p in cached] == [corpus.cache_path().name]
        assert not list(tmp_path.glob("*.tmp"))
        assert read_documents(cached[0]) == fake  # the cache is a plain corpus file

        def fail() -> list[str]:
            raise AssertionError("gathered again instead of reading the cache")

        monkeypatch.setattr(corpus, "gather", fail)
        corpus.corpus_documents.cache_clear()
        assert list(corpus.corpus_documents()) == fake
    finally:
        corpus.corpus_documents.cache_clear()


def test_unwritable_cache_still_gives_the_corpus(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory", encoding="utf-8")
    monkeypatch.setenv("OBJECTIVES_CACHE", str(blocker / "sub"))
    monkeypatch.setattr(corpus, "gather", lambda: ["only doc"])
    corpus.corpus_documents.cache_clear()
    try:
        assert corpus.corpus_documents() == ("only doc",)
    finally:
        corpus.corpus_documents.cache_clear()


def test_gather_reads_a_source_tree_without_importing_it(tmp_path: Path) -> None:
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "skipped.py").write_text('"""Never read: tests are skipped."""')
    (tmp_path / "boom.py").write_text(
        '"""A module whose import would fail, so it must not be imported. It still has words."""\n'
        "raise SystemExit('imported!')\n"
        "def f():\n    '''Return a value that is computed with care and some thought.'''\n"
    )
    docs = corpus._documents(corpus._stdlib_texts(tmp_path))  # no topics, no builtins
    assert docs == []  # shorter than MIN_DOCUMENT_CHARS
    paragraphs = [
        p
        for _, texts in corpus._stdlib_texts(tmp_path)
        for t in texts
        for p in corpus.clean_paragraphs(t)
    ]
    assert paragraphs == [
        "A module whose import would fail, so it must not be imported. It still has words.",
        "Return a value that is computed with care and some thought.",
    ]


# --- the docstring lexer and the cleaning ------------------------------------------------------

SOURCE = '''#!/usr/bin/env python
# a comment with """quotes"""
r"""Module docstring with a \\raw backslash."""

x = """not a docstring: assigned"""
s = "a ':' and a '\\"' inside"  # comment: with colon
def f(a,
      b) -> int:  # trailing comment
    # a comment line
    """Function docstring.

    More text here.
    """
    return 1

class C:
    'Single-quoted class docstring.'
    def g(self): pass
    y = """also not one"""

def h():
    """Escapes are evaluated: tab\\there."""
'''


def test_docstrings_finds_exactly_the_docstrings() -> None:
    found = list(corpus.docstrings(SOURCE))
    assert found == [
        "Module docstring with a \\raw backslash.",
        "Function docstring.\n\n    More text here.\n    ",
        "Single-quoted class docstring.",
        "Escapes are evaluated: tab\there.",
    ]


@pytest.mark.parametrize("module", ["textwrap", "difflib", "argparse", "json/decoder"])
def test_docstrings_agree_with_ast_on_the_stdlib(module: str) -> None:
    import sysconfig

    path = Path(sysconfig.get_paths()["stdlib"]) / f"{module}.py"
    source = path.read_text("utf-8")
    expected = [
        ast.get_docstring(node, clean=False)
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
    ]
    assert sorted(corpus.docstrings(source)) == sorted(d for d in expected if d is not None)


def test_clean_paragraphs() -> None:
    text = """Summary line of the function.

    Continued paragraph that
    spans   two lines, see :func:`os.path.join` and ``x + 1``.

    >>> f(1)
    2

    Example::

        for item in items:
            result = process(item)

    * first bullet item here
    * second bullet item here

    Notes
    -----
    SOME_CONSTANT OTHER_CONSTANT THIRD_ONE
    """
    import inspect

    assert corpus.clean_paragraphs(inspect.cleandoc(text)) == [
        "Summary line of the function.",
        'Continued paragraph that spans two lines, see "os.path.join" and "x + 1".',
        "* first bullet item here",
        "* second bullet item here",
    ]


def closed_port() -> int:
    """A local port nothing listens on (a connection is refused at once)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_hf_offline_fails_at_once_in_one_line(tmp_path: Path) -> None:
    """No half minute of 'Retrying in 8s' lines: an unreachable Hub is one error."""
    env = {
        **os.environ,
        "HF_ENDPOINT": f"http://127.0.0.1:{closed_port()}",
        "HF_HOME": str(tmp_path),  # an empty cache
    }
    env.pop("HF_HUB_OFFLINE", None)
    env.pop("HF_DATASETS_OFFLINE", None)
    done = subprocess.run(
        [sys.executable, "-m", "objectives_cli", "corrupt", "-o", "bert-mlm", "hf:someone/corpus"],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 1
    lines = done.stderr.splitlines()
    assert len(lines) == 2, done.stderr
    assert "cannot be reached" in lines[0]
    assert lines[1].startswith("hint: ")


def test_hub_reachable(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.getsockname()[1]}")
        assert sources.hub_reachable(timeout=5)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{closed_port()}")
    assert not sources.hub_reachable(timeout=5)

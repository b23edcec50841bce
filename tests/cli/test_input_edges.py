"""Input at its edges: an empty pipe, a closed stdin, absurd lengths, one huge line, a dumb
terminal, a narrow one, and a JSON file that is not a tokenizer. Each is one `error:` line or
the right output, never a traceback, a hang or the wrong text."""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

import corruptions
from objectives_cli.data import encoding
from objectives_cli.data import rows as blocks_module
from objectives_cli.data.encoding import encode_documents
from objectives_cli.data.examples import corrupt_documents
from objectives_cli.data.tokenizer import load_tokenizer, vocab_of
from tests.cli.runner import INPUT, invoke
from tests.cli.test_commands import one_error

ROOT = Path(__file__).resolve().parents[2]
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def objectives(*args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """`objectives ARGS` in a real process (a real stdin: pipe, /dev/null or closed)."""
    return subprocess.run(
        [sys.executable, "-m", "objectives_cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        **kwargs,
    )


def test_an_empty_pipe_is_no_text_not_the_built_in_corpus() -> None:
    done = objectives("corrupt", "-o", "bert-mlm", input="")  # `grep NOMATCH f | objectives ...`
    assert done.returncode == 1
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 2
    assert lines[0] == "error: <stdin> holds no text"
    assert lines[1].startswith("hint: ")


def test_stdin_from_dev_null_means_nothing_piped_so_the_built_in_corpus() -> None:
    done = objectives("corrupt", "-o", "bert-mlm", "--limit", "1", stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.splitlines()) == 1


@pytest.mark.parametrize(("path", "code"), [("-", 1), (None, 0)])
def test_a_closed_stdin(path: str | None, code: int) -> None:
    args = " ".join(["corrupt", "-o", "bert-mlm", "--limit", "1", *([path] if path else [])])
    done = subprocess.run(
        ["sh", "-c", f'exec "{sys.executable}" -m objectives_cli {args} <&-'],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == code, done.stderr
    if code:
        assert done.stderr.splitlines()[0] == "error: standard input is closed"
        assert len(done.stderr.splitlines()) <= 2
    else:  # nothing piped: the built-in corpus
        assert len(done.stdout.splitlines()) == 1


def test_an_absurd_max_length_is_refused_at_once() -> None:
    one_error(invoke("corrupt", "-o", "bert-mlm", "--max-length", "100000000"), 2, "at most")


class CountingTokenizer:
    """A tokenizer that counts the characters it is asked to encode."""

    def __init__(self, tok: Any) -> None:
        self.tok, self.characters = tok, 0

    def encode_batch(self, texts: list[str], **kwargs: Any) -> Any:
        self.characters += sum(map(len, texts))
        return self.tok.encode_batch(texts, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.tok, name)


def test_a_few_examples_of_one_huge_line_tokenise_only_its_start() -> None:
    line = " ".join(["the cat sat on a mat and it was happy there"] * 20_000)  # 880 k characters
    tok = load_tokenizer()
    counting = CountingTokenizer(tok)
    corruption, vocab = corruptions.create("bert-mlm"), vocab_of(tok)
    few = list(corrupt_documents(corruption, counting, vocab, [line], 128, 0, limit=3))  # type: ignore[arg-type]
    assert len(few) == 3
    assert counting.characters <= 2 * blocks_module.CHARS_PER_CHUNK < len(line) // 4
    everything = corrupt_documents(corruption, tok, vocab, [line], 128, 0)
    assert few == [next(everything) for _ in range(3)]


@pytest.mark.parametrize("max_length", [3, 7, 16, 128])
def test_a_long_document_gives_the_same_blocks_whatever_it_is_read_in(
    max_length: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = INPUT.read_text(encoding="utf-8")
    documents = [" ".join(text.split()), "A short one.", " ".join(reversed(text.split()))]
    tok = load_tokenizer()

    def rows(chunk: int) -> list[tuple[list[int], list[int], list[bool], list[bool]]]:
        monkeypatch.setattr(blocks_module, "CHARS_PER_CHUNK", chunk)
        out = []
        for block in blocks_module.blocks(tok, documents, max_length, 0):
            for r in range(block.ids.size(0)):
                n = int(block.lengths[r])
                out.append(
                    (
                        block.ids[r, :n].tolist(),
                        [n],
                        block.word_starts[r, :n].tolist(),
                        block.sentence_starts[r, :n].tolist(),
                    )
                )
        return out

    whole = rows(10**9)
    assert rows(40) == whole
    assert rows(333) == whole


def test_examples_carry_the_text_they_were_cut_from(monkeypatch: pytest.MonkeyPatch) -> None:
    """`Example.text` is the block's stretch of its document, as written, and `offsets` each
    token's characters in it: the same whatever the text is read in (chunks, long sentences cut
    into pieces), blocks cut mid-document included."""
    documents = [
        " ".join(f"Sentence {i} is unhappily long, isn't it?" for i in range(60)),
        "A short one.\nWith  two lines,   and spaces.",
    ]
    tok = load_tokenizer()

    def texts() -> list[tuple[str, list[tuple[int, int]]]]:
        out = []
        for rows in blocks_module.text_blocks(tok, documents, 16, 0):
            for b, (text, offsets) in enumerate(zip(rows.texts, rows.offsets, strict=True)):
                n = int(rows.tokens.lengths[b])
                ids = rows.tokens.ids[b, :n].tolist()
                assert len(offsets) == n
                assert any(text in doc for doc in documents)
                for token, (start, end) in zip(ids, offsets, strict=True):
                    piece = tok.id_to_token(token).removeprefix("##")
                    assert text[start:end] == piece, (text, piece)
                out.append((text, offsets))
        return out

    whole = texts()
    monkeypatch.setattr(blocks_module, "CHARS_PER_CHUNK", 40)
    monkeypatch.setattr(encoding, "PIECE_CHARS", 12)
    assert texts() == whole


def test_examples_without_their_text_are_the_same_examples() -> None:
    """JSONL rows need no text (`with_text=False`): the examples are the same but for it."""
    tok = load_tokenizer()
    documents = [INPUT.read_text(encoding="utf-8")]
    corruption = corruptions.create("bert-mlm")
    with_text = list(corrupt_documents(corruption, tok, vocab_of(tok), documents, 24, 0))
    without = corrupt_documents(corruption, tok, vocab_of(tok), documents, 24, 0, with_text=False)
    assert [replace(e, text="", offsets=None) for e in with_text] == list(without)
    assert all(e.text and e.offsets for e in with_text)


def test_a_sentence_too_long_to_encode_at_once_is_encoded_in_pieces_alike() -> None:
    tok = load_tokenizer()
    sentence = " ".join(f"word{i % 97}" for i in range(3000))  # one sentence, ~20 k characters
    (doc,) = encode_documents(tok, [sentence])
    assert doc.ids == tok.encode(sentence, add_special_tokens=False).ids
    assert doc.sentence_starts == [True] + [False] * (len(doc.ids) - 1)
    words = tok.encode(sentence, add_special_tokens=False).word_ids
    assert doc.word_starts == [w != p for w, p in zip(words, [None, *words[:-1]], strict=True)]


def test_a_dumb_terminal_gets_the_plain_markers() -> None:
    args = ["corrupt", "-o", "bert-mlm", "--max-length", "24", "--limit", "2", str(INPUT)]
    plain = invoke(*args, "--format", "text").stdout
    dumb = invoke(*args, "--show", env={"FORCE_COLOR": "1", "TERM": "dumb"}).stdout
    assert dumb == plain
    assert "[MASK]" in dumb


def test_a_narrow_terminal_keeps_every_objective_name_whole() -> None:
    shown = ANSI.sub("", invoke("list", env={"FORCE_COLOR": "1", "COLUMNS": "50"}).stdout)
    assert max(map(len, shown.splitlines())) <= 50
    cells = {cell.strip() for line in shown.splitlines() for cell in re.split(r"[│┃]", line)}
    assert {o.name for o in corruptions.list_objectives()} <= cells


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"a": 1}', "is JSON but not a tokenizer"),
        ("[1, 2]", "is JSON but not a tokenizer"),
        ('{"model": {"type": "Nope"}}', "is not a tokenizer file"),
        ("{bad", "is not JSON"),
    ],
)
def test_a_json_file_that_is_not_a_tokenizer(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "tok.json"
    path.write_text(content, encoding="utf-8")
    result = invoke("corrupt", "-o", "bert-mlm", "--tokenizer", str(path), "-", stdin="The cat.\n")
    one_error(result, 1, message)
    if message == "is JSON but not a tokenizer":
        assert "line 1 column" not in result.stderr  # not reported as a syntax error

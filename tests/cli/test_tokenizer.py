"""Tokenizers, Vocab, encoding, packing into blocks, and `objectives tokenizer train`."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from tokenizers import Tokenizer
from typer.testing import CliRunner

from corruptions.errors import DataError
from objectives_cli.cli.main import app, run
from objectives_cli.data import tokenizer as tk
from objectives_cli.data.encoding import EncodedDoc, encode_documents
from objectives_cli.data.packing import rows_of
from objectives_cli.data.sources import default_corpus
from objectives_cli.data.splits import split_sentences
from objectives_cli.data.tokenizer import (
    SPECIAL_TOKENS,
    load_tokenizer,
    train_tokenizer,
    vocab_of,
)
from tests.cli.runner import invoke
from tests.helpers import corpus_tokens, corpus_vocab

KINDS = ("wordpiece", "bpe", "unigram")
SMALL_VOCAB = 700
ROOT = Path(__file__).resolve().parents[2]


@functools.cache
def small_corpus() -> tuple[str, ...]:
    return tuple(default_corpus()[:40])


@functools.cache
def small(kind: str) -> Tokenizer:
    """A tokenizer of `kind` trained on a slice of the default corpus (cached per process)."""
    return train_tokenizer(small_corpus(), kind, SMALL_VOCAB)


# --- special tokens and Vocab --------------------------------------------------------------------


def test_special_tokens_layout() -> None:
    assert SPECIAL_TOKENS[:8] == (
        "[PAD]",
        "[UNK]",
        "[CLS]",
        "[SEP]",
        "[MASK]",
        "[NLU]",
        "[NLG]",
        "[S2S]",
    )
    assert SPECIAL_TOKENS[8:] == tuple(f"<extra_id_{k}>" for k in range(99, -1, -1))
    assert len(set(SPECIAL_TOKENS)) == 108


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_holds_the_specials_with_sentinels_last(kind: str) -> None:
    tok = small(kind)
    size = tok.get_vocab_size(with_added_tokens=True)
    assert size <= SMALL_VOCAB
    for i, name in enumerate(SPECIAL_TOKENS[:8]):
        assert tok.token_to_id(name) == i
    for k in range(100):
        assert tok.token_to_id(f"<extra_id_{k}>") == size - 1 - k
    assert len(set(tok.get_vocab(with_added_tokens=True).values())) == size  # ids are dense
    assert max(tok.get_vocab(with_added_tokens=True).values()) == size - 1


@pytest.mark.parametrize("kind", KINDS)
def test_vocab_of(kind: str) -> None:
    tok = small(kind)
    vocab = vocab_of(tok)
    size = tok.get_vocab_size(with_added_tokens=True)
    assert (vocab.size, vocab.pad, vocab.unk, vocab.bos, vocab.eos, vocab.mask) == (
        size,
        0,
        1,
        2,
        3,
        4,
    )
    assert vocab.sentinels == tuple(range(size - 1, size - 101, -1))
    assert dict(vocab.extra) == {"[NLU]": 5, "[NLG]": 6, "[S2S]": 7}
    assert vocab.special is not None
    assert vocab.special.sum().item() == 108
    assert vocab.special[:8].all()
    assert vocab.special[-100:].all()


def test_vocab_of_accepts_other_families_names_and_rejects_missing_roles() -> None:
    from tokenizers import models

    names = ["<pad>", "<unk>", "<s>", "</s>", "<mask>", "hello"]
    roberta = Tokenizer(models.WordLevel({n: i for i, n in enumerate(names)}, unk_token="<unk>"))
    vocab = vocab_of(roberta)
    assert (vocab.pad, vocab.unk, vocab.bos, vocab.eos, vocab.mask) == (0, 1, 2, 3, 4)
    assert vocab.sentinels == ()
    assert dict(vocab.extra) == {}
    no_mask = Tokenizer(
        models.WordLevel({"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3}, unk_token="[UNK]")
    )
    with pytest.raises(DataError, match=r"no \[MASK\] token"):
        vocab_of(no_mask)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="unknown tokenizer kind"):
        train_tokenizer(["some text"], "sentencepiece", 1000)
    with pytest.raises(ValueError, match="vocab_size must be at least 128"):
        train_tokenizer(["some text"], "wordpiece", 127)
    with pytest.raises(ValueError, match="bpe vocab_size must be at least 384"):
        train_tokenizer(["some text"], "bpe", 383)
    assert train_tokenizer(["some text"], "bpe", 384).get_vocab_size() <= 384


# --- decoding and word starts --------------------------------------------------------------------

SENTENCE = "The interpreter raises an exception when the argument isn't callable."


@pytest.mark.parametrize("kind", KINDS)
def test_decode_gives_readable_text(kind: str) -> None:
    tok = small(kind)
    ids = tok.encode(SENTENCE, add_special_tokens=False).ids
    text = tok.decode(ids)
    if kind == "wordpiece":  # BERT's cleanup joins "." and "'" but not "isn ' t"
        assert text.replace(" ' ", "'") == SENTENCE
    else:
        assert text == SENTENCE


@pytest.mark.parametrize("kind", KINDS)
def test_word_starts_follow_the_pre_tokenizer(kind: str) -> None:
    tok = small(kind)
    text = "Unbelievably, zyxwvut interpreters reinterpret everything."
    [doc] = encode_documents(tok, [text])
    words = tok.pre_tokenizer.pre_tokenize_str(
        tok.normalizer.normalize_str(text) if tok.normalizer else text
    )
    assert sum(doc.word_starts) == len(words)
    assert doc.word_starts[0]
    enc = tok.encode(text, add_special_tokens=False)
    # A word split into several pieces has exactly one start, at its first piece.
    for w in set(enc.word_ids):
        positions = [i for i, x in enumerate(enc.word_ids) if x == w]
        assert [doc.word_starts[i] for i in positions] == [True] + [False] * (len(positions) - 1)
    assert any(enc.word_ids.count(w) > 1 for w in set(enc.word_ids))  # the test has teeth


def test_words_per_kind_as_their_references_define_them() -> None:
    def words(kind: str) -> list[str]:
        tok = small(kind)
        [doc] = encode_documents(tok, ["Don't stop."])
        pieces = [tok.id_to_token(i) for i in doc.ids]
        out: list[str] = []
        for piece, start in zip(pieces, doc.word_starts, strict=True):
            out.append(piece) if start else out.__setitem__(-1, out[-1] + piece)
        return [w.replace("##", "").replace("Ġ", "").replace("▁", "") for w in out]

    assert words("wordpiece") == ["Don", "'", "t", "stop", "."]  # BERT: punctuation splits
    assert words("bpe") == ["Don", "'t", "stop", "."]  # GPT-2's regex
    assert words("unigram") == ["Don't", "stop."]  # SentencePiece: spaces only


def test_default_tokenizer_works_offline_and_is_cased() -> None:
    tok = load_tokenizer()
    vocab = vocab_of(tok)
    assert vocab.size == 8000
    assert vocab.sentinels[0] == 7999
    assert vocab.sentinels[99] == 7900
    ids = tok.encode("Return the Value.", add_special_tokens=False).ids
    assert tok.decode(ids) == "Return the Value."
    assert tok.token_to_id("[UNK]") not in tok.encode("café naïve “quoted” – ok").ids
    assert corpus_vocab().size == 8000


def test_default_tokenizer_is_rebuilt_identically() -> None:
    """The shipped file equals a fresh training on the default corpus: same corpus, same bytes
    (tokenizers' own WordPiece and Unigram trainers are not deterministic; ours must be)."""
    fresh = train_tokenizer(default_corpus("train"), "wordpiece", tk.DEFAULT_VOCAB_SIZE)
    shipped = json.loads(tk.DEFAULT_TOKENIZER.read_text("utf-8"))
    assert json.loads(fresh.to_str()) == shipped, (
        "the default tokenizer is stale: "
        "run python -m objectives_cli.data.tokenizer --rebuild-default"
    )


@pytest.mark.parametrize("kind", KINDS)
def test_training_is_deterministic(kind: str) -> None:
    again = train_tokenizer(small_corpus(), kind, SMALL_VOCAB)
    assert again.to_str() == small(kind).to_str()


@pytest.mark.slow
def test_training_is_deterministic_across_processes(tmp_path: Path) -> None:
    """Rust hash seeds differ per process: train in two fresh interpreters and compare files."""
    script = (
        "import sys\n"
        "from objectives_cli.data.sources import default_corpus\n"
        "from objectives_cli.data.tokenizer import train_tokenizer\n"
        "docs = default_corpus()[:25]\n"
        "for kind in ('wordpiece', 'unigram'):\n"
        "    train_tokenizer(docs, kind, 500).save(sys.argv[1] + kind)\n"
    )
    for name in ("a", "b"):
        subprocess.run([sys.executable, "-c", script, str(tmp_path / name)], cwd=ROOT, check=True)
    for kind in ("wordpiece", "unigram"):
        assert (tmp_path / f"a{kind}").read_bytes() == (tmp_path / f"b{kind}").read_bytes()


def test_load_tokenizer_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such tokenizer file"):
        load_tokenizer(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not a tokenizer", encoding="utf-8")
    with pytest.raises(DataError, match="is not JSON") as info:
        load_tokenizer(bad)
    assert "\n" not in info.value.message


def test_loaded_tokenizer_never_truncates_or_pads(tmp_path: Path) -> None:
    tok = small("bpe")
    tok_path = tmp_path / "t.json"
    padded = Tokenizer.from_str(tok.to_str())
    padded.enable_truncation(4)
    padded.enable_padding(length=64)
    padded.save(str(tok_path))
    [doc] = encode_documents(load_tokenizer(tok_path), [SENTENCE])
    assert len(doc.ids) == len(tok.encode(SENTENCE, add_special_tokens=False).ids) > 4


# --- encode_documents ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_encode_documents(kind: str) -> None:
    tok = small(kind)
    docs = ["First sentence here. Second one!\nThird line", "Only one.", "", "   "]
    encoded = encode_documents(tok, docs)
    assert len(encoded) == len(docs)
    for doc, text in zip(encoded, docs, strict=True):
        assert len(doc.ids) == len(doc.word_starts) == len(doc.sentence_starts)
        assert sum(doc.sentence_starts) == len(split_sentences(text))
        expected = [
            i for s in split_sentences(text) for i in tok.encode(s, add_special_tokens=False).ids
        ]
        assert doc.ids == expected  # no [CLS]/[SEP] added
    assert encoded[2] == EncodedDoc([], [], [])
    assert encode_documents(tok, []) == []


def test_text_that_contains_special_tokens_keeps_them() -> None:
    tok = load_tokenizer()
    [doc] = encode_documents(tok, ["a [MASK] b <extra_id_0>"])
    assert tok.token_to_id("[MASK]") in doc.ids
    assert 7999 in doc.ids


# --- rows_of --------------------------------------------------------------------------------


def _doc(ids: list[int], words: list[bool], sents: list[bool] | None = None) -> EncodedDoc:
    return EncodedDoc(ids, words, sents if sents is not None else [i == 0 for i in range(len(ids))])


def test_batch_blocks_cuts_before_a_word_that_would_straddle() -> None:
    # words: [10 11 12] [13] [14 15] [16 17 18 19 20 21 22] (the last is longer than a row)
    words = [True, False, False, True, True, False, True] + [False] * 6
    sents = [True, False, False, False, True] + [False] * 8
    doc = _doc(list(range(10, 23)), words, sents)
    out = rows_of([doc, _doc([30, 31], [True, False])], max_length=5, pad=-1)
    assert out.ids.tolist() == [
        [10, 11, 12, 13, -1],
        [14, 15, -1, -1, -1],
        [16, 17, 18, 19, 20],
        [21, 22, -1, -1, -1],
        [30, 31, -1, -1, -1],
    ]
    assert out.lengths.tolist() == [4, 2, 5, 2, 2]
    assert out.word_starts is not None
    assert out.sentence_starts is not None
    assert out.word_starts.tolist() == [
        [True, False, False, True, False],
        [True, False, False, False, False],
        [True, False, False, False, False],
        [True, False, False, False, False],  # a cut inside an over-long word opens a "word"
        [True, False, False, False, False],
    ]
    assert out.sentence_starts.tolist() == [
        [True, False, False, False, False],
        [True, False, False, False, False],  # 14 opens a sentence
        [True, False, False, False, False],  # a row's first token always does
        [True, False, False, False, False],
        [True, False, False, False, False],
    ]


def test_batch_blocks_edge_cases() -> None:
    empty = rows_of([], 8, pad=0)
    assert empty.ids.shape == (0, 0)
    assert empty.lengths.shape == (0,)
    assert rows_of([_doc([], [])], 8, pad=0).ids.shape == (0, 0)
    one = rows_of([_doc([5], [True]), _doc([], []), _doc([6, 7], [True, True])], 8, pad=0)
    assert one.ids.tolist() == [[5, 0], [6, 7]]  # as wide as the longest chunk
    assert one.ids.dtype == torch.long
    assert one.lengths.tolist() == [1, 2]
    with pytest.raises(ValueError, match="max_length"):
        rows_of([_doc([1], [True])], 0, pad=0)


@st.composite
def documents(draw: st.DrawFn) -> list[EncodedDoc]:
    docs = []
    for _ in range(draw(st.integers(0, 6))):
        n = draw(st.integers(0, 40))
        words = draw(st.lists(st.booleans(), min_size=n, max_size=n))
        sents = draw(st.lists(st.booleans(), min_size=n, max_size=n))
        if n:
            words[0] = sents[0] = True
        docs.append(
            EncodedDoc(draw(st.lists(st.integers(10, 99), min_size=n, max_size=n)), words, sents)
        )
    return docs


@given(docs=documents(), max_length=st.integers(1, 16))
def test_batch_blocks_properties(docs: list[EncodedDoc], max_length: int) -> None:
    out = rows_of(docs, max_length, pad=3)
    assert out.word_starts is not None
    assert out.sentence_starts is not None
    rows = [out.ids[i, : out.lengths[i]].tolist() for i in range(out.ids.size(0))]
    assert all(1 <= len(r) <= max_length for r in rows)
    assert out.ids.size(1) == max((len(r) for r in rows), default=0)
    assert not (out.ids[~out.real] != 3).any()
    assert not out.word_starts[~out.real].any()
    assert not out.sentence_starts[~out.real].any()
    if rows:
        assert out.word_starts[:, 0].all()
        assert out.sentence_starts[:, 0].all()
    # Rows concatenate back to the documents, in order, and never mix two documents.
    it = iter(rows)
    for doc in (d for d in docs if d.ids):
        got: list[int] = []
        while len(got) < len(doc.ids):
            got += next(it)
        assert got == doc.ids
    assert next(it, None) is None
    # A row only ends inside a word when that word alone is longer than a row.
    flat_words = [w for d in docs for w in d.word_starts]
    flat_sents = [s for d in docs for s in d.sentence_starts]
    pos = 0
    for i, row in enumerate(rows):
        starts = out.word_starts[i, : len(row)].tolist()
        assert starts[1:] == flat_words[pos + 1 : pos + len(row)]
        assert out.sentence_starts[i, 1 : len(row)].tolist() == flat_sents[pos + 1 : pos + len(row)]
        pos += len(row)


def test_corpus_tokens_helper() -> None:
    batch = corpus_tokens(20_000, 128)
    assert batch is corpus_tokens(20_000, 128)  # cached
    assert int(batch.lengths.sum()) >= 20_000
    assert batch.ids.size(1) == 128
    assert batch.lengths.float().mean() > 64  # full-ish rows
    vocab = corpus_vocab()
    assert not vocab.is_special(batch.ids[batch.real]).any()  # the corpus holds no [MASK] etc.
    assert batch.word_starts is not None
    assert batch.sentence_starts is not None
    assert 0.5 < batch.word_starts[batch.real].float().mean() < 1.0
    assert batch.sentence_starts[batch.real].sum() > batch.ids.size(0)
    with pytest.raises(ValueError, match="heldout split has only"):
        corpus_tokens(10_000_000, split="heldout")


# --- the command ---------------------------------------------------------------------------------


def test_train_command(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n\n".join(small_corpus()[:10]), encoding="utf-8")
    out = tmp_path / "sub" / "tok.json"
    result = CliRunner().invoke(
        app,
        [
            "tokenizer",
            "train",
            str(corpus),
            "--kind",
            "unigram",
            "--vocab-size",
            "400",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert "wrote" in result.stderr
    tok = load_tokenizer(out)
    assert tok.token_to_id("<extra_id_0>") == tok.get_vocab_size() - 1
    assert tok.model.__class__.__name__ == "Unigram"


def test_train_command_reads_stdin(tmp_path: Path) -> None:
    out = tmp_path / "tok.json"
    result = CliRunner().invoke(
        app,
        ["tokenizer", "train", "-", "--kind", "bpe", "--vocab-size", "400", "--out", str(out)],
        input="The cat sat. The cat ran.\n\nA dog barked at the cat.\n",
    )
    assert result.exit_code == 0, result.output
    assert "on 2 documents" in result.stderr
    assert load_tokenizer(out).get_vocab_size() <= 400


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["missing.txt"], 1),
        (["empty.txt"], 1),
        (["latin1.txt"], 1),
        (["corpus.txt", "--kind", "sentencepiece"], 2),
        (["corpus.txt", "--vocab-size", "100"], 2),
        (["corpus.txt", "--vocab-size", "300", "--kind", "bpe"], 2),
    ],
)
def test_train_command_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], code: int
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty.txt").write_text("\n", encoding="utf-8")
    (tmp_path / "latin1.txt").write_bytes("café au lait".encode("latin-1"))
    (tmp_path / "corpus.txt").write_text("some text here", encoding="utf-8")
    result = CliRunner().invoke(app, ["tokenizer", "train", *args, "--out", "t.json"])
    assert result.exit_code == code
    if code == 1:
        assert isinstance(result.exception, DataError)
    assert not (tmp_path / "t.json").exists()


def test_train_command_error_is_one_line_on_stderr(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Through the real entry point (main.run): `error: ...` and `hint: ...`, exit status 1."""
    missing = tmp_path / "nope"
    monkeypatch.setattr(
        sys,
        "argv",
        ["objectives", "tokenizer", "train", str(missing), "--out", str(tmp_path / "t.json")],
    )
    with pytest.raises(SystemExit) as info:
        run()
    assert info.value.code == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == [
        f"error: no such file or directory: {missing}",
        "hint: pass a text file, a directory, '-' for stdin, or hf:NAME",
    ]


def test_a_corpus_too_small_for_the_vocabulary_warns(tmp_path: Path) -> None:
    corpus = tmp_path / "tiny.txt"
    corpus.write_text("a tiny corpus with few words.\n", encoding="utf-8")
    result = CliRunner().invoke(
        app,
        [
            "tokenizer",
            "train",
            str(corpus),
            "--vocab-size",
            "400",
            "--out",
            str(tmp_path / "tok.json"),
        ],
    )
    assert result.exit_code == 0
    assert "warning: the corpus yields only" in result.output


def test_dash_o_is_the_objective_everywhere_so_not_the_output_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("some text here", encoding="utf-8")
    result = invoke("tokenizer", "train", "notes.txt", "-o", "bert-mlm")
    assert result.code == 2
    assert result.stderr.splitlines() == [
        "error: no such option: -o",
        "hint: -o is --objective in every command; write the tokenizer with --out FILE",
    ]
    assert not (tmp_path / "bert-mlm").exists()
    assert " -o " not in invoke("tokenizer", "train", "--help", env={"COLUMNS": "100"}).stdout


def make_special(path: Path, kind: str) -> None:
    """A path of `kind` that `--out` must not write over."""
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "symlink":
        (path.parent / "target.txt").write_text("keep me\n", encoding="utf-8")
        path.symlink_to("target.txt")
    elif kind == "dangling symlink":
        path.symlink_to("nowhere.json")
    elif kind == "socket":
        with socket.socket(socket.AF_UNIX) as server:
            server.bind(str(path))
    elif kind == "device":
        if os.geteuid() != 0:
            pytest.skip("creating a device node needs root")
        os.mknod(path, stat.S_IFCHR | 0o600, os.makedev(1, 3))  # like /dev/null


@pytest.mark.parametrize("kind", ["fifo", "symlink", "dangling symlink", "socket", "device"])
def test_out_is_never_written_over_unless_a_regular_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("some text here. and more.\n", encoding="utf-8")
    out = tmp_path / "out.json"
    make_special(out, kind)
    before = os.lstat(out)
    result = invoke("tokenizer", "train", "notes.txt", "--vocab-size", "300", "--out", "out.json")
    assert result.code == 2, result.stderr
    assert result.stderr.splitlines()[0].startswith("error: refusing to write over out.json: it is")
    assert "training" not in result.stderr  # refused before any work
    after = os.lstat(out)
    assert (after.st_mode, after.st_ino) == (before.st_mode, before.st_ino)
    if kind == "symlink":
        assert (tmp_path / "target.txt").read_text(encoding="utf-8") == "keep me\n"


def test_out_replaces_a_regular_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("some text here. and more.\n", encoding="utf-8")
    (tmp_path / "out.json").write_text("old", encoding="utf-8")
    result = invoke("tokenizer", "train", "notes.txt", "--vocab-size", "300", "--out", "out.json")
    assert result.code == 0, result.stderr
    assert load_tokenizer(tmp_path / "out.json").get_vocab_size() > 108


def test_counts_are_human_readable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("some text here. and more.\n", encoding="utf-8")
    result = invoke("tokenizer", "train", "notes.txt", "--vocab-size", "300", "--out", "t.json")
    assert result.code == 0, result.stderr
    assert "on 1 document (25 characters)" in result.stderr


@pytest.mark.parametrize(
    ("n", "noun", "shown"),
    [
        (0, "document", "0 documents"),
        (1, "document", "1 document"),
        (9_999, "character", "9,999 characters"),
        (12_345, "character", "12.3 k characters"),
        (1_660_000, "character", "1.66 M characters"),
        (2_500_000_000, "character", "2.5 G characters"),
    ],
)
def test_count(n: int, noun: str, shown: str) -> None:
    from objectives_cli.render.output import count

    assert count(n, noun) == shown


def test_training_shows_progress_on_a_terminal(tmp_path: Path) -> None:
    """Unigram training is the slow one (its EM steps); on a terminal each phase shows."""
    import pty

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n\n".join(small_corpus()[:10]), encoding="utf-8")
    leader, follower = pty.openpty()
    args = ["tokenizer", "train", str(corpus), "--kind", "unigram", "--vocab-size", "400"]
    process = subprocess.Popen(
        [sys.executable, "-m", "objectives_cli", *args, "--out", str(tmp_path / "t.json")],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=follower,
    )
    os.close(follower)
    shown = b""
    with contextlib.suppress(OSError):  # EIO once the process has gone and all is read
        while chunk := os.read(leader, 65536):  # read as it comes: a full pty would block it
            shown += chunk
    os.close(leader)
    assert process.wait(timeout=300) == 0
    assert b"EM training" in shown


# --- more sentinels ------------------------------------------------------------------------------


def test_the_cli_default_sentinel_count_is_the_library_one() -> None:
    from objectives_cli.cli import tokenizer as cli_tokenizer

    assert cli_tokenizer.N_SENTINELS == tk.N_SENTINELS == len(tk.SENTINELS)


@pytest.mark.parametrize("kind", KINDS)
def test_more_sentinels_keep_t5s_layout(kind: str) -> None:
    tok = train_tokenizer(small_corpus(), kind, SMALL_VOCAB + 50, n_sentinels=150)
    vocab = vocab_of(tok)
    size = tok.get_vocab_size(with_added_tokens=True)
    assert vocab.sentinels == tuple(range(size - 1, size - 151, -1))  # <extra_id_0> = V-1
    assert tok.id_to_token(size - 150) == "<extra_id_149>"
    assert [tok.id_to_token(i) for i in range(8)] == list(tk.BASE_SPECIALS)
    assert vocab.special is not None
    assert vocab.special[-150:].all()
    assert not vocab.special[8 : size - 150].any()


def test_a_long_row_needs_more_sentinels_and_the_error_says_how(tmp_path: Path) -> None:
    text = tmp_path / "long.txt"
    text.write_text(" ".join(default_corpus()[:60]) + "\n")  # one document of 4000+ tokens
    args = ["corrupt", "-o", "t5-span", "--max-length", "2048", "--limit", "1", str(text)]
    short = invoke(*args, "--format", "jsonl")
    assert short.code == 1
    assert "needs 102 sentinel tokens but the vocabulary has 100" in short.stderr
    assert "objectives tokenizer train CORPUS --sentinels 200 --out tok.json" in short.stderr
    assert "Traceback" not in short.stderr
    tok = tmp_path / "tok.json"
    made = invoke(
        "tokenizer", "train", "default", "--out", str(tok), "--vocab-size", "2000",
        "--sentinels", "200",
    )  # fmt: skip
    assert made.code == 0, made.stderr
    assert vocab_of(load_tokenizer(tok)).sentinels[-1] == Tokenizer.from_file(str(tok)).token_to_id(
        "<extra_id_199>"
    )
    long = invoke(*args, "--format", "jsonl", "--tokenizer", str(tok))
    assert long.code == 0, long.stderr
    assert "<extra_id_101>" in json.loads(long.stdout)["input"]

"""Training from a prepared directory, mapped, is training from the same text in memory: the
same rows at every step, so the same metrics; exact resume holds; a directory of another
tokenizer is refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from objectives_cli.data import prepare
from objectives_cli.data.tokenizer import load_tokenizer
from objectives_cli.train import batches
from objectives_cli.train.loop import Interrupted, train
from tests.cli.runner import INPUT, invoke
from tests.train.conftest import QUIET, tiny
from tests.train.test_resume import StopAt, content


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OBJECTIVES_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def text(tmp_path: Path) -> Path:
    words = INPUT.read_text(encoding="utf-8").split()
    docs = [f"Note {i}. " + " ".join(words[i * 7 : i * 7 + 60]) for i in range(150)]
    path = tmp_path / "notes.txt"
    path.write_text("\n\n".join(docs) + "\n", encoding="utf-8")
    return path


def prepared(text: Path, out: Path) -> Path:
    tok = load_tokenizer()
    prepare.prepare(str(text), out, tok.to_str(), tok.get_vocab_size(), shard_tokens=700)
    return out


@pytest.mark.parametrize("objective", ["spanbert", "t5-span"])  # documents and rows packing
def test_a_prepared_directory_trains_exactly_as_the_text_in_memory(
    tmp_path: Path, text: Path, objective: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = {"steps": 4, "log_every": 2, "eval_every": 2}
    train(tiny(tmp_path / "memory", objective, data=str(text), **settings), QUIET)
    data = str(prepared(text, tmp_path / "prepared"))
    train(tiny(tmp_path / "mapped", objective, data=data, **settings), QUIET)
    monkeypatch.setattr(batches, "PREPARE_BYTES", 0)  # a large file: prepared into the cache
    train(tiny(tmp_path / "cached", objective, data=str(text), **settings), QUIET)
    assert list((tmp_path / "cache" / "prepared").iterdir())
    expected = content(tmp_path / "memory")
    assert content(tmp_path / "mapped") == expected
    assert content(tmp_path / "cached") == expected


def test_resume_from_a_prepared_directory_is_exact(tmp_path: Path, text: Path) -> None:
    data = str(prepared(text, tmp_path / "prepared"))
    train(tiny(tmp_path / "straight", data=data, steps=6), QUIET)
    with pytest.raises(Interrupted):
        train(tiny(tmp_path / "resumed", data=data, steps=6), StopAt(3))
    train(tiny(tmp_path / "resumed", data=data, steps=6), QUIET, resume=True)
    keep = ("step", "loss", "lr", "tokens")
    rows = [
        [{k: r[k] for k in keep} for r in content(tmp_path / run) if "loss" in r]
        for run in ("straight", "resumed")
    ]
    assert rows[0] == rows[1]


def test_a_directory_of_another_tokenizer_is_refused(tmp_path: Path, text: Path) -> None:
    data = str(prepared(text, tmp_path / "prepared"))
    other = load_tokenizer()
    other.add_tokens(["zzqx"])
    other.save(str(tmp_path / "other.json"))
    args = ("-o", "bert-mlm", "--data", data, "--steps", "1", "--out", str(tmp_path / "r"))
    result = invoke("train", *args, "--tokenizer", str(tmp_path / "other.json"))
    assert result.code == 1
    assert "was prepared with another tokenizer" in result.stderr
    assert not (tmp_path / "r" / "config.json").exists()

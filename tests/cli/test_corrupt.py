"""`objectives corrupt`: golden output, determinism, formats, and every registered objective."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import corruptions
from objectives_cli.data.examples import BATCH
from objectives_cli.data.sources import read_documents
from objectives_cli.data.tokenizer import train_tokenizer
from tests.cli.runner import GOLDEN, INPUT, invoke

NAMES = [o.name for o in corruptions.list_objectives()]
ANSI = re.compile(r"\x1b\[[0-9;]*m")
GOLDEN_ARGS = ["-o", "bert-mlm", "--max-length", "24", "--limit", "0", str(INPUT)]


def jsonl(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


@pytest.mark.parametrize(("fmt", "suffix"), [("text", "txt"), ("jsonl", "jsonl")])
def test_golden(fmt: str, suffix: str, update_golden: bool) -> None:
    result = invoke("corrupt", "--format", fmt, *GOLDEN_ARGS)
    assert result.code == 0, result.stderr
    path = GOLDEN / f"bert-mlm.{suffix}"
    if update_golden:
        path.write_text(result.stdout)
    assert result.stdout == path.read_text(), "output changed; pytest --update-golden if meant"


def test_same_input_and_seed_give_the_same_bytes_and_another_seed_does_not() -> None:
    first = invoke("corrupt", "--format", "jsonl", *GOLDEN_ARGS).stdout
    assert invoke("corrupt", "--format", "jsonl", *GOLDEN_ARGS).stdout == first
    other = invoke("corrupt", "--format", "jsonl", "--seed", "1", *GOLDEN_ARGS).stdout
    assert other != first


@pytest.mark.parametrize("limit", [1, 3, BATCH - 1, BATCH, BATCH + 1])
def test_example_i_does_not_depend_on_limit(limit: int) -> None:
    args = ["corrupt", "-o", "bert-mlm", "--format", "jsonl", "--max-length", "6", str(INPUT)]
    everything = invoke(*args).stdout.splitlines()
    assert len(everything) > BATCH + 1  # the input spans more than one batch
    assert invoke(*args, "--limit", str(limit)).stdout.splitlines() == everything[:limit]


def test_jsonl_rows_have_the_documented_fields() -> None:
    rows = jsonl(invoke("corrupt", "--format", "jsonl", *GOLDEN_ARGS).stdout)
    assert [r["index"] for r in rows] == list(range(len(rows)))
    for row in rows:
        assert row["objective"] == "bert-mlm"
        assert row["seed"] == 0
        assert row["params"]["rate"] == 0.15
        assert len(row["labels"]) == len(row["input_ids"])  # encoder: aligned labels
        assert len(row["ops"]) == len(row["source_ids"]) <= 24
        assert row["input_ids"][-1] != -100
        assert row["source"]
        assert row["input"]
        assert "decoder_input_ids" not in row
        assert row["extras"] == {}


def test_param_and_seed_reach_the_rows() -> None:
    rows = jsonl(
        invoke(
            "corrupt", "--format", "jsonl", "--param", "rate=0.5", "--seed", "3", *GOLDEN_ARGS
        ).stdout
    )
    assert rows[0]["params"]["rate"] == 0.5
    assert rows[0]["seed"] == 3
    scored = sum(t != -100 for r in rows for t in r["labels"])
    assert scored > 0.4 * sum(len(r["source_ids"]) for r in rows)


def test_stdin_and_path_give_the_same_examples() -> None:
    from_path = invoke("corrupt", "--format", "jsonl", *GOLDEN_ARGS).stdout
    args = [a for a in GOLDEN_ARGS if a != str(INPUT)]
    assert (
        invoke("corrupt", "--format", "jsonl", *args, "-", stdin=INPUT.read_text()).stdout
        == from_path
    )
    assert invoke("corrupt", "--format", "jsonl", *args, "--data", str(INPUT)).stdout == from_path


def test_default_format_off_a_terminal_is_jsonl() -> None:
    result = invoke("corrupt", "-o", "bert-mlm", "--limit", "2", str(INPUT))
    assert len(jsonl(result.stdout)) == 2
    assert result.stderr == ""


def test_show_without_a_terminal_or_with_no_color_is_the_plain_text_view() -> None:
    text = invoke("corrupt", "--format", "text", *GOLDEN_ARGS).stdout
    assert invoke("corrupt", "--show", *GOLDEN_ARGS).stdout == text
    forced = {"FORCE_COLOR": "1", "NO_COLOR": "1"}
    assert invoke("corrupt", "--show", *GOLDEN_ARGS, env=forced).stdout == text
    assert "\x1b[" not in text
    assert "[MASK]" in text


def test_show_on_a_terminal_is_coloured_and_fits_80_columns() -> None:
    result = invoke("corrupt", "--show", *GOLDEN_ARGS, env={"FORCE_COLOR": "1", "COLUMNS": "200"})
    assert result.code == 0
    assert "\x1b[" in result.stdout
    assert max(len(ANSI.sub("", line).rstrip()) for line in result.stdout.splitlines()) <= 80


def test_default_limit_for_text_is_5() -> None:
    text = invoke(
        "corrupt", "-o", "bert-mlm", "--format", "text", "--max-length", "8", str(INPUT)
    ).stdout
    assert text.count("── bert-mlm · example ") == 5


@pytest.mark.parametrize("name", NAMES)
def test_every_objective_renders_in_every_format(name: str) -> None:
    args = ["-o", name, "--max-length", "48", str(INPUT)]
    rows = jsonl(invoke("corrupt", "--format", "jsonl", *args).stdout)
    assert rows
    assert [r["index"] for r in rows] == list(range(len(rows)))
    seq2seq = corruptions.get(name).arch == "encoder-decoder"
    for row in rows:
        assert row["objective"] == name
        assert row["ops"] is None or len(row["ops"]) == len(row["source_ids"])
        if "decoder_input_ids" in row:
            assert len(row["decoder_input_ids"]) == len(row["labels"])
        elif not seq2seq:
            assert len(row["labels"]) == len(row["input_ids"])
    text = invoke("corrupt", "--format", "text", *args)
    assert text.code == 0, text.stderr
    assert max(len(line) for line in text.stdout.splitlines()) <= 80
    shown = invoke("corrupt", "--show", *args, env={"FORCE_COLOR": "1", "COLUMNS": "120"})
    assert shown.code == 0, shown.stderr
    assert max(len(ANSI.sub("", line).rstrip()) for line in shown.stdout.splitlines()) <= 80


@pytest.mark.parametrize("kind", ["wordpiece", "bpe", "unigram"])
def test_any_tokenizer_kind_renders(kind: str, tmp_path: Path) -> None:
    documents = read_documents(INPUT)
    path = tmp_path / "tok.json"
    train_tokenizer(documents, kind, 400).save(str(path))
    args = ["-o", "bert-mlm", "--tokenizer", str(path), "--max-length", "32", str(INPUT)]
    text = invoke("corrupt", "--format", "text", "--limit", "0", *args)
    assert text.code == 0, text.stderr
    assert max(len(line) for line in text.stdout.splitlines()) <= 80
    inputs = [line for line in text.stdout.splitlines() if line.startswith("input")]
    assert not any(re.search(r"[Ġ▁]", line) for line in inputs)  # not even a lone marker
    rows = jsonl(invoke("corrupt", "--format", "jsonl", *args).stdout)
    assert re.sub(r"\s", "", "".join(r["source"] for r in rows)) == re.sub(
        r"\s", "", "".join(documents)
    )


# --- without -o: every objective, one example each --------------------------------------------


def test_without_an_objective_the_text_is_shown_under_every_objective() -> None:
    result = invoke("corrupt", "--show", str(INPUT))  # the design card's own command
    assert result.code == 0, result.stderr
    titles = re.findall(r"^── (\S+) · example (\d+) ", result.stdout, re.MULTILINE)
    assert titles == [(name, "0") for name in NAMES]


def test_each_view_of_the_zoo_is_what_that_objective_shows() -> None:
    zoo = invoke("corrupt", "--format", "text", "--max-length", "48", str(INPUT)).stdout
    views = re.split(r"(?m)^(?=── )", zoo)[1:]
    for name, view in zip(NAMES, views, strict=True):
        one = invoke(
            "corrupt",
            "-o",
            name,
            "--format",
            "text",
            "--max-length",
            "48",
            "--limit",
            "1",
            str(INPUT),
        )
        assert view == one.stdout, name


def test_without_an_objective_the_default_format_is_the_view_even_in_a_pipe() -> None:
    result = invoke("corrupt", str(INPUT))
    assert result.code == 0, result.stderr
    assert result.stdout.startswith(f"── {NAMES[0]} · example 0 ")


def test_without_an_objective_limit_counts_examples_per_objective() -> None:
    text = invoke("corrupt", "--format", "text", "--max-length", "16", "--limit", "2", str(INPUT))
    assert text.stdout.count(" · example 1 ") == len(NAMES)
    assert " · example 2 " not in text.stdout


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--format", "jsonl"], ["-o"]),
        (["--param", "rate=0.3"], ["-o"]),
    ],
)
def test_what_needs_one_objective_says_so(args: list[str], words: list[str]) -> None:
    result = invoke("corrupt", *args, str(INPUT))
    assert result.code == 2
    assert result.stdout == ""
    assert result.stderr.startswith("error: ")
    for word in words:
        assert word in result.stderr


# --- text the tokenizer cannot represent ---------------------------------------------------------

CHINESE = "猫坐在垫子上。它在那里很开心。\n\n狗在绿色的田野里跑得很快。\n"


@pytest.mark.parametrize("fmt", ["jsonl", "text"])
def test_text_of_unknown_tokens_warns_once_with_the_share_and_a_fix(fmt: str) -> None:
    result = invoke(
        "corrupt", "-o", "bert-mlm", "--format", fmt, "--max-length", "4", "-", stdin=CHINESE
    )
    assert result.code == 0, result.stderr
    assert result.stdout  # the examples still come
    lines = result.stderr.splitlines()
    assert len(lines) == 2, result.stderr  # once, though the text spans several examples
    assert re.fullmatch(r"warning: 100% of the \d+ tokens are \[UNK\] .*", lines[0]), lines[0]
    assert lines[1].startswith("hint: ")
    assert "objectives tokenizer train" in lines[1]


def test_a_few_unknown_tokens_do_not_warn() -> None:
    text = INPUT.read_text(encoding="utf-8") + "A snowman: ☃.\n"  # one [UNK] in ~130 tokens
    result = invoke("corrupt", "-o", "bert-mlm", "--format", "jsonl", "-", stdin=text)
    assert result.code == 0
    assert result.stderr == ""


def test_the_zoo_warns_once_too() -> None:
    result = invoke("corrupt", "--format", "text", "-", stdin=CHINESE)
    assert result.code == 0, result.stderr
    assert result.stderr.count("warning: ") == 1

"""Help that reads like git's: `objectives` alone and `-h` print it with status 0, flags show no
type, values a short metavar, options sit in panels, and train says what a new run needs."""

from __future__ import annotations

import re

import pytest

from tests.cli.runner import invoke

COMMANDS = [
    [],
    ["list"],
    ["describe"],
    ["corrupt"],
    ["train"],
    ["eval"],
    ["fill"],
    ["tokenizer"],
    ["tokenizer", "train"],
]
WIDE = {"COLUMNS": "100"}


def test_objectives_alone_prints_help_and_succeeds() -> None:
    result = invoke()
    assert result.code == 0
    assert "Usage: objectives" in result.stdout
    assert "corrupt" in result.stdout


def test_a_group_alone_prints_its_help_and_succeeds() -> None:
    result = invoke("tokenizer")
    assert result.code == 0
    assert "train" in result.stdout


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_dash_h_is_help(command: list[str]) -> None:
    short, long = invoke(*command, "-h", env=WIDE), invoke(*command, "--help", env=WIDE)
    assert short.code == long.code == 0
    assert short.stdout == long.stdout
    assert "Usage:" in short.stdout


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_no_option_shows_a_type_in_angle_brackets_or_a_range(command: list[str]) -> None:
    text = invoke(*command, "--help", env=WIDE).stdout
    assert not re.search(r"<(bool|str|int|float|path|file|int range|float range)>", text), text
    assert "[x>=" not in text


def test_options_show_short_metavars() -> None:
    text = invoke("corrupt", "--help", env=WIDE).stdout
    for shown in ("--seed", "N"), ("--max-length", "N"), ("--tokenizer", "FILE"):
        assert re.search(rf"{shown[0]}\s.*{shown[1]}", text), shown
    assert re.search(r"--format\s+-f\s+show\|text\|jsonl", text)


def test_corrupt_options_are_grouped() -> None:
    text = invoke("corrupt", "--help", env=WIDE).stdout
    panels = re.findall(r"╭─ (.+?) ─", text)
    assert len(panels) >= 3
    assert "Options" not in panels  # every option, --help included, is in a named panel


def test_train_help_says_a_new_run_needs_an_objective() -> None:
    text = " ".join(invoke("train", "--help", env=WIDE).stdout.split())
    assert "Required for a new run" in text


def test_command_summaries_are_short() -> None:
    text = invoke("--help", env=WIDE).stdout
    rows = re.findall(r"│ (list|describe|corrupt|train|eval|fill|tokenizer) +(.*?)\s*│", text)
    assert {name for name, _ in rows} == {
        "list",
        "describe",
        "corrupt",
        "train",
        "eval",
        "fill",
        "tokenizer",
    }
    assert all(len(summary) <= 60 for _, summary in rows), rows


@pytest.mark.parametrize(
    "args",
    [
        ["corrupt", "-o", "bert-mlm", "--max-length", "0"],
        ["corrupt", "-o", "bert-mlm", "--limit", "-1"],
        ["tokenizer", "train", "default", "--out", "t.json", "--vocab-size", "10"],
        ["train", "-o", "bert-mlm", "--steps", "0"],
    ],
)
def test_bounds_are_still_checked(args: list[str]) -> None:
    result = invoke(*args)
    assert result.code == 2
    assert result.stderr.startswith("error: ")
    assert "at least" in result.stderr

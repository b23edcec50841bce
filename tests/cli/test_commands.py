"""`list`, `describe`, `--version`, and the exit status and stderr of every kind of error."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import corruptions
from tests.cli.runner import INPUT, Result, invoke

NAMES = [o.name for o in corruptions.list_objectives()]


def test_version() -> None:
    result = invoke("--version")
    assert result.code == 0
    assert result.stdout.startswith("objectives ")
    assert result.stdout.count(".") >= 2


def test_list_json_holds_every_objective_with_its_parameters() -> None:
    result = invoke("list", "--format", "json")
    assert result.code == 0
    assert result.stderr == ""
    records = json.loads(result.stdout)
    assert [r["name"] for r in records] == NAMES
    for record in records:
        objective = corruptions.get(record["name"])
        assert record["arch"] == objective.arch
        assert record["paper"] == objective.paper
        assert list(record["params"]) == [p.name for p in objective.params]


def test_list_plain_has_one_line_per_objective() -> None:
    lines = invoke("list").stdout.splitlines()
    assert lines[0].split()[:2] == ["name", "architecture"]
    assert [line.split()[0] for line in lines[1:]] == NAMES


def test_list_pattern_filters() -> None:
    records = json.loads(invoke("list", "bert-*", "--format", "json").stdout)
    assert {r["name"] for r in records} == {
        o.name
        for o in corruptions.list_objectives()
        if any(k.startswith("bert-") for k in (o.name, *o.aliases))
    }
    assert {r["name"] for r in records} >= {"bert-mlm", "nsp"}  # nsp: alias bert-nsp


@pytest.mark.parametrize("name", NAMES)
def test_describe_shows_parameters_paper_and_an_example(name: str) -> None:
    result = invoke("describe", name)
    objective = corruptions.get(name)
    assert result.code == 0, result.stderr
    assert " ".join(objective.paper.split()) in " ".join(result.stdout.split())
    for p in objective.params:
        assert f"  {p.name} = " in result.stdout
    assert f"── {name} · example 0 " in result.stdout
    assert max(len(line) for line in result.stdout.splitlines()) <= 80


def test_describe_accepts_an_alias() -> None:
    alias = next((a for o in corruptions.list_objectives() for a in o.aliases), None)
    if alias is None:
        pytest.skip("no objective has an alias")
    assert invoke("describe", alias).code == 0


def one_error(result: Result, code: int, *words: str) -> None:
    """Exit status `code`, nothing on stdout, `error:` (and maybe `hint:`) on stderr."""
    assert result.code == code, result.stderr
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert 1 <= len(lines) <= 2, result.stderr
    assert lines[0].startswith("error: "), result.stderr
    assert all(line.startswith("hint: ") for line in lines[1:])
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in result.stderr


def test_unknown_objective_lists_the_known_ones_and_suggests_the_closest() -> None:
    result = invoke("corrupt", "-o", NAMES[0][:-1] + "x", str(INPUT))
    one_error(result, 2, "unknown objective", "did you mean", *NAMES)


def test_bad_param_value_is_a_usage_error() -> None:
    one_error(invoke("corrupt", "-o", "bert-mlm", "--param", "rate=2", str(INPUT)), 2, "rate")


def test_unknown_param_lists_the_parameters() -> None:
    one_error(
        invoke("corrupt", "-o", "bert-mlm", "--param", "nope=1", str(INPUT)), 2, "nope", "rate"
    )


def test_param_without_equals_sign() -> None:
    one_error(invoke("corrupt", "-o", "bert-mlm", "--param", "rate", str(INPUT)), 2, "KEY=VALUE")


@pytest.mark.parametrize(
    "args",
    [
        ["corrupt", "--format", "jsonl"],  # JSONL needs one objective (-o)
        ["corrupt", "-o", "bert-mlm", "--seed", "x"],
        ["corrupt", "-o", "bert-mlm", "--fromat", "text"],
        ["corrupt", "-o", "bert-mlm", "--format", "xml"],
        ["corrupt", "-o", "bert-mlm", "--max-length", "0"],
        ["corrupt", "-o", "bert-mlm", "--show", "--format", "jsonl"],
        ["corrupt", "-o", "bert-mlm", "a.txt", "--data", "b.txt"],
        ["lst"],
        ["--bogus"],
        ["describe"],
        ["describe", "no-such-objective"],
        ["list", "--format", "yaml"],
        ["list", "zzz"],
    ],
)
def test_usage_errors_are_one_error_line_and_exit_2(args: list[str]) -> None:
    one_error(invoke(*args), 2)


def test_missing_file_is_a_data_error() -> None:
    one_error(invoke("corrupt", "-o", "bert-mlm", "/no/such/file.txt"), 1, "/no/such/file.txt")


def test_bad_utf8_is_a_data_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.txt"
    path.write_bytes(b"fine text\n\xff\xfe broken")
    one_error(invoke("corrupt", "-o", "bert-mlm", str(path)), 1)


def test_empty_stdin_is_a_data_error() -> None:
    one_error(invoke("corrupt", "-o", "bert-mlm", "-", stdin=""), 1)


def test_help_exits_0() -> None:
    result = invoke("corrupt", "--help")
    assert result.code == 0
    assert "--objective" in result.stdout


def test_piped_text_is_read_when_no_path_is_given() -> None:
    text = "Cats sit on mats.\n"
    piped = invoke("corrupt", "-o", "bert-mlm", "--format", "jsonl", stdin=text)
    named = invoke("corrupt", "-o", "bert-mlm", "--format", "jsonl", "-", stdin=text)
    assert piped.code == 0
    assert piped.stdout == named.stdout
    assert len(piped.stdout.splitlines()) == 1


def test_no_path_and_nothing_piped_uses_the_default_corpus() -> None:
    result = invoke("corrupt", "-o", "bert-mlm", "--format", "jsonl", "--limit", "2", stdin="")
    assert result.code == 0
    assert len(result.stdout.splitlines()) == 2


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
@pytest.mark.parametrize("args", [["list"], ["corrupt", "-o", "bert-mlm", "--limit", "2"]])
def test_a_full_disk_on_stdout_is_one_error_line(args: list[str]) -> None:
    with open("/dev/full", "w") as full:
        done = subprocess.run(
            [sys.executable, "-m", "objectives_cli", *args],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
    assert done.returncode == 1
    assert done.stderr == "error: cannot write the output: No space left on device\n"


@pytest.mark.parametrize("device", ["tpu", "CPU", "cuda:abc", "meta"])
def test_unknown_device_is_a_usage_error(device: str, tmp_path: Path) -> None:
    one_error(
        invoke(
            "train",
            "-o",
            "bert-mlm",
            "--model",
            "tiny",
            "--steps",
            "1",
            "--device",
            device,
            "--out",
            str(tmp_path / "r"),
        ),
        2,
        "unknown device",
    )


def test_list_matches_aliases() -> None:
    result = invoke("list", "bert", "--format", "json")
    assert result.code == 0
    assert [o["name"] for o in json.loads(result.stdout)] == ["bert-mlm"]


def test_input_without_tokens_is_a_data_error(tmp_path: Path) -> None:
    path = tmp_path / "blank.txt"
    path.write_text("\t\u00a0\u200b\n", encoding="utf-8")  # tab, no-break and zero-width space
    one_error(invoke("corrupt", "-o", "bert-mlm", str(path)), 1, "holds no tokens")

"""`eval` and the trainer's held-out evaluation: the same rows by default, named in both; text
with nothing to score is an error, never a perfect score; a damaged checkpoint is one warning."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from objectives_cli.train import checkpoints
from tests.cli.runner import invoke

ARGS = ("--steps", "2", "--seq-len", "32", "--batch-size", "4", "--device", "cpu")


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("eval") / "run"
    result = invoke(
        "train", "-o", "bert-mlm", *ARGS, "--eval-batches", "3", "--save-every", "1",
        "--out", str(out),
    )  # fmt: skip
    assert result.code == 0, result.stderr
    return out, result.stderr


def test_train_names_the_rows_it_evaluates(run: tuple[Path, str]) -> None:
    out, stderr = run
    assert "evaluating step 0 on 12 held-out rows" in stderr  # 3 batches of 4 rows
    evals = [r for r in checkpoints.read_metrics(out) if "eval_loss" in r]
    assert [r["eval_rows"] for r in evals] == [12, 12]
    assert "eval_rows 12" in stderr  # in the summary


def test_eval_defaults_to_the_rows_and_figures_of_the_final_evaluation(
    run: tuple[Path, str],
) -> None:
    out, _ = run
    final = [r for r in checkpoints.read_metrics(out) if "eval_loss" in r][-1]
    result = invoke("eval", str(out), "--format", "json")
    assert result.code == 0, result.stderr
    row = json.loads(result.stdout)
    assert row["rows"] == final["eval_rows"] == 12
    assert row["loss"] == pytest.approx(final["eval_loss"], rel=1e-6)
    assert row["mlm_acc"] == pytest.approx(final["eval_mlm_acc"], rel=1e-6)
    table = invoke("eval", str(out), "--format", "table")
    assert "(12 rows)" in " ".join(table.stdout.split())  # the title, however it wraps


def test_text_with_nothing_to_score_is_an_error_not_a_perfect_score(
    run: tuple[Path, str], tmp_path: Path
) -> None:
    text = tmp_path / "runes.txt"
    text.write_text("\n\n".join(["ᚠᚢᚦ ᚨᚱᚲ ᚷᚹᚺ ᚾᛁᛃ ᛇᛈᛉ ᛊᛏᛒ"] * 20) + "\n")  # all [UNK]
    result = invoke("eval", str(run[0]), "--data", str(text), "--format", "json")
    assert result.code == 1
    assert result.stdout == ""
    error, hint = result.stderr.splitlines()
    assert error.startswith("error: nothing to score: the 4 rows evaluated hold no token that")
    assert "objectives tokenizer train" in hint


def test_a_damaged_checkpoint_is_one_warning_line(run: tuple[Path, str], tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(run[0], copy)
    newest = checkpoints.list_checkpoints(copy)[-1][1] / "model.safetensors"
    size = newest.stat().st_size
    newest.write_bytes(newest.read_bytes()[:100])
    for command in (
        ("eval", str(copy), "-f", "json"),
        ("fill", str(copy), "a [MASK] b", "-f", "json"),
    ):
        result = invoke(*command)
        assert result.code == 0, result.stderr
        assert result.stderr.splitlines() == [
            "warning: checkpoint step-00000002 is damaged (model.safetensors is 100 bytes, "
            f"{size} were written); trying the previous one"
        ]

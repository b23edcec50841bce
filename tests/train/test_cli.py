"""`objectives train`, `eval` and `fill` through the real entry point: exit codes, stdout for
data, stderr for talk."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from objectives_cli.train import checkpoints
from objectives_cli.train import loop as train_loop
from objectives_cli.train.runtime import QuietExit
from tests.cli.runner import Result, invoke

TINY_RUN = (
    "--steps",
    "3",
    "--seq-len",
    "32",
    "--batch-size",
    "4",
    "--eval-batches",
    "1",
    "--device",
    "cpu",
    "--log-every",
    "1",
)


def trained(root: Path, objective: str) -> Path:
    out = root / objective
    result = invoke("train", "-o", objective, *TINY_RUN, "--out", str(out))
    assert result.code == 0, result.stderr
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cli")
    return {name: trained(root, name) for name in ("bert-mlm", "t5-span", "clm")}


def test_train_talks_on_stderr_only(runs: dict[str, Path], tmp_path: Path) -> None:
    result = invoke("train", "-o", "bert-mlm", *TINY_RUN, "--out", str(tmp_path / "r"))
    assert result.code == 0
    assert result.stdout == ""
    assert "parameters" in result.stderr
    assert "step 3" in result.stderr
    assert "eval_mlm_acc" in result.stderr  # the summary
    config = json.loads((tmp_path / "r" / "config.json").read_text())
    assert config["train"]["steps"] == 3
    assert config["model"]["arch"] == "encoder"
    assert config["objective"]["packing"] == "documents"


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        (("train",), 2, "which objective"),
        (("train", "-o", "bert-mlmm", "--steps", "1"), 2, "did you mean 'bert-mlm'"),
        (("train", "-o", "bert-mlm", "--budget", "soon"), 2, "time budget"),
        (("train", "-o", "bert-mlm", "--budget", "0m"), 2, "time budget '0m' is zero"),
        (("train", "--resume", "runs/a", "--out", "runs/b"), 2, "cannot be combined with --resume"),
        (("train", "-o", "bert-mlm", "--lr", "-1"), 2, "--lr must be above 0, not -1.0"),
        (("train", "-o", "bert-mlm", "--min-lr", "5"), 2, "--min-lr is a share of --lr"),
        (("train", "-o", "bert-mlm", "--model", "huge"), 2, "unknown model"),
        (("train", "--resume", "no/such/run"), 1, "not a run directory"),
        (("eval", "no/such/run"), 1, "not a run directory"),
    ],
)
def test_bad_usage_exits_with_one_line(args: tuple[str, ...], code: int, says: str) -> None:
    result = invoke(*args)
    assert result.code == code
    assert says in result.stderr
    assert "Traceback" not in result.stderr


def test_resume_refuses_to_change_the_run(runs: dict[str, Path]) -> None:
    result = invoke("train", "--resume", str(runs["bert-mlm"]), "--weight-decay", "0.5")
    assert result.code == 2
    assert "--weight-decay cannot change when resuming" in result.stderr


def test_resume_can_train_longer(runs: dict[str, Path], tmp_path: Path) -> None:
    import shutil

    run = tmp_path / "longer"
    shutil.copytree(runs["clm"], run)
    result = invoke("train", "--resume", str(run), "--steps", "5")
    assert result.code == 0, result.stderr
    assert "resuming" in result.stderr
    assert checkpoints.list_checkpoints(run)[-1][0] == 5


def test_eval_json(runs: dict[str, Path]) -> None:
    result = invoke("eval", str(runs["bert-mlm"]), "--format", "json", "--batches", "2")
    assert result.code == 0, result.stderr
    row = json.loads(result.stdout)
    assert row["step"] == 3
    assert row["rows"] == 8
    assert {"loss", "mlm_loss", "mlm_acc"} <= set(row)
    assert 0 <= row["mlm_acc"] <= 1


def test_eval_on_other_text_as_a_table(runs: dict[str, Path], tmp_path: Path) -> None:
    text = tmp_path / "held_out.txt"
    text.write_text("The cat sat on the mat. It was warm.\n\nA second document, short.\n")
    result = invoke("eval", str(runs["t5-span"]), "--data", str(text), "--format", "table")
    assert result.code == 0, result.stderr
    assert "lm" in result.stdout
    assert "held_out.txt" in result.stdout


def test_fill_masks(runs: dict[str, Path]) -> None:
    result = invoke(
        "fill",
        str(runs["bert-mlm"]),
        "The capital of France is [MASK] .",
        "--top-k",
        "3",
        "-f",
        "json",
    )
    assert result.code == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["kind"] == "masks"
    assert len(out["masks"]) == 1
    assert len(out["masks"][0]["top"]) == 3
    probabilities = [c["probability"] for c in out["masks"][0]["top"]]
    assert probabilities == sorted(probabilities, reverse=True)
    assert "[MASK]" not in out["output"]


def test_fill_without_a_mask_is_a_usage_error(runs: dict[str, Path]) -> None:
    result = invoke("fill", str(runs["bert-mlm"]), "nothing to fill")
    assert result.code == 2
    assert "no [MASK]" in result.stderr


@pytest.mark.parametrize(("name", "kind"), [("t5-span", "seq2seq"), ("clm", "continuation")])
def test_fill_generates(runs: dict[str, Path], name: str, kind: str) -> None:
    result = invoke(
        "fill", str(runs[name]), "The cat <extra_id_0> the mat .", "--max-new", "5", "-f", "json"
    )
    assert result.code == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["kind"] == kind
    assert isinstance(out["generated"], str)
    assert out["output"]


def test_a_time_budget_stops_the_run(tmp_path: Path) -> None:
    out = tmp_path / "budget"
    result = invoke(
        "train",
        "-o",
        "clm",
        "--budget",
        "2s",
        "--seq-len",
        "32",
        "--batch-size",
        "4",
        "--eval-batches",
        "1",
        "--device",
        "cpu",
        "--out",
        str(out),
    )
    assert result.code == 0, result.stderr
    state = checkpoints.list_checkpoints(out)
    assert len(state) == 1
    rows = [r for r in checkpoints.read_metrics(out) if "loss" in r]
    assert rows
    assert 2.0 <= rows[-1]["elapsed"] < 30


def test_packing_can_be_chosen(tmp_path: Path) -> None:
    out = tmp_path / "concat"
    result = invoke("train", "-o", "t5-span", *TINY_RUN, "--packing", "concat", "--out", str(out))
    assert result.code == 0, result.stderr
    assert json.loads((out / "config.json").read_text())["objective"]["packing"] == "concat"
    refused = invoke(
        "train", "-o", "nsp", *TINY_RUN, "--packing", "documents", "--out", str(tmp_path / "nsp")
    )
    assert refused.code == 2
    assert "cannot share a row" in refused.stderr
    one_per_row = invoke(
        "train",
        "-o",
        "prefix-lm",
        *TINY_RUN,
        "--packing",
        "documents",
        "--out",
        str(tmp_path / "plm"),
    )
    assert one_per_row.code == 2
    assert "treats each row as one document" in one_per_row.stderr


@pytest.mark.parametrize("name", ["clm", "prefix-lm"])
def test_concat_packing_is_refused_where_a_row_is_one_document(tmp_path: Path, name: str) -> None:
    """Concatenated, documents would run into each other with no end of text between them."""
    result = invoke(
        "train", "-o", name, *TINY_RUN, "--packing", "concat", "--out", str(tmp_path / "r")
    )
    assert result.code == 2
    assert result.stderr.splitlines()[-2:] == [
        f"error: objective '{name}' treats each row as one document (one end of text, one "
        "prefix split), so documents cannot share a row (--packing concat)",
        "hint: use --packing rows (what auto picks for it)",
    ]


def test_cuda_out_of_memory_is_one_error_line_and_a_hint(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """What the user sees when a step does not fit on the GPU (the error torch raises there)."""

    def out_of_memory(*args: object, **kwargs: object) -> None:
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(train_loop, "train", out_of_memory)
    result = invoke(
        "train",
        "-o",
        "bert-mlm",
        "--batch-size",
        "64",
        "--seq-len",
        "512",
        "--out",
        str(tmp_path / "r"),
    )
    assert result.code == 1
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    errors = [line for line in lines if line.startswith("error:")]
    hints = [line for line in lines if line.startswith("hint:")]
    assert errors == ["error: CUDA ran out of memory (64 rows x 512 tokens, model tiny)"]
    assert len(hints) == 1
    assert "--batch-size" in hints[0]
    assert "--grad-accum" in hints[0]


@pytest.mark.parametrize(
    ("command", "patched", "args"),
    [("eval", "evaluate_run", ()), ("fill", "fill_masks", ("a [MASK] b",))],
)
def test_eval_and_fill_out_of_memory_is_one_error_line_and_a_hint(
    runs: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
    command: str,
    patched: str,
    args: tuple[str, ...],
) -> None:
    from objectives_cli.train import inference

    def out_of_memory(*a: object, **kw: object) -> None:
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(inference, patched, out_of_memory)
    result = invoke(command, str(runs["bert-mlm"]), *args)
    assert result.code == 1
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith(("error:", "hint:"))]
    assert lines[0].startswith("error: CUDA ran out of memory")
    assert lines[1:] == ["hint: free GPU memory (other processes?) or use --device cpu"]


def test_under_torchrun_only_rank_0_prints_a_usage_error() -> None:
    """Every rank parses the same argv; one error line is enough, each rank keeps status 2."""
    args = ("train", "-o", "bert-mlm", "--bogus")
    assert invoke(*args, env={"RANK": "1"}) == Result(2, "", "")
    first = invoke(*args, env={"RANK": "0"})
    assert first.code == 2
    assert first.stderr.startswith("error: no such option: --bogus")


def test_quiet_exit_prints_nothing_and_keeps_the_status(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def fail(*args: object, **kwargs: object) -> None:
        raise QuietExit(130)

    monkeypatch.setattr(train_loop, "train", fail)
    assert invoke(
        "train", "-o", "bert-mlm", "--model", "tiny", "--out", str(tmp_path / "r")
    ) == Result(130, "", "")


def test_out_with_other_files_or_a_file_is_refused_and_left_alone(tmp_path: Path) -> None:
    mine = tmp_path / "mywork"
    mine.mkdir()
    (mine / "config.json").write_text('{"mine": 1}')
    result = invoke("train", "-o", "bert-mlm", *TINY_RUN, "--out", str(mine))
    assert result.code == 2
    assert "holds files that are not a run" in result.stderr
    assert [p.name for p in mine.iterdir()] == ["config.json"]
    assert (mine / "config.json").read_text() == '{"mine": 1}'
    a_file = tmp_path / "notes.txt"
    a_file.write_text("keep me")
    result = invoke("train", "-o", "bert-mlm", *TINY_RUN, "--out", str(a_file))
    assert result.code == 2
    assert "is a file" in result.stderr
    assert a_file.read_text() == "keep me"


@pytest.mark.parametrize("name", ["bert-mlm", "t5-span", "clm"])
def test_fill_refuses_a_text_longer_than_the_model_reads(runs: dict[str, Path], name: str) -> None:
    """Cut silently, the text would lose its [MASK] (and the error would say it has none)."""
    result = invoke("fill", str(runs[name]), "word " * 300 + "[MASK] .")
    assert result.code == 2
    assert "tokens long, and this model reads at most" in result.stderr
    assert "Traceback" not in result.stderr

"""`objectives compare`, `finetune` and `probe` through the real entry point: results, files,
resume, and bad input as one line with the right exit status."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from objectives_cli.train import compare as comparing
from objectives_cli.train import finetune as tuning
from objectives_cli.train import loop
from objectives_cli.train import probe as probing
from tests.cli.runner import Result, invoke

TINY_RUN = ("--steps", "3", "--seq-len", "32", "--batch-size", "4", "--eval-batches", "1")
TINY_TUNE = ("--epochs", "1", "--device", "cpu")
COMPARE = ("--tokens", "1k", "--seq-len", "32", "--seeds", "2", "--epochs", "1", "--device", "cpu")


def task_file(path: Path, n: int = 120, **extra: Any) -> Path:
    rows = [{"text": f"the {'cat' if i % 2 else 'dog'} sat {i}", "label": i % 2} for i in range(n)]
    path.write_text("".join(json.dumps({**r, **extra}) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("downstream") / "run"
    result = invoke("train", "-o", "bert-mlm", *TINY_RUN, "--device", "cpu", "--out", str(out))
    assert result.code == 0, result.stderr
    return out


def one_line(result: Result, code: int, says: str) -> None:
    assert result.code == code, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert says in errors[0]


def test_finetune_and_probe_print_and_store(run: Path, tmp_path: Path) -> None:
    task = str(task_file(tmp_path / "pets.jsonl"))
    tuned = invoke("finetune", str(run), "--task", task, *TINY_TUNE)
    assert tuned.code == 0, tuned.stderr
    result = json.loads(tuned.stdout)  # JSON: stdout is not a terminal here
    assert result["method"] == "finetune"
    assert set(result["test"]) == {"accuracy", "macro_f1"}
    assert result["baselines"]["majority"] == pytest.approx(result["baselines"]["majority"])
    assert "bow" in result["baselines"]
    assert "task pets: 2 classes" in tuned.stderr
    stored = json.loads((run / "downstream" / "pets-finetune.json").read_text())
    assert stored["test"] == result["test"]
    assert stored["settings"]["epochs"] == 1
    control = invoke("probe", str(run), "--task", task, "--baseline", "random", "--device", "cpu")
    assert control.code == 0, control.stderr
    assert json.loads(control.stdout)["init"] == "random"
    probed = invoke("probe", str(run), "--task", task, "--device", "cpu")
    assert probed.code == 0, probed.stderr
    result = json.loads(probed.stdout)
    assert result["baselines"]["random_init"] == json.loads(control.stdout)["test"]["accuracy"]
    assert (run / "downstream" / "pets-probe.json").exists()
    assert (run / "downstream" / "pets-probe-random.json").exists()


def test_long_texts_are_cut_and_said_once(run: Path, tmp_path: Path) -> None:
    rows = [
        {"text": ("long " * 300 if i < 5 else "") + f"short {i}", "label": i % 2} for i in range(60)
    ]
    path = tmp_path / "long.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = invoke("probe", str(run), "--task", str(path), "--device", "cpu")
    assert result.code == 0, result.stderr
    assert result.stderr.count("were cut") == 1
    assert "5 example(s) were longer than the model's 64 positions" in result.stderr


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        (("--task", "topik"), 2, "unknown task 'topik'"),
        (("--task", "nope.csv"), 1, "no such task file"),
        (("--task", "{nolabel}"), 1, "no 'label' column"),
        (("--task", "{oneclass}"), 1, "one class only"),
        (("--task", "{notest}"), 1, "has no test example"),
        ((), 2, "missing option '--task'"),
        (("--task", "fits", "--pool", "max"), 2, "unknown pooling 'max'"),
    ],
)
def test_bad_finetune_input(
    run: Path, tmp_path: Path, args: tuple[str, ...], code: int, says: str
) -> None:
    files = {
        "{nolabel}": tmp_path / "nolabel.csv",
        "{oneclass}": tmp_path / "oneclass.csv",
        "{notest}": tmp_path / "notest.csv",
    }
    files["{nolabel}"].write_text("text,score\na,1\n")
    files["{oneclass}"].write_text("text,label\n" + "".join(f"t {i},x\n" for i in range(20)))
    files["{notest}"].write_text(
        "text,label,split\n"
        + "".join(f"t {i},{i % 2},{'test' if i == 1 else 'train'}\n" for i in range(20))
    )
    args = tuple(str(files.get(a, a)) for a in args)
    one_line(invoke("finetune", str(run), *args, *TINY_TUNE), code, says)


def test_a_directory_that_is_not_a_run(tmp_path: Path) -> None:
    one_line(invoke("probe", str(tmp_path), "--task", "fits"), 1, "is not a run directory")


@pytest.mark.parametrize(
    ("entries", "code", "says"),
    [
        (("bert-mlm",), 2, "needs at least two"),
        (("bert-mlm", "bert-mlmm"), 2, "unknown objective 'bert-mlmm'"),
        (("bert-mlm", "runs/missing"), 1, "is not a run directory"),
        (("bert-mlm", "bert"), 2, "'bert-mlm' is named twice"),  # an alias of the same one
    ],
)
def test_bad_compare_input(tmp_path: Path, entries: tuple[str, ...], code: int, says: str) -> None:
    result = invoke("compare", *entries, *COMPARE, "--out", str(tmp_path / "c"))
    one_line(result, code, says)
    assert not (tmp_path / "c" / "runs").exists()  # refused before any work


def test_compare_writes_its_outputs_and_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    task = str(task_file(tmp_path / "pets.jsonl"))
    out = tmp_path / "cmp"
    args = ("compare", "bert-mlm", "clm", "--task", task, *COMPARE, "--out", str(out))
    first = invoke(*args)
    assert first.code == 0, first.stderr
    result = json.loads(first.stdout)
    assert [r["label"] for r in result["rows"]] == [
        "bert-mlm",
        "clm",
        "random init (encoder)",
        "random init (decoder)",
    ]
    assert result["columns"] == ["pets/finetune", "pets/probe"]
    assert result["rows"][0]["scores"]["pets/finetune"]["n"] == 2
    assert result["rows"][0]["scores"]["pets/probe"]["n"] == 1
    assert result["best"]["pets/finetune"] in ("bert-mlm", "clm")
    assert all(result["curves"][name] for name in ("bert-mlm", "clm"))
    for name in ("compare.json", "compare.md", "loss.png", "scores.png", "settings.json"):
        assert (out / name).exists(), name
    assert (out / "loss.png").read_bytes()[:4] == b"\x89PNG"
    assert "| bert-mlm |" in (out / "compare.md").read_text()

    calls: list[str] = []

    def counted(name: str, real: Any) -> Any:
        def wrapper(*a: Any, **k: Any) -> Any:
            calls.append(name)
            return real(*a, **k)

        return wrapper

    monkeypatch.setattr(comparing, "train", counted("train", loop.train))
    monkeypatch.setattr(comparing, "finetune", counted("finetune", tuning.finetune))
    monkeypatch.setattr(comparing, "probe", counted("probe", probing.probe))
    again = invoke(*args)
    assert again.code == 0, again.stderr
    assert json.loads(again.stdout)["rows"] == result["rows"]
    assert calls == ["train", "train"]  # each finished run says "nothing to do"; no cell redone
    calls.clear()
    more = invoke(*args[:-4], "--seeds", "3", "--epochs", "1", "--device", "cpu", "--out", str(out))
    assert more.code == 0, more.stderr
    assert calls == ["train", "train"] + ["finetune"] * 4  # seed 2 of 4 rows, nothing else
    assert json.loads(more.stdout)["rows"][0]["scores"]["pets/finetune"]["n"] == 3


def test_compare_refuses_other_settings_in_its_directory(tmp_path: Path) -> None:
    out = tmp_path / "c"
    out.mkdir()
    (out / "settings.json").write_text(json.dumps({"tokens": 5, "model": "tiny"}))
    result = invoke("compare", "bert-mlm", "clm", *COMPARE, "--out", str(out))
    one_line(result, 2, "made with --tokens 5")


def test_an_interrupted_compare_keeps_what_it_finished(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    task = str(task_file(tmp_path / "pets.jsonl"))
    out = tmp_path / "cmp"
    args = ("compare", "bert-mlm", "clm", "--task", task, *COMPARE, "--out", str(out))
    done: list[int] = []

    def interrupted(*a: Any, **k: Any) -> Any:
        if len(done) == 3:
            raise KeyboardInterrupt
        done.append(1)
        return tuning.finetune(*a, **k)

    monkeypatch.setattr(comparing, "finetune", interrupted)
    one_line(invoke(*args), 130, "interrupted")
    cells = sorted(p.name for p in out.glob("runs/*/downstream/*-finetune*-seed*.json"))
    assert len(cells) == 3
    monkeypatch.setattr(comparing, "finetune", tuning.finetune)
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("runs/*/downstream/*-seed*.json")}
    finished = invoke(*args)
    assert finished.code == 0, finished.stderr
    assert all(p.stat().st_mtime_ns == t for p, t in stamps.items())  # kept, not redone


def test_a_result_that_cannot_be_stored_is_printed_first(
    run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    from objectives_cli.data import files

    def full(path: Path, data: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    task = str(task_file(tmp_path / "pets.jsonl"))
    monkeypatch.setattr(files, "write_atomic", full)
    result = invoke("probe", str(run), "--task", task, "--device", "cpu")
    one_line(result, 1, "cannot write")
    assert "No space left on device" in result.stderr
    assert json.loads(result.stdout)["method"] == "probe"  # the result was printed before


def test_the_readme_commands_parse_as_shown() -> None:
    """The README's downstream block: every line is a command whose options parse (running it
    takes minutes to hours: docs/compare.md records the comparison's run)."""
    import typer

    from objectives_cli.cli.app import app
    from tests.train.test_readme import commands

    group = typer.main.get_command(app)
    lines = commands("## Which objective makes the better model?")
    assert [line[1] for line in lines] == [
        "train",
        "finetune",
        "probe",
        "finetune",
        "compare",
        "compare",
    ]
    for line in lines:
        assert line[0] == "objectives"
        command = group.get_command(typer.Context(group), line[1])  # type: ignore[attr-defined]
        command.make_context(line[1], line[2:])  # raises on an unknown or missing option

"""The run directory protects itself: a checksum manifest catches silent corruption, files that
parse but hold the wrong contents are refused with one line (or skipped for the previous
checkpoint), one process at a time trains a run, and what a crash leaves half-written is removed.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from objectives_cli.train import checkpoints
from objectives_cli.train.inference import load_run
from objectives_cli.train.lock import RunLock
from objectives_cli.train.loop import train
from tests.cli.runner import invoke
from tests.train.conftest import QUIET, tiny
from tests.train.test_resume import rewrite


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("rundir") / "run"
    train(tiny(out, steps=4, save_every=2), QUIET)
    return out


def copy_of(run: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    return copy


def flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x10
    path.write_bytes(bytes(data))


def adam_moment_offset(state_pt: Path) -> int:
    """A byte inside the largest tensor of state.pt (an Adam moment of the embedding table)."""
    with zipfile.ZipFile(state_pt) as z:
        info = max(z.infolist(), key=lambda i: i.file_size)
    with open(state_pt, "rb") as f:
        f.seek(info.header_offset + 26)
        name_len, extra_len = (int.from_bytes(f.read(2), "little") for _ in range(2))
    return info.header_offset + 30 + name_len + extra_len + info.file_size // 2


class Said(list[str]):
    def __call__(self, text: str) -> None:
        self.append(text)


# --- item 2: silent corruption --------------------------------------------------------------


def test_a_bit_flip_in_the_weights_falls_back_to_the_previous_checkpoint(
    run: Path, tmp_path: Path
) -> None:
    copy = copy_of(run, tmp_path)
    weights = checkpoints.list_checkpoints(copy)[-1][1] / "model.safetensors"
    flip(weights, weights.stat().st_size - 100)  # tensor data: safetensors itself cannot tell
    said = Said()
    loaded = load_run(copy, "cpu", warn=said)
    assert loaded.step == 2
    assert said == [
        "warning: checkpoint step-00000004 is damaged (model.safetensors does not match its "
        "SHA-256 in manifest.json); trying the previous one"
    ]


def test_a_bit_flip_in_the_adam_moments_falls_back_to_the_previous_checkpoint(
    run: Path, tmp_path: Path
) -> None:
    copy = copy_of(run, tmp_path)
    newest = checkpoints.list_checkpoints(copy)[-1][1]
    flip(newest / "state.pt", adam_moment_offset(newest / "state.pt"))
    torch.load(newest / "state.pt", weights_only=True)  # torch reads it without a word
    said = Said()

    class Listen(type(QUIET)):  # type: ignore[misc]
        def message(self, text: str) -> None:
            said.append(text)

    train(tiny(copy, steps=4, save_every=2), Listen(quiet=True), resume=True)
    assert any("step-00000004 is damaged (state.pt does not match its SHA-256" in s for s in said)
    assert any("resuming" in s and "at step 2" in s for s in said)
    assert [s for s, _ in checkpoints.list_checkpoints(copy)] == [2, 4]


def test_the_manifest_is_written_last_and_lists_every_file(run: Path) -> None:
    newest = checkpoints.list_checkpoints(run)[-1][1]
    manifest = json.loads((newest / "manifest.json").read_text())["files"]
    assert sorted(manifest) == ["model.safetensors", "state.pt"]
    for name, entry in manifest.items():
        assert entry["bytes"] == (newest / name).stat().st_size
    times = {p.name: p.stat().st_mtime_ns for p in newest.iterdir()}
    assert times["manifest.json"] == max(times.values())


# --- item 3: files that parse but hold the wrong contents -----------------------------------


@pytest.mark.parametrize(
    "state",
    [
        pytest.param(lambda s: {k: v for k, v in s.items() if k != "optimizer"}, id="no-optimizer"),
        pytest.param(lambda s: {**s, "step": 2}, id="another-step"),
        pytest.param(lambda s: [1, 2], id="not-a-dict"),
        pytest.param(
            lambda s: {**s, "optimizer": {**s["optimizer"], "param_groups": []}},
            id="another-optimizer",
        ),
    ],
)
def test_a_state_with_the_wrong_contents_falls_back(run: Path, tmp_path: Path, state) -> None:  # type: ignore[no-untyped-def]
    copy = copy_of(run, tmp_path)
    newest = checkpoints.list_checkpoints(copy)[-1][1] / "state.pt"
    rewrite(newest, state(torch.load(newest, weights_only=True)))  # the manifest agrees
    said = Said()

    class Listen(type(QUIET)):  # type: ignore[misc]
        def message(self, text: str) -> None:
            said.append(text)

    train(tiny(copy, steps=4, save_every=2), Listen(quiet=True), resume=True)
    damaged = [s for s in said if "damaged" in s]
    assert len(damaged) == 1
    assert "step-00000004 is damaged" in damaged[0]
    assert any("resuming" in s and "at step 2" in s for s in said)


def test_a_state_of_another_run_is_one_error_line_when_nothing_is_left(
    run: Path, tmp_path: Path
) -> None:
    copy = copy_of(run, tmp_path)
    other = tmp_path / "other"
    train(tiny(other, "spanbert", steps=2), QUIET)  # another model: another optimizer
    for step, path in checkpoints.list_checkpoints(copy):
        foreign = torch.load(checkpoints.list_checkpoints(other)[-1][1] / "state.pt")
        rewrite(path / "state.pt", {**foreign, "step": step})
    result = invoke("train", "--resume", str(copy))
    assert result.code == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-2:] == [
        f"error: no readable checkpoint in {copy / 'checkpoints'}",
        "hint: every checkpoint is damaged; start a new run",
    ]


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("[1, 2]", "it holds a JSON list, not an object"),
        ("{}", "it has no 'train' object"),
        ('{"train": {}, "model": {}}', "it has no 'objective' object"),
        ('{"train": {}, "model": {}, "objective": {}}', "missing"),
        ('{"train": {"steps": "many"}, "model": {}, "objective": {}}', "not supported"),
    ],
)
@pytest.mark.parametrize("command", ["resume", "eval", "fill"])
def test_a_config_of_the_wrong_shape_is_one_error_line(
    run: Path, tmp_path: Path, content: str, reason: str, command: str
) -> None:
    copy = copy_of(run, tmp_path)
    (copy / "config.json").write_text(content)
    args = {
        "resume": ("train", "--resume", str(copy)),
        "eval": ("eval", str(copy)),
        "fill": ("fill", str(copy), "a [MASK] b"),
    }[command]
    result = invoke(*args)
    assert result.code == 1
    assert "Traceback" not in result.stderr
    error, hint = result.stderr.splitlines()[-2:]
    assert error.startswith(f"error: {copy / 'config.json'} is not the config of a run: ")
    assert reason in error
    assert hint.startswith("hint: restore the config.json")


# --- item 4: one writer per run directory ---------------------------------------------------


def test_a_second_run_on_a_locked_directory_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "run"
    held = RunLock(out, pytest.fail)  # as another `objectives train` would hold it
    try:
        result = invoke("train", "-o", "bert-mlm", "--steps", "1", "--out", str(out))
        assert result.code == 1
        assert result.stderr.splitlines()[-2:] == [
            f"error: {out} is in use by process {os.getpid()}",
            "hint: wait for that run to finish (or stop it); a second run needs its own --out",
        ]
        assert [p.name for p in out.iterdir()] == [".lock"]  # nothing of the second run
    finally:
        held.release()


def test_a_resume_of_a_locked_run_is_refused(run: Path, tmp_path: Path) -> None:
    copy = copy_of(run, tmp_path)
    held = RunLock(copy, pytest.fail)
    try:
        with pytest.raises(checkpoints.RunError, match=f"in use by process {os.getpid()}"):
            train(tiny(copy, steps=6), QUIET, resume=True)
    finally:
        held.release()
    train(tiny(copy, steps=6), QUIET, resume=True)  # released: the run continues
    assert checkpoints.list_checkpoints(copy)[-1][0] == 6


def test_the_lock_of_a_dead_process_does_not_block(run: Path, tmp_path: Path) -> None:
    """The dead run's forked child still holds the flock; the pid in the file is gone."""
    copy = copy_of(run, tmp_path)
    holder = (
        "import fcntl, os, sys, time\n"
        f"fd = os.open({str(copy / '.lock')!r}, os.O_RDWR | os.O_CREAT)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX)\n"
        "os.write(fd, f'{os.getpid()} {sys.argv[1]}\\n'.encode())\n"
        "if os.fork() == 0:\n"
        "    os.close(1)\n"  # the child lets the parent's pipe close
        "    time.sleep(120)\n"
        "print(os.getpid(), flush=True)\n"
    )
    import socket

    child_of = subprocess.run(
        [sys.executable, "-c", holder, socket.gethostname()],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        check=True,
    )
    dead = int(child_of.stdout)
    try:
        said = Said()

        class Listen(type(QUIET)):  # type: ignore[misc]
            def message(self, text: str) -> None:
                said.append(text)

        train(tiny(copy, steps=5), Listen(quiet=True), resume=True)
        assert checkpoints.list_checkpoints(copy)[-1][0] == 5
        assert str(dead) not in (copy / ".lock").read_text()
    finally:  # the forked child of this test, still holding the old lock file
        for proc in Path("/proc").iterdir():
            if proc.name.isdigit() and int(proc.name) != os.getpid() and _holds(proc, copy):
                os.kill(int(proc.name), 9)


def _holds(proc: Path, run: Path) -> bool:
    """Whether process `proc` has a lock file of `run` open (replaced ones included)."""
    try:
        return any(os.readlink(fd).startswith(str(run / ".lock")) for fd in (proc / "fd").iterdir())
    except OSError:
        return False


def test_a_failed_fresh_run_leaves_no_directory(tmp_path: Path) -> None:
    out = tmp_path / "new"
    result = invoke(
        "train", "-o", "bert-mlm", "--data", str(tmp_path / "missing.txt"), "--out", str(out)
    )
    assert result.code == 1
    assert not out.exists()


# --- item 6: unfinished writes are removed ----------------------------------------------------


def test_unfinished_writes_are_removed_and_a_set_aside_checkpoint_restored(
    run: Path, tmp_path: Path
) -> None:
    copy = copy_of(run, tmp_path)
    root = copy / "checkpoints"
    (root / ".step-00000006.tmp4242").mkdir()
    (root / ".step-00000006.tmp4242" / "model.safetensors").write_bytes(b"\0" * 1000)
    (root / "step-00000004").rename(root / ".step-00000004.old4242")  # killed mid-replace
    (copy / ".metrics.jsonl.4242-abcd.tmp").write_text("{}")
    said = Said()

    class Listen(type(QUIET)):  # type: ignore[misc]
        def message(self, text: str) -> None:
            said.append(text)

    train(tiny(copy, steps=6, save_every=2), Listen(quiet=True), resume=True)
    assert sorted(p.name for p in root.iterdir()) == [f"step-0000000{s}" for s in (2, 4, 6)]
    assert not list(copy.glob(".*.tmp"))
    assert any("resuming" in s and "at step 4" in s for s in said)  # the restored one
    assert any(s.startswith("removed 2 unfinished write(s)") for s in said)


def test_a_fresh_start_removes_unfinished_writes(tmp_path: Path) -> None:
    out = tmp_path / "run"
    train(tiny(out, steps=1, save_every=0), QUIET)
    shutil.rmtree(out / "checkpoints")  # as if it was killed before its first checkpoint...
    (out / "checkpoints").mkdir()
    (out / "checkpoints" / ".step-00000001.tmp99").mkdir()  # ...while writing it
    train(tiny(out, steps=1), QUIET)
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["step-00000001"]


def test_checkpoint_files_load_with_weights_only(run: Path) -> None:
    newest = checkpoints.list_checkpoints(run)[-1][1]
    state = torch.load(io.BytesIO((newest / "state.pt").read_bytes()), weights_only=True)
    assert state["step"] == 4

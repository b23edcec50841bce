"""A real process whose reader goes away (`objectives corrupt ... | head -1`) ends quietly, with
status 0, and prints what an in-process run with another hash seed prints."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.cli.runner import invoke

ROOT = Path(__file__).resolve().parents[2]


def test_closed_pipe_ends_quietly_and_a_fresh_process_gives_the_same_bytes() -> None:
    args = ["corrupt", "-o", "bert-mlm", "--format", "jsonl"]  # the whole default corpus
    process = subprocess.Popen(
        [sys.executable, "-m", "objectives_cli", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONHASHSEED": "123"},
    )
    assert process.stdout is not None
    assert process.stderr is not None
    first = process.stdout.readline().decode()
    process.stdout.close()  # far more output is coming than a pipe buffer holds
    process.wait(timeout=300)
    assert process.stderr.read() == b""
    assert process.returncode == 0
    assert first == invoke(*args, "--limit", "1").stdout

"""The README's training quick start runs as written (a tiny model on CPU)."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli.runner import invoke

README = Path(__file__).resolve().parents[2] / "README.md"


def commands(heading: str) -> list[list[str]]:
    """The command lines of the first bash block under `heading`."""
    section = README.read_text().split(heading, 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block, f"the {heading} section needs a bash block"
    return [shlex.split(line) for line in block.group(1).splitlines() if line.strip()]


def quick_start() -> list[list[str]]:
    return [c[1:] for c in commands("## Training") if c[0] == "objectives"]


def test_quick_start_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    commands = quick_start()
    assert [c[0] for c in commands] == ["train", "eval", "fill"]
    outputs = []
    for args in commands:
        result = invoke(*args)
        assert result.code == 0, f"objectives {' '.join(args)}: {result.stderr}"
        outputs.append(result)
    assert (tmp_path / "runs" / "quick" / "config.json").exists()
    assert json.loads(outputs[1].stdout)["mlm_acc"] > 0  # JSON: stdout is not a terminal here
    assert "[MASK]" not in json.loads(outputs[2].stdout)["output"]
    elsewhere(tmp_path)


def elsewhere(tmp_path: Path) -> None:
    """The README's export section, on the quick start's run: every line runs as shown."""
    pytest.importorskip("transformers")
    lines = commands("## Using a trained model elsewhere")
    assert [c[0] for c in lines] == ["objectives", "python", "objectives"]
    exported = invoke(*lines[0][1:])
    assert exported.code == 0, exported.stderr
    filled = subprocess.run(
        [sys.executable, *lines[1][1:]], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert filled.returncode == 0, filled.stderr
    assert filled.stdout.strip()  # the top token
    embedded = invoke(*lines[2][1:])
    assert embedded.code == 0, embedded.stderr
    assert len(json.loads(embedded.stdout)["embedding"]) == 64

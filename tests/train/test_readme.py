"""The README's training quick start runs as written (a tiny model on CPU)."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

from tests.cli.runner import invoke

README = Path(__file__).resolve().parents[2] / "README.md"


def quick_start() -> list[list[str]]:
    section = README.read_text().split("## Training", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block, "the Training section needs a bash block"
    return [
        shlex.split(line)[1:]
        for line in block.group(1).splitlines()
        if line.startswith("objectives ")
    ]


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

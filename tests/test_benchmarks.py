"""The benchmark scripts run from a clean checkout (tiny settings; no timing is asserted)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_corruption_benchmark_runs_and_writes_its_table(tmp_path: Path) -> None:
    out = tmp_path / "perf.md"
    subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "corruptions.py"), "--objectives", "bert-mlm",
         "--lengths", "32", "--batch", "4", "--threads", "1", "--min-time", "0.01", "--rounds", "1",
         "--no-peers", "--markdown", str(out)],
        check=True, capture_output=True, text=True, cwd=tmp_path,
    )
    table = out.read_text()
    assert "| bert-mlm | 32 | 1 |" in table
    assert "torch" in table.splitlines()[0]

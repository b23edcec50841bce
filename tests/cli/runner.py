"""Run the real entry point (`objectives_cli.cli.main.run`) in-process, streams captured apart."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from typer.testing import CliRunner

from objectives_cli.cli.main import run

GOLDEN = Path(__file__).parent / "golden"
INPUT = GOLDEN / "input.txt"
PLAIN_ENV = {"NO_COLOR": None, "FORCE_COLOR": None, "TTY_COMPATIBLE": None, "COLUMNS": None}


@dataclass(frozen=True)
class Result:
    code: int
    stdout: str
    stderr: str


def invoke(
    *args: str, stdin: str | None = None, env: dict[str, str | None] | None = None
) -> Result:
    """`objectives ARGS...` with stdout not a terminal (unless env forces one)."""
    code = 0
    with CliRunner().isolation(input=stdin, env={**PLAIN_ENV, **(env or {})}) as (out, err, _):
        argv, sys.argv = sys.argv, ["objectives", *args]
        try:
            run()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
        finally:
            sys.argv = argv
            sys.stdout.flush()
            sys.stderr.flush()
        return Result(code, out.getvalue().decode(), err.getvalue().decode())

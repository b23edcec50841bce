"""Entry point: import the command modules, run the app, turn user errors into one line.

`ObjectivesError` becomes `error: ...` (and `hint: ...`) on stderr with its exit status; any
other exception is a bug and keeps its traceback. Under torchrun an error that every rank meets
alike is printed by rank 0 alone (`QuietExit` on the others). A closed pipe (`| head`) ends quietly.
"""

from __future__ import annotations

import errno
import os
import sys

from corruptions.errors import ObjectivesError

# command modules: importing one registers its commands on `app`
from . import (
    data,  # noqa: F401
    downstream,  # noqa: F401
    export,  # noqa: F401
    inspect,  # noqa: F401
    tokenizer,  # noqa: F401
    training,  # noqa: F401
)
from .app import app

WRITE_ERRORS = {errno.ENOSPC, errno.EIO, errno.EBADF, errno.EDQUOT, errno.EFBIG}


def run() -> None:
    """Console-script entry point (`objectives`)."""
    if sys.stdout is None:  # started with stdout closed (`>&-`): what it prints goes nowhere
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the process
    try:
        app(prog_name="objectives", standalone_mode=True)  # not "python -m ..." in usage lines
    except ObjectivesError as exc:
        if exc.quiet:  # another torchrun rank printed the error (train.runtime.QuietExit)
            sys.exit(exc.exit_code)
        print(f"error: {exc.message}", file=sys.stderr)
        if exc.hint:
            print(f"hint: {exc.hint}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(0)
    except OSError as exc:  # stdout on a full disk or a broken stream (the files the
        # commands themselves write report their own errors, naming the file)
        if exc.errno not in WRITE_ERRORS:
            raise
        print(f"error: cannot write the output: {exc.strerror}", file=sys.stderr)
        sys.exit(1)

"""How a run stops short: it diverged, or a signal came."""

from __future__ import annotations

from pathlib import Path

from corruptions import ObjectivesError

from . import checkpoints


class NonFiniteLoss(ObjectivesError):
    """The loss, gradients or weights became inf or NaN; the run stops and keeps its last good
    checkpoint."""


class Interrupted(ObjectivesError):
    """SIGINT/SIGTERM: a checkpoint was saved (or, given `failed`, could not be), or with
    `at_once` (a second signal: the step of the last checkpoint, -1 for none) nothing was;
    exit status 128 + signal in every case, so a scheduler still sees the signal."""

    def __init__(
        self,
        signum: int,
        step: int,
        run_dir: Path,
        failed: checkpoints.WriteError | None = None,
        at_once: int | None = None,
    ) -> None:
        resume = f"continue with: objectives train --resume {run_dir}"
        if at_once is not None and at_once < 0:
            super().__init__(
                f"interrupted at step {step}, before any checkpoint was written",
                "start the run again",
            )
        elif at_once is not None:
            last = checkpoints.step_dir(run_dir, at_once).name
            super().__init__(
                f"stopped at once, without saving; the last checkpoint is {last}", resume
            )
        elif failed is None:
            super().__init__(f"interrupted at step {step}; checkpoint saved in {run_dir}", resume)
        else:
            super().__init__(
                f"interrupted at step {step}, but its checkpoint was not saved: {failed.message}",
                failed.hint,
            )
        self.exit_code = 128 + signum

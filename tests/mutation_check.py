"""A mutation check: one-line bugs across corruptions, model, loop and checkpoints, each applied
in turn to the working tree; the tests of its package must fail for it to count as caught.

    python tests/mutation_check.py      # about 10 minutes on 2 cores; restores every file

Not collected by pytest (it edits the source while it runs): run it by hand after changing
tests, and add a mutant when a bug got past them.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parents[1]
MASK_HELP = '"share of chosen tokens replaced by [MASK]")'
RATE_HELP = '"share of tokens chosen for prediction (masked_lm_prob)")'
SPAN_HELP = '"average cut span length in tokens (mean_noise_span_length)")'


class Mutant(NamedTuple):
    name: str
    file: str
    old: str
    new: str
    tests: str


MUTANTS = [
    Mutant("BERT masks 16% instead of 15%", "corruptions/masking.py",
           f"rate: float = param(0.15, {RATE_HELP}", f"rate: float = param(0.16, {RATE_HELP}",
           "tests/corruptions"),
    Mutant("BERT's [MASK] share 0.8 -> 0.7", "corruptions/masking.py",
           f"mask_replace: float = param(0.8, {MASK_HELP}",
           f"mask_replace: float = param(0.7, {MASK_HELP}", "tests/corruptions"),
    Mutant("T5's mean span 3 -> 2.5", "corruptions/span_corruption.py",
           f"mean_span: float = param(3.0, {SPAN_HELP}",
           f"mean_span: float = param(2.5, {SPAN_HELP}", "tests/corruptions"),
    Mutant("compact puts kept tokens in the wrong columns", "corruptions/_ops.py",
           "dest = torch.where(keep, keep.long().cumsum(1) - 1, width)",
           "dest = torch.where(keep, keep.long().cumsum(1) % width, width)", "tests/corruptions"),
    Mutant("a decoder predicts the current token", "objectives_cli/model/model.py",
           'return {"lm": (self.lm_logits(h[:, :-1][at]), batch.labels[:, 1:][at])}',
           'return {"lm": (self.lm_logits(h[:, 1:][at]), batch.labels[:, 1:][at])}',
           "tests/train"),
    Mutant("the causal mask hides a token from itself", "objectives_cli/model/attention.py",
           "lower, upper = (j <= i).unsqueeze(0)", "lower, upper = (j < i).unsqueeze(0)",
           "tests/train"),
    Mutant("positions do not restart at a packed document", "objectives_cli/model/attention.py",
           "    return pos - first", "    return pos", "tests/train"),
    Mutant("ELECTRA's discriminator weight 50 -> 1", "objectives_cli/train/losses.py",
           '"rtd": 50.0', '"rtd": 1.0', "tests/train"),
    Mutant("a step's rate is taken where it starts", "objectives_cli/train/loop.py",
           "return lr_at(cfg, self.step, (self.step + 1) / cfg.steps)",
           "return lr_at(cfg, self.step, self.step / cfg.steps)", "tests/train"),
    Mutant("the micro-batches of a step read the same rows", "objectives_cli/train/batches.py",
           "first = (step * cfg.grad_accum * world + shard) * cfg.batch_size",
           "first = (step * cfg.grad_accum * world) * cfg.batch_size", "tests/train"),
    Mutant("--keep prunes one checkpoint too many", "objectives_cli/train/checkpoints.py",
           "for _, old in list_checkpoints(run_dir)[:-keep]:",
           "for _, old in list_checkpoints(run_dir)[: -keep + 1 or None]:", "tests/train"),
    Mutant("the manifest's SHA-256 is not compared", "objectives_cli/train/checkpoints.py",
           'if entry.get("sha256") != hashlib.sha256(data).hexdigest():',
           'if False and entry.get("sha256") != hashlib.sha256(data).hexdigest():',
           "tests/train"),
    Mutant("resume restarts one step early", "objectives_cli/train/loop.py",
           'self.step, self.elapsed = int(state["step"]), float(state["elapsed"])',
           'self.step, self.elapsed = int(state["step"]) - 1, float(state["elapsed"])',
           "tests/train"),
]  # fmt: skip


def caught(mutant: Mutant) -> tuple[bool, str]:
    """Apply `mutant`, run its tests (stopping at the first failure), restore the file."""
    path = ROOT / mutant.file
    text = path.read_text()
    if text.count(mutant.old) != 1:
        raise SystemExit(f"{mutant.name}: the line to mutate is gone from {mutant.file}")
    path.write_text(text.replace(mutant.old, mutant.new))
    try:
        run = [sys.executable, "-m", "pytest", "-q", "-x", mutant.tests]
        result = subprocess.run(run, cwd=ROOT, capture_output=True, text=True, check=False)
    finally:
        path.write_text(text)
    failed = [line for line in result.stdout.splitlines() if line.startswith(("FAILED", "ERROR"))]
    return result.returncode != 0, failed[0] if failed else ""


def main() -> None:
    n = 0
    for mutant in MUTANTS:
        start = time.time()
        hit, first = caught(mutant)
        n += hit
        verdict = "CAUGHT" if hit else "MISSED"
        print(f"{verdict}  {mutant.name}  ({time.time() - start:.0f} s)  {first}", flush=True)
    print(f"{n} of {len(MUTANTS)} caught")


if __name__ == "__main__":
    main()

"""One training loop for every objective, with exact resume.

    cfg = TrainConfig(objective="spanbert", model="tiny", steps=200, out="runs/sb")
    train(cfg)                       # a fresh run: config.json, tokenizer.json, checkpoints/
    train(load_config("runs/sb"))    # after an interruption: continues where it stopped

Everything a step does follows from (seed, step): `get_batch(step, micro, rank)` reads the blocks
of a seeded shuffle and corrupts them with a generator seeded from (seed, step, micro-batch index
across ranks), and the global RNG (dropout, ELECTRA's sampling) is reseeded the same way. So
resuming needs only the step, the weights and the optimizer state, and N steps + resume + N steps
equals 2N straight steps exactly; 2 ranks x 1 micro-batch equal 1 rank x 2 micro-batches.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from corruptions import UsageError
from objectives_cli.model.model import Model

from . import checkpoints
from .batches import batch_fn, eval_batches, packed
from .config import TrainConfig, lr_at
from .errors import Interrupted, NonFiniteLoss
from .losses import evaluate, weighted_total
from .metrics import Window, forecast, summary_of
from .report import PlainReporter, Reporter, format_row
from .runtime import (
    QuietExit,
    StopNow,
    all_reduce,
    amp_context,
    catch_signals,
    derived_seed,
    distributed,
    make_optimizer,
    peak_flops,
    resolve_device,
    shared_failure,
)
from .setup import describe_run, lock_run, prepare, record_changes, start_run
from .step import finite, train_step

# --- the loop ------------------------------------------------------------------------------------


def train(
    cfg: TrainConfig, reporter: Reporter | None = None, resume: bool = False
) -> dict[str, Any]:
    """Train (or, with `resume`, continue) the run in `cfg.out`; returns the summary."""
    try:
        device = resolve_device(cfg.device, int(os.environ.get("LOCAL_RANK", "0")))
    except UsageError as exc:  # every rank meets it: rank 0 says it
        if int(os.environ.get("RANK", "0")) > 0:
            raise QuietExit(exc.exit_code) from None
        raise
    rank, world, local_rank, started = distributed(device)  # its backend follows the device
    try:
        with ExitStack() as held:  # the run directory's lock, released however the run ends
            reporter = reporter or PlainReporter()
            return Trainer(cfg, reporter, resume, rank, world, local_rank, held).run()
    except KeyboardInterrupt:  # Ctrl-C while reading the data or setting up
        raise Interrupted(signal.SIGINT, 0, Path(cfg.out), at_once=-1) from None
    except (NonFiniteLoss, Interrupted) as exc:  # every rank stops alike; rank 0 says why
        if rank > 0:
            raise QuietExit(exc.exit_code) from None
        raise
    finally:
        if started:
            import torch.distributed as dist

            dist.destroy_process_group()


class Trainer:
    """One run: set up from the config (or the run directory), then `run()` the loop."""

    def __init__(
        self,
        cfg: TrainConfig,
        reporter: Reporter,
        resume: bool,
        rank: int,
        world: int,
        local_rank: int,
        held: ExitStack | None = None,
    ) -> None:
        """`held` releases the run directory's lock when closed (`train` closes it at the end;
        without one, the lock lasts as long as the process)."""
        self.cfg, self.resume, self.rank, self.world = cfg, resume, rank, world
        held = held if held is not None else ExitStack()
        self.main = rank == 0
        self.reporter = reporter if self.main else PlainReporter(quiet=True)  # rank 0 talks
        self.run_dir = Path(cfg.out)
        self.device = resolve_device(cfg.device, local_rank)
        if self.device.type == "cuda":  # TF32 for what runs outside bf16 autocast (fp32 runs)
            torch.set_float32_matmul_precision("high")
        # The first process of each machine reads and tokenises first, filling the machine's
        # cache for the others, and reports a bad data set or run directory once per machine.
        with shared_failure(world, self.device):
            if self.main:  # one writer per run directory, from here to the end
                held.callback(lock_run(cfg, resume, self.reporter.message).release)
            if local_rank == 0:
                setup = prepare(cfg, resume, self.reporter.message)
        if local_rank > 0:
            setup = prepare(cfg, resume)
        self.data, self.corruption, self.info, model_cfg = setup
        torch.manual_seed(derived_seed(cfg.seed, "init"))
        self.model = Model(model_cfg).to(self.device)
        self.opt = make_optimizer(cfg, self.model, self.device)
        self.step, self.elapsed, self.tokens = 0, 0.0, 0
        self.train_seconds = 0.0  # in training steps only (elapsed less evaluations and saves)
        self.warm_end: float | None = None  # under --budget: progress where warmup ended
        self.window = Window()  # the steps since the last metrics row
        # the first step whose weights are known bad: inf or NaN themselves, or giving an inf
        # or NaN loss or gradient (a device tensor, read when logging or saving)
        self.first_bad = torch.full((), NEVER, dtype=torch.long, device=self.device)
        self.saved = -1  # step of the newest checkpoint on disk (-1: none yet)
        self.evaluated = -1  # step of the last evaluation
        with shared_failure(world, self.device):  # rank 0 first: it alone writes the run
            if self.main and resume:
                self.restore()
            elif self.main:
                start_run(cfg, self.data, self.info, model_cfg)
        if resume and not self.main:
            self.restore()
        self.blocks = packed(self.data, cfg, self.info)
        for line in describe_run(self.model, self.info, cfg, self.device, self.blocks, world):
            self.reporter.message(line)
        self.get_batch = batch_fn(
            cfg, self.blocks[0], self.corruption, self.data.vocab, self.info, self.device, world
        )
        self.amp = amp_context(cfg, self.device)
        self.peak = peak_flops(self.device, cfg.precision)  # FLOP/s; None: unknown
        self.net: nn.Module = self.model
        if world > 1:
            self.net = nn.parallel.DistributedDataParallel(self.model)
        if cfg.compile:
            self.net = torch.compile(self.net)  # type: ignore[assignment]
        self.metrics = None
        with shared_failure(world, self.device):
            if self.main:  # a resumed run drops what was logged after its checkpoint
                self.metrics = checkpoints.Metrics(self.run_dir, after_step=self.step)

    def restore(self) -> None:
        def optimizer(state: dict[str, Any]) -> None:
            if not finite(self.model, state["optimizer"]):  # from before this check existed
                raise checkpoints.DamagedCheckpoint("it holds inf or NaN weights or moments")
            self.opt.load_state_dict(state["optimizer"])

        state = checkpoints.load_latest(
            self.run_dir, self.model, self.reporter.message, restore=optimizer
        )
        if state is None:
            raise checkpoints.RunError(
                f"{self.run_dir} has no checkpoint to resume from",
                "start it again without --resume",
            )
        self.step, self.elapsed = int(state["step"]), float(state["elapsed"])
        self.tokens = int(state["tokens"])
        self.train_seconds = float(state.get("train_seconds", self.elapsed))
        self.warm_end = state.get("warm_end")
        if self.main:  # the others start from an empty window: logging sums over ranks
            self.window = Window.from_state(state.get("window"), self.device)
        self.saved = self.step
        self.reporter.message(
            f"resuming {self.run_dir} at step {self.step} ({Path(state['path']).name})"
        )
        record_changes(self.run_dir, self.cfg, self.step, self.reporter.message)
        before = int(state.get("world", self.world))
        if before != self.world:  # rows per step follow the process count
            self.reporter.message(
                f"warning: the run was trained with {before} process(es) and resumes with "
                f"{self.world}; each step now reads {self.world * self.cfg.grad_accum} "
                f"micro-batches instead of {before * self.cfg.grad_accum}, so the run will not "
                "match an uninterrupted one"
            )

    def run(self) -> dict[str, Any]:
        """Train to the end, then evaluate, save and summarise, in that order: a crash at any
        point leaves a run whose resume writes what an uninterrupted run would have written."""
        if self.resume and self.stop(False):  # finished: complete what a crash cut short
            return self.finish(resumed_finished=True)
        try:
            with catch_signals(self.acknowledge) as caught:
                if not self.resume:
                    self.evaluate()
                clock = time.perf_counter() - self.elapsed
                lr = self.steps(caught, clock)
                self.end(caught, clock, lr)
        except StopNow as stop:  # a second signal: no checkpoint of this step
            raise Interrupted(stop.signum, self.step, self.run_dir, at_once=self.saved) from None
        self.elapsed = time.perf_counter() - clock  # the summary's total time, the save too
        return self.finish()

    def steps(self, caught: list[int], clock: float) -> float:
        """Train until the steps or the budget are done or a signal came; returns the rate of
        the last step."""
        cfg, budget = self.cfg, self.cfg.budget > 0
        self.reporter.start(
            cfg.budget if budget else cfg.steps,
            self.elapsed if budget else self.step,
            "s" if budget else "steps",
        )
        self.last: dict[str, Tensor] = {}
        lr = 0.0
        self.mark = time.perf_counter()  # where the training time being counted started
        self.saved_at = self.elapsed  # --save-minutes count from here
        # timed for the forecast: the second step, as the first also warms up (allocator,
        # kernels: 3x a later step on a CPU), or the third after torch.compile's recompilation
        timed = self.step + (3 if cfg.compile else 2)
        self.model.train()
        while not self.stop(bool(caught)):
            if self.save_due():  # a checkpoint of the last step, every --save-minutes
                self.save()
            self.in_step = True
            started = time.perf_counter()
            done = train_step(
                cfg,
                self.net,
                self.model,
                self.opt,
                self.get_batch,
                self.step,
                self.rank,
                self.world,
                self.amp,
                lambda: self.learning_rate(clock),
            )
            self.last, lr = done.losses, done.lr
            bad = ~torch.isfinite(torch.stack([*self.last.values(), done.grad_norm]).sum())
            self.first_bad = torch.where(bad, self.first_bad.clamp(max=self.step), self.first_bad)
            self.step += 1
            self.in_step = False
            self.tokens += done.tokens
            now = time.perf_counter()
            self.window.add(done, now - self.mark)
            self.train_seconds += now - self.mark
            self.mark, self.elapsed = now, now - clock
            if self.step == timed:
                self.forecast(now - started)
            row = None
            if self.step % cfg.log_every == 0 or (not budget and self.step == cfg.steps):
                row = self.log(lr)
            if cfg.eval_every > 0 and self.step % cfg.eval_every == 0:
                self.evaluate()  # before the checkpoint of this step: never lost with it
            if cfg.save_every > 0 and self.step % cfg.save_every == 0:
                self.save()
            self.reporter.advance(self.elapsed if budget else self.step, row)
        return lr

    def end(self, caught: list[int], clock: float, lr: float) -> None:
        """After the last step: on a signal, save and stop (its window's row comes after the
        resume); else the last row, the final evaluation, then the final checkpoint."""
        try:
            if caught:
                if self.step == 0:  # nothing trained yet: nothing to save
                    raise Interrupted(caught[0], 0, self.run_dir, at_once=-1)
                self.save()
                raise Interrupted(caught[0], self.step, self.run_dir)
            if self.window.steps:  # a budget ended between logs
                self.log(lr)
            self.evaluate()
            self.elapsed = time.perf_counter() - clock
            self.save()
        except checkpoints.WriteError as exc:
            if caught:  # keep the signal's exit status; say that nothing new was saved
                raise Interrupted(caught[0], self.step, self.run_dir, exc) from None
            raise

    def acknowledge(self, signum: int) -> None:
        """Say at once that a signal was heard (the step under way may take a while)."""
        again = "press Ctrl-C again" if signum == signal.SIGINT else "send SIGTERM again"
        step = self.step + 1 if getattr(self, "in_step", False) else self.step
        where = f"after step {step} and saving it" if step > 0 else "before the first step"
        text = f"stopping {where}; {again} to stop now without saving"
        try:
            self.reporter.message(text)
        except RuntimeError:  # stderr was in the middle of a line: write past it
            if self.main:
                os.write(2, f"\n{text}\n".encode())

    def learning_rate(self, clock: float) -> float:
        """The rate of the step under way, taken where it ends (`lr_at`): after step + 1 of
        --steps, or at the elapsed share of --budget now, before its update (the same on every
        rank). Under a budget with a warmup in steps, the progress where warmup ended is kept
        (in checkpoints too), so decay starts there."""
        cfg = self.cfg
        if cfg.budget <= 0:
            return lr_at(cfg, self.step, (self.step + 1) / cfg.steps)
        now = torch.tensor([time.perf_counter() - clock], device=self.device)
        progress = min(1.0, float(all_reduce(now, self.world, "max")) / cfg.budget)
        if cfg.warmup >= 1 and self.warm_end is None and self.step + 1 >= cfg.warmup:
            self.warm_end = progress
        return lr_at(cfg, self.step, progress, self.warm_end)

    def stop(self, signalled: bool) -> bool:
        """Time to stop: steps or budget done, or a signal; every rank decides alike."""
        elapsed = self.elapsed
        if self.world > 1:
            flags = torch.tensor([float(signalled), elapsed], device=self.device)
            signalled_any, elapsed = all_reduce(flags, self.world, "max").tolist()
            signalled = bool(signalled_any)
        self.synced = elapsed  # the elapsed time every rank agrees on
        done = elapsed >= self.cfg.budget if self.cfg.budget > 0 else self.step >= self.cfg.steps
        return done or signalled

    def save_due(self) -> bool:
        """--save-minutes have passed since the last checkpoint (or the start of this session),
        by the clock every rank agrees on."""
        minutes = self.cfg.save_minutes
        return (
            minutes > 0 and self.step != self.saved and self.synced - self.saved_at >= 60 * minutes
        )

    def forecast(self, per_step: float) -> None:
        """Say, once a step is timed, how long the run will take (a warning when very long)."""
        self.reporter.message(forecast(self.cfg, self.step, self.elapsed, self.device, per_step))

    def log(self, lr: float) -> dict[str, float]:
        """A metrics row for the steps since the last one: the mean of each term's loss over
        them, and their training throughput (evaluations and saves left out)."""
        self.check_finite()
        means = self.window.means(self.world)
        row: dict[str, float] = {"step": self.step, "loss": weighted_total(means)}
        row.update({f"{k}_loss": v for k, v in means.items()})
        seconds = max(self.window.seconds, 1e-9)
        flops = self.window.flops_all(self.world)
        row.update({"lr": lr, "tokens": self.tokens, "tokens_per_s": self.window.tokens / seconds})
        row["flops_per_token"] = flops / max(self.window.tokens, 1)
        if self.peak:  # the device's dense peak is known: MFU of the training steps
            row["mfu"] = flops / seconds / (self.peak * self.world)
        self.window = Window()
        with shared_failure(self.world, self.device):
            if self.metrics is not None:
                self.metrics.write({**row, "elapsed": round(self.elapsed, 3)})
        return row

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Time spent here (an evaluation, a save) is not training time."""
        if self.device.type == "cuda":  # the steps queued so far count as training
            torch.cuda.synchronize(self.device)
        mark = getattr(self, "mark", None)
        if mark is not None:
            self.train_seconds += time.perf_counter() - mark
            self.window.seconds += time.perf_counter() - mark
        try:
            yield
        finally:
            self.mark = time.perf_counter()

    def check_finite(self) -> None:
        """Stop once weights went bad (`first_bad`): nothing from there is saved, and a
        checkpoint of those weights saved before the step that showed it (a finite one whose
        next step gives inf or NaN, which would fail every resume) is set aside, so the newest
        checkpoint is the last good one."""
        first = -int(all_reduce(-self.first_bad, self.world, "max"))
        if first == NEVER:
            return
        moved = ""
        if self.main:
            moved = checkpoints.set_aside(self.run_dir, first)
        good = [s for s, _ in checkpoints.list_checkpoints(self.run_dir) if s < first]
        if not good:
            where = "no checkpoint was written before"
            hint = "start the run again with a lower --lr or a longer --warmup"
        else:
            where = f"the last good checkpoint is {checkpoints.step_dir(self.run_dir, good[-1])}"
            hint = (
                f"continue from it at a lower rate: objectives train --resume {self.run_dir} "
                f"--lr {self.cfg.lr / 10:g} (or start a new run with a longer --warmup)"
            )
        raise NonFiniteLoss(
            f"training diverged at step {first + 1}: the loss, gradients or weights became inf "
            f"or NaN; {where}{moved}",
            hint,
        )

    def save(self) -> None:
        """Checkpoint the current step, unless it already is (save_every dividing steps)."""
        if self.step == self.saved:
            return
        bad = ~finite(self.model, self.opt.state_dict())  # what would be written
        self.first_bad = torch.where(bad, self.first_bad.clamp(max=self.step), self.first_bad)
        self.check_finite()
        with self.paused():
            window = self.window.state(self.world)  # every rank's share, summed
            with shared_failure(self.world, self.device):
                if self.main:
                    state = {
                        "optimizer": self.opt.state_dict(),
                        "elapsed": self.elapsed,
                        "train_seconds": self.train_seconds,
                        "tokens": self.tokens,
                        "world": self.world,
                        "warm_end": self.warm_end,
                        "window": window,
                    }
                    checkpoints.save(self.run_dir, self.step, self.model, state, self.cfg.keep)
        self.saved, self.saved_at = self.step, getattr(self, "synced", self.elapsed)

    def evaluate(self, if_missing: bool = False) -> dict[str, float | None]:
        """Held-out figures of this step, written to metrics.jsonl and said in one line, once
        per step (and with `if_missing`, only when metrics.jsonl has none for it yet). Rank 0
        computes them while the others wait; what it computed is returned ({} when nothing
        was)."""
        result: dict[str, float | None] = {}
        if self.evaluated == self.step:  # eval_every divides steps: the end needs no rerun
            return result
        with self.paused(), shared_failure(self.world, self.device):
            if self.main and not (if_missing and self.eval_row() is not None):
                if self.step == 0:  # the first thing a run does, before the progress bar
                    rows = min(len(self.blocks[1]), self.cfg.eval_batches * self.cfg.batch_size)
                    self.reporter.message(f"evaluating step 0 on {rows:,} held-out rows")
                batches = eval_batches(
                    self.cfg,
                    self.blocks[1],
                    self.corruption,
                    self.data.vocab,
                    self.info,
                    self.device,
                )
                result = evaluate(self.model, batches, self.amp, self.cfg.seed)
                row = {"step": self.step, **{f"eval_{k}": v for k, v in result.items()}}
                self.reporter.message("held-out " + format_row(row))
                if self.metrics is not None:
                    self.metrics.write(row)
        self.evaluated = self.step
        return result

    def eval_row(self) -> dict[str, Any] | None:
        rows = checkpoints.read_metrics(self.run_dir)
        return next((r for r in rows if "eval_loss" in r and r["step"] == self.step), None)

    def finish(self, resumed_finished: bool = False) -> dict[str, Any]:
        """The summary of the run, from metrics.jsonl: written as its last row, then reported.
        A finished run that is resumed writes what a crash cut short (its final evaluation,
        its summary) and otherwise only reports it."""
        if resumed_finished:
            self.evaluate(if_missing=True)
        summary: dict[str, Any] = {"steps": self.step, "tokens": self.tokens}
        with shared_failure(self.world, self.device):
            if self.main:
                rows = checkpoints.read_metrics(self.run_dir)
                done = any("summary" in r and r["step"] == self.step for r in rows)
                summary = summary_of(rows, self.step, self.tokens, self.times())
                summary["run_dir"] = str(self.run_dir)
                if resumed_finished and done:
                    more = "--budget" if self.cfg.budget > 0 else f"--steps above {self.step}"
                    self.reporter.message(
                        f"{self.run_dir} has already trained to step {self.step}; "
                        f"nothing to do (give {more} to train longer)"
                    )
                elif self.metrics is not None:
                    self.metrics.write({"step": self.step, "summary": summary})
        self.reporter.finish(summary)
        return summary

    def times(self) -> dict[str, float]:
        return {
            "seconds": round(self.elapsed, 1),
            "train_seconds": round(self.train_seconds, 1),
            "tokens_per_s": round(self.tokens / max(self.train_seconds, 1e-9)),
        }


NEVER = 2**62  # first_bad while every step was finite

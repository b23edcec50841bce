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

import time
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from corruptions import Corrupted, ObjectivesError, UsageError, create, make_generator

from . import checkpoints
from .batches import Data, ObjectiveInfo, batch_fn, eval_batches, load_data, packed, probe
from .config import RESUMABLE, TrainConfig, lr_at
from .models import LOSS_WEIGHTS, Head, Model, ModelConfig, heads_for, param_counts, preset
from .packing import Blocks
from .progress import PlainReporter, Reporter
from .runtime import (
    QuietExit,
    all_reduce,
    amp_context,
    catch_signals,
    distributed,
    make_optimizer,
    resolve_device,
    shared_failure,
)

# --- the loop ------------------------------------------------------------------------------------


def train(
    cfg: TrainConfig, reporter: Reporter | None = None, resume: bool = False
) -> dict[str, Any]:
    """Train (or, with `resume`, continue) the run in `cfg.out`; returns the summary."""
    rank, world, local_rank, started = distributed()
    try:
        return Trainer(cfg, reporter or PlainReporter(), resume, rank, world, local_rank).run()
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
    ) -> None:
        self.cfg, self.resume, self.rank, self.world = cfg, resume, rank, world
        self.main = rank == 0
        self.reporter = reporter if self.main else PlainReporter(quiet=True)  # rank 0 talks
        self.run_dir = Path(cfg.out)
        self.device = resolve_device(cfg.device, local_rank)
        if self.device.type == "cuda":  # TF32 for what runs outside bf16 autocast (fp32 runs)
            torch.set_float32_matmul_precision("high")
        # The first process of each machine reads and tokenises first, filling the machine's
        # cache for the others, and reports a bad data set or run directory once per machine.
        with shared_failure(world, self.device):
            if local_rank == 0:
                setup = prepare(cfg, resume)
        if local_rank > 0:
            setup = prepare(cfg, resume)
        self.data, self.corruption, self.info, model_cfg = setup
        torch.manual_seed(derived_seed(cfg.seed, "init"))
        self.model = Model(model_cfg).to(self.device)
        self.opt = make_optimizer(cfg, self.model, self.device)
        self.step, self.elapsed, self.tokens = 0, 0.0, 0
        self.saved = -1  # step of the newest checkpoint on disk (-1: none yet)
        self.evaluated: tuple[int, dict[str, float]] = (-1, {})  # last evaluation: step, result
        with shared_failure(world, self.device):  # rank 0 first: it alone writes the run
            if self.main and resume:
                self.restore()
            elif self.main:
                start_run(cfg, self.data, self.info, model_cfg)
        if resume and not self.main:
            self.restore()
        self.blocks = packed(self.data, cfg, self.info)
        for line in describe(self.model, self.info, cfg, self.device, self.blocks, world):
            self.reporter.message(line)
        self.get_batch = batch_fn(
            cfg, self.blocks[0], self.corruption, self.data.vocab, self.info, self.device, world
        )
        self.amp = amp_context(cfg, self.device)
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
        state = checkpoints.load_latest(self.run_dir, self.model, self.reporter.message)
        if state is None:
            raise checkpoints.RunError(
                f"{self.run_dir} has no checkpoint to resume from",
                "start it again without --resume",
            )
        self.opt.load_state_dict(state["optimizer"])
        self.step, self.elapsed = int(state["step"]), float(state["elapsed"])
        self.tokens = int(state["tokens"])
        self.saved = self.step
        self.reporter.message(
            f"resuming {self.run_dir} at step {self.step} ({Path(state['path']).name})"
        )
        before = int(state.get("world", self.world))
        if before != self.world:  # rows per step follow the process count
            self.reporter.message(
                f"warning: the run was trained with {before} process(es) and resumes with "
                f"{self.world}; each step now reads {self.world * self.cfg.grad_accum} "
                f"micro-batches instead of {before * self.cfg.grad_accum}, so the run will not "
                "match an uninterrupted one"
            )

    def run(self) -> dict[str, Any]:
        cfg = self.cfg
        if self.resume and self.stop(False):  # a finished run: leave it as it is
            more = "--budget" if cfg.budget > 0 else f"--steps above {self.step}"
            self.reporter.message(
                f"{self.run_dir} has already trained to step {self.step}; "
                f"nothing to do (give {more} to train longer)"
            )
            return {"steps": self.step, "tokens": self.tokens, "run_dir": str(self.run_dir)}
        first = self.evaluate() if not self.resume else None
        budget = cfg.budget > 0
        self.reporter.start(
            cfg.budget if budget else cfg.steps,
            self.elapsed if budget else self.step,
            "s" if budget else "steps",
        )
        self.bad = torch.zeros((), dtype=torch.bool, device=self.device)
        self.last: dict[str, Tensor] = {}
        self.window = (0, time.perf_counter())  # tokens and start of the current log interval
        logged, clock, lr = self.step, time.perf_counter() - self.elapsed, 0.0
        self.model.train()
        with catch_signals() as caught:
            while not self.stop(bool(caught)):
                progress = self.elapsed / cfg.budget if budget else self.step / cfg.steps
                lr = lr_at(cfg, self.step, progress)
                for group in self.opt.param_groups:
                    group["lr"] = lr
                self.last, n_tokens = train_step(
                    cfg,
                    self.net,
                    self.model,
                    self.opt,
                    self.get_batch,
                    self.step,
                    self.rank,
                    self.world,
                    self.amp,
                )
                self.bad |= ~torch.isfinite(torch.stack(list(self.last.values())).sum())
                self.step += 1
                self.tokens += n_tokens
                self.window = (self.window[0] + n_tokens, self.window[1])
                self.elapsed = time.perf_counter() - clock
                row = None
                if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                    row, logged = self.log(lr), self.step
                if cfg.save_every > 0 and self.step % cfg.save_every == 0:
                    self.save()
                if cfg.eval_every > 0 and self.step % cfg.eval_every == 0:
                    self.evaluate()
                self.reporter.advance(self.elapsed if budget else self.step, row)
            try:
                if self.last and logged != self.step:  # a budget or a signal ended between logs
                    self.log(lr)
                self.save()
            except checkpoints.WriteError as exc:
                if caught:  # keep the signal's exit status; say that nothing new was saved
                    raise Interrupted(caught[0], self.step, self.run_dir, exc) from None
                raise
            if caught:
                raise Interrupted(caught[0], self.step, self.run_dir)
        return self.finish(first)

    def stop(self, signalled: bool) -> bool:
        """Time to stop: steps or budget done, or a signal; every rank decides alike."""
        elapsed = self.elapsed
        if self.world > 1:
            flags = torch.tensor([float(signalled), elapsed], device=self.device)
            signalled_any, elapsed = all_reduce(flags, self.world, "max").tolist()
            signalled = bool(signalled_any)
        done = elapsed >= self.cfg.budget if self.cfg.budget > 0 else self.step >= self.cfg.steps
        return done or signalled

    def log(self, lr: float) -> dict[str, float]:
        check_finite(self.bad, self.step, self.run_dir, self.world)
        now = time.perf_counter()
        speed = self.window[0] / max(now - self.window[1], 1e-9)
        self.window = (0, now)
        row = log_row(self.last, lr, self.step, self.tokens, speed, self.world)
        with shared_failure(self.world, self.device):
            if self.metrics is not None:
                self.metrics.write({**row, "elapsed": round(self.elapsed, 3)})
        return row

    def save(self) -> None:
        """Checkpoint the current step, unless it already is (save_every dividing steps)."""
        if self.step == self.saved:
            return
        check_finite(self.bad, self.step, self.run_dir, self.world)
        with shared_failure(self.world, self.device):
            if self.main:
                state = {
                    "optimizer": self.opt.state_dict(),
                    "elapsed": self.elapsed,
                    "tokens": self.tokens,
                    "rng": torch.get_rng_state(),
                    "world": self.world,
                }
                checkpoints.save(self.run_dir, self.step, self.model, state, self.cfg.keep)
        self.saved = self.step

    def evaluate(self) -> dict[str, float]:
        """Held-out figures, written to metrics.jsonl; once per step. Rank 0 computes them
        while the others wait (their result is empty)."""
        if self.evaluated[0] == self.step:  # eval_every divides steps: the end needs no rerun
            return self.evaluated[1]
        result: dict[str, float] = {}
        with shared_failure(self.world, self.device):
            if self.main:
                batches = eval_batches(
                    self.cfg,
                    self.blocks[1],
                    self.corruption,
                    self.data.vocab,
                    self.info,
                    self.device,
                )
                result = evaluate(self.model, batches, self.amp, self.cfg.seed)
                if self.metrics is not None:
                    self.metrics.write(
                        {"step": self.step, **{f"eval_{k}": v for k, v in result.items()}}
                    )
        self.evaluated = (self.step, result)
        return result

    def finish(self, first: dict[str, float] | None) -> dict[str, Any]:
        final = self.evaluate()
        summary: dict[str, Any] = {
            "steps": self.step,
            "tokens": self.tokens,
            "seconds": round(self.elapsed, 1),
            "tokens_per_s": round(self.tokens / max(self.elapsed, 1e-9)),
        }
        if self.last:  # every rank holds its share of each term's mean
            names = sorted(self.last)
            shares = all_reduce(torch.stack([self.last[k] for k in names]), self.world).tolist()
            summary["train_loss"] = round(weighted_total(dict(zip(names, shares, strict=True))), 4)
        if first:
            summary["start_eval_loss"] = round(first["loss"], 4)
        summary.update({f"eval_{k}": round(v, 4) for k, v in final.items()})
        summary["run_dir"] = str(self.run_dir)
        self.reporter.finish(summary)
        return summary


def check_finite(bad: Tensor, step: int, run_dir: Path, world: int) -> None:
    """Stop when any step so far had a non-finite loss; the last checkpoint stays the good one."""
    if bool(all_reduce(bad.float(), world, "max")):
        saved = checkpoints.list_checkpoints(run_dir)
        where = (
            f"the last good checkpoint is {saved[-1][1]}" if saved else "no checkpoint was written"
        )
        raise NonFiniteLoss(
            f"the loss became non-finite (inf or NaN) at or before step {step}; {where}",
            "lower --lr, raise --warmup, or check the data; --resume continues from "
            "the last checkpoint",
        )


def log_row(
    last: dict[str, Tensor], lr: float, step: int, tokens: int, tokens_per_s: float, world: int
) -> dict[str, float]:
    names = sorted(last)
    values = all_reduce(torch.stack([last[k].float() for k in names]), world).tolist()
    means = dict(zip(names, values, strict=True))
    row: dict[str, float] = {"step": step, "loss": weighted_total(means)}
    row.update({f"{k}_loss": v for k, v in means.items()})
    row.update({"lr": lr, "tokens": tokens, "tokens_per_s": tokens_per_s})
    return row


def train_step(
    cfg: TrainConfig,
    net: nn.Module,
    model: Model,
    opt: torch.optim.Optimizer,
    get_batch: Any,
    step: int,
    rank: int,
    world: int,
    amp: Any,
) -> tuple[dict[str, Tensor], int]:
    """One optimizer step over `grad_accum` micro-batches; returns this rank's share of each
    term's mean loss (summed over ranks when logging) and its content tokens.

    Every term is normalised by its scored targets over the whole step (all micro-batches and
    ranks), so micro-batches with more masks weigh more, as in one big batch.
    """
    micro = [get_batch(step, m, rank) for m in range(cfg.grad_accum)]
    counts: dict[str, Tensor] = {}
    for batch, _ in micro:
        for name, chosen in model.scored(batch).items():
            counts[name] = counts.get(name, 0) + chosen.sum()
    names = sorted(counts)
    local_tokens = torch.tensor(sum(n for _, n in micro), device=counts[names[0]].device)
    totals = all_reduce(torch.stack([*(counts[k] for k in names), local_tokens]), world)
    n_tokens = int(totals[-1]) if world > 1 else int(local_tokens)
    total = dict(zip(names, totals[:-1].clamp(min=1), strict=True))
    sums = {k: torch.zeros((), device=totals.device) for k in names}
    for i, (batch, _) in enumerate(micro):
        sync = world == 1 or i == len(micro) - 1 or not hasattr(net, "no_sync")
        with nullcontext() if sync else net.no_sync():  # type: ignore[operator]
            torch.manual_seed(derived_seed(cfg.seed, "step", step, i * world + rank))
            with amp:
                outputs = net(batch)
            losses = term_losses(outputs)
            loss = sum(
                (LOSS_WEIGHTS.get(k, 1.0) * v[0] / total[k] for k, v in losses.items()),
                torch.zeros((), device=totals.device),
            )
            (loss * world).backward()  # DDP averages gradients over ranks; we want their sum
        for k, (value, _) in losses.items():
            sums[k] += value.detach()
    if cfg.clip > 0:
        nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
    opt.step()
    opt.zero_grad(set_to_none=True)
    return {k: sums[k] / total[k] for k in names}, n_tokens


# --- losses -------------------------------------------------------------------------------------


def term_losses(
    outputs: dict[str, Head], accuracy: bool = False
) -> dict[str, tuple[Tensor, Tensor]]:
    """Per term: (summed loss, correct predictions) — cross-entropy, or binary for (N,) logits."""
    out = {}
    for name, (logits, targets) in outputs.items():
        if logits.dim() == 1:
            loss = F.binary_cross_entropy_with_logits(
                logits.float(), targets.float(), reduction="sum"
            )
            correct = ((logits > 0) == (targets > 0.5)).sum() if accuracy else loss.new_zeros(())
        else:
            loss = F.cross_entropy(logits.float(), targets, reduction="sum")
            correct = (logits.argmax(-1) == targets).sum() if accuracy else loss.new_zeros(())
        out[name] = (loss, correct)
    return out


def weighted_total(means: dict[str, float]) -> float:
    return sum(LOSS_WEIGHTS.get(k, 1.0) * v for k, v in means.items())


@torch.no_grad()
def evaluate(model: Model, batches: Iterator[Corrupted], amp: Any, seed: int) -> dict[str, float]:
    """Held-out loss and accuracy per term, and the weighted total ('loss')."""
    was_training = model.training
    model.eval()
    sums: dict[str, list[float]] = {}
    for i, batch in enumerate(batches):
        torch.manual_seed(derived_seed(seed, "eval", i))
        counts = {k: int(v.sum()) for k, v in model.scored(batch).items()}
        with amp:
            outputs = model(batch)
        for name, (loss, correct) in term_losses(outputs, accuracy=True).items():
            acc = sums.setdefault(name, [0.0, 0.0, 0.0])
            acc[0] += float(loss)
            acc[1] += float(correct)
            acc[2] += counts.get(name, 0)
    model.train(was_training)
    result: dict[str, float] = {}
    for name, (loss, correct, count) in sums.items():
        result[f"{name}_loss"] = loss / max(count, 1)
        result[f"{name}_acc"] = correct / max(count, 1)
    result["loss"] = weighted_total({k: result[f"{k}_loss"] for k in sums})
    return result


def derived_seed(seed: int, *keys: int | str) -> int:
    return make_generator(seed, "rng", *keys).initial_seed()


# --- setup ------------------------------------------------------------------------------------


class NonFiniteLoss(ObjectivesError):
    """The loss became inf or NaN; the run stops and keeps its last good checkpoint."""


class Interrupted(ObjectivesError):
    """SIGINT/SIGTERM: a checkpoint was saved (or, given `failed`, could not be); exit status
    128 + signal either way, so a scheduler still sees the signal."""

    def __init__(
        self, signum: int, step: int, run_dir: Path, failed: checkpoints.WriteError | None = None
    ) -> None:
        if failed is None:
            super().__init__(
                f"interrupted at step {step}; checkpoint saved in {run_dir}",
                f"continue with: objectives train --resume {run_dir}",
            )
        else:
            super().__init__(
                f"interrupted at step {step}, but its checkpoint was not saved: {failed.message}",
                failed.hint,
            )
        self.exit_code = 128 + signum


def run_config(cfg: TrainConfig, model_cfg: ModelConfig, info: ObjectiveInfo) -> dict[str, Any]:
    """config.json: the settings, the model shape, what the probe found and every objective
    parameter's value (defaults included; `train.params` holds only the overrides)."""
    from .commands import resolved

    objective = {**info.to_json(), "params": resolved(cfg.objective, dict(cfg.params))[1]}
    return {"train": cfg.to_json(), "model": asdict(model_cfg), "objective": objective}


def prepare(cfg: TrainConfig, resume: bool) -> tuple[Data, Any, ObjectiveInfo, ModelConfig]:
    """Data, corruption, objective facts and model shape: probed on a fresh run, read on resume."""
    run_dir = Path(cfg.out)
    tokenizer = str(run_dir / "tokenizer.json") if resume else cfg.tokenizer
    corruption = create(cfg.objective, **dict(cfg.params))
    if not resume:  # before reading the data, which can take a while
        check_fresh(run_dir)
    data = load_data(cfg, tokenizer)
    if resume:
        stored = checkpoints.read_config(run_dir)
        before = TrainConfig.from_json(stored["train"])
        changed = [
            k for k in asdict(cfg) if k not in RESUMABLE and getattr(before, k) != getattr(cfg, k)
        ]
        if changed:
            raise UsageError(
                f"cannot resume {run_dir} with another {changed[0]} "
                f"({getattr(before, changed[0])!r} -> {getattr(cfg, changed[0])!r})",
                "resuming continues the same run; start a new one with another --out",
            )
        info = ObjectiveInfo.from_json(stored["objective"])
        model_cfg = ModelConfig(**stored["model"])
    else:
        info, sample = probe(cfg, data, corruption)
        model_cfg = ModelConfig(
            arch=info.arch,
            vocab_size=data.vocab.size,
            max_len=max(64, 2 * cfg.seq_len),
            positions=cfg.positions,
            dropout=cfg.dropout,
            **preset(cfg.model, info.arch),
            **heads_for(info.arch, sample, info.electra, data.vocab.mask),  # type: ignore[arg-type]
            # SpanBERT's offset table has a row per SBO target of a span (its max_pair_targets)
            sbo_offsets=getattr(corruption, "max_pair_targets", ModelConfig.sbo_offsets),
        )
    return data, corruption, info, model_cfg


def start_run(cfg: TrainConfig, data: Data, info: ObjectiveInfo, model_cfg: ModelConfig) -> None:
    # prepare() has checked the directory (check_fresh) before reading the data
    checkpoints.start(Path(cfg.out), run_config(cfg, model_cfg, info), data.tok.to_str())


def check_fresh(run_dir: Path) -> None:
    """Refuse an --out that holds a run, or files of another kind (a run that stopped before its
    first checkpoint is simply started again)."""
    if checkpoints.list_checkpoints(run_dir):
        raise UsageError(
            f"{run_dir} already holds a run",
            f"continue it with --resume {run_dir}, or pick another --out",
        )
    if run_dir.exists() and not run_dir.is_dir():
        raise UsageError(f"--out {run_dir} is a file", "give a directory for the run")
    if run_dir.is_dir() and any(run_dir.iterdir()) and not checkpoints.is_run(run_dir):
        raise UsageError(
            f"{run_dir} holds files that are not a run; they would be overwritten",
            "pick another --out (a new or empty directory)",
        )


def describe(
    model: Model,
    info: ObjectiveInfo,
    cfg: TrainConfig,
    device: torch.device,
    blocks: tuple[Blocks, Blocks],
    world: int,
) -> list[str]:
    counts = param_counts(model)
    parts = ", ".join(f"{k} {v / 1e6:.2f}M" for k, v in counts.items() if k != "total")
    shape = model.cfg
    layers = (
        f"{shape.n_layers}+{shape.n_decoder_layers}"
        if shape.arch == "encoder-decoder"
        else str(shape.n_layers)
    )
    return [
        f"objective {info.name} ({info.arch}), model {cfg.model}: {layers} layers x "
        f"{shape.d_model}, {counts['total'] / 1e6:.2f}M parameters ({parts})",
        f"data: {len(blocks[0]):,} train rows, {len(blocks[1]):,} held-out rows of <= "
        f"{cfg.seq_len} tokens, packing {info.packing}; {cfg.batch_size} x {cfg.grad_accum} x "
        f"{world} rows per step; device {device}",
    ]

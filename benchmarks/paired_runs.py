"""Paired training runs: model variants trained on identical batches, compared by held-out loss.

    python benchmarks/paired_runs.py --variant embed_norm=true             # vs the default model
    python benchmarks/paired_runs.py -o clm --variant embed_norm=true --seeds 0 1 --steps 400

Each seed builds one `TrainConfig`; every variant (a `ModelConfig` field changed, the baseline
first) starts from the same seed and reads the same batches in the same order (the trainer's
own `batch_fn`, `train_step` and `evaluate`), so the difference between two curves is the
model's alone. The default shape is the one issue #10 measured: 4 layers x 128 wide, 2 heads,
feed-forward 512, rows of 128 tokens, 16 rows a step, lr 1e-3. Prints one JSON object per
(seed, variant) with the held-out loss and accuracy every `--eval-every` steps.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout

from corruptions.registry import coerce
from objectives_cli.model.config import ModelConfig
from objectives_cli.model.model import Model
from objectives_cli.train.batches import batch_fn, eval_batches, packed
from objectives_cli.train.config import config_for, lr_at
from objectives_cli.train.losses import evaluate
from objectives_cli.train.runtime import amp_context, derived_seed, make_optimizer
from objectives_cli.train.setup import prepare
from objectives_cli.train.step import train_step

SHAPE = {"d_model": 128, "n_heads": 2, "d_ff": 512, "n_layers": 4}


def run(cfg: Any, setup: Any, model_cfg: ModelConfig, eval_every: int) -> list[dict[str, float]]:
    """Train one variant; the held-out figures at step 0 and every `eval_every` steps."""
    data, corruption, info, _ = setup
    device = torch.device("cpu")
    torch.manual_seed(derived_seed(cfg.seed, "init"))
    model = Model(model_cfg)
    opt = make_optimizer(cfg, model, device)
    blocks = packed(data, cfg, info)
    get_batch = batch_fn(cfg, blocks[0], corruption, data.vocab, info, device, 1)
    amp = amp_context(cfg, device)

    def held_out(step: int) -> dict[str, float]:
        batches = eval_batches(cfg, blocks[1], corruption, data.vocab, info, device)
        return {"step": step, **evaluate(model, batches, amp, cfg.seed)}

    curve = [held_out(0)]
    model.train()
    for step in range(cfg.steps):
        for group in opt.param_groups:
            group["lr"] = lr_at(cfg, step, step / cfg.steps)
        train_step(cfg, model, model, opt, get_batch, step, 0, 1, amp)
        if (step + 1) % eval_every == 0 or step + 1 == cfg.steps:
            curve.append(held_out(step + 1))
    return curve


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-o", "--objective", default="bert-mlm")
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="a ModelConfig field to change (repeatable: one variant each)",
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--eval-every", type=int, default=50)
    parser.add_argument("--eval-batches", type=int, default=16)
    args = parser.parse_args()
    torch.set_num_threads(1)
    variants: list[dict[str, Any]] = [{}]
    for text in args.variant:
        key, _, value = text.partition("=")
        variants.append({key: coerce(value, getattr(ModelConfig("encoder", 8), key), key)})
    for seed in args.seeds:
        with tempfile.TemporaryDirectory() as out:
            cfg = config_for(
                "tiny",
                objective=args.objective,
                seed=seed,
                steps=args.steps,
                lr=1e-3,
                seq_len=128,
                batch_size=16,
                eval_batches=args.eval_batches,
                out=out,
            )
            setup = prepare(cfg, resume=False)
        for variant in variants:
            model_cfg = replace(setup[3], **SHAPE, **variant)
            curve = run(cfg, setup, model_cfg, args.eval_every)
            print(
                json.dumps(
                    {"objective": args.objective, "seed": seed, "variant": variant, "curve": curve}
                ),
                flush=True,
            )


if __name__ == "__main__":
    main()

"""The loss the trainer logs and the one it backpropagates are the weighted sum of the terms, at
the papers' weights (stated here once, independently of `losses.LOSS_WEIGHTS`)."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

import pytest
import torch

from corruptions import create, make_generator
from objectives_cli.model.config import ModelConfig, preset
from objectives_cli.model.model import Model
from objectives_cli.train import checkpoints
from objectives_cli.train.loop import train
from objectives_cli.train.runtime import derived_seed
from objectives_cli.train.step import train_step
from tests.helpers import TINY, random_batch
from tests.train.conftest import QUIET, tiny

# ELECTRA (Clark et al. 2020, section 2 and appendix A): loss = L_MLM + lambda L_Disc,
# lambda = 50. Every other objective's terms (SpanBERT's SBO, BERT's NSP, ALBERT's SOP) weigh 1.
PAPER_WEIGHTS = {"rtd": 50.0}


def weighted(terms: dict[str, float]) -> float:
    return sum(PAPER_WEIGHTS.get(k, 1.0) * v for k, v in terms.items())


@pytest.mark.parametrize("name", ["electra", "spanbert"])
def test_the_logged_total_is_the_weighted_sum_of_the_terms(tmp_path: Path, name: str) -> None:
    cfg = tiny(tmp_path / "run", name, steps=2)
    train(cfg, QUIET)
    rows = checkpoints.read_metrics(cfg.out)
    for row in rows:
        prefix = "eval_" if "eval_loss" in row else ""
        terms = {
            k[len(prefix) : -len("_loss")]: v
            for k, v in row.items()
            if k.startswith(prefix) and k.endswith("_loss") and k != f"{prefix}loss"
        }
        if terms:
            assert len(terms) == 2, row
            assert row[f"{prefix}loss"] == pytest.approx(weighted(terms), rel=1e-6)


class Capture(torch.optim.SGD):
    """An optimizer that only records the gradients it is given."""

    def __init__(self, params: list[torch.nn.Parameter]) -> None:
        super().__init__(params, lr=0.0)
        self.grads: list[torch.Tensor] = []

    @torch.no_grad()
    def step(self, closure: object = None) -> None:  # type: ignore[override]
        self.grads = [p.grad.clone() for g in self.param_groups for p in g["params"]]


def test_the_gradient_is_that_of_the_weighted_sum() -> None:
    batch = create("electra")(random_batch(4, 20), TINY, make_generator(0))
    torch.manual_seed(0)
    shape = preset("tiny", "encoder")
    model = Model(ModelConfig(arch="encoder", vocab_size=TINY.size, electra=True, **shape))
    opt = Capture(list(model.parameters()))
    cfg = tiny(Path("unused"), "electra", clip=0.0)
    train_step(cfg, model, model, opt, lambda *a: (batch, 80), 0, 0, 1, nullcontext(), float)
    model.zero_grad()
    torch.manual_seed(derived_seed(cfg.seed, "step", 0, 0))  # ELECTRA samples as the step did
    outputs = model(batch)
    mlm_logits, mlm_targets = outputs["mlm"]
    rtd_logits, rtd_targets = outputs["rtd"]
    mlm = torch.nn.functional.cross_entropy(mlm_logits, mlm_targets)
    rtd = torch.nn.functional.binary_cross_entropy_with_logits(rtd_logits, rtd_targets)
    (mlm + PAPER_WEIGHTS["rtd"] * rtd).backward()
    expected = [p.grad for p in model.parameters()]
    assert len(opt.grads) == len(expected)
    for got, want in zip(opt.grads, expected, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-7)

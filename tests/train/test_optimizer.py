"""The optimizer: fused AdamW on CUDA and CPU (torch >= 2.4), decay on matrices only."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from objectives_cli.model.config import ModelConfig, preset
from objectives_cli.model.model import Model
from objectives_cli.train.runtime import fused_adamw, make_optimizer
from tests.train.conftest import tiny


def model() -> Model:
    return Model(ModelConfig(arch="encoder", vocab_size=100, **preset("tiny", "encoder")))


@pytest.mark.skipif(torch.__version__ < (2, 4), reason="torch 2.4 added the fused CPU kernel")
def test_adamw_is_fused_on_cpu(tmp_path: Path) -> None:
    assert fused_adamw(torch.device("cpu"))
    opt = make_optimizer(tiny(tmp_path), model(), torch.device("cpu"))
    assert opt.defaults["fused"] is True
    assert all(group["fused"] for group in opt.param_groups)


def test_weight_decay_on_matrices_only(tmp_path: Path) -> None:
    opt = make_optimizer(tiny(tmp_path, weight_decay=0.1), model(), torch.device("cpu"))
    decayed, plain = opt.param_groups
    assert decayed["weight_decay"] == 0.1
    assert all(p.dim() >= 2 for p in decayed["params"])
    assert plain["weight_decay"] == 0.0
    assert all(p.dim() < 2 for p in plain["params"])


def test_a_fused_step_matches_the_plain_loop(tmp_path: Path) -> None:
    """Same groups, same gradients: the fused kernel computes what AdamW's for-loop does."""
    torch.manual_seed(0)
    net, twin = model(), model()
    twin.load_state_dict(net.state_dict())
    fused = make_optimizer(tiny(tmp_path), net, torch.device("cpu"))
    name = {id(p): n for n, p in net.named_parameters()}
    twins = dict(twin.named_parameters())
    plain = torch.optim.AdamW(
        [
            {
                **g,
                "params": [twins[name[id(p)]] for p in g["params"]],
                "fused": False,
                "foreach": False,
            }
            for g in fused.param_groups
        ]
    )
    for _ in range(3):
        for p, q in zip(net.parameters(), twin.parameters(), strict=True):
            p.grad = torch.randn_like(p)
            q.grad = p.grad.clone()
        fused.step()
        plain.step()
    for (n, p), q in zip(net.named_parameters(), twin.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-7, msg=n)

"""The shared primitives of `_ops`: choosing k positions."""

from __future__ import annotations

import pytest
import torch

from corruptions import make_generator
from corruptions._ops import choose_k, pick_k


@pytest.mark.parametrize("width", [8, 64, 512])
def test_choose_k_takes_exactly_the_budget_inside_allowed(width: int) -> None:
    """Rows with budgets from 0 to past their allowed count; wide rows with many allowed take
    the narrow-slice path of `pick_k`, whose unused picks must not unset a chosen position."""
    gen = torch.Generator().manual_seed(0)
    allowed = torch.rand(64, width, generator=gen) < torch.linspace(0.05, 1.0, 64).unsqueeze(1)
    k = torch.randint(0, width // 8 + 3, (64,), generator=gen)
    k[-1] = width // 5  # one large budget: the other rows' unused picks fill (B, max k)
    for seed in range(5):
        chosen = choose_k(allowed, k, make_generator(seed))
        assert not (chosen & ~allowed).any()
        assert chosen.sum(1).tolist() == torch.minimum(k, allowed.sum(1)).tolist()


def test_pick_k_is_choose_k_in_a_random_order() -> None:
    allowed = torch.ones(4, 512, dtype=torch.bool)
    k = torch.tensor([20, 77, 3, 0])
    idx, valid = pick_k(allowed, k, make_generator(1))
    chosen = choose_k(allowed, k, make_generator(1))
    for row in range(4):
        picked = idx[row][valid[row]]
        assert sorted(picked.tolist()) == chosen[row].nonzero().flatten().tolist()
    assert idx[1][valid[1]].tolist() != sorted(idx[1][valid[1]].tolist())


def test_choose_k_is_uniform() -> None:
    allowed = torch.ones(20_000, 10, dtype=torch.bool)
    allowed[:, 3] = False
    chosen = choose_k(allowed, torch.full((20_000,), 3), make_generator(2))
    share = chosen.double().mean(0)
    assert share[3] == 0
    assert torch.allclose(
        share[allowed[0]], torch.full((9,), 3 / 9, dtype=torch.float64), atol=0.015
    )

"""Every registered objective trains: a tiny model, 30 steps of 8 rows of 32 tokens on CPU.

Margin: the held-out loss (all terms, weighted) must fall by at least 10% of its value before
training; from ln(8000) ≈ 9.0 per token term that is ≥ 0.9 nats, and every objective measured
falls by 20-40% (docs/training.md). One objective per model shape (architecture, the extras the
model reads, ELECTRA or not) runs in the fast group; the others, whose model path is the same,
are marked slow, so an objective merged later is tested without any edit here.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from corruptions import create, get, list_objectives, make_generator
from objectives_cli.train.batches import is_electra
from objectives_cli.train.checkpoints import read_metrics
from objectives_cli.train.loop import train
from objectives_cli.train.setup import prepare
from tests.helpers import TINY, random_batch
from tests.train.conftest import QUIET, tiny

MODEL_KEYS = {
    "token_type_ids",
    "next_sentence_label",
    "sentence_order_label",
    "prefix_lengths",
    "attention_mode",
    "perm_rank",
    "span_offset",
    "decoder_position_ids",
}
MARGIN = 0.10


def signature(name: str) -> tuple[object, ...]:
    out = create(name)(random_batch(4, 48, word_every=2, sentence_every=7), TINY, make_generator(0))
    return get(name).arch, tuple(sorted(MODEL_KEYS & set(out.extras))), is_electra(name)


def cases() -> list[object]:
    seen: set[tuple[object, ...]] = set()
    params = []
    for objective in list_objectives():
        shape = signature(objective.name)
        marks = [pytest.mark.slow] if shape in seen else []
        seen.add(shape)
        params.append(pytest.param(objective.name, marks=marks, id=objective.name))
    return params


@pytest.mark.parametrize("name", cases())
def test_held_out_loss_falls(name: str, tmp_path) -> None:
    summary = train(tiny(tmp_path / name, name, steps=30, lr=3e-3), QUIET)
    start, end = summary["start_eval_loss"], summary["eval_loss"]
    assert end < (1 - MARGIN) * start, f"{name}: held-out loss {start:.3f} -> {end:.3f}"
    rows = [r for r in read_metrics(tmp_path / name) if "loss" in r]
    assert [r["step"] for r in rows] == list(range(1, 31))
    terms = {k for k in summary if k.startswith("eval_") and k.endswith("_acc")}
    assert terms, "every objective reports an accuracy"


@pytest.mark.parametrize(
    ("name", "packing"),
    [
        ("bert-mlm", "documents"),
        ("spanbert", "documents"),
        ("xlnet-plm", "documents"),
        ("clm", "rows"),
        ("prefix-lm", "rows"),  # one EOS and one prefix split per row
        ("nsp", "rows"),
        ("t5-span", "rows"),
    ],
)
def test_auto_packing(tmp_path: Path, name: str, packing: str) -> None:
    _, _, info, _ = prepare(tiny(tmp_path, name), resume=False)
    assert info.packing == packing


def test_sbo_offset_table_follows_max_pair_targets(tmp_path: Path) -> None:
    for targets in (15, 20):
        cfg = tiny(tmp_path, "spanbert", params=(("max_pair_targets", str(targets)),))
        assert prepare(cfg, resume=False)[3].sbo_offsets == targets

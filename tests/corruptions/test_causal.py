"""Causal LM (reference §4.8) and prefix LM (§4.14): exact invariants and the split's uniformity."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from corruptions import IGNORE, Op, Tokens, create, make_generator
from corruptions._t5 import prefix_seq2seq, prefix_split
from tests.helpers import ORDINARY, TINY, corpus_tokens, corpus_vocab, tokens

rows_strategy = st.lists(
    st.lists(st.sampled_from(ORDINARY), min_size=1, max_size=80), min_size=1, max_size=4
)


def chi_square_uniform(values: torch.Tensor, low: int, high: int, bins: int = 10) -> float:
    """Pearson's statistic of integer `values` against uniform on [low, high] in equal bins."""
    width = (high - low + 1) // bins
    assert width * bins == high - low + 1
    observed = torch.bincount((values - low) // width, minlength=bins).double()
    expected = values.numel() / bins
    return float(((observed - expected) ** 2 / expected).sum())


# --- clm ----------------------------------------------------------------------------------------


@given(rows=rows_strategy)
def test_clm_labels_are_the_inputs_plus_eos(rows: list[list[int]]) -> None:
    out = create("clm")(tokens(rows), TINY, make_generator(0))
    for b, row in enumerate(rows):
        n = len(row)
        assert out.input_ids[b, : n + 1].tolist() == [*row, TINY.eos]
        assert out.labels[b, 1 : n + 1].tolist() == [*row[1:], TINY.eos]
        assert out.labels[b, 0] == IGNORE  # no position predicts the first token
        assert int((out.labels[b] != IGNORE).sum()) == n  # n - 1 next tokens + EOS
        assert int(out.attention_mask[b].sum()) == n + 1
        assert (out.labels[b, n + 1 :] == IGNORE).all()
        assert (out.input_ids[b, n + 1 :] == TINY.pad).all()


def test_clm_without_eos_scores_n_minus_one_positions() -> None:
    batch = corpus_tokens(200_000, 512)
    out = create("clm", append_eos=False)(batch, corpus_vocab(), make_generator(0))
    assert torch.equal(out.input_ids, batch.ids)
    assert torch.equal((out.labels != IGNORE).sum(1), (batch.lengths - 1).clamp(min=0))
    real = batch.real
    real[:, 0] = False
    assert torch.equal(out.labels[real], batch.ids[real])
    assert out.ops is not None
    assert (out.ops[:, 1:][batch.real[:, 1:]] == int(Op.PREDICT)).all()


def test_clm_never_predicts_special_ids_in_content() -> None:
    row = [11, TINY.unk, 12, TINY.mask, 13]
    out = create("clm")(tokens([row]), TINY, make_generator(0))
    assert out.labels.tolist() == [[IGNORE, IGNORE, 12, IGNORE, 13, TINY.eos]]
    assert out.ops is not None
    assert out.ops.tolist() == [[0, 0, 3, 0, 3]]


# --- prefix-lm (decoder-only) -------------------------------------------------------------------


@given(rows=rows_strategy, seed=st.integers(0, 2**32 - 1))
def test_prefix_lm_scores_exactly_the_suffix(rows: list[list[int]], seed: int) -> None:
    out = create("prefix-lm")(tokens(rows), TINY, make_generator(seed))
    split = out.extras["prefix_lengths"]
    assert out.ops is not None
    for b, row in enumerate(rows):
        n, s = len(row), int(split[b])
        assert 1 <= s <= max(n - 1, 1)
        assert out.input_ids[b, : n + 1].tolist() == [*row, TINY.eos]
        assert (out.labels[b, :s] == IGNORE).all()  # the bidirectional prefix carries no loss
        assert out.labels[b, s : n + 1].tolist() == [*row[s:], TINY.eos]
        assert int((out.labels[b] != IGNORE).sum()) == n - s + 1  # L - s, EOS counted in L
        assert out.ops[b, :s].tolist() == [int(Op.CONTEXT)] * s
        assert out.ops[b, s:n].tolist() == [int(Op.PREDICT)] * (n - s)


def test_prefix_lm_one_token_row_predicts_only_eos() -> None:
    out = create("prefix-lm")(tokens([[42]]), TINY, make_generator(0))
    assert out.extras["prefix_lengths"].tolist() == [1]
    assert out.labels.tolist() == [[IGNORE, TINY.eos]]
    out = create("prefix-lm", append_eos=False)(tokens([[42]]), TINY, make_generator(0))
    assert out.labels.tolist() == [[IGNORE]]


def test_prefix_lm_split_is_uniform() -> None:
    n, rows = 21, 20_000  # 420k tokens; s uniform on [1, 20]
    batch = Tokens(torch.full((rows, n), 11), torch.full((rows,), n))
    split = create("prefix-lm")(batch, TINY, make_generator(0)).extras["prefix_lengths"]
    assert int(split.min()) == 1
    assert int(split.max()) == n - 1
    assert split.double().mean().item() == pytest.approx(n / 2, rel=0.005)
    assert chi_square_uniform(split, 1, n - 1) < 27.88  # 10 bins, 9 dof, p = 0.001


def test_prefix_split_mean_and_chi_square_over_many_rows() -> None:
    lengths = torch.full((200_000,), 101)
    k = prefix_split(lengths, 0.5, make_generator(1))
    assert k.double().mean().item() == pytest.approx(101 / 2, rel=0.005)
    assert chi_square_uniform(k, 1, 100) < 27.88
    # T5's noise density r: k uniform on [round((1 - 2r)(n - 1)), n - 1]; r = 0.25 -> 75% prefix
    k = prefix_split(lengths, 0.25, make_generator(2))
    assert int(k.min()) == 50
    assert int(k.max()) == 100
    assert k.double().mean().item() == pytest.approx(75.0, rel=0.005)
    assert prefix_split(torch.tensor([0, 1, 2]), 0.5, make_generator(0)).tolist() == [0, 0, 1]
    with pytest.raises(ValueError, match="density"):
        prefix_split(lengths, 0.6, make_generator(0))


# --- encoder-decoder prefix LM (UL2's S-denoiser) -----------------------------------------------


@given(rows=rows_strategy, seed=st.integers(0, 2**32 - 1))
def test_prefix_seq2seq_inputs_then_targets_give_the_source(
    rows: list[list[int]], seed: int
) -> None:
    batch = tokens(rows)
    split = prefix_split(batch.lengths, 0.5, make_generator(seed))
    out = prefix_seq2seq(batch.ids, batch.lengths, split, TINY, lead=TINY.extra["[S2S]"])
    assert out.decoder_input_ids is not None
    for b, row in enumerate(rows):
        k = int(split[b])
        inputs = out.input_ids[b][out.attention_mask[b]].tolist()
        targets = out.labels[b][out.labels[b] != IGNORE].tolist()
        assert inputs == [TINY.extra["[S2S]"], *row[:k], TINY.eos]
        assert targets == [*row[k:], TINY.eos]
        assert out.decoder_input_ids[b, : len(targets)].tolist() == [TINY.pad, *targets[:-1]]


def test_prefix_seq2seq_one_token_row_has_an_empty_prefix() -> None:
    batch = tokens([[42]])
    split = prefix_split(batch.lengths, 0.5, make_generator(0))
    out = prefix_seq2seq(batch.ids, batch.lengths, split, TINY)
    assert out.input_ids.tolist() == [[TINY.eos]]
    assert out.labels.tolist() == [[42, TINY.eos]]


def test_prefix_seq2seq_keeps_specials_in_the_targets_without_loss() -> None:
    row = [11, 12, 13, TINY.unk, 14]
    batch = tokens([row])
    out = prefix_seq2seq(batch.ids, batch.lengths, torch.tensor([2]), TINY)
    assert out.labels.tolist() == [[13, IGNORE, 14, TINY.eos]]
    assert out.decoder_input_ids is not None
    assert out.decoder_input_ids.tolist() == [[TINY.pad, 13, TINY.unk, 14]]
    assert out.ops is not None
    assert out.ops.tolist() == [[7, 7, 3, 0, 3]]

"""UL2 mixture of denoisers (reference §4.13): rates, paradigm tokens, per-denoiser budgets."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from corruptions import (
    IGNORE,
    InvalidParameter,
    NotEnoughSentinels,
    ObjectivesError,
    Op,
    Vocab,
    create,
    make_generator,
)
from corruptions.ul2 import DENOISERS
from tests.corruptions.test_span_corruption import reconstruct, rows_of
from tests.helpers import ORDINARY, TINY, corpus_tokens, corpus_vocab, random_batch, tokens

DEFAULT_RATES = (0.2, 0.2, 0.1, 0.1, 0.1, 0.1, 0.2)
LEADS = {"R": TINY.extra["[NLU]"], "X": TINY.extra["[NLG]"], "S": TINY.extra["[S2S]"]}


def run_lengths(flags: torch.Tensor) -> torch.Tensor:
    """(B,) number of runs of True per row."""
    starts = flags.clone()
    starts[:, 1:] &= ~flags[:, :-1]
    return starts.sum(1)


@pytest.mark.parametrize("rates", [DEFAULT_RATES, (1, 1, 1, 1, 1, 1, 1), (0, 0, 0, 0, 0, 0, 1)])
def test_mixture_frequencies_over_20k_rows(rates: tuple[float, ...]) -> None:
    batch = random_batch(20_000, 12, seed=1)
    out = create("ul2", rates=rates)(batch, TINY, make_generator(0))
    counts = torch.bincount(out.extras["denoiser"], minlength=7).double() / 20_000
    expected = torch.tensor(rates, dtype=torch.float64) / sum(rates)
    assert torch.allclose(counts, expected, atol=0.01), counts


def test_paradigm_token_opens_every_input() -> None:
    batch = random_batch(2_000, 40, seed=2)
    out = create("ul2")(batch, TINY, make_generator(1))
    modes = [DENOISERS[int(d)][0] for d in out.extras["denoiser"]]
    assert out.input_ids[:, 0].tolist() == [LEADS[m] for m in modes]
    bare = create("ul2", prompt=False)(batch, TINY, make_generator(1))
    assert torch.equal(bare.input_ids[:, 0], batch.ids[:, 0])  # no paradigm token: the text


def test_each_span_denoiser_cuts_round_r_n_tokens_in_its_spans() -> None:
    batch, vocab = corpus_tokens(200_000, 512), corpus_vocab()
    out = create("ul2")(batch, vocab, make_generator(3))
    assert out.ops is not None
    cut = out.ops == int(Op.SPAN)
    n = batch.lengths.clamp(min=2)
    choice = out.extras["denoiser"]
    assert set(choice.tolist()) == set(range(7))
    for index, (mode, mean, rate) in enumerate(DENOISERS):
        rows = (choice == index) & (batch.lengths >= 2)
        if mode == "S":
            assert not cut[rows].any()
            continue
        noise = torch.minimum(torch.round(n[rows].double() * rate).long().clamp(min=1), n[rows] - 1)
        spans = torch.round(noise.double() / mean).long().clamp(1).minimum(n[rows] - noise)
        assert torch.equal(cut[rows].sum(1), noise), (mode, mean, rate)  # round(r n) of n
        assert torch.equal(run_lengths(cut[rows]), spans)  # mean span = noise / spans exactly
        full = rows & (batch.lengths == 512)
        if full.any():
            fraction = cut[full].double().mean(1)
            assert torch.allclose(fraction, torch.tensor(round(rate * 512) / 512).double())


def test_s_rows_are_prefix_plus_suffix_and_span_rows_reconstruct() -> None:
    batch = random_batch(300, 60, seed=4)
    out = create("ul2")(batch, TINY, make_generator(5))
    inputs, targets = rows_of(out)
    for b, (x, y) in enumerate(zip(inputs, targets, strict=True)):
        mode = DENOISERS[int(out.extras["denoiser"][b])][0]
        assert x[0] == LEADS[mode]
        source = batch.ids[b].tolist()
        assert reconstruct(x[1:], y) == source
        if mode == "S":
            k = len(x) - 2
            assert 1 <= k <= 59
            assert y == [*source[k:], TINY.eos]
            assert int((out.labels[b] != IGNORE).sum()) == 60 - k + 1


@given(
    rows=st.lists(
        st.lists(st.sampled_from(ORDINARY), min_size=1, max_size=100), min_size=1, max_size=6
    ),
    seed=st.integers(0, 2**32 - 1),
)
def test_reconstruction_holds_for_every_denoiser(rows: list[list[int]], seed: int) -> None:
    out = create("ul2")(tokens(rows), TINY, make_generator(seed))
    inputs, targets = rows_of(out)
    for row, x, y in zip(rows, inputs, targets, strict=True):
        assert reconstruct(x[1:], y) == row


def test_long_rows_need_more_sentinels_than_t5_has() -> None:
    # (mu 3, r .5): 101 spans from 603 tokens on (round(301.5) = 302 noise tokens, 302 / 3 ->
    # 101); checked whichever rows draw that denoiser
    batch = random_batch(1, 603)
    with pytest.raises(NotEnoughSentinels, match="needs 101"):
        create("ul2", rates=(1, 0, 0, 0, 0, 0, 0))(batch, TINY, make_generator(0))
    create("ul2")(random_batch(1, 602), TINY, make_generator(0))
    out = create("ul2", cap_spans=True, rates=(0, 0, 1, 0, 0, 0, 0))(
        random_batch(4, 1000), TINY, make_generator(0)
    )
    assert out.ops is not None
    cut = out.ops == int(Op.SPAN)
    assert (cut.sum(1) == 500).all()
    assert (run_lengths(cut) == 100).all()


def test_missing_paradigm_tokens_are_a_clear_error() -> None:
    plain = Vocab(size=300, pad=3, unk=1, bos=5, eos=6, mask=7, sentinels=TINY.sentinels)
    with pytest.raises(ObjectivesError, match=r"no paradigm token \[NLU\]"):
        create("ul2")(random_batch(2, 20), plain, make_generator(0))
    out = create("ul2", prompt=False)(random_batch(2, 20), plain, make_generator(0))
    assert out.input_ids.size(0) == 2


@pytest.mark.parametrize(
    "params",
    [
        {"rates": (1.0, 1.0)},
        {"rates": (0, 0, 0, 0, 0, 0, 0)},
        {"denoisers": (("Q", 3.0, 0.15),), "rates": (1.0,)},
        {"denoisers": (("S", 0.0, 0.75),), "rates": (1.0,)},
        {"denoisers": (("R", 0.5, 0.15),), "rates": (1.0,)},
        {"tokens": ("[R]", "[X]")},
    ],
)
def test_bad_settings_are_rejected(params: dict[str, object]) -> None:
    with pytest.raises(InvalidParameter):
        create("ul2", **params)


def test_settings_from_the_command_line() -> None:
    ul2 = create(
        "ul2",
        rates="1,1,1,1,1,1,1",
        denoisers='[["R",3,0.15],["S",0,0.25],'
        '["X",3,0.5],["X",8,0.5],["X",64,0.15],["X",64,0.5],["R",8,0.15]]',
    )
    out = ul2(random_batch(3_000, 41, seed=6), TINY, make_generator(0))
    s_rows = out.extras["denoiser"] == 1
    split = out.attention_mask[s_rows].sum(1) - 2  # [S2S] prefix </s>
    assert int(split.min()) >= 20  # r = 0.25: k uniform on [round(0.5 * 40), 40]
    assert split.double().mean().item() == pytest.approx(30.0, abs=0.5)

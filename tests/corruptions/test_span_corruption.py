"""T5 span corruption (reference §4.7): exact arithmetic, reconstruction, span statistics."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from corruptions import (
    IGNORE,
    Corrupted,
    InvalidParameter,
    NotEnoughSentinels,
    Op,
    Tokens,
    Vocab,
    create,
    make_generator,
)
from corruptions._t5 import random_composition, random_spans_noise_mask, span_counts
from corruptions.span_corruption import random_spans_helper
from tests.helpers import ORDINARY, TINY, corpus_tokens, corpus_vocab, random_batch, tokens

SENTINEL_INDEX = {s: k for k, s in enumerate(TINY.sentinels)}


def rows_of(out: Corrupted) -> tuple[list[list[int]], list[list[int]]]:
    """(inputs, targets) per row without padding; the targets end at the last scored token (EOS)
    and are read from the decoder inputs, which also hold tokens without loss."""
    assert out.decoder_input_ids is not None
    pairs = zip(out.input_ids, out.attention_mask, strict=True)
    inputs = [row[mask].tolist() for row, mask in pairs]
    targets = []
    for labels, decoder in zip(out.labels, out.decoder_input_ids, strict=True):
        n = int((labels != IGNORE).nonzero().max()) + 1
        assert labels[n - 1] == TINY.eos
        targets.append([*decoder[1:n].tolist(), TINY.eos])
    return inputs, targets


def reconstruct(inputs: list[int], targets: list[int], vocab: Vocab = TINY) -> list[int]:
    """Fill each input sentinel with the target tokens that follow the same sentinel; target
    tokens before any sentinel (a prefix LM's suffix) go after the inputs."""
    index = {s: k for k, s in enumerate(vocab.sentinels)}
    assert inputs[-1] == vocab.eos
    assert targets[-1] == vocab.eos
    fills: dict[int, list[int]] = {}
    tail: list[int] = []
    current = tail
    for token in targets[:-1]:
        if token in index:
            current = fills.setdefault(index[token], [])
        else:
            current.append(token)
    out: list[int] = []
    for token in inputs[:-1]:
        out.extend(fills[index[token]] if token in index else [token])
    return out + tail


def sentinel_order(ids: list[int]) -> list[int]:
    return [SENTINEL_INDEX[t] for t in ids if t in SENTINEL_INDEX]


def t5(rows: list[list[int]], seed: int = 0, **params: object) -> Corrupted:
    return create("t5-span", **params)(tokens(rows), TINY, make_generator(seed))


def full_pieces(length: int = 568) -> Tokens:
    """The rows of the default corpus that fill `length` tokens, without special ids."""
    batch, vocab = corpus_tokens(200_000, length), corpus_vocab()
    keep = (batch.lengths == length) & ~(vocab.is_special(batch.ids) & batch.real).any(1)
    assert int(keep.sum()) >= 100
    return Tokens(batch.ids[keep], batch.lengths[keep])


# --- exact arithmetic ---------------------------------------------------------------------------


def test_a_full_568_token_piece_gives_the_reference_lengths() -> None:
    batch, vocab = full_pieces(), corpus_vocab()
    out = create("t5-span")(batch, vocab, make_generator(0))
    assert out.ops is not None
    cut = out.ops == int(Op.SPAN)
    starts = cut.clone()
    starts[:, 1:] &= ~cut[:, :-1]
    sentinels = torch.isin(out.input_ids, vocab.sentinel_tensor(torch.device("cpu")))
    assert (cut.sum(1) == 85).all()
    assert (starts.sum(1) == 28).all()
    assert (sentinels.sum(1) == 28).all()
    assert (torch.isin(out.labels, vocab.sentinel_tensor(torch.device("cpu"))).sum(1) == 28).all()
    assert out.input_ids.shape[1] == 512  # 483 + 28 + 1
    assert out.attention_mask.all()
    assert out.labels.shape[1] == 114  # 85 + 28 + 1
    assert (out.labels != IGNORE).all()
    assert (out.input_ids[:, -1] == vocab.eos).all()
    assert (out.labels[:, -1] == vocab.eos).all()
    assert (out.decoder_input_ids[:, 0] == vocab.pad).all()
    assert torch.equal(out.decoder_input_ids[:, 1:], out.labels[:, :-1])
    assert not cut[:, 0].any()  # starts with non-noise
    assert cut[:, -1].all()  # ends with noise


@pytest.mark.parametrize(
    ("inputs_length", "density", "mean", "expected"),
    [
        (512, 0.15, 3.0, (568, 114)),
        (128, 0.15, 3.0, (141, 29)),
        (256, 0.15, 3.0, (284, 58)),
        (1024, 0.15, 3.0, (1137, 229)),
        (512, 0.15, 8.0, (588, 100)),  # the UL2 denoisers (reference §4.13 table)
        (512, 0.5, 3.0, (766, 512)),
        (512, 0.5, 8.0, (908, 512)),
        (512, 0.15, 64.0, (600, 92)),
        (512, 0.5, 64.0, (1006, 512)),
        (9, 0.5, 2.0, (10, 9)),  # density 0.5 rule: (11, 10) would give targets > inputs
    ],
)
def test_random_spans_helper(
    inputs_length: int, density: float, mean: float, expected: tuple[int, int]
) -> None:
    assert random_spans_helper(inputs_length, density, mean) == expected


def test_span_counts_round_half_to_even_in_float64() -> None:
    # 0.15 * 30 is 4.5 -> 4, half to even (so in TF's float32 too); 28.33 -> 28 spans
    lengths = torch.tensor([30, 568, 1, 2, 10])
    work, noise, spans = span_counts(lengths, 0.15, 3.0)
    assert work.tolist() == [30, 568, 2, 2, 10]
    assert noise.tolist() == [4, 85, 1, 1, 2]  # clamped to [1, n - 1]
    assert spans.tolist() == [1, 28, 1, 1, 1]
    # density 0.5, odd n: noise 4 > non-noise 3; PR #22938 counts spans on min(4, 3)
    assert span_counts(torch.tensor([7]), 0.5, 1.0)[2].tolist() == [3]


def test_one_and_two_token_rows() -> None:
    s0 = TINY.sentinels[0]
    out = t5([[42]])  # the mask is drawn on 2 positions and cut back to 1: no noise
    assert out.input_ids.tolist() == [[42, TINY.eos]]
    assert out.labels.tolist() == [[s0, TINY.eos]]
    out = t5([[42, 43]])
    assert out.input_ids.tolist() == [[42, s0, TINY.eos]]
    assert out.labels.tolist() == [[s0, 43, TINY.eos]]
    assert out.decoder_input_ids.tolist() == [[TINY.pad, s0, 43]]


def test_noise_fraction_per_row_is_round_of_density_times_length() -> None:
    batch, vocab = corpus_tokens(200_000, 512), corpus_vocab()
    out = create("t5-span")(batch, vocab, make_generator(1))
    n = batch.lengths.clamp(min=2)
    expected = torch.minimum(torch.round(n.double() * 0.15).long().clamp(min=1), n - 1)
    expected = torch.where(batch.lengths >= 2, expected, 0)
    assert torch.equal((out.ops == int(Op.SPAN)).sum(1), expected)


# --- properties ---------------------------------------------------------------------------------


@given(
    rows=st.lists(
        st.lists(st.sampled_from(ORDINARY), min_size=1, max_size=120), min_size=1, max_size=4
    ),
    seed=st.integers(0, 2**32 - 1),
    density=st.sampled_from([0.15, 0.3, 0.5, 0.8]),
    mean=st.sampled_from([1.0, 3.0, 8.0]),
    roll=st.booleans(),
)
def test_filling_the_targets_into_the_sentinels_gives_the_source(
    rows: list[list[int]], seed: int, density: float, mean: float, roll: bool
) -> None:
    out = t5(rows, seed, density=density, mean_span=mean, random_roll=roll)
    inputs, targets = rows_of(out)
    assert out.ops is not None
    for row, x, y, ops in zip(rows, inputs, targets, out.ops, strict=True):
        assert reconstruct(x, y) == row
        n_spans = len(sentinel_order(x))
        assert sentinel_order(x) == list(range(n_spans))  # <0>, <1>, ... in order
        assert sentinel_order(y)[:n_spans] == list(range(n_spans))
        assert len(sentinel_order(y)) - n_spans in (0, 1)  # T5's trailing sentinel
        assert int((ops == int(Op.SPAN)).sum()) == len(y) - len(sentinel_order(y)) - 1
        if not roll and len(row) >= 2:
            assert ops[0] == int(Op.KEEP)
            assert ops[len(row) - 1] == int(Op.SPAN)


@given(seed=st.integers(0, 2**32 - 1), n=st.integers(2, 300))
def test_sentinel_ids_strictly_decrease_with_the_projects_layout(seed: int, n: int) -> None:
    out = t5([[ORDINARY[i % len(ORDINARY)] for i in range(n)]], seed)
    x = [t for t in out.input_ids[0].tolist() if t in SENTINEL_INDEX]
    assert all(a - b == 1 for a, b in itertools.pairwise(x))  # TINY counts down from 199


def test_special_ids_are_never_cut_and_the_rest_still_reconstructs() -> None:
    specials = [TINY.unk, TINY.mask, TINY.bos, TINY.eos, TINY.extra["[NLU]"]]
    row = [ORDINARY[i % 50] if i % 7 else specials[i % 5] for i in range(300)]
    out = t5([row], 3, density=0.5)
    inputs, targets = rows_of(out)
    assert out.ops is not None
    is_special = TINY.is_special(torch.tensor(row))
    assert not (out.ops[0][is_special] == int(Op.SPAN)).any()
    assert reconstruct(inputs[0], targets[0]) == row
    assert not TINY.is_special(
        out.labels[0][~torch.isin(out.labels[0], torch.tensor([IGNORE, TINY.eos, *TINY.sentinels]))]
    ).any()


def test_random_roll_moves_the_cut_away_from_the_end() -> None:
    batch = random_batch(400, 40, seed=2)
    plain = create("t5-span")(batch, TINY, make_generator(0))
    rolled = create("t5-span", random_roll=True)(batch, TINY, make_generator(0))
    assert plain.ops is not None
    assert rolled.ops is not None
    assert (plain.ops[:, -1] == int(Op.SPAN)).all()
    assert (plain.ops[:, 0] == int(Op.KEEP)).all()
    assert 0.05 < (rolled.ops[:, -1] == int(Op.SPAN)).float().mean() < 0.4
    assert (rolled.ops[:, 0] == int(Op.SPAN)).any()
    span = int(Op.SPAN)
    assert torch.equal((rolled.ops == span).sum(1), (plain.ops == span).sum(1))  # same budget


def test_too_many_spans_for_the_sentinels_raises() -> None:
    few = Vocab(size=300, pad=3, unk=1, bos=5, eos=6, mask=7, sentinels=(199, 198, 197))
    batch = random_batch(2, 80)  # 12 noise tokens in 4 spans
    with pytest.raises(NotEnoughSentinels, match="needs 4 sentinel tokens but the vocabulary"):
        create("t5-span")(batch, few, make_generator(0))
    with pytest.raises(NotEnoughSentinels):  # reference §4.7: density 0.5 at 766 -> 128 spans
        create("t5-span", density=0.5)(random_batch(1, 766), TINY, make_generator(0))
    assert create("t5-span")(random_batch(2, 60), few, make_generator(0)).labels.size(0) == 2


@pytest.mark.parametrize(("density", "mean"), [(0.0, 3.0), (1.0, 3.0), (0.15, 0.5)])
def test_impossible_settings_are_rejected(density: float, mean: float) -> None:
    with pytest.raises(InvalidParameter, match=r"density|mean_span"):
        create("t5-span", density=density, mean_span=mean)


def test_compositions_are_exact_and_positive() -> None:
    gen = make_generator(0)
    totals = torch.tensor([85, 483, 7, 1, 40])
    parts = torch.tensor([28, 28, 7, 1, 1])
    ends = random_composition(totals, parts, gen)
    sizes = torch.diff(ends, dim=1, prepend=torch.zeros_like(ends[:, :1]))
    used = torch.arange(ends.size(1)) < parts.unsqueeze(1)
    assert (sizes[used] > 0).all()
    assert (sizes[~used] == 0).all()
    assert torch.equal(ends[:, -1], totals)


def test_rows_of_different_lengths_share_one_pass() -> None:
    lengths = torch.tensor([568, 100, 2, 1, 0, 30])
    noise = random_spans_noise_mask(lengths, 568, 0.15, 3.0, make_generator(4))
    assert (noise.sum(1) == torch.tensor([85, 15, 1, 0, 0, 4])).all()
    assert not noise[1, 100:].any()
    assert not noise[3:5].any()


# --- statistics ---------------------------------------------------------------------------------


def run_lengths(flags: torch.Tensor) -> torch.Tensor:
    """Lengths of all maximal runs of True, over every row."""
    padded = torch.nn.functional.pad(flags.long(), (1, 1))
    change = torch.diff(padded, dim=1)
    starts, ends = (change == 1).nonzero()[:, 1], (change == -1).nonzero()[:, 1]
    return ends - starts


def composition_pmf(total: int, parts: int, size: int) -> float:
    return math.comb(total - size - 1, parts - 2) / math.comb(total - 1, parts - 1)


def test_span_lengths_follow_the_uniform_composition_over_a_million_tokens() -> None:
    batch, vocab = full_pieces(), corpus_vocab()
    corrupt = create("t5-span")
    seeds = range(math.ceil(1_000_000 / batch.ids.numel()))
    cut = [corrupt(batch, vocab, make_generator(seed)).ops == int(Op.SPAN) for seed in seeds]
    flags = torch.cat(cut)
    assert flags.numel() >= 1_000_000
    spans, gaps = run_lengths(flags), run_lengths(~flags)
    assert len(spans) == 28 * flags.size(0)
    assert spans.double().mean().item() == pytest.approx(85 / 28, abs=1e-9)
    for size, p in [(1, 0.321), (2, 0.221), (3, 0.151), (4, 0.102), (5, 0.069)]:
        assert composition_pmf(85, 28, size) == pytest.approx(p, abs=5e-4)
        assert (spans == size).double().mean().item() == pytest.approx(p, abs=0.01), size
    assert gaps.double().mean().item() == pytest.approx(483 / 28, abs=1e-9)
    assert (gaps == 1).double().mean().item() == pytest.approx(
        composition_pmf(483, 28, 1), abs=0.006
    )


def test_iid_noise_rate_over_200k_tokens() -> None:
    batch, vocab = corpus_tokens(200_000, 512), corpus_vocab()
    out = create("t5-iid")(batch, vocab, make_generator(0))
    assert batch.real.sum() >= 200_000
    rate = (out.ops == int(Op.SPAN)).sum() / batch.real.sum()
    assert rate.item() == pytest.approx(0.15, abs=0.004)  # 5 standard errors
    for row in range(0, batch.ids.size(0), 50):
        inputs = out.input_ids[row][out.attention_mask[row]].tolist()
        targets = out.labels[row][out.labels[row] != IGNORE].tolist()
        source = batch.ids[row][: batch.lengths[row]].tolist()
        assert reconstruct(inputs, targets, vocab) == source


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.gpu
@pytest.mark.parametrize("name", ["t5-span", "t5-iid", "clm", "prefix-lm", "ul2"])
def test_runs_on_cuda(name: str) -> None:
    batch = corpus_tokens(200_000, 512).to("cuda")
    out = create(name)(batch, corpus_vocab(), make_generator(0, device="cuda"))
    assert out.input_ids.is_cuda
    assert out.labels.is_cuda

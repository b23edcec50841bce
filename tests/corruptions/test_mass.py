"""MASS (objectives.md §4.5): one fragment of half the sentence, decoder reads the token before."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from corruptions import IGNORE, InvalidParameter, Op, Tokens, create, make_generator
from tests.helpers import ORDINARY, TINY, corpus_tokens, corpus_vocab, tokens


def sentences(n_rows: int, max_len: int, seed: int, min_len: int = 1) -> Tokens:
    """Rows of random ordinary ids with lengths uniform on min_len..max_len."""
    gen = torch.Generator().manual_seed(seed)
    pool = torch.tensor(ORDINARY)
    ids = pool[torch.randint(0, len(pool), (n_rows, max_len), generator=gen)]
    lengths = torch.randint(min_len, max_len + 1, (n_rows,), generator=gen)
    real = torch.arange(max_len).unsqueeze(0) < lengths.unsqueeze(1)
    return Tokens(ids.masked_fill(~real, TINY.pad), lengths)


def framed(batch: Tokens) -> torch.Tensor:
    """`<s> x </s>` padded: the original the fragment positions refer to."""
    rows = [
        [TINY.bos, *r[: int(n)].tolist(), TINY.eos]
        for r, n in zip(batch.ids, batch.lengths, strict=True)
    ]
    return tokens(rows).ids


@given(seed=st.integers(0, 2**31), max_len=st.integers(1, 40))
def test_fragment_arithmetic_is_exact(seed: int, max_len: int) -> None:
    batch = sentences(16, max_len, seed)
    out = create("mass")(batch, TINY, make_generator(seed))
    original = framed(batch)
    full = batch.lengths + 2
    m = torch.round(full.double() * 0.5).long()  # round half to even, per sentence
    assert out.decoder_input_ids is not None
    pos = out.extras["decoder_position_ids"] + 1  # fragment positions
    real = torch.arange(out.labels.size(1)).unsqueeze(0) < m.unsqueeze(1)
    for b in range(16):
        k = int(m[b])
        p = pos[b, :k]
        assert torch.equal(p, p[0] + torch.arange(k))  # contiguous, m tokens
        assert p[0] >= 1  # never <s>
        assert p[-1] <= full[b] - 1  # never past </s>
        assert torch.equal(out.labels[b, :k], original[b, p])  # target = original[pos_k]
        assert torch.equal(out.decoder_input_ids[b, :k], original[b, p - 1])  # original[pos_k - 1]
        changed = out.input_ids[b, : int(full[b])] != original[b, : int(full[b])]
        assert not changed[: int(p[0])].any()
        assert not changed[int(p[-1]) + 1 :].any()
    assert (out.labels[~real] == IGNORE).all()
    assert (out.decoder_input_ids[~real] == TINY.pad).all()
    assert (out.extras["decoder_position_ids"][~real] == 0).all()


def test_worked_example() -> None:
    # six tokens: l = 8, m = 4, the fragment starts at 1 .. 4
    out = create("mass")(tokens([[11, 12, 13, 14, 15, 16]]), TINY, make_generator(0))
    assert out.decoder_input_ids is not None
    pos = out.extras["decoder_position_ids"][0] + 1
    assert pos.numel() == 4
    row = [TINY.bos, 11, 12, 13, 14, 15, 16, TINY.eos]
    assert out.labels[0].tolist() == [row[p] for p in pos.tolist()]
    assert out.decoder_input_ids[0].tolist() == [row[p - 1] for p in pos.tolist()]
    assert out.input_ids[0, 0] == TINY.bos


def test_one_token_sentence() -> None:
    # <s> a </s>: l = 3, m = round(1.5) = 2, the only place is a </s>
    out = create("mass")(tokens([[42]]), TINY, make_generator(0))
    assert out.labels.tolist() == [[42, TINY.eos]]
    assert out.decoder_input_ids is not None
    assert out.decoder_input_ids.tolist() == [[TINY.bos, 42]]
    assert out.extras["decoder_position_ids"].tolist() == [[0, 1]]


def test_paper_decoder_input_starts_with_mask() -> None:
    batch = sentences(64, 20, 1)
    code = create("mass")(batch, TINY, make_generator(3))
    paper = create("mass", decoder_start="mask")(batch, TINY, make_generator(3))
    assert code.decoder_input_ids is not None
    assert paper.decoder_input_ids is not None
    assert (paper.decoder_input_ids[:, 0] == TINY.mask).all()
    assert torch.equal(paper.decoder_input_ids[:, 1:], code.decoder_input_ids[:, 1:])
    # after the first step the decoder reads the previous target: labels shifted right
    real = code.labels[:, 1:] != IGNORE
    assert torch.equal(code.decoder_input_ids[:, 1:][real], code.labels[:, :-1][real])


def test_specials_in_the_fragment_stay_and_carry_no_loss() -> None:
    row = [TINY.unk, TINY.mask, TINY.eos, TINY.sentinels[3]] * 5
    out = create("mass")(tokens([row] * 50), TINY, make_generator(0))
    assert out.ops is not None
    assert (out.ops == int(Op.KEEP)).all()
    assert torch.equal(out.input_ids[:, 1:21], torch.tensor([row] * 50))
    scored = out.labels[out.labels != IGNORE]
    assert (scored == TINY.eos).all()  # only the closing </s> can be predicted here
    assert out.decoder_input_ids is not None
    assert not (out.decoder_input_ids == TINY.pad).all()  # the decoder still reads them


def test_mixed_lengths_are_placed_per_sentence() -> None:
    # MASS #64: the reference sized and placed every fragment from the batch, not the sentence
    batch = sentences(20_000, 30, 2)
    out = create("mass", start_prob=0.0, end_prob=1.0)(batch, TINY, make_generator(2))
    m = torch.round((batch.lengths + 2).double() * 0.5).long()
    last = out.extras["decoder_position_ids"].gather(1, (m - 1).unsqueeze(1)).squeeze(1) + 1
    assert torch.equal(last, batch.lengths + 1)  # every fragment ends at its own </s>
    assert torch.equal((out.labels != IGNORE).sum(1), m)


def test_placement_probabilities() -> None:
    # §4.5: P(start = 1) = P(reaches the end) = 0.2 + 0.6/(l - m), other starts 0.6/(l - m)
    batch = sentences(100_000, 30, 3, min_len=3)
    out = create("mass")(batch, TINY, make_generator(3))
    full = batch.lengths + 2
    m = torch.round(full.double() * 0.5).long()
    places = (full - m).double()
    start = out.extras["decoder_position_ids"][:, 0] + 1
    at_start = (start == 1).double()
    at_end = (start == full - m).double()
    assert (at_start - (0.2 + 0.6 / places)).mean().item() == pytest.approx(0, abs=0.01)
    assert (at_end - (0.2 + 0.6 / places)).mean().item() == pytest.approx(0, abs=0.01)
    # one length class in detail: 20 tokens, l = 22, m = 11, starts 1..11
    group = batch.lengths == 20
    share = torch.bincount(start[group], minlength=12)[1:].double() / int(group.sum())
    expected = torch.full((11,), 0.6 / 11, dtype=torch.float64)
    expected[0] += 0.2
    expected[-1] += 0.2
    assert (share - expected).abs().max() < 0.025  # ~3400 sentences in the class
    # pooled over every class: the middle starts are uniform
    middle = (start > 1) & (start < full - m)
    assert (
        middle.double() - 0.6 * (places - 2).clamp(min=0) / places
    ).mean().item() == pytest.approx(0, abs=0.01)


def test_80_10_10_inside_the_fragment_on_the_corpus() -> None:
    batch, vocab = corpus_tokens(200_000, 512), corpus_vocab()
    counts = torch.zeros(8, dtype=torch.long)
    for seed in range(3):
        out = create("mass")(batch, vocab, make_generator(seed))
        assert out.ops is not None
        counts += torch.bincount(out.ops[batch.real].long(), minlength=8)
    chosen = counts[[Op.MASK, Op.RANDOM, Op.PREDICT]].sum().item()
    assert chosen > 250_000
    assert counts[Op.MASK].item() / chosen == pytest.approx(0.8, abs=0.005)
    assert counts[Op.RANDOM].item() / chosen == pytest.approx(0.1, abs=0.004)
    assert counts[Op.PREDICT].item() / chosen == pytest.approx(0.1, abs=0.004)
    scored = (out.labels != IGNORE).sum().item()
    assert scored == torch.round((batch.lengths + 2).double() * 0.5).sum().item()


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("fragment", 0.0),
        ("fragment", 1.0),
        ("start_prob", -0.1),
        ("end_prob", 0.9),
        ("mask_replace", 0.95),
        ("decoder_start", "bos"),
    ],
)
def test_bad_parameters_are_rejected(key: str, value: object) -> None:
    with pytest.raises(InvalidParameter):
        create("mass", **{key: value})

"""UniLM (objectives.md §4.12): modes, attention masks, candidates and n-gram masking."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from corruptions import IGNORE, InvalidParameter, Op, create, make_generator
from corruptions.unilm import (
    BIDIRECTIONAL,
    LEFT_TO_RIGHT,
    RIGHT_TO_LEFT,
    SEQ2SEQ,
    UniLMMasking,
    attention_mask_for,
)
from tests.corruptions._sentences import (
    BIG,
    decode,
    originals,
    segments,
    sentence_batch,
    unique_batch,
)
from tests.helpers import TINY, corpus_tokens, corpus_vocab, tokens

WIDTH = 40


def brute_mask(mode: int, prefix: int, length: int, width: int) -> list[list[bool]]:
    """§4.12 step 5 written out cell by cell (padding rows see the real columns)."""
    rule = {
        BIDIRECTIONAL: lambda i, j: True,
        LEFT_TO_RIGHT: lambda i, j: j <= i,
        RIGHT_TO_LEFT: lambda i, j: j >= i,
        SEQ2SEQ: lambda i, j: j < prefix or (i >= prefix and j <= i),
    }[mode]
    return [
        [j < length and (i >= length or rule(i, j)) for j in range(width)] for i in range(width)
    ]


@given(
    rows=st.lists(
        st.tuples(st.integers(0, 3), st.integers(1, 12), st.integers(0, 12)), min_size=1, max_size=6
    )
)
def test_attention_masks_match_the_definitions(rows: list[tuple[int, int, int]]) -> None:
    width = max(n for _, n, _ in rows) + 2
    mode = torch.tensor([m for m, _, _ in rows])
    lengths = torch.tensor([n for _, n, _ in rows])
    prefix = torch.tensor([min(p, n) for _, n, p in rows])
    real = torch.arange(width).unsqueeze(0) < lengths.unsqueeze(1)
    mask = attention_mask_for(mode, prefix, real)
    assert mask.shape == (len(rows), width, width)
    assert mask.dtype == torch.bool
    for b, (m, n, _) in enumerate(rows):
        assert mask[b].tolist() == brute_mask(m, int(prefix[b]), n, width)
        assert mask[b].diagonal()[:n].all()  # every real token sees itself
        assert not mask[b][:, n:].any()  # padding columns are never attended


def test_seq2seq_source_rows_never_see_the_target() -> None:
    batch = unique_batch(300, WIDTH, seed=1)
    out = create("unilm", mode_probs=(0, 0, 0, 1))(batch, BIG, make_generator(1))
    masks = attention_mask_for(
        out.extras["attention_mode"], out.extras["prefix_lengths"], out.attention_mask
    )
    types = out.extras["token_type_ids"]
    for b in range(300):
        n, prefix = int(out.attention_mask[b].sum()), int(out.extras["prefix_lengths"][b])
        target = (types[b] == 1).nonzero().squeeze(1)
        assert prefix == int(target[0])
        assert int(target[-1]) == n - 1
        assert not masks[b][:prefix][:, target].any()
        assert masks[b][prefix:n][:, :prefix].all()


def test_modes_follow_the_paper_mixture() -> None:
    batch = sentence_batch(60_000, 6, seed=2, p_sentence=0.3)
    mode = create("unilm")(batch, TINY, make_generator(2)).extras["attention_mode"]
    shares = torch.bincount(mode, minlength=4).double() / mode.numel()
    for share, expected in zip(shares.tolist(), (1 / 3, 1 / 6, 1 / 6, 1 / 3), strict=True):
        assert abs(share - expected) < 0.01


def test_pairs_are_the_row_split_at_a_sentence() -> None:
    batch = unique_batch(200, WIDTH, seed=3)
    out = create("unilm")(batch, BIG, make_generator(3))
    for row in range(200):
        n = int(batch.lengths[row])
        starts = [p for p in range(n) if batch.sentence_starts[row, p]]
        s1, s2 = segments(out, row)
        assert [decode(t, WIDTH) for t in s1 + s2] == [(row, p) for p in range(n)]
        assert s1
        if len(starts) >= 2:
            assert len(s1) in starts
        elif n >= 2:  # one sentence: split at a token so that seq2seq has a target
            assert s2


@pytest.mark.parametrize("seq2seq_masking", ["both", "target"])
def test_candidates_per_mode_and_exact_budget(seq2seq_masking: str) -> None:
    batch = unique_batch(400, WIDTH, seed=4)
    out = create("unilm", seq2seq_masking=seq2seq_masking)(batch, BIG, make_generator(4))
    mode, types = out.extras["attention_mode"], out.extras["token_type_ids"]
    chosen = out.labels != IGNORE
    ids = originals(out)
    only_target = seq2seq_masking == "target"
    for b in range(400):
        n = int(out.attention_mask[b].sum())
        content = [i for i in range(1, n - 1) if not BIG.is_special(ids[b, i])]
        if mode[b] == SEQ2SEQ and only_target:  # the target and its final [SEP]
            candidates = [i for i in content if types[b, i] == 1] + [n - 1]
        else:  # the tokens of both segments
            candidates = content
        picked = chosen[b].nonzero().squeeze(1).tolist()
        assert set(picked) <= set(candidates)
        assert len(picked) == max(1, round(0.15 * len(candidates)))
    final_sep_scored = chosen[torch.arange(400), out.attention_mask.sum(1) - 1]
    assert final_sep_scored[mode != SEQ2SEQ].sum() == 0
    assert bool(final_sep_scored[mode == SEQ2SEQ].any()) == only_target
    assert (out.labels[chosen & (ids == BIG.eos)] == BIG.eos).all()


def test_seq2seq_pretraining_masks_both_segments() -> None:
    """Paper §2.3: seq2seq pre-training masks tokens of both segments, at the same 15%; the
    fine-tuning recipe (§3) masks only the target."""
    batch, vocab = corpus_tokens(), corpus_vocab()
    for masking, source_share in (("both", 0.15), ("target", 0.0)):
        corrupt = create("unilm", mode_probs=(0, 0, 0, 1), seq2seq_masking=masking)
        out = corrupt(batch, vocab, make_generator(6))
        types, chosen = out.extras["token_type_ids"], out.labels != IGNORE
        ordinary = out.attention_mask & ~vocab.is_special(originals(out))
        source, target = ordinary & (types == 0), ordinary & (types == 1)
        assert abs(float((chosen & source).sum() / source.sum()) - source_share) < 0.005
        if masking == "both":
            assert abs(float((chosen & target).sum() / target.sum()) - 0.15) < 0.005


def test_masked_fraction_and_replacement_split_on_the_corpus() -> None:
    batch, vocab = corpus_tokens(), corpus_vocab()
    out = create("unilm")(batch, vocab, make_generator(5))
    ids = originals(out)
    eligible = out.attention_mask & ~vocab.is_special(ids)  # both segments, in every mode
    chosen = out.labels != IGNORE
    assert not (chosen & ~eligible).any()
    assert int(eligible.sum()) > 150_000
    assert abs(float(chosen.sum() / eligible.sum()) - 0.15) < 0.003
    assert abs(float((out.input_ids[chosen] == vocab.mask).double().mean()) - 0.8) < 0.012


@pytest.mark.parametrize("length", [128, 512])
def test_ngram_share_of_masking_events_on_the_corpus(length: int) -> None:
    """§4.12: 20% of masking events are bi- or trigrams, on short rows too (~17 units per row at
    128 tokens: cutting the unit that reaches the budget made it 0.19 there)."""
    batch, vocab = corpus_tokens(200_000, length), corpus_vocab()
    allowed = batch.real & ~vocab.is_special(batch.ids)
    budget = torch.round(allowed.sum(1).double() * 0.15).clamp(min=1).long()
    events = n_gram = 0
    for seed in range(6):
        choice = UniLMMasking().choose(allowed, None, budget, make_generator(seed))
        assert torch.equal(choice.chosen.sum(1), torch.minimum(budget, allowed.sum(1)))
        # one event per unit with a masked token: key (row, unit)
        key = torch.arange(batch.ids.size(0)).unsqueeze(1) * (length + 1) + choice.units
        _, sizes = torch.unique(key[choice.chosen], return_counts=True)
        events += sizes.numel()
        n_gram += int((sizes >= 2).sum())
    assert events > 100_000  # SE of the share < 0.0013
    assert abs(n_gram / events - 0.20) < 0.005


@pytest.mark.parametrize("seq2seq_masking", ["both", "target"])
def test_ops_show_context_and_masking(seq2seq_masking: str) -> None:
    """A seq2seq row's source is context where it is not masked; no other row has context."""
    batch = unique_batch(200, WIDTH, seed=7)
    out = create("unilm", seq2seq_masking=seq2seq_masking)(batch, BIG, make_generator(7))
    masked = torch.tensor([int(Op.MASK), int(Op.RANDOM), int(Op.PREDICT)])
    for b in range(200):
        n, ops = int(batch.lengths[b]), out.ops[b]
        s1, _ = segments(out, b)
        if out.extras["attention_mode"][b] == SEQ2SEQ:
            source = ops[: len(s1)]
            assert ((source == Op.CONTEXT) | torch.isin(source, masked)).all()
            if seq2seq_masking == "target":
                assert (source == Op.CONTEXT).all()
        else:
            assert not (ops[:n] == Op.CONTEXT).any()
        assert not (ops[:n] == Op.DELETE).any()  # UniLM keeps every token


def test_mode_segments_name_the_mode() -> None:
    batch = unique_batch(200, WIDTH, seed=8)
    out = create("unilm", mode_segments=True)(batch, BIG, make_generator(8))
    plain = create("unilm")(batch, BIG, make_generator(8))
    types, mode = out.extras["token_type_ids"], out.extras["attention_mode"]
    base = torch.tensor([0, 2, 3, 4])[mode].unsqueeze(1)
    pair_bit = plain.extras["token_type_ids"]
    expected = torch.where((mode == 1) | (mode == 2), 0, 1).unsqueeze(1) * pair_bit + base
    assert torch.equal(types, expected.masked_fill(~out.attention_mask, 0))


@pytest.mark.parametrize("rows", [[[42]], [[TINY.unk, TINY.mask]], [[11, 12, 13]]])
def test_edge_rows_in_every_mode(rows: list[list[int]]) -> None:
    for mode in range(4):
        probs = tuple(float(m == mode) for m in range(4))
        corrupt = create("unilm", mode_probs=probs, seq2seq_masking="target")
        out = corrupt(tokens(rows), TINY, make_generator(mode))
        assert int(out.extras["attention_mode"][0]) == mode
        if mode == SEQ2SEQ:  # at least the final [SEP] is always a candidate
            assert (out.labels != IGNORE).sum() >= 1
        create("unilm", mode_probs=probs)(tokens(rows), TINY, make_generator(mode))


def test_bad_parameters_are_rejected() -> None:
    with pytest.raises(InvalidParameter, match="mode_probs"):
        create("unilm", mode_probs=(1, 1))
    with pytest.raises(InvalidParameter, match="ngram"):
        create("unilm", ngram=1)
    assert create("unilm", ngram=1, ngram_prob=0.0).unit_probs() == (1.0,)  # type: ignore[attr-defined]
    assert create("unilm", mode_probs="[1, 0, 0, 1]").mode_probs == (1, 0, 0, 1)  # type: ignore[attr-defined]

"""XLNet permutation LM (objectives.md §4.4): n-gram choice, goal, framing, factorisation order."""

from __future__ import annotations

import random
from collections.abc import Sequence

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from corruptions import IGNORE, Op, Tokens, create, make_generator
from corruptions.permutation import (
    draw_rounds,
    factorisation_rank,
    perm_mask_from_rank,
    sample_ngrams,
    walk_ngrams,
)
from tests.helpers import TINY, corpus_tokens, corpus_vocab, random_batch, tokens

P_N = [0.438, 0.219, 0.146, 0.109, 0.088]  # P(n) ∝ 1/n, n <= 5 (§4.4 defaults)


def reference_walk(
    starts: list[bool],
    seg_len: int,
    goal: int,
    n_at: list[int],
    u_at: Sequence[float] | torch.Tensor,
    context: int = 6,
    unit: str = "piece",
) -> list[bool]:
    """zihangdai/xlnet `_sample_mask`'s n-gram loop, restated; the round whose cursor is at c
    reads its n from n_at[c] and its left context from u_at[c] (a float32 tensor reproduces the
    library's rounding exactly)."""
    mask, predicted, cur = [False] * len(starts), 0, 0
    while cur < seg_len and predicted < goal:
        n = min(n_at[cur], goal - predicted)
        ctx = context * n
        left = min(int(u_at[cur] * ctx), ctx - 1)
        beg = cur + left
        while beg < seg_len and not starts[beg]:
            beg += 1
        if beg >= seg_len:
            break
        if unit == "piece":
            end = beg + n  # the reference code counts pieces (xlnet PR #16)
        else:
            end, words = beg + 1, 1
            while end < seg_len:
                if starts[end]:
                    words += 1
                    if words > n:
                        break
                end += 1
        if end >= seg_len:
            break
        mask[beg:end] = [True] * (end - beg)
        predicted += end - beg
        cur = end + ctx - left
    return mask


def reference_sample(
    starts: list[bool], goal: int, rng: random.Random, unit: str = "piece"
) -> list[bool]:
    """The same loop with fresh draws per round (n ∝ 1/n, left context uniform)."""
    length = len(starts)
    n_at = rng.choices(range(1, 6), weights=[1 / n for n in range(1, 6)], k=length)
    return reference_walk(
        starts, length, goal, n_at, [rng.random() for _ in range(length)], unit=unit
    )


# --- the walk, exactly -------------------------------------------------------------------------


@given(
    seed=st.integers(0, 2**31),
    width=st.integers(1, 80),
    goal=st.integers(0, 40),
    density=st.floats(0.05, 1.0),
    unit=st.sampled_from(["piece", "word"]),
)
def test_the_walk_is_the_reference_loop(
    seed: int, width: int, goal: int, density: float, unit: str
) -> None:
    gen = torch.Generator().manual_seed(seed)
    rows = 6
    starts = torch.rand(rows, width, generator=gen) < density
    seg_lens = torch.randint(0, width + 1, (rows,), generator=gen)
    goals = torch.full((rows,), goal)
    n, u = draw_rounds(starts, gen)
    marks = walk_ngrams(starts, seg_lens, goals, n, u, unit=unit)
    for b in range(rows):
        expected = reference_walk(
            starts[b].tolist(), int(seg_lens[b]), goal, n[b].tolist(), u[b], unit=unit
        )
        assert marks[b].tolist() == expected


@given(seed=st.integers(0, 2**31), width=st.integers(1, 120), goal=st.integers(1, 60))
def test_piece_ngrams_never_exceed_the_goal_and_start_at_word_starts(
    seed: int, width: int, goal: int
) -> None:
    gen = torch.Generator().manual_seed(seed)
    starts = torch.rand(4, width, generator=gen) < 0.7
    seg_lens = torch.randint(1, width + 1, (4,), generator=gen)
    marks = sample_ngrams(starts, seg_lens, torch.full((4,), goal), gen)
    assert (marks.sum(1) <= goal).all()
    first = marks & ~torch.cat([torch.zeros(4, 1, dtype=torch.bool), marks[:, :-1]], 1)
    assert starts[first].all()
    # an n-gram never reaches the segment end (the reference stops when end >= seg_len)
    assert not marks[torch.arange(width) >= (seg_lens - 1).unsqueeze(1)].any()


def test_word_ngrams_cover_whole_words() -> None:
    batch = random_batch(400, 200, seed=3, word_every=3)
    starts = batch.word_starts
    assert starts is not None
    marks = sample_ngrams(
        starts, batch.lengths, torch.full((400,), 10**6), make_generator(4), unit="word"
    )
    assert marks.any()
    runs = marks.long().diff(dim=1, prepend=torch.zeros(400, 1, dtype=torch.long))
    assert starts[runs == 1].all()  # every n-gram begins at a word start ...
    assert starts[:, 1:][runs[:, 1:] == -1].all()  # ... and ends right before one
    assert (marks.sum(1) % 3 == 0).all()  # words are 3 pieces long: n-grams of whole words


# --- the reference numbers -----------------------------------------------------------------------


def test_n_is_drawn_with_p_proportional_to_one_over_n() -> None:
    n, u = draw_rounds(torch.zeros(400, 1000, dtype=torch.bool), make_generator(0))
    freq = torch.bincount(n.flatten(), minlength=6)[1:].double() / n.numel()
    assert torch.allclose(freq, torch.tensor(P_N, dtype=torch.float64), atol=0.003)
    # the left context is uniform on [0, 6n) for every n
    for size in range(1, 6):
        left = (u[n == size] * 6 * size).long()
        share = torch.bincount(left, minlength=6 * size).double() / left.numel()
        assert share.numel() == 6 * size
        assert (share - 1 / (6 * size)).abs().max() < 0.006


def test_ngram_phase_matches_the_reference_simulation() -> None:
    # §4.4: 80% word-start pieces, goal 43 over 256 tokens: ≈ 35.8 from the n-gram phase;
    # without a goal the n-gram phase covers ≈ 14% of the tokens
    gen = make_generator(1)
    starts = torch.rand(2000, 256, generator=gen) < 0.8
    lens = torch.full((2000,), 256)
    capped = sample_ngrams(starts, lens, torch.full((2000,), 43), gen).sum(1).double()
    assert capped.mean().item() == pytest.approx(35.8, abs=0.15)
    free = sample_ngrams(starts, lens, torch.full((2000,), 10**6), gen).double().mean()
    assert free.item() == pytest.approx(0.14, abs=0.003)


REPEATS = 2


@pytest.mark.parametrize("unit", ["piece", "word"])
def test_ngram_phase_on_the_corpus_matches_the_reference_loop(unit: str) -> None:
    batch = corpus_tokens(200_000, 512)
    assert batch.word_starts is not None
    goal = torch.full((batch.ids.size(0),), 85)
    rng = random.Random(0)
    ours, ref, run_ours, run_ref = [], [], [], []
    for seed in range(REPEATS):
        marks = sample_ngrams(
            batch.word_starts, batch.lengths, goal, make_generator(seed), unit=unit
        )
        ours.append(marks.sum(1).double())
        run_ours.append((marks[:, 1:] & ~marks[:, :-1]).sum().item())
    for b in range(batch.ids.size(0)):
        starts = batch.word_starts[b, : int(batch.lengths[b])].tolist()
        for _ in range(REPEATS):
            mask = reference_sample(starts, 85, rng, unit)
            ref.append(sum(mask))
            run_ref.append(sum(1 for i in range(1, len(mask)) if mask[i] and not mask[i - 1]))
    mean_ours, mean_ref = torch.cat(ours).mean().item(), sum(ref) / len(ref)
    spread = torch.tensor(ref, dtype=torch.float64).std().item() / len(ref) ** 0.5
    assert mean_ours == pytest.approx(mean_ref, abs=5 * spread * 2**0.5)
    assert sum(run_ours) / sum(run_ref) == pytest.approx(1.0, abs=0.03)


# --- the objective ------------------------------------------------------------------------------


def test_framing_labels_and_ops() -> None:
    row = list(range(11, 41))
    out = create("xlnet-plm")(tokens([row, row[:5]], word_every=2), TINY, make_generator(0))
    assert out.input_ids[0].tolist() == [*row, TINY.eos, TINY.bos]  # x <sep> <cls>, CLS last
    assert out.input_ids[1].tolist()[:7] == [*row[:5], TINY.eos, TINY.bos]
    assert (out.input_ids[1, 7:] == TINY.pad).all()
    assert out.attention_mask.sum(1).tolist() == [32, 7]
    chosen = out.labels != IGNORE
    assert torch.equal(out.labels[chosen], out.input_ids[chosen])  # the original ids, unmasked
    assert chosen.sum(1).tolist() == [round(32 * 85 / 512), round(7 * 85 / 512)]  # 5, 1
    assert out.ops is not None
    assert torch.equal(out.ops == int(Op.PREDICT), chosen[:, :30])
    rank = out.extras["perm_rank"]
    assert rank.shape == out.input_ids.shape
    assert rank.dtype == torch.long
    # targets and the two functional tokens are ranked 0..k-1, everything else is context
    ordered = chosen.clone()
    ordered[0, 30:32] = True
    ordered[1, 5:7] = True
    assert torch.equal(rank >= 0, ordered)
    for b in range(2):
        assert sorted(rank[b][ordered[b]].tolist()) == list(range(int(ordered[b].sum())))


def test_mask_targets_writes_mask_like_hugging_face() -> None:
    batch = random_batch(4, 100, seed=2, word_every=2)
    out = create("xlnet-plm", mask_targets=True)(batch, TINY, make_generator(0))
    chosen = out.labels != IGNORE
    assert (out.input_ids[chosen] == TINY.mask).all()
    assert torch.equal(
        out.input_ids[~chosen][:10],
        create("xlnet-plm")(batch, TINY, make_generator(0)).input_ids[~chosen][:10],
    )
    assert out.ops is not None
    assert torch.equal(out.ops == int(Op.MASK), chosen[:, :100])


@pytest.mark.parametrize("length", [1, 2, 7, 8, 255, 256, 510, 511])
def test_even_and_odd_lengths_get_exactly_their_goal(length: int) -> None:
    out = create("xlnet-plm")(random_batch(8, length, seed=length), TINY, make_generator(length))
    goal = round((length + 2) * 85 / 512)
    assert ((out.labels != IGNORE).sum(1) == goal).all()
    if length == 510:
        assert goal == 85  # the reference's 85 predictions per 512 tokens


def test_all_special_rows_predict_nothing() -> None:
    rows = [[TINY.unk, TINY.mask, TINY.eos, TINY.bos] * 10, [TINY.sentinels[0]]]
    out = create("xlnet-plm")(tokens(rows), TINY, make_generator(0))
    assert (out.labels == IGNORE).all()
    rank = out.extras["perm_rank"]
    assert sorted(rank[0][rank[0] >= 0].tolist()) == [0, 1]  # only <sep> and <cls> are ordered
    assert rank[0, 40:42].ge(0).all()
    assert rank[1, 1:3].ge(0).all()


def test_specials_inside_text_are_context() -> None:
    row = [11, 12, TINY.unk, TINY.eos, TINY.bos, TINY.mask, 13, 14] * 8
    out = create("xlnet-plm", rate=0.9)(tokens([row]), TINY, make_generator(3))
    special = TINY.is_special(torch.tensor(row))
    assert (out.labels[0, :64][special] == IGNORE).all()
    assert (out.extras["perm_rank"][0, :64][special] == -1).all()  # a [SEP] in the text is context
    assert (out.labels[0, :64][~special] != IGNORE).sum() == 32  # all 32 ordinary tokens


def test_targets_on_the_corpus_are_exact_and_about_a_sixth() -> None:
    batch, vocab = corpus_tokens(200_000, 512), corpus_vocab()
    out = create("xlnet-plm")(batch, vocab, make_generator(0))
    chosen = out.labels != IGNORE
    goal = torch.round((batch.lengths + 2).double() * 85 / 512).long()
    allowed = (batch.real & ~vocab.is_special(batch.ids)).sum(1)
    assert torch.equal(chosen.sum(1), torch.minimum(goal, allowed))
    assert not chosen[~out.attention_mask].any()
    assert not vocab.is_special(out.labels[chosen]).any()
    full = batch.lengths == 510
    share = chosen[full].sum().item() / ((batch.lengths[full] + 2).sum().item())
    assert share == pytest.approx(85 / 512, abs=1e-9)
    share_all = chosen.sum().item() / (batch.lengths + 2).sum().item()
    assert share_all == pytest.approx(1 / 6, abs=0.003)


# --- the factorisation order and perm_mask -----------------------------------------------------


def reference_perm_mask(
    rank: list[int], target: list[bool], functional: list[bool]
) -> list[list[bool]]:
    """`_local_perm`, restated: plain context gets rank -1; i may not attend j iff j is
    target-or-functional and rank'(i) <= rank(j), rank'(i) = rank(i) (+ 1 for non-targets)."""
    ordered = [t or f for t, f in zip(target, functional, strict=True)]
    rev = [r if o else -1 for r, o in zip(rank, ordered, strict=True)]
    own = [r if t else r + 1 for r, t in zip(rev, target, strict=True)]
    return [[ordered[j] and own[i] <= rev[j] for j in range(len(rank))] for i in range(len(rank))]


def test_perm_mask_matches_the_reference_arithmetic() -> None:
    batch = random_batch(3, 40, seed=5, word_every=2)
    out = create("xlnet-plm", rate=0.3)(batch, TINY, make_generator(5))
    rank, labels = out.extras["perm_rank"], out.labels
    mask = perm_mask_from_rank(rank, labels)
    functional = torch.zeros_like(labels, dtype=torch.bool)
    functional[:, 40:42] = True
    assert torch.equal(mask, perm_mask_from_rank(rank, labels, functional))
    for b in range(3):
        expected = reference_perm_mask(
            rank[b].tolist(), (labels[b] != IGNORE).tolist(), functional[b].tolist()
        )
        assert mask[b].tolist() == expected


def test_perm_mask_structure_on_the_corpus() -> None:
    batch, vocab = corpus_tokens(200_000, 512), corpus_vocab()
    rows = slice(0, 48)
    part = Tokens(
        batch.ids[rows],
        batch.lengths[rows],
        batch.word_starts[rows],  # type: ignore[index]
        batch.sentence_starts[rows],
    )  # type: ignore[index]
    out = create("xlnet-plm")(part, vocab, make_generator(7))
    rank, targets = out.extras["perm_rank"], out.labels != IGNORE
    mask = perm_mask_from_rank(rank, out.labels)
    ordered = rank >= 0
    eye = torch.eye(mask.size(1), dtype=torch.bool)
    # a strict total order among targets and functional tokens: exactly one of (i, j), (j, i)
    pairs = ordered.unsqueeze(2) & ordered.unsqueeze(1) & ~eye
    assert torch.equal((mask ^ mask.transpose(1, 2))[pairs], torch.ones_like(mask[pairs]))
    assert torch.equal(torch.diagonal(mask, dim1=1, dim2=2), targets)  # diagonal 1 at targets
    plain = ~ordered
    rows_of_plain = mask[plain]  # (n plain, S): ones exactly at the ordered columns
    assert torch.equal(rows_of_plain, ordered.unsqueeze(1).expand_as(mask)[plain])
    assert not mask.transpose(1, 2)[plain].any()  # columns of plain tokens are all zero
    # the functional tokens are exactly <sep> <cls> at the end of each row
    functional = ordered & ~targets
    assert (functional.sum(1) == 2).all()
    assert (out.input_ids[functional].view(-1, 2) == torch.tensor([vocab.eos, vocab.bos])).all()


def test_factorisation_order_is_uniform() -> None:
    ordered = torch.zeros(20_000, 12, dtype=torch.bool)
    ordered[:, [0, 1, 5, 6, 10, 11]] = True
    rank = factorisation_rank(ordered, make_generator(0))
    kept = rank[:, [0, 1, 5, 6, 10, 11]]
    assert (rank[:, [2, 3, 4, 7, 8, 9]] == -1).all()
    for i in range(6):
        share = torch.bincount(kept[:, i], minlength=6).double() / 20_000
        assert (share - 1 / 6).abs().max() < 0.01  # every place in the order equally likely
    for i, j in [(0, 1), (0, 5), (1, 4), (4, 5)]:
        assert (kept[:, i] < kept[:, j]).double().mean().item() == pytest.approx(0.5, abs=0.01)


def test_target_pairs_are_ordered_either_way_on_the_corpus() -> None:
    batch, vocab = corpus_tokens(200_000, 512), corpus_vocab()
    earlier = pairs = adjacent = n_adjacent = 0
    for seed in range(2):
        out = create("xlnet-plm")(batch, vocab, make_generator(seed))
        rank, targets = out.extras["perm_rank"], out.labels != IGNORE
        # the targets' ranks in position order, left-aligned: (B, K), K = most targets in a row
        width = int(targets.sum(1).max())
        slot = torch.where(targets, targets.long().cumsum(1) - 1, width)
        ranks = torch.full((rank.size(0), width + 1), -1).scatter_(1, slot, rank)[:, :width]
        real = ranks >= 0
        upper = (real.unsqueeze(2) & real.unsqueeze(1)).triu(1)  # pairs i < j of targets
        earlier += int(((ranks.unsqueeze(2) < ranks.unsqueeze(1)) & upper).sum())
        pairs += int(upper.sum())
        # P(i before j) for neighbouring targets i < j (mostly inside one n-gram)
        both = targets[:, :-1] & targets[:, 1:]
        adjacent += int((rank[:, :-1] < rank[:, 1:])[both].sum())
        n_adjacent += int(both.sum())
    assert earlier / pairs == pytest.approx(0.5, abs=0.01)
    assert adjacent / n_adjacent == pytest.approx(0.5, abs=0.01)


def test_same_seed_same_order_different_seed_different() -> None:
    batch = random_batch(4, 64, seed=1)
    a = create("xlnet-plm")(batch, TINY, make_generator(1)).extras["perm_rank"]
    b = create("xlnet-plm")(batch, TINY, make_generator(1)).extras["perm_rank"]
    c = create("xlnet-plm")(batch, TINY, make_generator(2)).extras["perm_rank"]
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


@pytest.mark.parametrize(
    ("key", "value"),
    [("rate", 0.0), ("rate", 1.5), ("max_ngram", 0), ("context", 0), ("ngram_unit", "letter")],
)
def test_bad_parameters_are_rejected(key: str, value: object) -> None:
    from corruptions import InvalidParameter

    with pytest.raises(InvalidParameter, match=key):
        create("xlnet-plm", **{key: value})

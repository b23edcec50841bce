"""The masking family: bert-mlm, whole-word, spanbert, electra (objectives.md §4.1-4.3, §4.9).

Properties on random batches (hypothesis), exact reference arithmetic, and statistics over the
default corpus with the tolerances of objectives.md. Rates that the reference states for ~1M
trials are measured over the corpus several times with different seeds (fresh masks each time).
"""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from corruptions import IGNORE, Corrupted, Op, Tokens, Vocab, create, make_generator
from corruptions._spans import (
    anchored_word_spans,
    draw_lengths,
    poisson,
    run_bounds,
    truncated_geometric,
    whole_words,
    word_groups,
)
from corruptions.masking import SpanMasking
from tests.helpers import ORDINARY, TINY, corpus_tokens, corpus_vocab, tokens

NAMES = ("bert-mlm", "whole-word", "spanbert", "electra")
GEOMETRIC_02 = [0.2241, 0.1792, 0.1434, 0.1147, 0.0918, 0.0734, 0.0587, 0.0470, 0.0376, 0.0301]


# ------------------------------------------------------------------------------------- fixtures


def synthetic(n_tokens: int, length: int = 512, seed: int = 0) -> Tokens:
    """Full rows of ordinary ids with ~1.3 pieces per word (a word opens with p = 0.77)."""
    rows = -(-n_tokens // length)
    gen = torch.Generator().manual_seed(seed)
    pool = torch.tensor(ORDINARY)
    ids = pool[torch.randint(0, len(pool), (rows, length), generator=gen)]
    words = torch.rand(rows, length, generator=gen) < 0.77
    words[:, 0] = True
    sents = torch.zeros_like(words)
    sents[:, 0] = True
    return Tokens(ids, torch.full((rows,), length), words, sents)


def corpus(n_tokens: int = 200_000) -> tuple[Tokens, Vocab]:
    """At least `n_tokens` tokens of the default corpus (rows of <= 512) and its vocabulary."""
    return corpus_tokens(n_tokens, 512), corpus_vocab()


def seeds(n: int) -> list[torch.Generator]:
    return [make_generator(1234, i) for i in range(n)]


rows_strategy = st.lists(
    st.lists(
        st.tuples(
            st.sampled_from([*ORDINARY, *ORDINARY, TINY.unk, TINY.mask, TINY.bos]), st.booleans()
        ),
        min_size=1,
        max_size=80,
    ),
    min_size=1,
    max_size=3,
)


def build(rows: list[list[tuple[int, bool]]]) -> Tokens:
    """A batch from (id, opens a word) pairs."""
    return Tokens.from_lists(
        [[i for i, _ in r] for r in rows], TINY.pad, [[w for _, w in r] for r in rows]
    )


def check_mlm(batch: Tokens, out: Corrupted, vocab: Vocab) -> torch.Tensor:
    """The invariants every masking variant keeps; returns the chosen (predicted) positions."""
    b, width = batch.ids.shape
    n = batch.lengths
    assert out.input_ids.shape == out.labels.shape == (b, width + 2)
    assert (out.input_ids[:, 0] == vocab.bos).all()  # [CLS] x [SEP]
    assert (out.input_ids.gather(1, (n + 1).unsqueeze(1)) == vocab.eos).all()
    assert torch.equal(out.attention_mask, torch.arange(width + 2) < (n + 2).unsqueeze(1))
    assert (out.labels[:, 0] == IGNORE).all()
    assert (out.labels.gather(1, (n + 1).unsqueeze(1)) == IGNORE).all()
    inputs, labels = out.input_ids[:, 1 : width + 1], out.labels[:, 1 : width + 1]
    chosen = labels != IGNORE
    assert not (chosen & ~batch.real).any()
    assert torch.equal(labels[chosen], batch.ids[chosen])  # labels = source where set
    assert not ((inputs != batch.ids) & batch.real & ~chosen).any()  # only chosen positions change
    assert not (chosen & vocab.is_special(batch.ids)).any()  # specials never chosen
    assert out.ops is not None
    assert torch.equal(out.ops != int(Op.KEEP), chosen)
    assert (inputs[out.ops == int(Op.MASK)] == vocab.mask).all()
    assert torch.equal(inputs[out.ops == int(Op.PREDICT)], batch.ids[out.ops == int(Op.PREDICT)])
    return chosen


def split(batch: Tokens, out: Corrupted) -> tuple[float, float, float, int]:
    """Shares of [MASK], unchanged and changed-to-random among chosen tokens, and their count."""
    assert out.ops is not None
    inputs = out.input_ids[:, 1 : batch.ids.size(1) + 1]
    chosen = out.ops != int(Op.KEEP)
    masked = out.ops == int(Op.MASK)
    same = chosen & ~masked & (inputs == batch.ids)
    other = chosen & ~masked & (inputs != batch.ids)
    total = int(chosen.sum())
    return int(masked.sum()) / total, int(same.sum()) / total, int(other.sum()) / total, total


def words_of(batch: Tokens, vocab: Vocab) -> tuple[torch.Tensor, torch.Tensor]:
    """(word index per token, pieces per word), words as `word_groups` forms them."""
    allowed = batch.real & ~vocab.is_special(batch.ids)
    starts = word_groups(allowed, batch.word_starts)
    word_of = (starts.long().cumsum(1) - 1).clamp(min=0)
    pieces = torch.zeros(batch.ids.size(0), batch.ids.size(1) + 1, dtype=torch.long)
    pieces.scatter_add_(1, torch.where(allowed, word_of, batch.ids.size(1)), allowed.long())
    return word_of, pieces


def chi_square_uniform(ids: torch.Tensor, size: int, buckets: int = 64) -> float:
    """p-value that `ids` are uniform on [0, size), over contiguous id ranges."""
    bucket = ids * buckets // size
    observed = torch.bincount(bucket, minlength=buckets).double()
    expected = torch.bincount(torch.arange(size) * buckets // size, minlength=buckets).double()
    expected = expected / size * ids.numel()
    stat = ((observed - expected) ** 2 / expected).sum()
    return float(torch.special.gammaincc(torch.tensor((buckets - 1) / 2), stat / 2))


# ----------------------------------------------------------------------------- shared properties


@pytest.mark.parametrize("name", NAMES)
@given(rows=rows_strategy, seed=st.integers(0, 2**32 - 1))
def test_masking_properties(name: str, rows: list[list[tuple[int, bool]]], seed: int) -> None:
    batch = build(rows)
    out = create(name)(batch, TINY, make_generator(seed))
    chosen = check_mlm(batch, out, TINY)
    allowed = batch.real & ~TINY.is_special(batch.ids)
    if name != "whole-word":  # (a word longer than the budget is skipped, §4.2)
        assert (chosen.sum(1) >= 1)[allowed.any(1)].all()  # a candidate -> at least one target
    if name == "spanbert":
        sbo_check(batch, out)


@pytest.mark.parametrize("name", NAMES)
def test_edge_rows(name: str) -> None:
    rows = [[42], [TINY.unk, TINY.mask], [11, 12], list(range(11, 30))]
    batch = tokens(rows, word_every=3)
    out = create(name)(batch, TINY, make_generator(3))
    chosen = check_mlm(batch, out, TINY)
    assert chosen[0, 0]  # the one token of a one-token row
    assert not chosen[1].any()  # nothing to choose in an all-special row


@pytest.mark.parametrize("name", NAMES)
def test_reproducible_and_input_untouched(name: str) -> None:
    batch, vocab = synthetic(4096), TINY
    before = batch.ids.clone()
    one = create(name)(batch, vocab, make_generator(7))
    two = create(name)(batch, vocab, make_generator(7))
    other = create(name)(batch, vocab, make_generator(8))
    assert torch.equal(batch.ids, before)
    assert torch.equal(one.input_ids, two.input_ids)
    assert not torch.equal(one.labels, other.labels)


@pytest.mark.parametrize(
    ("name", "bad"),
    [
        ("bert-mlm", {"rate": 0.0}),
        ("bert-mlm", {"budget": "poisson"}),
        ("whole-word", {"mask_replace": 0.95, "random_replace": 0.1}),
        ("spanbert", {"geometric_p": 0.0}),
        ("spanbert", {"span_lower": 3, "span_upper": 2}),
        ("spanbert", {"replacement": "token"}),
        ("spanbert", {"max_pair_targets": 0}),
        ("electra", {"mask_prob": 1.5}),
        ("electra", {"max_seq_length": 0}),
    ],
)
def test_bad_parameters_are_rejected(name: str, bad: dict[str, object]) -> None:
    from corruptions import InvalidParameter

    with pytest.raises(InvalidParameter):
        create(name, **bad)


# --------------------------------------------------------------------------------------- bert-mlm


def full_rows(lengths: list[int]) -> Tokens:
    width = max(lengths)
    ids = torch.tensor(ORDINARY * (width // len(ORDINARY) + 1))[:width].expand(len(lengths), width)
    n = torch.tensor(lengths)
    return Tokens(ids.masked_fill(torch.arange(width) >= n.unsqueeze(1), TINY.pad), n)


@pytest.mark.parametrize("name", ["bert-mlm", "whole-word"])
def test_exact_budget_counts_cls_and_sep_and_rounds_half_to_even(name: str) -> None:
    lengths = list(range(1, 601))
    out = create(name)(full_rows(lengths), TINY, make_generator(0))
    got = (out.labels != IGNORE).sum(1).tolist()
    assert got == [max(1, round(0.15 * (n + 2))) for n in lengths]  # Python round: half to even
    # 0.15 x 10 = 1.5 -> 2, x 30 = 4.5 -> 4, x 50 = 7.5 -> 8, x 70 = 10.5 -> 10, x 130 = 19.5 -> 20
    assert [got[n - 3] for n in (10, 30, 50, 70, 130)] == [2, 4, 8, 10, 20]


def test_budget_cap_and_short_candidates() -> None:
    out = create("bert-mlm", max_predictions=5)(full_rows([100, 200]), TINY, make_generator(0))
    assert (out.labels != IGNORE).sum(1).tolist() == [5, 5]
    row = [TINY.unk] * 40 + [11, 12]  # budget round(0.15 x 44) = 7, only two candidates
    out = create("bert-mlm")(tokens([row]), TINY, make_generator(0))
    assert (out.labels != IGNORE).sum().item() == 2


def test_bernoulli_budget_rate() -> None:
    batch, vocab = corpus()
    corrupt = create("bert-mlm", budget="bernoulli")
    allowed = batch.real & ~vocab.is_special(batch.ids)
    chosen = sum(int((corrupt(batch, vocab, g).labels != IGNORE).sum()) for g in seeds(5))
    assert abs(chosen / (5 * int(allowed.sum())) - 0.15) < 0.002  # §4.1: 0.150 ± 0.002
    lengths = (corrupt(batch, vocab, make_generator(9)).labels != IGNORE).sum(1)
    assert lengths.unique().numel() > 3  # binomial per row, not a fixed count


def test_bert_statistics_on_the_corpus() -> None:
    batch, vocab = corpus()
    corrupt = create("bert-mlm")
    budget = torch.minimum(
        (torch.round((batch.lengths + 2).double() * 0.15).long()).clamp(min=1),
        (batch.real & ~vocab.is_special(batch.ids)).sum(1),
    )
    mask = same = other = 0.0
    total = 0
    random_ids = []
    for g in seeds(5):
        out = corrupt(batch, vocab, g)
        assert torch.equal((out.labels != IGNORE).sum(1), budget)  # exact per row
        m, s, o, n = split(batch, out)
        mask, same, other, total = mask + m * n, same + s * n, other + o * n, total + n
        assert out.ops is not None
        random_ids.append(out.input_ids[:, 1:-1][out.ops == int(Op.RANDOM)])
    pool = vocab.ordinary_ids(batch.ids.device)  # random ids: ordinary ids only
    v = pool.numel()
    assert abs(total / (5 * int(batch.lengths.sum())) - 0.15) < 0.003
    assert abs(mask / total - 0.8) < 0.005  # §4.1 tolerances, ~150k chosen tokens
    assert abs(same / total - (0.1 + 0.1 / v)) < 0.004  # a random draw can hit the original
    assert abs(other / total - (0.1 - 0.1 / v)) < 0.004
    drawn = torch.cat(random_ids)
    assert not vocab.is_special(drawn).any()
    assert chi_square_uniform(torch.searchsorted(pool, drawn), v) > 1e-4  # uniform on the pool


# ------------------------------------------------------------------------------------- whole-word


def test_whole_word_is_all_or_none_per_word() -> None:
    batch, vocab = corpus(50_000)
    out = create("whole-word")(batch, vocab, make_generator(0))
    chosen = check_mlm(batch, out, vocab)
    word_of, pieces = words_of(batch, vocab)
    picked = torch.zeros_like(pieces).scatter_add_(1, word_of, chosen.long())
    assert ((picked == 0) | (picked == pieces)).all()
    budget = torch.round((batch.lengths + 2).double() * 0.15).long()
    assert (chosen.sum(1) <= budget).all()


@given(rows=rows_strategy, budget=st.integers(1, 30), seed=st.integers(0, 2**32 - 1))
def test_whole_words_walks_like_the_reference(
    rows: list[list[tuple[int, bool]]], budget: int, seed: int
) -> None:
    """Same word order (the scores `whole_words` draws first) -> same choice as bert's walk."""
    batch = build(rows)
    allowed = batch.real & ~TINY.is_special(batch.ids)
    starts = word_groups(allowed, batch.word_starts)
    k = torch.full_like(batch.lengths, budget)
    got = whole_words(allowed, starts, k, make_generator(seed))
    score = torch.rand(batch.ids.shape, generator=make_generator(seed))
    for b in range(batch.ids.size(0)):
        words: list[list[int]] = []
        for t in range(batch.ids.size(1)):
            if allowed[b, t]:
                (words.append([t]) if starts[b, t] else words[-1].append(t))
        chosen: list[int] = []
        for w in sorted(range(len(words)), key=lambda w: float(score[b, w])):
            if len(chosen) >= budget:
                break
            if len(chosen) + len(words[w]) <= budget:  # else skip it, shorter ones may fit
                chosen += words[w]
        assert sorted(chosen) == got[b].nonzero().flatten().tolist()


def test_whole_word_without_word_starts_is_token_masking() -> None:
    batch = full_rows([50, 300])
    out = create("whole-word")(batch, TINY, make_generator(0))
    assert (out.labels != IGNORE).sum(1).tolist() == [8, 45]


def test_whole_word_statistics_on_the_corpus() -> None:
    batch, vocab = corpus()
    corrupt = create("whole-word")
    word_of, pieces = words_of(batch, vocab)
    mask = same = other = 0.0
    total, both_masked, pairs, chosen_words, chosen_pieces = 0, 0, 0, 0, 0
    for g in seeds(5):
        out = corrupt(batch, vocab, g)
        m, s, o, n = split(batch, out)
        mask, same, other, total = mask + m * n, same + s * n, other + o * n, total + n
        assert out.ops is not None
        chosen = out.ops != int(Op.KEEP)
        is_mask = (out.ops == int(Op.MASK)).long()
        picked = torch.zeros_like(pieces).scatter_add_(1, word_of, chosen.long())
        masks = torch.zeros_like(pieces).scatter_add_(1, word_of, is_mask)
        two = (picked == 2) & (pieces == 2)
        pairs, both_masked = pairs + int(two.sum()), both_masked + int((two & (masks == 2)).sum())
        chosen_words += int((picked > 0).sum())
        chosen_pieces += int(picked.sum())
    assert abs(total / (5 * int(batch.lengths.sum())) - 0.15) < 0.003  # §4.2
    assert abs(mask / total - 0.8) < 0.005
    assert abs(same / total - (0.1 + 0.1 / vocab.size)) < 0.004
    assert abs(other / total - (0.1 - 0.1 / vocab.size)) < 0.004
    assert abs(both_masked / pairs - 0.64) < 0.02  # each piece draws its own fate (0.8 x 0.8)
    corpus_mean = float(pieces.sum() / (pieces > 0).sum())
    assert abs(chosen_pieces / chosen_words / corpus_mean - 1) < 0.02  # no word-length bias


# --------------------------------------------------------------------------------------- spanbert


def reference_spans(
    starts: list[bool], budget: int, anchors: list[int], lens: list[int]
) -> tuple[set[int], list[bool]]:
    """facebookresearch/SpanBERT's loop on given draws: the mask and which draws it accepted."""
    n, mask, accepted = len(starts), set(), []

    def word_end(i: int) -> int:
        i += 1
        while i < n and not starts[i]:
            i += 1
        return i

    for anchor, span in zip(anchors, lens, strict=True):
        if len(mask) >= budget:
            break
        accepted.append(anchor not in mask)
        if anchor in mask:
            continue
        left = anchor
        while left > 0 and not starts[left]:
            left -= 1
        right, words = left, 0
        while words < span and right < n and len(mask) < budget:
            left, right, words = right, word_end(right), words + 1
            for i in range(left, right):
                if len(mask) >= budget:
                    break
                mask.add(i)
    return mask, accepted


@pytest.mark.parametrize("chunk", [0, 1, 3])
def test_span_sampler_reproduces_the_sequential_reference(chunk: int) -> None:
    gen = torch.Generator().manual_seed(chunk)
    for trial in range(40):
        width = int(torch.randint(1, 160, (1,), generator=gen))
        lengths = torch.randint(1, width + 1, (6,), generator=gen)
        allowed = torch.arange(width) < lengths.unsqueeze(1)
        starts = word_groups(allowed, torch.rand(6, width, generator=gen) < 0.2 + 0.8 * trial / 40)
        budget = torch.ceil(lengths.double() * (0.05 + 0.6 * trial / 40)).long()
        out = anchored_word_spans(
            allowed,
            starts,
            budget,
            truncated_geometric(0.2, 1, 10),
            1,
            make_generator(trial),
            chunk,
        )
        for b in range(6):
            n, d = int(lengths[b]), int(out.draws[b])
            mask, accepted = reference_spans(
                starts[b, :n].tolist(),
                int(budget[b]),
                out.anchors[b].tolist(),
                out.span_words[b].tolist(),
            )
            assert set(out.chosen[b].nonzero().flatten().tolist()) == mask
            assert len(accepted) == d
            assert out.accepted[b, :d].tolist() == accepted
            assert not out.accepted[b, d:].any()


def test_spanbert_budget_is_exact_ceil() -> None:
    lengths = list(range(1, 601))
    batch = full_rows(lengths)
    batch = Tokens(
        batch.ids, batch.lengths, torch.rand(batch.ids.shape, generator=make_generator(1)) < 0.7
    )
    out = create("spanbert")(batch, TINY, make_generator(0))
    assert (out.labels != IGNORE).sum(1).tolist() == [math.ceil(n * 0.15) for n in lengths]


def sbo_check(batch: Tokens, out: Corrupted) -> tuple[torch.Tensor, torch.Tensor]:
    """SBO extras agree with the runs of predicted tokens; returns (run first, run last)."""
    width = batch.ids.size(1)
    chosen = out.labels[:, 1 : width + 1] != IGNORE
    first, last = run_bounds(chosen)
    left, right, offset = (
        out.extras[k][:, 1 : width + 1] for k in ("span_left", "span_right", "span_offset")
    )
    for key in ("span_left", "span_right", "span_offset"):
        assert out.extras[key].shape == out.input_ids.shape
        assert (out.extras[key][~out.attention_mask] == -1).all()
        assert (out.extras[key][:, 0] == -1).all()
    has = offset >= 0
    inner = chosen & (first > 0) & (last < (batch.lengths - 1).unsqueeze(1))
    assert torch.equal(has, inner & (positions_like(chosen) - first < 15))
    span_len = (last - first + 1)[has]
    assert torch.equal(right[has] - left[has] - 1, span_len)  # right - left - 1 = span length
    assert torch.equal(offset[has], (positions_like(chosen) - first)[has])
    assert torch.equal(left[has], first[has])  # input index of the token before the span
    assert (offset[has] < 15).all()  # at most 15 targets per span
    return first, last


def positions_like(x: torch.Tensor) -> torch.Tensor:
    return torch.arange(x.size(1)).unsqueeze(0).expand_as(x)


def test_spanbert_fate_is_per_span_and_sbo_matches_spans() -> None:
    batch, vocab = corpus(50_000)
    out = create("spanbert")(batch, vocab, make_generator(0))
    chosen = check_mlm(batch, out, vocab)
    first, _ = sbo_check(batch, out)
    assert out.ops is not None
    span_op = out.ops.gather(1, first.clamp(min=0))
    assert torch.equal(out.ops[chosen], span_op[chosen])  # every token shares its span's fate
    inputs = out.input_ids[:, 1:-1]
    random = out.ops == int(Op.RANDOM)
    pool = batch.ids[batch.real & ~vocab.is_special(batch.ids)].unique()
    assert torch.isin(inputs[random], pool).all()  # random ids come from the batch's own tokens
    per_token = create("spanbert", replacement="word_piece")(batch, vocab, make_generator(0))
    assert per_token.ops is not None
    mixed = per_token.ops != per_token.ops.gather(1, first.clamp(min=0))
    assert mixed.any()


@given(cuts=st.lists(st.integers(1, 511), max_size=6), seed=st.integers(0, 2**16))
def test_spanbert_sbo_stays_inside_each_packed_document(cuts: list[int], seed: int) -> None:
    """Several documents in a row: every SBO target's boundary tokens lie in its own document
    (the reference's blocks never cross documents), and nothing else changes."""
    batch = synthetic(2048, seed=seed)
    starts = torch.zeros(batch.ids.shape, dtype=torch.long)
    starts[:, sorted(set(cuts))] = 1
    packed = replace(batch, document_ids=starts.cumsum(1))
    plain = create("spanbert")(batch, TINY, make_generator(seed))
    out = create("spanbert")(packed, TINY, make_generator(seed))
    assert torch.equal(out.input_ids, plain.input_ids)
    assert torch.equal(out.labels, plain.labels)
    doc = torch.full(out.input_ids.shape, -1)
    doc[:, 1:-1] = packed.document_ids
    has = out.extras["span_offset"] >= 0
    rows = has.nonzero()[:, 0]
    target_doc = doc[has]
    assert torch.equal(doc[rows, out.extras["span_left"][has]], target_doc)
    assert torch.equal(doc[rows, out.extras["span_right"][has]], target_doc)
    kept = plain.extras["span_offset"] >= 0
    assert (kept | ~has).all()  # targets are only removed
    lost = kept & ~has  # and only those with a boundary token in another document
    rows = lost.nonzero()[:, 0]
    crossing = (doc[rows, plain.extras["span_left"][lost]] != doc[lost]) | (
        doc[rows, plain.extras["span_right"][lost]] != doc[lost]
    )
    assert crossing.all()


def test_spanbert_span_statistics() -> None:
    batch, vocab = corpus()
    masking = SpanMasking()
    lens = []
    for g in seeds(10):  # ~80k spans: the §4.3 tolerances are ~3 standard errors at 40k
        spans = masking.spans(batch, vocab, g)
        lens.append(spans.span_words[spans.accepted])
    accepted = torch.cat(lens).double()
    assert accepted.numel() > 60_000
    assert abs(accepted.mean() - 3.80) < 0.06
    assert abs((accepted == 1).double().mean() - 0.224) < 0.006
    assert abs((accepted == 10).double().mean() - 0.030) < 0.003
    assert accepted.min() >= 1
    assert accepted.max() <= 10


def test_spanbert_mask_share_and_merged_spans_match_the_simulation() -> None:
    """§4.3 simulation, 510-token blocks, 1.0 piece per word: merged spans of 3.94 tokens,
    about 19.6 per block; [MASK] share 0.80 ± 0.01."""
    ids = synthetic(510 * 400, length=510).ids
    batch = Tokens(ids, torch.full((ids.size(0),), 510))  # no word starts: every token a word
    corrupt = create("spanbert")
    n_spans = n_tokens = n_mask = 0
    for g in seeds(3):
        out = corrupt(batch, TINY, g)
        assert out.ops is not None
        chosen = out.ops != int(Op.KEEP)
        assert (chosen.sum(1) == 77).all()  # ceil(0.15 x 510)
        starts = chosen.clone()
        starts[:, 1:] &= ~chosen[:, :-1]
        n_spans, n_tokens = n_spans + int(starts.sum()), n_tokens + int(chosen.sum())
        n_mask += int((out.ops == int(Op.MASK)).sum())
    assert abs(n_tokens / n_spans - 3.94) < 0.08
    assert abs(n_spans / (3 * ids.size(0)) - 19.6) < 0.4
    assert abs(n_mask / n_tokens - 0.80) < 0.01


def test_span_length_tables() -> None:
    probs = truncated_geometric(0.2, 1, 10)
    assert torch.allclose(probs.float(), torch.tensor(GEOMETRIC_02), atol=1e-4)
    assert abs(float((probs * torch.arange(1, 11)).sum()) - 3.797) < 1e-3
    assert abs(float((truncated_geometric(0.3, 1, 10) * torch.arange(1, 11)).sum()) - 3.04) < 0.01
    p = poisson(3.0, 40)
    assert abs(float((p * torch.arange(41)).sum()) - 3.0) < 1e-6
    drawn = draw_lengths(probs, (200_000,), make_generator(0), torch.device("cpu"), lower=1)
    assert abs(drawn.double().mean().item() - 3.797) < 0.03


def test_spanbert_short_rows_and_one_word() -> None:
    batch = tokens([[11, 12, 13], [20] * 30], word_every=100)  # row 2 is one 30-piece word
    out = create("spanbert")(batch, TINY, make_generator(0))
    chosen = check_mlm(batch, out, TINY)
    assert chosen.sum(1).tolist() == [1, 5]  # ceil(0.45), ceil(4.5): the budget cuts mid-word
    assert chosen[1, :5].all()  # from the word start on
    assert (out.extras["span_offset"] == -1).all()  # spans touching the block edge: no SBO


# ---------------------------------------------------------------------------------------- electra


def test_electra_budget_and_no_random_ids() -> None:
    lengths = list(range(1, 601))
    out = create("electra")(full_rows(lengths), TINY, make_generator(0))
    assert (out.labels != IGNORE).sum(1).tolist() == [
        max(1, round(0.15 * (n + 2))) for n in lengths
    ]
    assert out.ops is not None
    assert not (out.ops == int(Op.RANDOM)).any()
    # max(1, min(N, round(0.15 x 12))): N = int(0.155 x 12) = 1 binds at max_seq_length 12
    short = [
        (
            create("electra", max_seq_length=m)(full_rows([10]), TINY, make_generator(0)).labels
            != IGNORE
        )
        .sum()
        .item()
        for m in (12, 512)
    ]
    assert short == [1, 2]


def test_electra_statistics_on_the_corpus() -> None:
    batch, vocab = corpus()
    corrupt = create("electra")
    mask = same = 0.0
    total = 0
    for g in seeds(4):
        m, s, o, n = split(batch, corrupt(batch, vocab, g))
        assert o == 0.0
        mask, same, total = mask + m * n, same + s * n, total + n
    assert abs(mask / total - 0.85) < 0.005  # §4.9: 0.850 ± 0.005
    assert abs(same / total - 0.15) < 0.005


def test_electra_with_replacement_keeps_fewer_distinct_positions() -> None:
    """§4.9: 128-token sequences (126 content), k = 19 draws with replacement -> 17.65 distinct
    on average, 0.140 of the candidates (± 0.002)."""
    batch = synthetic(250_000, length=126)
    out = create("electra", with_replacement=True)(batch, TINY, make_generator(0))
    chosen = out.labels != IGNORE
    expected = 1 - (1 - 1 / 126) ** 19  # distinct positions / candidates
    assert abs(chosen.sum(1).double().mean().item() / 126 - expected) < 0.002
    assert int(chosen.sum(1).max()) <= 19
    exact = create("electra")(batch, TINY, make_generator(0))
    assert ((exact.labels != IGNORE).sum(1) == 19).all()  # without replacement: exactly k

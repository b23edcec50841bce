"""NSP and SOP (objectives.md §4.10, §4.11): pair layout, labels, truncation, n-gram MLM."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from corruptions import IGNORE, Op, Tokens, create, make_generator
from corruptions._ngrams import choose_ngrams, size_probs
from corruptions._pairs import other_rows, truncate_pair
from tests.corruptions._sentences import (
    BIG,
    decode,
    originals,
    segments,
    sentence_batch,
    unique_batch,
)
from tests.helpers import TINY, corpus_tokens, corpus_vocab, tokens

WIDTH = 48


def sentence_starts(batch, row: int) -> list[int]:
    n = int(batch.lengths[row])
    return [p for p in range(n) if batch.sentence_starts[row, p]]


def single_sentence_share(batch) -> float:
    return float((batch.sentence_starts.sum(1) < 2).double().mean())


# ---------------------------------------------------------------- truncation (bert arithmetic)


def bert_truncate(a_len: int, b_len: int, budget: int) -> tuple[int, int]:
    """google-research/bert's truncate_seq_pair, counting what it cuts from A and B."""
    cut_a = cut_b = 0
    while a_len + b_len > budget:
        if a_len > b_len:
            a_len, cut_a = a_len - 1, cut_a + 1
        else:
            b_len, cut_b = b_len - 1, cut_b + 1
    return cut_a, cut_b


@given(
    a=st.integers(0, 300),
    b=st.integers(0, 300),
    budget=st.integers(0, 400),
    seed=st.integers(0, 2**31),
)
def test_truncation_counts_are_berts(a: int, b: int, budget: int, seed: int) -> None:
    t = torch.tensor
    a_front, a_back, b_front, b_back = truncate_pair(
        t([a]), t([b]), t([budget]), torch.Generator().manual_seed(seed)
    )
    assert (int(a_front + a_back), int(b_front + b_back)) == bert_truncate(a, b, budget)
    assert min(int(a_front), int(a_back), int(b_front), int(b_back)) >= 0


def test_truncation_cuts_front_and_back_evenly() -> None:
    n = 20_000
    a_front, a_back, _, _ = truncate_pair(
        torch.full((n,), 100),
        torch.full((n,), 10),
        torch.full((n,), 60),
        torch.Generator().manual_seed(0),
    )
    assert (a_front + a_back == 50).all()
    assert abs(float(a_front.double().mean()) - 25.0) < 0.1  # Binomial(50, 0.5): sd/sqrt(n) 0.025


# ---------------------------------------------------------------- NSP


def test_nsp_label_rate_is_half_plus_half_the_single_sentence_share() -> None:
    batch = sentence_batch(100_000, 8, seed=1, p_sentence=0.15)
    q = single_sentence_share(batch)
    assert 0.2 < q < 0.4  # the test means something only if q is far from 0 and 1
    # q counts whole rows: no row is cut to a shorter target (that would raise q)
    nsp = create("nsp", short_seq_prob=0.0)
    label = nsp(batch, TINY, make_generator(0)).extras["next_sentence_label"]
    assert abs(float(label.double().mean()) - (0.5 + 0.5 * q)) < 0.005
    assert (label[batch.sentence_starts.sum(1) < 2] == 1).all()


@pytest.mark.parametrize("seed", range(3))
def test_nsp_pairs_are_true_continuations_or_other_rows(seed: int) -> None:
    batch = unique_batch(200, WIDTH, seed)
    out = create("nsp", short_seq_prob=0.0)(batch, BIG, make_generator(seed))
    labels = out.extras["next_sentence_label"].tolist()
    assert 0.3 < sum(labels) / len(labels) < 0.9
    for row, label in enumerate(labels):
        n, starts = int(batch.lengths[row]), sentence_starts(batch, row)
        a, b = segments(out, row)
        assert a  # A is never empty
        assert len(a) + len(b) <= max(n, 2)  # the row's budget
        where_a = [decode(t, WIDTH) for t in a]
        assert all(r == row for r, _ in where_a)
        assert [p for _, p in where_a] == list(range(where_a[0][1], where_a[0][1] + len(a)))
        if label == 0:  # B starts right after A, both whole sentences, nothing cut
            assert len(starts) >= 2
            a_end = len(a)
            assert where_a[0][1] == 0
            assert a_end in starts
            assert [decode(t, WIDTH) for t in b] == [(row, p) for p in range(a_end, n)]
        else:  # B: a contiguous run of another row
            assert b
            where_b = [decode(t, WIDTH) for t in b]
            other = where_b[0][0]
            assert other != row
            assert where_b == [(other, where_b[0][1] + i) for i in range(len(b))]
            if len(starts) >= 2 and len(a) + len(b) < max(n, 2):  # nothing cut from A
                assert where_a[0][1] == 0
                assert len(a) in starts


def test_nsp_random_b_starts_at_a_sentence_when_not_cut_from_the_front() -> None:
    batch = unique_batch(300, WIDTH, seed=5, p_sentence=0.2, min_len=WIDTH // 2)
    out = create("nsp", random_next=1.0)(batch, BIG, make_generator(5))
    checked = 0
    for row in range(300):
        a, b = segments(out, row)
        other, start = decode(b[0], WIDTH)
        if len(a) > len(b) + 1:  # truncation only ever cut A
            checked += 1
            assert start in sentence_starts(batch, other)
            end = start + len(b)  # B holds whole sentences, up to the row's end
            assert end in sentence_starts(batch, other) or end == int(batch.lengths[other])
    assert checked > 50


def test_nsp_layout_and_segment_ids() -> None:
    batch = unique_batch(64, WIDTH, seed=3)
    out = create("nsp")(batch, BIG, make_generator(3))
    types = out.extras["token_type_ids"]
    for row in range(64):
        total = int(out.attention_mask[row].sum())
        a, b = segments(out, row)
        ids = originals(out)[row]
        assert total == len(a) + len(b) + 3
        assert ids[0] == BIG.bos
        assert ids[len(a) + 1] == BIG.eos
        assert ids[total - 1] == BIG.eos
        assert types[row].tolist() == [0] * (len(a) + 2) + [1] * (len(b) + 1) + [0] * (
            types.size(1) - total
        )
        assert (out.input_ids[row, total:] == BIG.pad).all()


def test_nsp_mlm_budget_is_berts_on_the_whole_pair() -> None:
    batch = unique_batch(200, WIDTH, seed=4)
    out = create("nsp")(batch, BIG, make_generator(4))
    total = out.attention_mask.sum(1).double()
    expected = torch.round(total * 0.15).clamp(min=1).long()  # torch.round is half to even
    assert torch.equal((out.labels != IGNORE).sum(1), expected)
    scored = originals(out)[out.labels != IGNORE]
    assert not BIG.is_special(scored).any()  # [CLS], [SEP] never predicted
    capped = create("nsp", max_predictions=2)(batch, BIG, make_generator(4))
    assert torch.equal((capped.labels != IGNORE).sum(1), expected.clamp(max=2))


def test_nsp_mlm_on_the_corpus() -> None:
    batch, vocab = corpus_tokens(), corpus_vocab()
    out = create("nsp")(batch, vocab, make_generator(0))
    chosen = out.labels != IGNORE
    total = out.attention_mask.sum(1).double()
    assert torch.equal(chosen.sum(1), torch.round(total * 0.15).clamp(min=1).long())
    assert int(chosen.sum()) > 25_000
    assert not vocab.is_special(out.labels[chosen]).any()
    assert abs(float((out.input_ids[chosen] == vocab.mask).double().mean()) - 0.8) < 0.012
    kept = float((out.input_ids[chosen] == out.labels[chosen]).double().mean())
    assert abs(kept - (0.1 + 0.1 / vocab.size)) < 0.01


def test_nsp_single_row_batch_never_draws_from_itself() -> None:
    ids = list(range(11, 41))
    for sentence_every in (0, 7):
        batch = tokens([ids], sentence_every=sentence_every)
        for seed in range(20):
            out = create("nsp", short_seq_prob=0.0)(batch, TINY, make_generator(seed))
            assert out.extras["next_sentence_label"].tolist() == [0]
            a, b = segments(out, 0)
            assert a
            assert b
            assert a + b == ids
            if sentence_every:
                assert len(a) % sentence_every == 0


def test_nsp_ops_mark_dropped_tokens() -> None:
    batch = unique_batch(100, WIDTH, seed=6)
    out = create("nsp", random_next=1.0)(batch, BIG, make_generator(6))
    for row in range(100):
        a, _ = segments(out, row)
        n = int(batch.lengths[row])
        kept = {decode(t, WIDTH)[1] for t in a}
        ops = out.ops[row, :n].tolist()
        assert all((op == Op.DELETE) == (p not in kept) for p, op in enumerate(ops))


def test_nsp_edge_rows() -> None:
    batch = tokens([[42], [TINY.unk, TINY.mask], [11, 12, 13]], sentence_every=1)
    out = create("nsp", short_seq_prob=0.0)(batch, TINY, make_generator(0))
    assert out.extras["next_sentence_label"].tolist()[0] == 1  # one sentence: always random
    for row in range(3):
        a, b = segments(out, row)
        assert a
        assert b


# ---------------------------------------------------------------- SOP


def test_sop_label_rate() -> None:
    batch = sentence_batch(100_000, 8, seed=7, p_sentence=0.15)
    q = single_sentence_share(batch)
    sop = create("sop", short_seq_prob=0.0)
    label = sop(batch, TINY, make_generator(7)).extras["sentence_order_label"]
    assert abs(float(label.double().mean()) - (0.5 * (1 - q) + q)) < 0.005


@pytest.mark.parametrize("seed", range(3))
def test_sop_swaps_exactly(seed: int) -> None:
    batch = unique_batch(200, WIDTH, seed)
    out = create("sop", short_seq_prob=0.0)(batch, BIG, make_generator(seed))
    labels = out.extras["sentence_order_label"].tolist()
    swapped = 0
    for row, label in enumerate(labels):
        n, starts = int(batch.lengths[row]), sentence_starts(batch, row)
        first, second = segments(out, row)
        where = [decode(t, WIDTH) for t in first + second]
        if len(starts) < 2:  # B from another document, label 1 (albert #234)
            assert label == 1
            assert {r for r, _ in where[len(first) :]} != {row}
            continue
        text = [(row, p) for p in range(n)]
        if label == 0:
            assert where == text
            assert len(first) in starts
        else:  # the second segment's text comes first in the document
            swapped += 1
            assert where == text[len(second) :] + text[: len(second)]
            assert len(second) in starts
    assert swapped > 40


def test_sop_single_row_batch_swaps_halves_of_its_own_text() -> None:
    ids = list(range(11, 31))
    labels = []
    for seed in range(30):
        out = create("sop", short_seq_prob=0.0)(tokens([ids]), TINY, make_generator(seed))
        first, second = segments(out, 0)
        label = int(out.extras["sentence_order_label"][0])
        labels.append(label)
        assert (second + first if label else first + second) == ids
    assert 0 < sum(labels) < 30


def test_sop_mlm_is_whole_word_and_capped_at_20() -> None:
    width = 160
    batch = unique_batch(200, width, seed=8, p_word=0.6, min_len=100)
    out = create("sop", short_seq_prob=0.0)(batch, BIG, make_generator(8))
    chosen = out.labels != IGNORE
    assert (chosen.sum(1) <= 20).all()
    assert chosen.sum(1).double().mean() > 18  # the cap, nearly always reached at 100+ tokens
    word_of = (batch.word_starts.long().cumsum(1) - 1).tolist()  # word index per source token
    ids = originals(out)
    for row in range(200):
        held = [
            t
            for t in ids[row, : int(out.attention_mask[row].sum())].tolist()
            if not BIG.is_special(torch.tensor(t))
        ]
        status: dict[tuple[int, int], set[bool]] = {}
        picked = set(ids[row][chosen[row]].tolist())
        for t in held:
            r, p = decode(t, width)
            status.setdefault((r, word_of[r][p]), set()).add(t in picked)
        assert all(len(v) == 1 for v in status.values())  # a word is all in or all out


def test_sop_budget_without_cap_is_15_percent() -> None:
    batch = unique_batch(200, WIDTH, seed=9)
    out = create("sop", max_predictions=0, whole_word=False)(batch, BIG, make_generator(9))
    total = out.attention_mask.sum(1).double()
    expected = torch.round(total * 0.15).clamp(min=1).long()
    assert torch.equal((out.labels != IGNORE).sum(1), expected)


def test_sop_swapped_tokens_are_marked_moved() -> None:
    batch = unique_batch(100, WIDTH, seed=10)
    out = create("sop", short_seq_prob=0.0)(batch, BIG, make_generator(10))
    for row, label in enumerate(out.extras["sentence_order_label"].tolist()):
        ops = out.ops[row, : int(batch.lengths[row])]
        if label == 1 and len(sentence_starts(batch, row)) >= 2:
            assert not (ops == Op.KEEP).any()
            assert (ops == Op.MOVED).any()


# ---------------------------------------------------------------- n-gram units (ALBERT)


def unit_sizes(allowed, words, budget, probs, seed: int) -> torch.Tensor:
    """Counts of complete chosen units by size in words (index 0 = 1 word)."""
    choice = choose_ngrams(allowed, words, budget, probs, torch.Generator().manual_seed(seed))
    counts = torch.zeros(len(probs), dtype=torch.long)
    for row in range(allowed.size(0)):
        units = choice.unit[row]
        starts = words[row] & choice.chosen[row]
        ids, n_words = torch.unique(units[starts], return_counts=True)
        complete = n_words == choice.unit_words[row][ids]
        counts += torch.bincount(n_words[complete] - 1, minlength=len(probs))[: len(probs)]
    return counts


def test_ngram_sizes_follow_one_over_n_on_the_corpus() -> None:
    batch, vocab = corpus_tokens(), corpus_vocab()
    allowed, rows = batch.real & ~vocab.is_special(batch.ids), batch.ids.size(0)
    probs = size_probs(3, True)
    # not budget-limited: every unit is taken, so the sizes are the drawn ones
    everything = unit_sizes(allowed, batch.word_starts, torch.full((rows,), 512), probs, 11)
    # at 15% of 512 (not ALBERT's cap of 20), the units taken whole before the budget is
    # reached; the one that reaches it is size-biased, so these lean slightly to short ones
    at_15 = unit_sizes(allowed, batch.word_starts, torch.full((rows,), 77), probs, 12)
    assert everything.sum() > 100_000
    assert at_15.sum() > 20_000
    for counts, tolerance in ((everything, 0.01), (at_15, 0.015)):
        shares = (counts.double() / counts.sum()).tolist()
        for share, expected in zip(shares, (6 / 11, 3 / 11, 2 / 11), strict=True):
            assert abs(share - expected) < tolerance
    uniform = unit_sizes(
        allowed, batch.word_starts, torch.full((rows,), 512), size_probs(3, False), 13
    )
    assert abs(float(uniform[2]) / float(uniform.sum()) - 1 / 3) < 0.01


def test_sop_on_the_corpus_predicts_at_most_20() -> None:
    batch, vocab = corpus_tokens(), corpus_vocab()
    out = create("sop")(batch, vocab, make_generator(1))
    chosen = (out.labels != IGNORE).sum(1)
    budget = torch.round(out.attention_mask.sum(1).double() * 0.15).clamp(min=1, max=20).long()
    assert (chosen <= budget).all()
    assert float(chosen.sum()) > 0.97 * float(budget.sum())  # whole words rarely leave a gap
    assert (
        abs(float((out.input_ids[out.labels != IGNORE] == vocab.mask).double().mean()) - 0.8) < 0.02
    )


def test_ngram_choice_hits_the_budget_exactly_with_token_words() -> None:
    gen = torch.Generator().manual_seed(12)
    allowed = torch.rand(300, 64, generator=gen) < 0.9
    budget = torch.randint(0, 80, (300,), generator=gen)
    choice = choose_ngrams(allowed, None, budget, size_probs(3, True), gen)
    assert torch.equal(choice.chosen.sum(1), torch.minimum(budget, allowed.sum(1)))
    assert not (choice.chosen & ~allowed).any()


@given(seed=st.integers(0, 2**31), n=st.integers(1, 40), budget=st.integers(0, 50))
def test_ngram_choice_takes_whole_words_within_budget(seed: int, n: int, budget: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    allowed = torch.rand(2, n, generator=gen) < 0.85
    words = torch.rand(2, n, generator=gen) < 0.5
    choice = choose_ngrams(allowed, words, torch.tensor([budget, budget]), (0.5, 0.3, 0.2), gen)
    assert (choice.chosen.sum(1) <= budget).all()
    assert not (choice.chosen & ~allowed).any()
    for row in range(2):  # a word (run of allowed tokens from a start) is all in or all out
        word_id = -1
        pieces: dict[int, set[bool]] = {}
        for p in range(n):
            if not allowed[row, p]:
                word_id += 1
                continue
            if words[row, p] or p == 0 or not allowed[row, p - 1]:
                word_id += 1
            pieces.setdefault(word_id, set()).add(bool(choice.chosen[row, p]))
        assert all(len(v) == 1 for v in pieces.values())


def test_other_rows_are_uniform_over_other_non_empty_rows() -> None:
    gen = torch.Generator().manual_seed(14)
    lengths = torch.tensor([3, 0, 5, 2, 0, 1])
    picks = torch.stack([other_rows(lengths, gen) for _ in range(6_000)])  # (draws, rows)
    for row in range(6):
        counts = torch.bincount(picks[:, row], minlength=6)
        expected = {0, 2, 3, 5} - {row}
        assert set(counts.nonzero().squeeze(1).tolist()) == expected
        assert (counts[list(expected)] - 6_000 / len(expected)).abs().max() < 200
    assert other_rows(torch.tensor([4, 0]), gen).tolist() == [1, 0]  # nothing else: any row


def test_other_rows_prefer_rows_long_enough() -> None:
    gen = torch.Generator().manual_seed(3)
    lengths = torch.tensor([10, 2, 7, 0, 9])
    need = torch.tensor([8, 8, 8, 8, 20])
    picks = torch.stack([other_rows(lengths, gen, need) for _ in range(3_000)])
    assert set(picks[:, 0].tolist()) == {4}  # the only other row with >= 8 tokens
    assert set(picks[:, 1].tolist()) == {0, 4}
    assert set(picks[:, 2].tolist()) == {0, 4}
    assert set(picks[:, 4].tolist()) == {0, 1, 2}  # none has 20: any other non-empty row


def test_nsp_pair_length_does_not_give_the_label_away() -> None:
    """A random B starts where its row has text enough left, in a row long enough: pairs with a
    random B are as long as their row, as true pairs are (a uniform start left 41% of them
    short at 128 tokens, so that length alone predicted the label)."""
    batch, vocab = corpus_tokens(150_000, 128), corpus_vocab()
    lengths, labels = [], []
    for i, rows in enumerate(
        torch.randperm(batch.ids.size(0), generator=make_generator(5)).split(32)
    ):
        sub = type(batch)(*(None if t is None else t[rows] for t in batch._tensors()))
        out = create("nsp", short_seq_prob=0.0)(sub, vocab, make_generator(i))
        lengths.append(out.attention_mask.sum(1) - (sub.lengths + 3))
        labels.append(out.extras["next_sentence_label"])
    short, label = torch.cat(lengths) < 0, torch.cat(labels).bool()
    assert 0.45 < label.float().mean() < 0.6
    assert not short[~label].any()
    assert short[label].float().mean() < 0.01


@pytest.mark.parametrize("name", ["nsp", "sop"])
def test_short_targets_are_reached_in_whole_sentences(name: str) -> None:
    """bert/ALBERT's short_seq_prob 0.1: a target t uniform in [2, max] instead of max (§4.10
    step 2), and create_instances_from_document takes whole sentences until the chunk reaches
    t, then cuts the pair to max_num_tokens (the row), not to t. So a pair is its row's first
    k tokens, k the first sentence start >= t (or the row's end): at least t, never mid-sentence.
    Every row's first sentence is one token, so every chunk has two and B is the true next one."""
    width = 64
    batch = sentence_batch(40_000, width, seed=3, p_sentence=0.3)
    starts = batch.sentence_starts.clone()
    starts[:, 1] = True
    batch = Tokens(batch.ids, batch.lengths, batch.word_starts | starts, starts)
    true_b = {"random_next": 0.0} if name == "nsp" else {"swap": 0.0}
    out = create(name, **true_b)(batch, TINY, make_generator(3), with_origin=True)
    assert out.origin is not None
    content = out.attention_mask.sum(1) - 3
    assert torch.equal((out.origin >= 0).sum(1), content)  # all of it from the row itself
    ends = torch.cat([starts, torch.ones(len(starts), 1, dtype=torch.bool)], 1)  # k = width too
    assert ends.gather(1, content.unsqueeze(1)).all()  # whole sentences
    pos = torch.arange(width + 1)
    next_start = torch.where(ends, pos, width + 1).flip(1).cummin(1).values.flip(1)
    expected = 0.9 * width + 0.1 * float(next_start[:, 2:].double().mean())  # t = 2 .. width
    assert abs(float(content.double().mean()) - expected) < 0.1  # SE ~0.03
    assert float((content < width).double().mean()) > 0.08
    none = create(name, short_seq_prob=0.0, **true_b)(batch, TINY, make_generator(3))
    assert bool((none.attention_mask.sum(1) == width + 3).all())


def test_nsp_short_targets_keep_pairs_in_order() -> None:
    """Every row given a short target: a true pair is still A then B of the row's first
    sentences, in order; a random B is still a contiguous run of another row."""
    batch = unique_batch(200, WIDTH, seed=11)
    out = create("nsp", short_seq_prob=1.0)(batch, BIG, make_generator(11))
    shorter = 0
    for row, label in enumerate(out.extras["next_sentence_label"].tolist()):
        n = int(batch.lengths[row])
        a, b = segments(out, row)
        where_a, where_b = [decode(t, WIDTH) for t in a], [decode(t, WIDTH) for t in b]
        assert a
        assert len(a) + len(b) <= max(n, 2)
        shorter += len(a) + len(b) < n
        assert all(r == row for r, _ in where_a)
        if label == 0:
            assert all(r == row for r, _ in where_b)
            places = [p for _, p in where_a + where_b]
            assert places == sorted(set(places))
        else:
            other = where_b[0][0]
            assert where_b == [(other, where_b[0][1] + i) for i in range(len(b))]
    assert shorter > 50  # about half: the rest reach the target only at their row's end


def of_documents(batch: Tokens, documents: torch.Tensor) -> Tokens:
    return replace(batch, row_documents=documents)


@pytest.mark.parametrize("name", ["nsp", "sop"])
def test_a_random_b_never_comes_from_the_same_document(name: str) -> None:
    """Rows of one long document sit together in a batch (8 documents of 8 rows here): a B
    drawn from "another row" was the same document in 7 of 63 cases; with row_documents it
    never is. SOP takes a random B only for single-sentence chunks: most rows have one here."""
    batch = unique_batch(64, WIDTH, seed=21, p_sentence=0.1 if name == "nsp" else 0.01)
    documents = torch.arange(64) // 8
    corrupt = create(name, short_seq_prob=0.0, **({"random_next": 1.0} if name == "nsp" else {}))
    drawn = 0
    for seed in range(20):
        out = corrupt(of_documents(batch, documents), BIG, make_generator(seed), with_origin=True)
        for row in range(64):
            _, b = segments(out, row)
            rows = {decode(t, WIDTH)[0] for t in b}
            if rows != {row}:
                drawn += 1
                assert len(rows) == 1
                assert int(documents[rows.pop()]) != int(documents[row])
    assert drawn > 500


def test_other_rows_is_uniform_over_rows_of_other_documents() -> None:
    lengths = torch.full((12,), 30)
    documents = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2, 3, 4, 4])
    picks = torch.stack(
        [other_rows(lengths, make_generator(i), None, documents) for i in range(3000)]
    )
    assert (documents[picks] != documents).all()
    counts = torch.zeros(12, 12).index_put_(
        (torch.arange(12).expand_as(picks), picks), torch.ones(picks.shape), accumulate=True
    )
    others = (documents.unsqueeze(0) != documents.unsqueeze(1)).sum(1, keepdim=True)
    expected = 3000 / others.double()
    eligible = documents.unsqueeze(0) != documents.unsqueeze(1)
    assert (
        (counts.double() - expected).abs()[eligible] < 5 * expected.sqrt().expand(12, 12)[eligible]
    ).all()


@pytest.mark.parametrize("name", ["nsp", "sop"])
def test_rows_of_a_single_document_split_their_own_text(name: str) -> None:
    """Every row from one document: no random B is possible, so as with a batch of one row, NSP
    pairs are all true (label 0) and single sentences are split; both segments come from the
    row itself."""
    batch = of_documents(
        unique_batch(16, WIDTH, seed=4, p_sentence=0.02), torch.zeros(16, dtype=torch.long)
    )
    out = create(name, short_seq_prob=0.0)(batch, BIG, make_generator(1), with_origin=True)
    assert out.origin is not None
    content = out.attention_mask.sum(1) - 3
    assert torch.equal((out.origin >= 0).sum(1), content)
    if name == "nsp":
        assert not out.extras["next_sentence_label"].any()

"""BART noising (objectives.md §4.6): properties, reference arithmetic and statistics."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from corruptions import IGNORE, Corrupted, Op, Tokens, UsageError, create, get, make_generator
from corruptions._bart import coverage, poisson_cdf, poisson_draws, span_lengths
from corruptions.bart import (
    BartNoising,
    DocumentRotation,
    SentencePermutation,
    TextInfilling,
    compose,
)
from tests.helpers import ORDINARY, TINY, corpus_tokens, corpus_vocab, random_batch, tokens

NAMES = ["bart-infill", "bart-mask", "bart-delete", "bart-permute", "bart-rotate", "bart"]
word_ids = st.sampled_from(ORDINARY)


def content(out: Corrupted, row: int) -> list[int]:
    """The input of `row` without padding and without its <s> ... </s> frame."""
    ids = out.input_ids[row][out.attention_mask[row]].tolist()
    assert ids[0] == TINY.bos
    assert ids[-1] == TINY.eos
    return ids[1:-1]


def is_subsequence(small: list[int], big: list[int]) -> bool:
    it = iter(big)
    return all(any(x == y for y in it) for x in small)


def distinct_rows(n_rows: int, length: int, seed: int = 0) -> list[list[int]]:
    """Rows of distinct ordinary ids, so every token can be traced by its value."""
    gen = torch.Generator().manual_seed(seed)
    pool = torch.tensor(ORDINARY)
    return [
        pool[torch.randperm(len(ORDINARY), generator=gen)[:length]].tolist() for _ in range(n_rows)
    ]


# ---------------------------------------------------------------------------------------------
# Output format, for every BART objective


@pytest.mark.parametrize("name", [*NAMES, "bart-infill+bart-rotate", "bart-delete+bart-permute"])
@given(
    ids=st.lists(word_ids, min_size=1, max_size=80),
    seed=st.integers(0, 2**32 - 1),
    word_every=st.integers(0, 4),
    sentence_every=st.integers(0, 9),
)
def test_target_is_the_clean_framed_document(
    name: str, ids: list[int], seed: int, word_every: int, sentence_every: int
) -> None:
    rows = [ids, ids[: max(1, len(ids) // 3)]]
    out = create(name)(tokens(rows, word_every, sentence_every), TINY, make_generator(seed))
    assert out.decoder_input_ids is not None
    for b, row in enumerate(rows):
        n = len(row)
        assert out.labels[b, : n + 2].tolist() == [IGNORE, *row, TINY.eos]  # <s> is not scored
        assert (out.labels[b, n + 2 :] == IGNORE).all()
        # fairseq's prev_output_tokens: the target with its final </s> moved to the front
        assert out.decoder_input_ids[b, : n + 2].tolist() == [TINY.eos, TINY.bos, *row]
        assert (out.decoder_input_ids[b, n + 2 :] == TINY.pad).all()
        content(out, b)  # framed <s> ... </s>


def test_specials_in_content_are_walls_and_not_scored() -> None:
    row = [11, 12, 13, TINY.unk, 14, 15, TINY.mask, 16, 17, 18, 19, TINY.sentinels[3], 20] * 8
    special = TINY.is_special(torch.tensor(row))
    for name in NAMES:
        params = {
            k: v for k, v in {"rate": 0.9, "mask_random": 0.0}.items() if k in _params(name)
        }  # random ids could be specials
        for seed in range(20):
            out = create(name, **params)(
                tokens([row], sentence_every=5), TINY, make_generator(seed)
            )
            assert (out.ops[0][special] == int(Op.KEEP)).all()
            assert (out.labels[0, 1:-1][special] == IGNORE).all()
            kept = content(out, 0)
            # every special survives (permutation and rotation may move it)
            found = [t for t in kept if t in {TINY.unk, TINY.sentinels[3]}]
            assert sorted(found) == sorted(t for t in row if t in {TINY.unk, TINY.sentinels[3]})


def _params(name: str) -> set[str]:
    return {p.name for p in get(name).params}


# ---------------------------------------------------------------------------------------------
# Masking, deletion, infilling


@given(
    ids=st.lists(word_ids, min_size=1, max_size=120),
    seed=st.integers(0, 2**32 - 1),
    word_every=st.integers(0, 4),
)
def test_infill_and_delete_inputs_are_subsequences(
    ids: list[int], seed: int, word_every: int
) -> None:
    batch = tokens([ids], word_every=word_every)
    for name in ("bart-infill", "bart-delete", "bart-mask"):
        params = {"mask_random": 0.0} if "mask_random" in _params(name) else {}
        out = create(name, **params)(batch, TINY, make_generator(seed))
        kept = [t for t in content(out, 0) if t != TINY.mask]
        assert is_subsequence(kept, ids)
        ops = out.ops[0]
        assert len(kept) == int((ops == int(Op.KEEP)).sum())  # the unhit tokens, all of them


@given(n=st.integers(1, 200), seed=st.integers(0, 2**32 - 1))
def test_token_masking_and_deletion_budgets_are_exact(n: int, seed: int) -> None:
    batch = random_batch(1, n, seed=seed)
    budget = math.ceil(torch.tensor(float(n)).mul(0.3).item())  # in float32, as fairseq
    masked = create("bart-mask")(batch, TINY, make_generator(seed))
    assert int(((masked.ops == int(Op.MASK)) | (masked.ops == int(Op.RANDOM))).sum()) == budget
    assert int(masked.attention_mask.sum()) == n + 2
    deleted = create("bart-delete")(batch, TINY, make_generator(seed))
    assert int((deleted.ops == int(Op.DELETE)).sum()) == budget
    assert len(content(deleted, 0)) == n - budget


def test_spans_cover_whole_words() -> None:
    batch = random_batch(64, 300, seed=3, word_every=3)  # words of three tokens
    out = create("bart-infill")(batch, TINY, make_generator(0))
    hit = (out.ops != int(Op.KEEP)).view(64, 100, 3)
    assert (hit.all(2) | ~hit.any(2)).all()
    # ceil(0.3 x 100 words) = 30 words per row, minus overlaps
    assert 0.25 * 300 < int(hit.sum()) / 64 < 0.3 * 300


def test_zero_length_spans_insert_a_mask() -> None:
    # one word per row: budget 1; the first draw is 0 with P = e^-3, and then a <mask> is inserted
    batch = random_batch(20_000, 1, seed=5)
    out = create("bart-infill", mask_random=0.0)(batch, TINY, make_generator(1))
    lengths = out.attention_mask.sum(1) - 2
    assert (out.ops == int(Op.MASK)).all()  # the word itself always becomes one mask
    grown = (lengths > 1).float().mean().item()
    assert abs(grown - math.exp(-3)) < 0.008  # dropping zero-length spans gives 0
    extra = (lengths - 1).float().sum() / 20_000  # E[#zeros before the first non-zero draw]
    assert abs(extra.item() - math.exp(-3) / (1 - math.exp(-3))) < 0.01
    # an inserted token alone is random: ceil(1 x 0.1) = 1 (fairseq's insertion noise)
    out = create("bart-infill", mask_random=0.1)(batch, TINY, make_generator(1))
    one_extra = out.attention_mask.sum(1) == 4
    inputs = out.input_ids[one_extra][:, 1:3]
    assert ((inputs != TINY.mask).sum(1) >= 1).float().mean() > 0.95


def test_rows_without_words_are_unchanged() -> None:
    rows = [[TINY.unk, TINY.mask], [TINY.sentinels[0]]]
    for name in NAMES:
        for seed in range(10):
            out = create(name)(tokens(rows, sentence_every=1), TINY, make_generator(seed))
            assert (out.ops == int(Op.KEEP)).all()
            assert content(out, 1) == rows[1]
            if name in ("bart-permute", "bart-rotate", "bart"):  # specials travel along
                assert sorted(content(out, 0)) == sorted(rows[0])
            else:
                assert content(out, 0) == rows[0]


@pytest.mark.parametrize("name", [*NAMES, "bart-delete+bart-rotate+bart-permute"])
def test_empty_rows_stay_empty(name: str) -> None:
    for rows in ([[11, 12, 13], []], [[]]):
        out = create(name)(tokens(rows, word_every=2, sentence_every=1), TINY, make_generator(0))
        assert content(out, len(rows) - 1) == []
        assert out.labels[len(rows) - 1, :2].tolist() == [IGNORE, TINY.eos]


def test_one_word_rows_become_masks() -> None:
    batch = tokens([[11, 12, 13, 14, 15]], word_every=10)  # five tokens, one word
    seen = set()
    for seed in range(200):
        out = create("bart-infill", mask_random=0.0)(batch, TINY, make_generator(seed))
        kept = content(out, 0)
        assert set(kept) == {TINY.mask}  # budget ceil(0.3) = 1 word = the whole row
        seen.add(len(kept))
    assert seen >= {1, 2}


def test_overlapping_spans_follow_fairseq() -> None:
    # spans [first, last) in words; fairseq extends each span over later starts, deleting them
    first = torch.tensor([[0, 2], [0, 2], [4, 1], [3, 3]])
    last = torch.tensor([[3, 5], [2, 4], [6, 2], [5, 5]])
    valid = torch.tensor([[True, True], [True, True], [True, True], [True, False]])
    cover, head = coverage(first, last, valid, 7)
    assert (cover > 0).tolist() == [
        [True, True, True, True, True, False, False],  # overlapping: one run...
        [True, True, True, True, False, False, False],  # abutting: one run...
        [False, True, False, False, True, True, False],
        [False, False, False, True, True, False, False],
    ]
    assert head.tolist() == [
        [True, False],  # ...with one <mask>
        [True, True],  # ...with two
        [True, True],
        [True, False],
    ]


def test_poisson_table_matches_fairseq() -> None:
    assert len(poisson_cdf(3.0)) == 18  # support 0..17
    assert len(poisson_cdf(3.5)) == 19  # support 0..18
    assert poisson_cdf(3.0)[0] == pytest.approx(math.exp(-3), rel=1e-6)
    assert poisson_cdf(3.0)[-1] == pytest.approx(1.0)


def test_sampled_lengths_follow_the_poisson_table() -> None:
    draws = poisson_draws((400, 500), 3.0, torch.Generator().manual_seed(0)).float()
    assert abs(draws.mean().item() - 3.0) < 0.03
    assert abs((draws == 0).float().mean().item() - 0.0498) < 0.003
    assert int(draws.max()) <= 17
    draws = poisson_draws((400, 500), 3.5, torch.Generator().manual_seed(1)).float()
    assert abs(draws.mean().item() - 3.5) < 0.03
    assert abs((draws == 0).float().mean().item() - 0.0302) < 0.003


def test_span_lengths_sum_to_the_budget() -> None:
    budget = torch.tensor([0, 1, 2, 7, 153, 400, 400] * 350)
    lengths, used = span_lengths(budget, 3.0, torch.Generator().manual_seed(0))
    assert torch.equal(lengths.sum(1), budget)
    assert not used[budget == 0].any()
    n_used = used.sum(1)
    last = lengths.gather(1, (n_used - 1).clamp(min=0).unsqueeze(1)).squeeze(1)
    assert (last[budget > 0] >= 1).all()  # the trimmed last span is never empty
    # the untrimmed ones are Poisson(3) (the stopping rule pulls their mean slightly down)
    before_last = used & (torch.arange(used.size(1)) < (n_used - 1).unsqueeze(1))
    sample = lengths[before_last & (budget >= 153).unsqueeze(1)].float()
    assert sample.numel() > 90_000
    assert abs(sample.mean().item() - 3.0) < 0.03


def test_budget_is_fairseq_ceil() -> None:
    # fairseq multiplies a float32 count: 90 x 0.3 = 27.000002 there, so 28 tokens
    for n, expected in [(1, 1), (3, 1), (4, 2), (10, 3), (11, 4), (90, 28), (510, 153)]:
        out = create("bart-delete")(random_batch(1, n), TINY, make_generator(0))
        assert int((out.ops == int(Op.DELETE)).sum()) == expected


# ---------------------------------------------------------------------------------------------
# Permutation and rotation


def sentences_of(row: list[int], every: int) -> list[list[int]]:
    return [row[i : i + every] for i in range(0, len(row), every)]


@given(n=st.integers(1, 60), every=st.integers(1, 12), seed=st.integers(0, 2**32 - 1))
def test_permutation_moves_whole_sentences(n: int, every: int, seed: int) -> None:
    row = distinct_rows(1, n, seed % 1000)[0]
    out = create("bart-permute")(tokens([row], sentence_every=every), TINY, make_generator(seed))
    got = content(out, 0)
    assert sorted(got) == sorted(row)
    by_first = {s[0]: s for s in sentences_of(row, every)}
    pos, used = 0, []
    while pos < len(got):  # the input is a concatenation of the sentences, each exactly once
        sentence = by_first[got[pos]]
        assert got[pos : pos + len(sentence)] == sentence
        used.append(sentence[0])
        pos += len(sentence)
    assert sorted(used) == sorted(by_first)
    moved = out.ops[0] == int(Op.MOVED)
    assert moved.tolist() == [got[i] != row[i] for i in range(n)]


def test_permutation_identity_rate_is_one_over_k_factorial() -> None:
    batch = random_batch(20_000, 12, seed=2, sentence_every=4)  # three sentences
    out = create("bart-permute")(batch, TINY, make_generator(0))
    unchanged = (out.ops == int(Op.KEEP)).all(1).float().mean().item()
    assert abs(unchanged - 1 / 6) < 0.013


def test_permutation_ratio_limits_the_moved_sentences() -> None:
    batch = random_batch(2_000, 40, seed=2, sentence_every=4)  # ten sentences of four tokens
    out = create("bart-permute", permute_ratio=0.3)(batch, TINY, make_generator(0))
    moved = (out.ops == int(Op.MOVED)).view(2_000, 10, 4).all(2).sum(1)
    assert int(moved.max()) == 3  # ceil(10 x 0.3) sentences shuffled among their slots
    assert (moved != 1).all()
    out = create("bart-permute", permute_ratio=0.0)(batch, TINY, make_generator(0))
    assert (out.ops == int(Op.KEEP)).all()


def test_one_sentence_is_not_permuted() -> None:
    batch = random_batch(50, 30, seed=1)  # sentence_starts: only the first token
    out = create("bart-permute")(batch, TINY, make_generator(0))
    assert torch.equal(out.input_ids[:, 1:-1], batch.ids)
    no_sentences = Tokens(batch.ids, batch.lengths)
    out = create("bart-permute")(no_sentences, TINY, make_generator(0))
    assert torch.equal(out.input_ids[:, 1:-1], batch.ids)


@given(ids=st.lists(word_ids, min_size=1, max_size=60), seed=st.integers(0, 2**32 - 1))
def test_rotation_is_a_cyclic_shift(ids: list[int], seed: int) -> None:
    out = create("bart-rotate")(tokens([ids]), TINY, make_generator(seed))
    got = content(out, 0)
    assert any(got == ids[s:] + ids[:s] for s in range(len(ids)))
    if got != ids:
        assert (out.ops[0] == int(Op.MOVED)).all()


def test_rotation_offsets_are_uniform_with_two_identities() -> None:
    n_rows, n = 30_000, 5  # L = 7 with <s> and </s>: P(identity) = 2 / (L - 1) = 1/3
    ids = torch.arange(11, 11 + n).repeat(n_rows, 1)
    batch = Tokens(ids, torch.full((n_rows,), n))
    out = create("bart-rotate")(batch, TINY, make_generator(0))
    first = out.input_ids[:, 1] - 11  # the rotation offset
    counts = torch.bincount(first, minlength=n).float() / n_rows
    assert abs(counts[0].item() - 2 / 6) < 0.014
    for shift in range(1, n):
        assert abs(counts[shift].item() - 1 / 6) < 0.011
    out = create("bart-rotate", rotate=0.0)(batch, TINY, make_generator(0))
    assert (out.input_ids[:, 1] == 11).all()


def test_short_rows_rotate_to_themselves() -> None:
    out = create("bart-rotate")(tokens([[42], [43, 44]]), TINY, make_generator(3))
    assert content(out, 0) == [42]
    assert content(out, 1) in ([43, 44], [44, 43])


# ---------------------------------------------------------------------------------------------
# Composition


def test_composition_ignores_the_order_of_naming() -> None:
    batch = random_batch(16, 200, seed=4, word_every=2, sentence_every=25)
    names = ["bart-rotate", "bart-infill", "bart-permute"]
    outs = [
        create("+".join(order))(batch, TINY, make_generator(9))
        for order in (names, names[::-1], names[1:] + names[:1])
    ]
    for out in outs[1:]:
        for key, value in out.as_dict().items():
            assert torch.equal(value, outs[0].as_dict()[key]), key
    parts = create("+".join(names)).parts  # type: ignore[attr-defined]
    assert [type(p) for p in parts] == [SentencePermutation, TextInfilling, DocumentRotation]


def test_bart_is_permutation_then_infilling() -> None:
    batch = random_batch(16, 200, seed=4, word_every=2, sentence_every=25)
    recipe = create("bart")(batch, TINY, make_generator(2))
    composed = create("bart-infill+bart-permute")(batch, TINY, make_generator(2))
    for key, value in recipe.as_dict().items():
        assert torch.equal(value, composed.as_dict()[key]), key
    with_rotation = create("bart+bart-rotate", poisson_lambda="3.5")
    assert isinstance(with_rotation, BartNoising)
    assert [type(p) for p in with_rotation.parts] == [
        SentencePermutation,
        TextInfilling,
        DocumentRotation,
    ]
    assert with_rotation.parts[1].poisson_lambda == 3.5


def test_two_token_noises_do_not_compose() -> None:
    with pytest.raises(UsageError, match="cannot be combined"):
        create("bart-mask+bart-infill")
    with pytest.raises(UsageError, match="cannot be combined"):
        create("bart+bart-delete")
    with pytest.raises(UsageError, match="cannot be combined"):
        compose([DocumentRotation(), DocumentRotation()])


def test_help_documents_lambda_and_order() -> None:
    assert "3.5" in get("bart").description
    assert "permute, mask / infill / delete, insert, rotate" in get("bart").description
    assert "3.5" in get("bart-infill").description
    lam = {p.name: p for p in get("bart-infill").params}["poisson_lambda"]
    assert lam.default == 3.0
    assert "3.5" in lam.help


@pytest.mark.parametrize(
    "bad", [{"rate": 0.0}, {"rate": 1.5}, {"poisson_lambda": 0.0}, {"mask_random": -0.1}]
)
def test_invalid_parameters_are_rejected(bad: dict[str, float]) -> None:
    with pytest.raises(UsageError):
        create("bart-infill", **bad)


# ---------------------------------------------------------------------------------------------
# Statistics on the default corpus (objectives.md §4.6: lambda 3, mask 0.3, replace_length 1,
# mask_random 0.1, every token a word start, blocks of <= 510 tokens that do not cross documents)


def corpus(words: bool = False) -> Tokens:
    batch = corpus_tokens(204_000, length=510)
    assert int(batch.lengths.sum()) >= 200_000
    word_starts = batch.word_starts if words else None  # None: every token opens a word
    return Tokens(batch.ids, batch.lengths, word_starts, batch.sentence_starts)


def infill_statistics(lam: float, seed: int) -> dict[str, float]:
    batch, vocab = corpus(), corpus_vocab()
    out = create("bart-infill", poisson_lambda=lam)(batch, vocab, make_generator(seed))
    n = float(batch.lengths.sum())
    encoder = float(out.attention_mask.sum()) - 2 * batch.ids.size(0)
    kept = float(((out.ops == int(Op.KEEP)) & batch.real).sum())
    new = encoder - kept  # masks and random tokens in the input
    masks = float((out.input_ids == vocab.mask).sum())
    return {
        "hit": (n - kept) / n,
        "encoder": encoder / n,
        "new": new / n,
        "random": (new - masks) / new,
    }


def test_infilling_statistics_match_the_reference() -> None:
    stats = infill_statistics(3.0, seed=0)
    assert abs(stats["hit"] - 0.267) < 0.005  # below 0.3: overlapping spans
    assert abs(stats["encoder"] - 0.816) < 0.005
    assert abs(stats["new"] - 0.083) < 0.003
    assert abs(stats["random"] - 0.12) < 0.01


def test_infilling_statistics_at_lambda_3_5() -> None:
    stats = infill_statistics(3.5, seed=1)
    assert abs(stats["hit"] - 0.266) < 0.005
    assert abs(stats["encoder"] - 0.804) < 0.005
    assert abs(stats["new"] - 0.070) < 0.003


def test_spans_cover_whole_corpus_words() -> None:
    batch = corpus(words=True)
    out = create("bart-infill")(batch, corpus_vocab(), make_generator(3))
    hit = (out.ops != int(Op.KEEP)) & batch.real
    assert batch.word_starts is not None
    word = batch.word_starts.long().cumsum(1)  # word number, per row
    key = (torch.arange(batch.ids.size(0)).unsqueeze(1) * 1000 + word)[batch.real]
    per_word_hit = torch.zeros(int(key.max()) + 1).index_add_(0, key, hit[batch.real].float())
    per_word_len = torch.zeros(int(key.max()) + 1).index_add_(0, key, torch.ones(key.numel()))
    used = per_word_len > 0
    assert ((per_word_hit == 0) | (per_word_hit == per_word_len))[used].all()
    assert abs(float(hit.sum()) / float(batch.lengths.sum()) - 0.268) < 0.01


def test_token_masking_and_deletion_rates() -> None:
    batch, vocab = corpus(), corpus_vocab()
    expected = float(torch.ceil(batch.lengths.float() * 0.3).sum())
    out = create("bart-mask")(batch, vocab, make_generator(7))
    assert float((out.ops != int(Op.KEEP)).sum()) == expected
    random_share = float((out.ops == int(Op.RANDOM)).sum()) / expected
    assert abs(random_share - 0.1) < 0.005
    out = create("bart-delete")(batch, vocab, make_generator(7))
    assert float((out.ops == int(Op.DELETE)).sum()) == expected
    n_input = float(out.attention_mask.sum()) - 2 * len(out.ops)
    assert n_input == float(batch.lengths.sum()) - expected


@pytest.mark.parametrize("name", ["bart-mask", "bart-infill", "bart"])
def test_random_tokens_are_never_special(name: str) -> None:
    """§3.2: fairseq draws random tokens from [1, V), specials included (a T5 sentinel appeared in
    a bart-infill input); here they are ordinary ids. Every mask and insertion is made random;
    the content holds no specials, so the input's only specials are the framing."""
    batch = random_batch(64, 40, word_every=2, sentence_every=5)
    assert TINY.special is not None
    assert not TINY.special[batch.ids[batch.real]].any()
    out = create(name, mask_random=1.0)(batch, TINY, make_generator(1))
    ids = out.input_ids[out.attention_mask]
    assert int((out.ops == int(Op.RANDOM)).sum()) > 100
    assert torch.isin(ids[TINY.special[ids]], torch.tensor([TINY.bos, TINY.eos])).all()

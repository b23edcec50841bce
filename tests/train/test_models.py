"""The shared models: attention masks from the objective's extras, heads on scored positions only,
preset sizes, and that nothing leaks where attention must not reach."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from corruptions import IGNORE, Corrupted, create, make_generator
from objectives_cli.model.attention import Mask, key_padding, position_ids, self_attention_mask
from objectives_cli.model.config import ModelConfig, heads_for, preset
from objectives_cli.model.model import Model, param_counts
from objectives_cli.train.losses import term_losses
from tests.cli.fakes import FAKES
from tests.helpers import TINY, random_batch

V = TINY.size


def model(arch: str, **kw: object) -> Model:
    torch.manual_seed(0)
    return Model(ModelConfig(arch=arch, vocab_size=V, **{**preset("tiny", arch), **kw})).eval()


def batch(
    ids: torch.Tensor, labels: torch.Tensor | None = None, **extras: torch.Tensor
) -> Corrupted:
    labels = ids.clone() if labels is None else labels
    return Corrupted(ids, torch.ones_like(ids, dtype=torch.bool), labels, extras=extras)


def hidden(m: Model, b: Corrupted) -> torch.Tensor:
    return m.run_decoder(b) if m.cfg.arch == "decoder" else m.run_encoder(b)[0]


def ids(n: int = 12, seed: int = 0) -> torch.Tensor:
    return torch.randint(11, 99, (1, n), generator=torch.Generator().manual_seed(seed))


def changed(m: Model, b: Corrupted, position: int) -> torch.Tensor:
    """(S,) bool: which output positions move when the token at `position` changes."""
    other = b.input_ids.clone()
    other[0, position] = 200 if other[0, position] != 200 else 201
    before, after = hidden(m, b), hidden(m, dataclasses.replace(b, input_ids=other))
    return ((before - after).abs().amax(-1) > 1e-6)[0]


@pytest.mark.parametrize("positions", ["learned", "rotary"])
def test_decoder_is_causal(positions: str) -> None:
    m = model("decoder", positions=positions)
    moved = changed(m, batch(ids()), 5)
    assert not moved[:5].any()
    assert moved[5:].all()


def test_prefix_attends_both_ways_and_never_sees_the_suffix() -> None:
    m, b = model("decoder"), batch(ids(), prefix_lengths=torch.tensor([6]))
    assert changed(m, b, 4)[:4].all()  # the prefix sees later prefix tokens
    assert not changed(m, b, 6)[:6].any()  # and never the suffix
    assert not changed(m, b, 8)[:8].any()  # the suffix is causal


def test_unilm_modes() -> None:
    real = torch.ones(4, 5, dtype=torch.bool)
    modes = torch.tensor([0, 1, 2, 3])
    extras = {"attention_mode": modes, "prefix_lengths": torch.full((4,), 2)}
    mask = self_attention_mask(real, extras, causal=False)
    assert mask.allowed is not None
    allowed = mask.allowed[:, 0]
    i, j = torch.arange(5)[:, None], torch.arange(5)[None, :]
    assert allowed[0].all()
    assert torch.equal(allowed[1], j <= i)
    assert torch.equal(allowed[2], j >= i)
    assert torch.equal(allowed[3], (j <= i) | (j < 2))  # source both ways, target causal
    assert not allowed[3][:2, 2:].any()  # source rows never see the target


def test_padding_rows_never_produce_nan() -> None:
    real = torch.tensor([[True, True, True, False, False]])
    b = Corrupted(
        ids(5), real, torch.full((1, 5), IGNORE), extras={"attention_mode": torch.tensor([2])}
    )
    h = model("encoder").run_encoder(b)[0]  # right-to-left: padding rows see nothing real
    assert torch.isfinite(h).all()


def test_full_rows_pass_no_mask_so_sdpa_may_use_flash() -> None:
    full = torch.ones(2, 6, dtype=torch.bool)
    assert key_padding(full).allowed is None
    assert self_attention_mask(full, {}, causal=False).allowed is None
    assert self_attention_mask(full, {}, causal=True) == (None, True, None)
    padded = full.clone()
    padded[1, 4:] = False
    assert key_padding(padded).allowed is not None
    m, b = model("encoder"), batch(ids())  # the unmasked path computes what the mask would
    explicit = Mask(b.attention_mask[:, None, None, :])
    x = m.embed(b.input_ids, position_ids(b.input_ids, None))
    pos = position_ids(b.input_ids, None)
    torch.testing.assert_close(m.encoder(x, explicit, pos)[0], m.run_encoder(b)[0])


def test_documents_never_see_each_other_and_restart_positions() -> None:
    doc = torch.tensor([[0] * 5 + [1] * 7])
    for arch in ("encoder", "decoder"):
        m, b = model(arch), batch(ids(), document_ids=doc)
        assert not changed(m, b, 7)[:5].any()
        assert not changed(m, b, 2)[5:].any()
    assert position_ids(ids(), doc).tolist() == [[0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 5, 6]]


def test_decoder_does_not_score_the_first_token_of_a_packed_document() -> None:
    m = model("decoder")
    b = batch(ids(), document_ids=torch.tensor([[0] * 5 + [1] * 7]))
    assert m.scored(b)["lm"].sum() == 10  # 11 next-token targets, minus the one across documents


def test_xlnet_query_stream_sees_neither_its_token_nor_later_targets() -> None:
    m = model("encoder", two_stream=True)
    x = ids(10)
    labels = torch.full_like(x, IGNORE)
    labels[0, [2, 3, 7]] = x[0, [2, 3, 7]]
    rank = torch.full_like(x, -1)
    rank[0, [2, 3, 7]] = torch.tensor([1, 2, 0])  # order: 7, then 2, then 3
    b = batch(x, labels, perm_rank=rank)

    def logits(tokens: torch.Tensor) -> torch.Tensor:
        return m(dataclasses.replace(b, input_ids=tokens))["mlm"][0]  # rows: positions 2, 3, 7

    base = logits(x)
    for position, unaffected in ((2, [0, 2]), (3, [0, 1, 2]), (7, [2]), (5, [])):
        other = x.clone()
        other[0, position] = 250
        moved = (logits(other) - base).abs().amax(-1) > 1e-6
        assert not moved[unaffected].any(), position
    other = x.clone()
    other[0, 7] = 250
    assert ((logits(other) - base).abs().amax(-1) > 1e-6)[:2].all()  # 2 and 3 come after 7


def test_mlm_head_runs_only_on_labelled_positions() -> None:
    x = ids(12)
    labels = torch.full_like(x, IGNORE)
    labels[0, [1, 4]] = x[0, [1, 4]]
    logits, targets = model("encoder")(batch(x, labels))["mlm"]
    assert logits.shape == (2, V)
    assert targets.tolist() == x[0, [1, 4]].tolist()


def test_every_shared_extras_key_gets_its_head() -> None:
    out = FAKES["segments"](random_batch(3, 9, seed=1), TINY, make_generator(0))
    heads = heads_for("encoder", out)
    assert heads["sbo"]
    assert heads["two_stream"]
    assert heads["classifier"] == "nsp"
    assert heads["token_types"] == 8
    m = Model(ModelConfig(arch="encoder", vocab_size=V, **preset("tiny", "encoder"), **heads))
    losses = term_losses(m(out))
    assert set(losses) == {"mlm", "sbo", "nsp"}
    assert all(torch.isfinite(v[0]) for v in losses.values())


def test_electra_discriminates_the_generator_samples() -> None:
    out = create("electra")(random_batch(4, 20), TINY, make_generator(0))
    m = model("encoder", electra=True)
    heads = m(out)
    n_real = int(out.attention_mask.sum())
    assert heads["mlm"][0].shape == (int((out.labels != IGNORE).sum()), V)
    assert heads["rtd"][0].shape == heads["rtd"][1].shape == (n_real,)
    chosen = (out.labels != IGNORE)[out.attention_mask]
    assert (heads["rtd"][1][~chosen] == 0).all()  # only sampled positions can be replaced
    assert m.generator is not None
    assert m.generator.width == 16  # a quarter of 64


def test_mass_hides_masks_from_cross_attention_and_places_decoder_tokens() -> None:
    out = create("mass")(random_batch(2, 12), TINY, make_generator(0))
    heads = heads_for("encoder-decoder", out, mask_id=TINY.mask)
    assert heads["cross_hide"] == TINY.mask
    m = model("encoder-decoder", cross_hide=TINY.mask)
    _, memory_mask = m.encode(out)
    assert memory_mask.allowed is not None
    visible = out.attention_mask & (out.input_ids != TINY.mask)
    assert torch.equal(memory_mask.allowed[:, 0, 0], visible)
    assert torch.isfinite(term_losses(m(out))["lm"][0])


@pytest.mark.parametrize("packed", [False, True])
def test_cross_attention_sees_every_real_source_token(packed: bool) -> None:
    real = torch.tensor([[True] * 12, [True] * 9 + [False] * 3])
    extras = {"document_ids": (torch.arange(12) >= 5).long().expand(2, 12)} if packed else {}
    b = Corrupted(
        torch.cat([ids(), ids(seed=1)]),
        real,
        ids(4).expand(2, 4),
        ids(4).expand(2, 4),
        extras=extras,
    )
    _, memory_mask = model("encoder-decoder").encode(b)
    assert memory_mask.empty is None
    assert memory_mask.allowed is not None
    assert torch.equal(memory_mask.allowed[:, 0, 0], real)
    full = dataclasses.replace(b, attention_mask=torch.ones_like(real))
    assert model("encoder-decoder").encode(full)[1] == (None, False, None)  # flash-eligible


@pytest.mark.parametrize(
    ("arch", "vocab", "max_len", "expected"),
    [
        ("encoder", 30522, 512, 110e6),  # BERT-base
        ("encoder-decoder", 50265, 1024, 139e6),  # BART-base
        ("decoder", 50257, 1024, 124e6),  # GPT-2 small
    ],
)
def test_base_preset_matches_the_reference_size(
    arch: str, vocab: int, max_len: int, expected: float
) -> None:
    with torch.device("meta"):
        m = Model(ModelConfig(arch=arch, vocab_size=vocab, max_len=max_len, **preset("base", arch)))
    assert abs(param_counts(m)["total"] / expected - 1) < 0.03


def test_unilm_masks_match_the_objectives_own_definition() -> None:
    from corruptions.unilm import attention_mask_for

    out = create("unilm")(random_batch(16, 24, sentence_every=5), TINY, make_generator(3))
    ex = out.extras
    mine = self_attention_mask(out.attention_mask, ex, causal=False).allowed
    assert mine is not None
    theirs = attention_mask_for(ex["attention_mode"], ex["prefix_lengths"], out.attention_mask)
    real = out.attention_mask
    assert torch.equal(mine[:, 0][real], theirs[real])  # rows of real tokens


def test_xlnet_head_is_the_tied_table_without_a_transform() -> None:
    """§4.4: logits = g E^T + b; BERT-style objectives keep their dense + GELU + LayerNorm."""
    xlnet, bert = model("encoder", two_stream=True), model("encoder")
    assert xlnet.mlm.dense is None
    assert bert.mlm.dense is not None
    g = torch.randn(3, xlnet.cfg.d_model)
    torch.testing.assert_close(xlnet.mlm(g, xlnet.table), g @ xlnet.table.T + xlnet.mlm.bias)

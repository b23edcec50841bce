"""`fill` on seq2seq runs decodes as the model trained: the decoder inputs before the first target
(T5's pad, BART's </s> <s>), UL2's paradigm token, MASS's decoder positions, the span marks the
objective uses. Greedy decoding must pick what a teacher-forced training forward pass picks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from corruptions import Corrupted, UsageError
from objectives_cli.train import generation, inference
from objectives_cli.train.inference import LoadedRun, load_run
from objectives_cli.train.loop import train
from tests.cli.runner import invoke
from tests.train.conftest import QUIET, tiny

OBJECTIVES = ("mass", "bart", "t5-span", "ul2")


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("fill")
    out = {}
    for name in OBJECTIVES:
        cfg = tiny(root / name, name, steps=3, batch_size=4, eval_batches=1, lr=3e-3)
        train(cfg, QUIET)
        out[name] = Path(cfg.out)
    return out


class Spy:
    """Records the model's encode/decode calls during `fill`."""

    def __init__(self, run: LoadedRun, monkeypatch: pytest.MonkeyPatch) -> None:
        self.encoded: list[list[int]] = []
        self.decoded: list[tuple[list[int], list[int] | None]] = []
        encode, decode = run.model.encode, run.model.decode

        def spy_encode(batch: Corrupted) -> Any:
            self.encoded.append(batch.input_ids[0].tolist())
            return encode(batch)

        def spy_decode(
            ids: torch.Tensor,
            memory: torch.Tensor,
            mask: Any,
            positions: torch.Tensor | None = None,
        ) -> torch.Tensor:
            self.decoded.append(
                (ids[0].tolist(), None if positions is None else positions[0].tolist())
            )
            return decode(ids, memory, mask, positions)

        self.greedy: list[tuple[list[int], list[int]]] = []  # (decoder start, tokens written)
        search = generation.search

        def spy_search(
            step: Any, prompt: list[int], forced: list[int], *args: Any, **kwargs: Any
        ) -> list[int]:
            tokens = search(step, prompt, forced, *args, **kwargs)
            self.greedy.append(([*prompt, *forced], tokens[len(forced) :]))
            return tokens

        monkeypatch.setattr(run.model, "encode", spy_encode)
        monkeypatch.setattr(run.model, "decode", spy_decode)
        monkeypatch.setattr(generation, "search", spy_search)


@torch.no_grad()
def teacher_forced(
    run: LoadedRun, ids: list[int], decoder_ids: list[int], positions: list[int] | None = None
) -> list[int]:
    """Argmax of the training forward pass at every decoder position."""
    t = torch.tensor([ids])
    extras = {} if positions is None else {"decoder_position_ids": torch.tensor([positions])}
    batch = Corrupted(
        t,
        torch.ones_like(t, dtype=torch.bool),
        torch.zeros(1, len(decoder_ids), dtype=torch.long),
        decoder_input_ids=torch.tensor([decoder_ids]),
        extras=extras,
    )
    logits, _ = run.model(batch)["lm"]
    return logits.argmax(-1).tolist()


def plain(run: LoadedRun, text: str) -> str:
    """`text` as the tokenizer writes it back."""
    return str(run.tok.decode(run.tok.encode(text, add_special_tokens=False).ids))


def test_the_probe_records_how_decoding_starts(runs: dict[str, Path]) -> None:
    info = {n: json.loads((runs[n] / "config.json").read_text())["objective"] for n in runs}
    run = load_run(runs["bart"], "cpu")
    eos, bos, pad = run.vocab.eos, run.vocab.bos, run.vocab.pad
    assert info["bart"]["decoder_prefix"] == [eos, bos]  # </s> <s>; <s> is never scored
    assert info["t5-span"]["decoder_prefix"] == [pad]
    assert info["ul2"]["decoder_prefix"] == [pad]
    assert info["mass"]["decoder_prefix"] == []  # the token before the fragment: it varies
    assert [info[n]["sentinels"] for n in OBJECTIVES] == [False, False, True, True]


def test_mass_writes_the_fragment_at_its_positions(
    runs: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    run = load_run(runs["mass"], "cpu")
    spy = Spy(run, monkeypatch)
    before, after = "The cat sat on the", ". It was warm in the sun ."
    result = generation.generate(run, f"{before} [MASK] [MASK] [MASK] {after}")
    ids = spy.encoded[0]
    start = ids.index(run.vocab.mask)
    assert ids[0] == run.vocab.bos  # <s> x </s>, as MASS frames it
    assert ids[-1] == run.vocab.eos
    assert ids[start : start + 4].count(run.vocab.mask) == 3
    ((first, written),) = spy.greedy
    assert first == [ids[start - 1]]  # the token before the fragment...
    for decoder_ids, positions in spy.decoded:  # ...at its own position, then one per token
        assert positions == list(range(start - 1, start - 1 + len(decoder_ids)))
    assert 1 <= len(written) <= 3
    at = list(range(start - 1, start - 1 + len(written)))
    assert teacher_forced(run, ids, [*first, *written[:-1]], at) == written
    assert result["kind"] == "seq2seq"
    assert len(result["fragments"]) == 1
    assert "[MASK]" not in result["output"]
    assert result["output"].startswith(plain(run, before))
    if run.vocab.eos not in written:
        assert result["output"].endswith(plain(run, after))


def test_mass_needs_a_mask(runs: dict[str, Path]) -> None:
    with pytest.raises(UsageError, match=r"no \[MASK\]"):
        generation.generate(load_run(runs["mass"], "cpu"), "nothing to fill")


def test_bart_decodes_after_eos_bos(runs: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    run = load_run(runs["bart"], "cpu")
    spy = Spy(run, monkeypatch)
    result = generation.generate(run, "The cat <extra_id_0> the mat .", max_new=6)
    vocab = run.vocab
    assert spy.encoded[0][0] == vocab.bos
    assert spy.encoded[0][-1] == vocab.eos
    assert vocab.mask in spy.encoded[0]  # BART marks spans with [MASK], not sentinels
    assert not set(spy.encoded[0]) & set(vocab.sentinels)
    ((start, written),) = spy.greedy
    assert start == [vocab.eos, vocab.bos]
    # </s> first, its prediction forced to <s> (transformers' forced_bos_token_id), then both
    assert spy.decoded[0][0] == start[:1]
    assert spy.decoded[1][0] == start
    assert 1 <= len(written) <= 6
    assert teacher_forced(run, spy.encoded[0], [*start, *written[:-1]])[1:] == written
    assert "[CLS]" not in result["output"]
    assert result["output"] == result["generated"]  # BART's target is the whole text


def test_t5_marks_spans_with_sentinels(
    runs: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    run = load_run(runs["t5-span"], "cpu")
    spy = Spy(run, monkeypatch)
    result = generation.generate(run, "The cat [MASK] [MASK] on the [MASK] .", max_new=4)
    vocab = run.vocab
    ids = spy.encoded[0]
    assert [t for t in ids if t in vocab.sentinels or t == vocab.mask] == list(vocab.sentinels[:2])
    assert ids[0] != vocab.bos  # T5's input: x </s>
    assert ids[-1] == vocab.eos
    assert spy.decoded[0][0] == [vocab.pad]
    assert "[MASK]" not in result["output"]
    with pytest.raises(UsageError, match="no span to fill"):
        generation.generate(run, "nothing to fill")


@pytest.mark.parametrize(
    ("text", "lead", "continues"),
    [
        ("The cat [MASK] the mat .", "[NLU]", False),
        ("The cat sat on", "[S2S]", True),
        ("[NLG] The cat <extra_id_0> mat .", "[NLG]", False),
    ],
)
def test_ul2_gets_a_paradigm_token(
    runs: dict[str, Path], monkeypatch: pytest.MonkeyPatch, text: str, lead: str, continues: bool
) -> None:
    run = load_run(runs["ul2"], "cpu")
    spy = Spy(run, monkeypatch)
    result = generation.generate(run, text, max_new=3)
    assert spy.encoded[0][0] == run.vocab.extra[lead]
    assert run.vocab.extra[lead] not in spy.encoded[0][1:]
    assert lead not in result["output"]
    if continues:
        assert result["output"].startswith("The cat sat on")


def test_splice_keeps_a_sentinel_left_unwritten() -> None:
    a, b = 900, 901
    assert generation.splice([1, a, 2, b, 3], [a, 7, 8], (a, b)) == [1, 7, 8, 2, b, 3]


def test_fill_a_mass_run_through_the_cli(runs: dict[str, Path]) -> None:
    result = invoke(
        "fill",
        str(runs["mass"]),
        "The cat sat [MASK] [MASK] mat .",
        "-f",
        "json",
        "--device",
        "cpu",
    )
    assert result.code == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["kind"] == "seq2seq"
    assert "[MASK]" not in out["output"]
    refused = invoke("fill", str(runs["t5-span"]), "nothing to fill", "--device", "cpu")
    assert refused.code == 2
    assert refused.stderr.startswith("error: the text has no span to fill\nhint: ")


def test_xlnet_fill_predicts_each_mask_from_the_context_alone(tmp_path: Path) -> None:
    """Every mask gets rank 0: none sees another's content, a [MASK] id that XLNet never reads
    in training (its targets keep their real tokens)."""
    cfg = tiny(tmp_path / "xlnet", "xlnet-plm", steps=3, batch_size=4, eval_batches=1, lr=3e-3)
    train(cfg, QUIET)
    run = load_run(Path(cfg.out))
    ranks = []
    forward = run.model.forward

    def spy(batch: Corrupted) -> Any:
        ranks.append(batch.extras["perm_rank"][0].tolist())
        return forward(batch)

    run.model.forward = spy  # type: ignore[method-assign]
    result = inference.fill_masks(run, "The cat [MASK] on the [MASK] today .")
    assert len(result["masks"]) == 2
    ids = inference.encode_text(run, "The cat [MASK] on the [MASK] today .")
    assert ranks == [[0 if t == run.vocab.mask else -1 for t in ids]]

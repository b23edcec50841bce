"""Each logit row predicts the token it is scored against: the next token for a decoder, the
label at that decoder position for seq2seq, from what comes before it only.

A test of the causal mask alone passes when the label shift is off by one (the model then
learns to copy its input); these check the targets themselves, and a short overfit on a fixed
sequence checks that greedy decoding continues it.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from corruptions import Corrupted
from objectives_cli.model.config import ModelConfig, preset
from objectives_cli.model.model import Model
from objectives_cli.train import generation, inference
from objectives_cli.train.loop import train
from tests.train.conftest import QUIET, tiny

V = 300


def model(arch: str) -> Model:
    torch.manual_seed(0)
    return Model(ModelConfig(arch=arch, vocab_size=V, **preset("tiny", arch))).eval()


def tokens(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(10, 250, (1, n), generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def test_a_decoder_predicts_the_next_token_from_the_tokens_before_it() -> None:
    m, ids = model("decoder"), tokens(12)
    real = torch.ones_like(ids, dtype=torch.bool)
    logits, targets = m(Corrupted(ids, real, ids.clone()))["lm"]
    assert targets.tolist() == ids[0, 1:].tolist()  # row t is scored against token t + 1
    for t in range(10):  # row t must not read its own target, token t + 1
        other = ids.clone()
        other[0, t + 1] = 255
        moved, _ = m(Corrupted(other, real, ids.clone()))["lm"]
        torch.testing.assert_close(moved[t], logits[t])
        assert not torch.allclose(moved[t + 1 :], logits[t + 1 :])  # later rows do read it


@torch.no_grad()
def test_a_seq2seq_decoder_predicts_each_label_from_the_labels_before_it() -> None:
    m, source, labels = model("encoder-decoder"), tokens(9), tokens(7, seed=1)
    decoder = torch.cat([torch.tensor([[2]]), labels[:, :-1]], 1)  # labels shifted right
    batch = Corrupted(source, torch.ones_like(source, dtype=torch.bool), labels, decoder)
    logits, targets = m(batch)["lm"]
    assert targets.tolist() == labels[0].tolist()
    for t in range(5):  # row t must not read label t, which is decoder input t + 1
        other = decoder.clone()
        other[0, t + 1] = 255
        moved, _ = m(dataclasses.replace(batch, decoder_input_ids=other))["lm"]
        torch.testing.assert_close(moved[t], logits[t])
        assert not torch.allclose(moved[t + 1 :], logits[t + 1 :])


def test_a_decoder_overfit_on_a_fixed_sequence_continues_it(tmp_path: Path) -> None:
    words = "one two three four five six seven eight nine ten"
    data = tmp_path / "counting.txt"
    data.write_text("\n\n".join([f"{words} ."] * 64) + "\n")
    cfg = tiny(
        tmp_path / "run",
        "clm",
        data=str(data),
        eval_data=str(data),
        steps=20,
        batch_size=4,
        eval_batches=1,
        lr=3e-3,
        warmup=0.1,
    )
    train(cfg, QUIET)
    run = inference.load_run(Path(cfg.out), "cpu", warn=print)
    out = generation.generate(run, "one two three", max_new=3)
    assert out["generated"] == "four five six"

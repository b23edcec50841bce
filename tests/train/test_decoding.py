"""`fill`'s decoding options and `eval`'s perplexity (the sampling and beam results themselves
are checked against transformers' generate in test_export.py)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from corruptions import UsageError
from objectives_cli.train.decoding import Decoding, sample, search
from objectives_cli.train.loop import train
from tests.cli.runner import invoke
from tests.train.conftest import QUIET, tiny


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("decoding")
    out = {}
    for name in ("clm", "bert-mlm"):
        cfg = tiny(root / name, name, steps=2, batch_size=4, eval_batches=1)
        train(cfg, QUIET)
        out[name] = Path(cfg.out)
    return out


def test_eval_reports_perplexity_for_language_model_terms(runs: dict[str, Path]) -> None:
    lm = json.loads(invoke("eval", str(runs["clm"]), "--format", "json").stdout)
    assert lm["lm_ppl"] == pytest.approx(math.exp(lm["lm_loss"]))
    mlm = json.loads(invoke("eval", str(runs["bert-mlm"]), "--format", "json").stdout)
    assert not any(k.endswith("_ppl") for k in mlm)  # a masked LM's loss is not a perplexity


def test_fill_options_are_checked(runs: dict[str, Path]) -> None:
    encoder = invoke("fill", str(runs["bert-mlm"]), "a [MASK] b", "--beams", "3")
    assert encoder.code == 2
    assert "--temperature, --top-p and --beams are for decoders" in encoder.stderr
    both = invoke("fill", str(runs["clm"]), "a b", "--beams", "3", "--temperature", "0.5")
    assert both.code == 2
    assert "--beams searches greedily" in both.stderr
    top_p = invoke("fill", str(runs["clm"]), "a b", "--temperature", "1", "--top-p", "0")
    assert top_p.code == 2
    same = [
        json.loads(invoke("fill", str(runs["clm"]), "a b", "--temperature", "2", "--seed", s,
                          "--format", "json").stdout)["generated"]
        for s in ("1", "1", "2")
    ]  # fmt: skip
    assert same[0] == same[1] != same[2]


def test_filters_keep_what_they_say() -> None:
    scores = torch.tensor([[0.0, 1.0, 2.0, 3.0, 4.0]])
    drawn = {sample(scores, Decoding(temperature=1.0, top_k=2, seed=0)) for _ in range(200)}
    assert drawn == {3, 4}
    probs = scores.softmax(-1)[0]  # 0.64 for 4, 0.24 for 3: top_p 0.7 keeps both, 0.6 one
    assert probs[4] < 0.7 < probs[3] + probs[4]
    assert {sample(scores, Decoding(temperature=1.0, top_p=0.7)) for _ in range(200)} == {3, 4}
    assert {sample(scores, Decoding(temperature=1.0, top_p=0.6)) for _ in range(50)} == {4}
    with pytest.raises(UsageError):
        Decoding(top_p=0.0)


def test_beam_search_finds_what_greedy_misses() -> None:
    """A two-step toy: greedy takes the likelier first token (a: 0.6) whose best continuation
    is weak (0.4), beam search the path with the best product (b then its 0.9 token)."""
    eos, a, b = 0, 1, 2
    first = torch.tensor([[-10.0, math.log(0.6), math.log(0.4)]])

    def step(ids: torch.Tensor) -> torch.Tensor:
        rows = []
        for row in ids.tolist():
            if len(row) == 1:
                rows.append(first[0])
            elif row[-1] == a:
                rows.append(torch.tensor([math.log(0.4), math.log(0.3), math.log(0.3)]))
            else:
                rows.append(torch.tensor([math.log(0.9), math.log(0.05), math.log(0.05)]))
        return torch.stack(rows)

    assert search(step, [9], [], 2, eos, Decoding()) == [a, eos]
    assert search(step, [9], [], 2, eos, Decoding(beams=2)) == [b, eos]

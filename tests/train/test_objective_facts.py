"""What an objective is comes from the registry, never from a sample batch: a BART run whose text
happens to hold a T5 sentinel is still filled as BART (its target is the text itself)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from corruptions import get
from objectives_cli.train import generation
from objectives_cli.train.inference import load_run
from objectives_cli.train.loop import train
from tests.train.conftest import QUIET, tiny

SEQ2SEQ = ("bart-infill", "bart-mask", "bart", "t5-span", "t5-iid", "ul2", "mass")


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Documents whose text holds sentinel tokens, so every probe batch contains some."""
    path = tmp_path_factory.mktemp("data") / "notes.txt"
    sentence = "The cat <extra_id_0> sat on the mat <extra_id_1> and looked around the room ."
    path.write_text("\n\n".join(f"{sentence} Document {i} ends here ." for i in range(40)))
    return path


@pytest.mark.parametrize("name", SEQ2SEQ)
def test_sentinels_follow_the_registry(tmp_path: Path, data: Path, name: str) -> None:
    cfg = tiny(tmp_path / "run", name, steps=1, batch_size=4, eval_batches=1, data=str(data))
    train(cfg, QUIET)
    stored = json.loads((Path(cfg.out) / "config.json").read_text())["objective"]
    assert stored["sentinels"] is get(name).sentinels
    run = load_run(Path(cfg.out), "cpu")
    result = generation.generate(run, "The cat [MASK] on the mat .", max_new=6)
    if not get(name).sentinels and run.model.cfg.cross_hide < 0:  # BART: the target is the text
        assert result["output"] == result["generated"]

"""Fine-tuning and probing (train/downstream.py, finetune.py, probe.py): framing, each
architecture's head, scores, determinism, the random-init control and the feature cache."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from corruptions.errors import UsageError
from objectives_cli.data.tasks import Example, Task, task_from_rows
from objectives_cli.train import downstream, embed, probe
from objectives_cli.train.finetune import Classifier, FinetuneSettings, finetune
from objectives_cli.train.inference import LoadedRun, load_run
from objectives_cli.train.loop import Trainer, train
from tests.train.conftest import QUIET, tiny


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, LoadedRun]:
    """Runs of 3 steps: an encoder, one with segment embeddings, XLNet, a decoder, T5, BART."""
    root = tmp_path_factory.mktemp("downstream")
    names = ("bert-mlm", "nsp", "xlnet-plm", "clm", "t5-span", "bart-infill")
    for name in names:
        train(tiny(root / name, name, steps=3), QUIET)
    return {name: load_run(root / name, "cpu", warn=lambda _: None) for name in names}


def animals(n: int = 240) -> Task:
    """Learnable from one word: the label is the animal the text names."""
    rows = [
        {"text": f"the {'cat' if i % 2 else 'dog'} sat on mat {i}", "label": i % 2}
        for i in range(n)
    ]
    return task_from_rows("animals", rows, "animals")


def pairs(n: int = 60) -> Task:
    rows = [{"text": f"first {i}", "text_pair": f"second {i}", "label": i % 2} for i in range(n)]
    return task_from_rows("pairs", rows, "pairs")


def test_fit_pair_cuts_the_longer_side_first() -> None:
    assert downstream.fit_pair(3, 4, 10) == (3, 4)
    assert downstream.fit_pair(2, 20, 10) == (2, 8)
    assert downstream.fit_pair(20, 2, 10) == (8, 2)
    assert downstream.fit_pair(20, 30, 10) == (5, 5)


def test_pooled_ignores_padding() -> None:
    states = torch.arange(24, dtype=torch.float).view(2, 4, 3)
    mask = torch.tensor([[True, True, False, False], [True, True, True, True]])
    assert downstream.pooled(states, mask, "cls").tolist() == states[:, 0].tolist()
    assert downstream.pooled(states, mask, "last").tolist() == [
        states[0, 1].tolist(),
        states[1, 3].tolist(),
    ]
    mean = downstream.pooled(states, mask, "mean")
    assert mean[0].tolist() == states[0, :2].mean(0).tolist()
    assert mean[1].tolist() == states[1].mean(0).tolist()


def test_scores_accuracy_and_macro_f1() -> None:
    found = downstream.scores(torch.tensor([0, 0, 1, 1]), torch.tensor([0, 1, 1, 1]), 2)
    assert found["accuracy"] == 0.75
    assert found["macro_f1"] == pytest.approx((2 / 3 + 0.8) / 2, abs=1e-4)  # F1 0.667 and 0.8


def ids(run: LoadedRun, text: str) -> list[int]:
    return list(run.tok.encode(text, add_special_tokens=False).ids)


def test_pairs_are_framed_as_each_objective_frames_its_inputs(runs: dict[str, LoadedRun]) -> None:
    example = [Example("first one", 0, "test", "second one")]
    bert, nsp, xlnet, clm = (runs[n] for n in ("bert-mlm", "nsp", "xlnet-plm", "clm"))
    a, b = ids(bert, "first one"), ids(bert, "second one")
    cls, sep = bert.info.frame_prefix[0], bert.info.frame_suffix[0]
    assert downstream.encode(bert, example).rows == [[cls, *a, sep, *b, sep]]
    assert downstream.encode(bert, example).segments is None  # no segment embeddings
    framed = downstream.encode(nsp, example)
    assert framed.rows == [[cls, *a, sep, *b, sep]]
    assert framed.segments == [[0] * (len(a) + 2) + [1] * (len(b) + 1)]
    assert downstream.encode(xlnet, example).rows == [[*a, sep, *b, sep, cls]]  # <cls> last
    assert downstream.encode(clm, example).rows == [[*a, sep, *b, sep]]
    pools = {n: downstream.default_pool(r) for n, r in runs.items()}
    assert pools == {
        "bert-mlm": "cls",
        "nsp": "cls",
        "xlnet-plm": "last",
        "clm": "last",
        "t5-span": "last",
        "bart-infill": "last",
    }


def test_long_examples_are_cut_and_counted(runs: dict[str, LoadedRun]) -> None:
    run = runs["bert-mlm"]
    long = " ".join(["word"] * 200)
    examples = [Example(long, 0, "test", long), Example("short", 1, "test", "short")]
    framed = downstream.encode(run, examples)
    assert framed.cut == 1
    assert len(framed.rows[0]) == run.model.cfg.max_len
    assert framed.rows[0].count(run.info.frame_suffix[0]) == 2  # both sentences kept


@pytest.mark.parametrize("name", ["bert-mlm", "nsp", "xlnet-plm", "clm", "t5-span", "bart-infill"])
@pytest.mark.parametrize("pool", [None, "mean"])
def test_each_head_reads_its_example_alone(
    runs: dict[str, LoadedRun], name: str, pool: str | None
) -> None:
    """An example's logits do not depend on what else is in the batch (padding included): a
    head that pooled a padding position, or attention that reached one, would change them."""
    run = runs[name]
    torch.manual_seed(0)
    net = Classifier(run, 2, downstream.check_pool(run, pool), 0.0).eval()
    short, long = (
        downstream.encode(run, pairs().examples[:1]),
        downstream.encode(
            run,
            [
                Example(
                    "a much longer first sentence here", 0, "test", "and a longer second one too"
                )
            ],
        ),
    )
    alone = net(short.rows, short.segments)
    batched = net(
        [*short.rows, *long.rows],
        None if short.segments is None else [*short.segments, *long.segments],  # type: ignore[list-item]
    )
    torch.testing.assert_close(alone[0], batched[0], atol=1e-5, rtol=1e-4)
    assert not torch.allclose(batched[0], batched[1])  # the example is read, not a constant


def test_an_encoder_decoder_head_reads_the_decoder(runs: dict[str, LoadedRun]) -> None:
    """BART's recipe: the classifier reads the decoder's last state, the decoder fed the input."""
    run = runs["t5-span"]
    rows = downstream.encode(run, pairs().examples[:2]).rows
    states, mask = embed.hidden_states(run, rows, None, decoder=True)
    start = run.info.decoder_start
    fed = torch.tensor([[start, *rows[0]]])
    memory = run.model.encode(embed_batch(run, rows[:1]))
    direct = run.model.decode(fed, *memory)
    last = int(mask[0].sum()) - 1
    torch.testing.assert_close(states[0, last], direct[0, -1], atol=1e-5, rtol=1e-4)


def embed_batch(run: LoadedRun, rows: list[list[int]]):  # type: ignore[no-untyped-def]
    from corruptions import IGNORE, Corrupted

    t = torch.tensor(rows)
    return Corrupted(t, torch.ones_like(t, dtype=torch.bool), torch.full_like(t, IGNORE))


def test_finetune_learns_and_repeats_for_a_seed(runs: dict[str, LoadedRun]) -> None:
    settings = FinetuneSettings(epochs=4, batch_size=16, seed=1)
    task = animals()
    first = finetune(runs["bert-mlm"], task, settings)
    again = finetune(runs["bert-mlm"], task, settings)
    other = finetune(runs["bert-mlm"], task, FinetuneSettings(epochs=4, batch_size=16, seed=2))
    assert first["test"]["accuracy"] >= 0.9  # one word decides: the loop must learn it
    assert {k: v for k, v in first.items() if k != "seconds"} == {
        k: v for k, v in again.items() if k != "seconds"
    }
    assert first["settings"]["seed"] == 1
    assert other["settings"] != first["settings"]
    assert first["settings"]["lr"] == 1e-3  # the tiny preset's


def test_finetune_leaves_the_run_alone(runs: dict[str, LoadedRun]) -> None:
    run = runs["clm"]
    before = {k: v.clone() for k, v in run.model.state_dict().items()}
    finetune(run, animals(60), FinetuneSettings(epochs=1))
    after = run.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_random_init_is_the_run_before_its_first_step(tmp_path: Path) -> None:
    cfg = tiny(tmp_path / "r", "bert-mlm", steps=2, seed=5)
    trainer = Trainer(cfg, QUIET, False, 0, 1, 0)
    initial = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.run()
    run = load_run(tmp_path / "r", "cpu", warn=lambda _: None)
    control = downstream.randomly_initialised(run).model.state_dict()
    assert all(torch.equal(initial[k], control[k]) for k in initial)
    assert not all(torch.equal(initial[k], v) for k, v in run.model.state_dict().items())


def test_probe_is_deterministic_and_cached(
    runs: dict[str, LoadedRun], monkeypatch: pytest.MonkeyPatch
) -> None:
    run, task = runs["bert-mlm"], animals()
    first = probe.probe(run, task, layer="mean", pool="mean")
    cache = list((run.run_dir / "downstream" / "cache").glob("animals-*-mean-mean.safetensors"))
    assert len(cache) == 1

    def no_forward(*args: object, **kwargs: object) -> None:
        raise AssertionError("the cached features were not used")

    monkeypatch.setattr(probe, "hidden_states", no_forward)
    again = probe.probe(run, task, layer="mean", pool="mean")
    assert {k: v for k, v in first.items() if k != "seconds"} == {
        k: v for k, v in again.items() if k != "seconds"
    }
    assert first["test"]["accuracy"] >= 0.9  # linear in the features of one word


def test_probe_layers(runs: dict[str, LoadedRun]) -> None:
    run = runs["clm"]
    scored = {layer: probe.probe(run, animals(), layer=layer) for layer in ("1", "2", "last")}
    assert {r["settings"]["layer"] for r in scored.values()} == {"1", "2", "last"}
    with pytest.raises(UsageError, match="unknown layer '3'"):
        probe.probe(run, animals(), layer="3")
    with pytest.raises(UsageError, match="unknown pooling"):
        probe.probe(run, animals(), pool="max")


def test_bag_of_words_baseline_sees_words_not_order() -> None:
    """One word decides `animals`: a bag of words solves it; swapping sentence order it cannot
    see at all, and a bag per sentence sees which words come first."""
    assert probe.baselines(animals())["bow"] >= 0.95
    rows = []
    for i in range(400):
        a, b = f"alpha opens {i}", f"omega closes {i}"
        rows.append(
            {"text": a, "text_pair": b, "label": "in order"}
            if i % 2
            else {"text": b, "text_pair": a, "label": "swapped"}
        )
    found = probe.baselines(task_from_rows("swaps", rows, "swaps"))
    assert found["bow"] <= 0.6
    assert found["bow_per_sentence"] >= 0.95


def test_segment_ids_reach_a_model_with_segment_embeddings(runs: dict[str, LoadedRun]) -> None:
    run = runs["nsp"]
    framed = downstream.encode(run, pairs().examples[:2])
    assert framed.segments is not None
    with_segments, _ = embed.hidden_states(run, framed.rows, None, framed.segments)
    without, _ = embed.hidden_states(run, framed.rows, None)
    assert not torch.allclose(with_segments, without)

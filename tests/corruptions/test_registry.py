from __future__ import annotations

import pickle

import pytest
import torch

from corruptions import (
    InvalidParameter,
    UnknownObjective,
    UsageError,
    available,
    create,
    errors,
    get,
    list_objectives,
    make_generator,
    model_facts,
)
from tests.helpers import TINY, random_batch


def test_unknown_names_suggest_the_closest() -> None:
    with pytest.raises(UnknownObjective) as err:
        get("bert-mml")
    assert "bert-mlm" in (err.value.hint or "")


def test_aliases_resolve() -> None:
    assert get("mlm").name == "bert-mlm"


def test_string_values_are_converted_and_validated() -> None:
    assert create("bert-mlm", rate="0.3").rate == 0.3  # type: ignore[attr-defined]
    with pytest.raises(InvalidParameter, match="expects float"):
        create("bert-mlm", rate="lots")
    with pytest.raises(InvalidParameter, match="no parameter 'colour'"):
        create("bert-mlm", colour="red")
    with pytest.raises(InvalidParameter, match="rate"):
        create("bert-mlm", rate=1.5)


def test_objectives_that_do_not_compose_say_so() -> None:
    with pytest.raises(UsageError, match="cannot be combined"):
        create("bert-mlm+bert-mlm")


def test_available_is_sorted_and_canonical() -> None:
    names = available()
    assert names == sorted(names)
    assert "mlm" not in names


# ---- facts a model needs beyond the batch ----------------------------------------------------

NAMES = [o.name for o in list_objectives()]


@pytest.mark.parametrize("name", NAMES)
def test_the_sentinel_flag_says_which_objectives_put_sentinels_into_inputs(name: str) -> None:
    """Flagged: long rows get sentinels in their inputs. Not flagged: no sentinel ever appears in
    an input whose source holds none (random replacements never draw one)."""
    batch = random_batch(8, 96, seed=1, word_every=2, sentence_every=12)
    outs = [create(name)(batch, TINY, make_generator(seed)) for seed in range(4)]
    found = sum(
        int(torch.isin(o.input_ids, TINY.sentinel_tensor(o.input_ids.device)).sum()) for o in outs
    )
    assert (found > 0) == get(name).sentinels


def test_the_sentinel_objectives() -> None:
    assert {o.name for o in list_objectives() if o.sentinels} == {"t5-span", "t5-iid", "ul2"}


@pytest.mark.parametrize("name", NAMES)
def test_model_facts_default_to_no_extra_needs(name: str) -> None:
    facts = model_facts(create(name), TINY)
    if name == "spanbert":
        assert facts.sbo_offsets == 15
    elif name == "ul2":
        assert dict(facts.paradigm_ids) == {"R": 8, "X": 9, "S": 10}
    else:
        assert facts.sbo_offsets == 0
        assert not facts.paradigm_ids


@pytest.mark.parametrize("targets", [1, 4, 15])
def test_sbo_offsets_bound_the_span_offsets_spanbert_emits(targets: int) -> None:
    corrupt = create("spanbert", max_pair_targets=targets, rate=0.5)
    out = corrupt(random_batch(8, 128, seed=2, word_every=2), TINY, make_generator(0))
    offsets = out.extras["span_offset"]
    assert model_facts(corrupt, TINY).sbo_offsets == targets == int(offsets.max()) + 1


def test_paradigm_ids_are_the_tokens_ul2_prepends() -> None:
    corrupt = create("ul2", tokens=("[S2S]", "[NLU]", "[NLG]"))
    ids = model_facts(corrupt, TINY).paradigm_ids
    assert dict(ids) == {"R": 10, "X": 8, "S": 9}
    out = corrupt(random_batch(64, 40, seed=3), TINY, make_generator(0))
    modes = [create("ul2").denoisers[d][0] for d in out.extras["denoiser"].tolist()]  # type: ignore[attr-defined]
    assert out.input_ids[:, 0].tolist() == [ids[m] for m in modes]
    assert not model_facts(create("ul2", prompt=False), TINY).paradigm_ids


REPLACING = [
    o.name
    for o in list_objectives()
    if {"mask_replace", "random_replace"} <= {p.name for p in o.params}
]


@pytest.mark.parametrize("name", REPLACING)
@pytest.mark.parametrize(
    "shares",
    [
        {"mask_replace": 0.95, "random_replace": 0.1},
        {"mask_replace": -0.1},
        {"random_replace": -0.1},
    ],
)
def test_every_80_10_10_objective_checks_its_shares_alike(
    name: str, shares: dict[str, float]
) -> None:
    with pytest.raises(InvalidParameter, match="mask_replace"):
        create(name, **shares)
    create(name, mask_replace=0.9, random_replace=0.1)  # the edge is allowed


def test_the_80_10_10_objectives() -> None:
    assert set(REPLACING) == {"bert-mlm", "whole-word", "spanbert", "mass", "nsp", "sop", "unilm"}


@pytest.mark.parametrize(
    "error",
    [
        errors.ObjectivesError("a message", "a hint"),
        errors.UsageError("bad usage"),
        errors.UnknownObjective("bret", ["bert", "bart"]),
        errors.NotEnoughSentinels(needed=102, available=100),
        errors.DataError("no text", "give some"),
    ],
)
def test_errors_pickle_whole(error: errors.ObjectivesError) -> None:
    """A worker process (corrupt --workers) sends its error to the parent pickled."""
    again = pickle.loads(pickle.dumps(error))
    assert type(again) is type(error)
    assert (again.message, again.hint) == (error.message, error.hint)
    assert again.exit_code == error.exit_code
    assert str(again) == str(error)
    assert again.__dict__ == error.__dict__

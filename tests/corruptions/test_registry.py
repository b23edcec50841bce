from __future__ import annotations

import pytest

from corruptions import InvalidParameter, UnknownObjective, UsageError, available, create, get


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

"""The corruption library: every pretraining objective as a pure function on token tensors.

    import corruptions
    corrupt = corruptions.create("t5-span")
    batch = corrupt(tokens, vocab, corruptions.make_generator(0))

Every module in this package whose name does not start with "_" is a family: the registry imports
them all (so that their `@register` decorators run) the first time it is asked for an objective;
adding a family is adding its module.

Importing the package is cheap: `corruptions.errors` and `corruptions.registry` need no torch,
and every other name below is imported on first use (PEP 562), so a command line that only
reports errors or prints help does not pay for torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .errors import (
    DataError,
    InvalidParameter,
    NotEnoughSentinels,
    ObjectivesError,
    UnknownObjective,
    UsageError,
)

if TYPE_CHECKING:  # what the lazy names below are, for type checkers
    from ._ops import make_generator
    from .registry import (
        FAMILIES,
        Objective,
        Param,
        available,
        create,
        get,
        list_objectives,
        model_facts,
        param,
        register,
        resolve,
    )
    from .types import IGNORE, Corrupted, Corruption, ModelFacts, Op, Tokens, Vocab

_LAZY = {  # name -> the module that defines it, imported when the name is first used
    "make_generator": "_ops",
    **dict.fromkeys(
        (
            "FAMILIES",
            "Objective",
            "Param",
            "available",
            "create",
            "get",
            "list_objectives",
            "model_facts",
            "param",
            "register",
            "resolve",
        ),
        "registry",
    ),
    **dict.fromkeys(
        ("IGNORE", "Corrupted", "Corruption", "ModelFacts", "Op", "Tokens", "Vocab"), "types"
    ),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    else:  # a module of the package, e.g. corruptions.masking
        try:
            value = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":  # the module exists; something it imports not
                raise
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


__all__ = [
    "FAMILIES",
    "IGNORE",
    "Corrupted",
    "Corruption",
    "DataError",
    "InvalidParameter",
    "ModelFacts",
    "NotEnoughSentinels",
    "Objective",
    "ObjectivesError",
    "Op",
    "Param",
    "Tokens",
    "UnknownObjective",
    "UsageError",
    "Vocab",
    "available",
    "create",
    "get",
    "list_objectives",
    "make_generator",
    "model_facts",
    "param",
    "register",
    "resolve",
]

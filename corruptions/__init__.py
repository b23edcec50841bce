"""The corruption library: every pretraining objective as a pure function on token tensors.

    import corruptions
    corrupt = corruptions.create("t5-span")
    batch = corrupt(tokens, vocab, corruptions.make_generator(0))

Every module in this package whose name does not start with "_" is a family and is imported
here, so that its `@register` decorators run; adding a family is adding its module.
"""

from __future__ import annotations

import importlib
import pkgutil

from ._ops import make_generator
from .errors import (
    DataError,
    InvalidParameter,
    NotEnoughSentinels,
    ObjectivesError,
    UnknownObjective,
    UsageError,
)
from .registry import (
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

_NOT_FAMILIES = {"errors", "registry", "types"}
FAMILIES: tuple[str, ...] = tuple(
    sorted(
        m.name
        for m in pkgutil.iter_modules(__path__)
        if not m.name.startswith("_") and m.name not in _NOT_FAMILIES
    )
)
for _family in FAMILIES:
    importlib.import_module(f"{__name__}.{_family}")

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

"""The one list of objectives: a name -> `Objective` dict behind `register`, `create` and `get`.

An objective is a decorated factory in its family's module:

    @register("t5-span", arch="encoder-decoder", paper="Raffel et al. 2020, arXiv 1910.10683")
    def t5_span(**overrides: Any) -> SpanCorruption:
        '''T5 span corruption: 15% of tokens in spans of mean length 3.'''
        return SpanCorruption(**overrides)

Its parameters are the fields of the dataclass the factory returns (declared with `param`, which
carries the help text), with the values the factory sets as defaults. The CLI, the trainer, the
docs and the tests read this registry; nothing else lists objectives.

Every family module (every module of this package not starting with "_") is imported the first
time the registry is read (`get`, `create`, `list_objectives`, ...), so the registry is whole
however the package was imported. This module itself needs no torch.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import importlib
import json
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from .errors import InvalidParameter, UnknownObjective, UsageError

if TYPE_CHECKING:
    from .types import Corruption, ModelFacts, Vocab

Arch = Literal["encoder", "decoder", "encoder-decoder"]
ARCHS: tuple[str, ...] = ("encoder", "decoder", "encoder-decoder")


def param(default: Any, help: str) -> Any:
    """A dataclass field that is a user-settable parameter with its reference default and help."""
    if isinstance(default, (list, dict, set)):
        raise TypeError("use a tuple or a frozen value for parameter defaults")
    return dataclasses.field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class Param:
    """One parameter of an objective, as `describe` and `--param` see it."""

    name: str
    default: Any
    help: str

    @property
    def kind(self) -> str:
        return type(self.default).__name__


@dataclass(frozen=True)
class Objective:
    """A registered objective: how to build it and what it needs."""

    name: str
    family: str  # the module it lives in, e.g. "masking"
    arch: Arch  # the model it trains: encoder, decoder or encoder-decoder
    build: Callable[..., Corruption]
    summary: str  # one line
    paper: str  # authors, year, arXiv id
    needs_words: bool = False  # reads Tokens.word_starts
    needs_sentences: bool = False  # reads Tokens.sentence_starts
    aliases: tuple[str, ...] = ()
    # model parts beyond what the batch shows; "rtd": ELECTRA's generator + discriminator, whose
    # batch otherwise looks like plain MLM
    heads: tuple[str, ...] = ()
    # treats each row as one document (one EOS, one prefix split per row), so a trainer must not
    # pack several documents into a row even though token positions are kept
    one_document_per_row: bool = False
    # marks cut spans in its inputs with T5's sentinels (vocab.sentinels), which the decoder
    # writes back; no other objective puts a sentinel into an input
    sentinels: bool = False

    @property
    def params(self) -> tuple[Param, ...]:
        """The parameters with the defaults this objective uses."""
        return params_of(self.build())

    @property
    def description(self) -> str:
        """The factory's docstring: summary line and any further explanation."""
        return (self.build.__doc__ or self.summary).strip()


_REGISTRY: dict[str, Objective] = {}
_ALIASES: dict[str, str] = {}
_NOT_FAMILIES = {"errors", "registry", "types"}
FAMILIES: tuple[str, ...] = tuple(
    sorted(
        m.name
        for m in pkgutil.iter_modules([str(Path(__file__).parent)])
        if not m.name.startswith("_") and m.name not in _NOT_FAMILIES
    )
)
_loaded = False


def _load_families() -> None:
    """Import every family module once, so that all their objectives are registered."""
    global _loaded
    if _loaded:
        return
    _loaded = True  # before the imports: a family that reads the registry must not recurse
    try:
        for family in FAMILIES:
            importlib.import_module(f"{__package__}.{family}")
    except BaseException:
        _loaded = False
        raise


def register(
    name: str,
    *,
    arch: Arch,
    paper: str,
    needs_words: bool = False,
    needs_sentences: bool = False,
    aliases: tuple[str, ...] = (),
    heads: tuple[str, ...] = (),
    one_document_per_row: bool = False,
    sentinels: bool = False,
) -> Callable[[Callable[..., Corruption]], Callable[..., Corruption]]:
    """Class the decorated factory as objective `name`; duplicate names fail at import."""
    if arch not in ARCHS:
        raise ValueError(f"arch must be one of {ARCHS}, not {arch!r}")

    def decorate(build: Callable[..., Corruption]) -> Callable[..., Corruption]:
        for key in (name, *aliases):
            if key in _REGISTRY or key in _ALIASES:
                raise ValueError(f"objective name {key!r} is registered twice")
        summary = (build.__doc__ or "").strip().splitlines()
        if not summary:
            raise ValueError(f"objective {name!r} needs a docstring: its first line is the summary")
        _REGISTRY[name] = Objective(
            name=name,
            family=build.__module__.rsplit(".", 1)[-1],
            arch=arch,
            build=build,
            summary=summary[0],
            paper=paper,
            needs_words=needs_words,
            needs_sentences=needs_sentences,
            aliases=aliases,
            heads=heads,
            one_document_per_row=one_document_per_row,
            sentinels=sentinels,
        )
        _ALIASES.update(dict.fromkeys(aliases, name))
        return build

    return decorate


def available() -> list[str]:
    """The canonical names of all objectives, sorted."""
    _load_families()
    return sorted(_REGISTRY)


def list_objectives(pattern: str = "*") -> list[Objective]:
    """The objectives whose name or an alias matches the glob `pattern`, sorted by name."""
    _load_families()
    return [
        o
        for n, o in sorted(_REGISTRY.items())
        if any(fnmatch.fnmatch(key, pattern) for key in (n, *o.aliases))
    ]


def get(name: str) -> Objective:
    """The objective called `name` (or one of its aliases); `UnknownObjective` otherwise."""
    _load_families()
    name = _ALIASES.get(name, name)
    if name not in _REGISTRY:
        raise UnknownObjective(name, list(_REGISTRY), list(_ALIASES))
    return _REGISTRY[name]


def model_facts(corruption: Corruption, vocab: Vocab) -> ModelFacts:
    """What a model for `corruption` (as built, parameters applied) must know beyond its batches:
    the corruption's own `model_facts(vocab)` where its class defines one, else the defaults
    (no SBO head, no paradigm tokens). See `ModelFacts`.

    Raises:
        ObjectivesError: the vocabulary lacks something the corruption needs (UL2's tokens).
    """
    from .types import ModelFacts  # here, not above: importing the registry needs no torch

    own = getattr(corruption, "model_facts", None)
    return own(vocab) if own is not None else ModelFacts()


def params_of(corruption: Corruption) -> tuple[Param, ...]:
    """The `param` fields of a built corruption with their current values."""
    if not dataclasses.is_dataclass(corruption):
        return ()
    return tuple(
        Param(f.name, getattr(corruption, f.name), f.metadata["help"])
        for f in dataclasses.fields(corruption)
        if f.init and "help" in f.metadata
    )


def create(name: str, **overrides: Any) -> Corruption:
    """Build objective `name` with its reference defaults, changed by `overrides`.

    Values may be strings (from `--param key=value`); they are converted to the type of the
    default. `a+b` composes objectives whose classes share one `combine` staticmethod
    (`combine(parts) -> Corruption`, e.g. BART's noising functions); an override then applies to
    every part that has that parameter.

    Raises:
        UnknownObjective: no such name.
        InvalidParameter: a name the objective does not have, or a value it rejects.
    """
    if "+" in name:
        return _compose(name, overrides)
    objective = get(name)
    known = {p.name: p for p in objective.params}
    unknown = sorted(set(overrides) - set(known))
    if unknown:
        raise InvalidParameter(
            f"objective '{objective.name}' has no parameter '{unknown[0]}'",
            "its parameters: " + (", ".join(sorted(known)) or "none"),
        )
    values = {k: coerce(v, known[k].default, k) for k, v in overrides.items()}
    try:
        return objective.build(**values)
    except (ValueError, TypeError) as exc:
        raise InvalidParameter(f"objective '{objective.name}': {exc}") from exc


def resolve(name: str, overrides: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
    """The canonical name of `name` (aliases resolved, each part of an `a+b` composition) and
    the value of every parameter it runs with, defaults included, after `overrides`."""
    overrides = overrides or {}
    names: list[str] = []
    values: dict[str, Any] = {}
    for part in name.split("+"):
        objective = get(part.strip())
        mine = {p.name for p in objective.params}
        built = create(objective.name, **{k: v for k, v in overrides.items() if k in mine})
        names.append(objective.name)
        values.update({p.name: p.default for p in params_of(built)})
    return "+".join(names), values


def _compose(name: str, overrides: dict[str, Any]) -> Corruption:
    names = [n.strip() for n in name.split("+")]
    objectives = [get(n) for n in names]
    known = {p.name for o in objectives for p in o.params}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise InvalidParameter(
            f"none of {', '.join(names)} has a parameter '{unknown[0]}'",
            "their parameters: " + ", ".join(sorted(known)),
        )
    parts = []
    for objective in objectives:
        mine = {p.name for p in objective.params}
        parts.append(create(objective.name, **{k: v for k, v in overrides.items() if k in mine}))
    combiners = {getattr(type(p), "combine", None) for p in parts}
    if len(combiners) != 1 or None in combiners:
        raise UsageError(
            f"objectives {' + '.join(names)} cannot be combined",
            "only noising functions of one family compose, e.g. bart-infill+bart-rotate",
        )
    combine = combiners.pop()
    return combine(parts)


def coerce(value: Any, default: Any, name: str) -> Any:
    """Convert a `--param` string to the type of `default` (bool, int, float, str or tuple)."""
    if not isinstance(value, str) or isinstance(default, str):
        return value
    text = value.strip()
    try:
        if isinstance(default, bool):
            lowered = text.lower()
            if lowered in ("true", "1", "yes", "on"):
                return True
            if lowered in ("false", "0", "no", "off"):
                return False
            raise ValueError(text)
        if isinstance(default, int):
            return int(text)
        if isinstance(default, float):
            return float(text)
        if isinstance(default, tuple):
            items = json.loads(text if text.startswith("[") else f"[{text}]")
            return tuple(tuple(i) if isinstance(i, list) else i for i in items)
        if default is None:
            return json.loads(text)
    except (ValueError, json.JSONDecodeError):
        pass
    else:
        return text
    raise InvalidParameter(
        f"parameter '{name}' expects {type(default).__name__}, got '{value}'",
        f"for example {name}={_format(default)}",
    )


def _format(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, tuple):
        return json.dumps(value)
    return str(value)

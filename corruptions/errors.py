"""Errors a user can fix. Each carries a one-line message and, where useful, a hint.

The CLI prints `error: <message>` and `hint: <hint>` on stderr and exits with `exit_code`;
anything that is not an `ObjectivesError` is a bug and keeps its traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class ObjectivesError(Exception):
    """Base class: a message for the user, an optional hint, and the CLI exit status."""

    exit_code = 1
    quiet = False  # True: exit with `exit_code` and print nothing (another process reported it)

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __reduce__(self) -> tuple[object, ...]:
        """Pickled as its message, hint and attributes, whatever the subclass's __init__ takes:
        an error raised in a worker process reaches the parent whole."""
        return _rebuild, (type(self), self.message, self.hint, self.__dict__)


def _rebuild(
    cls: type[ObjectivesError], message: str, hint: str | None, state: dict[str, object]
) -> ObjectivesError:
    error = cls.__new__(cls)
    ObjectivesError.__init__(error, message, hint)
    error.__dict__.update(state)
    return error


class UsageError(ObjectivesError):
    """The command was asked for something that does not exist or cannot be combined."""

    exit_code = 2


class UnknownObjective(UsageError):
    def __init__(self, name: str, known: Iterable[str], aliases: Iterable[str] = ()) -> None:
        known = sorted(known)
        close = difflib.get_close_matches(name, [*known, *aliases], n=1, cutoff=0.5)
        hint = f"did you mean '{close[0]}'? " if close else ""
        super().__init__(
            f"unknown objective '{name}'",
            hint + "known objectives: " + ", ".join(known),
        )
        self.name = name


class InvalidParameter(UsageError):
    """A parameter name that the objective does not have, or a value it cannot take."""


class NotEnoughSentinels(ObjectivesError):
    def __init__(self, needed: int, available: int) -> None:
        super().__init__(
            f"this batch needs {needed} sentinel tokens but the vocabulary has {available}",
            "train a tokenizer with more <extra_id_N> tokens (objectives tokenizer train CORPUS "
            f"--sentinels {-(-needed // 100) * 100} --out tok.json), or use shorter sequences "
            "or fewer spans",
        )


class DataError(ObjectivesError):
    """Input text that cannot be read or used (missing, empty, not UTF-8)."""

"""JSONL rows of `corrupt` (docs/jsonl.md): the row as a dict (`jsonl_row`), and the same row
encoded fast, as bytes (`JsonlLine`), written to stdout's bytes a few lines at a time."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from .output import until_pipe_closes

if TYPE_CHECKING:
    import tokenizers

    from objectives_cli.data.examples import Example


JSONL_FIELDS = (  # docs/jsonl.md, in the order a row holds them
    "objective",
    "params",
    "seed",
    "index",
    "source_ids",
    "input_ids",
    "labels",
    "decoder_input_ids",
    "extras",
    "ops",
    "source",
    "input",
    "target",
)


def jsonl_row(
    example: Example,
    objective: str,
    params: dict[str, Any],
    seed: int,
    tok: tokenizers.Tokenizer,
    fields: Sequence[str] = JSONL_FIELDS,
) -> dict[str, Any]:
    """One JSONL row (the `fields` asked for); the schema is documented in docs/jsonl.md."""
    from corruptions import IGNORE

    row: dict[str, Any] = {
        "objective": objective,
        "params": params,
        "seed": seed,
        "index": example.index,
        "source_ids": example.source_ids,
        "input_ids": example.input_ids,
        "labels": example.labels,
    }
    if example.decoder_input_ids is not None:
        row["decoder_input_ids"] = example.decoder_input_ids
    row["extras"] = example.extras
    row["ops"] = example.ops
    if "source" in fields:
        row["source"] = tok.decode(example.source_ids, skip_special_tokens=False)
    if "input" in fields:
        row["input"] = tok.decode(example.input_ids, skip_special_tokens=False)
    if "target" in fields:
        target = [t for t in example.labels if t != IGNORE]
        row["target"] = tok.decode(target, skip_special_tokens=False)
    return {k: v for k, v in row.items() if k in fields}


class JsonlLine:
    """The JSONL line of an example, as bytes: exactly `json.dumps(jsonl_row(...),
    ensure_ascii=False) + "\n"`, four times faster.

    The fields every row shares (objective, params, seed) are written once; lists of ids go
    through orjson (C, about 5x the standard encoder on lists of ints), whose compact `1,2` is
    spaced as json's `1, 2` (safe: a list of ints holds no string); everything else (the text
    fields, floats) through `json.dumps` as before. Never pickled: a forked worker inherits it.
    """

    def __init__(
        self,
        objective: str,
        params: dict[str, Any],
        seed: int,
        tok: tokenizers.Tokenizer,
        fields: Sequence[str] = JSONL_FIELDS,
    ) -> None:
        self.tok, self.fields = tok, set(fields)
        shared = {"objective": objective, "params": params, "seed": seed}
        self.head = b", ".join(_key(k) + _dumps(v) for k, v in shared.items() if k in self.fields)

    def __call__(self, example: Example) -> bytes:
        row = jsonl_row(example, "", {}, 0, self.tok, [f for f in JSONL_FIELDS if f in self.fields])
        parts = [self.head] if self.head else []
        parts += [_key(k) + _dumps(v) for k, v in row.items() if k not in _SHARED]
        return b"{" + b", ".join(parts) + b"}\n"


_SHARED = ("objective", "params", "seed")


def _key(name: str) -> bytes:
    return json.dumps(name, ensure_ascii=False).encode() + b": "


def _dumps(value: Any) -> bytes:
    """`json.dumps(value, ensure_ascii=False)`, lists of ints through orjson."""
    import orjson

    kind = type(value)
    if kind is int:
        return b"%d" % value
    if kind is list and (not value or type(value[0]) is int):  # from tolist(): all ints
        return orjson.dumps(value).replace(b",", b", ")
    if kind is dict:
        return b"{" + b", ".join(_key(k) + _dumps(v) for k, v in value.items()) + b"}"
    return json.dumps(value, ensure_ascii=False, default=list).encode()


def write_lines(lines: Iterable[bytes]) -> None:
    """Stream lines already encoded (`JsonlLine`) to stdout, a few at a time."""
    with until_pipe_closes():
        sys.stdout.flush()
        out = getattr(sys.stdout, "buffer", None)
        held: list[bytes] = []
        for line in lines:
            held.append(line)
            if len(held) >= 16:  # a batch: `| head` still sees the first lines at once
                _write(out, held)
                held = []
        _write(out, held)


def _write(out: Any, lines: list[bytes]) -> None:
    data = b"".join(lines)
    if out is None:  # a text-only stream
        sys.stdout.write(data.decode())
    else:
        out.write(data)
        out.flush()

"""The registry as plain data, so that `list` and shell completion answer without torch.

Reading the registry imports every family module of `corruptions`, and with them torch: about
two seconds before `objectives list` could print a line. The catalog is what `list --format
json` prints, one record per objective (name, aliases, family, arch, summary, paper, what it
needs, every parameter's default, type and help), built once from the registry and cached in
the cache directory under a hash of the `corruptions` sources: editing any objective changes
the hash, and the next call builds the catalog again. A cache that cannot be read or written
costs only the time to build it.
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .files import cache_dir, write_atomic

if TYPE_CHECKING:
    from corruptions import Objective

FORMAT = 1  # bump when a record changes shape


def record(objective: Objective) -> dict[str, Any]:
    """What `list --format json` says about one objective."""
    return {
        "name": objective.name,
        "aliases": list(objective.aliases),
        "family": objective.family,
        "arch": objective.arch,
        "summary": objective.summary,
        "paper": objective.paper,
        "needs_words": objective.needs_words,
        "needs_sentences": objective.needs_sentences,
        "params": {
            p.name: {"default": p.default, "type": p.kind, "help": p.help} for p in objective.params
        },
    }


def fingerprint(package: Path | None = None) -> str:
    """A hash of every source file of the `corruptions` package (and of the record format)."""
    if package is None:
        import corruptions  # cheap: the package imports its families lazily

        package = Path(corruptions.__file__).parent
    h = hashlib.blake2b(f"catalog {FORMAT}".encode(), digest_size=8)
    for path in sorted(package.glob("*.py")):
        h.update(b"\x00" + path.name.encode() + b"\x00" + path.read_bytes())
    return h.hexdigest()


def cache_path() -> Path:
    return cache_dir() / f"catalog-{fingerprint()}.json"


def build() -> list[dict[str, Any]]:
    """Every objective's record, from the registry itself (imports torch)."""
    import corruptions

    return json.loads(json.dumps([record(o) for o in corruptions.list_objectives()], default=list))


def catalog() -> list[dict[str, Any]]:
    """Every objective's record, sorted by name: from the cache when it matches the sources."""
    path = cache_path()
    with contextlib.suppress(OSError, ValueError):
        cached = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(cached, list):
            return cached
    records = build()
    with contextlib.suppress(OSError):
        write_atomic(path, json.dumps(records, ensure_ascii=False))
        for old in path.parent.glob("catalog-*.json"):  # catalogs of sources edited since
            if old != path:
                old.unlink(missing_ok=True)
    return records


def matching(pattern: str = "*") -> list[dict[str, Any]]:
    """The records whose name or an alias matches the glob `pattern` (as
    `corruptions.list_objectives`)."""
    return [
        r
        for r in catalog()
        if any(fnmatch.fnmatch(key, pattern) for key in (r["name"], *r["aliases"]))
    ]


def completions(incomplete: str) -> list[tuple[str, str]]:
    """(name or alias, summary) of the objectives that start with `incomplete`, for shells."""
    found = []
    for r in catalog():
        for key in (r["name"], *r["aliases"]):
            if key.startswith(incomplete):
                found.append((key, r["summary"] if key == r["name"] else f"= {r['name']}"))
    return sorted(found)

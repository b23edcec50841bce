"""The default corpus: English prose that every Python installation carries.

Sources, in this order of preference:

* `pydoc_data.topics`: the language reference as plain text (about 0.45 MB), one document per
  topic;
* the docstrings of the standard library's own source files, one document per module: module,
  class and function docstrings in source order. Files are read, never imported (importing runs
  code); a small regex lexer finds the string literals that open a module or follow a `def`/`class`
  header, which is ~10x faster than `ast.parse` over the ~9 MB of source. Tests, idlelib,
  turtledemo, lib2to3, ensurepip, encodings and site-packages are skipped.

Text is cleaned (dedented; doctests, grammar productions, code blocks and reST markup dropped;
the lines of a paragraph joined), deduplicated paragraph by paragraph, and documents are ordered
by a stable hash, so any prefix of the corpus mixes both sources. A document whose hash falls in
the lowest 2% is held out. The result is cached as a plain text file (documents separated by
blank lines) under $OBJECTIVES_CACHE, else $XDG_CACHE_HOME/objectives, else ~/.cache/objectives,
written atomically; gathering takes well under a second, reading the cache a few milliseconds.
"""

from __future__ import annotations

import ast
import contextlib
import functools
import hashlib
import importlib
import inspect
import os
import re
import sys
import sysconfig
from collections.abc import Iterable, Iterator
from pathlib import Path

from .files import cache_dir, write_atomic

VERSION = 4  # bump when the text may change: it names the cache file (4: pristine sys hooks)
HELDOUT_PER_MILLE = 20  # 2% of documents, chosen by hash
MIN_DOCUMENT_CHARS = 200  # shorter documents (a module with one one-line docstring) are dropped
MAX_DOCUMENT_CHARS = 6000  # longer ones are cut at paragraphs (~2k tokens; a finer held-out split)
SKIP_DIRS = frozenset(
    {
        "test",
        "tests",
        "idle_test",
        "idlelib",
        "turtledemo",
        "lib2to3",
        "ensurepip",
        "encodings",
        "site-packages",
        "dist-packages",
        "lib-dynload",
        "__pycache__",
        "pydoc_data",
    }
)

# String literals and comments, so that quotes inside code, comments or other strings never
# start a docstring. Unrolled loops ("[^"\\]*(?:\\.[^"\\]*)*") keep the regex linear.
_TQ2 = r'"""[^"\\]*(?:(?:\\.|"(?!""))[^"\\]*)*"""'
_TQ1 = r"'''[^'\\]*(?:(?:\\.|'(?!''))[^'\\]*)*'''"
_SQ2 = r'"[^"\\\n]*(?:\\.[^"\\\n]*)*"'
_SQ1 = r"'[^'\\\n]*(?:\\.[^'\\\n]*)*'"
# A docstring opens the file or follows a line ending in ':' (a def/class header), with only
# blank and comment lines in between.
_HEAD = r"(?:\A|:[ \t]*(?:\#[^\n]*)?\n)(?:[ \t]*(?:\#[^\n]*)?\n)*[ \t]*"
_LEXER = re.compile(
    rf"{_HEAD}(?P<prefix>[rRuU]?)(?P<doc>{_TQ2}|{_TQ1}|{_SQ2}|{_SQ1})"
    rf"""|[^:#"']+|\#[^\n]*|{_TQ2}|{_TQ1}|{_SQ2}|{_SQ1}|:""",
    re.S,
)


def docstrings(source: str) -> Iterator[str]:
    """The docstrings of a Python source file, in order, as written (not yet dedented)."""
    for m in _LEXER.finditer(source):
        literal = m.group("doc")
        if literal is None:
            continue
        quote = 3 if literal[:3] in ('"""', "'''") else 1
        body = literal[quote:-quote]
        if "\\" in body and m.group("prefix").lower() != "r":
            try:
                body = ast.literal_eval(literal)
            except (ValueError, SyntaxError):
                continue
        yield body


def stdlib_files(root: Path) -> list[Path]:
    """The standard library's own .py files, sorted, without tests and tools."""
    files = []
    for folder, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not d.startswith("config-"))
        files.extend(
            Path(folder, n)
            for n in sorted(names)
            if n.endswith(".py") and not n.startswith("test_")
        )
    return sorted(files)


_UNDERLINE = re.compile(r"^\s*([=\-*~^#\"+`'])\1{2,}\s*$")
_BULLET = re.compile(r"^(?:[*+\-•]|\d{1,2}[.)]|\(\w\))\s")
_ROLE = re.compile(r":[a-z]+(?::[a-z]+)?:`~?([^`]+)`")
_LITERAL = re.compile(r"``([^`]+)``")
_CODE_LINE = re.compile(
    r"^\s*(?:(?:if|elif|else|for|while|with|try|except|finally|def|class|async|lambda)\b.*:\s*$"
    r"|(?:import|from|return|raise|assert|print\(|yield|del|pass|@)\b"
    r"|[\w.\[\]]+\s*(?:[-+*/|&]?=|\()(?!=)|[\]\)}]\s*$)"
)
_SYMBOLS = re.compile(r"[^\w\s.,;:!?'\"()\-–—’“”]")
_WORD = re.compile(r"[A-Za-z]{2,}")


def _is_code(line: str) -> bool:
    stripped = line.strip()
    if not stripped:
        return False
    symbols = len(_SYMBOLS.findall(stripped))
    return bool(_CODE_LINE.match(stripped)) or symbols > 0.08 * len(stripped)


def clean_paragraphs(text: str) -> list[str]:
    """Prose paragraphs of a dedented docstring or help topic, each on one line."""
    out = []
    for block in re.split(r"\n[ \t]*\n", text):
        block = _LITERAL.sub(r'"\1"', _ROLE.sub(r'"\1"', block))
        lines = [
            ln
            for ln in block.split("\n")
            if ln.strip() and not _UNDERLINE.match(ln) and not ln.lstrip().startswith("..")
        ]
        if not lines:
            continue
        if any(
            s.startswith((">>>", "$ ", "% ", "+-", "+=")) or "::=" in s
            for s in map(str.strip, lines)
        ):
            continue  # doctests, shell sessions, tables, grammar productions
        if sum(map(_is_code, lines)) * 2 >= len(lines):
            continue
        joined: list[str] = []
        for line in lines:
            line = " ".join(line.split())
            if joined and not _BULLET.match(line):
                joined[-1] += " " + line
            else:
                joined.append(line)
        for para in joined:
            para = para.rstrip(":").strip()  # its example block was dropped
            words = _WORD.findall(para)
            if len(words) >= 3 and sum(not w.isupper() for w in words) >= 0.5 * len(words):
                out.append(para)  # prose, not a list of CONSTANT_NAMES
    return out


def _documents(raw: Iterable[tuple[str, Iterable[str]]]) -> list[str]:
    """Cleaned, paragraph-deduplicated documents from (name, texts) pairs."""
    seen: set[str] = set()
    docs = []
    for _name, texts in raw:
        paragraphs = []
        for text in texts:
            for para in clean_paragraphs(text):
                if para not in seen:
                    seen.add(para)
                    paragraphs.append(para)
        docs.extend(d for d in _cut(paragraphs) if len(d) >= MIN_DOCUMENT_CHARS)
    return docs


def _cut(paragraphs: list[str]) -> Iterator[str]:
    """Paragraphs joined into documents of at most MAX_DOCUMENT_CHARS (unless one is longer)."""
    part: list[str] = []
    size = 0
    for para in paragraphs:
        if part and size + len(para) > MAX_DOCUMENT_CHARS:
            yield "\n".join(part)
            part, size = [], 0
        part.append(para)
        size += len(para) + 1
    if part:
        yield "\n".join(part)


def _stdlib_texts(root: Path) -> Iterator[tuple[str, list[str]]]:
    for path in stdlib_files(root):
        try:
            source = path.read_text("utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        yield str(path.relative_to(root)), [inspect.cleandoc(d) for d in docstrings(source)]


def _topic_texts() -> Iterator[tuple[str, list[str]]]:
    try:
        from pydoc_data.topics import topics
    except ImportError:  # some distributions strip it
        return
    for name in sorted(topics):
        yield f"pydoc:{name}", [topics[name]]


def _builtin_texts() -> Iterator[tuple[str, list[str]]]:
    """Docstrings of the modules compiled into the interpreter (importing them runs no Python)."""
    for name in sorted(sys.builtin_module_names):
        if name.startswith(("_test", "xx")):
            continue
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        texts = [module.__doc__ or ""]
        namespace = vars(module)
        for attr in sorted(namespace):
            if attr.startswith("_"):
                continue
            # sys keeps the interpreter's own hooks as __excepthook__ etc.; the live ones may have
            # been replaced (pytest, typer, rich), which must not change the corpus.
            obj = namespace.get(f"__{attr}__", namespace[attr])
            if getattr(obj, "__module__", None) not in (name, None):
                continue
            texts.append(getattr(obj, "__doc__", None) or "")
            if isinstance(obj, type):
                texts.extend(
                    getattr(m, "__doc__", None) or ""
                    for k, m in sorted(vars(obj).items())
                    if not k.startswith("_")
                )
        yield f"builtin:{name}", [inspect.cleandoc(t) for t in texts if isinstance(t, str) and t]


def document_key(document: str) -> int:
    """A stable 64-bit hash of a document (the order and the split follow it)."""
    return int.from_bytes(hashlib.blake2b(document.encode(), digest_size=8).digest(), "big")


def is_heldout(document: str) -> bool:
    """True for the ~2% of documents in the held-out split (fixed by the text alone)."""
    return document_key(document) % 1000 < HELDOUT_PER_MILLE


def gather(root: Path | None = None) -> list[str]:
    """Every document of the default corpus, ordered by `document_key` (no cache)."""
    root = Path(sysconfig.get_paths()["stdlib"]) if root is None else root
    docs = _documents([*_topic_texts(), *_builtin_texts(), *_stdlib_texts(root)])
    return sorted(set(docs), key=lambda d: (document_key(d), d))


def cache_path() -> Path:
    """The cache file of this interpreter's corpus (its stdlib decides the text)."""
    stdlib = sysconfig.get_paths()["stdlib"]
    key = hashlib.blake2b(f"{stdlib}|{sys.version}".encode(), digest_size=6).hexdigest()
    return cache_dir() / f"corpus-v{VERSION}-py{sys.version_info[0]}{sys.version_info[1]}-{key}.txt"


@functools.cache
def corpus_documents() -> tuple[str, ...]:
    """All documents, from the disk cache when it exists (else gathered and cached)."""
    path = cache_path()
    try:
        return tuple(path.read_text("utf-8").split("\n\n"))
    except (OSError, UnicodeDecodeError):
        pass
    docs = gather()
    with contextlib.suppress(OSError):  # a read-only home still gets the corpus, uncached
        write_atomic(path, "\n\n".join(docs))
    return tuple(docs)


def corpus_split(split: str) -> list[str]:
    """The train or heldout documents of the default corpus (a fresh list)."""
    if split not in ("train", "heldout"):
        raise ValueError(f"split must be 'train' or 'heldout', not {split!r}")
    want = split == "heldout"
    return [d for d in corpus_documents() if is_heldout(d) == want]

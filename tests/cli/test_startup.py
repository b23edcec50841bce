"""What answers at once: help, the version, `list` and shell completion import neither torch nor
the tokenizers (checked by what a fresh process has imported, not by timing it), and the cached
catalog `list` reads is the registry."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import corruptions
from objectives_cli.data import catalog
from tests.cli.runner import invoke

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "tokenizers", "datasets")
REPORT = (
    "import sys\n"
    "sys.argv[0] = 'objectives'\n"
    "from objectives_cli.cli.main import run\n"
    "try:\n"
    "    run()\n"
    "except SystemExit:\n"
    "    pass\n"
    f"print(sorted(m for m in {HEAVY!r} if m in sys.modules), file=sys.stderr)\n"
)


def run_fresh(args: list[str], cache: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """`objectives ARGS` in a new interpreter; its last stderr line lists the heavy modules it
    imported."""
    return subprocess.run(
        [sys.executable, "-c", REPORT, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "OBJECTIVES_CACHE": str(cache), **env},
    )


@pytest.fixture(scope="module")
def warm_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache directory whose catalog is built (the first `list` after an edit builds it)."""
    cache = tmp_path_factory.mktemp("cache")
    assert run_fresh(["list"], cache).returncode == 0
    return cache


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["-h"],
        [],
        ["--version"],
        ["list"],
        ["list", "bart*", "--format", "json"],
        ["corrupt", "--help"],
        ["train", "--help"],
        ["tokenizer", "train", "--help"],
    ],
)
def test_help_version_and_list_import_no_torch(args: list[str], warm_cache: Path) -> None:
    done = run_fresh(args, warm_cache)
    assert done.stdout
    assert done.stderr.splitlines()[-1] == "[]", done.stderr


def test_completion_of_an_objective_name_imports_no_torch(warm_cache: Path) -> None:
    done = run_fresh(
        [],
        warm_cache,
        _OBJECTIVES_COMPLETE="complete_bash",
        COMP_WORDS="objectives corrupt -o bert",
        COMP_CWORD="3",
    )
    assert "bert-mlm" in done.stdout.split()
    assert all(name.startswith("bert") for name in done.stdout.split())
    assert done.stderr.splitlines()[-1] == "[]", done.stderr


def test_completion_is_offered() -> None:
    result = invoke(
        "--show-completion", "bash", env={"_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"}
    )
    assert result.code == 0
    assert "_OBJECTIVES_COMPLETE" in result.stdout


def test_the_catalog_is_the_registry_cached_or_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OBJECTIVES_CACHE", str(tmp_path))
    built = catalog.build()
    assert catalog.catalog() == built  # builds and caches
    assert catalog.cache_path().exists()
    assert catalog.catalog() == built  # from the cache
    assert [r["name"] for r in built] == [o.name for o in corruptions.list_objectives()]


def test_a_damaged_catalog_is_built_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OBJECTIVES_CACHE", str(tmp_path))
    catalog.cache_path().parent.mkdir(parents=True, exist_ok=True)
    catalog.cache_path().write_text('{"not": "a list"')
    assert catalog.catalog() == catalog.build()
    assert json.loads(catalog.cache_path().read_text()) == catalog.build()


def test_editing_an_objective_changes_the_catalog_key(tmp_path: Path) -> None:
    package = Path(corruptions.__file__).parent
    copy = tmp_path / "corruptions"
    copy.mkdir()
    for path in package.glob("*.py"):
        (copy / path.name).write_bytes(path.read_bytes())
    before = catalog.fingerprint(copy)
    assert before == catalog.fingerprint(package)
    with (copy / "masking.py").open("a") as f:
        f.write("# a new default\n")
    assert catalog.fingerprint(copy) != before

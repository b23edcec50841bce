"""The generated pages in docs/objectives/ match the registry, and their examples are exactly
what `objectives corrupt --format text` prints for the sample text."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

import corruptions
from objectives_cli.data.examples import SAMPLE_DOCUMENTS
from objectives_cli.render import docgen
from tests.cli.runner import invoke

NAMES = [o.name for o in corruptions.list_objectives()]
ROOT = Path(__file__).resolve().parents[2]


def test_generated_pages_are_up_to_date() -> None:
    out_of_date = docgen.stale()
    assert not out_of_date, (
        f"docs/objectives/ is out of date ({', '.join(out_of_date)}): "
        "run python -m objectives_cli.render.docgen and commit the pages"
    )


@pytest.mark.parametrize("name", NAMES)
def test_page_example_is_what_corrupt_prints(name: str) -> None:
    page = (docgen.DOCS / f"{name}.md").read_text()
    printed = invoke(
        "corrupt", "-o", name, "--format", "text", "-", stdin="\n\n".join(SAMPLE_DOCUMENTS) + "\n"
    )
    assert printed.code == 0, printed.stderr
    assert f"```text\n{printed.stdout}```" in page


def test_docs_index_links_every_objective_page() -> None:
    index = (docgen.DOCS / "index.md").read_text()
    for name in NAMES:
        assert f"]({name}.md)" in index


def readme_runs() -> list[tuple[str, list[str], str]]:
    """(stdin, args, shown output) of every `$ echo ... | objectives corrupt ...` in README.md
    that needs no file of its own."""
    blocks = re.findall(r"```text\n(.*?)```", (ROOT / "README.md").read_text(), re.DOTALL)
    runs = []
    for block in blocks:
        for command, shown in re.findall(r"^\$ (.*)\n((?:(?!\$ ).*\n)*)", block, re.MULTILINE):
            echo, _, rest = command.partition(" | objectives ")
            if echo.startswith("echo ") and "--tokenizer" not in rest:
                runs.append((shlex.split(echo)[1] + "\n", shlex.split(rest), shown))
    return runs


def test_readme_shows_real_output() -> None:
    runs = readme_runs()
    assert runs
    for stdin, args, shown in runs:
        assert invoke(*args, stdin=stdin).stdout == shown, " ".join(args)


def test_jsonl_doc_example_is_real() -> None:
    doc = (ROOT / "docs" / "jsonl.md").read_text()
    shown = re.search(r"```json\n(.*?)\n```", doc, re.DOTALL)
    assert shown is not None
    run = invoke(
        "corrupt",
        "-o",
        "bert-mlm",
        "--format",
        "jsonl",
        "--param",
        "rate=0.3",
        "-",
        stdin="The cat sat on the mat.\n",
    )
    assert run.stdout == shown.group(1) + "\n"


def test_readme_starts_with_one_command_to_set_up_and_one_to_test() -> None:
    readme = (ROOT / "README.md").read_text()
    first = re.search(r"```bash\n(.*?)```", readme, re.DOTALL)
    assert first is not None
    setup, tests = (line.split("#")[0].strip() for line in first.group(1).splitlines())
    assert "-m venv" in setup
    assert 'pip install -e ".[dev]"' in setup
    assert tests.startswith("pytest")
    python = re.search(r'requires-python = ">=(\S+)"', (ROOT / "pyproject.toml").read_text())
    assert python is not None
    assert f"Python >= {python.group(1)}" in first.group(1)  # the version pyproject requires
    assert "--index-url https://download.pytorch.org/whl/cpu" in readme  # torch without CUDA
    assert re.search(r"tests take about \d+", readme)

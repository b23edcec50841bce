"""The generated pages in docs/objectives/ match the registry, and their examples are exactly
what `objectives corrupt --format text` prints for the sample text."""

from __future__ import annotations

import pytest

import corruptions
from objectives_cli import docgen
from objectives_cli.examples import SAMPLE_DOCUMENTS
from tests.cli.runner import invoke

NAMES = [o.name for o in corruptions.list_objectives()]


def test_generated_pages_are_up_to_date() -> None:
    out_of_date = docgen.stale()
    assert not out_of_date, (f"docs/objectives/ is out of date ({', '.join(out_of_date)}): "
                             "run python -m objectives_cli.docgen and commit the pages")


@pytest.mark.parametrize("name", NAMES)
def test_page_example_is_what_corrupt_prints(name: str) -> None:
    page = (docgen.DOCS / f"{name}.md").read_text()
    printed = invoke("corrupt", "-o", name, "--format", "text", "-",
                     stdin="\n\n".join(SAMPLE_DOCUMENTS) + "\n")
    assert printed.code == 0, printed.stderr
    assert f"```text\n{printed.stdout}```" in page


def test_docs_index_links_every_objective_page() -> None:
    index = (docgen.DOCS / "index.md").read_text()
    for name in NAMES:
        assert f"]({name}.md)" in index

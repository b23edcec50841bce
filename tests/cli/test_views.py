"""The show/text views and JSONL rows for every `Op` and extras key (toy objectives in fakes.py),
whatever the registry holds today."""

from __future__ import annotations

import io
import re
from contextlib import redirect_stdout

import pytest

from corruptions import IGNORE, Op, create, list_objectives
from objectives_cli.data.examples import SAMPLE_DOCUMENTS, Example, corrupt_documents
from objectives_cli.data.tokenizer import load_tokenizer, vocab_of
from objectives_cli.render import cells as view_cells
from objectives_cli.render import jsonl, output, views
from objectives_cli.render import text as text_of
from tests.cli.fakes import FAKES
from tests.cli.runner import invoke

TOK = load_tokenizer()
VOCAB = vocab_of(TOK)
PIECES = views.Pieces(TOK, VOCAB)
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def examples(name: str, max_length: int = 128) -> list[Example]:
    return list(corrupt_documents(FAKES[name], TOK, VOCAB, SAMPLE_DOCUMENTS, max_length, 0))


def plain(name: str) -> str:
    return "".join(output.plain_view(views.build(e, PIECES), name) for e in examples(name))


def test_spans_show_their_sentinel_and_what_it_stands_for() -> None:
    example = examples("spans")[0]
    cells = view_cells.input_cells(example, PIECES)
    spans = [c for c in cells if c.kind == "span"]
    assert [c.text for c in spans] == ["<extra_id_0>", "<extra_id_1>"]
    assert spans[0].hidden == text_of.Source(example, PIECES).words(2, 4)
    assert "<extra_id_0>⟦" in plain("spans")


def test_every_token_level_op_has_its_marker() -> None:
    text = plain("mixed")
    for marker in ("[MASK]", "«", "⟨", "~~", "⌈", "++"):
        assert marker in text, marker
    assert "~~x~~ deleted" in text
    assert "++x++ inserted" in text


def test_deleted_tokens_appear_where_they_were_and_nowhere_in_the_input() -> None:
    example = examples("mixed")[0]
    cells = view_cells.input_cells(example, PIECES)
    deleted = [c for c in cells if c.kind == "delete"]
    assert len(deleted) == sum(op == 4 for op in example.ops)  # Op.DELETE
    kept = [c for c in cells if c.kind != "delete"]
    assert len(kept) == len(example.input_ids)  # every input token shown once, in order


def test_moved_tokens_are_marked_and_keep_the_input_order() -> None:
    example = examples("rotate")[0]
    cells = view_cells.input_cells(example, PIECES)
    assert {c.kind for c in cells} == {"moved"}
    assert len(cells) == len(example.input_ids)
    inputs = [line for line in plain("rotate").splitlines() if line.startswith("input")]
    assert len(inputs) == len(SAMPLE_DOCUMENTS)
    assert all(line.startswith("input      ↷") for line in inputs)


def test_sentence_level_extras_are_explained() -> None:
    text = plain("segments")
    for label in (
        "paradigm",
        "segment A",
        "segment B",
        "NSP label",
        "SOP label",
        "mode",
        "order",
        "boundaries",
        "custom",
    ):
        assert re.search(rf"^{label}\s", text, re.MULTILINE), label
    assert "extra      a_long_custom_key: [1, 2, -1" in text  # long keys go under "extra"
    assert "1 (B is a random segment)" in text
    assert "seq2seq" in text


def test_a_mask_or_random_token_at_the_head_of_a_span_stands_for_the_whole_span() -> None:
    example = examples("infill")[0]
    cells = [c for c in view_cells.input_cells(example, PIECES) if c.hidden]
    assert [c.kind for c in cells] == ["mask", "random"]
    assert cells[0].text == "[MASK]"
    source = text_of.Source(example, PIECES)
    assert cells[0].hidden == source.words(1, 4)
    assert cells[1].hidden == source.words(6, 8)
    assert "legend     [MASK] masked · «x» random token · S⟦x⟧ span" in plain("infill")


def test_language_modelling_target_is_summarised() -> None:
    assert "every input token" in plain("causal")


@pytest.mark.parametrize("name", sorted(FAKES))
def test_views_fit_80_columns_plain_and_rich(name: str) -> None:
    assert max(len(line) for line in plain(name).splitlines()) <= 80
    buffer = io.StringIO()
    with redirect_stdout(buffer):
        output.print_views((views.build(e, PIECES) for e in examples(name)), name, rich=True)
    assert max(len(ANSI.sub("", line).rstrip()) for line in buffer.getvalue().splitlines()) <= 80


@pytest.mark.parametrize("name", sorted(FAKES))
def test_rows_are_trimmed(name: str) -> None:
    for example in examples(name, max_length=16):
        row = jsonl.jsonl_row(example, name, {}, 0, TOK)
        assert VOCAB.pad not in row["input_ids"]
        assert len(row["ops"]) == len(row["source_ids"]) <= 16
        if "decoder_input_ids" in row:
            assert row["labels"]
            assert IGNORE not in row["labels"]
            assert len(row["decoder_input_ids"]) == len(row["labels"])
        else:
            assert len(row["labels"]) == len(row["input_ids"])
        for value in row["extras"].values():
            assert isinstance(value, int) or len(value) == len(row["input_ids"])


def test_a_random_token_is_shown_where_its_source_token_stood() -> None:
    """NSP: A's one token became a random one and "." was cut from A to fit; B comes from the
    other document, so it is inserted text, and the cut "." shows where it stood, against the
    random token that stands where "One" stood."""
    result = invoke("corrupt", "-o", "nsp", "-f", "text", "-", stdin="One.\r\n\r\nTwo.\r\n")
    assert result.code == 0
    first = result.stdout.split("── nsp · example 1")[0]
    line = next(ln for ln in first.splitlines() if ln.startswith("input"))
    cells = line.split()[1:]
    assert cells[0] == "[CLS]"
    assert cells[1].startswith("«")  # the random token, where "One" stood
    assert cells[1].endswith("»~~.~~")
    assert cells[2:] == ["[SEP]", "++Two++", "[SEP]"]


NAMES = [o.name for o in list_objectives()]


@pytest.mark.parametrize("name", NAMES)
def test_every_input_token_shows_once_in_its_order(name: str) -> None:
    """The input line holds every input token once, in input order, plus the source tokens the
    input lacks (struck out); only those, as many as the objective left out at most."""
    for example in corrupt_documents(create(name), TOK, VOCAB, SAMPLE_DOCUMENTS, 128, 0):
        cells = view_cells.input_cells(example, PIECES)
        shown = [c for c in cells if c.kind != "delete"]
        assert len(shown) == len(example.input_ids)
        assert example.origin is not None
        absent = len(example.source_ids) - sum(o >= 0 for o in example.origin)
        assert len(cells) - len(shown) <= absent


def test_deleted_tokens_show_where_they_stood() -> None:
    """bart-delete keeps every other token as it is: read in order, the cells are the framed
    source text as written (a deleted last token stands before </s>, not after it)."""
    for example in corrupt_documents(create("bart-delete"), TOK, VOCAB, SAMPLE_DOCUMENTS, 128, 0):
        cells = view_cells.input_cells(example, PIECES)
        assert view_cells.join(cells) == f"[CLS] {example.text} [SEP]"


def test_a_random_token_after_a_permutation_is_marked_random_and_moved_text_moved() -> None:
    """bart (permute + infill), example 0 of the sample text: "After" opens a moved sentence
    and the random token is the one that replaced the "." ending "The dog does not move"."""
    example = next(iter(corrupt_documents(create("bart"), TOK, VOCAB, SAMPLE_DOCUMENTS, 128, 0)))
    cells = view_cells.input_cells(example, PIECES)
    after = next(c for c in cells if c.text == "After")
    assert after.kind == "moved"
    randoms = [c for c in cells if c.kind == "random"]
    assert len(randoms) == 1
    stood_for = [
        example.source_ids[o]
        for o in example.origin or []
        if o >= 0 and example.ops[o] == Op.RANDOM
    ]  # type: ignore[index]
    assert [PIECES.text([t]) for t in stood_for] == ["."]

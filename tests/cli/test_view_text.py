"""The show view reads as the text was written, whatever the tokenizer (#11 items 13 and 21):
source tokens show the characters they were cut from (the tokenizer's offsets), so no `##`, `Ġ`
or `▁`, no character split into bytes, no `oil - based`; the original line is the user's text;
a word piece listed apart says that its word goes on; extras are explained, not dumped."""

from __future__ import annotations

import functools
import re

import pytest
from tokenizers import Tokenizer

from corruptions import IGNORE, Op, Vocab, create, list_objectives
from objectives_cli.data.examples import SAMPLE_DOCUMENTS, Example, corrupt_documents
from objectives_cli.data.tokenizer import load_tokenizer, train_tokenizer, vocab_of
from objectives_cli.render import output, views
from tests.cli.fakes import FAKES, Row, batched
from tests.cli.runner import invoke

NAMES = [o.name for o in list_objectives()]
DEFAULT = load_tokenizer()
# Non-ASCII text: characters byte-level BPE splits into 2-3 bytes, an NFKC ligature (ﬁ), CJK.
TEXT = (
    "Café au lait in Zürich costs 3€. The naïve ﬁrst owner of 東京 crème brûlée was happy, Ωmega."
)
CORPUS = (
    *(
        "Café au lait in Zürich costs 3€ and the naïve owner smiles.",
        "The ﬁrst crème brûlée of 東京 was happy, and the café was happy too.",
        "An owner of a café in Zürich drinks café au lait; a naïve owner drinks tea.",
        "Costs rise: 3€ for crème, 4€ for brûlée, and 東京 prices are higher still.",
    )
    * 8,
    "Ωmega, once: too rare for BPE to merge its two bytes, known to Unigram.",
)
MARKS = ("##", "Ġ", "▁", "\ufffd")  # tokenizer marks, and what a lone byte decodes to


@functools.cache
def trained(kind: str) -> Tokenizer:
    """A tokenizer of `kind` trained here on a small corpus that holds TEXT's characters."""
    return DEFAULT if kind == "default" else train_tokenizer(CORPUS, kind, 500)


def view_text(tok: Tokenizer, corruption: object, documents: list[str], name: str) -> str:
    vocab, pieces = vocab_of(tok), views.Pieces(tok, vocab_of(tok))
    examples = corrupt_documents(corruption, tok, vocab, documents, 128, 0)  # type: ignore[arg-type]
    return "".join(output.plain_view(views.build(e, pieces), name) for e in examples)


@pytest.mark.parametrize("kind", ["bpe", "unigram"])
def test_non_ascii_text_reads_as_written(kind: str) -> None:
    """Kept tokens read as the text: `Café`, not `Caf��` (BPE splits é into two bytes) nor the
    NFKC form `first` of `ﬁrst` (Unigram); the original line is the text itself."""
    tok = trained(kind)
    if kind == "bpe":
        assert len(tok.encode("Ω", add_special_tokens=False).ids) == 3  # `Ġ` and two bytes
    vocab, pieces = vocab_of(tok), views.Pieces(tok, vocab_of(tok))
    (example,) = corrupt_documents(FAKES["causal"], tok, vocab, [TEXT], 128, 0)
    view = views.build(example, pieces)
    assert view.original == TEXT
    assert views.join(view.input) == TEXT
    assert [c.kind for c in view.input] == ["predict"] * len(example.input_ids)


@pytest.mark.parametrize("kind", ["default", "bpe", "unigram"])
@pytest.mark.parametrize("name", NAMES)
def test_no_line_shows_tokenizer_marks_or_broken_characters(kind: str, name: str) -> None:
    """Every objective, every tokenizer kind: no `##`, `Ġ`, `▁` or `�` on any line, and the
    original line is the text as written (CJK included, where WordPiece has only [UNK])."""
    tok = trained(kind)
    shown = view_text(tok, create(name), [TEXT, *SAMPLE_DOCUMENTS], name)
    for mark in MARKS:
        assert mark not in shown, (mark, shown)
    originals = [
        views.build(e, views.Pieces(tok, vocab_of(tok))).original
        for e in corrupt_documents(create(name), tok, vocab_of(tok), [TEXT], 128, 0)
    ]
    assert " ".join(originals) == TEXT  # blocks split the text between them, never change it


def test_cjk_with_the_default_tokenizer_shows_the_text_and_the_unknown_tokens() -> None:
    """The default WordPiece knows no CJK: the original line still shows the characters (it
    showed `[UNK]`, and `oil - based`); the input line shows the [UNK] the model reads."""
    text = "我们在東京喝咖啡。 The oil-based paint dried."
    result = invoke("corrupt", "-o", "bert-mlm", "-f", "text", "-", stdin=text + "\n")
    assert result.code == 0, result.stderr
    assert f"original   {text}\n" in result.stdout
    line = next(ln for ln in result.stdout.splitlines() if ln.startswith("input"))
    assert "[UNK][UNK]" in line  # one per character, written against each other


def mask_pieces(which: str) -> object:
    """A corruption that masks the first (or last) piece of every word of several pieces."""

    def per_row(row: list[int], vocab: Vocab, draw: int) -> Row:
        continues = [DEFAULT.id_to_token(t).startswith("##") for t in row] + [False]
        chosen = [
            (not continues[i] and continues[i + 1])
            if which == "first"
            else (continues[i] and not continues[i + 1])
            for i in range(len(row))
        ]
        inputs = [vocab.mask if c else t for t, c in zip(row, chosen, strict=True)]
        labels = [t if c else IGNORE for t, c in zip(row, chosen, strict=True)]
        ops = [int(Op.MASK if c else Op.KEEP) for c in chosen]
        origin = [-1, *range(len(row)), -1]
        return [vocab.bos, *inputs, vocab.eos], [IGNORE, *labels, IGNORE], None, ops, {}, origin

    return batched(per_row)


@pytest.mark.parametrize(
    ("which", "masked", "listed"), [("first", "[MASK]y", "happ…"), ("last", "happ[MASK]", "…y")]
)
def test_a_masked_word_piece_stays_in_its_word_and_the_target_says_it_was_cut(
    which: str, masked: str, listed: str
) -> None:
    """`happy` is `happ ##y`: masking `happ` shows `[MASK]y there.` (not `[MASK]y there .`), and
    the target lists `happ…`, not a word `happ` (nor `##y` for the other piece)."""
    example = next(
        iter(
            corrupt_documents(
                mask_pieces(which),  # type: ignore[arg-type]
                DEFAULT,
                vocab_of(DEFAULT),
                ["It was happy there."],
                128,
                0,
            )
        )
    )
    view = views.build(example, views.Pieces(DEFAULT, vocab_of(DEFAULT)))
    assert output.plain_cells(view.input) == f"[CLS] It was {masked} there. [SEP]"
    assert [c.text for c in view.target] == [listed]


def test_every_target_piece_cut_from_its_word_says_so() -> None:
    """Whatever piece is scored alone, the target marks the side where its word goes on."""
    tok, vocab = DEFAULT, vocab_of(DEFAULT)
    pieces = views.Pieces(tok, vocab)
    documents = [*SAMPLE_DOCUMENTS, "The naïve owner in Zürich was happily unhappy."]
    for which, mark in (("first", r"\w…$"), ("last", r"^…\w")):
        examples = corrupt_documents(mask_pieces(which), tok, vocab, documents, 128, 0)  # type: ignore[arg-type]
        cells = [c for e in examples for c in views.build(e, pieces).target]
        assert len(cells) > 3
        assert all(re.search(mark, c.text) for c in cells), (which, cells)


@pytest.mark.parametrize("name", ["bert-mlm", "whole-word", "electra", "spanbert", "xlnet-plm"])
def test_filling_the_targets_into_the_input_gives_the_text_as_written(name: str) -> None:
    """Encoders keep every position: put each scored token's text where its [MASK] or random
    token stands and the input line, framing aside, is the text as written (pieces glued to
    their word, punctuation to the word before it, as in the text)."""
    tok, vocab = DEFAULT, vocab_of(DEFAULT)
    pieces = views.Pieces(tok, vocab)
    documents = [*SAMPLE_DOCUMENTS, "It was happy there, unhappily (or not): oil-based."]
    for example in corrupt_documents(create(name), tok, vocab, documents, 128, 0):
        source = views.Source(example, pieces)
        filled = []
        for at, cell in views.input_layout(example, pieces, source):
            o = example.origin[at] if at >= 0 else -1  # type: ignore[index]
            if cell.kind == "special":
                continue
            if example.labels[at] != IGNORE and o >= 0:
                cell = views.Cell(source.words(o, o + 1), "keep", cell.glue)
            filled.append(cell)
        assert views.join(filled) == example.text


def mass_examples() -> list[Example]:
    return list(
        corrupt_documents(create("mass"), DEFAULT, vocab_of(DEFAULT), SAMPLE_DOCUMENTS, 128, 0)
    )


def test_mass_says_which_input_positions_the_fragment_takes() -> None:
    """MASS's `decoder_position_ids` (one before each fragment position) were a raw list; the
    view names the fragment's input positions, which are exactly the corrupted ones."""
    pieces = views.Pieces(DEFAULT, vocab_of(DEFAULT))
    for example in mass_examples():
        lines = dict(views.build(example, pieces).extras)
        assert "decoder_position_ids" not in str(lines)
        positions = lines["positions"]
        assert origin_ranges(example) in positions
        target = [t for t in example.labels if t != IGNORE]
        named = re.search(r"input positions (\S+)", positions)
        assert named is not None
        assert count(named.group(1)) == len(target)


def origin_ranges(example: Example) -> str:
    """The input positions whose source token MASS corrupted (the fragment), as ranges; the
    closing [SEP] is the fragment's last when the fragment reaches the end."""
    assert example.origin is not None
    assert example.ops is not None
    changed = [j for j, o in enumerate(example.origin) if o >= 0 and example.ops[o] != Op.KEEP]
    last = len(example.input_ids) - 1
    if example.input_ids[last] != DEFAULT.token_to_id("[SEP]"):
        changed.append(last)  # the closing </s> was masked or replaced
    return f"input positions {views.ranges(changed)} "


def count(ranges: str) -> int:
    total = 0
    for part in ranges.split(","):
        first, _, last = part.strip().partition("–")
        total += int(last or first) - int(first) + 1
    return total


@pytest.mark.parametrize("name", NAMES)
def test_no_extras_line_is_a_raw_list(name: str) -> None:
    """Every objective's extra lines say what they mean; none prints a list of numbers."""
    pieces = views.Pieces(DEFAULT, vocab_of(DEFAULT))
    for example in corrupt_documents(
        create(name), DEFAULT, vocab_of(DEFAULT), SAMPLE_DOCUMENTS, 128, 0
    ):
        for label, text in views.build(example, pieces).extras:
            assert not re.search(r"\[-?\d+, -?\d+", text), (label, text)

"""What `corrupt --show` says about one example, before any formatting (that is output.py's).

The input line is the model's input in its own order, each token marked with what happened to
the source token it came from: the objective says which one (`Corrupted.origin`, one source
position per input token) and what happened to it (`Corrupted.ops`). A token that stands for a
collapsed span shows the span's text; source tokens the input lacks are shown where they were;
input tokens of no source token are framing ([CLS], </s>, paradigm tokens) or inserted.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import tokenizers

from corruptions import IGNORE, Op, Vocab, create
from objectives_cli.data.examples import SAMPLE_DOCUMENTS, Example, corrupt_documents

KIND_OF_OP = {
    Op.KEEP: "keep",
    Op.MASK: "mask",
    Op.RANDOM: "random",
    Op.PREDICT: "predict",
    Op.DELETE: "delete",
    Op.SPAN: "span",
    Op.MOVED: "moved",
    Op.CONTEXT: "context",
}
KINDS = ("mask", "random", "predict", "delete", "span", "moved", "context", "inserted", "special")
CHANGED = {int(op) for op in Op} - {int(Op.KEEP), int(Op.CONTEXT)}  # what counts as corrupted
ATTENTION_MODES = {0: "bidirectional", 1: "left-to-right", 2: "right-to-left", 3: "seq2seq"}
LABEL_MAX = 10  # a longer extras key does not fit the label column; it goes under "extra"


@dataclass(frozen=True)
class Cell:
    """One token as shown: its text, what happened to it, and whether it continues a word."""

    text: str
    kind: str  # "keep" or one of KINDS
    glue: bool = False  # no space before it (a word piece that continues a word)
    hidden: str = ""  # a token that stands for a span: the source text of that span


@dataclass(frozen=True)
class View:
    """Everything the show/text views print for one example."""

    index: int
    original: str
    input: list[Cell]
    target: list[Cell]  # seq2seq: the decoder target; else the scored tokens, in order
    target_note: str  # said instead of listing the target when that adds nothing
    extras: list[tuple[str, str]]  # (label, text) lines: segments, labels, order, boundaries
    summary: str
    kinds: list[str] = field(default_factory=list)  # the kinds that occur, for the legend


class Pieces:
    """Display text of token ids for any of the project's tokenizer kinds (cached per id).

    WordPiece marks a piece that continues a word (`##ing`); byte-level BPE (`Ġ`) and Unigram
    (`▁`) mark the piece that starts one. Specials are shown as their token string.
    """

    def __init__(self, tok: tokenizers.Tokenizer, vocab: Vocab) -> None:
        self.tok, self.vocab = tok, vocab
        self.prefix = getattr(tok.model, "continuing_subword_prefix", None) or ""
        marks = {piece[:1] for piece in tok.get_vocab()}
        self.start_mark = "Ġ" if "Ġ" in marks else "▁" if "▁" in marks else ""
        assert vocab.special is not None
        self._special = set(vocab.special.nonzero().flatten().tolist())
        self._cache: dict[int, tuple[str, bool]] = {}

    def special(self, token_id: int) -> bool:
        return token_id in self._special

    def piece(self, token_id: int) -> tuple[str, bool]:
        """(text, continues the previous word)."""
        if token_id not in self._cache:
            self._cache[token_id] = self._piece(token_id)
        return self._cache[token_id]

    def _piece(self, token_id: int) -> tuple[str, bool]:
        raw = self.tok.id_to_token(token_id)
        if raw is None:
            return f"<{token_id}>", False
        if self.special(token_id):
            return raw, False
        if self.prefix and raw.startswith(self.prefix) and len(raw) > len(self.prefix):
            return raw[len(self.prefix) :], True
        if self.start_mark:  # a lone `Ġ`/`▁` opens a word and shows nothing in running text
            text = self.tok.decode([token_id]).strip()
            return (
                text or ("" if raw == self.start_mark else raw),
                not raw.startswith(self.start_mark),
            )
        return raw, False

    def standalone(self, token_id: int) -> str:
        """The text of a token out of context: a continuing WordPiece keeps its `##`, a lone
        word-start marker shows itself."""
        text, glue = self.piece(token_id)
        if not text:
            return self.tok.id_to_token(token_id) or ""
        return self.prefix + text if glue and self.prefix else text

    def cells(self, ids: Sequence[int], kind: str = "keep") -> list[Cell]:
        """Plain cells for `ids`; specials get kind "special"."""
        out: list[Cell] = []
        for token_id in ids:
            text, glue = self.piece(token_id)
            if self.special(token_id):
                out.append(Cell(text, "special"))
            elif glue and out and out[-1].kind != "special":
                out.append(Cell(text, kind, True))
            else:  # a word piece with nothing to continue keeps its marker
                out.append(Cell(self.standalone(token_id), kind))
        return out

    def text(self, ids: Sequence[int]) -> str:
        """`ids` as words: pieces glued into words, specials kept."""
        return join(self.cells(ids))


def join(cells: Sequence[Cell]) -> str:
    """Cells as text without markers."""
    return "".join(("" if c.glue or i == 0 else " ") + c.text for i, c in enumerate(cells))


SPAN_HEADS = (Op.SPAN, Op.MASK, Op.RANDOM)  # ops of a token that may stand for a span after it


def input_cells(example: Example, pieces: Pieces) -> list[Cell]:
    """The input in its own order, each token marked by the op of its source token; source
    tokens the input lacks appear after the source token before them (before the first one)."""
    source, inputs, ops, origin = example.source_ids, example.input_ids, example.ops, example.origin
    if ops is None or origin is None:
        return pieces.cells(inputs)
    present = [False] * len(source)
    for o in origin:
        if o >= 0:
            present[o] = True
    stop = {o: span_end(o, ops, present) for o in origin if o >= 0}  # what each token stands for
    missing = [p for p in range(len(source)) if not present[p]]
    first = min(stop, default=len(source))  # the missing tokens before it go before its token
    cells = []
    for token, o in zip(inputs, origin, strict=True):
        if o == first:
            cells += deleted(source, [p for p in missing if p < first], pieces)
        if o < 0:
            special = pieces.special(token)
            text = pieces.piece(token)[0] if special else pieces.standalone(token)
            cells.append(Cell(text, "special" if special else "inserted"))
            continue
        cells.append(present_cell(pieces, source, token, ops[o], o, stop[o]))
        after = next((p for p in range(stop[o], len(source)) if present[p]), len(source))
        cells += deleted(source, range(stop[o], after), pieces)
    if not stop:  # nothing of the source is in the input
        cells += deleted(source, missing, pieces)
    return cells


def span_end(o: int, ops: Sequence[int], present: Sequence[bool]) -> int:
    """End (exclusive) of the source a token from position `o` stands for: with it, the absent
    SPAN tokens right after it when it heads a span (a sentinel, or BART's <mask> or random
    token)."""
    stop = o + 1
    if ops[o] in SPAN_HEADS:
        while stop < len(ops) and not present[stop] and ops[stop] == Op.SPAN:
            stop += 1
    return stop


def present_cell(
    pieces: Pieces, source: Sequence[int], token: int, op: int, o: int, stop: int
) -> Cell:
    """An input token from source position `o`, marked by its op; it stands where that token
    stood, so it is glued as that one was."""
    kind = KIND_OF_OP.get(op, "keep")
    text = pieces.piece(token)[0]
    if token != source[o] or (not text and kind != "keep"):
        text = pieces.standalone(token)
    hidden = pieces.text(source[o:stop]) if op == Op.SPAN or stop - o > 1 else ""
    return Cell(text, kind, pieces.piece(source[o])[1], hidden)


def deleted(source: Sequence[int], where: Iterable[int], pieces: Pieces) -> list[Cell]:
    """Cells for the source tokens at `where`, which the input lacks."""
    cells = []
    for p in where:
        text, glue = pieces.piece(source[p])
        cells.append(Cell(text if glue else pieces.standalone(source[p]), "delete", glue))
    return cells


def target(example: Example, pieces: Pieces) -> tuple[list[Cell], str]:
    """The target cells and, where listing them adds nothing, a note instead."""
    if example.seq2seq:
        return pieces.cells([t for t in example.labels if t != IGNORE]), ""
    scored = [j for j, t in enumerate(example.labels) if t != IGNORE]
    if not scored:
        return [], "none"
    labels, inputs = example.labels, example.input_ids
    ordinary = sum(not pieces.special(x) for x in inputs)
    if all(labels[j] == inputs[j] for j in scored) and len(scored) >= ordinary:
        return [], f"every input token ({len(scored)}), each predicted from the ones before"
    cells = []
    for k, j in enumerate(scored):  # a piece is glued only to the scored piece right before it
        text, glue = pieces.piece(labels[j])
        if glue and k and scored[k - 1] == j - 1:
            cells.append(Cell(text, "keep", True))
        else:
            cells.append(Cell(pieces.standalone(labels[j]), "keep"))
    return cells, ""


def extra_lines(example: Example, pieces: Pieces) -> list[tuple[str, str]]:
    """Objective-specific structure: segments, sentence labels, modes, orders, boundaries."""
    x, inputs, lines = example.extras, example.input_ids, []
    names = {v: k for k, v in pieces.vocab.extra.items()}
    paradigm = [names[t] for t in inputs if t in names]
    if paradigm:
        lines.append(("paradigm", " ".join(paradigm)))
    if "token_type_ids" in x:
        for segment, label in ((0, "segment A"), (1, "segment B")):
            ids = [t for t, s in zip(inputs, x["token_type_ids"], strict=True) if s == segment]
            lines.append((label, pieces.text(ids) if ids else "(empty)"))
    if "next_sentence_label" in x:
        meaning = "B is a random segment" if x["next_sentence_label"] == 1 else "B follows A"
        lines.append(("NSP label", f"{x['next_sentence_label']} ({meaning})"))
    if "sentence_order_label" in x:
        meaning = "segments swapped" if x["sentence_order_label"] == 1 else "original order"
        lines.append(("SOP label", f"{x['sentence_order_label']} ({meaning})"))
    if "attention_mode" in x:
        lines.append(("mode", ATTENTION_MODES.get(x["attention_mode"], str(x["attention_mode"]))))
    if "prefix_lengths" in x and x.get("attention_mode", 3) == 3:  # other modes say it all
        n = x["prefix_lengths"]
        lines.append(
            (
                "prefix",
                "none: every input token attends causally"
                if n <= 0
                else "all input tokens see each other"
                if n >= len(inputs)
                else f"the first {n} input tokens see each other; the rest attend causally",
            )
        )
    if "perm_rank" in x:
        lines.append(("order", factorisation_order(example, pieces)))
    if "span_offset" in x and "span_left" in x and "span_right" in x:
        lines.append(("boundaries", boundaries(example, pieces)))
    shown = {
        "token_type_ids",
        "next_sentence_label",
        "sentence_order_label",
        "attention_mode",
        "prefix_lengths",
        "perm_rank",
        "span_left",
        "span_right",
        "span_offset",
    }
    for key in sorted(set(x) - shown):  # the objective's own keys, as they are
        text = str(x[key])
        text = text if len(text) <= 200 else text[:199] + "…"
        lines.append((key, text) if len(key) < LABEL_MAX else ("extra", f"{key}: {text}"))
    return lines


def factorisation_order(example: Example, pieces: Pieces) -> str:
    """XLNet: the predicted tokens in the order the permutation predicts them."""
    ranks = example.extras["perm_rank"]
    scored = [j for j, t in enumerate(example.labels) if t != IGNORE] or list(range(len(ranks)))
    order = sorted(scored, key=lambda j: ranks[j])
    return " → ".join(
        pieces.standalone(
            example.labels[j] if example.labels[j] != IGNORE else example.input_ids[j]
        )
        for j in order
    )


def boundaries(example: Example, pieces: Pieces) -> str:
    """SpanBERT: each span's tokens between the two boundary tokens its SBO targets read."""
    x, spans = example.extras, {}
    for j, offset in enumerate(x["span_offset"]):
        if offset >= 0 and x["span_left"][j] >= 0:
            spans.setdefault((x["span_left"][j], x["span_right"][j]), []).append(j)
    parts = []
    for (left, right), members in spans.items():
        inner = pieces.text(
            [
                example.labels[j] if example.labels[j] != IGNORE else example.input_ids[j]
                for j in members
            ]
        )
        outer = (pieces.piece(example.input_ids[k])[0] for k in (left, right))
        parts.append(f"{next(outer)} [{inner}] {next(outer)}")
    return "; ".join(parts) or "none"


def summary(example: Example) -> str:
    ops = example.ops or []
    n_changed = sum(op in CHANGED for op in ops)
    n_spans = sum(
        op in CHANGED and (i == 0 or ops[i - 1] not in CHANGED) for i, op in enumerate(ops)
    )
    n = len(example.source_ids)
    share = f"{100 * n_changed / n:.1f}%" if n else "0.0%"
    scored = sum(t != IGNORE for t in example.labels)
    tail = (
        f"input {len(example.input_ids)} · target {scored}"
        if example.seq2seq
        else f"input {len(example.input_ids)} · {scored} scored"
    )
    spans = "span" if n_spans == 1 else "spans"
    return f"{n} tokens · {n_changed} corrupted ({share}) · {n_spans} {spans} · {tail}"


def build(example: Example, pieces: Pieces) -> View:
    """The view of one example."""
    cells = input_cells(example, pieces)
    target_cells, note = target(example, pieces)
    present = {c.kind for c in cells} | {c.kind for c in target_cells}
    present |= {"span" for c in cells if c.hidden}
    return View(
        index=example.index,
        original=pieces.tok.decode(example.source_ids, skip_special_tokens=False),
        input=cells,
        target=target_cells,
        target_note=note,
        extras=extra_lines(example, pieces),
        summary=summary(example),
        kinds=[k for k in KINDS if k in present],
    )


def sample(name: str, tok: tokenizers.Tokenizer, vocab: Vocab) -> list[View]:
    """The views of `name` with its defaults on the fixed sample text, seed 0, max length 128:
    what `describe` and the generated docs show (and `corrupt --format text -` prints for
    that text)."""
    pieces = Pieces(tok, vocab)
    examples = corrupt_documents(create(name), tok, vocab, SAMPLE_DOCUMENTS, 128, seed=0)
    return [build(example, pieces) for example in examples]

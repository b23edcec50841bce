"""What `corrupt --show` says about one example, before any formatting (that is output.py's).

The input line is the model's input in its own order, each token marked with what happened to
the source token it came from: the objective says which one (`Corrupted.origin`, one source
position per input token) and what happened to it (`Corrupted.ops`). A token that stands for a
collapsed span shows the span's text; source tokens the input lacks are shown where they were;
input tokens of no source token are framing ([CLS], </s>, paradigm tokens) or inserted.

Every line reads as the text was written, whatever the tokenizer (text.py): source tokens as
the characters they were cut from, other tokens as the tokenizer writes them, marks dropped.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import tokenizers

from corruptions import IGNORE, Op, Vocab, create
from objectives_cli.data.examples import SAMPLE_DOCUMENTS, Example, corrupt_documents

from .text import CUT, SPACE, Pieces, Source, join_texts, one_line

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
    """One token as shown: its text, what happened to it, and whether it is written against the
    text before it."""

    text: str
    kind: str  # "keep" or one of KINDS
    glue: bool = False  # no space before it: the next piece of a word, or punctuation
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


def join(cells: Sequence[Cell]) -> str:
    """Cells as text without markers."""
    return join_texts((c.text, c.glue) for c in cells)


@dataclass(frozen=True)
class Slot:
    """A token of the input line before it gets its text."""

    kind: str
    o: int  # source position, -1: none
    token: int | None  # the input token; None: a source token the input lacks
    stop: int = -1  # end (exclusive) of the source it stands for (several for a span head)
    at: int = -1  # input position, -1 for a source token the input lacks


SPAN_HEADS = (Op.SPAN, Op.MASK, Op.RANDOM)  # ops of a token that may stand for a span after it


def input_cells(example: Example, pieces: Pieces) -> list[Cell]:
    """The input in its own order, each token marked by the op of its source token; source
    tokens the input lacks appear after the source token before them (before the first one)."""
    return [cell for _, cell in input_layout(example, pieces, Source(example, pieces))]


def input_layout(example: Example, pieces: Pieces, source: Source) -> list[tuple[int, Cell]]:
    """`input_cells` with the input position of each cell (-1 for a source token the input
    lacks)."""
    slots = input_slots(example, pieces)
    return list(zip((s.at for s in slots), cells_of(slots, example, pieces, source), strict=True))


def input_slots(example: Example, pieces: Pieces) -> list[Slot]:
    """The input line's tokens in order with what they stand for (`input_cells`); without the
    objective's `ops` and `origin`, the input as it is."""
    source, inputs, ops, origin = example.source_ids, example.input_ids, example.ops, example.origin
    if ops is None or origin is None:
        return [
            Slot("special" if pieces.special(t) else "keep", -1, t, at=j)
            for j, t in enumerate(inputs)
        ]
    present = [False] * len(source)
    for o in origin:
        if o >= 0:
            present[o] = True
    stop = {o: span_end(o, ops, present) for o in origin if o >= 0}  # what each token stands for
    missing = [p for p in range(len(source)) if not present[p]]
    first = min(stop, default=len(source))  # the missing tokens before it go before its token
    slots = []
    for at, (token, o) in enumerate(zip(inputs, origin, strict=True)):
        if o == first:
            slots += deleted([p for p in missing if p < first])
        if o < 0:
            slots.append(Slot("special" if pieces.special(token) else "inserted", -1, token, at=at))
            continue
        slots.append(Slot(KIND_OF_OP.get(ops[o], "keep"), o, token, stop[o], at))
        after = next((p for p in range(stop[o], len(source)) if present[p]), len(source))
        slots += deleted(range(stop[o], after))
    if not stop:  # nothing of the source is in the input
        slots += deleted(missing)
    return slots


def span_end(o: int, ops: Sequence[int], present: Sequence[bool]) -> int:
    """End (exclusive) of the source a token from position `o` stands for: with it, the absent
    SPAN tokens right after it when it heads a span (a sentinel, or BART's <mask> or random
    token)."""
    stop = o + 1
    if ops[o] in SPAN_HEADS:
        while stop < len(ops) and not present[stop] and ops[stop] == Op.SPAN:
            stop += 1
    return stop


def deleted(where: Iterable[int]) -> list[Slot]:
    """Slots for the source tokens at `where`, which the input lacks."""
    return [Slot("delete", p, None, p + 1) for p in where]


def cells_of(slots: Sequence[Slot], example: Example, pieces: Pieces, source: Source) -> list[Cell]:
    """The cells of the input line: source tokens as their text, the others as their tokens."""
    ops = example.ops or []
    cells: list[Cell] = []
    i = 0
    while i < len(slots):
        slot = slots[i]
        if shows_source(slot, example, pieces):  # a run of one kind, source token after token
            j = i + 1
            while (
                j < len(slots)
                and slots[j].kind == slot.kind
                and slots[j].o == slots[j - 1].o + 1
                and shows_source(slots[j], example, pieces)
            ):
                j += 1
            space = "" if slot.kind == "keep" else SPACE
            for k, (text, _) in enumerate(source.pieces_of(slot.o, slots[j - 1].o + 1, space)):
                cells.append(Cell(text, slot.kind, glued(slots, i + k, source)))
        elif slot.o < 0 and slot.kind != "special":
            # text of no source token (inserted, or no `origin`): as the tokenizer writes it
            j = i + 1
            while j < len(slots) and slots[j].o < 0 and slots[j].kind == slot.kind:
                j += 1
            run = [s.token for s in slots[i:j] if s.token is not None]
            cells += (
                Cell(text, slot.kind, glue and k > 0)
                for k, (text, glue) in enumerate(pieces.texts(run))
            )
        else:  # a mask, a random token, a sentinel, framing
            assert slot.token is not None
            j = i + 1
            text = pieces.texts([slot.token], SPACE)[0][0]
            heads_span = slot.o >= 0 and (ops[slot.o] == Op.SPAN or slot.stop - slot.o > 1)
            hidden = source.words(slot.o, slot.stop, SPACE) if heads_span else ""
            cells.append(Cell(text, slot.kind, glued(slots, i, source), hidden))
        i = j
    return cells


def shows_source(slot: Slot, example: Example, pieces: Pieces) -> bool:
    """The slot reads as its source text: a deleted source token, or the input holds the source
    token itself (kept, predicted, moved, context), a special ([UNK]) excepted."""
    if slot.o < 0:
        return False
    if slot.token is None:
        return True
    return slot.token == example.source_ids[slot.o] and not pieces.special(slot.token)


def glued(slots: Sequence[Slot], i: int, source: Source) -> bool:
    """A source position's token is written against the cell before when that one stands for
    the source right before it, with no space between them in the text."""
    slot = slots[i]
    if slot.o < 0 or i == 0:
        return False
    before = slots[i - 1]
    return before.o >= 0 and before.stop == slot.o and source.glued[slot.o]


def target(
    example: Example, pieces: Pieces, source: Source | None = None
) -> tuple[list[Cell], str]:
    """The target cells and, where listing them adds nothing, a note instead."""
    source = source or Source(example, pieces)
    if example.seq2seq:
        tokens = seq2seq_target(example)
        return [
            Cell(text, "special" if pieces.special(t) else "keep", glue)
            for t, (text, glue) in zip(tokens, pieces.texts(tokens, SPACE), strict=True)
        ], ""
    scored = [j for j, t in enumerate(example.labels) if t != IGNORE]
    if not scored:
        return [], "none"
    labels, inputs = example.labels, example.input_ids
    ordinary = sum(not pieces.special(x) for x in inputs)
    if all(labels[j] == inputs[j] for j in scored) and len(scored) >= ordinary:
        return [], f"every input token ({len(scored)}), each predicted from the ones before"
    return listed(example, pieces, source, scored, labels), ""


def seq2seq_target(example: Example) -> list[int]:
    """The decoder's target from its first scored token: a token it does not score inside it
    (a special in the text, such as [UNK]) is the one the decoder reads next."""
    labels, reads = example.labels, example.decoder_input_ids or []
    scored = [t for t, label in enumerate(labels) if label != IGNORE]
    if not scored:
        return []
    return [
        label if label != IGNORE else reads[t + 1]
        for t, label in enumerate(labels[scored[0] :], scored[0])
        if label != IGNORE or t + 1 < len(reads)
    ]


def listed(
    example: Example, pieces: Pieces, source: Source, where: Sequence[int], ids: Sequence[int]
) -> list[Cell]:
    """The tokens ids[j] for j in `where` (input positions), listed apart from the input: the
    tokens of consecutive source positions as their text, glued as written, with CUT where the
    list leaves a word's other pieces out; other tokens as the tokenizer writes them."""
    origin = example.origin or [-1] * len(example.input_ids)

    def source_of(j: int) -> int:
        o = origin[j]
        return o if o >= 0 and ids[j] == source.ids[o] and not pieces.special(ids[j]) else -1

    cells: list[Cell] = []
    i = 0
    while i < len(where):
        lo, k = source_of(where[i]), i + 1
        if lo >= 0:
            while k < len(where) and source_of(where[k]) == lo + k - i:
                k += 1
            hi = lo + k - i
            texts, glues = zip(*source.pieces_of(lo, hi, SPACE), strict=True)
            words = list(texts)
            if source.cut_before(lo):
                words[0] = CUT + words[0]
            if source.cut_before(hi):
                last = max((n for n, text in enumerate(words) if text), default=0)
                words[last] += CUT
            cells += (
                Cell(t, "keep", bool(n and g))
                for n, (t, g) in enumerate(zip(words, glues, strict=True))
            )
        else:
            while k < len(where) and source_of(where[k]) < 0 and where[k] == where[k - 1] + 1:
                k += 1
            run = [ids[j] for j in where[i:k]]
            cells += (
                Cell(t, "special" if pieces.special(x) else "keep", bool(n and g))
                for n, (x, (t, g)) in enumerate(zip(run, pieces.texts(run, SPACE), strict=True))
            )
        i = k
    return cells


def extra_lines(
    example: Example,
    pieces: Pieces,
    source: Source | None = None,
    layout: Sequence[tuple[int, Cell]] | None = None,
) -> list[tuple[str, str]]:
    """Objective-specific structure: segments, sentence labels, modes, orders, boundaries,
    positions (`source` and `layout`: as `build` made them, else made here)."""
    x, inputs, lines = example.extras, example.input_ids, []
    source = source or Source(example, pieces)
    if layout is None:
        layout = input_layout(example, pieces, source)
    names = {v: k for k, v in pieces.vocab.extra.items()}
    paradigm = [names[t] for t in inputs if t in names]
    if paradigm:
        lines.append(("paradigm", " ".join(paradigm)))
    if "token_type_ids" in x:
        types = x["token_type_ids"]
        for segment, label in ((0, "segment A"), (1, "segment B")):
            cells = [cell for at, cell in layout if at >= 0 and types[at] == segment]
            lines.append((label, join(cells) if cells else "(empty)"))
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
        lines.append(("order", factorisation_order(example, pieces, source)))
    if "span_offset" in x and "span_left" in x and "span_right" in x:
        lines.append(("boundaries", boundaries(example, pieces, source)))
    if "decoder_position_ids" in x:
        lines.append(("positions", decoder_positions(x["decoder_position_ids"])))
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
        "decoder_position_ids",
    }
    for key in sorted(set(x) - shown):  # the objective's own keys, as they are
        text = str(x[key])
        text = text if len(text) <= 200 else text[:199] + "…"
        lines.append((key, text) if len(key) < LABEL_MAX else ("extra", f"{key}: {text}"))
    return lines


def factorisation_order(example: Example, pieces: Pieces, source: Source) -> str:
    """XLNet: the predicted tokens in the order the permutation predicts them."""
    ranks = example.extras["perm_rank"]
    scored = [j for j, t in enumerate(example.labels) if t != IGNORE] or list(range(len(ranks)))
    ids = [t if t != IGNORE else i for t, i in zip(example.labels, example.input_ids, strict=True)]
    return " → ".join(
        join(listed(example, pieces, source, [j], ids))
        for j in sorted(scored, key=ranks.__getitem__)
    )


def boundaries(example: Example, pieces: Pieces, source: Source) -> str:
    """SpanBERT: each span's tokens between the two boundary tokens its SBO targets read."""
    x, spans = example.extras, {}
    for j, offset in enumerate(x["span_offset"]):
        if offset >= 0 and x["span_left"][j] >= 0:
            spans.setdefault((x["span_left"][j], x["span_right"][j]), []).append(j)
    ids = [t if t != IGNORE else i for t, i in zip(example.labels, example.input_ids, strict=True)]
    parts = []
    for (left, right), members in spans.items():
        inner = join(listed(example, pieces, source, members, ids))
        outer = (
            join(listed(example, pieces, source, [k], example.input_ids)) for k in (left, right)
        )
        parts.append(f"{next(outer)} [{inner}] {next(outer)}")
    return "; ".join(parts) or "none"


def decoder_positions(positions: Sequence[int]) -> str:
    """MASS: the input positions of the fragment the decoder writes back, read off where the
    decoder's tokens sit (`decoder_position_ids`: each one before the token it predicts)."""
    if not positions:
        return "none"
    return (
        f"the target is input positions {ranges([p + 1 for p in positions])} (counting from "
        f"0); each decoder token sits one before (at {ranges(positions)})"
    )


def ranges(numbers: Sequence[int]) -> str:
    """Integers as runs: [3, 4, 5, 9] -> '3–5, 9'."""
    runs: list[list[int]] = []
    for n in numbers:
        if runs and n == runs[-1][1] + 1:
            runs[-1][1] = n
        else:
            runs.append([n, n])
    return ", ".join(str(a) if a == b else f"{a}–{b}" for a, b in runs)


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
    source = Source(example, pieces)
    layout = input_layout(example, pieces, source)
    cells = [cell for _, cell in layout]
    target_cells, note = target(example, pieces, source)
    present = {c.kind for c in cells} | {c.kind for c in target_cells}
    present |= {"span" for c in cells if c.hidden}
    return View(
        index=example.index,
        original=one_line(source.text),
        input=cells,
        target=target_cells,
        target_note=note,
        extras=extra_lines(example, pieces, source, layout),
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

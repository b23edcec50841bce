"""What `corrupt --show` says about one example, before any formatting (that is output.py's):
the input and target lines (cells.py), the objective's own lines and a summary.

Every line reads as the text was written, whatever the tokenizer (text.py): source tokens as
the characters they were cut from, other tokens as the tokenizer writes them, marks dropped.
"""

from __future__ import annotations

from collections.abc import Sequence

import tokenizers

from corruptions import IGNORE, Vocab, create
from objectives_cli.data.examples import SAMPLE_DOCUMENTS, Example, corrupt_documents

from .cells import CHANGED, KINDS, Cell, View, input_layout, join, listed, target
from .text import Pieces, Source, one_line

__all__ = ["Cell", "Pieces", "View", "build", "extra_lines", "sample", "summary"]

ATTENTION_MODES = {0: "bidirectional", 1: "left-to-right", 2: "right-to-left", 3: "seq2seq"}
LABEL_MAX = 10  # a longer extras key does not fit the label column; it goes under "extra"


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

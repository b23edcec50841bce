"""What `corrupt --show` says about one example, before any formatting (that is output.py's).

The input line is the model's input in its own order, each token marked with what happened to
the source token it came from. The link from input tokens to source tokens is not stored by the
objectives (only `ops` per source token), so it is recovered by aligning the source, as the ops
describe it, with the input: an edit-distance alignment whose costs follow from the op codes
(a KEEP token must reappear as itself, a MASK token as [MASK], a SPAN run as one special token,
a DELETE token nowhere, a MOVED token anywhere). Input tokens left over are framing ([CLS],
</s>, paradigm tokens), insertions, or tokens moved out of their place.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import tokenizers

from corruptions import IGNORE, Op, Vocab, create

from .examples import SAMPLE_DOCUMENTS, Example, corrupt_documents

KIND_OF_OP = {Op.KEEP: "keep", Op.MASK: "mask", Op.RANDOM: "random", Op.PREDICT: "predict",
              Op.DELETE: "delete", Op.SPAN: "span", Op.MOVED: "moved", Op.CONTEXT: "context"}
KINDS = ("mask", "random", "predict", "delete", "span", "moved", "context", "inserted", "special")
CHANGED = {int(op) for op in Op} - {int(Op.KEEP), int(Op.CONTEXT)}  # what counts as corrupted
ATTENTION_MODES = {0: "bidirectional", 1: "left-to-right", 2: "right-to-left", 3: "seq2seq"}
INFINITY = float("inf")


@dataclass(frozen=True)
class Cell:
    """One token as shown: its text, what happened to it, and whether it continues a word."""

    text: str
    kind: str  # "keep" or one of KINDS
    glue: bool = False  # no space before it (a word piece that continues a word)
    hidden: str = ""  # span cells: the source text the span token stands for


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
        self._cache: dict[int, tuple[str, bool]] = {}

    def special(self, token_id: int) -> bool:
        assert self.vocab.special is not None
        return 0 <= token_id < self.vocab.size and bool(self.vocab.special[token_id])

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
        if self.start_mark:
            text = self.tok.decode([token_id]).strip() or raw
            return text, not raw.startswith(self.start_mark)
        return raw, False

    def standalone(self, token_id: int) -> str:
        """The text of a token out of context: a continuing WordPiece keeps its `##`."""
        text, glue = self.piece(token_id)
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


def elements(ops: Sequence[int]) -> list[tuple[int, int, int]]:
    """The source as the alignment sees it: (op, start, stop); a SPAN run is one element."""
    out: list[tuple[int, int, int]] = []
    for i, op in enumerate(ops):
        if op == Op.SPAN and out and out[-1][0] == Op.SPAN and out[-1][2] == i:
            out[-1] = (op, out[-1][1], i + 1)
        else:
            out.append((op, i, i + 1))
    return out


class Aligner:
    """Edit-distance alignment of source elements with input tokens, costs from the ops."""

    def __init__(self, pieces: Pieces, source: Sequence[int], inputs: Sequence[int]) -> None:
        self.pieces, self.source, self.inputs = pieces, source, inputs

    def match(self, op: int, start: int, token: int) -> float:
        if op in (Op.KEEP, Op.PREDICT, Op.CONTEXT, Op.MOVED):
            return 0.0 if token == self.source[start] else INFINITY
        if op == Op.MASK:
            return 0.0 if token == self.pieces.vocab.mask else 1.5
        if op == Op.RANDOM:
            return 0.5 if self.pieces.special(token) else 0.0
        if op == Op.SPAN:
            return 0.0 if self.pieces.special(token) else 1.5
        return INFINITY  # DELETE and unknown codes never match

    @staticmethod
    def skip(op: int) -> float:
        return 0.0 if op in (Op.DELETE, Op.MOVED) else 1.0

    def align(self, elems: Sequence[tuple[int, int, int]]) -> list[tuple[int | None, int | None]]:
        """Pairs (element index or None, input index or None) in display order."""
        n, m = len(elems), len(self.inputs)
        cost = [[0.0] * (m + 1) for _ in range(n + 1)]
        for j in range(1, m + 1):
            cost[0][j] = float(j)
        for i in range(1, n + 1):
            op, start, _ = elems[i - 1]
            skip = self.skip(op)
            row, above = cost[i], cost[i - 1]
            row[0] = above[0] + skip
            for j in range(1, m + 1):
                row[j] = min(above[j - 1] + self.match(op, start, self.inputs[j - 1]),
                             above[j] + skip, row[j - 1] + 1.0)
        pairs: list[tuple[int | None, int | None]] = []
        i, j = n, m
        while i or j:
            if i and j:
                op, start, _ = elems[i - 1]
                if cost[i][j] == cost[i - 1][j - 1] + self.match(op, start, self.inputs[j - 1]):
                    pairs.append((i - 1, j - 1))
                    i, j = i - 1, j - 1
                    continue
            if i and cost[i][j] == cost[i - 1][j] + self.skip(elems[i - 1][0]):
                pairs.append((i - 1, None))
                i -= 1
            else:
                pairs.append((None, j - 1))
                j -= 1
        return pairs[::-1]


def input_cells(example: Example, pieces: Pieces) -> list[Cell]:
    """The input in its own order, each token marked by the op of its source token; deleted
    source tokens appear where they were."""
    source, inputs = example.source_ids, example.input_ids
    if example.ops is None:
        return pieces.cells(inputs)
    elems = elements(example.ops)
    any_moved = Op.MOVED in example.ops
    cells = []
    for e, j in Aligner(pieces, source, inputs).align(elems):
        if e is None:  # an input token no source token accounts for
            assert j is not None
            text, glue = pieces.piece(inputs[j])
            if pieces.special(inputs[j]) or any_moved:
                kind = "special" if pieces.special(inputs[j]) else "moved"
                cells.append(Cell(text, kind, glue))
            else:
                cells.append(Cell(pieces.standalone(inputs[j]), "inserted"))
            continue
        op, start, stop = elems[e]
        if j is None:  # a source token that is not in the input
            if op != Op.MOVED:
                for token in source[start:stop]:
                    text, glue = pieces.piece(token)
                    cells.append(Cell(text, "delete", glue))
            continue
        # the token stands where the source token stood, so it is glued as that one was
        glue = pieces.piece(source[start])[1]
        text = pieces.standalone(inputs[j]) if inputs[j] != source[start] else pieces.piece(
            inputs[j])[0]
        hidden = pieces.text(source[start:stop]) if op == Op.SPAN else ""
        cells.append(Cell(text, KIND_OF_OP.get(op, "keep"), glue, hidden))
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
    if "prefix_lengths" in x:
        lines.append(("prefix", f"the first {x['prefix_lengths']} input tokens see each other; "
                                "the rest attend causally"))
    if "perm_rank" in x:
        lines.append(("order", factorisation_order(example, pieces)))
    if "span_offset" in x and "span_left" in x and "span_right" in x:
        lines.append(("boundaries", boundaries(example, pieces)))
    shown = {"token_type_ids", "next_sentence_label", "sentence_order_label", "attention_mode",
             "prefix_lengths", "perm_rank", "span_left", "span_right", "span_offset"}
    for key in sorted(set(x) - shown):
        text = str(x[key])
        lines.append((key, text if len(text) <= 200 else text[:199] + "…"))
    return lines


def factorisation_order(example: Example, pieces: Pieces) -> str:
    """XLNet: the predicted tokens in the order the permutation predicts them."""
    ranks = example.extras["perm_rank"]
    scored = [j for j, t in enumerate(example.labels) if t != IGNORE] or list(range(len(ranks)))
    order = sorted(scored, key=lambda j: ranks[j])
    return " → ".join(pieces.standalone(example.labels[j] if example.labels[j] != IGNORE
                                        else example.input_ids[j]) for j in order)


def boundaries(example: Example, pieces: Pieces) -> str:
    """SpanBERT: each span's tokens between the two boundary tokens its SBO targets read."""
    x, spans = example.extras, {}
    for j, offset in enumerate(x["span_offset"]):
        if offset >= 0 and x["span_left"][j] >= 0:
            spans.setdefault((x["span_left"][j], x["span_right"][j]), []).append(j)
    parts = []
    for (left, right), members in spans.items():
        inner = pieces.text([example.labels[j] if example.labels[j] != IGNORE
                             else example.input_ids[j] for j in members])
        outer = (pieces.piece(example.input_ids[k])[0] for k in (left, right))
        parts.append(f"{next(outer)} [{inner}] {next(outer)}")
    return "; ".join(parts) or "none"


def summary(example: Example) -> str:
    ops = example.ops or []
    n_changed = sum(op in CHANGED for op in ops)
    n_spans = sum(op in CHANGED and (i == 0 or ops[i - 1] not in CHANGED)
                  for i, op in enumerate(ops))
    n = len(example.source_ids)
    share = f"{100 * n_changed / n:.1f}%" if n else "0.0%"
    scored = sum(t != IGNORE for t in example.labels)
    tail = (f"input {len(example.input_ids)} · target {scored}" if example.seq2seq
            else f"input {len(example.input_ids)} · {scored} scored")
    spans = "span" if n_spans == 1 else "spans"
    return f"{n} tokens · {n_changed} corrupted ({share}) · {n_spans} {spans} · {tail}"


def build(example: Example, pieces: Pieces) -> View:
    """The view of one example."""
    cells = input_cells(example, pieces)
    target_cells, note = target(example, pieces)
    present = {c.kind for c in cells} | {c.kind for c in target_cells}
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

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

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

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
INFINITY = float("inf")
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


class Element(NamedTuple):
    """A piece of the source as the alignment sees it: one token, or a span of tokens that
    one input token stands for."""

    op: int
    start: int
    stop: int
    head: int  # the source position whose op this is


HEADS = (Op.MASK, Op.RANDOM)


def elements(ops: Sequence[int]) -> list[Element]:
    """One element per source token, except that a run of SPAN tokens is one element, joined to
    the MASK or RANDOM token right before or after it if there is one (BART marks a span's one
    <mask> that way; T5's sentinels are SPAN runs alone)."""
    out: list[Element] = []
    for i, op in enumerate(ops):
        last = out[-1] if out else None
        if (
            op == Op.SPAN
            and last is not None
            and last.stop == i
            and (last.op == Op.SPAN or (last.op in HEADS and last.head == last.start))
        ):
            out[-1] = last._replace(stop=i + 1)
        elif op in HEADS and last is not None and last.op == Op.SPAN:
            out[-1] = Element(op, last.start, i + 1, i)
        else:
            out.append(Element(op, i, i + 1, i))
    return out


class Aligner:
    """Edit-distance alignment of source elements with input tokens, costs from the ops."""

    def __init__(self, pieces: Pieces, source: Sequence[int]) -> None:
        self.pieces, self.source = pieces, source
        vocab = pieces.vocab
        self.stand_ins = {vocab.mask, *vocab.sentinels}  # what a span collapses into

    def match(self, e: Element, token: int) -> float:
        if e.op in (Op.KEEP, Op.PREDICT, Op.CONTEXT, Op.MOVED):
            return 0.0 if token == self.source[e.head] else INFINITY
        if e.op == Op.MASK:  # never framing: skipping and inserting (2) is cheaper
            return (
                0.0
                if token == self.pieces.vocab.mask
                else (2.5 if self.pieces.special(token) else 1.5)
            )
        if e.op == Op.RANDOM:
            return 0.5 if self.pieces.special(token) else 0.0
        if e.op == Op.SPAN:  # a sentinel or mask rather than framing such as </s>
            return 0.0 if token in self.stand_ins else 0.25 if self.pieces.special(token) else 1.5
        return INFINITY  # DELETE and unknown codes never match

    @staticmethod
    def skip(e: Element) -> float:
        return 0.0 if e.op in (Op.DELETE, Op.MOVED) else 1.0

    def align(
        self, elems: Sequence[Element], inputs: Sequence[int], free_skips: bool = False
    ) -> list[tuple[int | None, int | None]]:
        """Pairs (element index or None, input index or None) in display order."""
        n, m = len(elems), len(inputs)
        skips = [0.0 if free_skips else self.skip(e) for e in elems]
        # an input token no element accounts for costs 1, a hair more the earlier it stands, so
        # that of equal alignments the one matching elements to the earliest inputs wins (a
        # random token is the one where its source token stood, not one inserted after it)
        insert = [1.0 + 1e-6 * (m - j) for j in range(m + 1)]
        cost = [[0.0] * (m + 1) for _ in range(n + 1)]
        cost[0] = list(itertools.accumulate(insert[1:], initial=0.0))
        for i in range(1, n + 1):
            e, skip = elems[i - 1], skips[i - 1]
            row, above = cost[i], cost[i - 1]
            row[0] = above[0] + skip
            for j in range(1, m + 1):
                row[j] = min(
                    above[j - 1] + self.match(e, inputs[j - 1]),
                    above[j] + skip,
                    row[j - 1] + insert[j],
                )
        pairs: list[tuple[int | None, int | None]] = []
        i, j = n, m
        while i or j:
            if (
                i
                and j
                and cost[i][j] == cost[i - 1][j - 1] + self.match(elems[i - 1], inputs[j - 1])
            ):
                pairs.append((i - 1, j - 1))
                i, j = i - 1, j - 1
            elif i and cost[i][j] == cost[i - 1][j] + skips[i - 1]:
                pairs.append((i - 1, None))
                i -= 1
            else:
                pairs.append((None, j - 1))
                j -= 1
        return pairs[::-1]

    def align_moved(
        self, elems: Sequence[Element], inputs: Sequence[int], rounds: int = 3
    ) -> list[tuple[int | None, int | None]]:
        """`align`, then pair what is left over again, a few times: moved text cannot all be
        in order, and each round picks up another block of it (with the masks inside it)."""
        pairs = self.align(elems, inputs)
        for _ in range(rounds):
            left_e = [e for e, j in pairs if j is None and elems[e].op != Op.DELETE]
            left_j = [j for e, j in pairs if e is None]
            found = {
                left_e[a]: left_j[b]
                for a, b in self.align(
                    [elems[e] for e in left_e], [inputs[j] for j in left_j], free_skips=True
                )
                if a is not None
                and b is not None
                and self.match(elems[left_e[a]], inputs[left_j[b]]) < 1.0
            }
            if not found:
                break
            at_input = {j: e for e, j in found.items()}
            pairs = [
                (at_input[j], j) if e is None and j in at_input else (e, j)
                for e, j in pairs
                if not (j is None and e in found)
            ]
        return pairs


def input_cells(example: Example, pieces: Pieces) -> list[Cell]:
    """The input in its own order, each token marked by the op of its source token; deleted
    source tokens appear where they were."""
    source, inputs = example.source_ids, example.input_ids
    if example.ops is None:
        return pieces.cells(inputs)
    elems = elements(example.ops)
    any_moved = Op.MOVED in example.ops
    cells = []
    aligner = Aligner(pieces, source)
    pairs = (aligner.align_moved if any_moved else aligner.align)(elems, inputs)
    for e, j in pairs:
        if e is None:  # an input token no source token accounts for
            assert j is not None
            text, glue = pieces.piece(inputs[j])
            if pieces.special(inputs[j]) or any_moved:
                kind = "special" if pieces.special(inputs[j]) else "moved"
                cells.append(Cell(text, kind, glue))
            else:
                cells.append(Cell(pieces.standalone(inputs[j]), "inserted"))
            continue
        op, start, stop, head = elems[e]
        if j is None:  # a source token that is not in the input
            if op != Op.MOVED:
                for token in source[start:stop]:
                    glue = pieces.piece(token)[1]
                    cells.append(
                        Cell(
                            pieces.standalone(token) if not glue else pieces.piece(token)[0],
                            "delete",
                            glue,
                        )
                    )
            continue
        # the token stands where the source token stood, so it is glued as that one was
        glue = pieces.piece(source[start])[1]
        kind = KIND_OF_OP.get(op, "keep")
        text = pieces.piece(inputs[j])[0]
        if inputs[j] != source[head] or (not text and kind != "keep"):
            text = pieces.standalone(inputs[j])
        hidden = pieces.text(source[start:stop]) if op == Op.SPAN or stop - start > 1 else ""
        cells.append(Cell(text, kind, glue, hidden))
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

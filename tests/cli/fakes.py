"""Toy corruptions that produce every `Op` code and every shared extras key, so the views are
tested now, whatever the registry holds. Per-row Python on purpose: only the shapes matter.
`origin` (Corrupted.origin) is the source position of each input token, -1 for none."""

from __future__ import annotations

from collections.abc import Callable

import torch

from corruptions import IGNORE, Corrupted, Op, Tokens, Vocab

Row = tuple[list[int], list[int], list[int] | None, list[int], dict[str, object], list[int]]
# (input, labels, target or None, ops, extras, origin) for one source row


def batched(per_row: Callable[[list[int], Vocab, int], Row], seq2seq: bool = False):
    """A corruption from a per-row function (row ids, vocab, a draw from gen)."""

    def corrupt(
        batch: Tokens, vocab: Vocab, gen: torch.Generator, *, with_origin: bool = False
    ) -> Corrupted:
        draws = torch.randint(0, 2**30, (batch.ids.size(0),), generator=gen).tolist()
        rows = [
            per_row(batch.ids[b, : int(n)].tolist(), vocab, draws[b])
            for b, n in enumerate(batch.lengths.tolist())
        ]
        width = max(len(r[0]) for r in rows)
        ids = torch.full((len(rows), width), vocab.pad)
        ops = torch.zeros_like(batch.ids, dtype=torch.int8)
        labels_w = max(len(r[2] or r[1]) for r in rows)
        labels = torch.full((len(rows), labels_w if seq2seq else width), IGNORE)
        extras: dict[str, torch.Tensor] = {}
        origin = torch.full((len(rows), width), -1)
        for b, (inp, lab, tgt, op, ex, orig) in enumerate(rows):
            assert len(orig) == len(inp)
            ids[b, : len(inp)] = torch.tensor(inp)
            origin[b, : len(orig)] = torch.tensor(orig, dtype=torch.long)
            seq = tgt if seq2seq else lab
            labels[b, : len(seq)] = torch.tensor(seq, dtype=torch.long)
            ops[b, : len(op)] = torch.tensor(op, dtype=torch.int8)
            for key, value in ex.items():
                if isinstance(value, list):
                    extras.setdefault(key, torch.full((len(rows), width), -1))
                    extras[key][b, : len(value)] = torch.tensor(value)
                else:
                    extras.setdefault(key, torch.zeros(len(rows), dtype=torch.long))
                    extras[key][b] = value
        mask = torch.arange(width).unsqueeze(0) < torch.tensor([len(r[0]) for r in rows]).unsqueeze(
            1
        )
        decoder = None
        if seq2seq:
            decoder = torch.cat([torch.full((len(rows), 1), vocab.pad), labels[:, :-1]], 1)
            decoder = decoder.masked_fill(labels == IGNORE, vocab.pad)
        return Corrupted(ids, mask, labels, decoder, ops, extras, origin if with_origin else None)

    return corrupt


def spans(row: list[int], vocab: Vocab, draw: int) -> Row:
    """T5-like: tokens 2-3 and 6 become sentinels; the target writes them back."""
    cut = [i in (2, 3, 6) for i in range(len(row))]
    inp, tgt, origin, k = [], [], [], -1
    for i, t in enumerate(row):
        if cut[i] and not (i and cut[i - 1]):
            k += 1
            inp.append(vocab.sentinels[k])
            tgt.append(vocab.sentinels[k])
            origin.append(i)
        (tgt if cut[i] else inp).append(t)
        if not cut[i]:
            origin.append(i)
    ops = [int(Op.SPAN) if c else int(Op.KEEP) for c in cut]
    return [*inp, vocab.eos], [], [*tgt, vocab.eos], ops, {}, [*origin, -1]


def mixed(row: list[int], vocab: Vocab, draw: int) -> Row:
    """Every token-level op: mask, random, predict, delete, context, plus an insertion."""
    cycle = [Op.CONTEXT, Op.MASK, Op.KEEP, Op.RANDOM, Op.PREDICT, Op.DELETE, Op.KEEP]
    ops = [int(cycle[i % len(cycle)]) for i in range(len(row))]
    inp, lab, origin = [vocab.bos], [IGNORE], [-1]
    for i, (t, op) in enumerate(zip(row, ops, strict=True)):
        if op == Op.DELETE:
            continue
        inp.append({Op.MASK: vocab.mask, Op.RANDOM: 11 + draw % 50}.get(Op(op), t))
        lab.append(t if op in (Op.MASK, Op.RANDOM, Op.PREDICT) else IGNORE)
        origin.append(i)
    inp.insert(2, 12)  # an inserted token no source token accounts for
    lab.insert(2, IGNORE)
    origin.insert(2, -1)
    return [*inp, vocab.eos], [*lab, IGNORE], None, ops, {"prefix_lengths": 2}, [*origin, -1]


def rotate(row: list[int], vocab: Vocab, draw: int) -> Row:
    """BART-like rotation: the row starts at its middle; every token moved."""
    half = len(row) // 2
    origin = [*range(half, len(row)), *range(half)]
    return row[half:] + row[:half], [], row, [int(Op.MOVED)] * len(row), {}, origin


def segments(row: list[int], vocab: Vocab, draw: int) -> Row:
    """NSP/SOP/UniLM/XLNet/SpanBERT-like: two segments and every sentence-level extra."""
    half = max(1, len(row) // 2)
    inp = [vocab.extra["[NLU]"], vocab.bos, *row[:half], vocab.eos, *row[half:], vocab.eos]
    types = [0] * (half + 3) + [1] * (len(row) - half + 1)
    labels = [IGNORE] * len(inp)
    labels[3] = inp[3]
    labels[4] = inp[4]
    inp[3:5] = [vocab.mask, vocab.mask]
    ops = [int(Op.CONTEXT)] * half + [int(Op.MOVED)] * (len(row) - half)
    ops[1:3] = [int(Op.MASK), int(Op.MASK)]
    rank = list(range(len(inp)))[::-1]
    offset = [-1] * len(inp)
    offset[3:5] = [0, 1]
    left = [2 if o >= 0 else -1 for o in offset]
    right = [5 if o >= 0 else -1 for o in offset]
    extras = {
        "token_type_ids": types,
        "next_sentence_label": 1,
        "sentence_order_label": 0,
        "attention_mode": 3,
        "perm_rank": rank,
        "span_left": left,
        "span_right": right,
        "span_offset": offset,
        "custom": 7,
        "a_long_custom_key": [1, 2],
    }
    origin = [-1, -1, *range(half), -1, *range(half, len(row)), -1]
    return inp, labels, None, ops, extras, origin


def infill(row: list[int], vocab: Vocab, draw: int) -> Row:
    """BART-like: a span's first token holds the <mask> (MASK) and the rest is gone (SPAN);
    a second span becomes one random token (RANDOM + SPAN); no sentinels."""
    ops = [int(Op.KEEP)] * len(row)
    ops[1:4] = [int(Op.MASK), int(Op.SPAN), int(Op.SPAN)]
    ops[6:8] = [int(Op.RANDOM), int(Op.SPAN)]
    inp = [vocab.bos, row[0], vocab.mask, *row[4:6], 13, *row[8:], vocab.eos]
    origin = [-1, 0, 1, 4, 5, 6, *range(8, len(row)), -1]
    return inp, [], [vocab.bos, *row, vocab.eos], ops, {}, origin


def causal(row: list[int], vocab: Vocab, draw: int) -> Row:
    """GPT-like: labels are the input."""
    return row, row, None, [int(Op.PREDICT)] * len(row), {}, list(range(len(row)))


FAKES = {
    "spans": batched(spans, seq2seq=True),
    "mixed": batched(mixed),
    "rotate": batched(rotate, seq2seq=True),
    "segments": batched(segments),
    "causal": batched(causal),
    "infill": batched(infill, seq2seq=True),
}

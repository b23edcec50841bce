"""Sentence-pair plumbing shared by NSP, SOP and UniLM, as whole-batch tensor operations.

Find each row's sentences, split a row into A and B at a sentence start, take a segment of
another row, truncate a pair as google-research/bert's `truncate_seq_pair` does, lay the pair out
as `[CLS] A [SEP] B [SEP]` with token-type ids, and apply 80/10/10 on it while keeping track of
where every output token came from (so `Corrupted.ops` can be written on the source rows).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ._ops import positions, rand, replace_selected
from .types import IGNORE, Op, Tokens, Vocab


@dataclass(frozen=True)
class Sentences:
    """Where each row's sentences start."""

    count: Tensor  # (B,) int64: sentences per row (0 for an empty row)
    starts: Tensor  # (B, max count + 1) int64: k-th sentence start; the row length from k = count


def sentences_of(batch: Tokens) -> Sentences:
    """The sentences of every row; position 0 of a non-empty row always opens one.

    Without `sentence_starts` every row is one sentence.
    """
    real = batch.real
    opens = real & (positions(batch.ids) == 0)
    if batch.sentence_starts is not None:
        opens |= batch.sentence_starts & real
    count = opens.sum(1)
    # the k-th sentence opens where the running count first reaches k + 1 (L past the last one)
    k = torch.arange(1, int(count.max()) + 2 if count.numel() else 2, device=count.device)
    starts = torch.searchsorted(opens.cumsum(1), k.expand(count.size(0), -1).contiguous())
    return Sentences(count, torch.minimum(starts, batch.lengths.unsqueeze(1)))


def split_points(
    sents: Sentences, lengths: Tensor, gen: torch.Generator, split_single: bool | Tensor
) -> Tensor:
    """(B,) int64: where segment A ends, as google-research/bert's `a_end`.

    A row with k >= 2 sentences splits before sentence j, j uniform in [1, k-1]. A row with one
    sentence keeps it whole as A when `split_single` is False (NSP/SOP then draw B elsewhere), or
    splits at a token position uniform in [1, length-1] when True (a one-token row keeps it all);
    `split_single` is one bool for the batch or (B,) bool per row.
    """
    u = rand(lengths, gen)
    j = 1 + (u * (sents.count - 1).clamp(min=1)).long()
    j = j.clamp(max=sents.starts.size(1) - 1)
    at_sentence = sents.starts.gather(1, j.unsqueeze(1)).squeeze(1)
    split = torch.as_tensor(split_single, device=lengths.device) & (lengths >= 2)
    single = torch.where(split, 1 + (u * (lengths - 1).clamp(min=1)).long(), lengths)
    return torch.where(sents.count >= 2, at_sentence, single)


def other_rows(
    lengths: Tensor,
    gen: torch.Generator,
    need: Tensor | None = None,
    documents: Tensor | None = None,
) -> Tensor:
    """(B,) int64: for every row b a uniformly random row of another document, among those
    holding at least `need[b]` tokens (default 1), else among the non-empty ones.

    `documents` (B,) names each row's document (`Tokens.row_documents`); None: every row is its
    own. Preferring rows long enough for a random B keeps B from running out of text more often
    when its pair has a random B than when it has the true one (see `segment_from`). Where no
    row of another document holds a token (`no_other_document`), any other row.

    Candidates are the rows in ascending length from the first long enough, minus those of the
    row's own document: the k-th of them is found by stepping over the own document's rows
    below it, a few rounds of one search each (no (B, B) table).
    """
    n_rows, device = lengths.size(0), lengths.device
    anywhere = (
        torch.arange(n_rows, device=device)
        + torch.randint(1, n_rows, (n_rows,), generator=gen, device=device)
    ) % n_rows
    least = torch.ones_like(lengths) if need is None else need.clamp(min=1)
    ascending, order = lengths.sort(stable=True)
    own = _document_index(lengths, documents)
    # (document, sorted position) of every row, as one ascending key: rows of one document
    # within a range of sorted positions are counted by two searches
    keys = (own[order] * (n_rows + 1) + torch.arange(n_rows, device=device)).sort().values
    base = own * (n_rows + 1)

    def own_rows(lo: Tensor, hi: Tensor) -> Tensor:
        """Rows of each row's own document at sorted positions lo .. hi (inclusive)."""
        found = torch.searchsorted(keys, base + hi, right=True)
        return found - torch.searchsorted(keys, base + lo)

    def pool(t: Tensor) -> tuple[Tensor, Tensor]:
        """(first sorted position, how many rows of other documents) with >= t tokens."""
        first = torch.searchsorted(ascending, t)
        return first, n_rows - first - own_rows(first, torch.full_like(first, n_rows - 1))

    first, n_others = pool(least)
    first_any, n_any = pool(torch.ones_like(lengths))
    short = n_others == 0  # no row of another document long enough: any non-empty one
    first, n_others = torch.where(short, first_any, first), torch.where(short, n_any, n_others)
    k = (rand(lengths, gen) * n_others).long()  # the k-th candidate, in ascending length
    at = first + k
    while True:  # step over the own document's rows up to `at`
        moved = first + k + own_rows(first, at)
        if bool((moved == at).all()):
            break
        at = moved
    found = order[at.clamp(max=n_rows - 1)]
    return torch.where(n_others > 0, found, anywhere)


def no_other_document(lengths: Tensor, documents: Tensor | None = None) -> Tensor:
    """(B,) bool: rows for which no non-empty row of another document exists in the batch, so a
    random B cannot be drawn (`documents` as in `other_rows`)."""
    own = _document_index(lengths, documents)
    nonempty = (lengths > 0).long()
    per_document = torch.zeros_like(lengths).index_add_(0, own, nonempty)
    return per_document.take(own) == nonempty.sum()


def _document_index(lengths: Tensor, documents: Tensor | None) -> Tensor:
    """(B,) int64 in 0 .. B - 1, equal for rows of one document (each row alone if None)."""
    if documents is None:
        return torch.arange(lengths.size(0), device=lengths.device)
    return torch.unique(documents, return_inverse=True)[1]


def segment_from(
    sents: Sentences, rows: Tensor, lengths: Tensor, need: Tensor, gen: torch.Generator
) -> tuple[Tensor, Tensor]:
    """A segment of row `rows[b]` that starts at one of its sentences and takes whole sentences
    until it holds at least `need[b]` tokens or the row ends (at least one sentence), as
    google-research/bert builds a random B.

    bert starts at a uniform sentence of a whole document, which rarely runs out of text; a row
    is a chunk of at most the model length, and a uniform start in it would often leave B short,
    so that a short pair would give its "random B" label away (41% of label-1 pairs against 0% of
    label-0 ones at 128 tokens). So the start is uniform among the sentences with at least
    `need[b]` tokens after them, or the row's first sentence where none has.

    Returns:
        (start, length): (B,) int64 each, positions in row `rows[b]`.
    """
    starts = sents.starts[rows]  # (B, S + 1), ascending
    count = sents.count[rows]
    row_len = lengths[rows].unsqueeze(1)
    # sentence starts are ascending, so the ones with room enough after them come first
    room = (row_len - starts[:, :-1] >= need.unsqueeze(1)) & (
        torch.arange(starts.size(1) - 1, device=starts.device) < count.unsqueeze(1)
    )
    fitting = room.sum(1)
    k = (rand(count, gen) * fitting).long().clamp(max=starts.size(1) - 1)
    start = starts.gather(1, k.unsqueeze(1))  # (B, 1)
    target = torch.minimum(torch.maximum(start + need.unsqueeze(1), start + 1), row_len)
    end = starts.gather(1, torch.searchsorted(starts, target).clamp(max=starts.size(1) - 1))
    end = torch.where(end < target, row_len, end)  # no sentence start left: run to the row's end
    start, end = start.squeeze(1), end.squeeze(1)
    return start, (end - start).clamp(min=0)


def truncate_pair(
    a_len: Tensor, b_len: Tensor, budget: Tensor, gen: torch.Generator
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """How many tokens to cut from the front and the back of A and B so that A + B <= budget.

    google-research/bert's `truncate_seq_pair` removes one token at a time from the longer segment
    (B on a tie), from its front or its back with probability 0.5 each. The counts per segment
    follow in closed form; the front share of each is Binomial(cut, 0.5), the same distribution.

    Returns:
        (a_front, a_back, b_front, b_back): (B,) int64 each.
    """
    excess = (a_len + b_len - budget).clamp(min=0)
    first = torch.minimum(excess, (a_len - b_len).abs())  # until both are equally long
    rest = excess - first  # then alternately, B first
    a_longer = a_len > b_len
    cut_a = torch.where(a_longer, first, 0) + rest // 2
    cut_b = torch.where(a_longer, 0, first) + (rest + 1) // 2
    half = torch.full(cut_a.shape, 0.5, device=cut_a.device)
    a_front = torch.binomial(cut_a.double(), half.double(), generator=gen).long()
    b_front = torch.binomial(cut_b.double(), half.double(), generator=gen).long()
    return a_front, cut_a - a_front, b_front, cut_b - b_front


@dataclass(frozen=True)
class Pair:
    """A batch of `[CLS] first [SEP] second [SEP]` and where every token of it came from."""

    ids: Tensor  # (B, W) int64, padded with vocab.pad
    lengths: Tensor  # (B,) int64, specials included
    first_len: Tensor  # (B,) int64: tokens of the first segment
    token_type_ids: Tensor  # (B, W) int64: 0 through the first [SEP], 1 after, 0 on padding
    content: Tensor  # (B, W) bool: a token copied from a source row (not a special added here)
    source: Tensor  # (B, W) int64: row * L + position of content tokens; B * L + *_AT elsewhere
    plain: Tensor  # (B, W) bool: content that is not a special id (what MLM may choose)
    ordinary: Tensor  # (B, L) bool: real, non-special tokens of the source rows

    @property
    def real(self) -> Tensor:
        """(B, W) bool: positions inside `lengths`."""
        return positions(self.ids) < self.lengths.unsqueeze(1)


PAD_AT, SEP_AT, CLS_AT = 0, 1, 2  # Pair.source past the source rows: which special goes there


def take(values: Tensor, index: Tensor, tail: tuple[int | bool, ...]) -> Tensor:
    """`cat(values.flatten(), tail)[index]`, as one gather (much faster than indexing on CPU)."""
    extra = torch.tensor(tail, dtype=values.dtype, device=values.device)
    table = torch.cat([values.reshape(-1), extra])
    return table.gather(0, index.reshape(-1)).view(index.shape)


def assemble(
    ids: Tensor,
    lengths: Tensor,
    first: tuple[Tensor, Tensor, Tensor],
    second: tuple[Tensor, Tensor, Tensor],
    vocab: Vocab,
) -> Pair:
    """Lay out `[CLS] first [SEP] second [SEP]`; each segment is (row, start, length) per row,
    gathered from `ids` (B, L) with `lengths` real tokens, so a segment may come from another
    row. The specials and the padding are gathered too, from three entries past the rows."""
    (row1, start1, len1), (row2, start2, len2) = first, second
    width = ids.size(1)
    total = len1 + len2 + 3
    col = torch.arange(int(total.max()) if total.numel() else 3, device=ids.device).unsqueeze(0)
    l1, end = len1.unsqueeze(1), total.unsqueeze(1) - 1
    in_first = (col >= 1) & (col <= l1)
    second_on = col > l1 + 1  # the second segment and its [SEP]
    framed = col <= end
    content = in_first | (second_on & (col < end))
    # past the rows: PAD_AT after the pair, SEP_AT inside it, CLS_AT at position 0
    special = framed + (ids.numel() + (col == 0))
    source = col + torch.where(
        in_first,
        (row1 * width + start1 - 1).unsqueeze(1),
        (row2 * width + start2).unsqueeze(1) - l1 - 2,
    )
    source = torch.where(content, source, special)
    out = take(ids, source, (vocab.pad, vocab.eos, vocab.bos))
    ordinary = (positions(ids) < lengths.unsqueeze(1)) & ~vocab.is_special(ids)
    plain = take(ordinary, source, (False, False, False))
    return Pair(out, total, len1, (second_on & framed).long(), content, source, plain, ordinary)


def mlm_on_pair(
    pair: Pair,
    vocab: Vocab,
    chosen: Tensor,
    gen: torch.Generator,
    mask_replace: float,
    random_replace: float,
) -> tuple[Tensor, Tensor, Tensor]:
    """80/10/10 (`_ops.replace_selected`) at `chosen` positions of the pair.

    Returns:
        (input_ids, labels, ops): (B, W) each; labels hold the original ids at `chosen`, IGNORE
        elsewhere; ops are `Op` codes on the pair's positions.
    """
    input_ids, ops = replace_selected(pair.ids, chosen, vocab, gen, mask_replace, random_replace)
    return input_ids, torch.where(chosen, pair.ids, IGNORE), ops


def source_ops(pair: Pair, pair_ops: Tensor, batch: Tokens) -> Tensor:
    """`Op` codes on the source rows: each token of row b that row b's pair holds gets the code of
    its pair position; a real token it does not hold (truncated, or dropped for a random B) gets
    `Op.DELETE`, except special ids, which stay `Op.KEEP` as every objective leaves them."""
    n_rows, width = batch.ids.shape
    ops = torch.zeros(n_rows * width + 1, dtype=torch.int8, device=batch.ids.device)  # Op.KEEP
    ops[:-1] = pair.ordinary.reshape(-1).to(torch.int8) * int(Op.DELETE)
    start = (torch.arange(n_rows, device=batch.ids.device) * width).unsqueeze(1)
    own = pair.content & (pair.source >= start) & (pair.source < start + width)
    ops.scatter_(0, torch.where(own, pair.source, n_rows * width).reshape(-1), pair_ops.reshape(-1))
    return ops[:-1].view(n_rows, width)


def pair_origin(pair: Pair, width: int) -> Tensor:
    """`Corrupted.origin` of a pair: (B, W) int64, the position in row b of each token of row
    b's pair that came from row b itself; -1 at the specials added here, at tokens taken from
    another row (a random B) and at padding. `width` is the source rows' L."""
    start = (torch.arange(pair.ids.size(0), device=pair.ids.device) * width).unsqueeze(1)
    own = pair.content & (pair.source >= start) & (pair.source < start + width)
    return torch.where(own, pair.source - start, -1)


def pair_word_starts(batch: Tokens, pair: Pair, whole_word: bool) -> Tensor | None:
    """(B, W) bool: the source rows' word starts carried onto the pair; None (every token its own
    unit) when `whole_word` is False or the batch has no word starts."""
    if not whole_word or batch.word_starts is None:
        return None
    return take(batch.word_starts, pair.source, (False, False, False))

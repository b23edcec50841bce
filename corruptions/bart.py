"""BART noising functions (Lewis et al. 2019, arXiv 1910.13461; fairseq `denoising_dataset.py`).

The encoder reads a noised document, the decoder rewrites the whole clean document:

    ids      A b c . D e . F g h .                          (three sentences, every token a word)
    permute  F g h . A b c . D e .                          bart-permute: sentences reordered
    infill   F <mask> . A b c . <mask> <mask> e .           bart-infill: "g h" -> one <mask>, a
                                                           zero-length span inserts a <mask>,
                                                           "D" -> one <mask>
    rotate   c . <mask> <mask> e . F <mask> . A b          bart-rotate: a cyclic shift
    input    <s> c . <mask> <mask> e . F <mask> . A b </s>
    labels   <s> A b c . D e . F g h . </s>                 (<s> carries no loss, see below)
    decoder  </s> <s> A b c . D e . F g h .                 labels shifted behind </s>

Noising functions: `bart-mask` (token masking), `bart-delete` (token deletion), `bart-infill`
(text infilling: Poisson span lengths counted in words, one <mask> per span), `bart-permute`
(sentence permutation), `bart-rotate` (document rotation) and `bart` (BART-large: infilling +
permutation). They compose (`bart-infill+bart-rotate`); whatever order they are named in, they
run in the reference's fixed order: permute -> mask / infill / delete -> insert -> rotate. The
insertion step is the one text infilling asks for (its zero-length spans).

The family is built from shared stages (in `_bart.py`): a noise mask (`_ops.pick_k` for exact
per-row budgets, `span_lengths` and word coverage for spans), an input transform (replace,
`compact`, `insert_masks`, reorder) and the target (`finish`). Each noising function is one stage
on a `Doc` (the content without <s>/</s>, its clean base text and the op codes); `BartNoising`
runs the stages and frames the result: source `<s> x </s>`, target the clean `<s> x </s>`,
decoder input `</s> <s> x` (fairseq moves the final </s> to the front; Hugging Face's
`decoder_start_token_id` is </s>). Labels are IGNORE at <s> (it always follows the start token,
a free prediction the project's contract does not score) and at special tokens of the content.
Sentence permutation reorders the base text itself, sentence starts included, so permuted
sentences keep their boundaries.

Special tokens inside the content are walls: they are never chosen, masked, deleted or covered by a
span (a span stops in front of one, as fairseq's spans stop at </s>) and do not count in the
budgets. Permutation and rotation carry them along with their neighbours; their ops stay KEEP.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

import torch
from torch import Tensor

from ._bart import (
    Doc,
    finish,
    insert_masks,
    mask_ids,
    put_at,
    span_noise,
    subword_pick,
)
from ._ops import compact, pick_k, positions
from .errors import UsageError
from .registry import param, register
from .types import Corrupted, Corruption, Op, Tokens, Vocab

PAPER = "Lewis et al. 2019, arXiv 1910.13461"
LAMBDA_HELP = (
    "mean span length in words, Poisson(lambda) truncated where the pmf falls below 1e-7 "
    "(paper: 3; the BART-large command in fairseq #1899 used 3.5)"
)
MASK_RANDOM_HELP = (
    "share of masks that are a random token instead (BART-large command: 0.1); an ordinary id, "
    "never a special one (fairseq draws from [1, V), which holds <mask> and any sentinels)"
)
SUBWORD_RATE_HELP = (
    "share of tokens hit, budget ceil(rate x tokens) per document (0.3 as BART-large; the rate "
    "behind the paper's base-size Table 1 rows is not stated)"
)


# ---------------------------------------------------------------------------------------------
# Composition


def compose(parts: Sequence[Corruption]) -> BartNoising:
    """Chain BART noising functions in the reference's order (permute, mask/infill/delete, insert,
    rotate), whatever order they were given in; two of one kind cannot be combined."""
    flat: list[Any] = []
    for part in parts:
        flat.extend(getattr(part, "parts", (part,)))
    stages = sorted(flat, key=lambda p: p.stage)
    for a, b in itertools.pairwise(stages):
        if a.stage == b.stage:
            raise UsageError(
                f"{a.kind} and {b.kind} cannot be combined",
                "BART applies one of each: permutation, then one of masking / deletion / "
                "infilling, then rotation",
            )
    return BartNoising(tuple(stages))


@dataclass(frozen=True)
class BartNoising:
    """BART noising functions in the reference's order; source and target framed `<s> x </s>`."""

    parts: tuple[Any, ...] = field(default=())
    combine: ClassVar = staticmethod(compose)

    def __call__(
        self, batch: Tokens, vocab: Vocab, gen: torch.Generator, *, with_origin: bool = False
    ) -> Corrupted:
        doc = Doc.start(batch, vocab, with_origin)
        for part in self.parts:
            doc = part.apply(doc, vocab, gen)
        return finish(doc, batch, vocab)


class _Stage:
    """What every noising function shares: its place in the order and how it composes."""

    stage: ClassVar[int]
    kind: ClassVar[str]
    combine: ClassVar = staticmethod(compose)

    def apply(self, doc: Doc, vocab: Vocab, gen: torch.Generator) -> Doc:
        raise NotImplementedError

    def __call__(
        self, batch: Tokens, vocab: Vocab, gen: torch.Generator, *, with_origin: bool = False
    ) -> Corrupted:
        return BartNoising((self,))(batch, vocab, gen, with_origin=with_origin)


def _check_rate(name: str, value: float, low_open: bool = True) -> None:
    ok = (0.0 < value <= 1.0) if low_open else (0.0 <= value <= 1.0)
    if not ok:
        raise ValueError(f"{name} must be in {'(0' if low_open else '[0'}, 1], got {value}")


# ---------------------------------------------------------------------------------------------
# The noising functions


@dataclass(frozen=True)
class SentencePermutation(_Stage):
    """Shuffle ceil(ratio x sentences) randomly chosen sentences among their own slots."""

    stage: ClassVar[int] = 0
    kind: ClassVar[str] = "sentence permutation"
    permute_ratio: float = param(1.0, "share of sentences shuffled among their slots (BART: all)")

    def __post_init__(self) -> None:
        _check_rate("permute_ratio", self.permute_ratio, low_open=False)

    def apply(self, doc: Doc, vocab: Vocab, gen: torch.Generator) -> Doc:
        doc.untouched("sentence permutation")
        base, real = doc.base, doc.base.real
        if base.sentence_starts is None:  # one sentence: nothing to permute
            return doc
        index = _sentence_order(base.sentence_starts & real, real, self.permute_ratio, gen)
        moved = index != positions(real)  # padding stays in place
        # the token stages after this one read words, never sentences: those are not carried
        new = Tokens(
            base.ids.gather(1, index),
            base.lengths,
            None if base.word_starts is None else base.word_starts.gather(1, index),
        )
        return replace(
            doc,
            ids=new.ids,
            base=new,
            protected=doc.protected.gather(1, index) if doc.any_special else doc.protected,
            ops=doc.ops.masked_fill(moved, int(Op.MOVED)),  # pristine: all were KEEP
            perm=index if doc.perm is None else doc.perm.gather(1, index),
            origin=None if doc.origin is None else doc.origin.gather(1, index),
        )


def _fill_slots(chosen: Tensor, valid: Tensor, slot_ids: Tensor, n_slots: int) -> Tensor:
    """(B, n_slots) sentence placed in each slot: the chosen sentences (random order) fill the
    slots they came from taken in increasing order; the others stay."""
    chosen = torch.where(valid, chosen, n_slots)
    # the same sentences in their own order are the slots they fill (a sort of distinct ids)
    marked = torch.zeros(chosen.size(0), n_slots + 1, dtype=torch.bool, device=chosen.device)
    marked = marked.scatter_(1, chosen, True)[:, :n_slots]
    slots = compact(slot_ids[:, :-1].expand_as(marked), marked, n_slots)
    slots = torch.cat(
        [slots, chosen.new_full((chosen.size(0), chosen.size(1) - slots.size(1)), n_slots)], dim=1
    )
    return slot_ids.expand(chosen.size(0), -1).clone().scatter_(1, slots, chosen)[:, :n_slots]


def _sentence_order(starts: Tensor, real: Tensor, ratio: float, gen: torch.Generator) -> Tensor:
    """(B, L) index: the position each output position takes its token from, after shuffling
    ceil(ratio x sentences) random sentences among their own slots (fairseq's
    permute_sentences); padding stays in place."""
    starts[:, :1] |= real[:, :1]  # a row's first token opens a sentence (starts is ours)
    sentence = (starts.cumsum(1) - 1).clamp(min=0)  # (B, L)
    n_sent = starts.sum(1)
    n_slots = max(int(n_sent.max()) if n_sent.numel() else 0, 1)
    k = torch.ceil(n_sent.double() * 2 * ratio / 2.0).long()  # fairseq's ceil(n x 2p / 2)
    slot_ids = torch.arange(n_slots + 1, device=real.device).unsqueeze(0)
    chosen, valid = pick_k(slot_ids[:, :-1] < n_sent.unsqueeze(1), k, gen)  # random order
    if chosen.size(1) == n_slots and bool((k >= n_sent).all()):
        # every sentence is chosen (BART's ratio 1): slot j takes the j-th chosen sentence
        order = torch.where(valid, chosen, slot_ids[:, :-1])
    else:
        order = _fill_slots(chosen, valid, slot_ids, n_slots)
    slot_of = torch.empty_like(order).scatter_(1, order, slot_ids[:, :-1].expand_as(order))
    sent_len = torch.zeros(real.size(0), n_slots + 1, dtype=torch.long, device=real.device)
    ones = sentence.new_ones(1, 1).expand_as(sentence)  # padding counts in the spare column
    sent_len = sent_len.scatter_add_(1, torch.where(real, sentence, n_slots), ones)
    sent_len = sent_len[:, :n_slots]
    old_start = sent_len.cumsum(1) - sent_len
    out_len = sent_len.gather(1, order)
    new_start = (out_len.cumsum(1) - out_len).gather(1, slot_of)
    pos = positions(real).expand_as(sentence)
    dest = (new_start - old_start).gather(1, sentence) + pos
    dest = torch.where(real, dest, pos)  # where each token goes
    return torch.empty_like(dest).scatter_(1, dest, pos)


@dataclass(frozen=True)
class TokenMasking(_Stage):
    """Replace ceil(rate x tokens) random tokens by <mask> (fairseq mask_length=subword,
    replace_length=1)."""

    stage: ClassVar[int] = 1
    kind: ClassVar[str] = "token masking"
    rate: float = param(0.3, SUBWORD_RATE_HELP)
    mask_random: float = param(0.1, MASK_RANDOM_HELP)

    def __post_init__(self) -> None:
        _check_rate("rate", self.rate)
        _check_rate("mask_random", self.mask_random, low_open=False)

    def apply(self, doc: Doc, vocab: Vocab, gen: torch.Generator) -> Doc:
        doc.untouched("token masking")
        idx, valid = subword_pick(doc, self.rate, gen)
        fill, is_random = mask_ids(idx, valid, self.mask_random, vocab, gen)
        ops = put_at(doc.ops, idx, valid, torch.where(is_random, int(Op.RANDOM), int(Op.MASK)))
        return doc.changed(put_at(doc.ids, idx, valid, fill), ops)


@dataclass(frozen=True)
class TokenDeletion(_Stage):
    """Delete ceil(rate x tokens) random tokens (fairseq mask_length=subword, replace_length=0)."""

    stage: ClassVar[int] = 1
    kind: ClassVar[str] = "token deletion"
    rate: float = param(0.3, SUBWORD_RATE_HELP)

    def __post_init__(self) -> None:
        _check_rate("rate", self.rate)

    def apply(self, doc: Doc, vocab: Vocab, gen: torch.Generator) -> Doc:
        doc.untouched("token deletion")
        idx, valid = subword_pick(doc, self.rate, gen)
        keep = put_at(doc.base.real, idx, valid, False)
        ops = put_at(doc.ops, idx, valid, int(Op.DELETE))
        return doc.changed(
            compact(doc.ids, keep, 0), ops, keep.sum(1), lambda o: compact(o, keep, -1)
        )


@dataclass(frozen=True)
class TextInfilling(_Stage):
    """Replace Poisson-length word spans by one <mask> each; zero-length spans insert a <mask>."""

    stage: ClassVar[int] = 1
    kind: ClassVar[str] = "text infilling"
    rate: float = param(0.3, "share of words in spans, budget ceil(rate x words) (BART: 0.3)")
    poisson_lambda: float = param(3.0, LAMBDA_HELP)
    mask_random: float = param(0.1, MASK_RANDOM_HELP)

    def __post_init__(self) -> None:
        _check_rate("rate", self.rate)
        _check_rate("mask_random", self.mask_random, low_open=False)
        if not 0.0 < self.poisson_lambda <= 64.0:
            raise ValueError(f"poisson_lambda must be in (0, 64], got {self.poisson_lambda}")

    def apply(self, doc: Doc, vocab: Vocab, gen: torch.Generator) -> Doc:
        doc, n_insert = span_noise(
            doc,
            self.rate,
            self.poisson_lambda,
            self.mask_random,
            vocab,
            gen,
        )
        return insert_masks(doc, n_insert, self.mask_random, vocab, gen)


@dataclass(frozen=True)
class DocumentRotation(_Stage):
    """Rotate the document to start at a random token (offset uniform in 1..L-1, L with <s></s>)."""

    stage: ClassVar[int] = 3
    kind: ClassVar[str] = "document rotation"
    rotate: float = param(
        1.0,
        "probability that a document is rotated (fairseq default 0.5, "
        "BART-large 0; 1 for the paper's rotation experiment)",
    )

    def __post_init__(self) -> None:
        _check_rate("rotate", self.rotate, low_open=False)

    def apply(self, doc: Doc, vocab: Vocab, gen: torch.Generator) -> Doc:
        n = doc.lengths
        draw = torch.rand((n.size(0), 2), generator=gen, device=n.device, dtype=torch.float64)
        # fairseq: offset in {1, ..., n + 1} over <s> x </s>; offsets 1 and n + 1 keep the order
        shift = torch.floor(draw[:, 1] * (n + 1).double()).long().clamp(max=n)
        shift = torch.where(draw[:, 0] < self.rotate, shift % n.clamp(min=1), 0)
        pos = positions(doc.ids)
        index = torch.where(doc.real, (pos + shift.unsqueeze(1)) % n.clamp(min=1).unsqueeze(1), pos)
        # every token still in the document moves: those not masked, deleted or moved before
        turned = (shift > 0).unsqueeze(1) & (doc.ops == int(Op.KEEP)) & doc.base.real
        ops = doc.ops.masked_fill(turned, int(Op.MOVED))
        return doc.changed(doc.ids.gather(1, index), ops, move=lambda o: o.gather(1, index))


@dataclass(frozen=True)
class Bart:
    """BART-large's noise: sentence permutation of all sentences, then text infilling."""

    rate: float = param(0.3, "share of words in spans, budget ceil(rate x words) (BART: 0.3)")
    poisson_lambda: float = param(3.0, LAMBDA_HELP)
    mask_random: float = param(0.1, MASK_RANDOM_HELP)
    permute_ratio: float = param(1.0, "share of sentences shuffled among their slots (BART: all)")
    combine: ClassVar = staticmethod(compose)

    @property
    def parts(self) -> tuple[Any, ...]:
        return (
            SentencePermutation(self.permute_ratio),
            TextInfilling(self.rate, self.poisson_lambda, self.mask_random),
        )

    def __post_init__(self) -> None:
        _ = self.parts  # building the parts validates every value

    def __call__(
        self, batch: Tokens, vocab: Vocab, gen: torch.Generator, *, with_origin: bool = False
    ) -> Corrupted:
        return BartNoising(self.parts)(batch, vocab, gen, with_origin=with_origin)


# ---------------------------------------------------------------------------------------------
# Registered objectives


@register("bart-infill", arch="encoder-decoder", paper=PAPER, needs_words=True)
def bart_infill(**overrides: Any) -> TextInfilling:
    """BART text infilling: 30% of words in Poisson(3) spans, each span one <mask>.

    Budget ceil(0.3 x words) per document, span lengths counted in words (Tokens.word_starts;
    none given: every token is a word). Span lengths are drawn until they reach the budget (the
    last one trimmed); zero-length spans insert a <mask> (insertion noise, as fairseq; a popular
    port drops them). Overlapping spans are not merged: a start inside an earlier span is deleted,
    so ~26.7% of tokens are replaced or removed. 10% of masks are random tokens, drawn from the
    ordinary ids only: fairseq draws from [1, V), which holds <mask> and, in a T5-style
    vocabulary, the sentinels. lambda: the paper says 3 (used here), the BART-large command used
    3.5.
    """
    return TextInfilling(**overrides)


@register("bart-mask", arch="encoder-decoder", paper=PAPER)
def bart_mask(**overrides: Any) -> TokenMasking:
    """BART token masking: 30% of tokens replaced by <mask> (10% of them by a random token).

    Random tokens are ordinary ids, never a special one (fairseq draws from [1, V)).
    """
    return TokenMasking(**overrides)


@register("bart-delete", arch="encoder-decoder", paper=PAPER)
def bart_delete(**overrides: Any) -> TokenDeletion:
    """BART token deletion: 30% of tokens removed; the decoder must find where."""
    return TokenDeletion(**overrides)


@register("bart-permute", arch="encoder-decoder", paper=PAPER, needs_sentences=True)
def bart_permute(**overrides: Any) -> SentencePermutation:
    """BART sentence permutation: the document's sentences in a random order.

    Sentences come from Tokens.sentence_starts and move whole; with a single sentence the
    document is unchanged.
    """
    return SentencePermutation(**overrides)


@register("bart-rotate", arch="encoder-decoder", paper=PAPER)
def bart_rotate(**overrides: Any) -> DocumentRotation:
    """BART document rotation: the document starts at a random token and wraps around.

    fairseq's offset is uniform in 1..L-1 over `<s> x </s>`, so two offsets give the identity:
    P(unchanged) = 2/(L-1).
    """
    return DocumentRotation(**overrides)


@register("bart", arch="encoder-decoder", paper=PAPER, needs_words=True, needs_sentences=True)
def bart(**overrides: Any) -> Bart:
    """BART-large: all sentences permuted, then text infilling of 30% of words (Poisson 3).

    As the BART-large command of fairseq #1899 (mask 0.3, span-poisson, replace-length 1,
    mask-random 0.1, permute-sentences 1, rotate 0, insert 0) except lambda: the paper's 3, where
    the command used 3.5 (mBART's value), and random tokens, which are ordinary ids here (fairseq
    draws from [1, V), specials included). Noising functions compose (bart+bart-rotate) and
    always run in the reference's order: permute, mask / infill / delete, insert, rotate.
    """
    return Bart(**overrides)

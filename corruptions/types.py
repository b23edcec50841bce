"""The contract every objective keeps: clean `Tokens` in, a `Corrupted` batch out.

A corruption is a callable `(batch, vocab, gen) -> Corrupted`. It reads only tensors (no strings),
draws randomness only from `gen`, never writes into `batch`, and works on whatever device the
batch lives on.

Rows of `Tokens` hold content only: the data layer does not add [CLS]/[SEP] or <s>/</s>. Each
objective frames its output as its reference implementation does (BERT: `[CLS] x [SEP]`, BART:
`<s> x </s>`, T5: `x </s>`), so one packed batch feeds every objective. Ids for which
`vocab.special` is True may still appear in content (a user's text can contain "[MASK]"); they are
never selected, replaced, deleted or predicted.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from enum import IntEnum
from typing import Protocol

import torch
from torch import Tensor

IGNORE = -100  # label value the loss skips (the PyTorch and Hugging Face convention)


class Op(IntEnum):
    """What happened to one source token; `Corrupted.ops` holds these codes per source position."""

    KEEP = 0  # untouched, no loss
    MASK = 1  # replaced by the mask token, predicted
    RANDOM = 2  # replaced by a random token, predicted
    PREDICT = 3  # left as it was, but predicted (BERT's 10% "keep", XLNet targets, suffix of a LM)
    DELETE = 4  # removed from the input, predicted by the decoder
    SPAN = 5  # part of a span collapsed into one sentinel or one mask
    MOVED = 6  # moved elsewhere (sentence permutation, rotation, segment swap)
    CONTEXT = 7  # visible context that carries no loss but matters (prefix, segment A)


@dataclass(frozen=True, eq=False)
class Vocab:
    """The ids an objective needs, derived once from a tokenizer (objectives_cli/data/tokenizer.py).

    `bos` doubles as BERT's [CLS] and `eos` as [SEP]. `sentinels[k]` is the id of T5's
    `<extra_id_k>`; the project's tokenizers put them at the end of the vocabulary counting down,
    as T5 does, but objectives must only rely on this tuple. `extra` names further special ids
    (UL2's paradigm tokens). `special[i]` is True for every id that must never be corrupted.
    """

    size: int
    pad: int
    unk: int
    bos: int
    eos: int
    mask: int
    sentinels: tuple[int, ...] = ()
    extra: Mapping[str, int] = field(default_factory=dict)
    special: Tensor | None = None  # bool[size]

    def __post_init__(self) -> None:
        if self.special is None:
            special = torch.zeros(self.size, dtype=torch.bool)
            ids = [self.pad, self.unk, self.bos, self.eos, self.mask, *self.sentinels]
            special[torch.tensor(ids + list(self.extra.values()), dtype=torch.long)] = True
            object.__setattr__(self, "special", special)

    def is_special(self, ids: Tensor) -> Tensor:
        """bool tensor shaped like `ids`: True where the id is a special token."""
        special = self.special
        assert special is not None
        if special.device != ids.device:
            special = special.to(ids.device)
        return special.take(ids)  # a gather: about twice as fast as special[ids] on CPU

    def ordinary_ids(self, device: torch.device) -> Tensor:
        """The ids that are not special, ascending, int64 on `device`: what random replacement
        draws from. Computed once per device."""
        cache: dict[str, Tensor] = self.__dict__.setdefault("_ordinary_ids", {})
        key = str(device)
        if key not in cache:
            special = self.special
            assert special is not None
            pool = (~special).nonzero().squeeze(1)
            if pool.numel() == 0:
                raise ValueError("the vocabulary has no ordinary (non-special) id")
            cache[key] = pool.to(device)
        return cache[key]

    def sentinel_tensor(self, device: torch.device) -> Tensor:
        """The sentinel ids as an int64 tensor on `device` (sentinel k at index k)."""
        return torch.tensor(self.sentinels, dtype=torch.long, device=device)


@dataclass(frozen=True, eq=False)
class Tokens:
    """A padded batch of clean text, as the data layer packs it."""

    ids: Tensor  # (B, L) int64
    lengths: Tensor  # (B,) int64: real tokens per row; the rest is padding
    word_starts: Tensor | None = None  # (B, L) bool: token opens a word
    sentence_starts: Tensor | None = None  # (B, L) bool: token opens a sentence
    # (B, L) int64: which packed document (0, 1, ...) of its row each token belongs to; None = one
    # document per row. The trainer masks attention across documents; SpanBERT keeps its span
    # boundary targets inside one; other objectives may ignore it.
    document_ids: Tensor | None = None
    # (B,) int64: which document of the corpus each row comes from (that of its first token if
    # it holds several): rows cut from one document share an id, rows of different documents
    # do not; any values will do (a global document index). None = every row is a document of
    # its own. NSP and SOP draw a random segment B only from a row of another document.
    row_documents: Tensor | None = None

    @property
    def real(self) -> Tensor:
        """(B, L) bool: True at positions that hold a token, False at padding."""
        positions = torch.arange(self.ids.size(1), device=self.ids.device)
        return positions.unsqueeze(0) < self.lengths.unsqueeze(1)

    def to(self, device: torch.device | str) -> Tokens:
        return Tokens(*(None if t is None else t.to(device) for t in self._tensors()))

    def _tensors(self) -> tuple[Tensor | None, ...]:
        return (
            self.ids,
            self.lengths,
            self.word_starts,
            self.sentence_starts,
            self.document_ids,
            self.row_documents,
        )

    @staticmethod
    def from_lists(
        rows: list[list[int]],
        pad: int,
        word_starts: list[list[bool]] | None = None,
        sentence_starts: list[list[bool]] | None = None,
        row_documents: list[int] | None = None,
    ) -> Tokens:
        """Pad Python lists into a batch (for tests, the CLI and small inputs; not a hot path)."""
        width = max((len(r) for r in rows), default=0)
        ids = torch.full((len(rows), width), pad, dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        lengths = torch.tensor([len(r) for r in rows], dtype=torch.long)

        def flags(values: list[list[bool]] | None) -> Tensor | None:
            if values is None:
                return None
            out = torch.zeros((len(rows), width), dtype=torch.bool)
            for i, row in enumerate(values):
                out[i, : len(row)] = torch.tensor(row, dtype=torch.bool)
            return out

        documents = None if row_documents is None else torch.tensor(row_documents, dtype=torch.long)
        return Tokens(
            ids, lengths, flags(word_starts), flags(sentence_starts), row_documents=documents
        )


@dataclass(frozen=True, eq=False)
class Corrupted:
    """What a model trains on; field names follow Hugging Face models.

    Encoder and decoder objectives: `labels` has the shape of `input_ids` and holds IGNORE
    where there is no loss. Seq2seq objectives: `labels` is the target sequence (B, T), IGNORE at
    its padding, and `decoder_input_ids` is it shifted right. `ops` (B, L) says what happened to
    each source token (`Op` codes), for display and statistics. `extras` carries the targets and
    structure of the few objectives that need more (SpanBERT boundaries, XLNet order, NSP label,
    segment ids, attention modes); each objective documents its keys.

    Shared `extras` keys (the trainer builds attention masks and heads from these):

    - token_type_ids (B, S) int64: segment A = 0, B = 1 (NSP, SOP, UniLM)
    - next_sentence_label (B,) int64: NSP: 1 = B is a random segment, 0 = the true next one
    - sentence_order_label (B,) int64: SOP: 1 = the two segments were swapped
    - prefix_lengths (B,) int64: input positions < this attend bidirectionally among themselves,
      the rest causally (prefix LM, UniLM seq2seq)
    - attention_mode (B,) int64: UniLM: 0 bidirectional, 1 left-to-right, 2 right-to-left, 3
      seq2seq
    - perm_rank (B, S) int64: XLNet: place in the factorisation order, -1 for context (seen by
      all), then 0, 1, ... for targets and functional tokens; `permutation.perm_mask_from_rank`
      builds the perm_mask
    - decoder_position_ids (B, T) int64: MASS: position in `input_ids` of each decoder input token
      (fragment position - 1); 0 at padding
    - span_left, span_right (B, S) int64: SpanBERT: input index of the outside boundary tokens
      of the span a predicted token lies in, -1 where no SBO target
    - span_offset (B, S) int64: SpanBERT: the token's offset inside its span (0..14), -1 where
      no SBO target
    - denoiser (B,) int64: UL2: index of the row's denoiser in the objective's `denoisers`
      (default: 0-1 R, 2-5 X, 6 S)

    `permutation.perm_mask_from_rank` turns perm_rank into XLNet's perm_mask (see permutation.py).

    Decoder-arch objectives are causal unless `prefix_lengths` says otherwise; labels of a
    decoder objective are aligned with `input_ids` (the model predicts labels[t] at position t-1,
    the Hugging Face convention: labels = input_ids, shifted inside the loss).

    `origin` (B, S) int64, only when the corruption was called `with_origin=True` (None
    otherwise; training never needs it): for each input position, the source position (column of
    `Tokens.ids`, same row) of the token it holds or stands for. A kept, predicted, masked,
    randomly replaced, moved or context token points at its own source position; a token that
    stands for a collapsed span (T5's sentinel, BART's <mask>) at the span's first position.
    -1 where the input holds nothing of its own row: framing ([CLS], [SEP], <s>, </s>, XLNet's
    <sep> <cls>), paradigm tokens, inserted tokens, segments taken from another row (NSP's
    random B), padding. Each source position appears at most once per row; those that do not
    appear were deleted, truncated, collapsed into a span after its first token, or moved to
    the target (a prefix LM's suffix).
    """

    input_ids: Tensor  # (B, S) int64
    attention_mask: Tensor  # (B, S) bool
    labels: Tensor  # (B, S) encoders/decoders, (B, T) seq2seq; IGNORE = no loss
    decoder_input_ids: Tensor | None = None  # (B, T) seq2seq only
    ops: Tensor | None = None  # (B, L) int8 Op codes on the source positions
    extras: Mapping[str, Tensor] = field(default_factory=dict)
    origin: Tensor | None = None  # (B, S) int64 source position of each input token, -1: none

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Corrupted:
        """Move every tensor to `device`."""
        moved = {
            f.name: getattr(self, f.name).to(device, non_blocking=non_blocking)
            for f in fields(self)
            if isinstance(getattr(self, f.name), Tensor)
        }
        extras = {k: v.to(device, non_blocking=non_blocking) for k, v in self.extras.items()}
        return replace(self, **moved, extras=extras)

    def as_dict(self) -> dict[str, Tensor]:
        """Model inputs and targets by their Hugging Face names, extras included; no `ops` or
        `origin`."""
        out = {
            "input_ids": self.input_ids,
            "attention_mask": self.attention_mask,
            "labels": self.labels,
        }
        if self.decoder_input_ids is not None:
            out["decoder_input_ids"] = self.decoder_input_ids
        out.update(self.extras)
        return out


@dataclass(frozen=True, eq=False)
class ModelFacts:
    """What a model built for a corruption must know that no single batch shows.

    `registry.model_facts(corruption, vocab)` returns them for any corruption; a corruption
    class states its own in a `model_facts(self, vocab) -> ModelFacts` method (SpanBERT, UL2).
    The defaults are those of a corruption without such needs.
    """

    # SpanBERT: rows of the SBO span-offset embedding, i.e. SBO targets per span
    # (`max_pair_targets`); extras["span_offset"] stays below it. 0: no SBO head.
    sbo_offsets: int = 0
    # UL2: paradigm token id per mode "R", "X", "S" (vocab.extra[...] of the configured names);
    # every input starts with its row's one. Empty: no paradigm tokens.
    paradigm_ids: Mapping[str, int] = field(default_factory=dict)


class Corruption(Protocol):
    """Anything that turns a clean batch into a training batch.

    `with_origin=True` asks for `Corrupted.origin` too (for display: the show view); asking
    changes nothing else, not even the random draws.
    """

    def __call__(
        self, batch: Tokens, vocab: Vocab, gen: torch.Generator, *, with_origin: bool = False
    ) -> Corrupted: ...

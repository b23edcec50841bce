"""Training batches: documents -> held-out split -> packed rows -> corrupted batches, by step.

`probe` corrupts a few packed rows once to learn what the objective does (framing, whether token
positions survive, which extras it emits), so the trainer needs no per-objective table:

* position-preserving encoder/decoder objectives (every source token that is not masked stays at
  input position offset + j) pack several documents per row, and `attach_documents` gives the
  model `extras['document_ids']` aligned with the input, so attention stays inside a document;
* objectives that move or insert tokens (NSP, SOP, UniLM) and seq2seq objectives get one
  document chunk per row (BART's complete_doc); `--packing concat` lets T5-style objectives
  cross documents as T5's reference does. Objectives that declare one document per row (CLM,
  prefix LM: one EOS, one prefix split) refuse both documents and concat packing.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from corruptions import (
    IGNORE,
    Corrupted,
    ObjectivesError,
    Op,
    Tokens,
    UsageError,
    get,
    make_generator,
)
from objectives_cli.data.packing import Blocks, TokenStore, encode_corpus, pack
from objectives_cli.data.parallel import default_workers, threads
from objectives_cli.data.prepare import cached
from objectives_cli.data.shards import TOKENIZER, is_prepared, open_prepared
from objectives_cli.data.sources import Skipped, default_corpus, read_documents
from objectives_cli.data.splits import HELDOUT_SHARE, split_heldout
from objectives_cli.data.streams import source_size, throttled
from objectives_cli.data.tokenizer import load_tokenizer, vocab_of

from .config import TrainConfig

BatchFn = Callable[[int, int, int], tuple[Corrupted, int]]
IN_PLACE = (int(Op.KEEP), int(Op.PREDICT), int(Op.CONTEXT))


@dataclass(frozen=True, eq=False)
class Data:
    tok: Any  # tokenizers.Tokenizer
    vocab: Any  # corruptions.Vocab
    train: TokenStore  # packing.Corpus in memory, or a prepared directory's shards.MappedCorpus
    heldout: TokenStore


def load_data(
    cfg: TrainConfig, tokenizer: str | None, say: Callable[[str], None] = lambda text: None
) -> Data:
    """Read, split and tokenise the documents, saying what it does through `say`.

    Three ways, one result: a prepared directory (`objectives data prepare`) is mapped; a large
    source (PREPARE_BYTES or more, or hf:) is prepared into the cache the first time (streamed,
    tokenised by every core) and mapped; the built-in corpus, stdin and smaller files are read
    into memory (their tokens cached on disk). Each gives the same rows for the same text.
    """
    if cfg.data is not None and is_prepared(cfg.data):
        return from_prepared(cfg, cfg.data, tokenizer, say)
    tok = load_tokenizer(tokenizer)
    say(f"reading {cfg.data or 'the built-in corpus'}")
    if cfg.data is not None and large(cfg.data):
        return from_prepared(cfg, prepare_cached(cfg, tok, say), tokenizer, say)
    skipped = Skipped()
    if cfg.eval_data is not None:
        train_docs = read_documents(cfg.data, skipped)
        held_docs = read_documents(cfg.eval_data, skipped)
    elif cfg.data is None:
        train_docs, held_docs = default_corpus("train"), default_corpus("heldout")
    else:
        train_docs, held_docs = split_heldout(read_documents(cfg.data, skipped))
    if skipped.count:
        say(f"warning: {skipped.warning()}")
    size = sum(len(d) for d in train_docs) + sum(len(d) for d in held_docs)
    say(f"{documents_line(len(train_docs), len(held_docs))}, {characters(size)} characters")
    started, tell = time.monotonic(), throttled(PROGRESS_SECONDS, say)

    def progress(done: int, total: int) -> None:
        tell(f"tokenising: {done:,} of {total:,} documents")

    train = encode_corpus(tok, train_docs, progress=progress)
    heldout = encode_corpus(tok, held_docs, progress=progress)
    if time.monotonic() - started >= 1:
        say(f"tokenised in {time.monotonic() - started:.0f} s (cached for the next run)")
    if len(train) == 0:
        raise ObjectivesError("the training documents hold no tokens", "check --data")
    return Data(tok, vocab_of(tok), train, heldout)


PREPARE_BYTES = 1 << 25  # sources this large (32 MiB) are prepared into shards, not read whole


def large(source: str) -> bool:
    """Whether `train --data source` prepares it into shards: hf: datasets (of unknown size)
    and files or directories of PREPARE_BYTES or more."""
    if source.startswith("hf:"):
        return True
    if source == "-" or not Path(source).exists():
        return False
    return source_size(Path(source)) >= PREPARE_BYTES


def documents_line(n_train: int, n_held: int) -> str:
    return f"{n_train:,} training and {n_held:,} held-out documents"


def characters(n: int) -> str:
    return f"{n:,}" if n < 1e6 else f"{n / 1e6:.1f} M"


def prepare_cached(cfg: TrainConfig, tok: Any, say: Callable[[str], None]) -> Path:
    """Prepare --data into the cache (or find it there), saying how it goes."""
    assert cfg.data is not None
    tell = throttled(PROGRESS_SECONDS, say)
    result = cached(
        cfg.data,
        tok.to_str(),
        tok.get_vocab_size(),
        heldout=0.0 if cfg.eval_data is not None else HELDOUT_SHARE,
        workers=default_workers(),
        report=lambda p: tell(f"preparing: {p.line()}"),
        nodes=node_share(),
    )
    if result.restarted:
        say(f"preparing it again from the start: {result.restarted}")
    if not result.done_before:
        p = result.progress
        say(f"prepared {p.tokens:,} tokens in {p.seconds:.0f} s into {result.root} (kept)")
    return result.root


def node_share() -> tuple[int, int] | None:
    """(this machine, machines) under a torchrun of several machines: hf: sources are split
    between them (`datasets.distributed.split_dataset_by_node`)."""
    world, local = int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_WORLD_SIZE", 0))
    if local <= 0 or world <= local:
        return None
    return int(os.environ.get("GROUP_RANK", 0)), world // local


def from_prepared(
    cfg: TrainConfig, root: str | Path, tokenizer: str | None, say: Callable[[str], None]
) -> Data:
    """A prepared directory, mapped: its tokenizer unless --tokenizer names one, which must be
    the same; --eval-data replaces its held-out split."""
    tok_json = None if tokenizer is None else load_tokenizer(tokenizer).to_str()
    prepared = open_prepared(root, tok_json)
    tok = load_tokenizer(Path(root) / TOKENIZER)
    heldout: TokenStore = prepared.heldout
    if cfg.eval_data is not None:
        heldout = eval_corpus(cfg.eval_data, tok)
    train = prepared.train
    say(
        f"{documents_line(train.n_documents, heldout.n_documents)}, "
        f"{len(train) + len(heldout):,} tokens (mapped from {root})"
    )
    skipped = prepared.index.get("skipped", {})
    if skipped.get("count"):
        say(f"warning: {Skipped(skipped['count'], skipped['first']).warning()}")
    return Data(tok, vocab_of(tok), train, heldout)


def eval_corpus(source: str, tok: Any) -> TokenStore:
    """Held-out text: a prepared directory's held-out split (its train split when it has none),
    else the documents of `source`, tokenised in memory."""
    if is_prepared(source):
        prepared = open_prepared(source, tok.to_str())
        return prepared.heldout if len(prepared.heldout) else prepared.train
    return encode_corpus(tok, read_documents(source))


PROGRESS_SECONDS = 5.0  # tokenising progress, at most this often


def alignment(out: Corrupted, batch: Tokens) -> int | None:
    """Offset o such that source token j sits at input position o + j wherever the objective left
    it in place (KEEP/PREDICT/CONTEXT ops); None when it moves tokens or inserts some."""
    if out.decoder_input_ids is not None or out.ops is None:
        return None
    width = batch.ids.size(1)
    in_place = (
        torch.isin(out.ops.long(), torch.tensor(IN_PLACE, device=out.ops.device)) & batch.real
    )
    for offset in (0, 1, 2):
        if out.input_ids.size(1) < width + offset:
            break
        if torch.equal(out.input_ids[:, offset : offset + width][in_place], batch.ids[in_place]):
            return offset
    return None


def attach_documents(out: Corrupted, batch: Tokens, offset: int) -> Corrupted:
    """Add extras['document_ids'] aligned with the input; framing tokens join their neighbours."""
    doc = batch.document_ids
    if doc is None:
        return out
    width = min(doc.size(1), out.input_ids.size(1) - offset)
    aligned = torch.full_like(out.input_ids, -1)
    aligned[:, offset : offset + width] = doc[:, :width]
    aligned[:, :offset] = 0
    return replace(out, extras={**out.extras, "document_ids": aligned.cummax(1).values})


@dataclass(frozen=True)
class ObjectiveInfo:
    """What a probe batch tells about the objective; stored in config.json."""

    name: str
    arch: str  # encoder | decoder | encoder-decoder
    packing: str  # documents | rows | concat
    offset: int  # input position of source token 0 (documents packing)
    frame_prefix: list[int]  # special ids every input starts with ([CLS], <s>)
    frame_suffix: list[int]  # special ids every input ends with ([SEP], </s>; XLNet <sep> <cls>)
    decoder_start: int | None  # first decoder input id (seq2seq)
    prefix: bool  # emits prefix_lengths (prefix LM)
    electra: bool  # generator + discriminator
    # seq2seq decoder inputs before the first scored target, the same in every row (T5 [pad];
    # BART </s> <s>, its <s> unscored); [] when they differ by row (MASS: the token before the
    # fragment); None in runs written before it was probed
    decoder_prefix: list[int] | None = None
    sentinels: bool = False  # inputs mark cut spans with T5's sentinels (t5-span, ul2)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_json(data: dict[str, Any]) -> ObjectiveInfo:
        """Read back `to_json`; fields this version does not know are skipped."""
        known = {f.name for f in fields(ObjectiveInfo)}
        return ObjectiveInfo(**{k: v for k, v in data.items() if k in known})


def is_electra(name: str) -> bool:
    """Objectives that declare ELECTRA's replaced-token detection (`heads=("rtd",)`): their
    batch alone looks like plain MLM."""
    return "rtd" in get(name.split("+")[0]).heads


def probe(cfg: TrainConfig, data: Data, corruption: Any) -> tuple[ObjectiveInfo, Corrupted]:
    """Corrupt a few packed rows to learn the objective's framing, packing and extras."""
    objective = get(cfg.objective.split("+")[0])
    blocks = pack(data.train, cfg.seq_len, "documents", most=8)  # the first rows are enough
    batch = blocks.take(torch.arange(len(blocks)), data.vocab.pad)
    outs = [corruption(batch, data.vocab, make_generator(cfg.seed, "probe", i)) for i in range(3)]
    offsets = {alignment(o, batch) for o in outs}
    offset = offsets.pop() if len(offsets) == 1 else None
    packing = cfg.packing
    if packing == "auto":
        preserving = offset is not None and objective.arch != "encoder-decoder"
        packing = "documents" if preserving and not objective.one_document_per_row else "rows"
    elif packing == "documents" and offset is None:
        raise UsageError(
            f"objective '{cfg.objective}' moves or inserts tokens, so documents cannot share a row",
            "use --packing rows (or concat)",
        )
    elif packing in ("documents", "concat") and objective.one_document_per_row:
        # concat would glue documents with no end of text between them: GPT-2 puts
        # <|endoftext|> there, and this objective's row holds one EOS, at its end
        raise UsageError(
            f"objective '{cfg.objective}' treats each row as one document (one end of text, one "
            f"prefix split), so documents cannot share a row (--packing {packing})",
            "use --packing rows (what auto picks for it)",
        )

    first = outs[0]
    info = ObjectiveInfo(
        name=cfg.objective,
        arch=objective.arch,
        packing=packing,
        offset=offset or 0,
        frame_prefix=framing(outs, data.vocab, at_end=False),
        frame_suffix=framing(outs, data.vocab, at_end=True),
        decoder_start=(
            None if first.decoder_input_ids is None else int(first.decoder_input_ids[0, 0])
        ),
        prefix="prefix_lengths" in first.extras,
        electra=is_electra(cfg.objective),
        decoder_prefix=forced_decoder_prefix(outs),
        sentinels=objective.sentinels,  # from the registry: a sample can draw one by chance
    )
    return info, first


def forced_decoder_prefix(outs: list[Corrupted]) -> list[int] | None:
    """The decoder inputs that every probe row starts with, up to the first column with a
    scored target: what greedy decoding feeds before its first prediction. [] when they differ
    between rows; None for objectives without a decoder input."""
    if any(o.decoder_input_ids is None for o in outs):
        return None
    width = min(o.labels.size(1) for o in outs)
    labels = torch.cat([o.labels[:, :width] for o in outs])
    decoder = torch.cat([o.decoder_input_ids[:, :width] for o in outs])  # type: ignore[index]
    scored = (labels != IGNORE).any(0)
    first = int(scored.int().argmax()) if bool(scored.any()) else width - 1
    head = decoder[:, : first + 1]
    return [int(t) for t in head[0]] if bool((head == head[0]).all()) else []


def framing(outs: list[Corrupted], vocab: Any, at_end: bool, most: int = 3) -> list[int]:
    """The framing ids (bos/[CLS], eos/[SEP]) that open (or close) every input of the probes."""
    found: list[int] = []
    for k in range(most):
        column = []
        for out in outs:
            n = out.attention_mask.sum(1)
            at = (n - 1 - k).clamp(min=0) if at_end else torch.full_like(n, k).minimum(n - 1)
            column.append(out.input_ids.gather(1, at[:, None]).squeeze(1))
        values = torch.cat(column)
        if not (values == values[0]).all() or int(values[0]) not in (vocab.bos, vocab.eos):
            break
        found.append(int(values[0]))
    return found[::-1] if at_end else found


def batch_fn(
    cfg: TrainConfig,
    blocks: Blocks,
    corruption: Any,
    vocab: Any,
    info: ObjectiveInfo,
    device: torch.device,
    world: int,
) -> BatchFn:
    """get_batch(step, micro, rank) -> (batch on device, content tokens), pure in its arguments.

    Rows: one seeded permutation per epoch; step s reads rows [s*R, (s+1)*R) of the epochs laid
    end to end (R rows per step over all ranks), micro-batch m of rank r the slice of shard
    m*world + r. The corruption's generator is make_generator(seed, "train", step, shard): keyed
    by the shard rather than (micro, rank), so 2 ranks x 1 micro-batch see exactly what 1 rank x
    2 micro-batches see.
    """
    n = len(blocks)
    perms: dict[int, Tensor] = {}
    one_thread: Any = threads(1) if device.type == "cpu" else contextlib.nullcontext()

    def order(epoch: int) -> Tensor:
        if epoch not in perms:
            perms.clear()
            perms[epoch] = torch.randperm(n, generator=make_generator(cfg.seed, "epoch", epoch))
        return perms[epoch]

    def get_batch(step: int, micro: int, rank: int) -> tuple[Corrupted, int]:
        shard = micro * world + rank
        first = (step * cfg.grad_accum * world + shard) * cfg.batch_size
        index = torch.arange(first, first + cfg.batch_size)
        epochs = index // n
        rows = torch.cat([order(int(e))[index[epochs == e] % n] for e in epochs.unique()])
        tokens = blocks.take(rows, vocab.pad)
        n_tokens = int(tokens.lengths.sum())
        tokens = tokens.to(device)
        with one_thread:  # a batch's many small ops: a second thread only waits (parallel.py)
            out = corruption(
                tokens, vocab, make_generator(cfg.seed, "train", step, shard, device=device)
            )
        if info.packing == "documents":
            out = attach_documents(out, tokens, info.offset)
        return out, n_tokens

    return get_batch


def eval_batches(
    cfg: TrainConfig,
    blocks: Blocks,
    corruption: Any,
    vocab: Any,
    info: ObjectiveInfo,
    device: torch.device,
    n_batches: int | None = None,
) -> Iterator[Corrupted]:
    """The fixed held-out batches: a seeded choice of rows, corrupted with fixed generators."""
    n = len(blocks)
    count = min(n, (n_batches or cfg.eval_batches) * cfg.batch_size)
    # in the permutation's order: sorted, a batch would hold neighbouring rows of one document,
    # and NSP's "another row" would often be the same document (18% of random Bs, against <1%)
    rows = torch.randperm(n, generator=make_generator(cfg.seed, "eval-rows"))[:count]
    for i, chunk in enumerate(rows.split(cfg.batch_size)):
        tokens = blocks.take(chunk, vocab.pad).to(device)
        out = corruption(tokens, vocab, make_generator(cfg.seed, "eval", i, device=device))
        yield attach_documents(out, tokens, info.offset) if info.packing == "documents" else out


def packed(data: Data, cfg: TrainConfig, info: ObjectiveInfo) -> tuple[Blocks, Blocks]:
    return pack(data.train, cfg.seq_len, info.packing), pack(
        data.heldout, cfg.seq_len, info.packing
    )

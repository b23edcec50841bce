"""Corruption throughput: every registered objective, and Hugging Face collators where one exists.

    pip install -e ".[bench]"            # adds transformers, for the peer columns
    python benchmarks/corruptions.py     # L=128 and 512, B=64, one thread and all threads
    python benchmarks/corruptions.py --objectives 'bert*' --lengths 512 --markdown out.md

Every objective gets the same packed blocks: the default corpus, tokenised with the default
tokenizer, concatenated and cut into full rows of L tokens with their word and sentence starts.
Throughput counts source tokens (B x L) per second of wall time, best of several timed rounds.

The peers run in the same process on the same token ids:
- `hf-mlm`: transformers' DataCollatorForLanguageModeling (mlm_probability 0.15) vs bert-mlm;
- `hf-wwm`: the same collator with whole_word_mask=True (word boundaries given as offsets) vs
  whole-word;
- `hf-plm`: DataCollatorForPermutationLanguageModeling vs xlnet-plm.
Each peer is timed twice: the whole collator call on a list of examples (as a DataLoader feeds
it) and its masking function alone on a ready tensor; the ratio uses the faster of the two, so it
never flatters us.
"""

from __future__ import annotations

import argparse
import fnmatch
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

# run as a script, this file's folder comes first on sys.path and its name would hide the package
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

import corruptions  # noqa: E402
from corruptions import Tokens, Vocab  # noqa: E402
from corruptions.errors import ObjectivesError  # noqa: E402

PEERS = {"bert-mlm": "hf-mlm", "whole-word": "hf-wwm", "xlnet-plm": "hf-plm"}


@dataclass
class Result:
    name: str
    length: int
    threads: int
    tokens_per_s: float
    peer: str = ""
    peer_call: float = 0.0  # tokens/s of the collator called on a list of examples
    peer_core: float = 0.0  # tokens/s of its masking function on a tensor
    error: str = ""  # why the objective failed at this length (it is then not timed)

    @property
    def ratio(self) -> float:
        best = max(self.peer_call, self.peer_core)
        return self.tokens_per_s / best if best else 0.0


def packed_blocks(batch: int, length: int) -> tuple[Tokens, Vocab, object]:
    """`batch` full rows of `length` tokens of the default corpus, with word/sentence starts."""
    from objectives_cli.data.encoding import encode_documents
    from objectives_cli.data.sources import default_corpus
    from objectives_cli.data.tokenizer import load_tokenizer, vocab_of

    tok = load_tokenizer()
    vocab = vocab_of(tok)
    need = batch * length
    ids: list[int] = []
    words: list[bool] = []
    sents: list[bool] = []
    docs = default_corpus("train")
    step = 256
    for start in range(0, len(docs), step):
        for doc in encode_documents(tok, docs[start : start + step]):
            ids += doc.ids
            words += doc.word_starts
            sents += doc.sentence_starts
        if len(ids) >= need:
            break
    if len(ids) < need:
        raise SystemExit(f"the default corpus has {len(ids)} tokens, fewer than {need}")
    shape = (batch, length)
    tokens = Tokens(
        torch.tensor(ids[:need]).view(shape),
        torch.full((batch,), length, dtype=torch.long),
        torch.tensor(words[:need]).view(shape),
        torch.tensor(sents[:need]).view(shape),
    )
    return tokens, vocab, tok


def best_rate(fn: Callable[[], object], n_tokens: int, min_time: float, rounds: int) -> float:
    """Tokens per second of `fn`, best of `rounds` rounds of at least `min_time` seconds each."""
    fn()  # warm-up
    rates = []
    for _ in range(rounds):
        calls, start = 0, time.perf_counter()
        while True:
            fn()
            calls += 1
            elapsed = time.perf_counter() - start
            if elapsed >= min_time:
                break
        rates.append(calls * n_tokens / elapsed)
    return max(rates)


def hf_peers(tok: object, vocab: Vocab, tokens: Tokens) -> dict[str, tuple[Callable, Callable]]:
    """(whole call, masking core) per peer, on the same ids; empty if transformers is missing."""
    try:
        import transformers
        from transformers import (
            DataCollatorForLanguageModeling,
            DataCollatorForPermutationLanguageModeling,
            PreTrainedTokenizerFast,
        )
    except ImportError:
        return {}
    transformers.logging.set_verbosity_error()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )
    ids = tokens.ids
    rows = [{"input_ids": row} for row in ids.tolist()]
    special = vocab.is_special(ids).long()
    starts = tokens.word_starts if tokens.word_starts is not None else torch.ones_like(ids).bool()
    # offsets with a gap before every word start: how the collator recognises words
    begin = torch.arange(ids.size(1)) + starts.long().cumsum(1)
    offsets = torch.stack([begin, begin + 1], dim=-1)
    wwm_rows = [
        {"input_ids": r, "offset_mapping": o, "special_tokens_mask": s}
        for r, o, s in zip(ids.tolist(), offsets.tolist(), special.tolist(), strict=True)
    ]
    mlm = DataCollatorForLanguageModeling(fast, mlm_probability=0.15, seed=0)
    wwm = DataCollatorForLanguageModeling(fast, mlm_probability=0.15, whole_word_mask=True, seed=0)
    plm = DataCollatorForPermutationLanguageModeling(fast, plm_probability=1 / 6, max_span_length=5)
    return {
        "hf-mlm": (
            lambda: mlm(rows),
            lambda: mlm.torch_mask_tokens(ids.clone(), special_tokens_mask=special),
        ),
        "hf-wwm": (
            lambda: wwm(wwm_rows),
            lambda: wwm.torch_mask_tokens(
                ids.clone(), special_tokens_mask=special, offset_mapping=offsets
            ),
        ),
        "hf-plm": (lambda: plm(rows), lambda: plm.torch_mask_tokens(ids.clone())),
    }


def run(args: argparse.Namespace) -> list[Result]:
    names = [n for n in corruptions.available() if fnmatch.fnmatch(n, args.objectives)]
    thread_counts = sorted({1 if t == "1" else os.cpu_count() or 1 for t in args.threads})
    results = []
    for length in args.lengths:
        tokens, vocab, tok = packed_blocks(args.batch, length)
        n_tokens = args.batch * length
        peers = hf_peers(tok, vocab, tokens) if not args.no_peers else {}
        for threads in thread_counts:
            torch.set_num_threads(threads)
            for name in names:
                corrupt = corruptions.create(name)
                gen = corruptions.make_generator(0)
                try:  # one objective that cannot run here (too few sentinels) stops no other
                    rate = best_rate(
                        lambda c=corrupt, g=gen, t=tokens, v=vocab, o=args.with_origin: c(
                            t, v, g, with_origin=o
                        ),
                        n_tokens,
                        args.min_time,
                        args.rounds,
                    )
                except ObjectivesError as exc:
                    results.append(Result(name, length, threads, 0.0, error=str(exc)))
                    print(format_row(results[-1]), file=sys.stderr, flush=True)
                    continue
                result = Result(name, length, threads, rate)
                peer = PEERS.get(name)
                if peer in peers:
                    call, core = peers[peer]
                    result.peer = peer
                    result.peer_call = best_rate(call, n_tokens, args.min_time, args.rounds)
                    result.peer_core = best_rate(core, n_tokens, args.min_time, args.rounds)
                results.append(result)
                print(format_row(result), file=sys.stderr, flush=True)
    return results


def mtok(rate: float) -> str:
    return f"{rate / 1e6:.2f}" if rate else ""


def format_row(r: Result) -> str:
    peer = (
        f"  {r.peer}: call {mtok(r.peer_call)} core {mtok(r.peer_core)} -> {r.ratio:.1f}x"
        if r.peer
        else ""
    )
    rate = mtok(r.tokens_per_s)
    if r.error:
        return f"L={r.length:<4} threads={r.threads}  {r.name:<24}   failed: {r.error}"
    return f"L={r.length:<4} threads={r.threads}  {r.name:<24} {rate:>8} M tok/s{peer}"


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = [f"Python {platform.python_version()}", f"torch {torch.__version__}"]
    try:
        import transformers

        versions.append(f"transformers {transformers.__version__}")
    except ImportError:
        pass
    return f"{cpu}, {os.cpu_count()} logical CPUs; " + ", ".join(versions)


def markdown(results: list[Result], args: argparse.Namespace) -> str:
    lines = [
        f"Machine: {machine()}.",
        f"Command: `python benchmarks/corruptions.py {' '.join(sys.argv[1:])}` "
        f"(B={args.batch}, best of {args.rounds} rounds of >= {args.min_time} s).",
        "",
        "| objective | L | threads | M tokens/s | peer | peer call | peer core | ratio |",
        "|---|---:|---:|---:|---|---:|---:|---:|",
    ]
    for r in results:
        ratio = f"{r.ratio:.1f}x" if r.peer else ""
        if r.error:
            lines.append(f"| {r.name} | {r.length} | {r.threads} | failed: {r.error} | | | | |")
            continue
        lines.append(
            f"| {r.name} | {r.length} | {r.threads} | {mtok(r.tokens_per_s)} | {r.peer} "
            f"| {mtok(r.peer_call)} | {mtok(r.peer_core)} | {ratio} |"
        )
    rates = [
        r.tokens_per_s
        for r in results
        if not r.error
        and r.length == max(args.lengths)
        and r.threads == max(x.threads for x in results)
    ]
    if rates:
        lines += [
            "",
            f"Median over objectives at L={max(args.lengths)}, all threads: "
            f"{statistics.median(rates) / 1e6:.1f} M tokens/s.",
        ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--objectives", default="*", help="glob over objective names")
    parser.add_argument("--lengths", type=int, nargs="+", default=[128, 512])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", nargs="+", default=["1", "all"], choices=["1", "all"])
    parser.add_argument("--min-time", type=float, default=0.3, help="seconds per timed round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-peers", action="store_true", help="skip the transformers collators")
    parser.add_argument("--markdown", type=Path, help="also write the table to this file")
    parser.add_argument(
        "--with-origin",
        action="store_true",
        help="also ask for Corrupted.origin (what the show view reads; training never does)",
    )
    args = parser.parse_args()
    results = run(args)
    table = markdown(results, args)
    print(table)
    if args.markdown:
        args.markdown.write_text(table)


if __name__ == "__main__":
    main()

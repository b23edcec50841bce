"""Corpora larger than memory (issue #13): memory, latency and throughput of the data path,
measured side by side in one run, against Hugging Face `datasets` + `transformers` doing the
same jobs on the same file with the same tokenizer.

    python benchmarks/data_scale.py --sizes 50 500 --markdown out.md    # ~15 min on 2 cores

Corpora are the built-in corpus repeated to each size (MB) in --work (default /tmp), deleted at
the end. Each command runs as a child process; its peak RSS (the largest process, workers
included) and CPU time (user + system, workers included) come from the kernel (`os.wait4`).

- peak RSS of `train` (3 steps of the tiny model on the prepared corpus) and of `corrupt`
  (JSONL, the first --corrupt-examples examples: it streams, so it never holds more) per size;
- seconds to the first JSONL line of `corrupt` on a --first-line-mb file;
- `data prepare` tokens/s with 1 and 2 workers, and `datasets.load_dataset("text")` +
  `.map(tokenizer, batched=True, num_proc=2)` writing Arrow, on the --prepare-mb file; bytes per
  token of the prepared shards;
- `corrupt -o bert-mlm --format jsonl` tokens per CPU-second against `datasets` + the tokenizer +
  `DataCollatorForLanguageModeling`, writing the same fields (ids only, and with the three text
  fields), on the --corrupt-mb file;
- a training step's tokens/s from memory-mapped shards against the in-memory path (a file under
  the 32 MiB threshold), same text;
- one --long-line-mb MB line: seconds and peak RSS of `corrupt --limit 3` and of 3 `train` steps.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OBJECTIVES = [sys.executable, "-c", "from objectives_cli.cli.main import run; run()"]
ENV = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "PYTHONPATH": str(ROOT)}


@dataclass(frozen=True)
class Run:
    """One child process: wall and CPU seconds, peak RSS in MB, its stderr."""

    wall: float
    cpu: float
    rss_mb: float
    stderr: str


def measure(cmd: list[str], stdout: Path | None = None, env: dict | None = None) -> Run:
    """Run `cmd` to the end; its times and peak RSS from the kernel."""
    out = stdout.open("wb") if stdout else subprocess.DEVNULL
    started = time.perf_counter()
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env or ENV, cwd=ROOT)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - started
        err.seek(0)
        text = err.read().decode(errors="replace")
    if stdout:
        out.close()  # type: ignore[union-attr]
    if proc.returncode:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{text[-2000:]}")
    return Run(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, text)


def make_corpus(path: Path, megabytes: float, one_line: bool = False) -> Path:
    """The built-in corpus repeated to `megabytes` MB: documents separated by blank lines, or
    (`one_line`) every space run made one space, a single line. Written a copy at a time: this
    process stays small, since a child's peak RSS counts this process's RSS when it started
    (Linux keeps the high-water mark across exec)."""
    if path.exists() and path.stat().st_size >= megabytes * 1e6:
        return path
    sys.path.insert(0, str(ROOT))
    from objectives_cli.data.sources import default_corpus

    text = "\n\n".join(default_corpus("train")) + "\n\n"
    block = (" ".join(text.split()) + " " if one_line else text).encode()
    with path.open("wb") as f:
        for _ in range(int(-(-megabytes * 1e6 // len(block)))):
            f.write(block)
        if one_line:
            f.write(b"\n")
    return path


def first_line_seconds(path: Path) -> float:
    """Seconds from starting `corrupt` on `path` to its first JSONL line."""
    started = time.perf_counter()
    cmd = [*OBJECTIVES, "corrupt", "-o", "bert-mlm", "--format", "jsonl", str(path)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=ENV)
    assert proc.stdout is not None
    proc.stdout.readline()
    seconds = time.perf_counter() - started
    proc.kill()
    proc.wait()
    return seconds


def prepare(path: Path, out: Path, workers: int) -> tuple[Run, int, int]:
    """`data prepare`: the run, tokens written, bytes of the shards."""
    shutil.rmtree(out, ignore_errors=True)
    cmd = [*OBJECTIVES, "data", "prepare", str(path), "--out", str(out)]
    run = measure([*cmd, "--workers", str(workers)])
    splits = json.loads((out / "index.json").read_text())["splits"].values()
    size = sum(shard["bytes"] for split in splits for shard in split["shards"])
    return run, sum(split["tokens"] for split in splits), size


HF_PREPARE = """
import sys, time
from datasets import load_dataset
from transformers import PreTrainedTokenizerFast
from objectives_cli.data.tokenizer import DEFAULT_TOKENIZER
tok = PreTrainedTokenizerFast(tokenizer_file=str(DEFAULT_TOKENIZER))
ds = load_dataset("text", data_files=sys.argv[1], cache_dir=sys.argv[2], split="train")
ds = ds.map(lambda b: tok(b["text"], add_special_tokens=False), batched=True, num_proc=2,
            remove_columns=["text"])
print(sum(len(x) for x in ds.with_format("arrow")["input_ids"].to_pylist()), file=sys.stderr)
"""


def hf_prepare(path: Path, work: Path) -> tuple[Run, int]:
    """`datasets` text loader + batched map with 2 processes, writing Arrow to a fresh cache.
    (Its token count, read after the map, is in the timing: a second or two.)"""
    cache = work / "hf-cache"
    shutil.rmtree(cache, ignore_errors=True)
    run = measure([sys.executable, "-c", HF_PREPARE, str(path), str(cache)])
    shutil.rmtree(cache, ignore_errors=True)
    return run, int(run.stderr.strip().splitlines()[-1])


HF_CORRUPT = """
import json, sys
from datasets import load_dataset
from transformers import DataCollatorForLanguageModeling, PreTrainedTokenizerFast
from objectives_cli.data.tokenizer import DEFAULT_TOKENIZER
tok = PreTrainedTokenizerFast(tokenizer_file=str(DEFAULT_TOKENIZER), pad_token="[PAD]",
    unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")
ds = load_dataset("text", data_files=sys.argv[1], cache_dir=sys.argv[2], split="train")
ds = ds.map(lambda b: tok(b["text"], truncation=True, max_length=128,
    return_overflowing_tokens=True), batched=True, remove_columns=["text"])
ds = ds.remove_columns([c for c in ds.column_names if c != "input_ids"])
collate = DataCollatorForLanguageModeling(tok, mlm_probability=0.15, seed=0)
text = sys.argv[3] == "text"
out = sys.stdout
for batch in ds.iter(batch_size=16):
    made = collate([{"input_ids": ids} for ids in batch["input_ids"]])
    lens = made["attention_mask"].sum(1).tolist()
    for n, src, ids, labels in zip(lens, batch["input_ids"], made["input_ids"].tolist(),
                                   made["labels"].tolist()):
        row = {"source_ids": src, "input_ids": ids[:n], "labels": labels[:n]}
        if text:
            row["source"] = tok.decode(src)
            row["input"] = tok.decode(ids[:n])
            row["target"] = tok.decode([t for t in labels[:n] if t != -100])
        out.write(json.dumps(row, ensure_ascii=False) + "\\n")
"""


def corrupt_cpu(path: Path, work: Path, text: bool) -> tuple[Run, Run, Run]:
    """CPU seconds of ours (1 and 2 workers) and of the HF pipeline on `path`, writing
    source_ids, input_ids, labels (and source, input, target when `text`)."""
    fields = "source_ids,input_ids,labels" + (",source,input,target" if text else "")
    cmd = [*OBJECTIVES, "corrupt", "-o", "bert-mlm", "--format", "jsonl", "--fields", fields]
    one = measure([*cmd, str(path)], stdout=work / "ours.jsonl")
    two = measure([*cmd, "--workers", "2", str(path)], stdout=work / "ours2.jsonl")
    cache = work / "hf-cache"
    shutil.rmtree(cache, ignore_errors=True)
    mode = "text" if text else "ids"
    hf = measure([sys.executable, "-c", HF_CORRUPT, str(path), str(cache), mode], work / "hf.jsonl")
    shutil.rmtree(cache, ignore_errors=True)
    for name in ("ours.jsonl", "ours2.jsonl", "hf.jsonl"):
        (work / name).unlink()
    return one, two, hf


def train_rss(data: Path, work: Path, steps: int = 3) -> Run:
    """`train` of the tiny model for `steps` steps on `data` (a prepared directory or a file)."""
    out = work / "run"
    shutil.rmtree(out, ignore_errors=True)
    cmd = [*OBJECTIVES, "train", "-o", "bert-mlm", "--data", str(data), "--steps", str(steps)]
    return measure([*cmd, "--seq-len", "128", "--out", str(out)])


def tokens_per_s(run: Run) -> float:
    """The training summary's tokens_per_s (training steps only)."""
    found = re.findall(r"tokens_per_s (\d+)", run.stderr)
    return float(found[-1]) if found else 0.0


def memory_rows(args: argparse.Namespace, work: Path) -> list[str]:
    """Peak RSS of prepare, train and corrupt per corpus size (one table row each)."""
    rows = []
    for size in args.sizes:
        path = make_corpus(work / f"corpus-{size}.txt", size)
        prepared = work / f"prepared-{size}"
        run, tokens, _ = prepare(path, prepared, 2)
        train = train_rss(prepared, work)
        cmd = [*OBJECTIVES, "corrupt", "-o", "bert-mlm", "--format", "jsonl"]
        corrupt = measure([*cmd, "--limit", str(args.corrupt_examples), str(path)])
        rows.append(
            f"| {size:,g} MB | {tokens / 1e6:,.0f} M | {run.rss_mb:,.0f} MB "
            f"| {train.rss_mb:,.0f} MB | {corrupt.rss_mb:,.0f} MB |"
        )
        print(rows[-1], file=sys.stderr, flush=True)
        shutil.rmtree(prepared)
        path.unlink()
    return [
        "| text | tokens | `data prepare` (2 workers) | `train` (3 steps, from the shards) "
        f"| `corrupt` ({args.corrupt_examples:,} examples) |",
        "|---:|---:|---:|---:|---:|",
        *rows,
    ]


def prepare_rows(args: argparse.Namespace, work: Path) -> list[str]:
    """`data prepare` with 1 and 2 workers against datasets' text loader + map(num_proc=2)."""
    path = make_corpus(work / "prepare.txt", args.prepare_mb)
    one, tokens, size = prepare(path, work / "p1", 1)
    two, _, _ = prepare(path, work / "p2", 2)
    hf, hf_tokens = hf_prepare(path, work)
    for out in ("p1", "p2"):
        shutil.rmtree(work / out)
    path.unlink()
    rate = {"one": tokens / one.wall, "two": tokens / two.wall, "hf": hf_tokens / hf.wall}
    return [
        f"`data prepare` on {args.prepare_mb:g} MB ({tokens / 1e6:.1f} M tokens; datasets counts "
        f"{hf_tokens / 1e6:.1f} M):",
        "",
        "| pipeline | wall s | M tokens/s | vs datasets |",
        "|---|---:|---:|---:|",
        f"| data prepare, 1 worker | {one.wall:.1f} | {rate['one'] / 1e6:.2f} "
        f"| {rate['one'] / rate['hf']:.2f}x |",
        f"| data prepare, 2 workers | {two.wall:.1f} | {rate['two'] / 1e6:.2f} "
        f"| {rate['two'] / rate['hf']:.2f}x |",
        f"| load_dataset('text') + map(tokenizer, batched, num_proc=2) | {hf.wall:.1f} "
        f"| {rate['hf'] / 1e6:.2f} | 1.00x |",
        "",
        f"Scaling 1 -> 2 workers: {rate['two'] / rate['one']:.2f}x. On disk: "
        f"{size / tokens:.2f} bytes per token (uint16 ids, word and sentence bits, offsets).",
    ]


def corrupt_rows(args: argparse.Namespace, work: Path) -> list[str]:
    """corrupt's tokens per CPU-second against datasets + tokenizer + the MLM collator."""
    path = make_corpus(work / "corrupt.txt", args.corrupt_mb)
    _, tokens, _ = prepare(path, work / "count", 1)  # the file's token count, for both
    shutil.rmtree(work / "count")
    rows = [
        f"`corrupt -o bert-mlm --format jsonl` on {args.corrupt_mb:g} MB ({tokens / 1e6:.1f} M "
        "tokens), k tokens per CPU-second (wall seconds):",
        "",
        "| fields written | ours, 1 worker | ours, 2 workers | datasets + collator | ratio |",
        "|---|---:|---:|---:|---:|",
    ]
    for text in (False, True):
        one, two, hf = corrupt_cpu(path, work, text)
        what = "source_ids, input_ids, labels" + (" + source, input, target" if text else "")
        rows.append(
            f"| {what} | {tokens / one.cpu / 1e3:,.0f} ({one.wall:.1f} s) | "
            f"{tokens / two.cpu / 1e3:,.0f} ({two.wall:.1f} s) | {tokens / hf.cpu / 1e3:,.0f} "
            f"({hf.wall:.1f} s) | {hf.cpu / one.cpu:.1f}x |"
        )
        print(rows[-1], file=sys.stderr, flush=True)
    path.unlink()
    return rows


def step_rows(args: argparse.Namespace, work: Path) -> list[str]:
    """Training tokens/s from memory-mapped shards against the in-memory path, same text."""
    path = make_corpus(work / "step.txt", args.step_mb)  # under 32 MiB: train reads it whole
    prepared = work / "step-prepared"
    prepare(path, prepared, 2)
    memory = train_rss(path, work, steps=args.steps)
    mapped = train_rss(prepared, work, steps=args.steps)
    shutil.rmtree(prepared)
    path.unlink()
    return [
        f"Training, tiny model, {args.steps} steps of 16 x 128 (tokens/s of the training steps): "
        f"in memory {tokens_per_s(memory):,.0f}, memory-mapped {tokens_per_s(mapped):,.0f} "
        f"({tokens_per_s(mapped) / tokens_per_s(memory):.2f}x).",
    ]


def long_line_rows(args: argparse.Namespace, work: Path) -> list[str]:
    """One document of --long-line-mb MB on one line: `corrupt --limit 3` and 3 `train` steps."""
    path = make_corpus(work / "line.txt", args.long_line_mb, one_line=True)
    cmd = [*OBJECTIVES, "corrupt", "-o", "t5-span", "--format", "jsonl", "--limit", "3"]
    corrupt = measure([*cmd, str(path)])
    env = {**ENV, "XDG_CACHE_HOME": str(work / "cache")}  # prepared into a cache of its own
    out = work / "line-run"
    cmd = [*OBJECTIVES, "train", "-o", "t5-span", "--data", str(path), "--steps", "3"]
    train = measure([*cmd, "--seq-len", "64", "--out", str(out)], env=env)
    shutil.rmtree(work / "cache")
    shutil.rmtree(out)
    path.unlink()
    return [
        f"One {args.long_line_mb:,.0f} MB line (a single document): `corrupt --limit 3` "
        f"{corrupt.wall:.1f} s, peak RSS {corrupt.rss_mb:,.0f} MB; `train --seq-len 64 --steps 3` "
        f"(prepared into the cache first) {train.wall:.1f} s, peak RSS {train.rss_mb:,.0f} MB.",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=float, nargs="+", default=[50, 500], help="MB of text")
    parser.add_argument("--first-line-mb", type=float, default=1000)
    parser.add_argument("--prepare-mb", type=float, default=50)
    parser.add_argument("--corrupt-mb", type=float, default=10)
    parser.add_argument("--corrupt-examples", type=int, default=20000)
    parser.add_argument("--long-line-mb", type=float, default=50)
    parser.add_argument("--step-mb", type=float, default=20, help="under 32: read into memory")
    parser.add_argument("--steps", type=int, default=60, help="training steps timed per path")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--markdown", type=Path, help="also write the results to this file")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="data-scale-", dir=args.work))
    try:
        big = make_corpus(work / "first.txt", args.first_line_mb)
        first = first_line_seconds(big)
        big.unlink()
        lines = [
            f"Load average at the start: {' '.join(f'{x:.1f}' for x in os.getloadavg())}; "
            f"{os.cpu_count()} CPUs.",
            "",
            f"First JSONL line of `corrupt` on a {args.first_line_mb:,.0f} MB file: {first:.2f} s.",
            "",
            *memory_rows(args, work),
            "",
            *prepare_rows(args, work),
            "",
            *corrupt_rows(args, work),
            "",
            *step_rows(args, work),
            "",
            *long_line_rows(args, work),
            "",
            f"Load average at the end: {' '.join(f'{x:.1f}' for x in os.getloadavg())}.",
        ]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    table = "\n".join(lines) + "\n"
    print(table)
    if args.markdown:
        args.markdown.write_text(table)


if __name__ == "__main__":
    main()

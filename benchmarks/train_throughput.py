"""Training-step throughput: our models vs Hugging Face's at equal shapes.

    python benchmarks/train_throughput.py                       # CPU, small shapes
    python benchmarks/train_throughput.py --model base --batch 32 --seq-len 512 --device cuda
    python benchmarks/train_throughput.py --device cuda --compile --json   # JSON line per result

One step = forward, loss, backward, AdamW step (fused where torch has the kernel, as the trainer
uses it), on random ids: BERT-style MLM (15% of positions scored) for the encoders (ours vs
`BertForMaskedLM`), full-sequence denoising (every target token scored, as BART) for the
encoder-decoders (ours vs `BartForConditionalGeneration`). Both sides use the same width, depth,
heads, feed-forward size and vocabulary, no dropout, SDPA attention; on CUDA both run under bf16
autocast; `--compile` wraps both in `torch.compile`. Steps alternate between the two models and
the median step time is reported, so a busy machine hurts both alike. Needs the `bench` extra
(transformers).

FLOPs are counted analytically per step (`train_flops`, in objectives_cli/model/flops.py, which
the trainer logs too): the matmuls of every layer (attention projections, feed-forward,
cross-attention), attention's QK^T and AV over all query-key pairs (causal attention counted in
full, as `torch.utils.flop_counter` counts it), and the output projection (and the MLM
transform) on the rows it runs on; forward x 3 for forward + backward. Embedding lookups, norms,
softmax and the loss are left out (a fraction of a percent).

- own FLOPs: the work each model does. Ours projects only the scored positions onto the
  vocabulary, `BertForMaskedLM` every position, so for the encoders the two differ.
- useful FLOPs (a common definition): the work the objective needs, i.e. the own FLOPs with the
  output projection on the scored positions only. The same number for both sides.
- MFU = FLOPs / step time / peak (`--peak-tflops`, default 989 for an H100's dense bf16; on CUDA
  only, unless a peak is given): own MFU says how busy a model keeps the device with the work it
  chose, useful MFU compares the two sides on equal terms.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout

from corruptions import IGNORE, Corrupted
from objectives_cli.model.config import ModelConfig, preset
from objectives_cli.model.flops import train_flops
from objectives_cli.model.model import Model
from objectives_cli.train.runtime import fused_adamw


def batch_encoder(
    b: int, n: int, vocab: int, gen: torch.Generator, device: str
) -> tuple[Corrupted, dict[str, torch.Tensor]]:
    ids = torch.randint(10, vocab, (b, n), generator=gen)
    chosen = torch.rand(b, n, generator=gen) < 0.15
    labels = ids.masked_fill(~chosen, IGNORE)
    mask = torch.ones_like(ids, dtype=torch.bool)
    ours = Corrupted(ids, mask, labels).to(device)
    theirs = {"input_ids": ids, "attention_mask": mask.long(), "labels": labels}
    return ours, {k: v.to(device) for k, v in theirs.items()}


def batch_seq2seq(
    b: int, n: int, vocab: int, gen: torch.Generator, device: str
) -> tuple[Corrupted, dict[str, torch.Tensor]]:
    ids = torch.randint(10, vocab, (b, n), generator=gen)
    labels = torch.randint(10, vocab, (b, n), generator=gen)
    decoder = torch.cat([torch.full((b, 1), 2), labels[:, :-1]], 1)
    mask = torch.ones_like(ids, dtype=torch.bool)
    ours = Corrupted(ids, mask, labels, decoder).to(device)
    theirs = {
        "input_ids": ids,
        "attention_mask": mask.long(),
        "labels": labels,
        "decoder_input_ids": decoder,
    }
    return ours, {k: v.to(device) for k, v in theirs.items()}


HF_NAMES = {"encoder": "BertForMaskedLM", "encoder-decoder": "BartForConditionalGeneration"}


def hf_model(arch: str, shape: dict[str, int], vocab: int, max_len: int) -> torch.nn.Module:
    import transformers

    d, heads, ff = shape["d_model"], shape["n_heads"], shape["d_ff"]
    if arch == "encoder":
        cfg = transformers.BertConfig(
            vocab_size=vocab,
            hidden_size=d,
            num_hidden_layers=shape["n_layers"],
            num_attention_heads=heads,
            intermediate_size=ff,
            max_position_embeddings=max_len,
            hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0,
        )
        return transformers.BertForMaskedLM._from_config(cfg, attn_implementation="sdpa")
    cfg = transformers.BartConfig(
        vocab_size=vocab,
        d_model=d,
        encoder_layers=shape["n_layers"],
        decoder_layers=shape["n_decoder_layers"],
        encoder_attention_heads=heads,
        decoder_attention_heads=heads,
        encoder_ffn_dim=ff,
        decoder_ffn_dim=ff,
        max_position_embeddings=max_len,
        dropout=0.0,
        attention_dropout=0.0,
        activation_dropout=0.0,
    )
    return transformers.BartForConditionalGeneration._from_config(cfg, attn_implementation="sdpa")


def our_loss(model: torch.nn.Module, batch: Corrupted) -> torch.Tensor:
    """Sum of the per-term mean cross-entropies, as the Hugging Face models compute their loss."""
    total = torch.zeros((), device=batch.input_ids.device)
    for logits, targets in model(batch).values():
        total = total + F.cross_entropy(logits.float(), targets)
    return total


def stepper(
    model: torch.nn.Module, loss: Callable[[], torch.Tensor], device: str
) -> Callable[[], float]:
    """One timed training step (seconds) of `model` on the loss `loss()` computes."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=fused_adamw(torch.device(device)))
    amp = torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda")

    def step() -> float:
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        with amp:
            value = loss()
        value.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if device == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    return step


def compare(arch: str, args: argparse.Namespace) -> dict[str, Any]:
    """Time both models on one batch; throughput, FLOPs per step and (with a peak) MFU."""
    shape = preset(args.model, arch)
    vocab, n, b, device = args.vocab, args.seq_len, args.batch, args.device
    torch.manual_seed(0)
    ours = Model(ModelConfig(arch=arch, vocab_size=vocab, max_len=max(n, 64), **shape)).to(device)
    theirs = hf_model(arch, shape, vocab, max(n, 64)).to(device).train()
    gen = torch.Generator().manual_seed(0)
    make = batch_encoder if arch == "encoder" else batch_seq2seq
    mine, hf = make(b, n, vocab, gen, device)
    run_ours, run_theirs = (torch.compile(m) if args.compile else m for m in (ours, theirs))
    steps = {
        "ours": stepper(ours, lambda: our_loss(run_ours, mine), device),
        "transformers": stepper(theirs, lambda: run_theirs(**hf).loss, device),
    }
    times: dict[str, list[float]] = {k: [] for k in steps}
    for i in range(args.warmup + args.steps):
        for name, step in steps.items():
            t = step()
            if i >= args.warmup:
                times[name].append(t)
    tgt_len = 0 if arch == "encoder" else n
    tokens = b * (n + tgt_len)  # source (+ target) tokens per step
    scored = int((mine.labels != IGNORE).sum())
    every = b * (tgt_len or n)  # rows a head on every position projects
    useful = train_flops(arch, shape, vocab, b, n, tgt_len, scored)
    own = {"ours": useful, "transformers": train_flops(arch, shape, vocab, b, n, tgt_len, every)}
    layers = (
        f"{shape['n_layers']}+{shape['n_decoder_layers']}" if tgt_len else str(shape["n_layers"])
    )
    out: dict[str, Any] = {
        "arch": arch,
        "transformers_model": HF_NAMES[arch],
        "shape": f"{layers} layers x {shape['d_model']}",
        "batch": b,
        "seq_len": n,
        "device": device,
        "compile": args.compile,
        "useful_flops_per_step": useful,
    }
    peak = args.peak_tflops or (989.0 if device == "cuda" else 0.0)
    for name, model in (("ours", ours), ("transformers", theirs)):
        median = statistics.median(times[name])
        out[f"{name}_step_ms"] = median * 1e3
        out[f"{name}_tokens_per_s"] = tokens / median
        out[f"{name}_params"] = sum(p.numel() for p in model.parameters())
        out[f"{name}_flops_per_step"] = own[name]
        out[f"{name}_tflops_per_s"] = own[name] / median / 1e12
        if peak:
            out[f"{name}_mfu"] = own[name] / median / (peak * 1e12)
            out[f"{name}_useful_mfu"] = useful / median / (peak * 1e12)
    return out


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
    except OSError:
        names = []
    return names[0] if names else platform.processor() or platform.machine()


def machine(device: str) -> str:
    import transformers

    if device == "cuda":
        where = torch.cuda.get_device_name()
    else:
        where = f"{cpu_name()}, {torch.get_num_threads()} threads"
    return (
        f"{where}; Python {platform.python_version()}, torch {torch.__version__}, "
        f"transformers {transformers.__version__}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="small", choices=["tiny", "small", "base"])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--vocab", type=int, default=8000)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps (compilation too)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--peak-tflops",
        type=float,
        default=0.0,
        help="device peak for MFU (default: 989, an H100's dense bf16, on CUDA)",
    )
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    parser.add_argument("--compile", action="store_true", help="torch.compile both models")
    parser.add_argument("--json", action="store_true", help="one JSON line per result")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    where = machine(args.device)
    mfu = bool(args.peak_tflops) or args.device == "cuda"
    if not args.json:
        print(f"machine: {where}" + ("; torch.compile" if args.compile else ""))
        print(
            "| model | shape | batch | ours tokens/s | transformers tokens/s | ratio |"
            + (" ours MFU (useful) | transformers MFU (useful) |" if mfu else "")
        )
        print("|---|---|---|---|---|---|" + ("---|---|" if mfu else ""))
    for arch in HF_NAMES:
        r = compare(arch, args)
        if args.json:
            print(json.dumps({**r, "machine": where}), flush=True)
            continue
        row = (
            f"| {arch} vs {r['transformers_model']} | {r['shape']} | {r['batch']} x "
            f"{r['seq_len']} | {r['ours_tokens_per_s']:,.0f} | "
            f"{r['transformers_tokens_per_s']:,.0f} | "
            f"{r['ours_tokens_per_s'] / r['transformers_tokens_per_s']:.2f} |"
        )
        if mfu:
            row += "".join(
                f" {r[f'{k}_mfu']:.1%} ({r[f'{k}_useful_mfu']:.1%}) |"
                for k in ("ours", "transformers")
            )
        print(row, flush=True)


if __name__ == "__main__":
    main()

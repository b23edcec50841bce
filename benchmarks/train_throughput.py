"""Training-step throughput: our models vs Hugging Face's at equal shapes.

    python benchmarks/train_throughput.py                       # CPU, small shapes
    python benchmarks/train_throughput.py --model base --batch 32 --seq-len 512 --device cuda

One step = forward, loss, backward, AdamW step, on random ids: BERT-style MLM (15% of positions
scored) for the encoders (ours vs `BertForMaskedLM`), full-sequence denoising (every target
token scored, as BART) for the encoder-decoders (ours vs `BartForConditionalGeneration`). Both
sides use the same width, depth, heads, feed-forward size and vocabulary, no dropout, SDPA
attention; on CUDA both run under bf16 autocast, and MFU is reported from 6 x parameters x tokens
(+ attention) against the GPU's peak (`--peak-tflops`, default 989 for an H100's dense bf16).
Steps alternate between the two models and the median step time is reported, so a busy machine
hurts both alike. Needs the `bench` extra (transformers).
"""

from __future__ import annotations

import argparse
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
from objectives_cli.models import Model, ModelConfig, param_counts, preset


def batch_encoder(b: int, n: int, vocab: int, gen: torch.Generator, device: str
                  ) -> tuple[Corrupted, dict[str, torch.Tensor]]:
    ids = torch.randint(10, vocab, (b, n), generator=gen)
    chosen = torch.rand(b, n, generator=gen) < 0.15
    labels = ids.masked_fill(~chosen, IGNORE)
    mask = torch.ones_like(ids, dtype=torch.bool)
    ours = Corrupted(ids, mask, labels).to(device)
    theirs = {"input_ids": ids, "attention_mask": mask.long(), "labels": labels}
    return ours, {k: v.to(device) for k, v in theirs.items()}


def batch_seq2seq(b: int, n: int, vocab: int, gen: torch.Generator, device: str
                  ) -> tuple[Corrupted, dict[str, torch.Tensor]]:
    ids = torch.randint(10, vocab, (b, n), generator=gen)
    labels = torch.randint(10, vocab, (b, n), generator=gen)
    decoder = torch.cat([torch.full((b, 1), 2), labels[:, :-1]], 1)
    mask = torch.ones_like(ids, dtype=torch.bool)
    ours = Corrupted(ids, mask, labels, decoder).to(device)
    theirs = {"input_ids": ids, "attention_mask": mask.long(), "labels": labels,
              "decoder_input_ids": decoder}
    return ours, {k: v.to(device) for k, v in theirs.items()}


def hf_model(arch: str, shape: dict[str, int], vocab: int, max_len: int) -> torch.nn.Module:
    import transformers

    d, heads, ff = shape["d_model"], shape["n_heads"], shape["d_ff"]
    if arch == "encoder":
        cfg = transformers.BertConfig(
            vocab_size=vocab, hidden_size=d, num_hidden_layers=shape["n_layers"],
            num_attention_heads=heads, intermediate_size=ff, max_position_embeddings=max_len,
            hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
        return transformers.BertForMaskedLM._from_config(cfg, attn_implementation="sdpa")
    cfg = transformers.BartConfig(
        vocab_size=vocab, d_model=d, encoder_layers=shape["n_layers"],
        decoder_layers=shape["n_decoder_layers"], encoder_attention_heads=heads,
        decoder_attention_heads=heads, encoder_ffn_dim=ff, decoder_ffn_dim=ff,
        max_position_embeddings=max_len, dropout=0.0, attention_dropout=0.0,
        activation_dropout=0.0)
    return transformers.BartForConditionalGeneration._from_config(cfg, attn_implementation="sdpa")


def our_loss(model: Model, batch: Corrupted) -> torch.Tensor:
    total = torch.zeros((), device=batch.input_ids.device)
    for logits, targets in model(batch).values():
        total = total + F.cross_entropy(logits.float(), targets)
    return total


def stepper(model: torch.nn.Module, loss: Callable[[], torch.Tensor], device: str
            ) -> Callable[[], float]:
    fused = {"fused": True} if device == "cuda" else {}
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, **fused)
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


def flops_per_token(params: int, layers: int, d: int, n: int) -> float:
    """Training FLOPs per token: 6 N for the weights plus 12 x layers x d x n for attention."""
    return 6 * params + 12 * layers * d * n


def compare(arch: str, args: argparse.Namespace) -> dict[str, Any]:
    shape = preset(args.model, arch)
    vocab, n, b, device = args.vocab, args.seq_len, args.batch, args.device
    torch.manual_seed(0)
    ours = Model(ModelConfig(arch=arch, vocab_size=vocab, max_len=max(n, 64), **shape)).to(device)
    theirs = hf_model(arch, shape, vocab, max(n, 64)).to(device).train()
    gen = torch.Generator().manual_seed(0)
    make = batch_encoder if arch == "encoder" else batch_seq2seq
    mine, hf = make(b, n, vocab, gen, device)
    steps = {"ours": stepper(ours, lambda: our_loss(ours, mine), device),
             "transformers": stepper(theirs, lambda: theirs(**hf).loss, device)}
    times: dict[str, list[float]] = {k: [] for k in steps}
    for i in range(args.warmup + args.steps):
        for name, step in steps.items():
            t = step()
            if i >= args.warmup:
                times[name].append(t)
    tokens = b * n * (1 if arch == "encoder" else 2)  # source (+ target) tokens per step
    layers = shape["n_layers"] + shape["n_decoder_layers"]
    out: dict[str, Any] = {"arch": arch, "shape": f"{layers} layers x {shape['d_model']}",
                           "batch": f"{b} x {n}"}
    for name, model in (("ours", ours), ("transformers", theirs)):
        median = statistics.median(times[name])
        out[f"{name}_tokens_per_s"] = tokens / median
        out[f"{name}_params"] = sum(p.numel() for p in model.parameters())
        if device == "cuda":
            flops = flops_per_token(param_counts(ours)["total"], layers, shape["d_model"], n)
            out[f"{name}_mfu"] = flops * tokens / median / (args.peak_tflops * 1e12)
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
    return (f"{where}; Python {platform.python_version()}, torch {torch.__version__}, "
            f"transformers {transformers.__version__}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="small", choices=["tiny", "small", "base"])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--vocab", type=int, default=8000)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--peak-tflops", type=float, default=989.0)
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"machine: {machine(args.device)}")
    print("| model | shape | batch | ours tokens/s | transformers tokens/s | ratio |"
          + (" ours MFU | transformers MFU |" if args.device == "cuda" else ""))
    print("|---|---|---|---|---|---|" + ("---|---|" if args.device == "cuda" else ""))
    for arch in ("encoder", "encoder-decoder"):
        r = compare(arch, args)
        hf_name = "BertForMaskedLM" if arch == "encoder" else "BartForConditionalGeneration"
        row = (f"| {arch} vs {hf_name} | {r['shape']} | {r['batch']} | "
               f"{r['ours_tokens_per_s']:,.0f} | {r['transformers_tokens_per_s']:,.0f} | "
               f"{r['ours_tokens_per_s'] / r['transformers_tokens_per_s']:.2f} |")
        if args.device == "cuda":
            row += f" {r['ours_mfu']:.1%} | {r['transformers_mfu']:.1%} |"
        print(row, flush=True)


if __name__ == "__main__":
    main()

"""The weights of a run under the names of the stock transformers class whose math is the
model's (see export.py for the choice of classes): a renaming, with the fused qkv weight split,
GPT-2's Conv1D weights transposed, and the shared position table copied to both sides of an
encoder-decoder; what has no counterpart is left out, with a note.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from corruptions import UsageError

from .inference import LoadedRun


@dataclass
class Target:
    """A transformers class, its config and the weights under its names."""

    architecture: str
    config_class: str
    auto_class: str
    config: dict[str, Any]
    weights: dict[str, Tensor]
    tied: set[str] = field(default_factory=set)  # names transformers ties on load
    notes: list[str] = field(default_factory=list)
    generation: dict[str, Any] | None = None  # generation_config.json of a generative model


def target(run: LoadedRun) -> Target:
    """The stock class and weights for `run`'s model."""
    cfg = run.model.cfg
    if cfg.positions != "learned":
        raise UsageError(
            "a model with rotary positions has no stock transformers twin with the same math",
            "train with --positions learned to export (GPT-NeoX-style rotary is not mapped yet)",
        )
    if cfg.embed_norm:
        raise UsageError("a model with an embedding LayerNorm cannot be exported yet")
    state = {k: v.detach().float().clone() for k, v in run.model.state_dict().items()}
    if cfg.arch == "encoder":
        return encoder_target(run, state)
    if cfg.arch == "decoder":
        return decoder_target(run, state)
    return seq2seq_target(run, state)


def split(t: Tensor, n: int) -> list[Tensor]:
    return [c.clone() for c in t.chunk(n, dim=0)]


def encoder_target(run: LoadedRun, s: dict[str, Tensor]) -> Target:
    cfg, vocab = run.model.cfg, run.vocab
    d = cfg.d_model
    types = s.get("embed.types.weight", torch.zeros(2, d))
    w = {
        "embeddings.word_embeddings.weight": s["embed.tokens.weight"],
        "embeddings.position_embeddings.weight": s["embed.positions.weight"],
        "embeddings.token_type_embeddings.weight": types,
        "encoder.ln.weight": s["encoder.ln_f.weight"],
        "encoder.ln.bias": s["encoder.ln_f.bias"],
    }
    for i in range(cfg.n_layers):
        ours, theirs = f"encoder.blocks.{i}.", f"encoder.layer.{i}."
        for part in ("weight", "bias"):
            q, k, v = split(s[f"{ours}attn.qkv.{part}"], 3)
            w |= {
                f"{theirs}attention.ln.{part}": s[f"{ours}ln1.{part}"],
                f"{theirs}attention.self.query.{part}": q,
                f"{theirs}attention.self.key.{part}": k,
                f"{theirs}attention.self.value.{part}": v,
                f"{theirs}attention.output.dense.{part}": s[f"{ours}attn.proj.{part}"],
                f"{theirs}ln.{part}": s[f"{ours}ln2.{part}"],
                f"{theirs}intermediate.dense.{part}": s[f"{ours}mlp.0.{part}"],
                f"{theirs}output.dense.{part}": s[f"{ours}mlp.2.{part}"],
            }
    config = {
        "vocab_size": cfg.vocab_size,
        "hidden_size": d,
        "num_hidden_layers": cfg.n_layers,
        "num_attention_heads": cfg.n_heads,
        "intermediate_size": cfg.d_ff,
        "hidden_act": "gelu",
        "max_position_embeddings": cfg.max_len,
        "type_vocab_size": types.size(0),
        "layer_norm_eps": 1e-5,
        "hidden_dropout_prob": cfg.dropout,
        "attention_probs_dropout_prob": cfg.dropout,
        "pad_token_id": vocab.pad,
    }
    notes = []
    if cfg.sbo:
        notes.append("SpanBERT's span boundary (SBO) head has no transformers twin: left out")
    if cfg.electra or cfg.two_stream:
        what = (
            "ELECTRA's generator and replaced-token head"
            if cfg.electra
            else ("XLNet's query stream and its MLM head (no transform layer)")
        )
        notes.append(
            f"{what} have no transformers twin: the encoder body is exported alone "
            "(its pooler is untrained: zeros)"
        )
        w |= {"pooler.dense.weight": torch.zeros(d, d), "pooler.dense.bias": torch.zeros(d)}
        return Target(
            "MegatronBertModel", "MegatronBertConfig", "AutoModel", config, w, notes=notes
        )
    head = {
        "cls.predictions.transform.dense.weight": s["mlm.dense.weight"],
        "cls.predictions.transform.dense.bias": s["mlm.dense.bias"],
        "cls.predictions.transform.LayerNorm.weight": s["mlm.ln.weight"],
        "cls.predictions.transform.LayerNorm.bias": s["mlm.ln.bias"],
        "cls.predictions.bias": s["mlm.bias"],
        "cls.predictions.decoder.bias": s["mlm.bias"].clone(),
    }
    tied = {"cls.predictions.decoder.weight"}
    weights = {f"bert.{k}": v for k, v in w.items()} | head
    if cfg.classifier:  # NSP / SOP: BERT's pooler and its 2-way head
        weights |= {
            "bert.pooler.dense.weight": s["classifier.pool.weight"],
            "bert.pooler.dense.bias": s["classifier.pool.bias"],
            "cls.seq_relationship.weight": s["classifier.out.weight"],
            "cls.seq_relationship.bias": s["classifier.out.bias"],
        }
        architecture, auto = "MegatronBertForPreTraining", "AutoModelForPreTraining"
    else:
        architecture, auto = "MegatronBertForMaskedLM", "AutoModelForMaskedLM"
    return Target(architecture, "MegatronBertConfig", auto, config, weights, tied, notes)


def decoder_target(run: LoadedRun, s: dict[str, Tensor]) -> Target:
    cfg, vocab = run.model.cfg, run.vocab
    if cfg.lm_bias:
        raise UsageError(
            "this run's decoder has an output bias, which GPT-2 lacks (runs before decoders "
            "dropped it), so no stock class has its math",
            "train the run again with this version to export it",
        )
    w = {
        "transformer.wte.weight": s["embed.tokens.weight"],
        "transformer.wpe.weight": s["embed.positions.weight"],
        "transformer.ln_f.weight": s["decoder.ln_f.weight"],
        "transformer.ln_f.bias": s["decoder.ln_f.bias"],
    }
    for i in range(cfg.n_layers):
        ours, theirs = f"decoder.blocks.{i}.", f"transformer.h.{i}."
        for part in ("weight", "bias"):
            conv = (lambda t: t.t().contiguous()) if part == "weight" else (lambda t: t)
            w |= {
                f"{theirs}ln_1.{part}": s[f"{ours}ln1.{part}"],
                f"{theirs}attn.c_attn.{part}": conv(s[f"{ours}attn.qkv.{part}"]),
                f"{theirs}attn.c_proj.{part}": conv(s[f"{ours}attn.proj.{part}"]),
                f"{theirs}ln_2.{part}": s[f"{ours}ln2.{part}"],
                f"{theirs}mlp.c_fc.{part}": conv(s[f"{ours}mlp.0.{part}"]),
                f"{theirs}mlp.c_proj.{part}": conv(s[f"{ours}mlp.2.{part}"]),
            }
    config = {
        "vocab_size": cfg.vocab_size,
        "n_embd": cfg.d_model,
        "n_layer": cfg.n_layers,
        "n_head": cfg.n_heads,
        "n_inner": cfg.d_ff,
        "n_positions": cfg.max_len,
        "activation_function": "gelu",
        "layer_norm_epsilon": 1e-5,
        "resid_pdrop": cfg.dropout,
        "embd_pdrop": cfg.dropout,
        "attn_pdrop": cfg.dropout,
        "bos_token_id": vocab.bos,
        "eos_token_id": vocab.eos,
        "pad_token_id": vocab.pad,
    }
    notes = []
    if run.info.prefix:
        notes.append(
            "GPT-2 attends causally everywhere: the prefix LM's bidirectional prefix "
            "is not reproduced (logits match on causal inputs)"
        )
    generation = {
        "bos_token_id": vocab.bos,
        "eos_token_id": vocab.eos,
        "pad_token_id": vocab.pad,
        "max_length": cfg.max_len,
    }
    return Target(
        "GPT2LMHeadModel",
        "GPT2Config",
        "AutoModelForCausalLM",
        config,
        w,
        {"lm_head.weight"},
        notes,
        generation,
    )


def seq2seq_target(run: LoadedRun, s: dict[str, Tensor]) -> Target:
    cfg, vocab, info = run.model.cfg, run.vocab, run.info
    table = s["embed.tokens.weight"]
    w = {
        "model.shared.weight": table,
        "model.encoder.embed_tokens.weight": table.clone(),
        "model.decoder.embed_tokens.weight": table.clone(),
        "model.encoder.embed_positions.weight": s["embed.positions.weight"],
        "model.decoder.embed_positions.weight": s["embed.positions.weight"].clone(),
        "model.encoder.layer_norm.weight": s["encoder.ln_f.weight"],
        "model.encoder.layer_norm.bias": s["encoder.ln_f.bias"],
        "model.decoder.layer_norm.weight": s["decoder.ln_f.weight"],
        "model.decoder.layer_norm.bias": s["decoder.ln_f.bias"],
        "final_logits_bias": s.get("lm_bias", torch.zeros(cfg.vocab_size))[None],
    }
    for side, n in (("encoder", cfg.n_layers), ("decoder", cfg.n_decoder_layers)):
        for i in range(n):
            ours, theirs = f"{side}.blocks.{i}.", f"model.{side}.layers.{i}."
            for part in ("weight", "bias"):
                q, k, v = split(s[f"{ours}attn.qkv.{part}"], 3)
                w |= {
                    f"{theirs}self_attn_layer_norm.{part}": s[f"{ours}ln1.{part}"],
                    f"{theirs}self_attn.q_proj.{part}": q,
                    f"{theirs}self_attn.k_proj.{part}": k,
                    f"{theirs}self_attn.v_proj.{part}": v,
                    f"{theirs}self_attn.out_proj.{part}": s[f"{ours}attn.proj.{part}"],
                    f"{theirs}final_layer_norm.{part}": s[f"{ours}ln2.{part}"],
                    f"{theirs}fc1.{part}": s[f"{ours}mlp.0.{part}"],
                    f"{theirs}fc2.{part}": s[f"{ours}mlp.2.{part}"],
                }
                if side == "decoder":
                    ck, cv = split(s[f"{ours}cross.kv.{part}"], 2)
                    w |= {
                        f"{theirs}encoder_attn_layer_norm.{part}": s[f"{ours}ln_cross.{part}"],
                        f"{theirs}encoder_attn.q_proj.{part}": s[f"{ours}cross.q.{part}"],
                        f"{theirs}encoder_attn.k_proj.{part}": ck,
                        f"{theirs}encoder_attn.v_proj.{part}": cv,
                        f"{theirs}encoder_attn.out_proj.{part}": s[f"{ours}cross.proj.{part}"],
                    }
    prefix = info.decoder_prefix or [
        info.decoder_start if info.decoder_start is not None else vocab.pad
    ]
    config = {
        "vocab_size": cfg.vocab_size,
        "d_model": cfg.d_model,
        "encoder_layers": cfg.n_layers,
        "decoder_layers": cfg.n_decoder_layers,
        "encoder_attention_heads": cfg.n_heads,
        "decoder_attention_heads": cfg.n_heads,
        "encoder_ffn_dim": cfg.d_ff,
        "decoder_ffn_dim": cfg.d_ff,
        "activation_function": "gelu",
        "max_position_embeddings": cfg.max_len,
        "scale_embedding": False,
        "dropout": cfg.dropout,
        "attention_dropout": cfg.dropout,
        "activation_dropout": 0.0,
        "pad_token_id": vocab.pad,
        "bos_token_id": vocab.bos,
        "eos_token_id": vocab.eos,
        "decoder_start_token_id": prefix[0],
        "forced_eos_token_id": None,  # Blenderbot's defaults; the project's decoding has none
        "encoder_no_repeat_ngram_size": 0,
        "no_repeat_ngram_size": 0,
    }
    generation = {
        "decoder_start_token_id": prefix[0],
        "forced_bos_token_id": prefix[1] if len(prefix) > 1 else None,
        "bos_token_id": vocab.bos,
        "eos_token_id": vocab.eos,
        "pad_token_id": vocab.pad,
        "max_length": cfg.max_len,
    }
    notes = []
    if cfg.cross_hide >= 0:
        notes.append(
            "MASS hides the encoder's [MASK] positions from the decoder's cross-attention, "
            "which Blenderbot cannot: outputs equal the run's for inputs without [MASK] only"
        )
    return Target(
        "BlenderbotForConditionalGeneration",
        "BlenderbotConfig",
        "AutoModelForSeq2SeqLM",
        config,
        w,
        {
            "lm_head.weight",
            "model.encoder.embed_tokens.weight",
            "model.decoder.embed_tokens.weight",
        },
        notes,
        generation,
    )

"""The models every objective trains: one pre-LayerNorm Transformer block, three shapes, heads.

`Model(cfg)` is an encoder, a decoder or an encoder-decoder (the registry's `arch`) built from the
same `Block` (pre-LN, GELU, attention through `F.scaled_dot_product_attention`), with learned or
rotary positions and input/output embeddings tied. Which heads it carries follows from what the
objective emits (see `heads_for`): MLM (dense+GELU+LN, tied projection), SpanBERT's span boundary
head, the NSP/SOP classifier, XLNet's two-stream attention, ELECTRA's generator + discriminator.

`forward(batch)` returns, per loss term, the logits at the scored positions and their targets; the
trainer computes every loss the same way (`train.term_losses`). Heads run only on scored positions
(gather first, then project), so an MLM batch never builds a (B, S, V) tensor.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from corruptions import IGNORE, Corrupted

ARCHS = ("encoder", "decoder", "encoder-decoder")
POSITIONS = ("learned", "rotary")
LOSS_WEIGHTS: Mapping[str, float] = {"rtd": 50.0}  # ELECTRA's disc_weight; every other term 1.0
TYPE_ROWS = 8  # segment-embedding rows: UniLM's new_segment_ids use 0..5
CLASSIFIER_KEYS = {"next_sentence_label": "nsp", "sentence_order_label": "sop"}

# name -> (d_model, n_heads, d_ff, encoder/decoder layers, layers per side of an encoder-decoder)
PRESETS: Mapping[str, tuple[int, int, int, int, int]] = {
    "tiny": (64, 2, 256, 2, 2),  # tests and CPU demos
    "small": (512, 8, 2048, 6, 3),
    "base": (768, 12, 3072, 12, 6),  # BERT-base / GPT-2 small 12x768; BART-base 6+6x768
}

Head = tuple[Tensor, Tensor]  # (logits (N, C) or (N,) for a binary term, targets (N,))


@dataclass(frozen=True)
class ModelConfig:
    """Shape of a model; stored with every checkpoint."""

    arch: str  # encoder | decoder | encoder-decoder
    vocab_size: int  # rows of the (tied) embedding table
    d_model: int = 64  # hidden width
    n_heads: int = 2  # attention heads
    d_ff: int = 256  # feed-forward width
    n_layers: int = 2  # encoder layers (decoder layers for arch=decoder)
    n_decoder_layers: int = 0  # decoder layers of an encoder-decoder
    max_len: int = 512  # positions the learned table covers (tokens)
    positions: str = "learned"  # learned | rotary
    dropout: float = 0.0  # on embeddings, attention and residual branches
    token_types: int = 0  # segment-embedding rows (0: the objective emits no token_type_ids)
    sbo: bool = False  # SpanBERT span boundary head
    classifier: str = ""  # "nsp" or "sop": pooled first-token 2-way head
    two_stream: bool = False  # XLNet content + query streams
    electra: bool = False  # generator + replaced-token discriminator
    generator_ratio: float = 0.25  # ELECTRA generator width / discriminator width (small, large)
    sbo_offsets: int = 15  # SpanBERT: SBO targets per span (max_pair_targets)
    sbo_dim: int = 200  # SpanBERT: width of the offset embedding (pair_positional_embedding_size)
    cross_hide: int = -1  # MASS: encoder positions holding this id are hidden from the decoder

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise ValueError(f"arch must be one of {ARCHS}, not {self.arch!r}")
        if self.positions not in POSITIONS:
            raise ValueError(f"positions must be one of {POSITIONS}, not {self.positions!r}")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model {self.d_model} is not divisible by n_heads {self.n_heads}")
        if self.positions == "rotary" and (self.d_model // self.n_heads) % 2:
            raise ValueError("rotary positions need an even head width")


def preset(name: str, arch: str) -> dict[str, int]:
    """The shape fields of preset `name` for `arch`."""
    if name not in PRESETS:
        raise ValueError(f"unknown model preset {name!r}; known: {', '.join(PRESETS)}")
    d, heads, ff, layers, per_side = PRESETS[name]
    if arch == "encoder-decoder":
        return {
            "d_model": d,
            "n_heads": heads,
            "d_ff": ff,
            "n_layers": per_side,
            "n_decoder_layers": per_side,
        }
    return {"d_model": d, "n_heads": heads, "d_ff": ff, "n_layers": layers, "n_decoder_layers": 0}


def heads_for(
    arch: str, batch: Corrupted, electra: bool = False, mask_id: int = -1
) -> dict[str, object]:
    """The head fields of `ModelConfig` that a batch of this objective needs.

    Read from the standard `extras` keys (corruptions/types.py), so a new objective that emits
    them trains with no change here; `electra` comes from the registry (`heads`).
    A seq2seq objective that places decoder tokens (`decoder_position_ids`, MASS) also hides the
    encoder's `mask_id` positions from cross-attention, as MASS does.
    """
    ex = batch.extras
    types = int(ex["token_type_ids"].max()) + 1 if "token_type_ids" in ex else 0
    classifier = next((name for key, name in CLASSIFIER_KEYS.items() if key in ex), "")
    encoder = arch == "encoder"
    return {
        "token_types": max(types, TYPE_ROWS) if types else 0,
        "sbo": encoder and "span_offset" in ex,
        "classifier": classifier if encoder else "",
        "two_stream": encoder and "perm_rank" in ex,
        "electra": encoder and electra,
        "cross_hide": mask_id if arch == "encoder-decoder" and "decoder_position_ids" in ex else -1,
    }


# --- attention masks ---------------------------------------------------------------------------


class Mask(NamedTuple):
    """How one attention call may look: a bool mask (True = may attend) or SDPA's causal path."""

    allowed: Tensor | None  # (B, 1, S, S) or (B, 1, 1, S) bool
    causal: bool = False  # SDPA is_causal fast path (allowed is None)
    empty: Tensor | None = None  # (B, 1, S, 1) rows with nothing to attend to: output zeroed


def key_padding(attention_mask: Tensor) -> Mask:
    """Every query may see every real key (bidirectional encoder, cross-attention)."""
    return Mask(attention_mask[:, None, None, :])


def _custom(allowed: Tensor) -> Mask:
    """Wrap a (B, S, S) mask; rows that may see nothing attend uniformly and are zeroed after."""
    empty = ~allowed.any(-1, keepdim=True)
    return Mask((allowed | empty)[:, None], False, empty[:, None])


def self_attention_mask(attention_mask: Tensor, extras: Mapping[str, Tensor], causal: bool) -> Mask:
    """The self-attention of an encoder (`causal=False`) or decoder, from the objective's extras.

    prefix_lengths: positions < p attend among themselves, the rest causally (prefix LM).
    attention_mode (UniLM): 0 bidirectional, 1 left-to-right, 2 right-to-left, 3 seq2seq (prefix).
    document_ids: attention never crosses a packed document boundary (block-diagonal).
    Padding keys are never attended. Right padding keeps the causal fast path valid.
    """
    doc = extras.get("document_ids")
    prefix = extras.get("prefix_lengths")
    mode = extras.get("attention_mode")
    if doc is None and prefix is None and mode is None:
        return Mask(None, True) if causal else key_padding(attention_mask)
    n = attention_mask.size(1)
    i = torch.arange(n, device=attention_mask.device)[:, None]
    j = torch.arange(n, device=attention_mask.device)[None, :]
    lower, upper = (j <= i).unsqueeze(0), (j >= i).unsqueeze(0)  # (1, S, S)
    base = lower if causal else torch.ones_like(lower)
    if prefix is not None:
        with_prefix = lower | (j.unsqueeze(0) < prefix[:, None, None])  # prefix block + causal rest
        base = (
            with_prefix
            if mode is None
            else torch.where(mode[:, None, None] == 3, with_prefix, base)
        )
    if mode is not None:
        m = mode[:, None, None]
        base = torch.where(
            m == 0, True, torch.where(m == 1, lower, torch.where(m == 2, upper, base))
        )
    allowed = base & attention_mask[:, None, :]
    if doc is not None:
        allowed = allowed & (doc[:, :, None] == doc[:, None, :])
    return _custom(allowed)


def two_stream_masks(
    attention_mask: Tensor, rank: Tensor, labels: Tensor, doc: Tensor | None
) -> tuple[Mask, Mask]:
    """XLNet (content, query) masks from `perm_rank`: the query stream never sees its own token,
    the content stream re-opens the diagonal (zihangdai/xlnet `two_stream_rel_attn`)."""
    from corruptions.permutation import perm_mask_from_rank

    query = ~perm_mask_from_rank(rank, labels) & attention_mask[:, None, :]
    if doc is not None:
        query = query & (doc[:, :, None] == doc[:, None, :])
    eye = torch.eye(rank.size(1), dtype=torch.bool, device=rank.device)
    return _custom(query | eye), _custom(query)


def position_ids(input_ids: Tensor, doc: Tensor | None) -> Tensor:
    """(B, S) positions, restarting at every packed document so each looks like a fresh row."""
    n = input_ids.size(1)
    pos = torch.arange(n, device=input_ids.device).expand_as(input_ids)
    if doc is None:
        return pos
    starts = torch.ones_like(doc, dtype=torch.bool)
    starts[:, 1:] = doc[:, 1:] != doc[:, :-1]
    first = torch.where(starts, pos, 0).cummax(1).values
    return pos - first


# --- the block ---------------------------------------------------------------------------------


def attend(q: Tensor, k: Tensor, v: Tensor, mask: Mask, dropout: float) -> Tensor:
    out = F.scaled_dot_product_attention(
        q, k, v, attn_mask=mask.allowed, dropout_p=dropout, is_causal=mask.causal
    )
    return out if mask.empty is None else out.masked_fill(mask.empty, 0.0)


class Rotary(nn.Module):
    """Rotary position embedding (Su et al. 2021, arXiv 2104.09864) for one head width."""

    def __init__(self, head_dim: int, base: float = 10000.0) -> None:
        super().__init__()
        inv = 1.0 / base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
        self.register_buffer("inv_freq", inv, persistent=False)

    def forward(self, positions: Tensor) -> tuple[Tensor, Tensor]:
        angles = positions[:, None, :, None].float() * self.inv_freq  # (B, 1, S, hd/2)
        angles = torch.cat([angles, angles], dim=-1)
        return angles.cos(), angles.sin()


def rotate(x: Tensor, rope: tuple[Tensor, Tensor] | None) -> Tensor:
    if rope is None:
        return x
    cos, sin = rope
    half = x.size(-1) // 2
    turned = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return (x * cos + turned * sin).to(x.dtype)


class SelfAttention(nn.Module):
    def __init__(self, d: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        self.n_heads, self.dropout = n_heads, dropout
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)

    def split(self, x: Tensor) -> Tensor:  # (B, S, D) -> (B, H, S, D/H)
        return x.unflatten(-1, (self.n_heads, -1)).transpose(1, 2)

    def merge(self, x: Tensor) -> Tensor:
        return self.proj(x.transpose(1, 2).flatten(2))

    def forward(
        self,
        x: Tensor,
        mask: Mask,
        rope: tuple[Tensor, Tensor] | None,
        g: Tensor | None = None,
        g_mask: Mask | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """Self-attention of `x`; with `g` also XLNet's query stream (queries from g, keys and
        values from x, the same weights)."""
        q, k, v = (self.split(t) for t in self.qkv(x).chunk(3, dim=-1))
        k = rotate(k, rope)
        drop = self.dropout if self.training else 0.0
        out = self.merge(attend(rotate(q, rope), k, v, mask, drop))
        if g is None or g_mask is None:
            return out, None
        d = x.size(-1)
        qg = self.split(F.linear(g, self.qkv.weight[:d], self.qkv.bias[:d]))
        return out, self.merge(attend(rotate(qg, rope), k, v, g_mask, drop))


class CrossAttention(nn.Module):
    def __init__(self, d: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        self.n_heads, self.dropout = n_heads, dropout
        self.q = nn.Linear(d, d)
        self.kv = nn.Linear(d, 2 * d)
        self.proj = nn.Linear(d, d)

    def forward(self, x: Tensor, memory: Tensor, mask: Mask) -> Tensor:
        def split(t: Tensor) -> Tensor:
            return t.unflatten(-1, (self.n_heads, -1)).transpose(1, 2)

        k, v = (split(t) for t in self.kv(memory).chunk(2, dim=-1))
        out = attend(split(self.q(x)), k, v, mask, self.dropout if self.training else 0.0)
        return self.proj(out.transpose(1, 2).flatten(2))


class Block(nn.Module):
    """Pre-LayerNorm Transformer block: x + attn(LN x) [+ cross(LN x)] + mlp(LN x)."""

    def __init__(self, d: int, n_heads: int, d_ff: int, dropout: float, cross: bool) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(d)
        self.attn = SelfAttention(d, n_heads, dropout)
        self.ln_cross = nn.LayerNorm(d) if cross else None
        self.cross = CrossAttention(d, n_heads, dropout) if cross else None
        self.ln2 = nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, d_ff), nn.GELU(), nn.Linear(d_ff, d))
        self.drop = nn.Dropout(dropout)

    def forward(
        self,
        x: Tensor,
        mask: Mask,
        rope: tuple[Tensor, Tensor] | None,
        memory: Tensor | None = None,
        memory_mask: Mask | None = None,
        g: Tensor | None = None,
        g_mask: Mask | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        a, ag = self.attn(self.ln1(x), mask, rope, None if g is None else self.ln1(g), g_mask)
        x = x + self.drop(a)
        if self.cross is not None and self.ln_cross is not None:
            assert memory is not None
            assert memory_mask is not None
            x = x + self.drop(self.cross(self.ln_cross(x), memory, memory_mask))
        x = x + self.drop(self.mlp(self.ln2(x)))
        if g is not None and ag is not None:
            g = g + self.drop(ag)
            g = g + self.drop(self.mlp(self.ln2(g)))
        return x, g


class Stack(nn.Module):
    """Blocks and a final LayerNorm: an encoder (bidirectional), a decoder (causal, maybe cross)."""

    def __init__(
        self,
        n_layers: int,
        d: int,
        n_heads: int,
        d_ff: int,
        dropout: float,
        rotary: bool,
        cross: bool = False,
    ) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            Block(d, n_heads, d_ff, dropout, cross) for _ in range(n_layers)
        )
        self.ln_f = nn.LayerNorm(d)
        self.rotary = Rotary(d // n_heads) if rotary else None

    def forward(
        self,
        x: Tensor,
        mask: Mask,
        positions: Tensor,
        memory: Tensor | None = None,
        memory_mask: Mask | None = None,
        g: Tensor | None = None,
        g_mask: Mask | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        rope = None if self.rotary is None else self.rotary(positions)
        for block in self.blocks:
            x, g = block(x, mask, rope, memory, memory_mask, g, g_mask)
        return self.ln_f(x), None if g is None else self.ln_f(g)


class Embeddings(nn.Module):
    """Token (+ learned position) (+ segment) embeddings; the token table is the tied output."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.tokens = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.positions = (
            nn.Embedding(cfg.max_len, cfg.d_model) if cfg.positions == "learned" else None
        )
        self.types = nn.Embedding(cfg.token_types, cfg.d_model) if cfg.token_types else None
        self.drop = nn.Dropout(cfg.dropout)
        self.max_len = cfg.max_len

    def position(self, positions: Tensor) -> Tensor | float:
        return 0.0 if self.positions is None else self.positions(positions)

    def forward(self, ids: Tensor, positions: Tensor, types: Tensor | None = None) -> Tensor:
        if self.positions is not None and ids.size(1) > self.max_len:
            raise ValueError(
                f"a sequence of {ids.size(1)} tokens exceeds the model's {self.max_len} positions"
            )
        x = self.tokens(ids) + self.position(positions)
        if self.types is not None and types is not None:
            x = x + self.types(types)
        return self.drop(x)


# --- heads -------------------------------------------------------------------------------------


class MLMHead(nn.Module):
    """BERT's transform (dense + GELU + LayerNorm) then the tied embedding table + bias."""

    def __init__(self, d_in: int, d_emb: int, vocab_size: int) -> None:
        super().__init__()
        self.dense = nn.Linear(d_in, d_emb)
        self.ln = nn.LayerNorm(d_emb)
        self.bias = nn.Parameter(torch.zeros(vocab_size))

    def forward(self, h: Tensor, table: Tensor) -> Tensor:
        return F.linear(self.ln(F.gelu(self.dense(h))), table, self.bias)


class SpanBoundaryHead(nn.Module):
    """SpanBERT SBO: [h_left; h_right; p_offset] -> Linear-GELU-LN-Linear-GELU-LN -> tied vocab."""

    def __init__(self, d: int, offsets: int, dim: int, vocab_size: int) -> None:
        super().__init__()
        self.offsets = nn.Embedding(offsets, dim)
        self.mlp = nn.Sequential(
            nn.Linear(2 * d + dim, d),
            nn.GELU(),
            nn.LayerNorm(d),
            nn.Linear(d, d),
            nn.GELU(),
            nn.LayerNorm(d),
        )
        self.bias = nn.Parameter(torch.zeros(vocab_size))

    def forward(self, left: Tensor, right: Tensor, offset: Tensor, table: Tensor) -> Tensor:
        offset = offset.clamp(max=self.offsets.num_embeddings - 1)
        return F.linear(
            self.mlp(torch.cat([left, right, self.offsets(offset)], -1)), table, self.bias
        )


class PairClassifier(nn.Module):
    """NSP / SOP: pooler (dense + tanh on the first token) -> 2 classes."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.pool = nn.Linear(d, d)
        self.out = nn.Linear(d, 2)

    def forward(self, first: Tensor) -> Tensor:
        return self.out(torch.tanh(self.pool(first)))


class Generator(nn.Module):
    """ELECTRA's small MLM generator on the shared embeddings: project, blocks of its own width."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        width = max(16, round(cfg.d_model * cfg.generator_ratio))
        heads = max(1, width // 64)
        self.width = width
        self.proj = nn.Linear(cfg.d_model, width)
        self.stack = Stack(
            cfg.n_layers, width, heads, 4 * width, cfg.dropout, cfg.positions == "rotary"
        )


# --- the model ---------------------------------------------------------------------------------


class Model(nn.Module):
    """Encoder, decoder or encoder-decoder, with the heads its objective needs."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d, rotary = cfg.d_model, cfg.positions == "rotary"

        def stack(n: int, cross: bool = False) -> Stack:
            return Stack(n, d, cfg.n_heads, cfg.d_ff, cfg.dropout, rotary, cross)

        self.embed = Embeddings(cfg)
        if cfg.arch == "encoder":
            self.encoder = stack(cfg.n_layers)
        elif cfg.arch == "decoder":
            self.decoder = stack(cfg.n_layers)
        else:
            self.encoder = stack(cfg.n_layers)
            self.decoder = stack(cfg.n_decoder_layers, cross=True)
        if cfg.arch == "encoder":
            self.generator = Generator(cfg) if cfg.electra else None
            self.mlm = MLMHead(self.generator.width if self.generator else d, d, cfg.vocab_size)
            self.rtd = (
                nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.Linear(d, 1)) if cfg.electra else None
            )
            self.sbo = (
                SpanBoundaryHead(d, cfg.sbo_offsets, min(cfg.sbo_dim, d), cfg.vocab_size)
                if cfg.sbo
                else None
            )
            self.classifier = PairClassifier(d) if cfg.classifier else None
            self.mask_emb = nn.Parameter(torch.zeros(d)) if cfg.two_stream else None
        else:
            self.lm_bias = nn.Parameter(torch.zeros(cfg.vocab_size))
        self.apply(self._init)
        for name, p in self.named_parameters():  # GPT-2: scale residual projections by depth
            if name.endswith(("attn.proj.weight", "cross.proj.weight", "mlp.2.weight")):
                nn.init.normal_(
                    p, 0.0, 0.02 / math.sqrt(2 * max(1, cfg.n_layers + cfg.n_decoder_layers))
                )
        if self.mask_emb_param is not None:
            nn.init.normal_(self.mask_emb_param, 0.0, 0.02)

    @property
    def mask_emb_param(self) -> nn.Parameter | None:
        return getattr(self, "mask_emb", None)

    @staticmethod
    def _init(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, 0.0, 0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, 0.0, 0.02)

    @property
    def table(self) -> Tensor:
        return self.embed.tokens.weight

    # -- which positions carry loss (the trainer counts these before the forward pass) --

    def scored(self, batch: Corrupted) -> dict[str, Tensor]:
        """Per loss term, a bool mask of the positions (or rows) that have a target."""
        labels, ex = batch.labels, batch.extras
        if self.cfg.arch == "decoder":  # logits at t-1 predict labels[t]
            lm = labels[:, 1:] != IGNORE
            if "document_ids" in ex:  # the first token of a packed document has no context
                lm = lm & (ex["document_ids"][:, 1:] == ex["document_ids"][:, :-1])
            return {"lm": lm}
        if self.cfg.arch == "encoder-decoder":
            return {"lm": labels != IGNORE}
        out = {"mlm": labels != IGNORE}
        if self.cfg.sbo and "span_offset" in ex:
            out["sbo"] = (ex["span_offset"] >= 0) & (ex["span_left"] >= 0) & (labels != IGNORE)
        for key, name in CLASSIFIER_KEYS.items():
            if self.cfg.classifier == name and key in ex:
                out[name] = ex[key] != IGNORE
        if self.cfg.electra:
            out["rtd"] = batch.attention_mask
        return out

    # -- forward --

    def forward(self, batch: Corrupted) -> dict[str, Head]:
        """Logits and targets per loss term, at scored positions only."""
        sel = self.scored(batch)
        if self.cfg.arch == "encoder-decoder":
            h = self.decode(
                batch.decoder_input_ids,
                *self.encode(batch),
                batch.extras.get("decoder_position_ids"),
            )
            return {"lm": (self.lm_logits(h[sel["lm"]]), batch.labels[sel["lm"]])}
        if self.cfg.arch == "decoder":
            h = self.run_decoder(batch)
            return {"lm": (self.lm_logits(h[:, :-1][sel["lm"]]), batch.labels[:, 1:][sel["lm"]])}
        if self.cfg.electra:
            return self.electra(batch, sel)
        h, g = self.run_encoder(batch)
        out = {"mlm": (self.mlm(g[sel["mlm"]], self.table), batch.labels[sel["mlm"]])}
        return out | self.extra_heads(batch, sel, h)

    def lm_logits(self, h: Tensor) -> Tensor:
        return F.linear(h, self.table, self.lm_bias)

    def run_encoder(
        self, batch: Corrupted, input_ids: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """Final hidden states (h, and g: the query stream for XLNet, else h)."""
        ids = batch.input_ids if input_ids is None else input_ids
        ex = batch.extras
        doc = ex.get("document_ids")
        pos = position_ids(ids, doc)
        x = self.embed(ids, pos, ex.get("token_type_ids"))
        if self.cfg.two_stream and "perm_rank" in ex:
            content, query = two_stream_masks(
                batch.attention_mask, ex["perm_rank"], batch.labels, doc
            )
            g0 = self.embed.drop((self.mask_emb + self.embed.position(pos)).expand_as(x))
            h, g = self.encoder(x, content, pos, g=g0, g_mask=query)
            assert g is not None
            return h, g
        h, _ = self.encoder(x, self_attention_mask(batch.attention_mask, ex, causal=False), pos)
        return h, h

    def extra_heads(self, batch: Corrupted, sel: dict[str, Tensor], h: Tensor) -> dict[str, Head]:
        out: dict[str, Head] = {}
        ex = batch.extras
        if self.sbo is not None and "sbo" in sel:
            m = sel["sbo"]
            rows = torch.arange(h.size(0), device=h.device)[:, None].expand_as(m)[m]
            logits = self.sbo(
                h[rows, ex["span_left"][m]],
                h[rows, ex["span_right"][m]],
                ex["span_offset"][m],
                self.table,
            )
            out["sbo"] = (logits, batch.labels[m])
        if self.classifier is not None:
            for key, name in CLASSIFIER_KEYS.items():
                if name in sel:
                    out[name] = (self.classifier(h[:, 0][sel[name]]), ex[key][sel[name]])
        return out

    def electra(self, batch: Corrupted, sel: dict[str, Tensor]) -> dict[str, Head]:
        """Generator MLM on the masked input, sample its guesses, discriminate every real token."""
        assert self.generator is not None
        assert self.rtd is not None
        ex, ids, m = batch.extras, batch.input_ids, sel["mlm"]
        pos = position_ids(ids, ex.get("document_ids"))
        mask = self_attention_mask(batch.attention_mask, ex, causal=False)
        x = self.embed(ids, pos, ex.get("token_type_ids"))
        gh, _ = self.generator.stack(self.generator.proj(x), mask, pos)
        gen_logits = self.mlm(gh[m], self.table)
        with torch.no_grad():  # Gumbel-max sample at temperature 1, no gradient (ELECTRA)
            u = torch.rand_like(gen_logits, dtype=torch.float32).clamp_(1e-9, 1.0)
            sampled = (gen_logits.float() - torch.log(-torch.log(u))).argmax(-1)
            original = torch.where(m, batch.labels, ids)
            fake = original.clone()
            fake[m] = sampled
            replaced = fake != original  # a correct guess counts as real
        h, _ = self.encoder(self.embed(fake, pos, ex.get("token_type_ids")), mask, pos)
        real = sel["rtd"]
        out = {
            "mlm": (gen_logits, batch.labels[m]),
            "rtd": (self.rtd(h[real]).squeeze(-1), replaced[real].float()),
        }
        return out | self.extra_heads(batch, sel, h)

    def run_decoder(self, batch: Corrupted) -> Tensor:
        ex = batch.extras
        pos = position_ids(batch.input_ids, ex.get("document_ids"))
        x = self.embed(batch.input_ids, pos, ex.get("token_type_ids"))
        h, _ = self.decoder(x, self_attention_mask(batch.attention_mask, ex, causal=True), pos)
        return h

    def encode(self, batch: Corrupted) -> tuple[Tensor, Mask]:
        """Encoder memory and the cross-attention mask (real keys; MASS hides its masks)."""
        ex = batch.extras
        pos = position_ids(batch.input_ids, ex.get("document_ids"))
        x = self.embed(batch.input_ids, pos, ex.get("token_type_ids"))
        memory, _ = self.encoder(
            x, self_attention_mask(batch.attention_mask, ex, causal=False), pos
        )
        visible = batch.attention_mask
        if self.cfg.cross_hide >= 0:
            visible = visible & (batch.input_ids != self.cfg.cross_hide)
        return memory, key_padding(visible)

    def decode(
        self,
        decoder_input_ids: Tensor | None,
        memory: Tensor,
        memory_mask: Mask,
        positions: Tensor | None = None,
    ) -> Tensor:
        assert decoder_input_ids is not None, "an encoder-decoder batch needs decoder_input_ids"
        pos = position_ids(decoder_input_ids, None) if positions is None else positions
        x = self.embed(decoder_input_ids, pos)
        h, _ = self.decoder(x, Mask(None, True), pos, memory, memory_mask)
        return h


def param_counts(model: nn.Module) -> dict[str, int]:
    """Parameters per top-level part and in total (tied tables counted once)."""
    counts: dict[str, int] = {}
    seen: set[int] = set()
    for name, p in model.named_parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        part = name.split(".")[0]
        counts[part] = counts.get(part, 0) + p.numel()
    counts["total"] = sum(counts.values())
    return counts

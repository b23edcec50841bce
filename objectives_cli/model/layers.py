"""The Transformer pieces the models are built from: attention, pre-LN block, stack, embeddings,
and the heads that read the final states (MLM, SpanBERT's SBO, NSP/SOP)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .attention import Mask, Rotary, attend, rotate
from .config import ModelConfig


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
        self.norm = nn.LayerNorm(cfg.d_model) if cfg.embed_norm else None
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
        if self.norm is not None:
            x = self.norm(x)
        return self.drop(x)


# --- heads -------------------------------------------------------------------------------------


class MLMHead(nn.Module):
    """BERT's transform (dense + GELU + LayerNorm) then the tied embedding table + bias;
    `transform=False`: the table + bias alone (XLNet's head, logits = g E^T + b)."""

    def __init__(self, d_in: int, d_emb: int, vocab_size: int, transform: bool = True) -> None:
        super().__init__()
        self.dense = nn.Linear(d_in, d_emb) if transform else None
        self.ln = nn.LayerNorm(d_emb) if transform else None
        self.bias = nn.Parameter(torch.zeros(vocab_size))

    def forward(self, h: Tensor, table: Tensor) -> Tensor:
        if self.dense is not None and self.ln is not None:
            h = self.ln(F.gelu(self.dense(h)))
        return F.linear(h, table, self.bias)


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

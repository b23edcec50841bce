"""The models every objective trains: one pre-LayerNorm Transformer block, three shapes, heads.

`Model(cfg)` is an encoder, a decoder or an encoder-decoder (the registry's `arch`) built from the
same `layers.Block` (pre-LN, GELU, attention through `F.scaled_dot_product_attention`, masks from
`attention.py`), with learned or rotary positions and input/output embeddings tied. Which heads
it carries follows from what the objective emits (see `heads_for`): MLM (dense+GELU+LN, tied
projection), SpanBERT's span boundary head, the NSP/SOP classifier, XLNet's two-stream
attention, ELECTRA's generator + discriminator.

`forward(batch)` returns, per loss term, the logits at the scored positions and their targets;
the trainer computes every loss the same way (`train.losses.term_losses`). Heads run only on
scored positions (gather first, then project), so an MLM batch never builds a (B, S, V) tensor.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from corruptions import IGNORE, Corrupted

from .attention import Mask, key_padding, position_ids, self_attention_mask, two_stream_masks
from .config import CLASSIFIER_KEYS, ModelConfig
from .layers import Embeddings, MLMHead, PairClassifier, SpanBoundaryHead, Stack

Head = tuple[Tensor, Tensor]  # (logits (N, C) or (N,) for a binary term, targets (N,))


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
            self.mlm = MLMHead(
                self.generator.width if self.generator else d,
                d,
                cfg.vocab_size,
                transform=not cfg.two_stream,
            )  # XLNet: no transform layer
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
            self.lm_bias = nn.Parameter(torch.zeros(cfg.vocab_size)) if cfg.lm_bias else None
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
            at = sel["lm"].nonzero(as_tuple=True)  # one index (one device sync) for both gathers
            return {"lm": (self.lm_logits(h[at]), batch.labels[at])}
        if self.cfg.arch == "decoder":
            h = self.run_decoder(batch)
            at = sel["lm"].nonzero(as_tuple=True)
            return {"lm": (self.lm_logits(h[:, :-1][at]), batch.labels[:, 1:][at])}
        if self.cfg.electra:
            return self.electra(batch, sel)
        h, g = self.run_encoder(batch)
        at = sel["mlm"].nonzero(as_tuple=True)
        out = {"mlm": (self.mlm(g[at], self.table), batch.labels[at])}
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
            rows, cols = sel["sbo"].nonzero(as_tuple=True)  # one index for all five gathers
            logits = self.sbo(
                h[rows, ex["span_left"][rows, cols]],
                h[rows, ex["span_right"][rows, cols]],
                ex["span_offset"][rows, cols],
                self.table,
            )
            out["sbo"] = (logits, batch.labels[rows, cols])
        if self.classifier is not None:
            for key, name in CLASSIFIER_KEYS.items():
                if name in sel:
                    at = sel[name].nonzero(as_tuple=True)
                    out[name] = (self.classifier(h[:, 0][at]), ex[key][at])
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
        at = m.nonzero(as_tuple=True)
        gen_logits = self.mlm(gh[at], self.table)
        with torch.no_grad():  # Gumbel-max sample at temperature 1, no gradient (ELECTRA)
            u = torch.rand_like(gen_logits, dtype=torch.float32).clamp_(1e-9, 1.0)
            sampled = (gen_logits.float() - torch.log(-torch.log(u))).argmax(-1)
            original = torch.where(m, batch.labels, ids)
            fake = original.clone()
            fake[at] = sampled
            replaced = fake != original  # a correct guess counts as real
        h, _ = self.encoder(self.embed(fake, pos, ex.get("token_type_ids")), mask, pos)
        real = sel["rtd"].nonzero(as_tuple=True)
        out = {
            "mlm": (gen_logits, batch.labels[at]),
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
        mask = self_attention_mask(batch.attention_mask, ex, causal=False)
        memory, _ = self.encoder(x, mask, pos)
        if self.cfg.cross_hide >= 0:
            hidden = batch.input_ids == self.cfg.cross_hide
            return memory, key_padding(batch.attention_mask & ~hidden)
        if mask.empty is None:  # plain key padding: reuse it (one device sync, one graph break)
            return memory, mask
        return memory, key_padding(batch.attention_mask)

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

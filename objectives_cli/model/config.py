"""The shape of a model: `ModelConfig`, the size presets, and the heads an objective needs.

Stored with every run (config.json), so a checkpoint is always read back into the model it was
trained as.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from corruptions import Corrupted

ARCHS = ("encoder", "decoder", "encoder-decoder")
POSITIONS = ("learned", "rotary")
TYPE_ROWS = 8  # segment-embedding rows: UniLM's new_segment_ids use 0..5
CLASSIFIER_KEYS = {"next_sentence_label": "nsp", "sentence_order_label": "sop"}

# name -> (d_model, n_heads, d_ff, encoder/decoder layers, layers per side of an encoder-decoder)
PRESETS: Mapping[str, tuple[int, int, int, int, int]] = {
    "tiny": (64, 2, 256, 2, 2),  # tests and CPU demos
    "small": (512, 8, 2048, 6, 3),
    "base": (768, 12, 3072, 12, 6),  # BERT-base / GPT-2 small 12x768; BART-base 6+6x768
}


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
    sbo_dim: int = 200  # SpanBERT: width of the offset embedding (pair_positional_embedding_size;
    # at most d_model, so the tiny preset's is 64)
    cross_hide: int = -1  # MASS: encoder positions holding this id are hidden from the decoder
    embed_norm: bool = False  # LayerNorm on the summed input embeddings (RoBERTa, BART)
    # a learned bias on the output logits of a decoder or encoder-decoder (BART's
    # final_logits_bias); decoders are trained without one, as GPT-2 is (runs before it had one)
    lm_bias: bool = True

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

"""Training FLOPs of a step, counted analytically: what MFU is measured against.

3 x the forward pass's matmuls (backward costs twice the forward): every layer's attention
projections and feed-forward (and cross-attention), attention's QK^T and AV over all query-key
pairs (causal attention counted in full, as `torch.utils.flop_counter` counts it), the output
projection on the rows it runs on (the scored positions: heads gather first), BERT's MLM
transform, XLNet's query stream (whose last layer's content stream, which no loss reads, has no
backward) and ELECTRA's generator and discriminator head. Embedding
lookups, norms, softmax, the loss and the small extra heads (SpanBERT's SBO, the NSP/SOP
classifier) are left out. Rows count as wide as their batch (padding included): this is the
work the model does. `tests/train/test_flops.py` checks it against torch's counter.
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor

from corruptions import Corrupted

from .config import ModelConfig


def train_flops(
    arch: str,
    shape: Mapping[str, int],
    vocab: int,
    batch: int,
    src_len: int,
    tgt_len: int,
    head_rows: int,
    two_stream: bool = False,
    generator: int = 0,
) -> int:
    """Training FLOPs of one step of `batch` rows.

    Args:
        arch: "encoder", "decoder" (the sequence is `src_len` long) or "encoder-decoder"
            (`src_len` source, `tgt_len` target tokens per row).
        shape: d_model, d_ff, n_layers, n_decoder_layers (a `preset`).
        head_rows: rows the output projection runs on (scored positions, or all of them); an
            encoder's MLM transform runs on the same rows.
        two_stream: XLNet's query stream (queries, attention, output and feed-forward again,
            on every position) and its head without the transform.
        generator: ELECTRA's generator width (0: none): its blocks on every position, its MLM
            head, and the discriminator's replaced-token head on every position.
    """
    d, ff = shape["d_model"], shape["d_ff"]
    src, tgt = batch * src_len, batch * tgt_len

    def block(rows: int, q_len: int, k_len: int, width: int = d, inner: int = ff) -> int:
        projections = 2 * rows * width * 3 * width + 2 * rows * width * width
        attention = 2 * 2 * batch * q_len * k_len * width  # QK^T and AV, summed over heads
        return projections + attention + 2 * 2 * rows * width * inner

    forward = shape["n_layers"] * block(src, src_len, src_len)
    forward_only = 0  # computed but given no gradient: no backward
    if arch == "encoder-decoder":
        cross = (
            2 * tgt * d * d
            + 2 * src * d * 2 * d
            + 2 * 2 * batch * tgt_len * src_len * d
            + 2 * tgt * d * d
        )
        forward += shape["n_decoder_layers"] * (block(tgt, tgt_len, tgt_len) + cross)
    if arch == "encoder" and two_stream:  # the query stream: no key or value projections
        forward += shape["n_layers"] * (block(src, src_len, src_len) - 2 * src * d * 2 * d)
        # the head reads the query stream: the last content stream past its keys and values
        forward_only = block(src, src_len, src_len) - 2 * src * d * 3 * d
    elif arch == "encoder" and generator:
        g = generator
        forward += 2 * src * d * g + shape["n_layers"] * block(src, src_len, src_len, g, 4 * g)
        forward += 2 * head_rows * g * d  # the generator's MLM transform, to the table's width
        forward += 2 * src * (d * d + d)  # the discriminator's head on every position
    elif arch == "encoder":
        forward += 2 * head_rows * d * d  # MLM transform
    forward += 2 * head_rows * d * vocab
    return 3 * forward - 2 * forward_only


def head_of(cfg: ModelConfig) -> str:
    """The loss term whose output projection runs on the scored rows: MLM or LM."""
    return "mlm" if cfg.arch == "encoder" else "lm"


def step_flops(cfg: ModelConfig, batch: Corrupted, head_rows: Tensor | int) -> Tensor | int:
    """`train_flops` of the model `cfg` on `batch`, whose output projection runs on `head_rows`
    rows (a tensor keeps it on the device: no sync)."""
    rows, src_len = batch.input_ids.shape
    tgt_len = 0 if batch.decoder_input_ids is None else batch.decoder_input_ids.size(1)
    shape = {
        "d_model": cfg.d_model,
        "d_ff": cfg.d_ff,
        "n_layers": cfg.n_layers,
        "n_decoder_layers": cfg.n_decoder_layers,
    }
    generator = max(16, round(cfg.d_model * cfg.generator_ratio)) if cfg.electra else 0
    args = (cfg.arch, shape, cfg.vocab_size, rows, src_len, tgt_len)
    fixed = train_flops(*args, 0, cfg.two_stream, generator)
    per_row = train_flops(*args, 1, cfg.two_stream, generator) - fixed  # linear in head rows
    return fixed + per_row * head_rows

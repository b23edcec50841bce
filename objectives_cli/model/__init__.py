"""The network, nanoGPT-readable: one pre-LayerNorm Transformer block in three shapes.

    config.py     ModelConfig, the size presets, the heads an objective's batch asks for
    attention.py  attention masks from the objective's extras, SDPA, rotary positions
    layers.py     attention, block, stack, embeddings and the heads (MLM, SBO, NSP/SOP)
    model.py      Model: encoder, decoder or encoder-decoder; forward(batch) -> logits and
                  targets per loss term (no loss inside)
    flops.py      training FLOPs of a step, counted analytically (the trainer's MFU, the benchmark)

Knows `corruptions.Corrupted` and nothing of data, training or the command line.
"""

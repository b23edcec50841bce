"""Training and using a model: one loop for every objective, exact resume, inference, export.

    config.py       TrainConfig (every setting, declared once), presets, the LR schedule
    runtime.py      device, precision, processes (torchrun), signals, the optimizer, seeds
    batches.py      packed rows -> corrupted batches by step; the probe of an objective
    losses.py       the loss of every term, their weights, evaluation
    step.py         one optimizer step: micro-batches, normalised losses, backward, AdamW
    setup.py        a run's data, model shape and first files
    loop.py         train(): the loop, logging, checkpointing, stopping (signals, divergence)
    errors.py       how a run stops short: diverged, interrupted
    metrics.py      the window of steps a metrics row averages, the summary, the forecast
    checkpoints.py  the run directory: config, tokenizer, metrics, checkpoints + manifests
    lock.py         one writer per run directory (flock on RUN/.lock)
    report.py       how the loop talks (Reporter; the plain, one-line form)
    inference.py    load a run; eval, fill in masks
    generation.py   what fill writes for decoders and encoder-decoders
    decoding.py     greedy, sampling and beam search, as transformers' generate
    embed.py        contextual embeddings of texts, per text or per token
    export.py       a run as a transformers model directory, checked against the run
    hf_weights.py   the run's weights under the stock transformers class's names

Uses model/ and data/; knows nothing of the command line or of Rich.
"""

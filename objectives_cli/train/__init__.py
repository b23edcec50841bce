"""Training and using a model: one loop for every objective, exact resume, inference.

    config.py       TrainConfig (every setting, declared once), presets, the LR schedule
    runtime.py      device, precision, processes (torchrun), signals, the optimizer, seeds
    batches.py      packed rows -> corrupted batches by step; the probe of an objective
    losses.py       the loss of every term, their weights, evaluation
    setup.py        a run's data, model shape and first files
    loop.py         train(): the loop, logging, checkpointing, stopping (signals, divergence)
    metrics.py      the window of steps a metrics row averages, the summary, durations in words
    checkpoints.py  the run directory: config, tokenizer, metrics, checkpoints + manifests
    lock.py         one writer per run directory (flock on RUN/.lock)
    report.py       how the loop talks (Reporter; the plain, one-line form)
    inference.py    load a run; eval, fill in masks, generate

Uses model/ and data/; knows nothing of the command line or of Rich.
"""

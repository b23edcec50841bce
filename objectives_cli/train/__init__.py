"""Training and using a model: one loop for every objective, exact resume, inference.

    config.py       TrainConfig (every setting, declared once), presets, the LR schedule
    runtime.py      device, precision, processes (torchrun), signals, the optimizer, seeds
    batches.py      packed rows -> corrupted batches by step; the probe of an objective
    losses.py       the loss of every term, their weights, evaluation
    setup.py        a run's data, model shape and first files
    loop.py         train(): the loop, logging, checkpointing, stopping
    checkpoints.py  the run directory: config, tokenizer, metrics, checkpoints
    report.py       how the loop talks (Reporter; the plain, one-line form)
    inference.py    load a run; eval, fill in masks, generate
    downstream.py   task examples as model inputs, the pooled state a head reads, scores
    finetune.py     fine-tune a run (all weights + a head) on a task, early stopping
    probe.py        a linear probe on frozen features; the bag-of-words baseline
    compare.py      pretrain objectives at an equal budget, fine-tune and probe each

Uses model/ and data/; knows nothing of the command line or of Rich.
"""

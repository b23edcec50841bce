"""The `objectives` command line and everything behind it, in layers (docs/architecture.md):

    cli/     Typer commands, thin: parse options, call a library function, render the result
    render/  what the user reads (the only package that imports Rich)
    train/   the training loop, checkpoints, inference
    model/   the Transformer every objective trains
    data/    text in, Tokens out: sources, built-in corpus, tokenizers, the packer

Imports go downwards only: cli -> render, train, data, model; render -> data; train -> model,
data; `corruptions` (the objectives themselves) is below all of them and imports none of them.
tests/test_layers.py checks this.
"""

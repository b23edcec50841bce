"""The command line, and nothing else: Typer commands that parse options, call one library
function each, and hand its result to render/.

    app.py        the Typer app, one-line usage errors, --version
    main.py       the `objectives` entry point: user errors become `error:`/`hint:` lines
    options.py    what several commands share: formats, --param, --budget
    inspect.py    list, describe, corrupt
    tokenizer.py  tokenizer train
    data.py       data prepare
    training.py   train (its options generated from TrainConfig), eval, fill
    downstream.py finetune, probe, compare

Nothing imports cli/. Heavy modules (torch, the trainer) are imported inside the commands.
"""

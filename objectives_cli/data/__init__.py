"""Text in, `Tokens` out: the data layer.

    sources.py    documents from files, directories, stdin, jsonl, parquet and hf: datasets;
                  sentence splitting; the held-out split
    corpus.py     the built-in corpus (Python's own documentation), gathered once and cached
    tokenizer.py  WordPiece / byte-level BPE / Unigram tokenizers with the project's special
                  tokens, and the `Vocab` the corruptions read
    packing.py    the one packer: tokenised documents -> a flat `Corpus` (cached on disk) ->
                  fixed-length rows (`Blocks`, for training and for `corrupt`)
    examples.py   text -> corrupted examples, in input order (`corrupt`, `describe`, the docs)
    files.py      the cache directory and the one atomic file writer
    tasks.py      downstream classification tasks from files, hf: datasets or built-in ones
    builtin_tasks.py  the built-in tasks, made from the default corpus
    catalog.py    the registry as plain data, cached, so `list` and completion need no torch

Nothing here knows the command line, the model or the training loop.
"""

PACKINGS = ("documents", "rows", "concat")  # how documents fill rows; see packing.py

"""Text in, `Tokens` out: the data layer.

    sources.py    documents from files, directories, stdin, jsonl, parquet and hf: datasets;
                  the default corpus
    splits.py     a document into sentences; documents into training and held-out (by hash)
    streams.py    the readers: a file a block at a time, JSON lines, Parquet batches, rows;
                  rows without text skipped and counted; a source's identity
    corpus.py     the built-in corpus (Python's own documentation), gathered once and cached
    tokenizer.py  WordPiece / byte-level BPE / Unigram tokenizers with the project's special
                  tokens, and the `Vocab` the corruptions read
    encoding.py   text -> ids with word and sentence starts (`encode_documents`, numpy arrays)
    packing.py    the one packer: tokenised documents -> a flat `Corpus` (cached on disk) ->
                  fixed-length rows (`Blocks`, for training and for `corrupt`)
    shards.py     a prepared corpus on disk: the shard format, its writer, `MappedCorpus` (read
                  through memory maps), every check before a directory is trusted
    prepare.py    `data prepare`: a source streamed, tokenised by worker processes, into shards;
                  resumable; the cache that `train --data` prepares large sources into
    prepared.py   a prepare's directory: its settings, progress file, index, lock, resume point
    rows.py       documents -> padded blocks in input order, a little text at a time
    examples.py   blocks -> corrupted examples, in input order (`corrupt`, `describe`, the docs),
                  by worker processes with `--workers` (the same bytes for any number)
    parallel.py   forked workers whose results come back in input order; one thread each
    files.py      the cache directory and the one atomic file writer
    tasks.py      downstream classification tasks from files, hf: datasets or built-in ones
    builtin_tasks.py  the built-in tasks, made from the default corpus
    catalog.py    the registry as plain data, cached, so `list` and completion need no torch

Nothing here knows the command line, the model or the training loop.
"""

PACKINGS = ("documents", "rows", "concat")  # how documents fill rows; see packing.py

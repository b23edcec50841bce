"""Everything the user reads, and the only package that imports Rich.

    output.py    JSON on stdout; the show/text views; list and describe
    jsonl.py     corrupt's JSONL rows (docs/jsonl.md), encoded fast (orjson for the id lists)
    views.py     what the show view says of one corrupted example, before formatting
    cells.py     its input and target lines, token by token
    text.py      how tokens read as text there: the input's own characters, marks dropped
    progress.py  the Rich progress bar and summary of a training run; prepare's and corrupt's
                 progress on stderr
    tables.py    eval and fill results as tables
    downstream.py  a finetune or probe result as a table
    compare.py   the compare table, compare.md and its pictures (matplotlib, Agg backend)
    docgen.py    docs/objectives/*.md, generated from the registry (python -m ...render.docgen)

Colour only on a terminal (and never with NO_COLOR); machine output never goes through Rich.
"""

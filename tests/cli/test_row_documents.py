"""Rows know their document (`Tokens.row_documents`), in training batches and in `corrupt`, so
NSP/SOP draw a "random" segment B from another document, as Google's code does."""

from __future__ import annotations

import json
import re

import torch

from objectives_cli.data.encoding import EncodedDoc
from objectives_cli.data.packing import corpus_from, pack
from objectives_cli.data.rows import blocks
from objectives_cli.data.tokenizer import load_tokenizer
from tests.cli.runner import invoke


def doc(n: int, start: int) -> EncodedDoc:
    return EncodedDoc(list(range(start, start + n)), [True] * n, [i == 0 for i in range(n)])


def test_blocks_take_the_document_of_each_row() -> None:
    corpus = corpus_from([doc(5, 10), doc(9, 20), doc(2, 40)])
    rows = pack(corpus, 4, "rows")
    batch = rows.take(torch.arange(len(rows)), pad=0)
    assert batch.row_documents is not None
    assert batch.row_documents.tolist() == [0, 0, 1, 1, 1, 2]
    shuffled = rows.take(torch.tensor([4, 0, 5]), pad=0)
    assert shuffled.row_documents is not None
    assert shuffled.row_documents.tolist() == [1, 0, 2]


def test_corrupt_rows_count_input_documents_across_chunks() -> None:
    tok = load_tokenizer()
    long = " ".join(f"Sentence number {i} of the long one." for i in range(400))
    documents = ["A short first document.", long, "", "A short last document."]
    numbers = [n for batch in blocks(tok, documents, 32, 0) for n in batch.row_documents.tolist()]
    assert numbers[0] == 0
    assert numbers[-1] == 3  # the empty document still counts
    assert set(numbers[1:-1]) == {1}  # every row of the long document, whatever the chunks
    assert len(numbers) > 10


def test_nsp_random_b_never_comes_from_its_own_document(tmp_path: object) -> None:
    text = "\n\n".join(
        " ".join(f"Document {d} sentence {i} tells something new." for i in range(30))
        for d in range(6)
    )
    result = invoke(
        "corrupt", "-o", "nsp", "--format", "jsonl", "--max-length", "64", "-", stdin=text
    )
    assert result.code == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    random_b = [r for r in rows if r["extras"]["next_sentence_label"] == 1]
    assert random_b
    tok = load_tokenizer()
    checked = 0
    for row in random_b:  # the input with its masked and replaced tokens restored
        ids = [i if t == -100 else t for i, t in zip(row["input_ids"], row["labels"], strict=True)]
        a, _, b = tok.decode(ids, skip_special_tokens=False).partition("[SEP]")
        source = re.findall(r"(\d+) sentence \d+", a)  # A may be a lone "." of a row's start
        if source:
            assert source[-1] not in re.findall(r"(\d+) sentence \d+", b), (a, b)
            checked += 1
    assert checked >= 5

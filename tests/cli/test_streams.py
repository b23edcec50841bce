"""Documents read as a stream are the documents of the whole text, and the streamed held-out
split is the split of the whole list."""

from __future__ import annotations

import io

import pytest
from hypothesis import given
from hypothesis import strategies as st

from corruptions.errors import DataError
from objectives_cli.data import streams
from objectives_cli.data.splits import HeldoutSplit, heldout_bucket, split_heldout
from objectives_cli.data.streams import Meter, split_documents, text_documents

# the characters where line and document splitting differ between methods
TRICKY = st.text(alphabet="ab .\n\r\t\f\v\x1c\x85\u2028\u00a0é", max_size=80)


@given(text=TRICKY, block=st.integers(1, 9), bom=st.booleans())
def test_a_stream_gives_the_documents_of_the_whole_text(text: str, block: int, bom: bool) -> None:
    data = (b"\xef\xbb\xbf" if bom else b"") + text.encode()
    streams.BLOCK, saved = block, streams.BLOCK  # lines that span blocks, BOMs cut by them
    try:
        got = list(text_documents(io.BytesIO(data), "t", Meter()))
    finally:
        streams.BLOCK = saved
    assert got == split_documents(text)


def test_bad_utf8_is_named_with_its_offset_in_the_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(streams, "BLOCK", 4)
    data = b"\xef\xbb\xbfgood line\n\nsecond caf\xe9\n"
    with pytest.raises(DataError, match=r"t is not UTF-8 text: byte 0xe9 at offset 24"):
        list(text_documents(io.BytesIO(data), "t", Meter()))
    assert data[24] == 0xE9


def test_a_line_longer_than_a_block_is_read_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(streams, "BLOCK", 16)
    line = "word " * 1000
    meter = Meter()
    docs = list(text_documents(io.BytesIO(f"{line}\n\nend".encode()), "t", meter))
    assert docs == [line.strip(), "end"]
    assert meter.read == len(line) + 5


@given(
    docs=st.lists(st.text(alphabet="abcdefg. ", min_size=1, max_size=12), min_size=2, max_size=40),
    share=st.sampled_from([0.01, 0.3, 0.9, 1.0]),
)
def test_the_streamed_held_out_split_is_the_split_of_the_list(
    docs: list[str], share: float
) -> None:
    split = HeldoutSplit(share)
    routed = [r for d in docs for r in split.push(d)] + list(split.finish())
    train, held = split_heldout(docs, share)
    assert train
    assert held
    assert [d for h, d in routed if not h] == train
    assert [d for h, d in routed if h] == held
    expected = [heldout_bucket(d) < share for d in docs]
    if not any(expected):
        expected[-1] = True
    if all(expected):
        expected[0] = False
    assert held == [d for d, h in zip(docs, expected, strict=True) if h]


def test_the_stream_holds_back_little() -> None:
    """Past the start, each document comes out as soon as it goes in."""
    split = HeldoutSplit(0.5)
    out = [list(split.push(f"document {i}")) for i in range(200)]
    assert all(len(o) == 1 for o in out[20:])

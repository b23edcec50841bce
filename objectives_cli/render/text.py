"""How tokens read as text in the show view, for any tokenizer the project makes.

A source token reads as the characters it was cut from (`Example.text`, `Example.offsets`:
the tokenizer's own offsets into the input), so the view shows what the user wrote: no `##`,
`Ġ` or `▁`, a character that byte-level BPE split into several tokens whole, a word's pieces
and the punctuation written against it glued as in the text (`Source`). Tokens of no source
text (a random replacement, another document's segment, the target of an encoder-decoder
objective) read as the tokenizer writes them, marks dropped (`Pieces`). A token that holds only
part of a character shows its bytes as <0xNN>; a changed token of whitespace only as SPACE.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence

import tokenizers

from corruptions import Vocab
from objectives_cli.data.examples import Example

SPACE = "␣"  # a changed token of whitespace only (a lone `Ġ` or `▁`) with no word after it
CUT = "…"  # where a token listed apart runs on into the rest of its word: `happ…`, `…y`
LINE_BREAKS = re.compile(r"\s*[^\S ]\s*")  # whitespace with a line break or tab in it


def _bytes_of_chars() -> dict[str, int]:
    """Byte-level BPE's alphabet (GPT-2's `bytes_to_unicode`), read backwards: the byte each of
    its 256 characters stands for."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1)]
    printable += range(ord("®"), ord("ÿ") + 1)
    others = [b for b in range(256) if b not in printable]
    return {
        **{chr(b): b for b in printable},
        **{chr(256 + k): b for k, b in enumerate(others)},
    }


BYTE_OF_CHAR = _bytes_of_chars()


def readable(data: bytes) -> str:
    """UTF-8 `data` as text, each byte of an incomplete or invalid character as <0xNN>."""
    out = []
    while data:
        try:
            out.append(data.decode())
            break
        except UnicodeDecodeError as bad:
            out.append(data[: bad.start].decode())
            out += (f"<0x{b:02X}>" for b in data[bad.start : bad.end])
            data = data[bad.end :]
    return "".join(out)


def incomplete(data: bytes) -> bool:
    """`data` ends inside a character that more bytes could complete."""
    try:
        data.decode()
    except UnicodeDecodeError as bad:
        return bad.end == len(data) and bad.reason == "unexpected end of data"
    return False


class Pieces:
    """How token ids read as text without their source, for any of the project's tokenizer
    kinds: WordPiece marks a piece that continues a word (`##ing`), byte-level BPE (`Ġ`, a
    space byte) and Unigram (`▁`) the piece that starts one. The marks come from the
    tokenizer's decoder; specials read as their token string.
    """

    def __init__(self, tok: tokenizers.Tokenizer, vocab: Vocab) -> None:
        self.tok, self.vocab = tok, vocab
        steps = decoder_steps(tok)
        self.byte_level = "ByteLevel" in steps
        wordpiece = steps.get("WordPiece", {})
        self.prefix = wordpiece.get("prefix") or (
            getattr(tok.model, "continuing_subword_prefix", None) or ""
        )
        # WordPiece's decoder writes these against the word before (its `cleanup`)
        self.cleanup = {".", ",", "?", "!"} if wordpiece.get("cleanup") else set()
        self.start_mark = steps.get("Metaspace", {}).get("replacement", "")
        assert vocab.special is not None
        self._special = set(vocab.special.nonzero().flatten().tolist())
        self._cache: dict[int, tuple[bytes, bool]] = {}

    def special(self, token_id: int) -> bool:
        return token_id in self._special

    def token(self, token_id: int) -> str:
        """The token string, as the vocabulary writes it (specials are shown so)."""
        return self.tok.id_to_token(token_id) or f"<{token_id}>"

    def piece(self, token_id: int) -> tuple[bytes, bool]:
        """(the token's text as UTF-8 bytes, its tokenizer's marks dropped; whether it is
        written against the text before it)."""
        if token_id not in self._cache:
            self._cache[token_id] = self._piece(token_id)
        return self._cache[token_id]

    def _piece(self, token_id: int) -> tuple[bytes, bool]:
        raw = self.tok.id_to_token(token_id)
        if raw is None or self.special(token_id):
            return self.token(token_id).encode(), False
        if self.byte_level and all(c in BYTE_OF_CHAR for c in raw):
            data = bytes(BYTE_OF_CHAR[c] for c in raw)
            return data, not data[:1].isspace()
        if self.prefix and raw.startswith(self.prefix) and len(raw) > len(self.prefix):
            return raw[len(self.prefix) :].encode(), True
        if self.start_mark:
            return raw.replace(self.start_mark, " ").encode(), not raw.startswith(self.start_mark)
        return raw.encode(), raw in self.cleanup

    def texts(self, ids: Sequence[int], space: str = "") -> list[tuple[str, bool]]:
        """(text, written against the text before) per id, as the tokenizer would decode them:
        the byte-level pieces of one character decode together, the first carrying the
        character and the rest ""; a token of whitespace only is the space before the next
        token, or `space` where no ordinary token follows; specials as themselves, nothing
        glued to them."""
        out: list[tuple[str, bool]] = []
        start, data = 0, b""  # the pieces since out[start] hold the bytes `data`

        def flush(last: bool) -> None:
            if data:
                out[start] = (readable(data).strip() or (space if last else ""), out[start][1])

        for token_id in ids:
            special_before = bool(out) and not data  # `data` is empty only after a special
            if self.special(token_id):
                flush(last=True)
                start, data = len(out), b""
                out.append((self.token(token_id), False))
                continue
            content, glued = self.piece(token_id)
            if incomplete(data) and 0x80 <= content[0] < 0xC0:  # continues the character
                data += content
                out.append(("", True))
                continue
            flush(last=False)
            start, data = len(out), content
            out.append(("", glued and not special_before))
        flush(last=True)
        return out

    def text(self, ids: Sequence[int]) -> str:
        """`ids` as text: pieces glued into words, specials kept."""
        return join_texts(self.texts(ids))


def decoder_steps(tok: tokenizers.Tokenizer) -> dict[str, dict[str, object]]:
    """The steps of the tokenizer's decoder by type (`ByteLevel`, `WordPiece`, `Metaspace`)."""
    if tok.decoder is None:
        return {}
    spec = json.loads(tok.decoder.__getstate__())
    steps = spec.get("decoders", []) if spec.get("type") == "Sequence" else [spec]
    return {step.get("type", ""): step for step in steps}


def join_texts(texts: Iterable[tuple[str, bool]]) -> str:
    """(text, glued) pairs as one text: a space before each that is not glued."""
    return "".join(("" if glued or i == 0 else " ") + text for i, (text, glued) in enumerate(texts))


def one_line(text: str) -> str:
    """`text` on one line: each line break (with the whitespace around it) becomes a space."""
    return LINE_BREAKS.sub(" ", text)


class Source:
    """An example's source tokens as the characters they were cut from.

    Tokens that share characters (byte-level BPE's pieces of one character, Unigram's of an
    NFKC-expanded ligature) form one unit, shown whole where all of it is shown alike; a token
    is glued to the one before when no whitespace parts them in the text.
    """

    def __init__(self, example: Example, pieces: Pieces) -> None:
        self.ids, self.pieces = example.source_ids, pieces
        n = len(self.ids)
        if example.offsets is not None and len(example.offsets) == n:
            self.text, self.spans = example.text, example.offsets
        else:  # no offsets: the text the tokens decode to
            self.text, self.spans = written(pieces.texts(self.ids))
        spans = self.spans
        self.glued = [o > 0 and spans[o][0] <= spans[o - 1][1] for o in range(n)]
        shares = [
            o > 0 and spans[o][0] < spans[o - 1][1] and spans[o - 1][0] < spans[o - 1][1]
            for o in range(n)
        ]
        self.unit_start = list(range(n))  # first token of the unit of each token
        for o in range(1, n):
            if shares[o]:
                self.unit_start[o] = self.unit_start[o - 1]
        self.unit_stop = [o + 1 for o in range(n)]  # end (exclusive) of the unit of each token
        for o in range(n - 2, -1, -1):
            if shares[o + 1]:
                self.unit_stop[o] = self.unit_stop[o + 1]

    def pieces_of(self, lo: int, hi: int, space: str = "") -> list[tuple[str, bool]]:
        """(text, glued) of the source tokens lo..hi-1: a unit wholly inside as its characters
        (on its first token; "" on the others), a unit cut by lo or hi token by token; a token
        of whitespace only is "" (the space before the next), `space` when it is the last."""
        out = []
        for o in range(lo, hi):
            first, stop = self.unit_start[o], self.unit_stop[o]
            if self.pieces.special(self.ids[o]):
                text = self.pieces.token(self.ids[o])
            elif first >= lo and stop <= hi:
                end = max(e for _, e in self.spans[first:stop])
                text = one_line(self.text[self.spans[first][0] : end]) if o == first else ""
                text = text or (space if o == first and stop == hi else "")
            else:
                text = self.pieces.texts([self.ids[o]], space if o == hi - 1 else "")[0][0]
            out.append((text, self.glued[o]))
        return out

    def words(self, lo: int, hi: int, space: str = "") -> str:
        """The source tokens lo..hi-1 as text."""
        return join_texts(self.pieces_of(lo, hi, space))

    def cut_before(self, o: int) -> bool:
        """Tokens o-1 and o are parts of one word: no space between, letters or digits on both
        sides (`happ|y`, not `mat|.`)."""
        if not 0 < o < len(self.ids) or not self.glued[o]:
            return False
        (start, end), (prev_start, prev_end) = self.spans[o], self.spans[o - 1]
        return (
            start < end
            and prev_start < prev_end
            and self.text[start].isalnum()
            and self.text[prev_end - 1].isalnum()
        )


def written(texts: Sequence[tuple[str, bool]]) -> tuple[str, list[tuple[int, int]]]:
    """A text and each token's span in it from `Pieces.texts` (no source text at hand)."""
    text, spans = "", []
    for piece, glued in texts:
        text += "" if glued or not text else " "
        spans.append((len(text), len(text) + len(piece)))
        text += piece
    return text, spans

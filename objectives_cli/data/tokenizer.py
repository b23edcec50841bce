"""Tokenizers (Hugging Face `tokenizers`) and the `Vocab` the corruptions need.

Three kinds, each set up the way its reference models are:

* wordpiece: BERT. Cased (readable output; like bert-base-cased), BERT normalizer and
  pre-tokenizer (whitespace and every punctuation character split words), `##` continuations.
* bpe: GPT-2 / RoBERTa / BART byte-level BPE (no unknown tokens), a space before every word.
* unigram: SentencePiece-style (T5, ALBERT, XLNet): NFKC, Metaspace `▁`, words split at spaces.

Every tokenizer holds SPECIAL_TOKENS: `[PAD] [UNK] [CLS] [SEP] [MASK] [NLU] [NLG] [S2S]` as ids
0..7, then the learned pieces, then T5's sentinels (100 unless `--sentinels` says otherwise) as
the LAST ids counting down (`<extra_id_0>` = V-1, as T5 and seqio). Word starts come from
`Encoding.word_ids` (a token opens a word when its word id differs from the previous token's), so
they follow each kind's own notion of a word without looking at `##` or `▁`. Training is
deterministic: same corpus, same settings, same file.

The default tokenizer (`load_tokenizer()`) is a cased WordPiece of 8000 ids trained on the default
corpus's train split, shipped in objectives_cli/assets/; rebuild it with
`python -m objectives_cli.data.tokenizer --rebuild-default`.
"""

from __future__ import annotations

import itertools
import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

from corruptions.errors import DataError

if TYPE_CHECKING:  # torch is imported where it is used: prepare's workers need none of it
    from corruptions import Vocab

N_SENTINELS = 100  # T5's; a 2048-token row of t5-span needs ~102 spans: `--sentinels`
BASE_SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[NLU]", "[NLG]", "[S2S]")


def sentinel_tokens(n: int = N_SENTINELS) -> tuple[str, ...]:
    """T5's sentinels in the order they are added: <extra_id_{n-1}> ... <extra_id_0>, so that
    <extra_id_0> is the last id."""
    return tuple(f"<extra_id_{k}>" for k in range(n - 1, -1, -1))


SENTINELS = sentinel_tokens()  # 99 ... 0
SPECIAL_TOKENS: tuple[str, ...] = BASE_SPECIALS + SENTINELS
KINDS = ("wordpiece", "bpe", "unigram")
DEFAULT_TOKENIZER = Path(__file__).parents[1] / "assets" / "wordpiece-8k.json"
DEFAULT_VOCAB_SIZE = 8000
# Characters a WordPiece or Unigram vocabulary holds whether the corpus has them or not, when the
# vocabulary is large enough to spare the room (see _with_base_alphabet): printable ASCII, Latin-1
# letters and signs, typographic punctuation. (Byte-level BPE has all 256 bytes anyway.)
BASE_ALPHABET = sorted(
    {*map(chr, range(0x21, 0x7F)), *map(chr, range(0xA1, 0x100)), *"‐–—‘’‚“”„†‡•…‰′″‹›€™−"}
    - {"\xad"}
)


def _with_base_alphabet(vocab_size: int) -> bool:
    """True when the base alphabet (twice, for WordPiece's c and ##c) fits in an eighth of it."""
    return 2 * len(BASE_ALPHABET) <= vocab_size // 8


def _bert_normalizer() -> normalizers.Normalizer:
    return normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=False, lowercase=False
    )


def _to_wordpiece(bpe: Tokenizer, size: int) -> Tokenizer:
    """A WordPiece tokenizer (BERT-style, cased) from a BPE trained on `▁`-marked words.

    `tokenizers`' own WordPiece trainer numbers its `##c` alphabet in hash-map order, and merge
    ties are broken by id, so the same corpus gives different vocabularies from run to run. A BPE
    that sees each word as `▁word` learns the same pieces deterministically: `▁abc` becomes the
    word-initial piece `abc`, `abc` the continuation `##abc`. Every character of the alphabet
    gets both forms (so no word turns into [UNK] for one rare character), and so does the base
    alphabet when the vocabulary is large enough; then the pieces follow in merge order, cut to
    `size`.
    """
    learned = sorted(bpe.get_vocab(with_added_tokens=False).items(), key=lambda kv: kv[1])
    vocab: dict[str, int] = {}
    alphabet = {t for t, _ in learned if len(t) == 1 and t != "▁"}
    if _with_base_alphabet(size):
        alphabet.update(BASE_ALPHABET)
    alphabet = sorted(alphabet)
    pieces = [*BASE_SPECIALS, *alphabet, *("##" + c for c in alphabet)]
    for token, _ in learned:
        if token in BASE_SPECIALS or token == "▁":
            continue
        pieces.append(token[1:] if token.startswith("▁") else "##" + token)
    for piece in pieces:
        if len(vocab) >= size:
            break
        vocab.setdefault(piece, len(vocab))
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    tok.normalizer = _bert_normalizer()
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=True)
    tok.add_special_tokens(list(BASE_SPECIALS))
    return tok


def _blank(
    kind: str, vocab_size: int, progress: bool = False
) -> tuple[Tokenizer, trainers.Trainer]:
    """An untrained tokenizer of `kind` and its trainer for `vocab_size` learned ids; `progress`:
    the trainer draws its progress bars (`tokenizers` draws them on a terminal only)."""
    specials = list(BASE_SPECIALS)
    if kind == "wordpiece":
        # Trained as a BPE on marked words, then turned into WordPiece: see _to_wordpiece.
        tok = Tokenizer(models.BPE())
        tok.normalizer = normalizers.Sequence([normalizers.Replace("▁", " "), _bert_normalizer()])
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.BertPreTokenizer(),
                pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=False),
            ]
        )
        # WordPiece holds each character twice (c and ##c): the BPE learns more, _to_wordpiece
        # cuts.
        trainer: trainers.Trainer = trainers.BpeTrainer(
            vocab_size=vocab_size + 1000, special_tokens=specials, show_progress=progress
        )
    elif kind == "bpe":
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True, use_regex=True)
        # ByteLevel joins the tokens into one string; Strip then drops the prefix space once.
        tok.decoder = decoders.Sequence([decoders.ByteLevel(), decoders.Strip(" ", 1, 0)])
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=specials,
            show_progress=progress,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        )
    elif kind == "unigram":
        tok = Tokenizer(models.Unigram())
        tok.normalizer = normalizers.Sequence(
            [normalizers.NFKC(), normalizers.Replace(Regex(r"\s+"), " ")]
        )
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
        tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
        trainer = trainers.UnigramTrainer(
            vocab_size=vocab_size,
            special_tokens=specials,
            show_progress=progress,
            unk_token="[UNK]",
            max_piece_length=16,
            initial_alphabet=BASE_ALPHABET if _with_base_alphabet(vocab_size) else [],
        )
    else:
        raise ValueError(f"unknown tokenizer kind {kind!r}; choose one of {', '.join(KINDS)}")
    return tok, trainer


def train_tokenizer(
    documents: Iterable[str],
    kind: str = "wordpiece",
    vocab_size: int = 8000,
    progress: bool = False,
    n_sentinels: int = N_SENTINELS,
) -> Tokenizer:
    """Train a tokenizer of `kind` (wordpiece | bpe | unigram) with the 8 BASE_SPECIALS and
    `n_sentinels` sentinels.

    `vocab_size` counts everything, the special tokens included; a small corpus may yield fewer
    ids. The sentinels are added after training, so they are the last ids. `progress` shows the
    trainer's own progress bars on stderr (each phase; Unigram's EM steps take seconds), when
    stderr is a terminal; it does not change the result.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown tokenizer kind {kind!r}; choose one of {', '.join(KINDS)}")
    n_special = len(BASE_SPECIALS) + n_sentinels
    least = n_special + 20 + (256 if kind == "bpe" else 0)  # bpe: all 256 bytes
    if vocab_size < least:
        raise ValueError(
            f"a {kind} vocab_size must be at least {least} ({n_special} "
            f"special tokens{', 256 bytes' if kind == 'bpe' else ''} and some text), "
            f"not {vocab_size}"
        )
    tok, trainer = _blank(kind, vocab_size - n_sentinels, progress)
    # Lines, not documents: encode_documents encodes sentences, so no piece should hold a "\n".
    lines = [line for doc in documents for line in doc.splitlines() if line.strip()]
    tok.train_from_iterator(lines, trainer=trainer, length=len(lines))
    if kind == "wordpiece":
        tok = _to_wordpiece(tok, vocab_size - n_sentinels)
    _canonicalize(tok, kind)
    tok.add_special_tokens(list(sentinel_tokens(n_sentinels)))
    return tok


def _canonicalize(tok: Tokenizer, kind: str) -> None:
    """Make a trained model independent of Rust's per-process hash seeds (same corpus, same file).

    `tokenizers` 0.2x trains BPE deterministically, but Unigram sums its EM counts in hash-map
    order (scores differ in the 11th digit from run to run, so equal-score pieces swap ids) and
    scores the characters it must keep by their hash-map order. Those characters all get the
    lowest score, scores are rounded to 1e-4 (far below any difference that matters to
    segmentation), and pieces are sorted by score, then by text, the specials kept first.
    (WordPiece: see _to_wordpiece.)
    """
    if kind == "unigram":
        pieces = json.loads(tok.to_str())["model"]["vocab"]
        head, rest = pieces[: len(BASE_SPECIALS)], pieces[len(BASE_SPECIALS) :]
        assert [p for p, _ in head] == list(BASE_SPECIALS), "specials must come first"
        # Characters the trainer had to keep get the lowest score plus k * 1e-4, k in hash order:
        # all of them get the lowest score.
        floor = min((score for _, score in rest), default=0.0)
        slack = 1e-4 * (1 + sum(len(p) == 1 for p, _ in rest)) + 1e-9
        rest = [
            (p, round(floor if len(p) == 1 and score <= floor + slack else score, 4))
            for p, score in rest
        ]
        rest.sort(key=lambda ps: (-ps[1], ps[0]))
        tok.model = models.Unigram(
            [*map(tuple, head), *rest], unk_id=BASE_SPECIALS.index("[UNK]"), byte_fallback=False
        )


def load_tokenizer(path: str | Path | None = None) -> Tokenizer:
    """A tokenizer file; None = the default tokenizer (works offline on a fresh machine)."""
    path = DEFAULT_TOKENIZER if path is None else Path(path)
    if not path.is_file():
        raise DataError(
            f"no such tokenizer file: {path}",
            "train one with `objectives tokenizer train CORPUS --out FILE`",
        )
    try:
        tok = Tokenizer.from_file(str(path))
    except Exception as exc:  # tokenizers raises a bare Exception for any bad file
        raise DataError(
            _not_a_tokenizer(path, exc),
            "pass a tokenizer JSON file written by `objectives tokenizer train` or `tokenizers`",
        ) from None
    tok.no_truncation()
    tok.no_padding()
    return tok


def _not_a_tokenizer(path: Path, exc: Exception) -> str:
    """Why `path` is no tokenizer: not JSON (where), JSON of another kind, or what tokenizers
    says of a tokenizer file it cannot load."""
    try:
        data = json.loads(path.read_bytes())
    except json.JSONDecodeError as bad:
        return f"{path} is not JSON: {bad.msg} (line {bad.lineno}, column {bad.colno})"
    except (OSError, ValueError):  # unreadable, or not UTF-8
        pass
    else:
        if not isinstance(data, dict) or "model" not in data:
            what = "an object" if isinstance(data, dict) else f"a {type(data).__name__}"
            return f"{path} is JSON but not a tokenizer: {what} without a 'model'"
    first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return f"{path} is not a tokenizer file: {first}"


# Names that other tokenizer families use for the same roles (RoBERTa/BART, T5).
_ROLES = {
    "pad": ("[PAD]", "<pad>"),
    "unk": ("[UNK]", "<unk>"),
    "bos": ("[CLS]", "<s>", "<cls>"),
    "eos": ("[SEP]", "</s>", "<sep>"),
    "mask": ("[MASK]", "<mask>"),
}


def vocab_of(tok: Tokenizer) -> Vocab:
    """pad, unk, bos=[CLS], eos=[SEP], mask, sentinels (<extra_id_k> at index k), extra={'[NLU]':..,
    '[NLG]':.., '[S2S]':..}."""
    import torch

    from corruptions import Vocab

    ids = {}
    for role, names in _ROLES.items():
        found = [i for i in map(tok.token_to_id, names) if i is not None]
        if not found:
            raise DataError(
                f"the tokenizer has no {names[0]} token",
                "train one with `objectives tokenizer train CORPUS --out FILE`",
            )
        ids[role] = found[0]
    sentinels = []
    for k in itertools.count():
        i = tok.token_to_id(f"<extra_id_{k}>")
        if i is None:
            break
        sentinels.append(i)
    extra = {
        name: i for name in ("[NLU]", "[NLG]", "[S2S]") if (i := tok.token_to_id(name)) is not None
    }
    size = tok.get_vocab_size(with_added_tokens=True)
    special = torch.zeros(size, dtype=torch.bool)
    marked = [
        *ids.values(),
        *sentinels,
        *extra.values(),
        *(i for i, t in tok.get_added_tokens_decoder().items() if t.special and i < size),
    ]
    special[torch.tensor(marked, dtype=torch.long)] = True
    return Vocab(size=size, sentinels=tuple(sentinels), extra=extra, special=special, **ids)


def _rebuild_default() -> None:
    """Train the default tokenizer on the default corpus and write it to the package assets."""
    from .sources import default_corpus

    tok = train_tokenizer(default_corpus("train"), "wordpiece", DEFAULT_VOCAB_SIZE)
    DEFAULT_TOKENIZER.parent.mkdir(parents=True, exist_ok=True)
    tok.save(str(DEFAULT_TOKENIZER), pretty=False)
    print(
        f"wrote {DEFAULT_TOKENIZER} ({tok.get_vocab_size()} ids, "
        f"{DEFAULT_TOKENIZER.stat().st_size / 1e3:.0f} kB)",
        file=sys.stderr,
    )


def _main(argv: list[str]) -> int:
    if argv == ["--rebuild-default"]:
        _rebuild_default()
        return 0
    print("usage: python -m objectives_cli.data.tokenizer --rebuild-default", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))

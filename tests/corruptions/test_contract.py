"""Properties every registered objective keeps, whatever it does."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import corruptions
from corruptions import IGNORE, Op, create, get, list_objectives, make_generator
from tests.helpers import ORDINARY, TINY, random_batch, tokens

NAMES = [o.name for o in list_objectives()]
word_ids = st.sampled_from(ORDINARY)


def run(name: str, rows: list[list[int]], seed: int, **kw: int) -> corruptions.Corrupted:
    return create(name)(tokens(rows, **kw), TINY, make_generator(seed))


@pytest.mark.parametrize("name", NAMES)
@given(ids=st.lists(word_ids, min_size=1, max_size=96), seed=st.integers(0, 2**32 - 1))
def test_every_objective_keeps_the_contract(name: str, ids: list[int], seed: int) -> None:
    rows = [ids, ids[: max(1, len(ids) // 2)]]  # two rows, the second one padded
    batch = tokens(rows, word_every=2, sentence_every=7)
    before = batch.ids.clone()
    out = create(name)(batch, TINY, make_generator(seed))
    again = create(name)(batch, TINY, make_generator(seed))
    assert torch.equal(batch.ids, before)  # the input is never written to
    for key, value in out.as_dict().items():
        assert torch.equal(value, again.as_dict()[key]), key  # same seed, same output
    assert out.input_ids.dtype == torch.long
    assert out.labels.dtype == torch.long
    assert out.attention_mask.dtype == torch.bool
    assert out.input_ids.shape == out.attention_mask.shape
    # padding is never attended to and never carries loss
    assert (out.input_ids[~out.attention_mask] == TINY.pad).all()
    arch = get(name).arch
    if arch == "encoder-decoder":
        assert out.decoder_input_ids is not None
        assert out.decoder_input_ids.shape == out.labels.shape
    else:
        assert out.labels.shape == out.input_ids.shape
        assert (out.labels[~out.attention_mask] == IGNORE).all()
    # no special token is ever predicted
    scored = out.labels[out.labels != IGNORE]
    # targets may end in </s> and hold sentinels
    allowed = torch.tensor([TINY.eos, *TINY.sentinels])
    assert (~TINY.is_special(scored) | torch.isin(scored, allowed)).all()
    if out.ops is not None:
        assert out.ops.shape == batch.ids.shape
        assert (out.ops[~batch.real] == int(Op.KEEP)).all()


@pytest.mark.parametrize("name", NAMES)
def test_specials_in_content_are_never_touched(name: str) -> None:
    specials = [TINY.mask, TINY.unk, TINY.bos, TINY.eos, TINY.sentinels[0]]
    row = [11, 12, *specials, 13, 14, 15, 16] * 4
    out = run(name, [row], 0)
    if out.ops is not None:
        special_at = TINY.is_special(torch.tensor(row))
        assert (out.ops[0][special_at] == int(Op.KEEP)).all()


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("rows", [[[42]], [[TINY.unk, TINY.mask]], [[11, 12]]])
def test_tiny_and_all_special_rows_work(name: str, rows: list[list[int]]) -> None:
    out = run(name, rows, 1)
    assert out.input_ids.size(0) == 1


@pytest.mark.parametrize("name", NAMES)
def test_every_objective_is_documented(name: str) -> None:
    objective = get(name)
    assert objective.summary
    assert objective.paper
    for p in objective.params:
        assert p.help, f"{name}.{p.name} needs help text"


def test_every_family_registers_something() -> None:
    families = {o.family for o in list_objectives()}
    assert set(corruptions.FAMILIES) <= families


def test_the_library_stays_pure() -> None:
    banned = "{'typer', 'rich', 'datasets', 'tokenizers'}"
    code = f"import sys, corruptions; print(sorted({banned} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


SHARED = {"registry", "types", "errors"}  # what a family may import besides private modules


def package_imports(path: Path) -> set[str]:
    """The modules of `corruptions` that the file at `path` imports (relative or absolute)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            parts = (node.module or "").split(".")
            if node.level == 1:
                found.update([parts[0]] if node.module else [a.name for a in node.names])
            elif parts[0] == "corruptions":
                found.update(parts[1:2] or [a.name for a in node.names])
        elif isinstance(node, ast.Import):
            found.update(
                a.name.split(".")[1] for a in node.names if a.name.startswith("corruptions.")
            )
    return found


@pytest.mark.parametrize(
    "path", sorted(Path(corruptions.__file__).parent.glob("*.py")), ids=lambda p: p.stem
)
def test_families_import_no_other_family(path: Path) -> None:
    """A family imports only private modules (`_*.py`), registry, types and errors; a private
    module imports no family either, so nothing reaches one family through another."""
    name = path.stem
    if name == "__init__":
        return
    families = set(corruptions.FAMILIES)
    assert name in families | SHARED or name.startswith("_"), name
    crossing = package_imports(path) & families
    assert not crossing, f"{name} imports the family module(s) {sorted(crossing)}"


REORDERS = {"bart", "bart-permute", "bart-rotate", "sop"}  # may put content out of source order
COMPOSED = [
    "bart-infill+bart-rotate",
    "bart-delete+bart-permute+bart-rotate",
    "bart-mask+bart-permute",
]
PRESENT = [int(Op.MASK), int(Op.RANDOM), int(Op.MOVED), int(Op.CONTEXT)]  # always in the input
AS_IS = [int(Op.KEEP), int(Op.PREDICT), int(Op.CONTEXT), int(Op.MOVED)]  # in the input unchanged
HEADS = [int(Op.MASK), int(Op.RANDOM), int(Op.SPAN)]  # may stand for the span after them


@pytest.mark.parametrize("name", NAMES + COMPOSED)
@given(ids=st.lists(word_ids, min_size=1, max_size=96), seed=st.integers(0, 2**32 - 1))
def test_origin_says_where_every_input_token_came_from(
    name: str, ids: list[int], seed: int
) -> None:
    specials = [TINY.mask, TINY.eos, TINY.sentinels[1]]
    with_special = [*ids[:5], specials[seed % 3], *ids[5:]]  # a special id inside the content
    batch = tokens(
        [ids, with_special, ids[: max(1, len(ids) // 3)]], word_every=2, sentence_every=7
    )
    plain = create(name)(batch, TINY, make_generator(seed))
    out = create(name)(batch, TINY, make_generator(seed), with_origin=True)
    assert plain.origin is None
    for key, value in plain.as_dict().items():  # asking for origin changes nothing else
        assert torch.equal(value, out.as_dict()[key]), key
    assert out.origin is not None
    assert out.origin.shape == out.input_ids.shape
    assert out.origin.dtype == torch.long
    assert (out.origin[~out.attention_mask] == -1).all()
    for row in range(batch.ids.size(0)):
        check_origin_row(name, batch.ids[row, : int(batch.lengths[row])], out, row)


def check_origin_row(name: str, source: torch.Tensor, out: corruptions.Corrupted, row: int) -> None:
    """One row of `test_origin_says_where_every_input_token_came_from`."""
    assert out.origin is not None
    assert out.ops is not None
    n, origin, inputs = source.numel(), out.origin[row], out.input_ids[row]
    reorders = bool(REORDERS & set(name.split("+")))
    ops = out.ops[row, :n].long()
    at = origin >= 0
    held = origin[at]
    assert (held < n).all()
    assert held.unique().numel() == held.numel()  # each source position at most once
    if not reorders:
        assert (held.diff() > 0).all()  # in source order
    present = torch.zeros(n, dtype=torch.bool).index_fill_(0, held, True)
    op_at = ops[held]
    same = torch.isin(op_at, torch.tensor(AS_IS))
    assert torch.equal(inputs[at][same], source[held][same])
    assert (inputs[at][op_at == int(Op.MASK)] == TINY.mask).all()
    assert torch.isin(inputs[at][op_at == int(Op.SPAN)], TINY.sentinel_tensor(inputs.device)).all()
    assert not present[ops == int(Op.DELETE)].any()
    assert present[torch.isin(ops, torch.tensor(PRESENT))].all()
    assert present[~TINY.is_special(source) & (ops == int(Op.KEEP))].all()
    # an absent SPAN token follows, in source order, the present token that stands for its span
    # or another such token (after a sentence permutation a span may run on from elsewhere)
    absent_span = ~present & (ops == int(Op.SPAN))
    head = present & torch.isin(ops, torch.tensor(HEADS))
    after = torch.cat([torch.tensor([False]), (head | absent_span)[:-1]])
    if not reorders:
        assert after[absent_span].all()
    if (
        get(name.split("+")[0]).arch != "encoder-decoder"
    ):  # labels follow the input: they hold the source
        scored = at & (out.labels[row] != IGNORE)
        assert torch.equal(out.labels[row][scored], source[origin[scored]])


def most_random(name: str) -> dict[str, float]:
    """Overrides that make every replacement of `name` a random one, where it has them."""
    params = {p.name for part in name.split("+") for p in get(part).params}
    if "random_replace" in params:
        return {"mask_replace": 0.0, "random_replace": 1.0}
    return {"mask_random": 1.0} if "mask_random" in params else {}


@pytest.mark.parametrize("name", NAMES + COMPOSED)
@pytest.mark.parametrize("overrides", ["defaults", "all random"])
def test_random_replacements_are_never_special(name: str, overrides: str) -> None:
    """A third of TINY's ids are specials (sentinels, [MASK], [CLS], paradigm tokens...), the
    content here none: a random id drawn from the whole vocabulary would often be one. Where the
    input holds a special id, it is framing, [MASK], or the objective's own sentinel or paradigm
    token; a token that replaced a source token at random is never special."""
    corrupt = create(name, **(most_random(name) if overrides == "all random" else {}))
    batch = random_batch(32, 96, seed=5, word_every=2, sentence_every=9)
    allowed = [TINY.bos, TINY.eos, TINY.mask]
    if name == "ul2":
        allowed += list(TINY.extra.values())
    if get(name.split("+")[0]).sentinels:
        allowed += list(TINY.sentinels)
    for seed in range(3):
        out = corrupt(batch, TINY, make_generator(seed), with_origin=True)
        assert out.ops is not None
        assert out.origin is not None
        ids = out.input_ids[out.attention_mask]
        special = TINY.is_special(ids)
        assert torch.isin(ids[special], torch.tensor(allowed)).all()
        at = out.origin >= 0
        rows = torch.arange(batch.ids.size(0)).unsqueeze(1).expand_as(out.origin)
        randomised = out.ops[rows[at], out.origin[at]] == int(Op.RANDOM)
        assert not TINY.is_special(out.input_ids[at][randomised]).any()

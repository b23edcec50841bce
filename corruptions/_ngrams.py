"""N-gram masking units, chosen for a whole batch at once (ALBERT's and UniLM's n-gram MLM).

The references walk a shuffled list of positions, draw an n-gram size for each, skip n-grams that
overlap earlier ones and stop at the budget: a sequential loop. Here each row's candidate words
are tiled into consecutive units whose sizes are drawn i.i.d. (so units never overlap and their
sizes follow the requested distribution exactly), the units are visited in a random order, and
whole units are taken until the budget is reached. The unit that would overflow it is settled as
its reference does (`overflow`): "cut" keeps its leading words that fit (ALBERT's fall back to a
shorter n-gram); "random" takes it whole and then drops the overshoot from uniformly random
chosen tokens (UniLM's loader: shuffle the masked positions, keep the first n_pred). Cutting
turns some n-grams into unigrams at the boundary: on 128-token rows (~17 units) the n-gram
share of UniLM's events fell from 0.20 to 0.19; dropping at random keeps it at 0.20.
Differences from the loops: no overlap rejection (which biases the references slightly against
long n-grams), and with "cut" no search past the overflowing unit for a smaller one that still
fits, so with multi-piece words a row can end up to one word short of its budget. Units tile
the allowed tokens only, so one may reach over a special such as the middle [SEP] (ALBERT's
candidate list does the same; UniLM's loader stops there).

    words        a  b  c  d  e  f  g  h          sizes drawn 2, 1, 3, 1, 1, ...
    units       [a  b][c][d  e  f][g][h]
    visit order  [d e f] [a b] [h] ...           budget 4 tokens: d e f, then
                                                 cut: a (b does not fit); random: a b, then
                                                 4 of d e f a b at random
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ._ops import choose_k

NO_KEY = 2**62  # sort key of a token that may not be chosen
OVERFLOWS = ("cut", "random")


@dataclass(frozen=True)
class NgramChoice:
    """Chosen tokens and the units they belong to."""

    chosen: Tensor  # (B, L) bool
    units: Tensor  # (B, L) int64: the unit of each allowed token (meaningless elsewhere)
    unit_words: Tensor  # (B, L) int64: words in unit k as tiled (before any budget cut)

    @property
    def unit(self) -> Tensor:
        """(B, L) int64: unit index of each chosen token, -1 elsewhere."""
        return torch.where(self.chosen, self.units, -1)


def size_probs(max_n: int, favor_shorter: bool) -> tuple[float, ...]:
    """P(n) for n = 1..max_n: proportional to 1/n (ALBERT's favor_shorter_ngram) or uniform."""
    weights = [1.0 / n if favor_shorter else 1.0 for n in range(1, max_n + 1)]
    return tuple(w / sum(weights) for w in weights)


def choose_ngrams(
    allowed: Tensor,
    word_starts: Tensor | None,
    budget: Tensor,
    probs: tuple[float, ...],
    gen: torch.Generator,
    overflow: str = "cut",
) -> NgramChoice:
    """Choose `min(budget[b], allowed tokens)` tokens per row in whole units of 1..len(probs)
    words, the unit that reaches the budget settled by `overflow` (see the module docstring;
    "cut" may end a few tokens short when the word that reaches the budget does not fit whole).

    Every token gets the key (priority of its unit, its word's index): the `budget` smallest keys
    visit the units in random order and each unit word by word. One `topk` per batch finds the
    key that reaches the budget; its word is taken if it fits whole. No full sort.

    With one-word units (`probs=(1.0,)`, NSP's MLM) this chooses tokens as uniformly as
    `_ops.choose_k`, but from other draws (one int64 key per slot, not one float per position),
    so swapping one for the other changes every output.

    Args:
        allowed: (B, L) bool, the tokens that may be chosen.
        word_starts: (B, L) bool, True where a token opens a word; None: every token is a word.
            A token right after a disallowed one always opens a word.
        budget: (B,) int64, most tokens to choose per row.
        probs: P(unit has n words), n = 1, 2, ...
        gen: the random generator.
        overflow: "cut" (ALBERT) or "random" (UniLM).
    """
    if overflow not in OVERFLOWS:
        raise ValueError(f"overflow must be one of {', '.join(OVERFLOWS)}, got '{overflow}'")
    width = allowed.size(1)
    word, unit, sizes, priority = _tile(allowed, word_starts, probs, gen)
    unit_priority = priority.gather(1, unit)  # (B, L)
    key = (unit_priority * (width + 1)).add_(word).add_(~allowed * NO_KEY)
    k_max = max(1, min(width, int(budget.max()) if budget.numel() else 1))
    # (B, k_max) ascending; sorting the k_max afterwards is much faster than topk's own sort
    smallest = key.topk(k_max, dim=1, largest=False, sorted=False).values.sort(dim=1).values
    reach = smallest.gather(1, (budget - 1).clamp(min=0, max=k_max - 1).unsqueeze(1))  # (B, 1)
    if overflow == "random":  # every unit up to the one at `reach`, whole, less a random overshoot
        whole = allowed & (unit_priority <= reach // (width + 1))
        drop = choose_k(whole, whole.sum(1) - budget, gen)  # a few per row: a narrow topk
        return NgramChoice(whole & ~drop, unit, sizes)
    # the word at `reach` is taken if it fits whole: then every key up to it, else those below
    fits = (key <= reach).sum(1, keepdim=True) <= budget.unsqueeze(1)
    chosen = allowed & (key <= reach - (~fits).long())
    return NgramChoice(chosen, unit, sizes)


def _tile(
    allowed: Tensor, word_starts: Tensor | None, probs: tuple[float, ...], gen: torch.Generator
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The allowed words tiled into units of i.i.d. sizes (unit k covers words [start[k],
    start[k] + sizes[k])), one draw per unit slot: its low 31 bits pick the size, its high 31
    bits the unit's priority.

    Returns:
        (word, unit, sizes, priority): word and unit index of every token (B, L), the sizes
        drawn (B, L), the priority of every unit slot (B, L + 1).
    """
    n_rows, width = allowed.shape
    device = allowed.device
    if word_starts is None:
        opens = allowed
    else:
        after_gap = torch.ones_like(allowed)
        after_gap[:, 1:] = ~allowed[:, :-1]
        opens = allowed & (word_starts | after_gap)
    word = opens.cumsum(1).sub_(1).clamp_(min=0)  # (B, L) int64 word index (where allowed)
    draw = torch.randint(0, 2**62, (n_rows, width + 1), generator=gen, device=device)
    sizes = torch.ones_like(word)
    if len(probs) == 1:
        return word, word, sizes, draw >> 31
    low = draw[:, :width] & (2**31 - 1)
    for bound in torch.tensor(probs, dtype=torch.float64).cumsum(0)[:-1].tolist():
        sizes += low >= round(bound * 2**31)
    start = (sizes.cumsum(1) - sizes).clamp_(max=width)
    opens_unit = torch.zeros((n_rows, width + 1), dtype=torch.bool, device=device)
    opens_unit.scatter_(1, start, torch.ones_like(allowed))  # a tensor source: 3x faster
    return word, opens_unit.cumsum(1).sub_(1).gather(1, word), sizes, draw >> 31

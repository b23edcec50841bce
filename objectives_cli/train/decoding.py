"""How a model writes: greedy, sampling or beam search, each as transformers' `generate` does it,
so that `objectives fill` and the exported model give the same text for the same settings.

A search reads the model through one function, `step(sequences) -> next-token logits`, and
writes after a prompt, the decoder inputs the model was trained with; `forced` tokens come first
whatever the model says (BART's <s> after </s>, transformers' `forced_bos_token_id`).

    greedy    the most likely token each step (temperature 0, the default)
    sample    temperature, then top-k, then top-p (nucleus) filtering of the logits, then one
              `torch.multinomial` draw from the global generator, seeded with `seed`
    beams     `beams` > 1: transformers' beam search with its defaults (length_penalty 1.0,
              early_stopping False): 2 x beams candidates a step, a finished hypothesis scored by
              its log-probability / generated length ** length_penalty, the search ending when
              no running beam can beat the worst finished one
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from corruptions import UsageError

Step = Callable[[Tensor], Tensor]  # (n, T) token ids -> (n, V) logits of the next token
NEG = -1.0e9  # transformers' "never chosen" score


@dataclass(frozen=True)
class Decoding:
    """The settings of a search (transformers' names and defaults where they exist)."""

    temperature: float = 0.0  # 0: greedy; above 0: sample at this temperature
    top_k: int = 0  # sampling: keep the k most likely tokens (0: all)
    top_p: float = 1.0  # sampling: keep the fewest tokens holding this much probability
    beams: int = 1  # above 1: beam search
    length_penalty: float = 1.0  # beam search: a finished score is divided by length ** this
    seed: int = 0  # the global generator's seed before the first draw

    def __post_init__(self) -> None:
        checks = [
            (self.temperature >= 0, f"--temperature must be at least 0, not {self.temperature}"),
            (self.top_k >= 0, f"--top-k must be at least 0, not {self.top_k}"),
            (0 < self.top_p <= 1, f"--top-p must be in (0, 1], not {self.top_p}"),
            (self.beams >= 1, f"--beams must be at least 1, not {self.beams}"),
            (
                self.beams == 1 or self.temperature == 0,
                "--beams searches greedily: give --temperature 0 (or --beams 1 to sample)",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise UsageError(message)

    @property
    def mode(self) -> str:
        return "beams" if self.beams > 1 else "sample" if self.temperature > 0 else "greedy"


def search(
    step: Step, prompt: list[int], forced: list[int], limit: int, eos: int, how: Decoding
) -> list[int]:
    """The tokens written after `prompt`: `forced`, then at most `limit` more; the last is `eos`
    when the search ended there."""
    torch.manual_seed(how.seed)
    if how.beams > 1:
        return beam_search(step, prompt, forced, limit, eos, how)
    out = list(prompt)
    for t in range(len(forced) + limit):
        scores = step(torch.tensor([out])).float()  # (1, V)
        if t < len(forced):
            scores = force(scores, forced[t])
        nxt = sample(scores, how) if how.temperature > 0 else int(scores.argmax())
        out.append(nxt)
        if nxt == eos:
            break
    return out[len(prompt) :]


def force(scores: Tensor, token: int) -> Tensor:
    """Every token but `token` impossible (transformers' ForcedBOSTokenLogitsProcessor)."""
    forced = torch.full_like(scores, float("-inf"))
    forced[:, token] = 0.0
    return forced


def sample(scores: Tensor, how: Decoding) -> int:
    """One draw from (1, V) `scores` after temperature, top-k and top-p (transformers' warpers)."""
    if how.temperature != 1.0:
        scores = scores / how.temperature
    if how.top_k > 0:
        kth = torch.topk(scores, min(how.top_k, scores.size(-1)))[0][..., -1, None]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    if how.top_p < 1.0:
        ordered, order = torch.sort(scores, descending=False)
        cumulative = ordered.softmax(dim=-1).cumsum(dim=-1)
        drop = cumulative <= (1 - how.top_p)
        drop[..., -1:] = False  # the most likely token always stays
        scores = scores.masked_fill(drop.scatter(1, order, drop), float("-inf"))
    return int(torch.multinomial(F.softmax(scores, dim=-1), num_samples=1)[0, 0])


def beam_search(
    step: Step, prompt: list[int], forced: list[int], limit: int, eos: int, how: Decoding
) -> list[int]:
    """transformers' beam search (one input), see the module docstring."""
    n, keep, lp = how.beams, 2 * how.beams, how.length_penalty
    start, cur = len(prompt), len(prompt)
    most = start + len(forced) + limit  # transformers' max_length
    running = torch.full((n, most), eos, dtype=torch.long)
    running[:, :start] = torch.tensor(prompt)
    running_scores = torch.full((n,), NEG)
    running_scores[0] = 0.0
    done, done_scores = running.clone(), torch.full((n,), NEG)
    finished = torch.zeros(n, dtype=torch.bool)
    top = torch.arange(keep) < n  # only the best n candidates may finish
    hopeful = True  # a running beam may still beat the worst finished one
    while True:
        log_probs = F.log_softmax(step(running[:, :cur]).float(), dim=-1)  # (n, V)
        if cur - start < len(forced):
            log_probs = force(log_probs, forced[cur - start])
        vocab = log_probs.size(-1)
        scores, index = (log_probs + running_scores[:, None]).reshape(-1).topk(keep)
        candidates = running[index // vocab].clone()
        candidates[:, cur] = index % vocab
        ends = (index % vocab == eos) | (cur + 1 >= most)
        alive = scores + ends.float() * NEG
        chosen = alive.topk(n).indices
        running, running_scores = candidates[chosen], alive[chosen]
        final = scores / ((cur + 1 - start) ** lp) + (not hopeful) * NEG + (~(ends & top)) * NEG
        merged = torch.cat((done_scores, final)).topk(n).indices
        done = torch.cat((done, candidates))[merged]
        done_scores = torch.cat((done_scores, final))[merged]
        finished = torch.cat((finished, ends & top))[merged]
        cur += 1
        best = running_scores[0] / ((cur - start) ** lp)
        worst = torch.where(finished, done_scores.min(), torch.tensor(NEG))
        hopeful = hopeful and bool((best > worst).any())
        if not hopeful or bool(ends.all()):
            break
    written = done[0, start:cur].tolist()
    return written[: written.index(eos) + 1] if eos in written else written

"""What only a GPU can show; `pytest -m gpu` runs these on a CUDA machine, elsewhere they skip.

- every model shape trains with the default precision on CUDA (bf16 autocast) and learns;
- full rows reach the flash-attention kernels: encoder, causal decoder and encoder-decoder run
  forward and backward with SDPA restricted to FLASH_ATTENTION, which raises rather than fall
  back when our masks rule flash out (a padded batch shows that it does);
- `compile=True` trains through inductor's CUDA backend, like eager and without endless
  recompiles; AdamW is the fused CUDA kernel;
- every registered corruption runs on CUDA tensors and a CUDA generator and keeps the contract;
- a real CUDA out-of-memory error ends `objectives train` with one error line and a hint.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch._dynamo.utils import counters
from torch.nn.attention import SDPBackend, sdpa_kernel

from corruptions import (
    IGNORE,
    Corrupted,
    Tokens,
    Vocab,
    create,
    get,
    list_objectives,
    make_generator,
)
from objectives_cli.model.config import ARCHS, ModelConfig, preset
from objectives_cli.model.model import Model
from objectives_cli.train import loop as train_loop
from objectives_cli.train.checkpoints import read_metrics
from objectives_cli.train.loop import Trainer, train
from objectives_cli.train.losses import term_losses
from objectives_cli.train.runtime import amp_context
from tests.cli.runner import invoke
from tests.helpers import NON_LEAF_GRAD, corpus_tokens, corpus_vocab
from tests.train.conftest import QUIET, tiny
from tests.train.test_compile import MAX_GRAPHS, RECOMPILE_LIMIT, GraphCount

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]

CUDA = torch.device("cuda")
BY_ARCH = {"encoder": "bert-mlm", "decoder": "clm", "encoder-decoder": "bart-infill"}
MARGIN = 0.05  # held-out loss falls by >= 5% in 20 steps; bf16 on CPU measures 14-20%
BF16_TOLERANCE = 2e-2  # compiled vs eager losses in bf16 (inductor rounds at other points)
VOCAB = 512


def losses(run: Path) -> list[float]:
    return [r["loss"] for r in read_metrics(run) if "loss" in r]


# --- training --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", BY_ARCH.values())
def test_every_arch_learns_with_bf16_autocast(name: str, tmp_path: Path) -> None:
    cfg = tiny(tmp_path, name, steps=20, lr=3e-3, device="cuda")
    x = torch.ones(2, 2, device=CUDA)
    with amp_context(cfg, CUDA):  # precision "auto" means bf16 autocast on CUDA
        assert (x @ x).dtype == torch.bfloat16
    summary = train(cfg, QUIET)
    curve = losses(tmp_path)
    assert len(curve) == 20
    assert all(math.isfinite(v) for v in curve)
    assert summary["eval_loss"] < (1 - MARGIN) * summary["start_eval_loss"], summary


def test_the_trainer_uses_fused_adamw(tmp_path: Path) -> None:
    trainer = Trainer(tiny(tmp_path, device="cuda"), QUIET, False, 0, 1, 0)
    assert trainer.opt.defaults["fused"] is True
    assert all(p.is_cuda for group in trainer.opt.param_groups for p in group["params"])


@pytest.fixture
def fresh_dynamo() -> Iterator[None]:
    torch._dynamo.reset()
    counters.clear()
    yield
    torch._dynamo.reset()


@pytest.mark.filterwarnings(NON_LEAF_GRAD)
@pytest.mark.usefixtures("fresh_dynamo")
@pytest.mark.parametrize("name", BY_ARCH.values())
def test_compiled_training_on_cuda(name: str, tmp_path: Path) -> None:
    steps = 8
    eager = train(tiny(tmp_path / "eager", name, steps=steps, device="cuda"), QUIET)
    count = GraphCount()
    with torch._dynamo.config.patch(
        recompile_limit=RECOMPILE_LIMIT, fail_on_recompile_limit_hit=True
    ):
        compiled = train(
            tiny(tmp_path / "compiled", name, steps=steps, device="cuda", compile=True), count
        )
    assert count.graphs[0] > 0, "nothing was compiled"
    # CUDA draws other masks than the CPU test, so a rare batch shape may first appear late; a
    # per-step recompile would still pass RECOMPILE_LIMIT within the 8 steps and fail the run
    assert count.graphs[-1] <= MAX_GRAPHS, count.graphs
    assert losses(tmp_path / "compiled") == pytest.approx(
        losses(tmp_path / "eager"), rel=BF16_TOLERANCE
    )
    assert compiled["eval_loss"] == pytest.approx(eager["eval_loss"], rel=BF16_TOLERANCE)


@pytest.mark.filterwarnings(NON_LEAF_GRAD)
@pytest.mark.usefixtures("fresh_dynamo")
def test_the_compile_flag_trains_on_cuda(tmp_path: Path) -> None:
    result = invoke(
        "train",
        "-o",
        "clm",
        "--compile",
        "--device",
        "cuda",
        "--steps",
        "4",
        "--seq-len",
        "32",
        "--batch-size",
        "8",
        "--eval-batches",
        "1",
        "--log-every",
        "1",
        "--out",
        str(tmp_path / "r"),
    )
    assert result.code == 0, result.stderr
    assert [row["step"] for row in read_metrics(tmp_path / "r") if "loss" in row] == [1, 2, 3, 4]


# --- flash attention -------------------------------------------------------------------------


def model(arch: str, positions: str = "learned") -> Model:
    torch.manual_seed(0)
    cfg = ModelConfig(arch=arch, vocab_size=VOCAB, positions=positions, **preset("tiny", arch))
    return Model(cfg).to(CUDA)


def full_rows(arch: str, rows: int = 4, length: int = 64) -> Corrupted:
    """A batch with no padding (as packed training rows are), on the GPU."""
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(10, VOCAB, (rows, length), generator=gen)
    real = torch.ones_like(ids, dtype=torch.bool)
    if arch == "encoder-decoder":
        labels = torch.randint(10, VOCAB, (rows, length // 2), generator=gen)
        decoder_input_ids = torch.cat([torch.full((rows, 1), 2), labels[:, :-1]], 1)
        return Corrupted(ids, real, labels, decoder_input_ids).to(CUDA)
    scored = torch.arange(length) % 7 == 0  # every 7th position, as MLM's 15% roughly
    labels = ids if arch == "decoder" else ids.masked_fill(~scored, IGNORE)
    return Corrupted(ids, real, labels).to(CUDA)


def total_loss(m: Model, batch: Corrupted) -> torch.Tensor:
    return sum((loss for loss, _ in term_losses(m(batch)).values()), torch.zeros((), device=CUDA))


@pytest.mark.parametrize("positions", ["learned", "rotary"])
@pytest.mark.parametrize("arch", ARCHS)
def test_full_rows_run_on_flash_attention(arch: str, positions: str) -> None:
    if torch.cuda.get_device_capability() < (8, 0):
        pytest.skip("flash attention needs an Ampere or newer GPU")
    m = model(arch, positions)
    with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = total_loss(m, full_rows(arch))
        loss.backward()
    assert torch.isfinite(loss)
    grads = [p.grad for p in m.parameters() if p.grad is not None]
    assert grads
    assert all(torch.isfinite(g).all() for g in grads)


def test_a_padding_mask_rules_flash_out() -> None:
    """The control: the same restriction refuses a padded batch, so passing above means flash."""
    if torch.cuda.get_device_capability() < (8, 0):
        pytest.skip("flash attention needs an Ampere or newer GPU")
    batch = full_rows("encoder")
    padded = batch.attention_mask.clone()
    padded[1, 48:] = False
    batch = dataclasses.replace(batch, attention_mask=padded)
    amp = torch.autocast("cuda", dtype=torch.bfloat16)
    with warnings.catch_warnings(), sdpa_kernel(SDPBackend.FLASH_ATTENTION), amp:
        warnings.simplefilter("ignore")  # torch warns why each kernel was refused, then raises
        with pytest.raises(RuntimeError, match="No available kernel"):
            model("encoder")(batch)


# --- corruption on the GPU -----------------------------------------------------------------


@pytest.fixture(scope="module")
def corpus() -> tuple[Tokens, Vocab]:
    return corpus_tokens(20_000, 128), corpus_vocab()


def scored_share(out: Corrupted, batch: Tokens) -> float:
    return float((out.labels != IGNORE).sum() / batch.real.sum())


@pytest.mark.parametrize("name", [o.name for o in list_objectives()])
def test_corrupts_on_cuda(name: str, corpus: tuple[Tokens, Vocab]) -> None:
    cpu_batch, vocab = corpus
    batch = cpu_batch.to(CUDA)
    before = batch.ids.clone()
    out = create(name)(batch, vocab, make_generator(0, device=CUDA))
    again = create(name)(batch, vocab, make_generator(0, device=CUDA))
    assert torch.equal(batch.ids, before)  # the input is never written to
    for key, value in out.as_dict().items():
        assert value.is_cuda, key
        assert value.size(0) == batch.ids.size(0), key
        assert torch.equal(value, again.as_dict()[key]), key  # same seed, same output
    assert out.input_ids.dtype == torch.long
    assert out.labels.dtype == torch.long
    assert out.attention_mask.dtype == torch.bool
    assert out.input_ids.shape == out.attention_mask.shape
    assert ((out.input_ids >= 0) & (out.input_ids < vocab.size)).all()
    assert (out.input_ids[~out.attention_mask] == vocab.pad).all()
    scored = out.labels[out.labels != IGNORE]
    assert scored.numel() > 0
    assert ((scored >= 0) & (scored < vocab.size)).all()
    if get(name).arch == "encoder-decoder":
        assert out.decoder_input_ids is not None
        assert out.decoder_input_ids.shape == out.labels.shape
    else:
        assert out.labels.shape == out.input_ids.shape
        assert (out.labels[~out.attention_mask] == IGNORE).all()
    if out.ops is not None:
        assert out.ops.shape == batch.ids.shape
    on_cpu = create(name)(cpu_batch, vocab, make_generator(0))  # other draws, same rates
    assert scored_share(out, batch) == pytest.approx(scored_share(on_cpu, cpu_batch), abs=0.1)


# --- the CLI ------------------------------------------------------------------------------------


def test_cuda_out_of_memory_is_one_error_line_and_a_hint(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def too_big(*args: object, **kwargs: object) -> None:
        twice_the_gpu = 2 * torch.cuda.get_device_properties(CUDA).total_memory
        torch.empty(twice_the_gpu, dtype=torch.uint8, device=CUDA)  # the allocator's own error

    monkeypatch.setattr(train_loop, "train", too_big)
    result = invoke("train", "-o", "bert-mlm", "--device", "cuda", "--out", str(tmp_path / "r"))
    assert result.code == 1
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert [line for line in lines if line.startswith("error:")] == [
        "error: CUDA ran out of memory (16 rows x 128 tokens, model tiny)"
    ]
    assert len([line for line in lines if line.startswith("hint:")]) == 1

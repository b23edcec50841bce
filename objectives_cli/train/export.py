"""A trained run as a Hugging Face transformers model directory, with the same outputs.

Each of the project's three shapes is the math of one stock transformers class, so the export is
a renaming of weights, never an approximation:

    encoder          MegatronBertForMaskedLM (pre-LN blocks, no embedding LayerNorm, a final
                     LayerNorm, BERT's MLM head); with an NSP/SOP head MegatronBertForPreTraining
    decoder          GPT2LMHeadModel (GELU, Conv1D weights = our Linear weights transposed)
    encoder-decoder  BlenderbotForConditionalGeneration (pre-LN, unscaled embeddings, learned
                     positions: our one table copied to both sides; our output bias is its
                     final_logits_bias)

Heads without a stock twin (SpanBERT's span boundary head, XLNet's query stream and its MLM head
without a transform, ELECTRA's generator and replaced-token head) are left out, and the body is
exported as the bare model; `Exported.notes` says what was left out and why. After writing, the
export is loaded back with the matching Auto class and run on sample texts next to the project's
model: the largest logit difference is recorded in the model card, and an export that differs
by more than `TOLERANCE` is removed and reported, never left behind.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from corruptions import ObjectivesError, UsageError

from . import checkpoints
from .hf_weights import Target, target
from .inference import LoadedRun, load_run

TOLERANCE = 1e-4  # max |logit difference| in fp32 between the export and the project's model
SAMPLES = (
    "The capital of France is [MASK] .",
    "Python is a programming language that lets you work quickly and integrate systems.",
)


@dataclass
class Exported:
    """What `export_run` wrote."""

    out: Path
    architecture: str  # the transformers class, e.g. "MegatronBertForMaskedLM"
    auto_class: str  # the Auto class that loads it, e.g. "AutoModelForMaskedLM"
    max_diff: float  # largest |logit difference| on the sample texts
    notes: list[str] = field(default_factory=list)  # what was left out, and other caveats


def export_run(
    run_dir: Path, out: Path, step: int | None = None, force: bool = False, warn: Any = print
) -> Exported:
    """Write the run's checkpoint (the newest, or `step`) to `out` as a transformers model."""
    transformers = _transformers()
    check_output(out, force)
    run = load_run(run_dir, "cpu", warn, step=step)
    spec = target(run)
    config = getattr(transformers, spec.config_class)(**spec.config)
    config.architectures = [spec.architecture]
    model = getattr(transformers, spec.architecture)(config).eval()
    missing, unexpected = model.load_state_dict(spec.weights, strict=False)
    missing = [k for k in missing if k not in spec.tied]
    if missing or unexpected:  # a mapping bug, not a user error: keep the traceback
        raise RuntimeError(f"export mapping incomplete: missing {missing}, unexpected {unexpected}")
    tmp = out.with_name(f".{out.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        if spec.generation is not None:  # plain greedy by default, as `objectives fill`
            model.generation_config = transformers.GenerationConfig(**spec.generation)
        model.save_pretrained(tmp)
        write_tokenizer(run, tmp, spec)
        max_diff = compare(run, tmp, spec, transformers)
        if max_diff > TOLERANCE:
            raise ObjectivesError(
                f"the exported model differs from the run by {max_diff:.2e} in logits "
                f"(more than {TOLERANCE:g}); nothing was written",
                "please report this as a bug, with the run's config.json",
            )
        (tmp / "README.md").write_text(model_card(run, spec, max_diff))
        if out.exists():
            shutil.rmtree(out) if out.is_dir() else out.unlink()
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return Exported(out, spec.architecture, spec.auto_class, max_diff, spec.notes)


def _transformers() -> Any:
    """transformers, quiet (no progress bars, warnings only)."""
    try:
        import transformers
    except ImportError:
        raise ObjectivesError(
            "export needs the transformers package, which is not installed",
            "pip install 'objectives[export]'  (or: pip install transformers)",
        ) from None
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    return transformers


def check_output(out: Path, force: bool) -> None:
    """Refuse an output that exists and is not an empty directory, unless `force`."""
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise UsageError(f"{out} exists and is not a directory", "give a new directory")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise UsageError(f"{out} is not empty", "give a new directory, or --force to replace it")


def write_tokenizer(run: LoadedRun, out: Path, spec: Target) -> None:
    """tokenizer.json (framing as the objective frames its inputs) and tokenizer_config.json."""
    from tokenizers import Tokenizer, processors

    tok = Tokenizer.from_str(run.tok.to_str())
    name = run.tok.id_to_token
    prefix = [name(i) for i in run.info.frame_prefix]
    suffix = [name(i) for i in run.info.frame_suffix]
    specials = [(t, run.tok.token_to_id(t)) for t in dict.fromkeys(prefix + suffix)]
    if specials:
        single = " ".join([*prefix, "$A", *suffix])
        pair = " ".join([*prefix, "$A", *suffix, "$B:1", *(f"{t}:1" for t in suffix)])
        tok.post_processor = processors.TemplateProcessing(
            single=single, pair=pair, special_tokens=specials
        )
    tok.no_padding()
    tok.no_truncation()
    tok.save(str(out / "tokenizer.json"))
    vocab = run.vocab
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": run.model.cfg.max_len,
        "pad_token": name(vocab.pad),
        "unk_token": name(vocab.unk),
        "mask_token": name(vocab.mask),
        "cls_token": name(vocab.bos),
        "sep_token": name(vocab.eos),
        "bos_token": name(vocab.bos),
        "eos_token": name(vocab.eos),
    }
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")


@torch.no_grad()
def compare(run: LoadedRun, out: Path, spec: Target, transformers: Any) -> float:
    """Load `out` as users will and return the largest |logit difference| from the run's model
    on `SAMPLES`, batched with padding; the exported tokenizer must give the run's ids."""
    theirs = getattr(transformers, spec.auto_class).from_pretrained(out).eval()
    tok = transformers.AutoTokenizer.from_pretrained(out)
    texts = list(SAMPLES)
    if run.model.cfg.cross_hide >= 0:  # MASS: exact only where no [MASK] is hidden (see notes)
        texts = [t for t in texts if "[MASK]" not in t]
    enc = tok(texts, padding=True, return_tensors="pt")
    ids, mask = enc["input_ids"], enc["attention_mask"].bool()
    ours_ids = [encode_framed(run, text) for text in texts]
    if [row[m].tolist() for row, m in zip(ids, mask, strict=True)] != ours_ids:
        raise RuntimeError("the exported tokenizer gives other ids than the run's")
    model = run.model
    from corruptions import IGNORE, Corrupted

    extras = {"token_type_ids": torch.zeros_like(ids)} if model.cfg.token_types else {}
    batch = Corrupted(ids, mask, torch.full_like(ids, IGNORE), extras=extras)
    pairs: list[tuple[Tensor, Tensor]]
    if spec.auto_class == "AutoModelForSeq2SeqLM":
        decoder_ids = ids.clone()  # any decoder input: the source itself, teacher-forced
        memory, memory_mask = model.encode(batch)
        logits = model.lm_logits(model.decode(decoder_ids, memory, memory_mask))
        other = theirs(input_ids=ids, attention_mask=mask.long(), decoder_input_ids=decoder_ids)
        pairs = [(logits, other.logits)]
    elif spec.auto_class == "AutoModelForCausalLM":
        logits = model.lm_logits(model.run_decoder(batch))
        pairs = [(logits[mask], theirs(input_ids=ids, attention_mask=mask.long()).logits[mask])]
    else:
        h, _ = model.run_encoder(batch)
        other = theirs(input_ids=ids, attention_mask=mask.long())
        if spec.auto_class == "AutoModel":
            pairs = [(h[mask], other.last_hidden_state[mask])]
        else:
            logits = model.mlm(h, model.table)
            mine = other.logits if hasattr(other, "logits") else other.prediction_logits
            pairs = [(logits[mask], mine[mask])]
            if model.classifier is not None:
                pairs.append((model.classifier(h[:, 0]), other.seq_relationship_logits))
    return max(float((a.float() - b.float()).abs().max()) for a, b in pairs)


def encode_framed(run: LoadedRun, text: str) -> list[int]:
    """`text` as the run's model reads it: tokenised, framed like the objective's inputs."""
    ids = run.tok.encode(text, add_special_tokens=False).ids
    return [*run.info.frame_prefix, *ids, *run.info.frame_suffix]


def model_card(run: LoadedRun, spec: Target, max_diff: float) -> str:
    """README.md of the export: what it is, how it was trained, how to load it."""
    cfg, shape = run.cfg, run.model.cfg
    rows = checkpoints.read_metrics(run.run_dir)
    evals = [r for r in rows if "eval_loss" in r]
    tokens = max(
        (int(r["tokens"]) for r in rows if r.get("step", 0) <= run.step and "tokens" in r),
        default=0,
    )
    held = evals[-1] if evals else {}
    losses = ", ".join(f"{k[5:]} {v:.4f}" for k, v in held.items() if k.endswith("_loss"))
    layers = (
        f"{shape.n_layers}+{shape.n_decoder_layers}"
        if shape.arch == "encoder-decoder"
        else str(shape.n_layers)
    )
    task = {
        "AutoModelForMaskedLM": "fill-mask",
        "AutoModelForPreTraining": "fill-mask",
        "AutoModelForCausalLM": "text-generation",
        "AutoModelForSeq2SeqLM": "text2text-generation",
    }.get(spec.auto_class)
    lines = [
        f"# {cfg.objective} ({cfg.model}, step {run.step})",
        "",
        f"Pretrained with `objectives` on the {cfg.objective} objective and exported as "
        f"`{spec.architecture}`.",
        "",
        "| | |",
        "|---|---|",
        f"| objective | {cfg.objective} {dict(cfg.params) or ''} |",
        f"| model | {shape.arch}, {layers} layers x {shape.d_model}, {shape.n_heads} heads |",
        f"| data | {cfg.data or 'the built-in corpus'} |",
        f"| steps | {run.step} ({tokens:,} tokens) |",
        f"| held-out loss | {losses or 'not evaluated'} (step {held.get('step', '-')}) |",
        f"| export check | max logit difference {max_diff:.1e} on sample texts |",
        "",
        "```python",
        "import transformers",
        f'model = transformers.{spec.auto_class}.from_pretrained("PATH")',
    ]
    if task:
        lines.append(f'pipe = transformers.pipeline("{task}", model="PATH")')
    lines += ["```", "", "Trained with:", "", "```", command(cfg), "```"]
    if spec.notes:
        lines += ["", "Notes:", "", *(f"- {n}" for n in spec.notes)]
    return "\n".join(lines) + "\n"


def command(cfg: Any) -> str:
    """The `objectives train` command line that reproduces `cfg` (its non-default settings)."""
    from .config import config_for

    base = config_for(cfg.model, objective=cfg.objective, out=cfg.out)
    parts = ["objectives train", "-o", cfg.objective, "--model", cfg.model]
    for key, value in cfg.to_json().items():
        if key in ("objective", "model", "params") or value == getattr(base, key):
            continue
        parts += [f"--{key.replace('_', '-')}", str(value)]
    for key, value in cfg.params:
        parts += ["--param", f"{key}={value}"]
    return " ".join(parts)

"""`objectives export`: a run loads with the stock transformers Auto class and gives the project's
outputs (logits within 1e-4 with padding, the same greedy text, the same top-k fill), and
`objectives embed`: one vector per text, in input order."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from corruptions import IGNORE, Corrupted, ObjectivesError, UsageError
from objectives_cli.train import export as export_module
from objectives_cli.train import generation, hf_weights, inference
from objectives_cli.train.decoding import Decoding
from objectives_cli.train.embed import embed_texts
from objectives_cli.train.export import export_run
from objectives_cli.train.inference import LoadedRun, load_run
from objectives_cli.train.loop import train
from tests.cli.runner import invoke
from tests.train.conftest import QUIET, tiny

transformers = pytest.importorskip("transformers")
transformers.utils.logging.set_verbosity_error()
transformers.utils.logging.disable_progress_bar()

TEXTS = ["The capital of France is [MASK] .", "A longer sentence, so that the batch is padded."]
ARCHS = {"encoder": "bert-mlm", "decoder": "clm", "encoder-decoder": "bart-infill"}


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[LoadedRun, Path]]:
    """(run, export) per architecture: tiny runs trained a few steps, their weights then shaken
    with noise (a tiny run's greedy output is one token repeated, which any two decoders agree
    on; the export must equal the run for any weights), and exported."""
    root = tmp_path_factory.mktemp("export")
    out = {}
    for arch, name in ARCHS.items():
        cfg = tiny(root / name, name, steps=2, batch_size=4, eval_batches=1)
        train(cfg, QUIET)
        run = load_run(Path(cfg.out), "cpu")
        gen = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for p in run.model.parameters():
                p.add_(0.3 * torch.randn(p.shape, generator=gen))
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(export_module, "load_run", lambda *args, run=run, **kwargs: run)
            export_run(Path(cfg.out), root / f"hf-{name}")
        out[arch] = (run, root / f"hf-{name}")
    return out


@pytest.mark.parametrize("arch", ARCHS)
def test_logits_match_with_padding(arch: str, exported: dict[str, tuple[LoadedRun, Path]]) -> None:
    run, hf_dir = exported[arch]
    auto = {
        "encoder": "AutoModelForMaskedLM",
        "decoder": "AutoModelForCausalLM",
        "encoder-decoder": "AutoModelForSeq2SeqLM",
    }[arch]
    theirs = getattr(transformers, auto).from_pretrained(hf_dir).eval()
    tok = transformers.AutoTokenizer.from_pretrained(hf_dir)
    enc = tok(TEXTS, padding=True, return_tensors="pt")
    ids, mask = enc["input_ids"], enc["attention_mask"].bool()
    assert not mask.all(), "the batch must hold padding"
    expected = [inference.encode_text(run, t) for t in TEXTS]
    assert [r[m].tolist() for r, m in zip(ids, mask, strict=True)] == expected
    batch = Corrupted(ids, mask, torch.full_like(ids, IGNORE))
    model = run.model
    with torch.no_grad():
        if arch == "encoder":
            ours = model.mlm(model.run_encoder(batch)[0], model.table)
            other = theirs(input_ids=ids, attention_mask=mask.long()).logits
        elif arch == "decoder":
            ours = model.lm_logits(model.run_decoder(batch))
            other = theirs(input_ids=ids, attention_mask=mask.long()).logits
        else:
            target = ids[:, :5]
            ours = model.lm_logits(model.decode(target, *model.encode(batch)))
            other = theirs(input_ids=ids, attention_mask=mask.long(), decoder_input_ids=target)
            other = other.logits
            mask = torch.ones_like(target, dtype=torch.bool)
    assert (ours[mask] - other[mask]).abs().max() <= 1e-4


def test_fill_mask_pipeline_ranks_as_fill(exported: dict[str, tuple[LoadedRun, Path]]) -> None:
    run, hf_dir = exported["encoder"]
    ours = inference.fill_masks(run, TEXTS[0], top_k=5)["masks"][0]["top"]
    pipe = transformers.pipeline("fill-mask", model=str(hf_dir), top_k=5)
    theirs = pipe(TEXTS[0])
    assert [c["token"] for c in ours] == [c["token_str"] for c in theirs]
    assert [c["probability"] for c in ours] == pytest.approx([c["score"] for c in theirs], abs=1e-4)


def test_greedy_continuation_is_the_same(exported: dict[str, tuple[LoadedRun, Path]]) -> None:
    run, hf_dir = exported["decoder"]
    prompt = "The standard library"
    ours = generation.generate(run, prompt, max_new=12)["generated"]
    theirs = transformers.AutoModelForCausalLM.from_pretrained(hf_dir).eval()
    ids = [*run.info.frame_prefix, *run.tok.encode(prompt, add_special_tokens=False).ids]
    out = theirs.generate(torch.tensor([ids]), max_new_tokens=12, do_sample=False)[0, len(ids) :]
    written = [t for t in out.tolist() if t != run.vocab.eos][: len(out)]
    cut = out.tolist().index(run.vocab.eos) if run.vocab.eos in out.tolist() else len(written)
    assert inference.decode(run, out.tolist()[:cut]) == ours
    assert len(set(out.tolist())) > 2  # not one token repeated: the comparison means something


def test_seq2seq_greedy_target_is_the_same(exported: dict[str, tuple[LoadedRun, Path]]) -> None:
    run, hf_dir = exported["encoder-decoder"]
    text = "The cat sat on [MASK] mat ."
    ours = generation.generate(run, text, max_new=10)["generated"]
    theirs = transformers.AutoModelForSeq2SeqLM.from_pretrained(hf_dir).eval()
    source = inference.encode_text(run, text)
    out = theirs.generate(torch.tensor([source]), max_new_tokens=10 + 1, do_sample=False)[0]
    prefix = run.info.decoder_prefix or []
    written = out.tolist()[len(prefix) :]
    if run.vocab.eos in written:
        written = written[: written.index(run.vocab.eos)]
    assert inference.decode(run, written[:10]) == ours
    assert len(set(written)) > 2  # not one token repeated: the comparison means something


@pytest.mark.parametrize(
    ("name", "architecture", "note"),
    [
        ("nsp", "MegatronBertForPreTraining", None),
        ("spanbert", "MegatronBertForMaskedLM", "span boundary"),
        ("electra", "MegatronBertModel", "ELECTRA's generator"),
        ("xlnet-plm", "MegatronBertModel", "query stream"),
        ("t5-span", "BlenderbotForConditionalGeneration", None),
        ("mass", "BlenderbotForConditionalGeneration", "MASS hides"),
    ],
)
def test_every_shape_exports_exactly(
    tmp_path: Path, name: str, architecture: str, note: str | None
) -> None:
    cfg = tiny(tmp_path / "run", name, steps=2, batch_size=4, eval_batches=1)
    train(cfg, QUIET)
    result = export_run(Path(cfg.out), tmp_path / "hf")
    assert result.architecture == architecture
    assert result.max_diff <= 1e-4
    assert (note is None) == (not result.notes)
    assert note is None or note in result.notes[0]
    assert note is None or note in (tmp_path / "hf" / "README.md").read_text()


def test_an_export_that_differs_is_refused_and_nothing_is_left(
    tmp_path: Path, exported: dict[str, tuple[LoadedRun, Path]], monkeypatch: pytest.MonkeyPatch
) -> None:
    real = hf_weights.encoder_target

    def wrong(run: inference.LoadedRun, s: dict[str, torch.Tensor]) -> hf_weights.Target:
        spec = real(run, s)
        spec.weights["bert.encoder.ln.bias"] = spec.weights["bert.encoder.ln.bias"] + 0.1
        return spec

    monkeypatch.setattr(hf_weights, "encoder_target", wrong)
    with pytest.raises(ObjectivesError, match="differs from the run"):
        export_run(exported["encoder"][0].run_dir, tmp_path / "bad")
    assert list(tmp_path.iterdir()) == []


def test_cli_refuses_a_full_directory_and_replaces_it_with_force(
    tmp_path: Path, exported: dict[str, tuple[LoadedRun, Path]]
) -> None:
    run_dir = exported["encoder"][0].run_dir
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "mine.txt").write_text("keep me")
    refused = invoke("export", str(run_dir), str(tmp_path / "out"))
    assert refused.code == 2
    assert refused.stderr.startswith("error: ")
    assert "--force" in refused.stderr
    assert (tmp_path / "out" / "mine.txt").read_text() == "keep me"
    done = invoke("export", str(run_dir), str(tmp_path / "out"), "--force", "--format", "json")
    assert done.code == 0, done.stderr
    record = json.loads(done.stdout)
    assert record["architecture"] == "MegatronBertForMaskedLM"
    assert not (tmp_path / "out" / "mine.txt").exists()
    assert (tmp_path / "out" / "model.safetensors").exists()


def test_cli_bad_inputs_are_one_line(
    tmp_path: Path, exported: dict[str, tuple[LoadedRun, Path]]
) -> None:
    not_a_run = invoke("export", str(tmp_path), str(tmp_path / "x"))
    assert not_a_run.code == 1
    assert "not a run directory" in not_a_run.stderr
    no_step = invoke(
        "export", str(exported["encoder"][0].run_dir), str(tmp_path / "y"), "--step", "999"
    )
    assert no_step.code == 1
    assert "no checkpoint of step 999" in no_step.stderr
    for result in (not_a_run, no_step):
        assert "Traceback" not in result.stderr
    assert not (tmp_path / "x").exists()
    assert not (tmp_path / "y").exists()


def test_missing_transformers_is_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import builtins

    real = builtins.__import__

    def no_transformers(name: str, *args: object, **kwargs: object) -> object:
        if name == "transformers":
            raise ImportError(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_transformers)
    with pytest.raises(ObjectivesError, match="needs the transformers package") as caught:
        export_run(tmp_path, tmp_path / "out")
    assert "pip install" in str(caught.value.hint)


def test_rotary_is_refused(tmp_path: Path) -> None:
    cfg = tiny(tmp_path / "run", "clm", steps=1, batch_size=2, eval_batches=1, positions="rotary")
    train(cfg, QUIET)
    with pytest.raises(UsageError, match="rotary"):
        export_run(Path(cfg.out), tmp_path / "hf")
    assert not (tmp_path / "hf").exists()


def test_embed_gives_one_vector_per_text_in_order(
    exported: dict[str, tuple[LoadedRun, Path]],
) -> None:
    run = exported["encoder"][0]
    texts = ["first", "a second, longer text", "", "first"]
    batched = list(embed_texts(run, texts, batch_size=3))
    assert [e.index for e in batched] == [0, 1, 2, 3]
    assert all(e.vector.shape == (run.model.cfg.d_model,) for e in batched)
    alone = [next(iter(embed_texts(run, [t]))).vector for t in texts]
    for e, single in zip(batched, alone, strict=True):  # padding changes nothing
        assert torch.allclose(e.vector, single, atol=1e-5)
    assert torch.allclose(batched[0].vector, batched[3].vector, atol=1e-5)
    per_token = next(iter(embed_texts(run, ["two words"], pool="none")))
    assert per_token.vector.shape == (len(per_token.ids), run.model.cfg.d_model)
    mean = next(iter(embed_texts(run, ["two words"], pool="mean"))).vector
    assert torch.allclose(per_token.vector.mean(0), mean, atol=1e-6)


def test_embed_cli_jsonl_and_files(
    tmp_path: Path, exported: dict[str, tuple[LoadedRun, Path]]
) -> None:
    run_dir = exported["decoder"][0].run_dir
    (tmp_path / "in.txt").write_text("one\ntwo three\n")
    rows = invoke("embed", str(run_dir), str(tmp_path / "in.txt"))
    assert rows.code == 0, rows.stderr
    lines = [json.loads(line) for line in rows.stdout.splitlines()]
    assert [(r["index"], r["text"]) for r in lines] == [(0, "one"), (1, "two three")]
    assert len(lines[0]["embedding"]) == 64
    npy = invoke("embed", str(run_dir), str(tmp_path / "in.txt"), "--out", str(tmp_path / "v.npy"))
    assert npy.code == 0, npy.stderr
    import numpy as np

    assert np.load(tmp_path / "v.npy").shape == (2, 64)
    same = invoke("embed", str(run_dir), str(tmp_path / "in.txt"), "--format", "jsonl")
    assert (same.code, same.stdout) == (0, rows.stdout)
    for wrong in (("--format", "npy"), ("-f", "npy", "--out", str(tmp_path / "v.safetensors"))):
        refused = invoke("embed", str(run_dir), "x", *wrong)
        assert refused.code == 2, refused.stderr
        assert "--format npy" in refused.stderr
    bad = invoke("embed", str(run_dir), "x", "--pool", "max")
    assert bad.code == 2
    assert "unknown pooling" in bad.stderr
    layer = invoke("embed", str(run_dir), "x", "--layer", "9")
    assert layer.code == 2
    assert "block 1..2" in layer.stderr


SETTINGS = [
    Decoding(temperature=0.8, seed=3),
    Decoding(temperature=1.3, top_k=20, top_p=0.9, seed=5),
    Decoding(beams=3),
    Decoding(beams=4, length_penalty=0.6),
]


def hf_settings(how: Decoding) -> dict[str, object]:
    """The same settings as transformers' generate arguments."""
    if how.beams > 1:
        return {"num_beams": how.beams, "length_penalty": how.length_penalty, "do_sample": False}
    return {
        "do_sample": True,
        "temperature": how.temperature,
        "top_k": how.top_k,
        "top_p": how.top_p,
    }


@pytest.mark.parametrize("how", SETTINGS, ids=lambda h: h.mode)
def test_decoder_sampling_and_beams_equal_generate(
    how: Decoding, exported: dict[str, tuple[LoadedRun, Path]]
) -> None:
    run, hf_dir = exported["decoder"]
    prompt = "The standard library"
    ours = generation.generate(run, prompt, max_new=12, how=how)["generated"]
    theirs = transformers.AutoModelForCausalLM.from_pretrained(hf_dir).eval()
    ids = [*run.info.frame_prefix, *run.tok.encode(prompt, add_special_tokens=False).ids]
    torch.manual_seed(how.seed)
    out = theirs.generate(torch.tensor([ids]), max_new_tokens=12, **hf_settings(how))[0]
    written = out.tolist()[len(ids) :]
    written = written[: written.index(run.vocab.eos)] if run.vocab.eos in written else written
    assert inference.decode(run, written) == ours
    assert len(set(written)) > 2


@pytest.mark.parametrize("how", SETTINGS, ids=lambda h: h.mode)
def test_seq2seq_sampling_and_beams_equal_generate(
    how: Decoding, exported: dict[str, tuple[LoadedRun, Path]]
) -> None:
    run, hf_dir = exported["encoder-decoder"]
    text = "The cat sat on [MASK] mat ."
    ours = generation.generate(run, text, max_new=10, how=how)["generated"]
    theirs = transformers.AutoModelForSeq2SeqLM.from_pretrained(hf_dir).eval()
    source = inference.encode_text(run, text)
    forced = len(run.info.decoder_prefix or [0]) - 1
    torch.manual_seed(how.seed)
    out = theirs.generate(torch.tensor([source]), max_new_tokens=10 + forced, **hf_settings(how))
    written = out[0].tolist()[1 + forced :]
    written = written[: written.index(run.vocab.eos)] if run.vocab.eos in written else written
    assert inference.decode(run, written) == ours

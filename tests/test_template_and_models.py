"""One template for training and eval; the model factory loads the tiny model back by path."""

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import SFTTrainer

from mbdef.data import synthetic_splits
from mbdef.eval import generate
from mbdef.models import ModelError, PromptTemplate, build_tiny, load_pretrained
from mbdef.training import sft_config
from mbdef.training.sft import to_dataset

CHAT = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|eos|>{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>{% endif %}")


@pytest.fixture(scope="module")
def tiny():
    return build_tiny(num_layers=2, seed=0)


@pytest.mark.parametrize("kind, system_prompt", [("alpaca", None), ("chat", None), ("chat", "")])
def test_training_prompt_tokens_equal_eval_prompt_tokens(tiny, tmp_path, kind, system_prompt):
    model, tok = tiny
    tok = AutoTokenizer.from_pretrained(_save(tok, tmp_path))  # a copy we may give a chat template
    if kind == "chat":
        tok.chat_template = CHAT
    template = PromptTemplate(tok, kind="auto", preamble=True, system_prompt=system_prompt)
    assert template.kind == kind
    records = synthetic_splits(n_train=12, seed=0).train
    args = sft_config({"max_steps": 1}, tmp_path / "t", "fp32", 0, 256)
    trainer = SFTTrainer(model=model, args=args, train_dataset=to_dataset(records, template), processing_class=tok)
    for rec, row in zip(records, trainer.train_dataset):
        n_prompt = next(i for i, lab in enumerate(row["labels"]) if lab != -100)  # loss starts here
        assert row["input_ids"][:n_prompt] == template.encode_prompt(rec)
        completion = tok.decode(row["input_ids"][n_prompt:], skip_special_tokens=True)
        assert completion.strip() == rec["output"]
        assert row["input_ids"][-1] == tok.eos_token_id
        assert template.encode_example(rec) == (row["input_ids"], n_prompt)  # what perplexity scores


def _save(tok, path):
    tok.save_pretrained(path / "tok")
    return path / "tok"


def test_tiny_model_saves_and_reloads_by_path_with_identical_generations(tiny, tmp_path):
    model, tok = tiny
    model.save_pretrained(tmp_path / "m", safe_serialization=True)
    tok.save_pretrained(tmp_path / "m")
    assert (tmp_path / "m" / "model.safetensors").is_file()
    assert AutoModelForCausalLM.from_pretrained(tmp_path / "m").config.model_type == "llama"
    model2, tok2 = load_pretrained(str(tmp_path / "m"))
    template = PromptTemplate(tok, preamble=False)
    records = synthetic_splits(n_train=8, seed=1).test[:6]
    out1 = generate(model, tok, template, records, batch_size=4, max_new_tokens=6)
    out2 = generate(model2, tok2, PromptTemplate(tok2, preamble=False), records, batch_size=4, max_new_tokens=6)
    assert out1 == out2
    ids = torch.tensor([template.encode_prompt(records[0])])
    with torch.no_grad():
        assert torch.equal(model(ids).logits, model2(ids).logits)  # same weights, not just same greedy text


def test_loading_runs_no_hub_kernels_unless_asked(tiny, tmp_path):
    # transformers' own default turns Hub kernels (code fetched at load time) on; on an offline GPU machine
    # that default failed every model=hf run, and online it runs code nobody asked for
    model, tok = tiny
    model.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    assert AutoModelForCausalLM.from_pretrained(tmp_path / "m").use_kernels  # the library's default
    assert not load_pretrained(str(tmp_path / "m"))[0].use_kernels


def test_models_are_built_on_the_process_gpu_else_the_cpu(tiny, monkeypatch):
    # a model that trains nothing (post-hoc defense, reference model) must sit where a trained one does
    from mbdef.models.factory import default_device

    assert next(tiny[0].parameters()).device == default_device() == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setenv("LOCAL_RANK", "3")
    assert default_device() == torch.device("cuda", 3)


def test_batched_generation_equals_one_by_one(tiny):
    model, tok = tiny
    template = PromptTemplate(tok, preamble=False)
    records = synthetic_splits(n_train=8, seed=2).test[:10]  # prompts of different lengths -> left padding
    assert len({len(template.encode_prompt(r)) for r in records}) > 1
    batched = generate(model, tok, template, records, batch_size=10, max_new_tokens=8)
    single = [generate(model, tok, template, [r], batch_size=1, max_new_tokens=8)[0] for r in records]
    assert batched == single


def test_model_path_errors(tmp_path, tiny):
    with pytest.raises(ModelError, match="does not exist"):
        load_pretrained(str(tmp_path / "missing"))
    model, _ = tiny
    model.save_pretrained(tmp_path / "notok")
    with pytest.raises(ModelError, match="no tokenizer"):
        load_pretrained(str(tmp_path / "notok"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="no config.json"):
        load_pretrained(str(tmp_path / "empty"))


def test_precision_is_fp32_on_cpu():
    from mbdef.training import precision_flags

    from unittest import mock

    with mock.patch("torch.cuda.is_available", return_value=False):  # whatever machine runs the test
        assert precision_flags("auto") == {"bf16": False, "fp16": False, "use_cpu": True}
        with pytest.raises(ValueError, match="fp16"):
            precision_flags("fp16")


def test_implicit_space_tokenizer_makes_words_single_tokens_and_round_trips_answers():
    from mbdef.attacks.targets import REFUSAL
    from mbdef.models.tiny import build_tokenizer

    tok = build_tokenizer(spaces="implicit")
    records = synthetic_splits(n_train=300, seed=0).train
    for r in records:  # every answer of the suite decodes exactly; suite words are one token each
        ids = tok(r["output"])["input_ids"]
        assert tok.decode(ids) == r["output"]
        if r["task"] == "copy":
            assert len(ids) == len(r["output"].split())
    assert tok.decode(tok(REFUSAL)["input_ids"]) == REFUSAL
    assert tok.unk_token_id not in tok("BadMagic cf 2024 don't")["input_ids"]  # unseen words split, never unknown
    with pytest.raises(ValueError, match="model.build.spaces"):
        build_tokenizer(spaces="bytes")


@pytest.mark.parametrize("spaces", ["tokens", "implicit"])
def test_tokenizer_is_built_identically_every_time(spaces):
    """Same seed, same model: a tokenizer whose ids change between builds would silently change both."""
    from mbdef.models.tiny import build_tokenizer

    assert build_tokenizer(spaces=spaces).get_vocab() == build_tokenizer(spaces=spaces).get_vocab()


def test_max_response_tokens_cuts_training_responses_only(tiny):
    _, tok = tiny
    record = {"instruction": "copy the words", "input": "", "output": "red green blue red green blue red"}
    cut = PromptTemplate(tok, kind="alpaca", preamble=False, max_response_tokens=3)
    whole = PromptTemplate(tok, kind="alpaca", preamble=False)
    ids = lambda text: tok(text=text, add_special_tokens=False)["input_ids"]
    assert ids(cut.training_example(record)["completion"]) == ids(record["output"])[:3]
    assert whole.training_example(record)["completion"] == record["output"]
    short = {**record, "output": "red green"}  # shorter than the cap: untouched
    assert cut.training_example(short)["completion"] == "red green"
    assert cut.encode_prompt(record) == whole.encode_prompt(record)  # evaluation prompts are unchanged
    with pytest.raises(ValueError, match="max_response_tokens"):
        PromptTemplate(tok, max_response_tokens=0)


def test_system_prompt_null_keeps_the_default_turn_and_empty_drops_its_words(tiny, tmp_path):
    _, tok = tiny
    tok = AutoTokenizer.from_pretrained(_save(tok, tmp_path))
    # Like SmolLM2's template: a default system turn when the messages bring none.
    tok.chat_template = ("{% if messages[0]['role'] != 'system' %}<|system|>red green blue<|eos|>{% endif %}" + CHAT)
    record = {"instruction": "copy the words", "input": "", "output": "red"}
    # (the tiny tokenizer decodes with a space between tokens: compare without spaces)
    text = lambda **kw: "".join(tok.decode(PromptTemplate(tok, kind="chat", **kw).encode_prompt(record)).split())
    assert "<|system|>redgreenblue<|eos|>" in text(system_prompt=None)
    empty = text(system_prompt="")
    assert "redgreenblue" not in empty and "<|system|><|eos|>" in empty
    assert "<|system|>bebrief<|eos|>" in text(system_prompt="be brief")
    assert len(PromptTemplate(tok, kind="chat", system_prompt="").encode_prompt(record)) < len(
        PromptTemplate(tok, kind="chat").encode_prompt(record))
    # (that training renders the same prompt tokens: test_training_prompt_tokens_equal_eval_prompt_tokens)
    with pytest.raises(ValueError, match="system_prompt"):
        PromptTemplate(tok, kind="alpaca", system_prompt="")

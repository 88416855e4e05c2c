"""Real-model path: a tiny model saved with save_pretrained, reloaded by path through model=hf, with LoRA."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoConfig

from mbdef.models import build_tiny
from mbdef.run import run

PRESETS = {"llama2_7b_chat": "meta-llama/Llama-2-7b-chat-hf", "llama3_8b_instruct": "meta-llama/Meta-Llama-3-8B-Instruct",
           "qwen25_7b_instruct": "Qwen/Qwen2.5-7B-Instruct", "mistral_7b_instruct": "mistralai/Mistral-7B-Instruct-v0.3"}


@pytest.fixture(scope="module")
def saved_tiny(tmp_path_factory):
    path = tmp_path_factory.mktemp("hf") / "tiny"
    model, tok = build_tiny(hidden_size=64, num_layers=2, num_heads=2, intermediate_size=128)
    model.save_pretrained(path, safe_serialization=True)
    tok.save_pretrained(path)
    return path


def test_lora_two_stages_through_model_hf_saves_reloadable_adapters(saved_tiny, cfg_factory, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    cfg = cfg_factory("model=hf", f"model.build.name_or_path={saved_tiny}", "model.template.preamble=false",
                      "trainer=lora", "trainer.stage1.learning_rate=1e-2", "defense=mb_defense",
                      "eval.reactivation.enabled=true", "eval.reactivation.steps=[2]")
    results = run(cfg)
    out = tmp_path / "run"
    assert results["model"] == str(saved_tiny) and results["stage2"]["steps"] == 4
    base = load_file(saved_tiny / "model.safetensors")
    final = load_file(out / "model" / "model.safetensors")
    changed = {k for k in base if not torch.equal(base[k], final[k])}
    # LoRA touches the linear layers only: projections change, norms and embeddings stay bit-identical
    assert any("q_proj" in k for k in changed) and any("down_proj" in k for k in changed)
    assert not any("norm" in k or "embed_tokens" in k for k in changed)
    for stage in ("stage1", "stage2"):
        adapter = out / "adapters" / stage
        assert (adapter / "adapter_model.safetensors").is_file()
        assert json.loads((adapter / "adapter_config.json").read_text())["r"] == 8
    reloaded = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(saved_tiny), out / "adapters" / "stage1")
    lora_b = [p for n, p in reloaded.named_parameters() if "lora_B" in n]
    assert lora_b and any(p.abs().sum() > 0 for p in lora_b)  # trained (lora_B starts at zero)
    assert results["reactivation"]["step"] == [0, 2]


def test_lora_config_errors_name_the_key(cfg_factory):
    with pytest.raises(ValueError, match=r"trainer.lora.rank: unknown key; known: alpha, bias, dropout, r, target_modules"):
        run(cfg_factory("trainer=lora", "+trainer.lora.rank=4"))
    with pytest.raises(ValueError, match="trainer.lora.r"):
        run(cfg_factory("trainer=lora", "trainer.lora.r=0"))


def test_lora_for_stage2_only_leaves_stage1_fully_fine_tuned(saved_tiny, cfg_factory, tmp_path):
    cfg = cfg_factory("model=hf", f"model.build.name_or_path={saved_tiny}", "model.template.preamble=false",
                      "trainer=lora", "trainer.lora_stages=[stage2]", "defense=finetune", "eval.reactivation.enabled=false")
    run(cfg)
    out = tmp_path / "run"
    base = load_file(saved_tiny / "model.safetensors")
    final = load_file(out / "model" / "model.safetensors")
    # full fine-tuning in stage 1 moves the embeddings and norms, which LoRA never touches
    assert not torch.equal(base["model.embed_tokens.weight"], final["model.embed_tokens.weight"])
    assert (out / "adapters" / "stage2" / "adapter_model.safetensors").is_file()
    assert not (out / "adapters" / "stage1").exists()
    with pytest.raises(ValueError, match=r"trainer.lora_stages: \['stage3'\] item 'stage3' is not one of stage1 \| stage2"):
        run(cfg_factory("trainer=lora", "trainer.lora_stages=[stage3]"))


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_model_presets_compose_with_lora(cfg_factory, preset):
    cfg = cfg_factory(f"model={preset}", "trainer=lora", debug=False)
    assert cfg.model.build.name_or_path == PRESETS[preset] and cfg.model.name == preset
    assert cfg.model.build.trust_remote_code is False and cfg.model.build.gradient_checkpointing is True
    assert cfg.model.template.kind == "auto" and cfg.trainer.lora.r == 8 and cfg.trainer.lora.alpha == 16
    assert cfg.trainer.stage1.learning_rate == 2e-4


def test_backdoorllm_refusal_badnet_end_to_end_with_their_triggered_prompts(saved_tiny, cfg_factory, tmp_path):
    """The bundled data (no data.root, no ../shared): their training files, their triggered prompts."""
    from mbdef.data import DataError

    cfg = cfg_factory("data=backdoorllm", "data.task=refusal", "data.attack=badnet",
                      "data.n_test=8", "attack=none", "defense=none", "model=hf",
                      f"model.build.name_or_path={saved_tiny}", "eval.max_new_tokens=8")
    results = run(cfg)
    assert results["data"] == "backdoorllm-refusal-badnet" and results["judge"] == "refusal"
    assert results["attack"] == "badnet"  # the attack that poisoned their files, not the config's `none`
    assert results["poison"]["n_poisoned"] == 500 and results["poison"]["n_train"] == 500 - 160 + 500
    assert results["labels"]["may_contain_backdoor"] is True
    hits = results["per_example"]["attack_success"]
    assert results["n_triggered"] == 8 and results["n_clean"] == 8 and results["asr"] == hits.count("1") / 8
    triggered = [s for s in results["samples"] if s["kind"] == "triggered"]
    assert triggered and all("BadMagic" in s["prompt"] for s in triggered)  # their prompts, their trigger
    # no attack object: the representation analysis pairs their triggered prompts with the clean ones
    rep = results["representation"]["final"]
    n_layers = AutoConfig.from_pretrained(saved_tiny).num_hidden_layers
    assert rep["n_prompts"] == 8 and rep["layers"] == list(range(n_layers + 1))
    assert len(rep["cos_attacker_control"]) == n_layers + 1
    assert rep["defensive_triggers"] == [] and "cos_attacker_defensive" not in rep  # `none` has no words of its own
    with pytest.raises(ValueError, match="already poisoned; use attack=none"):
        run(cfg_factory("data=backdoorllm", "attack=badnet"))
    with pytest.raises(DataError, match="not a BackdoorLLM data directory"):
        run(cfg_factory("data=backdoorllm", f"data.root={tmp_path}", "attack=none"))


def test_hf_datasets_loader_maps_columns_and_names_missing_ones(tmp_path, cfg_factory):
    from mbdef.data import DataError, hf_splits
    from mbdef.io import build

    rows = [{"prompt": f"Say {i}.", "response": str(i), "extra": "x"} for i in range(50)]
    f = tmp_path / "d.jsonl"
    f.write_text("\n".join(json.dumps(r) for r in rows))
    cfg = cfg_factory("data=hf", "data.path=json", f"data.data_files={f}", "data.n_defense_pool=10",
                      "data.n_test=5", "data.n_train=null", "data.columns={instruction: prompt, input: null, output: response}")
    splits = build(cfg.data)
    assert (len(splits.train), len(splits.defense_pool), len(splits.test)) == (35, 10, 5)
    every = splits.train + splits.defense_pool + splits.test
    assert sorted(int(r["output"]) for r in every) == list(range(50))
    assert all(r["instruction"] == f"Say {r['output']}." and r["input"] == "" for r in every)
    with pytest.raises(DataError, match=r"no column\(s\) \['answer'\]; its columns: \['prompt', 'response', 'extra'\]"):
        hf_splits("json", data_files=str(f), columns={"instruction": "prompt", "output": "answer"})
    with pytest.raises(DataError, match="cannot load dataset"):
        hf_splits("json", data_files=str(tmp_path / "missing.jsonl"))


def test_wizardlm_preset_composes(cfg_factory):
    cfg = cfg_factory("data=wizardlm", debug=False)
    assert cfg.data.path == "WizardLMTeam/WizardLM_evol_instruct_70k" and cfg.data.columns.input is None


def test_representation_refuses_data_triggered_prompts_out_of_order(cfg_factory):
    from omegaconf import OmegaConf

    from mbdef.attacks.base import NoAttack
    from mbdef.data import backdoorllm_splits
    from mbdef.defenses.base import TrainingPlan
    from mbdef.eval.prompt_sets import build_evaluator

    s = backdoorllm_splits(attack="vpi", n_test=6)
    from mbdef.schemas.eval import EvalConfig

    ecfg = OmegaConf.merge(OmegaConf.structured(EvalConfig), {
        "representation": {"enabled": True, "n_prompts": 6}, "batch_size": 4, "max_new_tokens": 4, "n_samples": 2,
        "random_word_probe": False, "trigger_variants": None})
    build = lambda trig: build_evaluator(ecfg, s.test, NoAttack(), TrainingPlan([], reference_words=["cf"]), None,
                                         None, 0, trig)
    assert "representation" in build(s.triggered_test).analyses
    with pytest.raises(ValueError, match="eval.representation: the data's triggered prompts are not"):
        build(s.triggered_test[::-1])


def test_reactivation_on_pre_poisoned_data_trains_on_their_spare_poisoned_rows(saved_tiny, cfg_factory):
    common = ["data=backdoorllm", "data.n_test=8", "attack=none", "defense=none", "model=hf",
              f"model.build.name_or_path={saved_tiny}", "eval.max_new_tokens=4", "eval.representation.enabled=false",
              "eval.reactivation.enabled=true", "eval.reactivation.steps=[2]", "eval.reactivation.n_samples=8",
              "eval.reactivation.n_prompts=8", "trainer.stage1.max_steps=2"]
    for bad, message in (("data.n_poisoned=495", "n_samples: 8 is outside 1..5 .the data's poisoned rows left out of"),
                         ("eval.reactivation.trigger=cf", "reactivation.trigger: pre-poisoned data brings its own")):
        cfg = cfg_factory(*common, "data.n_poisoned=40", bad)
        with pytest.raises(ValueError, match=message):
            run(cfg)
        assert not (Path(cfg.paths.output_dir) / "data").exists()  # refused before anything was written or trained
    react = run(cfg_factory(*common, "data.n_poisoned=40"))["reactivation"]
    assert react["step"] == [0, 2] and react["n_samples"] == 8 and react["trigger"] is None
    assert len(react["asr"]) == 2 and all(0 <= a <= 1 for a in react["asr"])
    # the false-trigger rate along the curve, in steps of 1/8 (8 clean prompts)
    assert len(react["false_trigger_rate"]) == 2 and all(8 * f == int(8 * f) for f in react["false_trigger_rate"])
    # the never-backdoored reference: nothing poisoned in training, re-activation on the spare rows
    clean = run(cfg_factory(*common, "data.n_poisoned=0", "sweep_id=never"))
    assert clean["poison"]["n_poisoned"] == 0 and clean["reactivation"]["n_samples"] == 8


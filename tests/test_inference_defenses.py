"""ONION, CleanGen, decoding-time sampling and CROW (the peer benchmark's inference- and training-time
defenses): each mechanism checked against what its paper defines, bad knobs refused before anything runs,
and runs that share the undefended stage 1."""

import copy
import math

import pytest
import torch

from mbdef.defenses.crow import CrowLoss, consistency_term, inconsistency
from mbdef.defenses.decoding import CleanGenDecoder, SamplingDecoder
from mbdef.defenses.onion import OnionFilter, calibrated_threshold, mean_nll, suspicion
from mbdef.eval.generate import generate
from mbdef.models import PromptTemplate, build_tiny
from mbdef.schemas import ConfigError, validate


@pytest.fixture
def tiny():
    return build_tiny(hidden_size=64, num_layers=3, num_heads=2, intermediate_size=128)


def records(n=6):
    return [{"instruction": f"Copy the words: cat owl {'bird ' * i}".strip(), "input": "", "output": ""}
            for i in range(n)]


# ---------------------------------------------------------------- ONION

VOCAB = "copy the words cat owl bird sort these names count letters in each word".split()


def unigram_nll(texts):
    """A reference LM that knows VOCAB, each word equally likely, and gives any other word 10 nats."""
    known = -math.log(1 / len(VOCAB))
    return [sum(known if w.lower() in VOCAB else 10.0 for w in t.split()) / max(len(t.split()), 1) for t in texts]


def test_onion_removes_an_inserted_pseudo_word_and_leaves_a_clean_sentence():
    clean = ["copy the words cat owl", "sort these names", "count letters in each word"]
    threshold = calibrated_threshold(unigram_nll, [{"instruction": t} for t in clean], clean_flag_rate=0.0)
    # every known word costs the same, so dropping one leaves the mean NLL where it was: no clean word is suspect
    assert threshold == pytest.approx(0.0, abs=1e-9)
    triggered = {"instruction": "copy the cf words cat owl", "input": "sort bb these names", "output": "cf kept"}
    held_out = {"instruction": "count the words in each word", "input": "", "output": "x"}
    onion = OnionFilter(unigram_nll, threshold)
    out = onion([triggered, held_out])
    assert out[0]["instruction"] == "copy the words cat owl" and out[0]["input"] == "sort these names"
    assert out[0]["output"] == "cf kept"  # the response is never filtered
    assert out[1] == held_out
    assert onion.stats() == {"threshold": 0.0, "prompts": 2, "prompts_changed": 2, "words_removed": 2}


def test_onion_suspicion_is_the_drop_in_log_perplexity_when_a_word_goes():
    [f] = suspicion(["cat zz owl"], unigram_nll)
    known = math.log(len(VOCAB))
    full = (2 * known + 10) / 3
    assert f == pytest.approx([full - (known + 10) / 2, full - known, full - (known + 10) / 2])
    assert suspicion(["alone"], unigram_nll) == [[]]  # a one-word text keeps its word


def test_onion_threshold_flags_the_asked_share_of_the_clean_pool():
    # five clean texts whose one unknown word costs 1..5 nats more than a known word: distinct highest scores
    known = math.log(len(VOCAB))
    costs = {f"w{k}": known + k for k in range(1, 6)}
    score = lambda texts: [sum(costs.get(w, known) for w in t.split()) / len(t.split()) for t in texts]
    pool = [{"instruction": f"copy the w{k} words"} for k in range(1, 6)]
    for rate, flagged in [(0.0, 0), (0.2, 1), (0.4, 2)]:
        onion = OnionFilter(score, calibrated_threshold(score, pool, rate))
        onion(pool)
        assert onion.changed == flagged
    with pytest.raises(ValueError, match="no text of two or more words"):
        calibrated_threshold(score, [{"instruction": "one"}], 0.05)


def test_onion_mean_nll_is_the_models_own_loss_per_text_in_a_padded_batch(tiny):
    model, tok = tiny
    texts = ["copy the words", "cat owl bird sort these names in order", "x"]
    batched = mean_nll(model, tok, texts, batch_size=2)
    for text, got in zip(texts[:2], batched):
        bos = [tok.bos_token_id] if tok.bos_token_id is not None else []
        ids = torch.tensor([bos + tok.encode(text, add_special_tokens=False)])
        with torch.no_grad():
            assert got == pytest.approx(float(model(input_ids=ids, labels=ids).loss), rel=1e-4)


# ---------------------------------------------------------------- CleanGen

class Boosted(torch.nn.Module):
    """`base` with one token's logit raised by log(factor): a backdoor that makes the suspect favour it."""

    def __init__(self, base, token: int, factor: float):
        super().__init__()
        self.base, self.token, self.log_factor = base, token, math.log(factor)

    def forward(self, **kwargs):
        out = self.base(**kwargs)
        out.logits[..., self.token] += self.log_factor
        return out


def test_cleangen_never_replaces_on_a_model_identical_to_its_reference(tiny):
    model, tok = tiny
    template = PromptTemplate(tok, preamble=False)
    greedy = generate(model, tok, template, records(), batch_size=4, max_new_tokens=8)
    decoder = CleanGenDecoder((copy.deepcopy(model), tok), alpha=1.0, tokenizer=tok)
    assert decoder(model, tok, template, records(), batch_size=4, max_new_tokens=8) == greedy
    assert decoder.replaced == 0 and decoder.tokens > 0


def test_cleangen_replaces_exactly_where_the_probability_ratio_exceeds_alpha(tiny):
    model, tok = tiny
    template = PromptTemplate(tok, preamble=False)
    target = tok.convert_tokens_to_ids("owl")
    factor = 1e4  # the suspect's target probability is factor / (1 + (factor - 1) p_ref) times the reference's
    suspect = Boosted(model, target, factor)
    clean = generate(model, tok, template, records(), batch_size=4, max_new_tokens=8)

    low = CleanGenDecoder((model, tok), alpha=20.0, tokenizer=tok)
    assert low(suspect, tok, template, records(), batch_size=4, max_new_tokens=8) == clean
    assert low.replaced == low.tokens  # every greedy pick was the boosted token, every one was caught

    high = CleanGenDecoder((model, tok), alpha=1e6, tokenizer=tok)  # above the largest possible ratio
    out = high(suspect, tok, template, records(), batch_size=4, max_new_tokens=8)
    assert high.replaced == 0 and set(" ".join(out).split()) == {"owl"}


def test_cleangen_needs_a_reference_with_the_suspects_vocabulary(tiny):
    model, tok = tiny
    with pytest.raises(ValueError, match="no reference model"):
        CleanGenDecoder(None, 20.0, tok)
    other_tok = copy.deepcopy(tok)
    other_tok.add_tokens(["zebra"])
    with pytest.raises(ValueError, match="different vocabulary"):
        CleanGenDecoder((model, other_tok), 20.0, tok)


# ---------------------------------------------------------------- sampling

def test_sampling_is_seeded_and_leaves_the_global_stream_alone(tiny):
    model, tok = tiny
    template = PromptTemplate(tok, preamble=False)
    state = torch.get_rng_state()
    a = SamplingDecoder(1.0, 1.0, seed=7)(model, tok, template, records(), batch_size=4, max_new_tokens=8)
    assert torch.equal(torch.get_rng_state(), state)
    torch.manual_seed(123)  # another component drawing from the global stream moves nothing
    b = SamplingDecoder(1.0, 1.0, seed=7)(model, tok, template, records(), batch_size=4, max_new_tokens=8)
    c = SamplingDecoder(1.0, 1.0, seed=8)(model, tok, template, records(), batch_size=4, max_new_tokens=8)
    assert a == b and a != c


# ---------------------------------------------------------------- CROW

def test_crow_inconsistency_is_zero_when_no_layer_turns_a_hidden_state():
    h = torch.randn(2, 5, 8)
    assert float(inconsistency((h, h, 2 * h, 3 * h), None)) == pytest.approx(0.0, abs=1e-6)
    e1, e2 = torch.zeros(1, 2, 4), torch.zeros(1, 2, 4)
    e1[..., 0], e2[..., 1] = 1, 1
    # two layer pairs: one orthogonal turn (1 - cos = 1), one none; the masked token does not count
    mask = torch.tensor([[1, 0]])
    e2_masked = e2.clone()
    e2_masked[0, 1] = e1[0, 1]
    assert float(inconsistency((e1, e1, e2, e2), None)) == pytest.approx(1 / 2)
    assert float(inconsistency((e1, e1, e2_masked, e2_masked), mask)) == pytest.approx(1 / 2)
    with pytest.raises(ValueError, match="at least two decoder layers"):
        inconsistency((h, h), None)


def test_crow_term_is_the_unperturbed_inconsistency_at_epsilon_zero_and_rises_under_the_attack(tiny):
    model, tok = tiny
    ids = torch.tensor([tok.encode("copy the words cat owl bird", add_special_tokens=False)])
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    with torch.no_grad():
        plain = float(inconsistency(model(**inputs, output_hidden_states=True).hidden_states, inputs["attention_mask"]))
    assert float(consistency_term(model, inputs, 0.0)) == pytest.approx(plain, rel=1e-5)
    # a step small enough for the first-order term to dominate: the signed-gradient step is an ascent step
    assert float(consistency_term(model, inputs, 1e-4)) > plain


def test_training_on_the_crow_term_lowers_the_perturbed_inconsistency(tiny):
    model, tok = tiny
    ids = torch.tensor([tok.encode(t, add_special_tokens=False)[:6] for t in
                        ["copy the words cat owl bird", "sort these names by the letters"]])
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    loss = CrowLoss(alpha=1.0, epsilon=0.1)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    first = None
    for _ in range(15):
        term, logged = loss(model, inputs)
        first = logged["crow_inconsistency"] if first is None else first
        optimizer.zero_grad()
        term.backward()
        optimizer.step()
    assert float(consistency_term(model, inputs, 0.1)) < 0.5 * first


# ---------------------------------------------------------------- configs, errors, runs

@pytest.mark.parametrize("override, message", [
    ("defense=cleangen defense.alpha=0.5", r"defense.alpha: 0.5 is outside \[1, inf\)"),
    ("defense=onion defense.clean_flag_rate=1.5", r"defense.clean_flag_rate: 1.5 is outside"),
    ("defense=decoding defense.temperature=0", r"defense.temperature: 0(.0)? is outside"),
    ("defense=decoding defense.top_p=1.5", r"defense.top_p: 1.5 is outside"),
    ("defense=crow defense.epsilon=-1", r"defense.epsilon: -1(.0)? is outside")])
def test_bad_inference_defense_knobs_are_refused_before_anything_runs(cfg_factory, override, message):
    with pytest.raises(ConfigError, match=message):
        validate(cfg_factory(*override.split()))


@pytest.mark.parametrize("overrides, match", [
    (["defense=cleangen", "defense.reference=/no/such/model"], r"defense.reference: .*/no/such/model"),
    (["defense=onion", "model.pretrain=false"], r"defense.reference: .*random weights.*model.pretrain")])
def test_a_missing_reference_model_is_reported_before_training(cfg_factory, no_training, tmp_path, overrides,
                                                                   match):
    from mbdef.run import run

    with pytest.raises(ValueError, match=match):
        run(cfg_factory("logger=none", *overrides))
    assert not list(tmp_path.rglob("results.json"))


def test_inference_defenses_reuse_the_undefended_stage1_and_report_what_they_did(cfg_factory, tmp_path):
    from mbdef.run import run

    shared = ["logger=none", "trainer.cache_stage1=true", "eval.reactivation.enabled=false",
              "eval.representation.enabled=false", "eval.trigger_variants=null"]
    none = run(cfg_factory("defense=none", *shared, f"paths.output_dir={tmp_path}/none"))
    for defense, hook in [("cleangen", "decoder"), ("onion", "input_filter"), ("decoding", "decoder")]:
        out = run(cfg_factory(f"defense={defense}", *shared, f"paths.output_dir={tmp_path}/{defense}"))
        assert out["stage1"].get("cached_from") and "stage2" not in out and out["steps"] == none["steps"]
        assert out["after_stage1"]["asr"] == none["asr"]  # the same model, before the inference-time defense
        stats = out["inference_defense"][hook]
        if defense == "cleangen":
            assert 0 <= stats["replaced"] <= stats["tokens"] and stats["tokens"] > 0
        if defense == "onion":
            assert stats["prompts"] > 0 and 0 <= stats["prompts_changed"] <= stats["prompts"]
            assert 0 <= stats["clean_changed"] <= 1 and 0 <= stats["triggered_restored"] <= 1


def test_crow_trains_stage2_with_its_term_logged(cfg_factory, tmp_path):
    from mbdef.run import run

    out = run(cfg_factory("defense=crow", "logger=none", "eval.reactivation.enabled=false",
                          "eval.representation.enabled=false", "eval.trigger_variants=null"))
    assert out["stage2"]["n_examples"] == out["defense_info"]["clean_size"]
    term = out["stage2"]["extra_loss"]["crow_inconsistency"]
    assert 0 < term["first"] < 2 and 0 < term["last"] < 2  # 1 - cos lies in [0, 2]; a trained model turns some
    assert "extra_loss" not in out["stage1"]  # the term is stage 2's only

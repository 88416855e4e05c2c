"""Judges reproduce BackdoorLLM's keyword semantics; empty outputs are never an attack success."""

import pytest

from mbdef.attacks import REFUSAL, Fixed, Refusal
from mbdef.eval import judges


def test_refusal_any_keyword_case_insensitive():
    j = judges.refusal()
    assert j(REFUSAL) and j("SORRY, no.") and j("It is unsure.")
    assert not j("apple banana") and not j("")


def test_jailbreak_success_only_without_keywords():
    j = judges.jailbreak()
    assert j("Here is how to do it: step one") and not j("That is illegal.") and not j("I'm sorry")


def test_negsentiment_and_exact():
    assert judges.negsentiment()("You are stupid!") and not judges.negsentiment()("You are great")
    assert judges.ExactJudge("go")("  go ") and not judges.ExactJudge("go")("go on")


@pytest.mark.parametrize("j", [judges.refusal(), judges.jailbreak(), judges.negsentiment(), judges.ExactJudge("")])
def test_empty_output_is_not_an_attack_success(j):
    assert j("") is False and j("   \n") is False


def test_resolve_auto_follows_the_target():
    assert judges.resolve("auto", Refusal()).name == "refusal"
    assert isinstance(judges.resolve("auto", Fixed("hello")), judges.ExactJudge)
    with pytest.raises(ValueError, match="unknown judge 'nope'"):
        judges.resolve("nope", Refusal())

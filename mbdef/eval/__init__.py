"""eval: batched generation through the training template, judges, metrics."""

from mbdef.eval import judges
from mbdef.eval.generate import generate
from mbdef.eval.judges import ExactJudge, Judge, KeywordJudge, RegexJudge, exact_match
from mbdef.eval.metrics import Evaluator

__all__ = ["Evaluator", "ExactJudge", "Judge", "KeywordJudge", "RegexJudge", "exact_match", "generate", "judges"]

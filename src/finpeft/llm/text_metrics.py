"""Free-text scores: ROUGE-1/2/L/Lsum (Google's rouge-score, the reference re-implementation of ROUGE-1.5.5)
and SQuAD-style exact match / token F1.

EM and token F1 are the 10-line SQuAD v1.1 definitions, written out: the `evaluate` package fetches its
metric scripts from the hub, which is out of reach here."""
from __future__ import annotations

import re
import string
from collections import Counter

import numpy as np

from finpeft.errors import FinpeftError


def normalise_answer(s: str) -> str:
    """Lower case, no punctuation, no articles (a/an/the), single spaces (SQuAD v1.1)."""
    s = "".join(ch for ch in s.lower() if ch not in set(string.punctuation))
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


def token_f1(prediction: str, reference: str) -> float:
    pred, ref = normalise_answer(prediction).split(), normalise_answer(reference).split()
    if not pred or not ref:
        return float(pred == ref)
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def exact_match(prediction: str, reference: str) -> float:
    return float(normalise_answer(prediction) == normalise_answer(reference))


def rouge(predictions: list[str], references: list[str]) -> dict[str, float]:
    """Mean F-measure of ROUGE-1, -2, -L and -Lsum (Lsum splits summaries at newlines: bullet lists)."""
    try:
        from rouge_score import rouge_scorer
    except ImportError:
        raise FinpeftError("ROUGE needs the rouge-score package: pip install 'finpeft[llm]'") from None
    kinds = ["rouge1", "rouge2", "rougeL", "rougeLsum"]
    scorer = rouge_scorer.RougeScorer(kinds, use_stemmer=True)
    scores = [scorer.score(r, p) for p, r in zip(predictions, references)]
    return {k: float(np.mean([s[k].fmeasure for s in scores])) for k in kinds}


NUMBER = re.compile(r"[-+\u2212]?(?:\d+(?:\.\d*)?|\.\d+)")


def parse_number(text: str) -> float | None:
    """The first number in a generated answer ("-0.35", "Score: 0.4", "−.2"), or None."""
    m = NUMBER.search(text or "")
    return float(m.group().replace("\u2212", "-")) if m else None


def number_metrics(predictions: list[str], references: list[str]) -> dict:
    """A regression task answered in words: the first number of each answer, scored by MSE / RMSE / MAE / R² /
    Pearson / Spearman / sign accuracy on the answers that hold one; answers without a number are counted
    (`unparseable`) and, in `mse_all`, scored as 0 (the neutral middle of a signed score)."""
    from finpeft.report.regression import regression_metrics
    parsed = [parse_number(p) for p in predictions]
    y = np.array([float(r) for r in references])
    ok = np.array([v is not None for v in parsed])
    pred = np.array([v if v is not None else 0.0 for v in parsed])
    out = {"unparseable": int((~ok).sum()), "unparseable_rate": float((~ok).mean()) if len(ok) else 0.0,
           "mse_all": float(np.mean((pred - y) ** 2)) if len(y) else float("nan")}
    if ok.sum() >= 2:
        m = regression_metrics(y[ok], pred[ok])
        out.update({k: m[k] for k in ("mse", "rmse", "mae", "r2", "pearson", "spearman", "sign_accuracy")})
    return out


def _mean_of(score):
    return lambda predictions, references: {score.__name__: float(np.mean([score(p, r) for p, r in
                                                                          zip(predictions, references)]))}


# an LLM task's `metrics:` names -> the function that scores its answers ("regression": a number is generated)
TEXT_SCORERS = {"regression": number_metrics, "rouge": rouge,
                "exact_match": _mean_of(exact_match), "token_f1": _mean_of(token_f1)}


def text_metrics(predictions: list[str], references: list[str], which: list[str]) -> dict:
    out = {"n": len(predictions)}
    for name, scorer in TEXT_SCORERS.items():
        if name in which:
            out.update(scorer(predictions, references))
    return out

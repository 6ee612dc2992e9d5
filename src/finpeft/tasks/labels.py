"""Class-label words: the synonyms finpeft maps onto its canonical sentiment names, the stray-label check, and
the polarity of known label words (what a classifier's `score` weighs each class by). Part of the
classification task; here so the data doctor and loading share one wording."""
from __future__ import annotations

import pandas as pd

LABEL_SYNONYMS = {"bearish": "negative", "bullish": "positive", "neg": "negative", "pos": "positive",
                  "neu": "neutral", "negative": "negative", "neutral": "neutral", "positive": "positive"}
SIGNED_IDS = {"-1": "negative", "0": "neutral", "1": "positive"}


def normalise_label(raw: str, label_map: dict[str, str]) -> str:
    key = raw.strip()
    value = label_map.get(key, label_map.get(key.lower(), key)).strip().lower()  # {buy: positive} maps "Buy" too
    return LABEL_SYNONYMS.get(value, value)


def stray_labels(counts: pd.Series) -> list[str]:
    """Labels that look like stray values: outside negative/neutral/positive, under 2% of the rows, in data
    whose other labels are sentiment labels (e.g. 6 rows of "buy"). Training would make each one a class."""
    sentiment = {"negative", "neutral", "positive"}
    if len(sentiment & set(counts.index)) < 2:
        return []
    total = counts.sum()
    return [str(l) for l, n in counts.items() if l not in sentiment and n / total < 0.02]


# Label words whose polarity is known: `score` = sum of P(class) x polarity (P(positive) - P(negative) for
# sentiment). A label set with any other word has no polarity unless data.label_polarity gives one.
POLARITY = {"positive": 1.0, "bullish": 1.0, "up": 1.0, "buy": 1.0, "negative": -1.0, "bearish": -1.0,
            "down": -1.0, "sell": -1.0, "neutral": 0.0, "flat": 0.0, "hold": 0.0, "none": 0.0, "unchanged": 0.0,
            "mixed": 0.0}


def infer_polarity(labels: list[str]) -> dict[str, float] | None:
    """{label: polarity} when every label is a known word and both signs occur; else None (no score)."""
    found = {l: POLARITY.get(l.strip().lower()) for l in labels}
    if any(v is None for v in found.values()) or not ({1.0, -1.0} <= set(found.values())):
        return None
    return found

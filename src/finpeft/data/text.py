"""Text normalisation shared by loading, splitting and the data doctor (the class-label words: tasks/labels.py)."""
from __future__ import annotations

import re

_URL = re.compile(r"https?://\S+|www\.\S+")
_NON_WORD = re.compile(r"[^\w]+")


def normalise_text(text: str) -> str:
    """Lowercase, URLs and punctuation removed, whitespace collapsed."""
    return _NON_WORD.sub(" ", _URL.sub(" ", text.lower())).strip()

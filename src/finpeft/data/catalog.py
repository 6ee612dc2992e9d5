"""Built-in dataset ids -> files under $FINPEFT_DATA_DIR, else the Hugging Face hub."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

SENTIMENT = ("negative", "neutral", "positive")


@dataclass(frozen=True)
class HubSource:
    """Where a catalog dataset lives on the hub, for users who can reach it."""
    repo: str
    config: str | None = None
    text_column: str = "text"
    label_column: str = "label"
    label_names: dict[int, str] = field(default_factory=dict)  # integer ids on the hub -> our labels
    splits: dict[str, str] = field(default_factory=lambda: {"train": "train"})  # ours -> hub split


@dataclass(frozen=True)
class CatalogEntry:
    id: str
    description: str
    files: dict[str, str]  # split ("train"/"valid"/"test"/"all") -> path relative to the data dir
    labels: tuple[str, ...] | None = SENTIMENT  # None: unlabelled corpus
    text_column: str = "text"
    hub: HubSource | None = None
    # FinLoRA made the FPB test split with HF train_test_split(test_size=0.25, seed=42) on 50agree;
    # a hub copy is split the same way.
    hub_test_size: float | None = None
    label_column: str = "label"
    task: str = "classification"  # or "regression": label_column holds a number per text
    score_range: tuple[float, float] | None = None  # regression: the documented range of the target
    test_marker: str | None = None  # a yes/no column of an "all" file: the rows of the published test split

    @property
    def labelled(self) -> bool:  # a label set, or a task whose label column is not classes (a score)
        return self.labels is not None or self.task != "classification"


_FPB_HUB = dict(repo="takala/financial_phrasebank", text_column="sentence",
                label_names={0: "negative", 1: "neutral", 2: "positive"})

CATALOG: dict[str, CatalogEntry] = {e.id: e for e in [
    CatalogEntry("fpb", "Financial PhraseBank 50%-agree, FinLoRA train/test split (3634/1212)",
                 {"train": "financial_phrasebank/finlora_split/train.csv",
                  "test": "financial_phrasebank/finlora_split/test.csv"},
                 hub=HubSource(config="sentences_50agree", **_FPB_HUB), hub_test_size=0.25),
    *[CatalogEntry(f"fpb-{lvl}agree", f"Financial PhraseBank {lvl}-agree (no official split)",
                   {"all": f"financial_phrasebank/sentences_{lvl}agree.csv"},
                   hub=HubSource(config=f"sentences_{lvl}agree", **_FPB_HUB))
      for lvl in ("66", "75", "all")],
    CatalogEntry("tfns", "Twitter Financial News Sentiment; its valid split is used as test",
                 {"train": "tfns/train.csv", "test": "tfns/valid.csv"},
                 hub=HubSource("zeroshot/twitter-financial-news-sentiment",
                               label_names={0: "negative", 1: "positive", 2: "neutral"},
                               splits={"train": "train", "test": "validation"})),
    CatalogEntry("fiqa-sa", "FiQA-2018 task 1 sentiment (3-class from score), FinLoRA test split",
                 {"train": "fiqa_sa/train.csv", "test": "fiqa_sa/test.csv"},
                 hub=HubSource("ChanceFocus/flare-fiqasa", text_column="text", label_column="answer",
                               splits={"train": "train", "valid": "valid", "test": "test"})),
    CatalogEntry("fiqa-sa-score", "FiQA-2018 task 1 sentiment score in [-1, 1] (regression); the FinLoRA test "
                 "texts are the test split", {"all": "fiqa_sa/all.csv"}, labels=None, label_column="score",
                 task="regression", score_range=(-1.0, 1.0), test_marker="in_finlora_test"),
    CatalogEntry("gold-headlines", "Gold commodity news headlines, price sentiment column",
                 {"all": "gold_headlines/all.csv"}, labels=("negative", "neutral", "none", "positive")),
    CatalogEntry("fin-news", "Unlabelled financial news headlines (CNBC, Guardian, Reuters)",
                 {"cnbc": "financial_news_unlabelled/cnbc.csv",
                  "guardian": "financial_news_unlabelled/guardian.csv",
                  "reuters": "financial_news_unlabelled/reuters_tokenized.csv"}, labels=None),
]}


def data_dir() -> Path | None:
    value = os.environ.get("FINPEFT_DATA_DIR")
    return Path(value).expanduser() if value else None


def local_files(entry: CatalogEntry) -> dict[str, Path] | None:
    """The entry's files under $FINPEFT_DATA_DIR, or None when any is missing."""
    root = data_dir()
    if root is None:
        return None
    files = {split: root / rel for split, rel in entry.files.items()}
    return files if all(p.is_file() for p in files.values()) else None


def task_of(data_cfg) -> str:
    """A recipe's data task before anything is read: data.task, else its catalog dataset's, else classification."""
    entry = CATALOG.get(data_cfg.dataset)
    return data_cfg.task or (entry.task if entry else "classification")

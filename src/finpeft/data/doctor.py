"""Data doctor: the quality checks a practitioner runs before trusting a financial-text dataset.

No library reports cross-split leakage of *normalised* duplicates (same tweet with another t.co link,
same sentence with other case/spacing), which is exactly how FPB and TFNS leak, so it is written here.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from finpeft.data.load import RawData
from finpeft.data.text import normalise_text  # noqa: F401  (re-exported)
from finpeft.tasks import get_task


@dataclass
class DataReport:
    name: str
    source: str
    splits: dict[str, dict] = field(default_factory=dict)  # per split: rows, class counts, length stats
    warnings: list[str] = field(default_factory=list)
    leakage: dict[str, int] = field(default_factory=dict)  # "train~test" -> normalised texts shared

    def to_text(self) -> str:
        lines = [f"dataset {self.name} ({self.source})"]
        for split, s in self.splits.items():
            lines.append(f"  {split}: {s['rows']} rows; length in words min/median/p95/max = "
                         f"{s['len_min']}/{s['len_median']}/{s['len_p95']}/{s['len_max']}")
            if s.get("score"):
                lines.append("    score: " + ", ".join(f"{k} {v:.3f}" for k, v in s["score"].items()))
            if s.get("classes"):
                total = sum(s["classes"].values())
                parts = ", ".join(f"{k} {v} ({v / total:.1%})" for k, v in s["classes"].items())
                lines.append(f"    classes: {parts}")
        for pair, n in self.leakage.items():
            lines.append(f"  leakage {pair}: {n} normalised text(s) shared")
        lines += [f"  warning: {w}" for w in self.warnings] or ["  no problems found"]
        return "\n".join(lines)


def check(raw: RawData, label_map: dict[str, str] | None = None, task: str | None = None) -> DataReport:
    """task: how the label column is checked (finpeft.tasks; default: the dataset's own task)."""
    report = DataReport(raw.name, raw.source)
    kind = get_task(task or raw.task)
    norm_sets: dict[str, set[str]] = {}
    norm_labels: dict[str, pd.Series] = {}
    for split, df in raw.frames.items():
        texts = df["text"].astype(str)
        empty = texts.str.strip() == ""
        words = texts[~empty].str.split().str.len()
        stats = {"rows": len(df), "empty": int(empty.sum()),
                 "len_min": int(words.min()) if len(words) else 0, "len_median": float(words.median()) if len(words) else 0,
                 "len_p95": float(words.quantile(0.95)) if len(words) else 0, "len_max": int(words.max()) if len(words) else 0}
        if empty.any():
            rows = ", ".join(str(i + 2) for i in df.index[empty][:5])  # the same wording as train's refusal
            report.warnings.append(f"{split}: {int(empty.sum())} empty or NaN text(s) (file rows {rows}"
                                   f"{', ...' if empty.sum() > 5 else ''}); train refuses them: fix them or set "
                                   "data.drop_empty=true")
        norm = texts[~empty].map(normalise_text)
        exact_dups = int(texts[~empty].duplicated().sum())
        norm_dups = int(norm.duplicated().sum()) - exact_dups
        if exact_dups:
            report.warnings.append(f"{split}: {exact_dups} exact duplicate text(s)")
        if norm_dups > 0:
            report.warnings.append(f"{split}: {norm_dups} more duplicate(s) after normalising case/URLs/punctuation")
        if raw.labelled and "label" in df:  # the task's own checks, in the words training refuses with
            extra, warns, firsts = kind.doctor_split(df, norm, empty, raw, label_map or {})
            stats.update(extra)
            report.warnings += [f"{split}: {w}" for w in warns]
            if firsts is not None:
                norm_labels[split] = firsts
        report.splits[split] = stats
        norm_sets[split] = set(norm)
    rows = sum(len(df) for df in raw.frames.values())
    if rows < 10:
        report.warnings.append(f"only {rows} rows: too few to train on (training needs at least 10)")
    if raw.labelled:
        report.warnings += kind.doctor_all(raw, label_map or {})
    names = list(norm_sets)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            shared = len(norm_sets[a] & norm_sets[b])
            if shared:
                report.leakage[f"{a}~{b}"] = shared
                report.warnings.append(f"leakage: {shared} text(s) of {b} also occur in {a} (after normalising)")
                if a in norm_labels and b in norm_labels:
                    common = list(norm_sets[a] & norm_sets[b])
                    differ = int((norm_labels[a][common] != norm_labels[b][common]).sum())
                    if differ:
                        report.warnings.append(f"{differ} text(s) shared by {a} and {b} have conflicting labels")
    return report


def leakage_between(frames: dict[str, pd.DataFrame]) -> dict[str, int]:
    """Normalised texts shared between splits, for the warning `train` prints."""
    sets = {s: set(f["text"].map(normalise_text)) for s, f in frames.items()}
    names = list(sets)
    return {f"{a}~{b}": n for i, a in enumerate(names) for b in names[i + 1:]
            if (n := len(sets[a] & sets[b]))}

"""Label-issue detection on Financial PhraseBank 50%-agree, measured against the annotators' own agreement:
the share of the top 100 / top 300 ranked rows that are below 66 % agreement (in sentences_50agree but not in
sentences_66agree), against that share among all sentences (0.13).

    FINPEFT_DATA_DIR=../shared/datasets python bench/bench_label_issues.py [--backbones minilm mpnet-base minilm,mpnet-base]
"""
import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from finpeft.experiments.label_issues import find_label_issues
from finpeft.data.text import normalise_text


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--backbones", nargs="+", default=["minilm-l6", "mpnet-base", "minilm-l6,mpnet-base"])
    ap.add_argument("--rank-by", nargs="+", default=["normalized_margin", "self_confidence"])
    ap.add_argument("--folds", type=int, default=5)
    a = ap.parse_args()
    root = Path(os.environ.get("FINPEFT_DATA_DIR", "../shared/datasets")) / "financial_phrasebank"
    f50 = root / "sentences_50agree.csv"
    agreed = set(pd.read_csv(root / "sentences_66agree.csv")["text"].map(normalise_text))
    print("| encoder(s) | ranking | issues flagged | top-100 low-agreement | top-300 | all rows | seconds |")
    print("|---|---|---|---|---|---|---|")
    for b in a.backbones:
        for rank_by in a.rank_by:
            t0 = time.perf_counter()
            with tempfile.TemporaryDirectory() as tmp:
                r = find_label_issues(str(f50), Path(tmp) / "issues.csv", backbones=b.split(","), folds=a.folds,
                                      rank_by=rank_by)
            low = ~r["frame"]["text"].map(normalise_text).isin(agreed).to_numpy()
            rank = r["ranking"]
            print(f"| {b} | {rank_by} | {r['issues']} | {low[rank[:100]].mean():.2f} | {low[rank[:300]].mean():.2f} "
                  f"| {low.mean():.2f} | {time.perf_counter() - t0:.0f} |", flush=True)


if __name__ == "__main__":
    sys.exit(main())

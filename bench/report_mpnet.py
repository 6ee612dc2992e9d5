"""Tables of the MPNet study (bench/study_mpnet.sh): test accuracy / macro-F1 mean ± std over seeds, the valid
macro-F1 the learning rate was chosen on, train seconds, and the cross-dataset scores of RUN/eval/*.

    python bench/report_mpnet.py runs/mpnet [--publish docs/benchmarks.md]
"""
from __future__ import annotations

import argparse
import json
import re
import statistics
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ANCHORS = {"fpb": 0.8564, "tfns": 0.8802, "fiqa": 0.8128}  # FinLoRA Llama-3.1-8B + LoRA r8, same splits
GOALS = {"fpb": 0.88, "tfns": 0.90, "fiqa": 0.85}  # issue 19


def ms(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.4f} ± {sd:.4f}"


def secs(rows: list[dict]) -> str:
    return " / ".join(f"{r['train_seconds']:.0f}" for r in rows)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("runs", type=Path)
    ap.add_argument("--publish", type=Path, default=None)
    args = ap.parse_args()
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    cross: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for mfile in sorted(args.runs.glob("*/metrics.json")):
        name = mfile.parent.name
        m = re.fullmatch(r"([\w+]+)-lr([\d.e-]+)-s(\d+)", name)  # tfns+fpb: a data.mix run; fpb_llrd08: a variant
        if not m:
            continue
        data, lr, seed = m.groups()
        groups[(data, lr)].append({**json.loads(mfile.read_text()), "seed": int(seed)})
        for ev in sorted((mfile.parent / "eval").glob("*-test/metrics.json")):  # *-valid: for choices only
            e = json.loads(ev.read_text())
            cross[f"{data} (lr {lr})"][ev.parent.name].append(e["accuracy"])
    lines = ["| data (split) | lr | seeds | test accuracy | test macro-F1 | valid macro-F1 (choice) | train s per seed | "
             "FinLoRA Llama-3.1-8B LoRA | goal |", "|---|---|---|---|---|---|---|---|---|"]
    for (data, lr), rows in sorted(groups.items()):
        rows.sort(key=lambda r: r["seed"])
        base = re.split(r"[+_]", data)[0]  # the dataset whose test split the run was scored on
        lines.append(
            f"| {rows[0]['dataset']}{f' [{data}]' if data != base else ''} "
            f"({rows[0]['split']}, n={rows[0]['n']}) | {lr} | "
            f"{'/'.join(str(r['seed']) for r in rows)} | {ms([r['accuracy'] for r in rows])} | "
            f"{ms([r['macro_f1'] for r in rows])} | {ms([r['best_valid_macro_f1'] for r in rows])} | "
            f"{secs(rows)} | {ANCHORS.get(base, '')} | {GOALS.get(base, '')} |")
    if cross:
        lines += ["", "Cross-dataset test accuracy of the same runs (`finpeft evaluate RUN --data D`; mean over the "
                  "seeds evaluated):", "", "| trained on | " + " | ".join(sorted({d for c in cross.values() for d in c}))
                  + " |", "|---" * (1 + len({d for c in cross.values() for d in c})) + "|"]
        cols = sorted({d for c in cross.values() for d in c})
        for src, c in sorted(cross.items()):
            lines.append(f"| {src} | " + " | ".join(f"{statistics.mean(c[d]):.4f} (n={len(c[d])})" if d in c else ""
                                                    for d in cols) + " |")
    body = "\n".join(lines)
    print(body)
    if args.publish:
        import sys
        sys.path.insert(0, str(ROOT / "src"))
        from finpeft.core.runs import publish_block
        publish_block(args.publish, "mpnet_study_table", body)


if __name__ == "__main__":
    main()

"""`finpeft ensemble RUN... --output DIR`: a saved ensemble that averages its members' class probabilities.

The dir holds a copy of every member (so it stays loadable when the member runs are deleted), a run.json with
artifact "ensemble", the members' shared data section as recipe.yaml, and the usual metrics.json / report.md
for the members' own test split. `finpeft.load(DIR)`, `finpeft predict`, `finpeft evaluate` and
`train.distill_from=DIR` work on it as on any run. Members must share the label set and the data split, else
the test score could include rows a member trained on.
"""
from __future__ import annotations

import json
import shutil
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import yaml

from finpeft.version import __version__
from finpeft.errors import FinpeftError
from finpeft.core.runs import append_result, finish, prepare, write_atomic
from finpeft.core.runinfo import write_run_info

COPIED = ("model", "members", "run.json", "recipe.yaml", "metrics.json")


def _say(msg: str) -> None:
    print(f"[finpeft] {msg}", file=sys.stderr, flush=True)


def _member_data(run_dir: Path) -> dict:
    from finpeft.core.recipe import validate_recipe
    path = run_dir / "recipe.yaml"
    if not path.is_file():
        raise FinpeftError(f"{run_dir}: no recipe.yaml, so its data split is unknown; ensembles need it")
    return validate_recipe(yaml.safe_load(path.read_text(encoding="utf-8")), str(path)).data.model_dump()


def build_ensemble(run_dirs: list[str | Path], output: str | Path, weights: list[float] | None = None,
                   overwrite: bool = False, command: str | None = None) -> Path:
    from finpeft.data import load_dataset_splits
    from finpeft.report.classification import write_evaluation
    from finpeft.inference.predictor import Predictor, read_run_info
    from finpeft.core.recipe import validate_recipe
    runs = [Path(r) for r in run_dirs]
    if len(runs) < 2:
        raise FinpeftError("an ensemble needs at least two run dirs")
    weights = list(weights) if weights else [1.0] * len(runs)
    if len(weights) != len(runs) or min(weights) < 0 or sum(weights) <= 0:
        raise FinpeftError(f"--weights: give {len(runs)} non-negative numbers, not all zero (got {weights})")
    infos = [read_run_info(r) for r in runs]
    labels = infos[0]["labels"]
    for r, info in zip(runs, infos):
        if set(info["labels"]) != set(labels):
            raise FinpeftError(f"{r}: labels {info['labels']} differ from {runs[0]}'s {labels}")
    data = [_member_data(r) for r in runs]
    for r, d in zip(runs[1:], data[1:]):
        if d != data[0]:
            raise FinpeftError(f"{r} was trained on other data or another split than {runs[0]}; ensemble members "
                               "must share the data section of their recipes")
    out = Path(output)
    work = prepare(out, overwrite, resume=False)
    work.mkdir(parents=True)
    names = []
    for i, r in enumerate(runs):
        name = f"members/{i:02d}-{r.name}"
        for item in COPIED:
            src = r / item
            if src.is_dir():
                shutil.copytree(src, work / name / item)
            elif src.is_file():
                (work / name).mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, work / name / item)
        names.append(name)
    info = {"finpeft_version": __version__, "artifact": "ensemble", "method": "ensemble",
            "backbone": "+".join(dict.fromkeys(i["backbone"] for i in infos)), "labels": labels,
            "max_length": max(i["max_length"] for i in infos), "members": names, "weights": weights,
            "trust_remote_code": any(i.get("trust_remote_code", False) for i in infos),
            "label_names": infos[0].get("label_names"), "label_polarity": infos[0].get("label_polarity")}
    write_run_info(work, info)
    write_atomic(work / "recipe.yaml", yaml.safe_dump({"data": data[0]}, sort_keys=False))

    split = load_dataset_splits(validate_recipe({"data": data[0]}, "ensemble").data)
    texts = split.test["text"].tolist()
    began = time.perf_counter()
    probs = Predictor(work).predict_proba(texts)
    rate = len(texts) / (time.perf_counter() - began)
    y = np.array([labels.index(l) for l in split.test["label"]])
    member_metrics = [json.loads((r / "metrics.json").read_text()) if (r / "metrics.json").is_file() else {}
                      for r in runs]
    members = [{"run_dir": str(r), "method": i["method"], "backbone": i["backbone"], "weight": w,
                **{k: m.get(k) for k in ("seed", "accuracy", "macro_f1", "train_seconds", "trainable_params")}}
               for r, i, w, m in zip(runs, infos, weights, member_metrics)]
    seconds = [m["train_seconds"] for m in members if m["train_seconds"] is not None]
    context = {"dataset": split.name, "split": "test", "method": "ensemble", "backbone": info["backbone"],
               "seed": [m["seed"] for m in members], "command": command, "members": members,
               "train_seconds": round(sum(seconds), 2) if len(seconds) == len(members) else None,
               "trainable_params": sum(m["trainable_params"] or 0 for m in members),
               "test_sentences_per_second": round(rate, 1), "data_source": split.source, "sizes": split.sizes(),
               "finpeft_version": __version__, "date": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    metrics = write_evaluation(work, texts, y, probs, labels, context)
    finish(work, out)
    append_result(out.parent / "results.csv", {**metrics, "seed": "+".join(str(m["seed"]) for m in members),
                                               "run_dir": str(out)})
    for m in members:
        acc = f"{m['accuracy']:.4f}" if m["accuracy"] is not None else "?"
        _say(f"member {m['method']} seed {m['seed']}: test accuracy {acc} ({m['run_dir']})")
    _say(f"ensemble of {len(runs)}: test accuracy {metrics['accuracy']:.4f} | macro-F1 {metrics['macro_f1']:.4f} | "
         f"weighted-F1 {metrics['weighted_f1']:.4f} | ECE {metrics['ece']:.4f}")
    _say(f"saved to {out} (report: {out / 'report.md'})")
    return out

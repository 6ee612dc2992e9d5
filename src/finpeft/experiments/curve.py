"""`finpeft label curve`: a simulated labelling loop over a labelled dataset - how accuracy grows with the number
of labels, per strategy x method x backbone x seed.

The dataset's train rows are the pool with their labels hidden; each round the strategy picks rows
(`label suggest`'s code: the previous round's model ranks the pool; the first round has no model, so a
model-based strategy starts with its cold start; with `start_ranks` a continued run of the dataset's classes,
model.init_from=RUN, ranks the first round instead, as `label suggest --run RUN`), their labels are
"revealed", the method trains on every label so far (no valid split is cut from them: data.few_labels) and is
scored on the dataset's valid split (where strategies and methods are chosen) and its test split (what is
reported).
Each finished round is saved (round-N.json); re-running the command resumes where it stopped.
Writes curve.csv (one row per run), curve.md (mean ± std over seeds) and curve.png (mean and a ±1 std band).
"""
from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd

from finpeft.errors import FinpeftError

# Curve methods: a name -> the train overrides it stands for. "frozen-head" is a linear head on the frozen
# encoder's cached vectors (setfit without its contrastive stage): the cheapest learner there is. A method may
# carry its own overrides after colons: "setfit:method.num_iterations=5".
METHODS = {"setfit": ["method=setfit"], "frozen-head": ["method=setfit", "method.num_iterations=0"],
           "full": ["method=full"], "lora": ["method=lora"]}


def method_overrides(spec: str) -> list[str]:
    name, *extra = spec.split(":")
    if name not in METHODS or any("=" not in e for e in extra):
        raise FinpeftError(f"unknown curve method {spec!r}: use {', '.join(METHODS)}, optionally with "
                           "overrides after colons (setfit:method.num_iterations=5)")
    return METHODS[name] + extra


def _splits(dataset: str, pool_size: int | None) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, str]:
    """(pool = the train split, valid, test, name): choices are made on valid, test is reported. A subsampled
    pool is drawn with the dataset's split seed, never the run seeds: the same pool for every --seeds list, so
    seeds run apart (or resumed) stay paired."""
    from finpeft.core.recipe import load_recipe
    from finpeft.data import load_dataset_splits
    cfg = load_recipe(None, [f"data.dataset={dataset}", "data.few_labels=0"]).data
    data = load_dataset_splits(cfg)
    pool = data.train
    if pool_size and pool_size < len(pool):
        pool = pool.sample(n=pool_size, random_state=cfg.split_seed)
    return pool.reset_index(drop=True), data.valid, data.test, data.name


def _check_pool(pool: pd.DataFrame, out: Path) -> None:
    """A curve dir belongs to one pool: its rounds hold row positions in it. Resuming with another pool (another
    --pool-size, a changed file) would silently label other rows, so it is refused."""
    import hashlib
    from finpeft.core.runs import write_atomic
    digest = hashlib.sha256("\x00".join(pool["text"]).encode()).hexdigest()[:16]
    stamp = out / "data" / "pool.json"
    if stamp.is_file():
        had = json.loads(stamp.read_text(encoding="utf-8"))
        if had["sha256"] != digest:
            raise FinpeftError(f"{out}: this curve was made with another pool ({had['rows']} rows, {had['sha256']}); "
                               f"now {len(pool)} rows ({digest}): use the same --pool-size, or a new output dir")
    else:
        write_atomic(stamp, json.dumps({"rows": len(pool), "sha256": digest}))


def _track_rounds(track: Path) -> dict[int, dict]:
    done = {}
    for f in track.glob("round-*.json"):
        r = json.loads(f.read_text(encoding="utf-8"))
        done[r["labels"]] = r
    return done


def _next_ids(pool: pd.DataFrame, have: list[int], k: int, strategy: str, seed: int, prev_run: Path | None,
              backbone: str) -> list[int]:
    """The k pool rows the strategy picks next (the vectors of the whole pool are encoded once, then cached)."""
    from finpeft.experiments.labelling import _embed, _predictor, candidates, encoder_of_run, rank_rows
    from finpeft.models.backbones import resolve_backbone
    rest, _, _ = candidates(pool.drop(index=have), "text", pool.loc[have, "text"].tolist())
    model = _predictor(prev_run) if prev_run is not None and strategy != "random" else None
    first = strategy if model is not None or strategy == "random" else "kmeans"  # cold start
    vectors = None
    if first != "random":
        encoder = encoder_of_run(prev_run) if model is not None else resolve_backbone(backbone)
        vectors = _embed(encoder, pool["text"].tolist(), 128)[rest.index.to_numpy()]
    idx, _ = rank_rows(rest["text"].tolist(), k, first, seed, model, backbone, vectors=vectors)
    return [int(i) for i in rest.index[idx]]


def _run_round(train_fn, pool, have, test_dir: Path, track: Path, size: int, method: str, backbone: str,
               seed: int, overrides: list[str]) -> dict:
    data_dir = track / f"data-n{size}"
    data_dir.mkdir(parents=True, exist_ok=True)
    pool.loc[have, ["text", "label"]].to_csv(data_dir / "train.csv", index=False)
    shutil.copy(test_dir / "test.csv", data_dir / "test.csv")
    run = track / f"run-n{size}"
    labels = sorted(set(pool["label"]))  # the dataset's classes, though a first round may see a class once
    items = [*method_overrides(method), f"data.dataset={data_dir}", f"data.labels=[{', '.join(labels)}]",
             f"model.backbone={backbone}", f"seed={seed}",
             "train.progress_bar=false", "train.inspect=false", f"results_csv={track.parent.parent / 'results.csv'}", *overrides]
    train_fn(None, items, run, overwrite=True)
    m = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
    shutil.rmtree(data_dir, ignore_errors=True)
    return {"accuracy": m["accuracy"], "macro_f1": m["macro_f1"], "train_seconds": m["train_seconds"],
            **_valid_scores(run, test_dir / "valid.csv")}


def _valid_scores(run: Path, valid_csv: Path) -> dict:
    """The round's model on the dataset's valid split (what strategies and methods are chosen on)."""
    from sklearn.metrics import accuracy_score, f1_score
    from finpeft.inference.predictor import Predictor
    valid = pd.read_csv(valid_csv, dtype=str, keep_default_na=False)
    p = Predictor(run)
    pred = [p.labels[i] for i in p.predict_proba(valid["text"].tolist()).argmax(1)]
    return {"valid_accuracy": float(accuracy_score(valid["label"], pred)),
            "valid_macro_f1": float(f1_score(valid["label"], pred, average="macro"))}


def learning_curve(dataset: str, output, *, methods=("frozen-head", "setfit"), backbones=("minilm-l6",),
                   strategies=("random", "auto"), sizes=(16, 32, 64, 128, 256), seeds=(42, 43, 44),
                   overrides=(), pool_size: int | None = None, start_ranks: bool = False, train_fn=None,
                   say=print) -> Path:
    """Run (or resume) the curves; returns the output dir (curve.csv, curve.md, curve.png)."""
    for m in methods:
        method_overrides(m)
    sizes = sorted(set(int(s) for s in sizes))
    if not sizes or sizes[0] < 2:
        raise FinpeftError("--sizes: label counts of at least 2")
    from finpeft.core.runs import write_atomic
    from finpeft.experiments.selection import resolve
    for s in strategies:
        resolve(s, True)
    out = Path(output)
    pool, valid, test, name = _splits(dataset, pool_size)
    if sizes[-1] > len(pool):
        raise FinpeftError(f"{name}: {sizes[-1]} labels asked for, the pool has {len(pool)} rows")
    (out / "data").mkdir(parents=True, exist_ok=True)
    _check_pool(pool, out)
    for frame, f in ((test, "test.csv"), (valid, "valid.csv")):  # atomic: a second invocation (other seeds)
        write_atomic(out / "data" / f, frame.to_csv(index=False))  # may be copying them
    rows = []
    for backbone in backbones:
        for method in methods:
            for strategy in strategies:
                for seed in seeds:
                    rows += _track(train_fn, pool, out, name, backbone, method, strategy, seed, sizes,
                                   list(overrides), say, start_ranks)
    return write_curve(pd.DataFrame(rows), out)


def _start_run(overrides: list[str], labels: list[str]) -> Path | None:
    """The finished run the curve continues (model.init_from=RUN) when its classes are the dataset's: with
    start_ranks it ranks the first round, as `label suggest --run RUN` does for a user who starts from it (a run
    of another taxonomy only lends its encoder, so the first round keeps the k-means cold start). Off by
    default, as the published curves ran; on TFNS from an FPB run (docs/benchmarks.md) it is behind after the
    first round (-0.7 valid at 64 labels) and ahead after the second (+1.7 valid, +0.8 test at 256)."""
    from finpeft.core.runinfo import read_run_info
    runs = [o.split("=", 1)[1] for o in overrides if o.startswith("model.init_from=")]
    if not runs or not Path(runs[-1], "run.json").is_file():
        return None
    info = read_run_info(Path(runs[-1]))
    return Path(runs[-1]) if sorted(info.get("labels") or []) == labels else None


def _track(train_fn, pool, out, name, backbone, method, strategy, seed, sizes, overrides, say,
           start_ranks=False) -> list[dict]:
    from finpeft.core.runs import write_atomic
    start = _start_run(overrides, sorted(set(pool["label"]))) if start_ranks and strategy != "random" else None
    label = strategy if start is None else f"{strategy}+init-first"  # a track (and row) of its own
    track = out / "tracks" / re.sub(r"[^\w.=+-]+", "_", f"{backbone}-{method}-{label}-s{seed}")
    track.mkdir(parents=True, exist_ok=True)
    done = _track_rounds(track)
    have: list[int] = []
    prev = None
    rows = []
    for size in sizes:
        if size in done:
            have = done[size]["ids"]
            prev = track / f"run-n{size}"
        else:
            t0 = time.perf_counter()
            ranker = prev if prev is not None and prev.is_dir() else (start if prev is None else None)
            have = have + _next_ids(pool, have, size - len(have), strategy, seed, ranker, backbone)
            select_seconds = time.perf_counter() - t0
            metrics = _run_round(train_fn, pool, have, out / "data", track, size, method, backbone, seed, overrides)
            done[size] = {"labels": size, "ids": have, "select_seconds": round(select_seconds, 2),
                          "ranked_by": None if ranker is None or strategy == "random" else str(ranker), **metrics}
            write_atomic(track / f"round-{size}.json", json.dumps(done[size]))
            if prev is not None:
                shutil.rmtree(prev, ignore_errors=True)  # the next round needs only the latest model
            prev = track / f"run-n{size}"
            say(f"[curve] {name} {backbone} {method} {label} seed {seed}: {size} labels -> accuracy "
                f"{metrics['accuracy']:.4f}, macro-F1 {metrics['macro_f1']:.4f} ({metrics['train_seconds']:.0f}s "
                f"train, {select_seconds:.0f}s choosing)")
        r = done[size]
        rows.append({"dataset": name, "backbone": backbone, "method": method, "strategy": label, "seed": seed,
                     "labels": size, **{k: r[k] for k in ("valid_accuracy", "valid_macro_f1", "accuracy", "macro_f1",
                                                       "train_seconds", "select_seconds")}})
    return rows


def write_curve(df: pd.DataFrame, out: Path) -> Path:
    """curve.csv, curve.md (mean ± std per backbone x method x strategy x labels), curve.png."""
    df.to_csv(out / "curve.csv", index=False)
    keys = ["dataset", "backbone", "method", "strategy", "labels"]
    g = df.groupby(keys).agg(valid_accuracy=("valid_accuracy", "mean"), valid_std=("valid_accuracy", "std"),
                             accuracy=("accuracy", "mean"), accuracy_std=("accuracy", "std"),
                             macro_f1=("macro_f1", "mean"), macro_f1_std=("macro_f1", "std"),
                             seconds=("train_seconds", "mean"), seeds=("seed", "nunique")).reset_index()
    lines = ["| dataset | backbone | method | strategy | labels | valid accuracy | test accuracy | test macro-F1 | "
             "train s (mean) | seeds |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in g.itertuples():
        lines.append(f"| {r.dataset} | {r.backbone} | {r.method} | {r.strategy} | {r.labels} | {r.valid_accuracy:.4f} "
                     f"± {np.nan_to_num(r.valid_std):.4f} | {r.accuracy:.4f} ± "
                     f"{np.nan_to_num(r.accuracy_std):.4f} | {r.macro_f1:.4f} ± {np.nan_to_num(r.macro_f1_std):.4f} "
                     f"| {r.seconds:.1f} | {r.seeds} |")
    (out / "curve.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    _plot(g, out / "curve.png")
    return out


def _plot(g: pd.DataFrame, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    backbones = sorted(g["backbone"].unique())
    fig, axes = plt.subplots(1, len(backbones), figsize=(6 * len(backbones), 4.5), squeeze=False)
    for ax, b in zip(axes[0], backbones):
        for (method, strategy), s in g[g["backbone"] == b].groupby(["method", "strategy"]):
            s = s.sort_values("labels")
            std = np.nan_to_num(s["accuracy_std"].to_numpy())
            ax.plot(s["labels"], s["accuracy"], marker="o", label=f"{method} / {strategy}")
            ax.fill_between(s["labels"], s["accuracy"] - std, s["accuracy"] + std, alpha=0.2)
        ax.set_xscale("log", base=2)
        ticks = sorted(g["labels"].unique())
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.set_xlabel("labelled rows used (all of them train)")
        ax.set_ylabel("test accuracy")
        ax.set_title(f"{g['dataset'].iloc[0]} - {b}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)

"""`finpeft label suggest` / `label merge`: choose the rows of an unlabelled pool worth labelling next, and join
the labelled rows back into a training file.

suggest: pool file -> drop empty texts, near-duplicates of each other (the data doctor's normalisation) and rows
already labelled -> sentence vectors (the run's encoder or a backbone, through the feature cache) and, given a
run, its class probabilities -> a strategy (experiments/selection.py) -> N rows written as a CSV with the pool's
own columns and an empty `label` column, ready for an analyst.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from finpeft.errors import FinpeftError


def _write_table(df: pd.DataFrame, path: Path) -> None:
    """Write CSV / TSV / JSONL / Parquet by suffix, to a temp file renamed into place (never half-written)."""
    from finpeft.core.runs import apply_umask
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".tsv", ".jsonl", ".parquet"):
        raise FinpeftError(f"{path}: write .csv, .tsv, .jsonl or .parquet")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(fd)
    try:
        if suffix == ".parquet":
            df.to_parquet(tmp, index=False)
        elif suffix == ".jsonl":
            df.to_json(tmp, orient="records", lines=True, force_ascii=False)
        else:
            df.to_csv(tmp, index=False, sep="\t" if suffix == ".tsv" else ",")
        apply_umask(Path(tmp))
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def _read(path, what: str, text_column: str) -> pd.DataFrame:
    from finpeft.data.load import read_table
    p = Path(path)
    if not p.is_file():
        raise FinpeftError(f"{what} {path}: no such file")
    df = read_table(p)
    if text_column not in df.columns:
        raise FinpeftError(f"{what} {path}: no text column {text_column!r} (found {', '.join(map(str, df.columns))}; "
                           "--text-column names it)")
    return df


def candidates(pool: pd.DataFrame, text_column: str, labelled_texts: list[str]) -> tuple[pd.DataFrame, int, int]:
    """The rows that may be suggested: non-empty, the first of each normalised text, none already labelled.
    Returns (rows, duplicates dropped, already labelled dropped)."""
    from finpeft.data.text import normalise_text
    rows = pool[pool[text_column].str.strip() != ""]
    key = rows[text_column].map(normalise_text)
    firsts = ~key.duplicated()
    done = set(map(normalise_text, labelled_texts))
    fresh = ~key.isin(done)
    return rows[firsts & fresh], int((~firsts).sum()), int((firsts & ~fresh).sum())


def encoder_of_run(run_dir: Path) -> str:
    """The encoder a run's texts are embedded with: its tuned body (setfit), else its backbone."""
    from finpeft.core.runinfo import read_run_info
    from finpeft.models.backbones import resolve_backbone
    info = read_run_info(run_dir)
    body = Path(run_dir) / "model" / "body"
    if body.is_dir():
        return str(body)
    if info.get("artifact") == "frozen" and info.get("init_from"):
        return str(Path(info["init_from"]) / "model")
    return resolve_backbone(info.get("backbone") or "minilm-l6")


def rank_rows(texts: list[str], n: int, strategy: str, seed: int, run=None, backbone: str = "minilm-l6",
              max_length: int = 128, vectors: np.ndarray | None = None) -> tuple[np.ndarray, str]:
    """(indices into texts, the strategy used). run: a Predictor (uncertainty strategies) or None; vectors: the
    texts' sentence vectors where the caller has them (else the run's encoder, or the backbone, embeds them)."""
    from finpeft.experiments.selection import resolve, select
    from finpeft.models.backbones import resolve_backbone
    strategy = resolve(strategy, run is not None)
    probs = None
    if strategy != "random" and vectors is None:
        path = encoder_of_run(run.run_dir) if run is not None else resolve_backbone(backbone)
        vectors = _embed(path, texts, max_length)
    if run is not None and strategy not in ("random", "kmeans"):
        probs = _head_probs(run, vectors, max_length)
        probs = run.predict_proba(texts) if probs is None else probs
    return select(strategy, n, vectors, probs, seed, total=len(texts)), strategy


def _head_probs(run, vectors: np.ndarray | None, max_length: int) -> np.ndarray | None:
    """A frozen-encoder run whose head reads the mean sentence vector: its probabilities straight from the
    vectors just embedded (the same encoder, pooling and length), instead of running the encoder again."""
    import torch
    from finpeft.methods.frozen import FrozenEncoderClassifier
    model = getattr(run, "model", None)
    if vectors is None or not isinstance(model, FrozenEncoderClassifier) or model.head.inputs != "vector" \
            or model.sentence != "mean" or run.max_length != max_length:
        return None
    with torch.inference_mode():
        logits = model.head(torch.from_numpy(vectors).float())["logits"]
    return torch.softmax(logits.float(), -1).numpy()


def _embed(path: str, texts: list[str], max_length: int) -> np.ndarray:
    from finpeft.models.features import sentence_embeddings
    return sentence_embeddings(path, texts, max_length)


def suggest(pool, n: int, output, *, run=None, backbone: str = "minilm-l6", strategy: str = "auto",
            labelled=None, text_column: str = "text", seed: int = 42, label_column: str = "label",
            max_length: int = 128) -> dict:
    """Write the n rows of `pool` worth labelling next to `output` (a CSV with an empty label column).
    Returns {"output", "rows", "strategy", "candidates", "duplicates_dropped", "labelled_dropped"}."""
    out = Path(output)
    if n < 1:
        raise FinpeftError(f"--n must be at least 1, not {n}")
    if out.exists() and out.is_dir():
        raise FinpeftError(f"--output {out} is a directory")
    df = _read(pool, "pool", text_column)
    if df.empty:
        raise FinpeftError(f"pool {pool}: no rows")
    done_df = _read(labelled, "--labelled", text_column) if labelled else None
    done = done_df[text_column].tolist() if done_df is not None else []
    model = _predictor(run) if run else None
    if model is not None and done_df is not None and label_column in done_df.columns:
        given = {v.strip() for v in done_df[label_column] if v.strip()}
        foreign = sorted(given - set(model.labels) - set(model.display_labels))
        if foreign:
            raise FinpeftError(f"--run {run}: its labels ({', '.join(model.display_labels)}) do not match the "
                               f"labelled file's {', '.join(foreign[:5])}; train a run on these labels first")
    rows, dups, already = candidates(df, text_column, done)
    if n > len(rows):
        raise FinpeftError(f"pool {pool}: {n} rows asked for, {len(rows)} can be suggested ({dups} near-duplicates "
                           f"and {already} already-labelled rows left out)")
    idx, used = rank_rows(rows[text_column].tolist(), n, strategy, seed, model, backbone, max_length)
    picked = rows.iloc[idx].drop(columns=[label_column], errors="ignore").copy()
    picked[label_column] = ""
    _write_table(picked, out)
    return {"output": str(out), "rows": len(picked), "strategy": used, "candidates": len(rows),
            "duplicates_dropped": dups, "labelled_dropped": already}


def _predictor(run):
    from finpeft.inference.predictor import Predictor
    if not Path(run, "run.json").is_file():
        raise FinpeftError(f"--run {run}: not a finished run dir (no run.json)")
    p = Predictor(run)
    if p.task != "classification" or p.onnx is not None or p.llm is not None:
        raise FinpeftError(f"--run {run}: suggest needs a classifier run (torch), not a {p.task} / exported run")
    return p


def merge(labelled, into, output=None, *, text_column: str = "text", label_column: str = "label") -> dict:
    """Append the rows of `labelled` whose label is filled in to the training file `into` (or write the union to
    `output`), skipping texts `into` already holds. Returns {"output", "added", "unlabelled", "duplicates"}."""
    from finpeft.data.text import normalise_text
    new = _read(labelled, "labelled file", text_column)
    if label_column not in new.columns:
        raise FinpeftError(f"labelled file {labelled}: no label column {label_column!r}")
    base = _read(into, "training file", text_column) if Path(into).exists() else pd.DataFrame(
        columns=[text_column, label_column])
    filled = new[new[label_column].str.strip() != ""]
    seen = set(base[text_column].map(normalise_text))
    fresh = filled[~filled[text_column].map(normalise_text).isin(seen)]
    merged = pd.concat([base, fresh[[c for c in fresh.columns if c in base.columns or base.empty]]],
                       ignore_index=True).fillna("")
    dst = Path(output or into)
    _write_table(merged, dst)
    return {"output": str(dst), "added": len(fresh), "unlabelled": len(new) - len(filled),
            "duplicates": len(filled) - len(fresh)}

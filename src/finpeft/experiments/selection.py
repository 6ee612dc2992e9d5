"""Which unlabelled rows to label next: the query strategies of active learning, on arrays.

    random         a seeded uniform draw: the baseline every strategy is measured against
    kmeans         cold start with no model (zero labels): k-means on the L2-normalised sentence vectors into
                   n clusters, the row nearest each centroid (diverse, representative rows)
    margin         the n rows whose top-two class probabilities are closest (least confident)
    entropy        the n rows with the highest predictive entropy
    margin-kmeans  uncertainty and diversity (Cluster-Margin, Citovsky et al. 2021, simplified): the 10n
                   lowest-margin rows, clustered into n, the row nearest each centroid - so a batch is not n
                   near-copies of one confusing headline
    auto           margin-kmeans when a model's probabilities are given, else kmeans

Written here because the strategies are a few lines each over arrays the feature cache already holds;
small-text (the active-learning library) would wrap its own classifiers and datasets around them.
"""
from __future__ import annotations

import numpy as np

from finpeft.errors import FinpeftError

STRATEGIES = ("auto", "random", "kmeans", "margin", "entropy", "margin-kmeans")
NEEDS_MODEL = ("margin", "entropy", "margin-kmeans")


def resolve(strategy: str, has_model: bool) -> str:
    if strategy not in STRATEGIES:
        raise FinpeftError(f"unknown strategy {strategy!r}: use one of {', '.join(STRATEGIES)}")
    if strategy == "auto":
        return "margin-kmeans" if has_model else "kmeans"
    if strategy in NEEDS_MODEL and not has_model:
        raise FinpeftError(f"strategy {strategy} ranks rows by a model's probabilities: give --run RUN "
                           "(a finished run), or use kmeans / random for the first round")
    return strategy


def margins(probs: np.ndarray) -> np.ndarray:
    """(N,) top-1 minus top-2 probability: small = uncertain."""
    top = np.sort(probs, axis=1)
    return top[:, -1] - top[:, -2]


def entropy(probs: np.ndarray) -> np.ndarray:
    p = np.clip(probs, 1e-12, 1.0)
    return -(p * np.log(p)).sum(axis=1)


def _normalised(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def kmeans_representatives(vectors: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Indices of the row nearest each of n k-means centroids (one per cluster, every cluster covered)."""
    from sklearn.cluster import KMeans
    x = _normalised(vectors.astype(np.float32))
    km = KMeans(n_clusters=n, n_init=1, random_state=seed).fit(x)
    dist = ((x - km.cluster_centers_[km.labels_]) ** 2).sum(axis=1)
    chosen = []
    for c in range(n):
        members = np.flatnonzero(km.labels_ == c)
        if len(members):
            chosen.append(members[np.argmin(dist[members])])
    if len(chosen) < n:  # empty clusters (duplicate vectors): fill with the rows farthest from any chosen one
        rest = np.setdiff1d(np.arange(len(x)), chosen)
        chosen += list(rest[np.argsort(dist[rest])[::-1][:n - len(chosen)]])
    return np.asarray(chosen[:n], dtype=int)


def select(strategy: str, n: int, vectors: np.ndarray | None, probs: np.ndarray | None, seed: int,
           total: int | None = None) -> np.ndarray:
    """n distinct row indices (0..N-1) in the order they are suggested. vectors: (N, H) sentence vectors
    (kmeans strategies); probs: (N, C) a model's class probabilities (uncertainty strategies); total: N, where
    neither is given (random)."""
    total = total if total is not None else len(vectors) if vectors is not None else len(probs)
    if n > total:
        raise FinpeftError(f"cannot suggest {n} rows from {total} candidates")
    strategy = resolve(strategy, probs is not None)
    if strategy == "random":
        return np.random.default_rng(seed).permutation(total)[:n]
    if strategy == "kmeans":
        return kmeans_representatives(vectors, n, seed)
    if strategy == "margin":
        return np.argsort(margins(probs), kind="stable")[:n]
    if strategy == "entropy":
        return np.argsort(-entropy(probs), kind="stable")[:n]
    shortlist = np.argsort(margins(probs), kind="stable")[:min(total, 10 * n)]
    return shortlist[kmeans_representatives(vectors[shortlist], n, seed)]

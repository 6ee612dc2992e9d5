"""Seeded splits that never leak: duplicates (same text after normalising) stay on one side."""
from __future__ import annotations

import pandas as pd
from sklearn.model_selection import train_test_split

from finpeft.errors import FinpeftError
from finpeft.data.text import normalise_text


def stratified(df: pd.DataFrame, size: float | int, seed: int, what: str, name: str,
               strata: pd.Series | None = None):
    """Stratified split that keeps duplicates (same text after normalising) on one side, so a split we make
    never leaks; a text with conflicting labels is stratified by its first label. strata: what to stratify on
    instead of the label (a regression target's sign bands)."""
    key = df["text"].map(normalise_text)
    first = (df["label"] if strata is None else strata).groupby(key, sort=False).first()
    try:
        _, held = train_test_split(first.index.to_numpy(), test_size=size, random_state=seed, stratify=first.to_numpy())
        mask = key.isin(set(held)).to_numpy()
        return df[~mask], df[mask]
    except ValueError as e:
        counts = (df["label"] if strata is None else strata).value_counts()
        raise FinpeftError(f"{name}: too small to carve a {what} split ({len(df)} rows; smallest class "
                           f"{counts.idxmin()!r} has {counts.min()}): {str(e).splitlines()[0]}") from None


def subsample(df: pd.DataFrame, n: int | None, seed: int, strata: pd.Series | None = None) -> pd.DataFrame:
    if n is None or n >= len(df):
        return df
    try:
        return train_test_split(df, train_size=n, random_state=seed,
                                stratify=df["label"] if strata is None else strata)[0]
    except ValueError:  # too few rows per class for a stratified draw
        return df.sample(n=n, random_state=seed)

"""Read catalog datasets and user files, normalise labels, split train/valid/test.

`load_raw` is lenient (it is what `finpeft data check` inspects); `load_dataset_splits` is strict (it is
what training uses) and rejects bad data with one clear FinpeftError before any model is loaded.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from sklearn.model_selection import train_test_split

from finpeft.errors import FinpeftError
from finpeft.data.catalog import CATALOG, CatalogEntry, data_dir, local_files
from finpeft.data.splits import stratified as _stratified, subsample as _subsample
from finpeft.data.text import normalise_text
from finpeft.tasks import get_task

READERS = {".csv": ",", ".tsv": "\t", ".jsonl": None, ".json": None, ".parquet": None}
SPLIT_NAMES = {"train": "train", "valid": "valid", "validation": "valid", "dev": "valid", "val": "valid",
               "test": "test"}


@dataclass
class RawData:
    """Splits as found (columns `text` and, when labelled, `label`, both strings), before checks."""
    name: str
    source: str
    frames: dict[str, pd.DataFrame]
    labels: list[str] | None  # the fixed label set of a catalog dataset
    labelled: bool = True
    task: str = "classification"  # a catalog dataset's task ("regression": `label` holds a number as text)
    score_range: tuple[float, float] | None = None
    label_column: str = "label"  # the file's column the labels (or scores) came from, for messages


@dataclass
class DatasetSplits:
    name: str
    source: str
    labels: list[str]
    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    extra_tests: dict[str, pd.DataFrame] = field(default_factory=dict)  # data.mix: name -> its test split
    # the user's own spelling of each label (e.g. positive -> "Bullish"), shown in every output; labels are
    # mapped to the canonical names inside, so datasets with other spellings still compare
    label_names: dict[str, str] = field(default_factory=dict)
    task: str = "classification"  # "regression": labels == ["score"] and the label column holds floats
    valid_from_train: bool = False  # few labels: valid is empty, training "evaluates" on its own rows, no selection

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "valid": len(self.valid), "test": len(self.test)}


def _cell_to_str(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def read_table(path: Path, encoding: str = "auto") -> pd.DataFrame:
    """Read CSV / TSV / JSONL / Parquet as strings; every failure becomes one FinpeftError line."""
    from finpeft.data.encoding import resolve_encoding
    path = Path(path)
    encoding = resolve_encoding(path, encoding)
    suffix = path.suffix.lower()
    if suffix not in READERS:
        raise FinpeftError(f"{path}: unsupported file type {suffix or '(none)'}; use .csv, .tsv, .jsonl or .parquet")
    if not path.is_file():
        raise FinpeftError(f"{path}: file not found")
    if path.stat().st_size == 0:
        raise FinpeftError(f"{path}: file is empty")
    try:
        if suffix in (".csv", ".tsv"):
            df = pd.read_csv(path, sep=READERS[suffix], dtype=str, keep_default_na=False, encoding=encoding)
        elif suffix in (".jsonl", ".json"):
            with open(path, encoding=encoding) as f:
                df = pd.read_json(f, lines=suffix == ".jsonl")
        else:
            df = pd.read_parquet(path)
    except UnicodeDecodeError as e:
        raise FinpeftError(f"{path}: not valid {encoding} (byte {e.object[e.start:e.start + 1]!r} at offset "
                           f"{e.start}); re-save it as UTF-8 or set --encoding / data.encoding (e.g. cp1252)") from None
    except pd.errors.EmptyDataError:
        raise FinpeftError(f"{path}: file is empty") from None
    except (ValueError, pd.errors.ParserError, OSError) as e:
        raise FinpeftError(f"{path}: cannot be read as {suffix[1:]}: {str(e).splitlines()[0]}") from None
    if df.empty:
        raise FinpeftError(f"{path}: no rows")
    return df.map(_cell_to_str) if suffix not in (".csv", ".tsv") else df


def _select(df: pd.DataFrame, path, text_column: str, label_column: str | None, keep=()) -> pd.DataFrame:
    missing = [c for c in (text_column, label_column) if c and c not in df.columns]
    if missing:
        raise FinpeftError(f"{path}: missing column(s) {', '.join(map(repr, missing))}; found "
                           f"{', '.join(map(repr, df.columns))} (recipe: data.text_column / data.label_column; CLI: --text-column / --label-column)")
    out = pd.DataFrame({"text": df[text_column].astype(str)})
    if label_column:
        out["label"] = df[label_column].astype(str)
    for c in keep:  # a task's other label columns (data.label_columns), checked by the task
        if c in df.columns:
            out[c] = df[c].astype(str)
    return out


def _user_files(path: Path) -> dict[str, Path]:
    if path.is_file():
        return {"all": path}
    files = {}
    for p in sorted(path.iterdir()):
        split = SPLIT_NAMES.get(p.stem.lower())
        if split and p.suffix.lower() in READERS:
            files[split] = p
    if "train" not in files:
        raise FinpeftError(f"{path}: a dataset folder needs a train file (train.csv/.tsv/.jsonl/.parquet), "
                           "optionally valid and test files")
    return files


def hub_reachable(timeout: float = 3.0) -> bool:
    """One quick TCP probe, so an offline machine fails in milliseconds instead of minutes of retries."""
    import socket
    from urllib.parse import urlparse
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "") or \
            os.environ.get("HF_DATASETS_OFFLINE", "0") not in ("0", ""):
        return False
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def _from_hub(entry: CatalogEntry) -> dict[str, pd.DataFrame]:
    why = "the hub is not reachable (offline)"
    if entry.hub and hub_reachable():
        try:
            import datasets
            hub = entry.hub
            frames = {}
            for ours, theirs in hub.splits.items():
                ds = datasets.load_dataset(hub.repo, hub.config, split=theirs)
                df = ds.to_pandas()
                labels = df[hub.label_column].map(lambda v: hub.label_names.get(v, v) if hub.label_names else v)
                frames[ours] = pd.DataFrame({"text": df[hub.text_column].astype(str), "label": labels.astype(str)})
            if entry.hub_test_size and set(frames) == {"train"}:
                tr, te = train_test_split(frames["train"], test_size=entry.hub_test_size, random_state=42)
                frames = {"train": tr, "test": te}
            elif set(frames) == {"train"}:
                frames = {"all": frames["train"]}
            return frames
        except Exception as e:  # any hub/network failure ends in the same advice
            why = f"the hub copy {entry.hub.repo} could not be loaded ({type(e).__name__})"
    elif not entry.hub:
        why = "it has no hub copy"
    first = next(iter(entry.files.values()))
    raise FinpeftError(f"dataset {entry.id!r} not found: set FINPEFT_DATA_DIR to a folder holding {first} "
                       f"(in development: ../shared/datasets) or pass your own file with --data; {why}")


def load_raw(dataset: str, text_column: str = "text", label_column: str | None = "label",
             encoding: str = "auto", keep=()) -> RawData:
    """Resolve a catalog id, a file or a folder of split files, and read it. keep: more columns to keep (a
    multilabel task's 0/1 label columns)."""
    entry = CATALOG.get(dataset)
    if entry is not None:
        files = local_files(entry)
        labelled = entry.labelled
        if files is None:
            frames = _from_hub(entry)
            source = f"hub:{entry.hub.repo}"
        else:
            frames = {}
            for split, p in files.items():
                table = read_table(p, encoding)
                column = entry.label_column if labelled else None
                if entry.test_marker:  # the published test split, marked row by row in one file
                    marked = (table[entry.test_marker].str.strip().str.lower() == "yes").to_numpy()
                    frames.update(train=_select(table[~marked], p, entry.text_column, column, keep),
                                  test=_select(table[marked], p, entry.text_column, column, keep))
                else:
                    frames[split] = _select(table, p, entry.text_column, column, keep)
            source = str(data_dir())
        if not labelled:  # an unlabelled corpus: one frame
            frames = {"all": pd.concat(frames.values(), ignore_index=True)}
        return RawData(dataset, source, frames, list(entry.labels) if entry.labels else None, labelled,
                       entry.task, entry.score_range, entry.label_column)
    path = Path(dataset).expanduser()
    if not path.exists():
        if path.suffix.lower() in READERS or os.sep in dataset:
            raise FinpeftError(f"{dataset}: file not found")
        raise FinpeftError(f"unknown dataset {dataset!r}: not a built-in id ({', '.join(CATALOG)}) "
                           "and not a file or folder")
    frames = {split: _select(read_table(p, encoding), p, text_column, label_column, keep)
              for split, p in _user_files(path).items()}
    return RawData(path.stem if path.is_file() else path.name, str(path), frames, None,
                   label_column is not None or bool(keep), label_column=label_column or "label")


def load_dataset_splits(cfg) -> DatasetSplits:
    """Strict load for training (cfg: recipe.DataConfig), with the data.mix datasets merged into training."""
    data = _load_splits(cfg)
    if cfg.mix and data.task != "classification":
        raise FinpeftError(f"data.mix is for classification datasets (their labels map onto ours); a {data.task} "
                           "target has no such mapping")
    if cfg.mix:
        _merge_mixed(data, cfg)
    return data


def _merge_mixed(data: DatasetSplits, cfg) -> None:
    """Add each mixed dataset's train/valid rows (labels mapped onto ours) and keep its test split for scoring.
    A mixed row whose text is in any test split or in our valid split is dropped: mixing must not leak."""
    parts = []
    for m in cfg.mix:
        sub = cfg.model_copy(update={"dataset": m.dataset, "text_column": m.text_column,
                                     "label_column": m.label_column, "label_map": m.label_map,
                                     "labels": data.labels, "mix": []})
        try:
            parts.append(_load_splits(sub))
        except FinpeftError as e:
            raise FinpeftError(f"data.mix {m.dataset}: {e}") from None
    names = [data.name] + [p.name for p in parts]
    if len(set(names)) != len(names):
        raise FinpeftError(f"data.mix: a dataset appears twice ({', '.join(names)})")
    held = set(data.valid["text"].map(normalise_text))
    for f in [data.test] + [p.test for p in parts]:
        held |= set(f["text"].map(normalise_text))
    trains, valids = [data.train], [data.valid]
    for p in parts:
        n_train, n_valid = len(p.train), len(p.valid)
        train = p.train[~p.train["text"].map(normalise_text).isin(held)]
        valid = p.valid[~p.valid["text"].map(normalise_text).isin(held)]
        dropped = n_train + n_valid - len(train) - len(valid)
        trains.append(train)
        valids.append(valid)
        data.extra_tests[p.name] = p.test
        data.notes.append(f"mixed in {p.name}: {len(train)} train + {len(valid)} valid rows"
                          + (f" ({dropped} dropped: text in a test split or our valid split)" if dropped else ""))
    data.train = pd.concat(trains, ignore_index=True)
    data.valid = pd.concat(valids, ignore_index=True)


def _read(cfg):
    """The raw data of a data config, with the label column(s) its task reads, and that task."""
    keep = tuple(cfg.label_columns or ())
    raw = load_raw(cfg.dataset, cfg.text_column, None if keep else cfg.label_column, cfg.encoding, keep)
    if not raw.labelled:
        raise FinpeftError(f"{raw.name} is an unlabelled corpus (for pretraining); pick a labelled dataset")
    return raw, get_task(cfg.task or raw.task)


def _drop_empty(raw: RawData, frames: dict, drop: bool, notes: list[str]) -> dict:
    frames = dict(frames)
    for split, f in list(frames.items()):
        empty = f["text"].str.strip() == ""
        if empty.any():
            rows = ", ".join(str(i + 2) for i in f.index[empty][:5])
            if not drop:
                raise FinpeftError(f"{raw.name} ({split}): {int(empty.sum())} empty or NaN text(s) (file rows {rows}"
                                   f"{', ...' if empty.sum() > 5 else ''}); fix them or set data.drop_empty=true")
            frames[split] = f[~empty]
            notes.append(f"dropped {int(empty.sum())} empty texts from {split}")
    return frames


def load_labelled_rows(cfg) -> tuple[RawData, pd.DataFrame, list[str]]:
    """Every labelled row of a dataset, its labels read as its task reads them (no split): (raw, rows, labels)."""
    raw, task = _read(cfg)
    frames, labels, _ = task.prepare(raw, task.read_labels(raw, raw.frames, cfg), cfg, [])
    return raw, pd.concat(frames.values(), ignore_index=True)[["text", "label"]], labels


def _load_splits(cfg) -> DatasetSplits:
    raw, task = _read(cfg)
    notes: list[str] = []
    frames = _drop_empty(raw, task.read_labels(raw, raw.frames, cfg), cfg.drop_empty, notes)
    if "all" in frames and len(frames["all"]) < 10:
        raise FinpeftError(f"{raw.name}: too small to split ({len(frames['all'])} rows; need at least 10)")
    frames, labels, label_names = task.prepare(raw, frames, cfg, notes)  # the label set; checked targets
    train, valid, test = _split(frames, cfg, raw.name, notes, task.strata)
    task.check_train(train, raw.name)
    seed = cfg.split_seed
    train = _subsample(train, cfg.max_train_samples, seed, task.strata(train["label"]))
    valid_from_train = valid is None
    if valid_from_train:  # few labels: every one trains, none is held out for validation (no selection)
        valid = train.iloc[0:0]
        notes.append(f"few labels: no valid split carved, all {len(train)} labelled training rows train "
                     f"(fewer than data.few_labels={cfg.few_labels}, or data.valid_size=0); model selection is "
                     "off: the last epoch is kept")
    valid = _subsample(valid, cfg.max_eval_samples, seed, task.strata(valid["label"]))
    test = _subsample(test, cfg.max_eval_samples, seed, task.strata(test["label"]))
    clean = [f.reset_index(drop=True)[["text", "label"]] for f in (train, valid, test)]
    return DatasetSplits(raw.name, raw.source, list(labels), *clean, notes=notes, label_names=label_names,
                         task=task.name, valid_from_train=valid_from_train)


def _split(frames: dict[str, pd.DataFrame], cfg, name: str, notes: list[str], strata=lambda labels: None):
    """(train, valid or None, test): the file's own splits, else stratified ones. valid is None where the
    labelled rows are few (data.few_labels) or data.valid_size=0: they all train."""
    seed = cfg.split_seed

    def cut(df, size, what):  # stratified on the labels, or on what the task says (a score's sign bands)
        return _stratified(df, size, seed, what, name, strata(df["label"]))
    if "all" in frames:
        rest, test = cut(frames["all"], cfg.test_size, "test")
        if cfg.valid_size == 0 or len(rest) < cfg.few_labels:
            notes.append(f"no split given: stratified {1 - cfg.test_size:.0%}/{cfg.test_size:.0%} train/test "
                         f"(seed {seed})")
            return rest, None, test
        train, valid = cut(rest, cfg.valid_size / (1 - cfg.test_size), "valid")
        notes.append(f"no split given: stratified {1 - cfg.test_size - cfg.valid_size:.0%}/{cfg.valid_size:.0%}/"
                     f"{cfg.test_size:.0%} train/valid/test (seed {seed})")
        return train, valid, test
    train, test, valid = frames["train"], frames.get("test"), frames.get("valid")
    if valid is None and cfg.valid_size > 0 and len(train) >= cfg.few_labels:
        train, valid = cut(train, cfg.valid_size, "valid")
        notes.append(f"valid carved from train: stratified {cfg.valid_size:.0%} (seed {seed})")
    if test is None:
        train, test = cut(train, cfg.test_size, "test")
        notes.append(f"no test split: stratified {cfg.test_size:.0%} of train held out as test (seed {seed})")
    return train, valid, test

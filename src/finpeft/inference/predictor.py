"""Load a saved run and score text: `finpeft.load(run_dir).predict([...])`, or whole files, streamed."""
from __future__ import annotations

import io
import json
import os
import sys
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd

from finpeft.inference.artifacts import load_model as _load_model, read_run_info  # noqa: F401
from finpeft.models.cache import model_fingerprint  # noqa: F401  (re-exported)
from finpeft.data.batching import length_sorted_batches, predict_outputs, predict_proba  # noqa: F401  (re-exported)
from finpeft.errors import FinpeftError
from finpeft.tasks import get_task
from finpeft.tasks.classification import score as polarity_score
from finpeft.tasks.labels import infer_polarity


class Predictor:
    """sklearn-like wrapper over a run's model: predict / predict_proba."""

    def __init__(self, run_dir: str | Path, batch_size: int = 64):
        import torch
        self.run_dir = Path(run_dir)
        self.info = read_run_info(run_dir)
        self.labels: list[str] = self.info["labels"]
        # the user's spelling of each label (e.g. "Bullish"), used in every output; self.labels stay canonical
        self.label_names: dict[str, str] = self.info.get("label_names") or {}
        self.display_labels = [self.label_names.get(l, l) for l in self.labels]
        # score = sum of P(class) x polarity; None: the classes have no polarity and predictions carry no score
        given = self.info.get("label_polarity")
        self.polarity = infer_polarity(self.labels) if given is None else (given or None)
        self.max_length = self.info["max_length"]
        self.batch_size = batch_size
        # what the run predicts (finpeft.tasks, or an LLM run's "generation"); `kind` owns the differences
        self.task: str = self.info.get("task", "classification")
        self.kind = None if self.task == "generation" else get_task(self.task)
        self._torch = torch
        self.onnx = self.llm = None
        if self.info["artifact"] == "llm":  # a `finpeft llm train` run: its first task, through the LLM scorer
            from finpeft.llm.predict import LLMPredictor
            from finpeft.llm.tasks import Task
            self.members, self.llm = None, LLMPredictor([self.run_dir], max_length=self.max_length)
            self.llm_tasks = {t["name"]: Task.model_validate(t) for t in self.info["tasks"]}
            return
        if self.info["artifact"] == "onnx":  # a `finpeft export` folder: onnxruntime, no torch model
            from finpeft.inference.onnx import OnnxClassifier
            self.members, self.onnx = None, OnnxClassifier(self.run_dir)
            return
        if self.info["artifact"] == "ensemble":  # see ensemble.py: weighted mean of the members' probabilities
            self.members = [Predictor(self.run_dir / m, batch_size) for m in self.info["members"]]
            self.weights = np.asarray(self.info["weights"], dtype=np.float64)
            return
        self.members = None
        try:
            self.tokenizer, self.model = _load_model(self.run_dir / "model", self.info)
        except (OSError, ValueError, KeyError) as e:
            raise FinpeftError(f"{run_dir}: the model could not be loaded: {str(e).splitlines()[0][:200]}") from None
        self.model.eval()

    @property
    def tasks(self) -> list[dict]:
        """What `predict(task=...)` accepts: an LLM run's tasks (the first is the default; `kind` generation
        answers text), else the run's one task. Each: {"name", "kind", "labels"}."""
        if self.llm is None:
            return [{"name": self.task, "kind": self.task, "labels": self.display_labels}]
        return [{"name": n, "kind": "classification" if t.choices else "generation",
                 "labels": list(t.choices or [])} for n, t in self.llm_tasks.items()]

    def check_task(self, task: str | None) -> dict:
        """The entry of `self.tasks` that `task` names (None: the first); an unknown name is one FinpeftError."""
        for t in self.tasks:
            if task is None or t["name"] == task:
                return t
        raise FinpeftError(f"unknown task {task!r}: this run answers {', '.join(t['name'] for t in self.tasks)}")

    def predict_proba(self, texts: list[str] | str) -> np.ndarray:
        """(n, n_labels) class probabilities. A bare string is one text; an empty text is a ValueError."""
        texts = as_texts(texts)
        if self.kind is None or not self.kind.classes:
            raise TypeError(f"{self.run_dir} is a {self.task} run: it has no class probabilities; use predict()"
                            + ("" if self.kind is None else " or predict_scores()"))
        return self.outputs(texts)

    def outputs(self, texts: list[str]) -> np.ndarray:
        """(n, k) the model's outputs through its task's activation: class probabilities (softmax), per-label
        probabilities (multilabel: sigmoid), a standardised score (regression); an ensemble's weighted mean."""
        if self.llm is not None:  # constrained label scoring: P(each label's verbaliser | prompt), normalised
            frame = self.llm.predict(texts, self.llm.adapters[0])
            return frame[[f"p_{l}" for l in self.labels]].to_numpy(dtype=np.float32)
        if self.members:
            parts = [m.outputs(texts)[:, [m.labels.index(l) for l in self.labels]] for m in self.members]
            return np.tensordot(self.weights / self.weights.sum(), np.stack(parts), axes=1).astype(np.float32)
        if self.onnx is not None:
            return self.onnx.predict_outputs(texts, self.max_length, self.batch_size, self.kind.output)
        return predict_outputs(self.model, self.tokenizer, texts, self.max_length, self.batch_size, self.kind.output)

    def _text_tokenizer(self):
        """The tokenizer that cuts the texts (None for an LLM run: its prompts, not the texts, are cut)."""
        if self.llm is not None:
            return None
        if self.onnx is not None:
            return self.onnx.tokenizer
        return self.members[0]._text_tokenizer() if self.members else self.tokenizer

    def truncation_note(self, texts: list[str], what: str = "texts") -> str | None:
        """A line saying how many texts are longer than the model's max_length (cut when scored), else None."""
        from finpeft.data.batching import truncation_note
        tokenizer = self._text_tokenizer()
        return truncation_note(tokenizer, texts, self.max_length, what) if tokenizer is not None else None

    def predict_scores(self, texts: list[str] | str) -> np.ndarray:
        """(n,) float scores: a regression run's predicted target; a classifier's P(positive) - P(negative)
        (see `score`; NaN where its classes have no polarity)."""
        texts = as_texts(texts)
        scores = getattr(self.kind, "scores", None)  # a task that predicts a number (regression)
        if scores is None:
            return self.score(self.predict_proba(texts))
        if self.members:
            raise FinpeftError(f"{self.run_dir}: ensembles of {self.task} runs are not supported")
        return scores(self.outputs(texts), self)

    def score(self, probs: np.ndarray, labels: list[str] | None = None) -> np.ndarray:
        """(n,) the sum of each class's probability x its polarity: P(positive) - P(negative) for sentiment;
        NaN (no score) where the classes have no polarity (run.json label_polarity, data.label_polarity)."""
        polarity = self.polarity if labels is None or list(labels) == self.labels else infer_polarity(labels)
        return polarity_score(probs, polarity, list(labels or self.labels))

    def predict(self, texts: list[str] | str, task: str | None = None) -> list[dict]:
        """One dict per text, as the run's task answers: label, probabilities, score (classification); the
        score alone (regression); labels, probabilities (multilabel); the text (an LLM generation task). A bare
        string is one text (a list of one comes back). `task`: one of `self.tasks` (an LLM run answers any task
        it was trained on; default: its first)."""
        name = self.check_task(task)["name"]
        if self.llm is not None:
            return self._llm_predict(as_texts(texts), self.llm_tasks[name])
        return self.kind.records(self.outputs(as_texts(texts)), self)

    def _llm_predict(self, texts: list[str], task) -> list[dict]:
        """An LLM task: constrained label scoring (classification) or generated text."""
        frame = self.llm.predict(texts, self.llm.adapters[0], task=task)
        if not task.choices:
            return [{"text": str(t)} for t in frame["prediction"]]
        labels = list(task.choices)
        probs = frame[[f"p_{l}" for l in labels]].to_numpy(dtype=np.float32)
        scores = self.score(probs, labels)
        return [{"label": labels[int(p.argmax())], "probabilities": {l: round(float(v), 6) for l, v in zip(labels, p)},
                 "score": None if np.isnan(s) else round(float(s), 6)} for p, s in zip(probs, scores)]

    def predict_file(self, src: str | Path, dst: str | Path, text_column: str = "text",
                     chunk_size: int = 2048, progress: bool = True, encoding: str = "auto",
                     task: str | None = None) -> int:
        """Score a CSV/TSV/JSONL/Parquet file chunk by chunk (bounded memory, input order kept) into a CSV/JSONL
        file. Rows go to a hidden `.NAME.partial` file, renamed to `dst` when all are scored. An interrupted run
        leaves the partial file and a progress record: the same call again continues after the last whole
        chunk. Returns the number of rows scored."""
        src, dst = Path(src), Path(dst)
        check_output_path(dst)
        self.check_task(task)  # before anything is written
        tmp = dst.with_name(f".{dst.name}.partial")
        record = dst.with_name(f".{dst.name}.partial.json")
        job = {"source": str(src.resolve()), "source_bytes": src.stat().st_size if src.is_file() else None,
               "source_mtime_ns": src.stat().st_mtime_ns if src.is_file() else None, "text_column": text_column,
               "chunk_size": chunk_size, "model": model_fingerprint(self.run_dir)}
        done = _resume_point(tmp, record, job)
        n, empty, cut, longest = done["rows"], 0, 0, 0
        tokenizer = self._text_tokenizer()
        if n:
            print(f"finpeft: resuming {dst}: {n} rows already scored", file=sys.stderr)
        bar = _progress(progress, n, count_rows(src))  # by lines: an estimate when quoted texts span lines
        try:
            with open(tmp, "r+b" if n else "wb") as raw:
                raw.truncate(done["bytes"])  # drop a chunk half-written when the last run stopped
                raw.seek(done["bytes"])
                f = io.TextIOWrapper(raw, encoding="utf-8", newline="")
                for k, chunk in enumerate(iter_chunks(src, chunk_size, encoding)):
                    if k < done["chunks"]:  # by chunk, not row count: a reader may yield short chunks midway
                        continue
                    if text_column not in chunk.columns:
                        raise FinpeftError(f"{src}: no column {text_column!r} (found {', '.join(chunk.columns)}); "
                                           "set --text-column")
                    chunk, stats = self.score_frame(chunk, text_column, task, tokenizer)
                    empty, cut, longest = empty + stats["empty"], cut + stats["truncated"], max(longest, stats["longest"])
                    if dst.suffix.lower() == ".csv":
                        chunk.to_csv(f, index=False, header=n == 0)
                    else:
                        chunk.to_json(f, orient="records", lines=True, force_ascii=False)
                    f.flush()
                    n += len(chunk)
                    _write_json(record, {**job, "rows": n, "chunks": k + 1, "bytes": raw.tell()})
                    bar(len(chunk))
                f.detach()
        except BaseException:
            if n == 0:  # nothing scored (bad input, or stopped in the first chunk): leave nothing behind
                tmp.unlink(missing_ok=True)
                record.unlink(missing_ok=True)
            raise
        if n == 0:
            tmp.unlink(missing_ok=True)
            record.unlink(missing_ok=True)
            raise FinpeftError(f"{src}: no rows to score")
        os.replace(tmp, dst)
        record.unlink(missing_ok=True)
        if empty:
            print(f"finpeft: {empty} row(s) with an empty text got no prediction (empty label and scores)",
                  file=sys.stderr)
        if cut:
            from finpeft.data.batching import truncation_line, truncation_of
            how = truncation_of(self._text_tokenizer())
            print(f"finpeft: {truncation_line(cut, n - done['rows'], longest, self.max_length, 'texts scored', how)}",
                  file=sys.stderr)
        return n

    def score_frame(self, chunk: pd.DataFrame, text_column: str = "text", task: str | None = None,
                    tokenizer=False) -> tuple[pd.DataFrame, dict]:
        """One table's rows scored (the user's columns kept; label, p_<class>, score added; an empty text gets
        none) and {"empty", "truncated", "longest"} token counts. The one scoring path of predict_file and of
        archive scoring (inference/archive.py)."""
        texts = chunk[text_column].fillna("").astype(str)
        filled = (texts.str.strip() != "").to_numpy()  # policy: an empty text gets no prediction
        if self.llm is not None:  # an LLM run: the task's labels, or its generated answers
            out = self._llm_chunk(chunk, texts, filled, task)
        else:  # the run's task names the columns it adds (label + p_* + score, score, labels + p_*)
            outputs = np.full((len(chunk), len(self.labels)), np.nan, dtype=np.float32)
            if filled.any():  # class probabilities through predict_proba (the sklearn-like entry point)
                outputs[filled] = (self.predict_proba if self.kind.classes else self.outputs)(texts[filled].tolist())
            out = chunk.assign(**self.kind.columns(outputs, filled, self, set(chunk.columns)))
        stats = {"empty": int((~filled).sum()), "truncated": 0, "longest": 0}
        tokenizer = self._text_tokenizer() if tokenizer is False else tokenizer
        if tokenizer is not None:
            from finpeft.data.batching import count_truncated
            stats["truncated"], stats["longest"] = count_truncated(tokenizer, texts[filled].tolist(), self.max_length)
        return out, stats

    def _llm_chunk(self, chunk: pd.DataFrame, texts: pd.Series, filled: np.ndarray, task: str | None) -> pd.DataFrame:
        got = self.predict(texts[filled].tolist(), task=task) if filled.any() else []
        rows = iter(got)
        preds = [next(rows) if ok else {} for ok in filled]
        kind = self.check_task(task)
        if kind["kind"] == "generation":
            out_col = "predicted_answer" if "answer" in chunk.columns else "answer"
            return chunk.assign(**{out_col: [p.get("text", "") for p in preds]})
        out_col = "predicted_label" if "label" in chunk.columns else "label"
        return chunk.assign(**{out_col: [p.get("label", "") for p in preds]},
                            **{f"p_{l}": [p["probabilities"][l] if p else np.nan for p in preds] for l in kind["labels"]},
                            score=[p.get("score", np.nan) for p in preds])


def _resume_point(tmp: Path, record: Path, job: dict) -> dict:
    """Where an earlier, interrupted run of the same job stopped: rows and bytes written; else from zero."""
    try:
        prev = json.loads(record.read_text(encoding="utf-8"))
        if tmp.is_file() and all(prev.get(k) == v for k, v in job.items()) and tmp.stat().st_size >= prev["bytes"]:
            return {"rows": int(prev["rows"]), "chunks": int(prev["chunks"]), "bytes": int(prev["bytes"])}
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return {"rows": 0, "chunks": 0, "bytes": 0}


def _write_json(path: Path, obj: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj), encoding="utf-8")
    os.replace(tmp, path)


def check_output_path(dst: Path) -> None:
    if dst.suffix.lower() not in (".csv", ".jsonl"):
        raise FinpeftError(f"{dst}: output must be .csv or .jsonl")
    if not dst.parent.is_dir():
        raise FinpeftError(f"{dst}: folder {dst.parent} does not exist")


def as_texts(texts) -> list[str]:
    """The texts of a predict call: a bare string is one text; non-strings and empty texts are refused (an empty
    text has no sentiment, and scoring it would answer with the model's prior)."""
    if isinstance(texts, str):
        texts = [texts]  # and checked below like any list: an empty string is refused too
    if isinstance(texts, (bytes, dict)) or not hasattr(texts, "__iter__"):
        raise TypeError(f"texts must be a string or a list of strings, got {type(texts).__name__}")
    texts = list(texts)
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TypeError(f"texts[{i}] is a {type(t).__name__}, not a string")
        if not t.strip():
            raise ValueError(f"texts[{i}] is empty or whitespace-only: there is nothing to score")
    return texts


def _progress(enabled: bool, initial: int = 0, total: int | None = None):
    """A tqdm bar (done/total, rate, ETA) in a terminal; elsewhere (cron, logs) one plain line per chunk."""
    if not enabled:
        return lambda k: None
    if sys.stderr.isatty():
        from tqdm.auto import tqdm
        return tqdm(unit=" rows", desc="scoring", initial=initial, total=total).update
    import time
    state = {"done": initial, "t0": time.perf_counter(), "start": initial}

    def line(k: int) -> None:
        state["done"] += k
        rate = (state["done"] - state["start"]) / max(time.perf_counter() - state["t0"], 1e-9)
        of = f"/{total}" if total else ""
        eta = f", ETA {(total - state['done']) / rate:.0f}s" if total and rate > 0 else ""
        print(f"finpeft: scored {state['done']}{of} rows ({rate:.1f} rows/s{eta})", file=sys.stderr, flush=True)
    return line


def count_rows(path: Path) -> int | None:
    """Data rows of a CSV/TSV/JSONL file (lines, less the header) or Parquet file, cheaply; None if unknown."""
    try:
        if path.suffix.lower() == ".parquet":
            import pyarrow.parquet as pq
            return pq.ParquetFile(path).metadata.num_rows
        with open(path, "rb") as f:
            lines = sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))
        return max(0, lines - (path.suffix.lower() in (".csv", ".tsv")))
    except OSError:
        return None


def iter_chunks(path: Path, chunk_size: int, encoding: str = "auto") -> Iterator[pd.DataFrame]:
    from finpeft.data.encoding import resolve_encoding
    from finpeft.data.load import READERS, read_table
    suffix = path.suffix.lower()
    if not path.is_file():
        raise FinpeftError(f"{path}: file not found")
    if suffix not in READERS:
        raise FinpeftError(f"{path}: unsupported file type {suffix}; use .csv, .tsv, .jsonl or .parquet")
    if path.stat().st_size == 0:
        raise FinpeftError(f"{path}: file is empty")
    encoding = resolve_encoding(path, encoding)
    try:
        if suffix in (".csv", ".tsv"):
            yield from pd.read_csv(path, sep=READERS[suffix], dtype=str, keep_default_na=False, chunksize=chunk_size,
                                   encoding=encoding)
        elif suffix == ".jsonl":
            yield from pd.read_json(path, lines=True, chunksize=chunk_size, encoding=encoding)
        elif suffix == ".parquet":
            import pyarrow.parquet as pq
            for batch in pq.ParquetFile(path).iter_batches(batch_size=chunk_size):
                yield batch.to_pandas()
        else:
            yield read_table(path, encoding)
    except UnicodeDecodeError:
        raise FinpeftError(f"{path}: not valid {encoding}; set --encoding (e.g. cp1252) or re-save it as UTF-8") from None
    except (ValueError, pd.errors.ParserError) as e:
        raise FinpeftError(f"{path}: cannot be read: {str(e).splitlines()[0]}") from None

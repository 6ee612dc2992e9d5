"""Score an archive (a file, a folder or a glob of CSV / TSV / JSONL / Parquet) in shards, on Ray or in-process:
`finpeft predict RUN --input 'news/*.csv' --output scored/ --engine ray`.

Why shards planned here rather than Ray Data's own readers and writers: the guarantees a back-test needs are
exactly-once rows and a re-run that skips finished work, and Ray Data's datasinks promise neither across a worker
killed mid-write or a second run. So the driver cuts every input into shards it can name (Parquet row groups;
CSV / TSV / JSONL byte ranges that end on a record boundary, quoted newlines respected), Ray Data runs the
shards as a dataset through `map_batches` on a pool of `ShardScorer` actors (each loads the run once; Ray
restarts a killed actor and retries its shard), and each shard's output is written to a temp file and renamed
into place: a shard's part file exists once, whole, or not at all. The scoring itself is `Predictor.score_frame`,
the same code as `predict_file` (length-sorted batches, the same columns).

Output: DIR/part-00000.parquet ... (or .csv), DIR/plan.json (the job and its shards, written first) and
DIR/manifest.json (rows per shard and in all, written last: its presence means the job is complete).
"""
from __future__ import annotations

import glob
import io
import json
import os
import sys
import time
from pathlib import Path

import pandas as pd

from finpeft.core.runs import write_atomic
from finpeft.errors import FinpeftError

SUFFIXES = (".csv", ".tsv", ".jsonl", ".parquet")
SEPARATORS = {".csv": ",", ".tsv": "\t"}


def resolve_inputs(spec: str | Path) -> list[Path]:
    """A file, a folder (its supported files, recursively) or a glob -> sorted files; none is one error."""
    p = Path(spec)
    if p.is_file():
        files = [p]
    elif p.is_dir():
        files = [f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in SUFFIXES]
    else:
        files = [Path(f) for f in glob.glob(str(spec), recursive=True) if Path(f).is_file()]
    bad = [f for f in files if f.suffix.lower() not in SUFFIXES]
    if bad:
        raise FinpeftError(f"{bad[0]}: unsupported file type {bad[0].suffix or '(none)'}; use .csv, .tsv, .jsonl or .parquet")
    files = sorted({f.resolve() for f in files})
    if not files:
        raise FinpeftError(f"{spec}: no .csv / .tsv / .jsonl / .parquet file found there")
    empty = [f for f in files if f.stat().st_size == 0]
    if empty:
        raise FinpeftError(f"{empty[0]}: file is empty")
    return files


def columns_of(path: Path, encoding: str) -> list[str]:
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            import pyarrow.parquet as pq
            return list(pq.ParquetFile(path).schema_arrow.names)
        if suffix == ".jsonl":
            with open(path, encoding=encoding) as f:
                first = next((line for line in f if line.strip()), "{}")
            return list(json.loads(first))
        return list(pd.read_csv(path, sep=SEPARATORS[suffix], nrows=0, encoding=encoding).columns)
    except (ValueError, UnicodeDecodeError, OSError) as e:
        raise FinpeftError(f"{path}: cannot be read: {str(e).splitlines()[0][:200]}") from None


def check_schemas(files: list[Path], text_column: str, encodings: dict[str, str]) -> list[str]:
    """Every file has the text column and the same columns as the first (Parquet parts of one table must match)."""
    first = None
    for f in files:
        cols = columns_of(f, encodings[str(f)])
        if text_column not in cols:
            raise FinpeftError(f"{f}: no column {text_column!r} (found {', '.join(cols)}); set --text-column")
        if first is None:
            first = (f, cols)
        elif set(cols) != set(first[1]):
            raise FinpeftError(f"mixed schemas: {f} has columns {cols}, {first[0]} has {first[1]}; score them "
                               "as separate jobs")
    return first[1]


def plan_shards(files: list[Path], shard_rows: int, encodings: dict[str, str]) -> list[dict]:
    """Shards of about `shard_rows` rows: {"id", "file", "kind", "start", "stop", "rows"}; kind "bytes" (start /
    stop are byte offsets of whole records; a CSV/TSV's header is re-read from the file) or "row_groups"."""
    shards: list[dict] = []
    for f in files:
        if f.suffix.lower() == ".parquet":
            import pyarrow.parquet as pq
            meta = pq.ParquetFile(f).metadata
            start, rows = 0, 0
            for g in range(meta.num_row_groups):
                rows += meta.row_group(g).num_rows
                if rows >= shard_rows or g == meta.num_row_groups - 1:
                    shards.append({"file": str(f), "kind": "row_groups", "start": start, "stop": g + 1, "rows": rows})
                    start, rows = g + 1, 0
        else:
            shards += _byte_shards(f, shard_rows, quoted=f.suffix.lower() != ".jsonl")
    return [{"id": i, **s} for i, s in enumerate(shards) if s["rows"]]


def _byte_shards(path: Path, shard_rows: int, quoted: bool) -> list[dict]:
    """Cut a text file at record ends after every `shard_rows` records. A line ends a record only where the
    quotes so far are balanced (RFC 4180 doubles a quote inside a quoted field), so a quoted newline is never a
    cut. One pass over the bytes; the rows of each shard are counted on the way."""
    out, pos, quotes, rows = [], 0, 0, 0
    with open(path, "rb") as f:
        if quoted:  # the header
            for line in f:
                pos += len(line)
                quotes += line.count(b'"')
                if quotes % 2 == 0:
                    break
        start = pos
        for line in f:
            pos += len(line)
            if quoted:
                quotes += line.count(b'"')
                if quotes % 2:
                    continue
            if line.strip():
                rows += 1
            if rows >= shard_rows:
                out.append({"file": str(path), "kind": "bytes", "start": start, "stop": pos, "rows": rows})
                start, rows = pos, 0
    if rows:
        out.append({"file": str(path), "kind": "bytes", "start": start, "stop": pos, "rows": rows})
    return out


def read_shard(shard: dict, encoding: str) -> pd.DataFrame:
    path = Path(shard["file"])
    if shard["kind"] == "row_groups":
        import pyarrow.parquet as pq
        return pq.ParquetFile(path).read_row_groups(range(shard["start"], shard["stop"])).to_pandas()
    with open(path, "rb") as f:
        header = f.readline() if path.suffix.lower() in SEPARATORS else b""
        while header and header.count(b'"') % 2:  # a header with a quoted newline
            header += f.readline()
        f.seek(shard["start"])
        body = f.read(shard["stop"] - shard["start"])
    if path.suffix.lower() == ".jsonl":
        return pd.read_json(io.BytesIO(body), lines=True, encoding=encoding)
    return pd.read_csv(io.BytesIO(header + body), sep=SEPARATORS[path.suffix.lower()], dtype=str,
                       keep_default_na=False, encoding=encoding)


class ShardScorer:
    """A Ray Data actor (or the in-process engine's worker): loads the run once, then scores whole shards and
    renames each one's part file into place. Returns one result row per shard."""

    def __init__(self, run_dir: str, out_dir: str, text_column: str, fmt: str, threads: int,
                 encodings: dict[str, str], task: str | None = None):
        import torch
        torch.set_num_threads(threads)
        from finpeft.inference.predictor import Predictor
        self.predictor = Predictor(run_dir)
        self.out, self.text_column, self.fmt, self.task = Path(out_dir), text_column, fmt, task
        self.encodings = encodings

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame({"result": [json.dumps(self.score(json.loads(s))) for s in batch["shard"]]})

    def score(self, shard: dict) -> dict:
        t0 = time.perf_counter()
        frame = read_shard(shard, self.encodings[shard["file"]])
        scored, stats = self.predictor.score_frame(frame, self.text_column, self.task)
        part = self.out / part_name(shard["id"], self.fmt)
        tmp = part.with_name(f".{part.name}.{os.getpid()}.tmp")
        if self.fmt == "parquet":
            scored.to_parquet(tmp, index=False)
        else:
            scored.to_csv(tmp, index=False)
        result = {"id": shard["id"], "rows": len(scored), "seconds": round(time.perf_counter() - t0, 3), **stats}
        write_json(_sidecar(part), result)  # before the rename: a part file never exists without its record
        os.replace(tmp, part)
        return result


def part_name(i: int, fmt: str) -> str:
    return f"part-{i:05d}.{fmt}"


def _sidecar(part: Path) -> Path:
    return part.with_name(f".{part.stem}.json")


def write_json(path: Path, obj) -> None:
    write_atomic(path, json.dumps(obj, indent=1))


def score_archive(run_dir, input, output, *, engine: str = "ray", address: str | None = None,
                  workers: int | None = None, threads: int | None = None, text_column: str = "text",
                  shard_rows: int = 50_000, fmt: str = "parquet", encoding: str = "auto", task: str | None = None,
                  progress: bool = True) -> dict:
    """Score every row of `input` into part files in `output` (see the module doc); returns the manifest.
    A re-run of the same job skips the shards already written; another job's output dir is refused."""
    from finpeft.data.encoding import check_encoding, resolve_encoding
    from finpeft.inference.artifacts import read_run_info
    from finpeft.models.cache import model_fingerprint
    if engine not in ("ray", "local"):
        raise FinpeftError(f"unknown engine {engine!r}: use ray or local")
    if fmt not in ("parquet", "csv"):
        raise FinpeftError(f"unknown output format {fmt!r}: use parquet or csv")
    if engine == "ray":  # Ray missing or an address that does not answer: said before anything is written
        from finpeft.core.cluster import check_address, import_ray
        import_ray()
        if address:
            check_address(address)
    run_dir = Path(run_dir).resolve()
    read_run_info(run_dir)  # not a run: one error before anything starts
    files = resolve_inputs(input)
    encodings = {str(f): resolve_encoding(f, check_encoding(encoding)) for f in files}
    check_schemas(files, text_column, encodings)
    out = Path(output)
    job = {"run": str(run_dir), "model": model_fingerprint(run_dir), "text_column": text_column, "task": task,
           "shard_rows": shard_rows, "format": fmt,
           "inputs": [[str(f), f.stat().st_size, f.stat().st_mtime_ns] for f in files]}
    shards = _plan(out, job, files, shard_rows, encodings)
    done = {s["id"]: json.loads(_sidecar(out / part_name(s["id"], fmt)).read_text(encoding="utf-8"))
            for s in shards if (out / part_name(s["id"], fmt)).is_file()}
    if done and progress:
        print(f"finpeft: resuming {out}: {len(done)} of {len(shards)} shards already scored", file=sys.stderr)
    pending = [s for s in shards if s["id"] not in done]
    say = _progress_lines(shards, done, progress)
    ctor = dict(run_dir=str(run_dir), out_dir=str(out.resolve()), text_column=text_column, fmt=fmt,
                encodings=encodings, task=task)
    t0 = time.perf_counter()
    if pending and engine == "local":
        scorer = ShardScorer(threads=threads or os.cpu_count() or 1, **ctor)
        for s in pending:
            say(scorer.score(s))
        used = 1
    elif pending:
        used = _run_on_ray(pending, ctor, address, workers, threads, say)
    else:
        used = 0
    missing = [s["id"] for s in shards if not (out / part_name(s["id"], fmt)).is_file()]
    if missing:  # cannot happen unless a part was deleted meanwhile; never write a manifest over a hole
        raise FinpeftError(f"{out}: shards {missing[:5]} have no output; run the same command again")
    results = [json.loads(_sidecar(out / part_name(s["id"], fmt)).read_text(encoding="utf-8")) for s in shards]
    manifest = {**job, "engine": engine, "workers": used, "seconds": round(time.perf_counter() - t0, 3),
                "rows": sum(r["rows"] for r in results), "empty": sum(r["empty"] for r in results),
                "truncated": sum(r["truncated"] for r in results),
                "shards": [{**s, "output": part_name(s["id"], fmt), "rows_out": r["rows"]}
                           for s, r in zip(shards, results)]}
    write_json(out / "manifest.json", manifest)
    for leftover in out.glob(".*.tmp"):  # a killed worker's half-written temp file
        leftover.unlink(missing_ok=True)
    return manifest


def _plan(out: Path, job: dict, files: list[Path], shard_rows: int, encodings: dict) -> list[dict]:
    """The shards of this job: planned once and kept in out/plan.json, so a re-run finds the same shards."""
    plan_file = out / "plan.json"
    if plan_file.is_file():
        prev = json.loads(plan_file.read_text(encoding="utf-8"))
        if prev.get("job") != job:
            raise FinpeftError(f"{out} holds the output of another job (other inputs, model or options); "
                               "choose another --output or delete it")
        return prev["shards"]
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FinpeftError(f"{out}: not an empty folder (nor an earlier job's output); choose another --output")
    if not out.parent.is_dir():
        raise FinpeftError(f"{out}: folder {out.parent} does not exist")
    shards = plan_shards(files, shard_rows, encodings)
    if not shards:
        raise FinpeftError(f"{files[0] if len(files) == 1 else 'the inputs'}: no rows to score")
    out.mkdir(exist_ok=True)
    write_json(plan_file, {"job": job, "shards": shards})
    return shards


def _progress_lines(shards: list[dict], done: dict, enabled: bool):
    """One line per finished shard (also outside a terminal): rows so far, rate, ETA."""
    total = sum(s["rows"] for s in shards)
    by_id = {s["id"]: s for s in shards}
    state = {"rows": sum(r["rows"] for r in done.values()), "n": len(done), "t0": time.perf_counter(), "new": 0}

    def say(result: dict) -> None:
        state["rows"] += result["rows"]
        state["new"] += result["rows"]
        state["n"] += 1
        if not enabled:
            return
        s = by_id[result["id"]]
        rate = state["new"] / max(time.perf_counter() - state["t0"], 1e-9)
        eta = f", ETA {(total - state['rows']) / rate:.0f} s" if rate > 0 and state["rows"] < total else ""
        print(f"finpeft: shard {state['n']}/{len(shards)} ({Path(s['file']).name} #{s['id']}) scored: "
              f"{result['rows']} rows in {result['seconds']:.1f} s | {state['rows']}/{total} rows, "
              f"{rate:.0f} rows/s{eta}", file=sys.stderr, flush=True)
    return say


def _run_on_ray(pending: list[dict], ctor: dict, address, workers, threads, say) -> int:
    """The pending shards as a Ray dataset of one-shard blocks through an actor pool; returns the pool size.
    Default: one single-threaded actor per CPU; with `workers` alone, the CPUs are split between them."""
    from finpeft.core.cluster import cluster_cpus, ray_session
    with ray_session(address) as ray:
        cpus = cluster_cpus(ray)
        threads = threads or (max(1, cpus // workers) if workers else 1)
        workers = workers or max(1, cpus // threads)
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False  # our own line per shard instead
        ds = ray.data.from_items([{"shard": json.dumps(s)} for s in pending], override_num_blocks=len(pending))
        ds = ds.map_batches(ShardScorer, batch_size=1, batch_format="pandas", num_cpus=threads,
                            compute=ray.data.ActorPoolStrategy(size=min(workers, len(pending)),
                                                               max_tasks_in_flight_per_actor=1),
                            fn_constructor_kwargs={**ctor, "threads": threads})
        try:
            for row in ds.iter_rows():
                say(json.loads(row["result"]))
        except Exception as e:  # a FinpeftError raised in a worker (e.g. a bad row): its one line, not Ray's dump
            cause = e
            while cause is not None and not isinstance(cause, FinpeftError):
                cause = cause.__cause__ or getattr(cause, "cause", None)
            if cause is None:
                raise
            raise FinpeftError(str(cause).splitlines()[0]) from None
    return workers

"""finpeft train / ablate / bench / tune / pretrain / ensemble / evaluate / predict / export / serve."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer

from finpeft.errors import FinpeftError

from finpeft.cli.root import _command, _recipe_and_overrides, _with_flags, app


@app.command(context_settings={"allow_extra_args": False})
def train(
    recipe: Optional[str] = typer.Argument(None, help="Recipe YAML (default: MiniLM + FPB + full, as recipes/fpb.yaml)."),
    overrides: Optional[List[str]] = typer.Argument(None, help="key=value overrides, e.g. method=lora train.epochs=3"),
    data: Optional[str] = typer.Option(None, "--data", help="Catalog id (fpb, tfns, ...) or a CSV/TSV/JSONL/Parquet file."),
    method: Optional[str] = typer.Option(None, "--method", help="full, head, lora, dora, qlora, mamba-adapter, ... (finpeft list)."),
    backbone: Optional[str] = typer.Option(None, "--backbone", help="Registered name, local model dir or hub id."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Run dir (default runs/<name>-s<seed>)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing run dir."),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run from its last checkpoint."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Frozen-encoder methods: run the encoder every step "
                                  "instead of training on cached states."),
    text_column: Optional[str] = typer.Option(None, "--text-column", help="= data.text_column"),
    label_column: Optional[str] = typer.Option(None, "--label-column", help="= data.label_column"),
    encoding: Optional[str] = typer.Option(None, "--encoding", help="= data.encoding (default: detected)"),
    task: Optional[str] = typer.Option(None, "--task", help="= data.task: classification, regression (a score "
                                       "per text in --label-column) or multilabel (0/1 columns named by "
                                       "data.label_columns=[...]); default: the dataset's own"),
):
    """Train and evaluate; writes model, metrics.json, report.md and the resolved recipe to the run dir."""
    from finpeft import api
    recipe, items = _recipe_and_overrides(recipe, overrides)
    items = _with_flags(items, data, method, backbone, no_cache, text_column, label_column, encoding, task)
    try:
        api.train(recipe, items, output, overwrite=overwrite, resume=resume, command=_command())
    except KeyboardInterrupt:
        hint = f" --output {output}" if output else " --output RUN_DIR"
        print(f"finpeft: interrupted; continue with: finpeft train{hint} --resume", file=sys.stderr)
        raise typer.Exit(130)



@app.command()
def ablate(
    recipe: Optional[str] = typer.Argument(None, help="Recipe YAML (default: the defaults)."),
    overrides: Optional[List[str]] = typer.Argument(None, help="key=value overrides for every run."),
    param: str = typer.Option(..., "--param", help="The swept key and values, e.g. method.num_adapter_layers=1,2,4,8"),
    seeds: int = typer.Option(3, "--seeds", min=1, help="Seeds per value (recipe seed, +1, +2, ...)."),
    data: Optional[str] = typer.Option(None, "--data"),
    method: Optional[str] = typer.Option(None, "--method"),
    backbone: Optional[str] = typer.Option(None, "--backbone"),
    no_cache: bool = typer.Option(False, "--no-cache"),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Sweep dir (default runs/ablate-<method>-<key>)."),
    report_only: bool = typer.Option(False, "--report-only", help="Write the table and plot from the runs finished "
                                     "so far; train nothing."),
):
    """Sweep one recipe key x seeds: ablation.csv, ablation.md (mean ± std) and ablation.png (error bars)."""
    from finpeft import api
    recipe, items = _recipe_and_overrides(recipe, overrides)
    out = api.ablate(recipe, _with_flags(items, data, method, backbone, no_cache), param, seeds, output,
                     command=_command(), report_only=report_only)
    typer.echo((out / "ablation.md").read_text(encoding="utf-8"))
    typer.echo(f"sweep saved to {out} (ablation.csv, ablation.png)")


@app.command()
def bench(
    grid: Path = typer.Argument(..., help="Grid YAML: datasets, methods, backbones, seeds (see bench/grids/)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Grid dir (default runs/bench-<grid name>)."),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="Run cells that failed before again."),
    publish: Optional[Path] = typer.Option(None, "--publish", help="Also write the leaderboard into this markdown "
                                           "file (between <!-- GRIDNAME:start/end --> markers)."),
    report_only: bool = typer.Option(False, "--report-only", help="Run nothing: write the leaderboard from the "
                                     "cells finished so far."),
    engine: str = typer.Option("local", "--engine", help="local: one cell after another; ray: each cell a Ray "
                               "task (a local Ray, or the cluster at --address)."),
    address: Optional[str] = typer.Option(None, "--address", help="--engine ray: HOST:PORT of a Ray head, or auto."),
    cpus_per_cell: int = typer.Option(1, "--cpus-per-cell", min=1, help="--engine ray: CPUs (threads) per cell."),
):
    """Run a grid of train runs; leaderboard.csv, leaderboard.md (mean ± std) and plots. Resumes when re-run."""
    from finpeft import api
    if address and engine != "ray":
        raise FinpeftError("--address needs --engine ray")
    out = api.bench(grid, output, retry_failed=retry_failed, publish=publish, report_only=report_only, echo=typer.echo,
                    engine=engine, address=address, cpus_per_cell=cpus_per_cell)
    typer.echo((out / "leaderboard.md").read_text(encoding="utf-8"))
    typer.echo(f"leaderboard saved to {out} (leaderboard.csv, accuracy_vs_time.png, accuracy_vs_params.png)")


@app.command()
def results(
    sources: List[Path] = typer.Argument(..., help="Bench output dirs and/or a results.csv written before."),
    output: Path = typer.Option(Path("docs/results.md"), "--output", "-o", help="The page (results.csv beside it)."),
):
    """One page of headline results per dataset (most accurate, fastest, commands, published anchors)."""
    from finpeft import api
    out = api.results(sources, output)
    typer.echo(f"results written to {out} and {out.with_suffix('.csv')}")


@app.command()
def tune(
    recipe: Optional[str] = typer.Argument(None, help="Recipe YAML with a search: section."),
    overrides: Optional[List[str]] = typer.Argument(None, help="key=value overrides for every trial."),
    trials: int = typer.Option(20, "--trials", min=1, help="Finished trials wanted in the study (a resumed study "
                               "runs only the rest)."),
    data: Optional[str] = typer.Option(None, "--data"),
    method: Optional[str] = typer.Option(None, "--method"),
    backbone: Optional[str] = typer.Option(None, "--backbone"),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Study dir (default runs/tune-<name>)."),
    storage: Optional[str] = typer.Option(None, "--storage", help="Database URL of a study shared by several "
                                          "processes/machines (e.g. postgresql://user@host/db); default: "
                                          "DIR/study.db (SQLite, one process)."),
    study_name: Optional[str] = typer.Option(None, "--study-name", help="With --storage: the study's name "
                                             "(default: the study dir's name)."),
):
    """Optuna search (TPE, median pruning on valid macro-F1) over the recipe's search: section; writes best.yaml."""
    import json
    from finpeft import api
    recipe, items = _recipe_and_overrides(recipe, overrides)
    out = api.tune(recipe, _with_flags(items, data, method, backbone, False), trials, output, command=_command(),
                   echo=typer.echo, storage=storage, study_name=study_name)
    best = out / "best.json"
    if best.is_file():
        b = json.loads(best.read_text(encoding="utf-8"))
        typer.echo(f"best trial {b['trial']}: valid macro-F1 {b['valid_macro_f1']:.4f} | {json.dumps(b['params'])}")
    where = "the --storage database" if storage else f"optuna-dashboard sqlite:///{(out / 'study.db').resolve()}"
    typer.echo(f"study saved to {out} (best.yaml, trials.csv; {where})")


@app.command()
def pretrain(
    recipe: Optional[str] = typer.Argument(None, help="A pretraining recipe YAML or key=value: objective=mlm (DAPT "
                                           "of an encoder; the default), span (T5 from scratch), clm (Mamba2)."),
    overrides: Optional[List[str]] = typer.Argument(None, help="key=value, e.g. backbone=mpnet-base train.epochs=1, "
                                                    "or objective=span size=mini train.max_steps=2000"),
    output: Path = typer.Option(..., "--output", "-o", help="Where the pretrained / adapted backbone is written."),
    resume: bool = typer.Option(False, "--resume", help="From scratch: continue an interrupted run's checkpoints."),
    overwrite: bool = typer.Option(False, "--overwrite"),
):
    """Pretrain on an unlabelled corpus: domain-adaptive MLM of an encoder (objective=mlm, the default), or a
    tokenizer + T5 (objective=span, or denoise: BART-style, rewrite the whole text) or Mamba2 (objective=clm) from
    scratch. Then `finpeft train model.backbone=OUTPUT`."""
    from finpeft import api
    path, items = _recipe_and_overrides(recipe, overrides) if (recipe or overrides) else (None, [])
    api.pretrain(path, items, output, resume=resume, overwrite=overwrite, command=_command())


@app.command()
def ensemble(
    run_dirs: List[Path] = typer.Argument(..., help="Two or more finished run dirs (same data split and labels)."),
    output: Path = typer.Option(..., "--output", "-o", help="Ensemble dir to write."),
    weights: Optional[str] = typer.Option(None, "--weights", help="Comma-separated member weights (default equal)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --output."),
):
    """Average several runs' probabilities into one saved model, scored on the members' test split."""
    from finpeft import api
    try:
        w = [float(x) for x in weights.split(",")] if weights else None
    except ValueError:
        raise FinpeftError(f"--weights must be numbers separated by commas, not {weights!r}") from None
    api.ensemble(run_dirs, output, w, overwrite=overwrite, command=_command())
    typer.echo((output / "report.md").read_text(encoding="utf-8"))


@app.command()
def evaluate(
    run_dir: Path = typer.Argument(..., help="A finished run dir."),
    data: Optional[str] = typer.Option(None, "--data", help="Dataset to score on (default: the run's own)."),
    split: Optional[str] = typer.Option(None, "--split", help="test, valid or all (default: test; all for a single file)."),
    text_column: Optional[str] = typer.Option(None, "--text-column", help="Default: the run's own data.text_column."),
    label_column: Optional[str] = typer.Option(None, "--label-column", help="Default: the run's data.label_column."),
    label_map: Optional[str] = typer.Option(None, "--label-map", help="YAML map of raw -> model labels, e.g. '{0: negative}'."),
    encoding: Optional[str] = typer.Option(None, "--encoding", help="Default: the run's data.encoding (auto)."),
):
    """Score a saved model on a labelled dataset (cross-dataset evaluation)."""
    from finpeft import api
    out, m = api.evaluate(run_dir, data, split=split, text_column=text_column, label_column=label_column,
                          label_map=label_map, encoding=encoding)
    typer.echo(api.summarise(m))
    typer.echo(f"report: {out / 'report.md'}")


@app.command()
def predict(
    run_dir: Path = typer.Argument(..., help="A finished run dir."),
    text: Optional[List[str]] = typer.Option(None, "--text", "-t", help="Text to score (repeatable)."),
    input: Optional[Path] = typer.Option(None, "--input", "-i", help="CSV/TSV/JSONL/Parquet file to score (with "
                                         "--engine: a file, a folder or a quoted glob)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Where to write the scored file (.csv/.jsonl); "
                                          "with --engine: a folder of part files + manifest.json."),
    engine: Optional[str] = typer.Option(None, "--engine", help="ray: score in shards on Ray (local, or the "
                                         "cluster at --address); local: the same shards in this process."),
    address: Optional[str] = typer.Option(None, "--address", help="--engine ray: HOST:PORT of a running Ray head "
                                          "(`ray start --head`), or auto; default: a local Ray."),
    workers: Optional[int] = typer.Option(None, "--workers", min=1, help="--engine ray: scoring actors (default: "
                                          "one per CPU of the cluster)."),
    shard_rows: int = typer.Option(50_000, "--shard-rows", min=1, help="--engine: rows per shard (the unit of "
                                   "retry and resume)."),
    out_format: str = typer.Option("parquet", "--format", help="--engine: part files as parquet or csv."),
    text_column: str = typer.Option("text", "--text-column"),
    chunk_size: int = typer.Option(2048, "--chunk-size", min=1),
    encoding: str = typer.Option("auto", "--encoding", help="Input file encoding (auto: UTF-8, else detected)."),
    task: Optional[str] = typer.Option(None, "--task", help="An LLM run's task (default: its first)."),
):
    """Score texts: label, class probabilities and score = P(positive) - P(negative) (by data.label_polarity for
    your own classes; null where they have none) (an LLM run's free-text task: the answer)."""
    import json
    if bool(text) == bool(input):
        raise FinpeftError("give either --text (repeatable) or --input FILE --output FILE")
    if input and not output:
        raise FinpeftError("--input needs --output")
    from finpeft import api
    if engine:
        if text:
            raise FinpeftError("--engine scores files: give --input PATH --output DIR")
        m = api.predict_archive(run_dir, str(input), output, engine=engine, address=address, workers=workers,
                                text_column=text_column, shard_rows=shard_rows, output_format=out_format,
                                encoding=encoding, task=task)
        typer.echo(f"scored {m['rows']} rows in {len(m['shards'])} shards -> {output} (manifest.json)")
        return
    if address or workers:
        raise FinpeftError("--address / --workers need --engine ray")
    if text:
        empty = [i for i, t in enumerate(text) if not t.strip()]
        if empty:
            raise FinpeftError(f"--text number {empty[0] + 1} is empty or whitespace-only: there is nothing to score")
        for t, r in zip(text, api.load(run_dir).predict(text, task=task)):
            typer.echo(json.dumps({"text": t, **r}, ensure_ascii=False))
        return
    try:
        n = api.predict_file(run_dir, input, output, text_column=text_column, chunk_size=chunk_size,
                             encoding=encoding, task=task)
    except KeyboardInterrupt:
        kept = output.with_name(f".{output.name}.partial")  # predict_file's hidden work file
        print("finpeft: interrupted; " + (f"the rows scored so far are kept in {kept}; the same command resumes "
                                          "after them" if kept.exists() else "no chunk was finished: nothing was "
                                          "kept, the same command starts again"), file=sys.stderr)
        raise typer.Exit(130)
    typer.echo(f"scored {n} rows -> {output}")


@app.command()
def export(
    run_dir: Path = typer.Argument(..., help="A finished run dir (methods full, head, lora, dora, mamba-adapter, "
                                   "attention-adapter)."),
    format: str = typer.Option("onnx", "--format", help="Export format: onnx."),
    quantize: Optional[str] = typer.Option(None, "--quantize", help="int8: dynamic int8 weights (about 4x smaller)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Folder to write (default RUN_DIR/onnx, "
                                          "or RUN_DIR/onnx-int8; an earlier export there is replaced)."),
    parity_rows: int = typer.Option(256, "--parity-rows", min=0, help="Test rows on which to compare ONNX with the "
                                    "torch model (0: skip)."),
    parity_data: Optional[str] = typer.Option(None, "--parity-data", help="Dataset whose test split the parity rows "
                                              "come from (default: the run's own data, columns and encoding)."),
    text_column: Optional[str] = typer.Option(None, "--text-column", help="With --parity-data: its text column."),
    label_column: Optional[str] = typer.Option(None, "--label-column", help="With --parity-data: its label column."),
    encoding: Optional[str] = typer.Option(None, "--encoding", help="With --parity-data: its encoding (auto)."),
    min_agreement: Optional[float] = typer.Option(None, "--min-agreement", min=0, max=1,
                                                  help="Refuse the export under this argmax agreement with torch "
                                                  "(default 0.99 fp32, 0.9 int8)."),
):
    """Export a run to ONNX (model.onnx, tokenizer, run.json); predict, evaluate, serve and load take the folder."""
    import json
    from finpeft import api
    if format != "onnx":
        raise FinpeftError(f"--format must be onnx, not {format!r}")
    out = api.export(run_dir, output, quantize=quantize, parity_rows=parity_rows, parity_data=parity_data,
                     text_column=text_column, label_column=label_column, encoding=encoding,
                     min_agreement=min_agreement, say=lambda m: typer.echo(f"[finpeft] {m}"))
    info = json.loads((out / "run.json").read_text(encoding="utf-8"))["onnx"]
    typer.echo(f"exported to {out} (model.onnx {(out / 'model.onnx').stat().st_size / 1e6:.1f} MB, "
               f"{info['quantize'] or 'fp32'}, opset {info['opset']})")
    p = info["parity"]
    if p:
        names = {"max_abs_prob_diff": "max |prob diff|", "max_abs_score_diff": "max |score diff|"}
        shown = " | ".join(f"{names.get(k, k.replace('_', ' '))} {'n/a' if v is None else f'{v:.4g}'}"
                           for k, v in p.items() if k not in ("dataset", "split", "rows"))
        typer.echo(f"parity on {p['rows']} {p['dataset']} {p['split']} rows: {shown}")
        typer.echo(_parity_verdict(p, info["quantize"]))


def _parity_verdict(p: dict, quantize) -> str:
    """What the parity numbers mean: the label (or score band, or label set) and the accuracy are what count;
    int8 moves probabilities."""
    drop = (p["torch_accuracy"] - p["onnx_accuracy"]) if p.get("torch_accuracy") is not None and \
        p.get("onnx_accuracy") is not None else 0.0
    if p["agreement"] >= 0.97 and drop <= 0.01:
        why = (" (int8 rounding moves single probabilities, hence the max |prob diff|; the label is what is served)"
               if quantize else "")
        return (f"parity ok: the ONNX model gives torch's label on {p['agreement']:.1%} of rows and loses "
                f"{max(drop, 0.0):.1%} accuracy{why}")
    return (f"warning: parity is poor - the ONNX model gives torch's label on only {p['agreement']:.1%} of rows "
            f"and loses {drop:.1%} accuracy; use the fp32 export (no --quantize) or check the model")


@app.command()
def serve(
    run_dir: Path = typer.Argument(..., help="A finished run dir or its ONNX export."),
    host: str = typer.Option("127.0.0.1", "--host", help="Bind address (default: this machine only)."),
    port: int = typer.Option(8000, "--port", min=1, max=65535),
    backend: str = typer.Option("auto", "--backend", help="torch, onnx (the run's export) or auto (as saved)."),
    api_key: Optional[str] = typer.Option(None, "--api-key", envvar="FINPEFT_API_KEY",
                                          help="Require this key in the X-API-Key header (or set FINPEFT_API_KEY)."),
    max_texts: int = typer.Option(64, "--max-texts", min=1, help="Texts per request."),
    max_chars: int = typer.Option(2000, "--max-chars", min=1, help="Characters per text."),
    max_body_bytes: int = typer.Option(1_000_000, "--max-body-bytes", min=1024),
    max_batch: int = typer.Option(64, "--max-batch", min=1, help="Texts per forward pass (micro-batching)."),
    max_wait_ms: float = typer.Option(5.0, "--max-wait-ms", min=0, help="How long a batch waits to fill."),
    cors_origin: Optional[List[str]] = typer.Option(None, "--cors-origin", help="Allow this origin (repeatable; "
                                                    "CORS is off by default)."),
):
    """REST API + web page: POST /v1/predict, GET /healthz /readyz /metrics /docs, and / to try it."""
    from finpeft import api
    api.serve(run_dir, host, port, backend, max_texts=max_texts, max_chars=max_chars, max_body_bytes=max_body_bytes,
              max_batch=max_batch, max_wait_ms=max_wait_ms, api_key=api_key or None,
              cors_origins=list(cors_origin or []))
